/**
 * How the gateway reaches the Kubernetes API: in a pod, from the environment the kubelet
 * sets up (KUBERNETES_SERVICE_HOST/PORT and the service-account files); elsewhere, from
 * explicit options. Missing pieces are AutoGlmError('invalid_request') naming the option's
 * flag, raised when the registry is built, before the gateway listens.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { AutoGlmError } from '../../errors.js';
import { parseWorkerUrl } from '../types.js';

/** Where the kubelet mounts a pod's service-account token, CA bundle and namespace. */
export const SERVICE_ACCOUNT_DIR = '/var/run/secrets/kubernetes.io/serviceaccount';

/** Re-read the token file this often (client-go's period): the kubelet rotates projected tokens. */
export const DEFAULT_TOKEN_REFRESH_MS = 60_000;

export interface KubernetesAccessOptions {
  /** API server URL (default in a pod: https://$KUBERNETES_SERVICE_HOST:$KUBERNETES_SERVICE_PORT). */
  apiUrl?: string;
  /** Bearer token file (default: the service account's, when present). */
  tokenFile?: string;
  /** CA bundle for the API server's certificate (default: the service account's, when present; else the system's). */
  caFile?: string;
  /** Namespace of the Service (default: the pod's own, from the service account). */
  namespace?: string;
  /** Re-read the token file this often (default 60000 ms); a 401 also re-reads it at once. */
  tokenRefreshMs?: number;
  /** The in-cluster files' folder (default SERVICE_ACCOUNT_DIR); tests point it elsewhere. */
  serviceAccountDir?: string;
  /** Where KUBERNETES_SERVICE_HOST/PORT are read (default process.env). */
  env?: Readonly<Record<string, string | undefined>>;
}

export interface KubernetesAccess {
  /** Base URL without a trailing slash; API paths are appended to it (a proxy may add a path prefix). */
  apiUrl: string;
  namespace: string;
  /** Trusted CAs for https; undefined: the system's. */
  ca: Buffer | undefined;
  /** null: no token is sent (kubectl proxy, or an API server that authenticates otherwise). */
  tokens: TokenFile | null;
}

function invalid(message: string, param: string, cause?: unknown): AutoGlmError {
  return new AutoGlmError('invalid_request', message, { param, ...(cause !== undefined ? { cause } : {}) });
}

/** A file's contents when it exists; an explicit path that cannot be read is an error naming its flag. */
function readOptional(path: string, explicit: boolean, param: string): Buffer | undefined {
  try {
    return readFileSync(path);
  } catch (e) {
    if (!explicit && (e as { code?: string }).code === 'ENOENT') return undefined;
    throw invalid(`Cannot read --${param} ${path}: ${(e as Error).message}`, param, e);
  }
}

/** Resolves every piece of access, or throws naming the flag that would supply the missing one. */
export function resolveKubernetesAccess(options: KubernetesAccessOptions = {}): KubernetesAccess {
  const env = options.env ?? process.env;
  const dir = options.serviceAccountDir ?? SERVICE_ACCOUNT_DIR;
  const host = env.KUBERNETES_SERVICE_HOST;
  const port = env.KUBERNETES_SERVICE_PORT;
  const inPod = host !== undefined && host !== '' && port !== undefined && port !== '';
  let apiUrl: string;
  if (options.apiUrl !== undefined) {
    const url = parseWorkerUrl(options.apiUrl);
    if (url === null)
      throw invalid(`--k8s-api-url must be an http(s) URL such as https://10.0.0.1:6443, got '${options.apiUrl}'.`, 'k8s-api-url');
    apiUrl = url;
  } else if (inPod) {
    apiUrl = `https://${host.includes(':') ? `[${host}]` : host}:${port}`;
  } else {
    throw invalid(
      '--registry kubernetes: not in a Kubernetes pod (KUBERNETES_SERVICE_HOST/KUBERNETES_SERVICE_PORT unset) and no --k8s-api-url given.',
      'k8s-api-url',
    );
  }

  const tokenPath = options.tokenFile ?? join(dir, 'token');
  const tokenExists = readOptional(tokenPath, options.tokenFile !== undefined, 'k8s-token-file') !== undefined;
  // In a pod without an explicit URL the API server always wants a token; with a URL (kubectl
  // proxy on loopback, say) none may be needed.
  if (!tokenExists && options.apiUrl === undefined)
    throw invalid(
      `--registry kubernetes: no service-account token at ${tokenPath} (automountServiceAccountToken: false?); give --k8s-token-file.`,
      'k8s-token-file',
    );
  const tokens = tokenExists ? new TokenFile(tokenPath, options.tokenRefreshMs ?? DEFAULT_TOKEN_REFRESH_MS) : null;

  const ca = readOptional(options.caFile ?? join(dir, 'ca.crt'), options.caFile !== undefined, 'k8s-ca-file');

  let namespace = options.namespace;
  if (namespace === undefined) {
    namespace = readOptional(join(dir, 'namespace'), false, 'k8s-namespace')?.toString('utf8').trim();
    if (namespace === undefined || namespace === '')
      throw invalid(`--registry kubernetes: no --k8s-namespace given and no pod namespace at ${join(dir, 'namespace')}.`, 'k8s-namespace');
  }
  return { apiUrl, namespace, ca, tokens };
}

/**
 * A bearer token read from a file and re-read as it ages. Projected service-account tokens
 * are rewritten by the kubelet (at 80% of their lifetime, an hour by default) and the old
 * one stops working when it expires: a token read once at start-up fails a day later.
 */
export class TokenFile {
  private token: string;
  private readAtMs: number;
  /** Why the last re-read failed (the last good token is kept meanwhile). */
  lastError: string | null = null;

  constructor(
    readonly path: string,
    private readonly refreshMs: number,
  ) {
    this.token = TokenFile.read(path);
    this.readAtMs = performance.now();
  }

  /** The token, re-read first when it is older than the refresh period. */
  current(): string {
    if (performance.now() - this.readAtMs >= this.refreshMs) this.reload();
    return this.token;
  }

  /** Re-reads the file now (after a 401, say); true when the token changed. */
  reload(): boolean {
    this.readAtMs = performance.now();
    try {
      const next = TokenFile.read(this.path);
      this.lastError = null;
      if (next === this.token) return false;
      this.token = next;
      return true;
    } catch (e) {
      // The kubelet swaps the file atomically, so this is a real fault: keep the last token.
      this.lastError = (e as Error).message;
      return false;
    }
  }

  private static read(path: string): string {
    let text: string;
    try {
      text = readFileSync(path, 'utf8').trim();
    } catch (e) {
      throw invalid(`Cannot read --k8s-token-file ${path}: ${(e as Error).message}`, 'k8s-token-file', e);
    }
    if (text === '') throw invalid(`--k8s-token-file ${path} is empty.`, 'k8s-token-file');
    return text;
  }
}

/** RFC 1123 label: what Service names, namespaces (and, up to 15 characters, port names) must be. */
const DNS_LABEL = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;

/** Checks a Service, namespace or port name, so that a typo fails at start-up instead of listing nothing for ever. */
export function checkKubernetesName(
  value: string,
  what: 'service' | 'namespace' | 'port name',
  param: string,
  label = `--${param}`,
): string {
  const max = what === 'port name' ? 15 : 63;
  if (value.length > max || !DNS_LABEL.test(value))
    throw invalid(
      `${label} must be a Kubernetes ${what} (lower-case letters, digits and '-', at most ${max} characters), got '${value}'.`,
      param,
    );
  return value;
}
