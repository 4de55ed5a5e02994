import { AutoGlmError } from '../../errors.js';
import { Resolver } from 'node:dns/promises';
import { ALLOWED_ORIGINS_HELP, allowedOriginsOf, flagsHelp, MS, PORT, readFlags, type FlagReader, type FlagSpec } from '../../cli/flags.js';
import { DnsRegistry } from '../registry/dns-registry.js';
import { EtcdRegistry } from '../registry/etcd-registry.js';
import { checkKubernetesName } from '../registry/kubernetes-access.js';
import { KubernetesRegistry } from '../registry/kubernetes-registry.js';
import { requireWorkerUrl } from '../types.js';
import { DEFAULT_BASE_EJECTION_MS, DEFAULT_MAX_EJECTION_MS } from '../health-monitor.js';
import { MAX_ATTEMPTS } from './build-gateway.js';
import { HeartbeatRegistry } from '../registry/heartbeat-registry.js';
import type { WorkerRegistry } from '../registry/registry.js';
import { StaticRegistry } from '../registry/static-registry.js';
import { readApiKeySpecs } from './api-key-specs.js';
import type { GatewayOptions } from './options.js';
import { withoutUndefined } from '../../without-undefined.js';

/** `autoglm gateway` flags; each also reads AUTOGLM_<FLAG> from the environment. */
const FLAGS = {
  host: { kind: 'string', help: 'address to listen on (default 127.0.0.1)' },
  port: { ...PORT, help: 'port (default 9000; 0 picks a free one)' },
  registry: { kind: 'string', help: 'heartbeat (default) | static | dns | etcd | kubernetes' },
  workers: { kind: 'list', help: 'static registry: comma-separated worker URLs' },
  'dns-name': { kind: 'string', help: 'dns registry: name to resolve (headless Service, SRV name)' },
  'dns-type': { kind: 'string', help: 'dns registry: A (default) or SRV' },
  'dns-port': { ...PORT, min: 1, help: 'dns registry: worker port for A records (default 8000)' },
  'dns-servers': { kind: 'list', help: 'dns registry: resolvers as ip or ip:port (default: system)' },
  'dns-refresh-ms': { ...MS, min: 1, help: 'dns registry: re-resolve period (default 1000)' },
  etcd: { kind: 'string', help: 'etcd registry: client URL, e.g. http://127.0.0.1:2379' },
  'etcd-prefix': { kind: 'string', help: 'etcd registry: key prefix (default /autoglm/workers/)' },
  'etcd-resync-ms': {
    ...MS,
    help: 'etcd registry: re-list the prefix this often and restart a watch that missed changes (default 10000; 0 = never)',
  },
  'k8s-service': { kind: 'string', help: "kubernetes registry: the workers' Service; its EndpointSlices are listed and watched" },
  'k8s-namespace': { kind: 'string', help: "kubernetes registry: the Service's namespace (default: the gateway pod's own)" },
  'k8s-port-name': {
    kind: 'string',
    help: "kubernetes registry: the workers' port name in the Service (default http, else its only port)",
  },
  'k8s-api-url': {
    kind: 'string',
    help: 'kubernetes registry: API server URL (default in a pod: https://$KUBERNETES_SERVICE_HOST:$KUBERNETES_SERVICE_PORT)',
  },
  'k8s-token-file': {
    kind: 'string',
    help: "kubernetes registry: bearer token file, re-read every minute and after a 401 (default: the pod's service-account token)",
  },
  'k8s-ca-file': {
    kind: 'string',
    help: "kubernetes registry: CA bundle for the API server (default: the service account's, else the system's)",
  },
  'k8s-resync-ms': {
    ...MS,
    help: 'kubernetes registry: re-list the EndpointSlices this often and restart a watch that missed changes (default 10000; 0 = never)',
  },
  'heartbeat-ttl-ms': { ...MS, min: 1, help: 'heartbeat registry: TTL when a worker names none (default 3000)' },
  'max-workers': {
    kind: 'int',
    min: 1,
    help: 'heartbeat registry: most workers registered at once; more are refused with 429 (default 4096)',
  },
  'cluster-secret': { kind: 'string', help: 'sent to workers, required from registering workers' },
  'worker-api-key': { kind: 'string', help: 'Bearer key for workers that check API keys' },
  'api-key-file': {
    kind: 'string',
    help: 'client API keys, one per line, each KEY, KEY:RPS:BURST (its own rate limit; RPS 0: none) or KEY:RPS:BURST:PRIORITY (its requests scheduled at PRIORITY or later)',
  },
  'api-keys': { kind: 'list', help: 'comma-separated client API keys, each KEY, KEY:RPS:BURST or KEY:RPS:BURST:PRIORITY' },
  'no-auth': { kind: 'bool', help: 'accept client requests without an API key' },
  'rate-limit-rps': { kind: 'float', help: 'requests per second per API key without a limit of its own (default: unlimited)' },
  'rate-limit-burst': { kind: 'int', min: 1, help: 'burst per such API key (default 2 x rps; needs --rate-limit-rps)' },
  'probe-interval-ms': { ...MS, min: 1, help: '/ready probe period (default 250)' },
  'probe-timeout-ms': { ...MS, min: 1, help: '/ready probe timeout (default 500)' },
  'unhealthy-threshold': { kind: 'int', min: 1, help: 'failed probes before unhealthy (default 2)' },
  'passive-failure-threshold': { kind: 'int', min: 1, help: 'failed requests in a row before ejection (default 3)' },
  'ejection-ms': { ...MS, help: 'first ejection cool-down, doubling on repeats (default 1000)' },
  'max-ejection-ms': { ...MS, help: 'longest cool-down (default 30000)' },
  'max-attempts': {
    kind: 'int',
    min: 1,
    max: MAX_ATTEMPTS,
    help: `attempts per request incl. the first (default 3, at most ${MAX_ATTEMPTS})`,
  },
  'retry-budget-ratio': { kind: 'float', help: 'retries per request, cluster-wide (default 0.2)' },
  'first-byte-timeout-ms': { ...MS, min: 1, help: "streams: wait for a worker's first byte (default 60000)" },
  'idle-timeout-ms': { ...MS, min: 1, help: 'streams: silence that counts as a dead worker (default 30000)' },
  'request-timeout-ms': { ...MS, min: 1, help: 'request deadline (default 600000)' },
  'client-request-timeout-ms': { ...MS, help: 'a client must send its whole request within this (default 30000; 0 = no limit)' },
  'stream-stall-timeout-ms': {
    ...MS,
    min: 1,
    help: 'a streaming client that takes nothing for this long is disconnected and its request cancelled (default 60000)',
  },
  'shutdown-timeout-ms': { ...MS, help: 'on SIGTERM, streams in flight may finish for this long (default 20000)' },
  'no-resume': { kind: 'bool', help: 'do not resume streams cut mid-way' },
  'allow-runtime-lora-updates': {
    kind: 'bool',
    help: 'serve POST /v1/load_lora_adapter and /v1/unload_lora_adapter for every worker, and load the adapters loaded at run time onto workers that lack them (new, restarted); the workers need the same flag (any client key may then make the workers read adapter folders)',
  },
  'allowed-origins': { kind: 'string', help: ALLOWED_ORIGINS_HELP },
  balance: { kind: 'string', help: 'least outstanding requests (default) | tokens' },
  'prefix-affinity': { kind: 'bool', help: 'same prompt prefix -> same worker (bounded imbalance)' },
  'affinity-max-imbalance': {
    kind: 'float',
    min: 1,
    help: 'prefix affinity yields when load > this x least (default 1.5, at least 1; needs --prefix-affinity)',
  },
  'log-level': { kind: 'string', help: 'pino level: fatal|error|warn|info|debug|trace|silent (default info)' },
  help: { kind: 'bool', help: 'print this help' },
} as const satisfies Record<string, FlagSpec>;

type FlagName = keyof typeof FLAGS;

/** Flags that only one registry reads; given with another they were ignored without a word. */
const REGISTRY_FLAGS: Record<string, readonly FlagName[]> = {
  heartbeat: ['heartbeat-ttl-ms', 'max-workers'],
  static: ['workers'],
  dns: ['dns-name', 'dns-type', 'dns-port', 'dns-servers', 'dns-refresh-ms'],
  etcd: ['etcd', 'etcd-prefix', 'etcd-resync-ms'],
  kubernetes: ['k8s-service', 'k8s-namespace', 'k8s-port-name', 'k8s-api-url', 'k8s-token-file', 'k8s-ca-file', 'k8s-resync-ms'],
};

const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;

function invalid(message: string, param: string): AutoGlmError {
  return new AutoGlmError('invalid_request', message, { param });
}

/** Checked at parse time: a bad resolver address used to throw from createRegistry() as a bare "Invalid IP address". */
function dnsServers(flags: FlagReader<FlagName>): string[] {
  const servers = flags.list('dns-servers');
  try {
    if (servers.length > 0) new Resolver().setServers(servers);
  } catch (e) {
    throw invalid(
      `${flags.label('dns-servers')} takes ip or ip:port ([ipv6]:port) entries, got '${servers.join(',')}': ${(e as Error).message}`,
      'dns-servers',
    );
  }
  return servers;
}

/** The --k8s-* flags, names checked now: a typo would otherwise list nothing, for ever, without a word. */
function kubernetesFlags(flags: FlagReader<FlagName>) {
  const name = (n: 'k8s-service' | 'k8s-namespace' | 'k8s-port-name', what: 'service' | 'namespace' | 'port name'): string | undefined => {
    const v = flags.str(n);
    return v === undefined ? undefined : checkKubernetesName(v, what, n, flags.label(n));
  };
  return {
    service: name('k8s-service', 'service'),
    namespace: name('k8s-namespace', 'namespace'),
    portName: name('k8s-port-name', 'port name'),
    apiUrl: flags.url('k8s-api-url'),
    tokenFile: flags.str('k8s-token-file'),
    caFile: flags.str('k8s-ca-file'),
    resyncMs: flags.num('k8s-resync-ms'),
  };
}

/**
 * The health monitor refuses a first cool-down above the longest one too, but naming its
 * options: here the error names the flags (and which of them is a default).
 */
function checkEjectionBounds(flags: FlagReader<FlagName>, baseMs: number | undefined, maxMs: number | undefined): void {
  const base = baseMs ?? DEFAULT_BASE_EJECTION_MS;
  const max = maxMs ?? DEFAULT_MAX_EJECTION_MS;
  if (base <= max) return;
  const side = (name: FlagName, ms: number, given: boolean) => `${flags.label(name)} ${ms}${given ? '' : ' (the default)'}`;
  throw invalid(
    `${side('ejection-ms', base, baseMs !== undefined)} is above ${side('max-ejection-ms', max, maxMs !== undefined)}: ` +
      'the first cool-down cannot be longer than the longest one; lower one or raise the other.',
    'ejection-ms',
  );
}

export interface GatewayConfig {
  host: string;
  port: number;
  /** Keys were generated because none were given (printed once at start). */
  generatedKey: string | undefined;
  options: Omit<GatewayOptions, 'registry'>;
  createRegistry(): WorkerRegistry;
  registryKind: string;
}

export function gatewayHelp(): string {
  return flagsHelp('Usage: autoglm gateway [options]', FLAGS, 36);
}

/** argv + env -> a typed config; bad values are AutoGlmError('invalid_request') naming the flag. */
export function parseGatewayConfig(argv: string[], env: NodeJS.ProcessEnv = process.env, makeKey?: () => string): GatewayConfig | 'help' {
  const flags = readFlags(FLAGS, argv, env, 'autoglm gateway');
  if (flags === 'help') return 'help';
  const { str, num, bool, list, oneOf, url } = flags;

  const specs = readApiKeySpecs({ list: list('api-keys'), listFlag: 'api-keys', file: str('api-key-file'), fileFlag: 'api-key-file' });
  const keys = specs.keys;
  const authDisabled = bool('no-auth');
  if (authDisabled && keys.length > 0) {
    const given = flags.has('api-keys') ? flags.label('api-keys') : flags.label('api-key-file');
    throw invalid(`${flags.label('no-auth')} and ${given} contradict each other: drop one.`, 'no-auth');
  }
  let generatedKey: string | undefined;
  if (!authDisabled && keys.length === 0 && makeKey) {
    generatedKey = makeKey();
    keys.push(generatedKey);
  }

  const kind = oneOf('registry', ['heartbeat', 'static', 'dns', 'etcd', 'kubernetes'] as const, 'heartbeat');
  for (const [registry, names] of Object.entries(REGISTRY_FLAGS)) {
    const stray = registry === kind ? undefined : names.find((n) => flags.has(n));
    if (stray !== undefined)
      throw invalid(`${flags.label(stray)} is read only with --registry ${registry} (the registry is ${kind}).`, stray);
  }
  const workers = list('workers').map((w) => requireWorkerUrl(w, 'each of --workers', 'workers'));
  const dnsName = str('dns-name');
  const etcd = url('etcd');
  if (kind === 'static' && workers.length === 0)
    throw new AutoGlmError('invalid_request', '--registry static needs --workers URL[,URL...].', { param: 'workers' });
  if (kind === 'dns' && dnsName === undefined)
    throw new AutoGlmError('invalid_request', '--registry dns needs --dns-name.', { param: 'dns-name' });
  if (kind === 'etcd' && etcd === undefined)
    throw new AutoGlmError('invalid_request', '--registry etcd needs --etcd URL.', { param: 'etcd' });
  const k8s = kubernetesFlags(flags);
  if (kind === 'kubernetes' && k8s.service === undefined)
    throw new AutoGlmError('invalid_request', '--registry kubernetes needs --k8s-service NAME.', { param: 'k8s-service' });
  const dnsType = oneOf('dns-type', ['A', 'SRV'] as const, 'A');
  const heartbeatTtlMs = num('heartbeat-ttl-ms');
  const servers = dnsServers(flags);
  const dnsPort = num('dns-port');
  const dnsRefreshMs = num('dns-refresh-ms');
  const etcdPrefix = str('etcd-prefix');
  const etcdResyncMs = num('etcd-resync-ms');
  const createRegistry = (): WorkerRegistry => {
    switch (kind) {
      case 'static':
        return new StaticRegistry(workers);
      case 'dns':
        return new DnsRegistry(
          withoutUndefined({
            name: dnsName!,
            recordType: dnsType,
            port: dnsPort,
            servers,
            refreshMs: dnsRefreshMs,
          }),
        );
      case 'etcd':
        return new EtcdRegistry(withoutUndefined({ url: etcd!, prefix: etcdPrefix, resyncMs: etcdResyncMs }));
      case 'kubernetes':
        // Resolves the credentials (in-cluster files or the flags): a missing piece throws
        // here, before the gateway listens.
        return new KubernetesRegistry(withoutUndefined({ ...k8s, service: k8s.service! }));
      default:
        return new HeartbeatRegistry(withoutUndefined({ defaultTtlMs: heartbeatTtlMs, maxWorkers: num('max-workers') }));
    }
  };

  const rps = num('rate-limit-rps', false);
  if (flags.has('rate-limit-burst') && !(rps !== undefined && rps > 0))
    throw invalid(`${flags.label('rate-limit-burst')} needs --rate-limit-rps above 0.`, 'rate-limit-burst');
  const affinity = bool('prefix-affinity');
  if (!affinity && flags.has('affinity-max-imbalance'))
    throw invalid(`${flags.label('affinity-max-imbalance')} is read only with --prefix-affinity.`, 'affinity-max-imbalance');
  const level = oneOf('log-level', LOG_LEVELS, 'info');
  const baseEjectionMs = num('ejection-ms');
  const maxEjectionMs = num('max-ejection-ms');
  checkEjectionBounds(flags, baseEjectionMs, maxEjectionMs);
  return {
    host: str('host') ?? '127.0.0.1',
    port: num('port') ?? 9000,
    generatedKey,
    registryKind: kind,
    createRegistry,
    options: withoutUndefined({
      auth: { apiKeys: keys, disabled: authDisabled },
      rateLimit:
        rps !== undefined && rps > 0
          ? { requestsPerSecond: rps, burst: num('rate-limit-burst') ?? Math.max(1, Math.ceil(rps * 2)) }
          : undefined,
      keyRateLimits: specs.limits.size > 0 ? specs.limits : undefined,
      keyPriorities: specs.priorities.size > 0 ? specs.priorities : undefined,
      clusterSecret: str('cluster-secret'),
      workerApiKey: str('worker-api-key'),
      health: withoutUndefined({
        probeIntervalMs: num('probe-interval-ms'),
        probeTimeoutMs: num('probe-timeout-ms'),
        unhealthyThreshold: num('unhealthy-threshold'),
        passiveFailureThreshold: num('passive-failure-threshold'),
        baseEjectionMs,
        maxEjectionMs,
      }),
      balancer: withoutUndefined({
        mode: oneOf('balance', ['requests', 'tokens'] as const, 'requests'),
        affinity: affinity ? withoutUndefined({ maxImbalance: num('affinity-max-imbalance', false) }) : undefined,
      }),
      retry: withoutUndefined({ maxAttempts: num('max-attempts'), budgetRatio: num('retry-budget-ratio', false) }),
      firstByteTimeoutMs: num('first-byte-timeout-ms'),
      idleTimeoutMs: num('idle-timeout-ms'),
      requestTimeoutMs: num('request-timeout-ms'),
      clientRequestTimeoutMs: num('client-request-timeout-ms'),
      streamStallTimeoutMs: num('stream-stall-timeout-ms'),
      closeTimeoutMs: num('shutdown-timeout-ms'),
      resume: !bool('no-resume'),
      runtimeLoraUpdates: bool('allow-runtime-lora-updates') || undefined,
      cors: allowedOriginsOf(flags, 'allowed-origins'),
      logger: level === 'silent' ? false : { level },
    }),
  };
}
