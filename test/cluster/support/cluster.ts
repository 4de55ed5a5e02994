/** A gateway (in this process) in front of real worker processes that register by heartbeat. */
import { buildGateway, type Gateway } from '../../../src/cluster/gateway/build-gateway.js';
import type { GatewayOptions } from '../../../src/cluster/gateway/options.js';
import { HeartbeatRegistry } from '../../../src/cluster/registry/heartbeat-registry.js';
import { freePort, spawnWorker, stopAll, waitFor, waitReady, type WorkerProcess, type WorkerSpawnOptions } from './processes.js';

export const CLUSTER_SECRET = 'test-cluster-secret';
export const GATEWAY_KEY = 'sk-gateway-test';

export interface TestCluster {
  gateway: Gateway;
  url: string;
  workers: WorkerProcess[];
  /** Starts worker i again on its port (after a kill). */
  restart(i: number): WorkerProcess;
  healthyUrls(): string[];
  close(): Promise<void>;
}

export async function startCluster(options: {
  workers: number;
  worker?: Partial<WorkerSpawnOptions>;
  gateway?: Partial<GatewayOptions>;
}): Promise<TestCluster> {
  const gateway = await buildGateway({
    registry: new HeartbeatRegistry({ sweepIntervalMs: 50 }),
    auth: { apiKeys: [GATEWAY_KEY] },
    clusterSecret: CLUSTER_SECRET,
    ...options.gateway,
  });
  const url = await gateway.listen({ port: 0, host: '127.0.0.1' });
  const ports = await Promise.all(Array.from({ length: options.workers }, () => freePort()));
  const spawnAt = (port: number): WorkerProcess =>
    spawnWorker({ port, register: url, clusterSecret: CLUSTER_SECRET, heartbeatMs: 300, ...options.worker });
  // The first worker alone, then the rest: each real worker compiles its kernels in its
  // start-up warm-up, and on a cold Mesa shader cache (a fresh CI machine) three compiling
  // at once on two cores took over 90 s; after the first, the others read its cache.
  const workers = ports.slice(0, 1).map(spawnAt);
  const cluster: TestCluster = {
    gateway,
    url,
    workers,
    restart: (i) => (workers[i] = spawnAt(workers[i]!.port)),
    healthyUrls: () => gateway.health.healthy().map((w) => w.url),
    close: async () => {
      await stopAll(workers);
      await gateway.close();
    },
  };
  try {
    await waitReady(workers[0]!);
    workers.push(...ports.slice(1).map(spawnAt));
    await Promise.all(workers.map((w) => waitReady(w)));
    await waitFor(() => cluster.healthyUrls().length === options.workers, 10_000, 'all workers healthy in the gateway');
  } catch (e) {
    await cluster.close();
    throw e;
  }
  return cluster;
}
