import { buildGateway } from '../dist/src/cluster/gateway/build-gateway.js';
import { StaticRegistry } from '../dist/src/cluster/registry/static-registry.js';
import { buildServer } from '../dist/src/server/index.js';
const engine = { modelName: 'stub' };
const server = buildServer({ engine, auth: { apiKeys: [], disabled: true }, tokenizerPool: { modelDir: '.', threads: 0, minChars: 0 } });
const gateway = await buildGateway({ auth: { apiKeys: [], disabled: true }, registry: new StaticRegistry([]) });
for (const [name, app] of [['server', server.app], ['gateway', gateway.app]]) {
  for (const ct of ['text/plain', 'application/x-www-form-urlencoded', 'application/json; charset=latin1']) {
    const r = await app.inject({ method: 'POST', url: '/v1/chat/completions', payload: '{"model":"m","messages":[]}', headers: { 'content-type': ct } });
    console.log(name, ct, r.statusCode, r.body.slice(0, 200));
  }
}
await server.close(); await gateway.close();
