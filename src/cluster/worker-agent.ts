import { randomBytes } from 'node:crypto';
import { CLUSTER_SECRET_HEADER, normalizeUrl } from './types.js';
import { EtcdClient } from './registry/etcd-client.js';
import { DEFAULT_ETCD_PREFIX, type EtcdWorkerValue } from './registry/etcd-registry.js';

export interface WorkerAgentOptions {
  /** The URL the gateway should use to reach this worker. */
  selfUrl: string;
  /** Gateway base URL (heartbeat registry); registration goes to `${registerUrl}/cluster/register`. */
  registerUrl?: string;
  /** etcd client URL; a path, if any, is the key prefix (default /autoglm/workers/). */
  etcdUrl?: string;
  clusterSecret?: string;
  /** Heartbeat / keep-alive interval (default 1000 ms); the TTL is three of them. */
  heartbeatMs?: number;
  /** Called on registration errors (the agent keeps retrying); default: silent. */
  onError?: (error: Error) => void;
}

export interface WorkerAgent {
  /** Leaves the registry (deregister / revoke the lease) and stops heartbeating. */
  stop(): Promise<void>;
}

/**
 * The worker's side of discovery: keeps this worker registered with a gateway (heartbeat)
 * or in etcd (a lease-backed key), and leaves at once on stop(), which the server calls
 * first on SIGTERM so gateways stop routing here before the drain refuses anything.
 */
export async function startWorkerAgent(options: WorkerAgentOptions): Promise<WorkerAgent> {
  const heartbeatMs = Math.max(50, options.heartbeatMs ?? 1000);
  const agents: WorkerAgent[] = [];
  if (options.registerUrl !== undefined) agents.push(await startHeartbeat(options, heartbeatMs));
  if (options.etcdUrl !== undefined) agents.push(await startEtcdLease(options, heartbeatMs));
  return { stop: async () => void (await Promise.all(agents.map((a) => a.stop()))) };
}

async function startHeartbeat(options: WorkerAgentOptions, heartbeatMs: number): Promise<WorkerAgent> {
  const base = normalizeUrl(options.registerUrl!);
  const body = JSON.stringify({ url: normalizeUrl(options.selfUrl), ttlMs: heartbeatMs * 3 });
  const headers: Record<string, string> = { 'content-type': 'application/json' };
  if (options.clusterSecret !== undefined) headers[CLUSTER_SECRET_HEADER] = options.clusterSecret;
  const post = async (path: string, payload: string): Promise<void> => {
    const r = await fetch(`${base}${path}`, {
      method: 'POST',
      headers,
      body: payload,
      signal: AbortSignal.timeout(Math.max(1000, heartbeatMs * 2)),
    });
    await r.body?.cancel();
    if (!r.ok) throw new Error(`gateway ${path}: HTTP ${r.status}`);
  };
  let stopped = false;
  let timer: NodeJS.Timeout | null = null;
  let inFlight: Promise<void> = Promise.resolve();
  const beat = (): void => {
    inFlight = post('/cluster/register', body).catch((e: unknown) => options.onError?.(e as Error));
    void inFlight.finally(() => {
      if (!stopped) timer = setTimeout(beat, heartbeatMs);
    });
  };
  // The first registration is awaited so a worker is routable when startWorkerAgent returns.
  await post('/cluster/register', body).catch((e: unknown) => options.onError?.(e as Error));
  timer = setTimeout(beat, heartbeatMs);
  return {
    async stop() {
      stopped = true;
      if (timer) clearTimeout(timer);
      await inFlight;
      await post('/cluster/deregister', JSON.stringify({ url: normalizeUrl(options.selfUrl) })).catch((e: unknown) =>
        options.onError?.(e as Error),
      );
    },
  };
}

async function startEtcdLease(options: WorkerAgentOptions, heartbeatMs: number): Promise<WorkerAgent> {
  const parsed = new URL(options.etcdUrl!);
  const prefix = parsed.pathname.length > 1 ? parsed.pathname.replace(/\/*$/, '/') : DEFAULT_ETCD_PREFIX;
  const client = new EtcdClient(parsed.origin, Math.max(1000, heartbeatMs * 2));
  const key = `${prefix}${randomBytes(6).toString('hex')}`;
  const value = JSON.stringify({ url: normalizeUrl(options.selfUrl) } satisfies EtcdWorkerValue);
  const ttlSeconds = Math.max(2, Math.ceil((heartbeatMs * 3) / 1000));
  let leaseId: string | null = null;
  const register = async (): Promise<void> => {
    leaseId = await client.grantLease(ttlSeconds);
    await client.put(key, value, leaseId);
  };
  let stopped = false;
  let timer: NodeJS.Timeout | null = null;
  let inFlight: Promise<void> = Promise.resolve();
  const tick = (): void => {
    inFlight = (async () => {
      // An expired lease (etcd restarted, long pause) took the key with it: register afresh.
      if (leaseId === null || !(await client.keepAlive(leaseId))) await register();
    })().catch((e: unknown) => {
      leaseId = null;
      options.onError?.(e as Error);
    });
    void inFlight.finally(() => {
      if (!stopped) timer = setTimeout(tick, heartbeatMs);
    });
  };
  await register().catch((e: unknown) => options.onError?.(e as Error));
  timer = setTimeout(tick, heartbeatMs);
  return {
    async stop() {
      stopped = true;
      if (timer) clearTimeout(timer);
      await inFlight;
      // Revoking the lease deletes the key: every watching gateway drops this worker now.
      if (leaseId !== null) await client.revokeLease(leaseId).catch((e: unknown) => options.onError?.(e as Error));
    },
  };
}
