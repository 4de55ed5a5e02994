/**
 * `node dist/test/cluster/support/scripted-worker.js --port P [--register URL] [--etcd URL]
 * [--cluster-secret S] [--token-delay-ms N] [--drain-timeout-ms N]`: the real server and the
 * real worker agent around ScriptedEngine, with the same SIGTERM sequence as `autoglm serve`
 * (leave the registry, drain, exit 0).
 */
import { parseArgs } from 'node:util';
import { startWorkerAgent } from '../../../src/cluster/worker-agent.js';
import { buildServer } from '../../../src/server/index.js';
import { ScriptedEngine } from './scripted-engine.js';

const { values } = parseArgs({
  options: {
    port: { type: 'string' },
    register: { type: 'string' },
    etcd: { type: 'string' },
    'cluster-secret': { type: 'string' },
    'token-delay-ms': { type: 'string' },
    'drain-timeout-ms': { type: 'string' },
    'heartbeat-ms': { type: 'string' },
  },
});
const secret = values['cluster-secret'];
const server = buildServer({
  engine: new ScriptedEngine(Number(values['token-delay-ms'] ?? 20)),
  auth: { apiKeys: [], disabled: true },
  ...(secret !== undefined ? { clusterSecret: secret } : {}),
  logger: false,
});
const url = await server.listen({ port: Number(values.port ?? 0), host: '127.0.0.1' });
const agent =
  values.register !== undefined || values.etcd !== undefined
    ? await startWorkerAgent({
        selfUrl: url,
        ...(values.register !== undefined ? { registerUrl: values.register } : {}),
        ...(values.etcd !== undefined ? { etcdUrl: values.etcd } : {}),
        ...(secret !== undefined ? { clusterSecret: secret } : {}),
        heartbeatMs: Number(values['heartbeat-ms'] ?? 300),
      })
    : null;
process.stdout.write(`listening ${url}\n`);
process.once('SIGTERM', () => {
  void (async () => {
    await agent?.stop();
    await server.drain(Number(values['drain-timeout-ms'] ?? 10_000));
    await server.close();
    process.exit(0);
  })();
});
