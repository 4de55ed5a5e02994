import { randomBytes } from 'node:crypto';
import { buildGateway } from '../cluster/gateway/build-gateway.js';
import { gatewayHelp, parseGatewayConfig } from '../cluster/gateway/config.js';
import { KubernetesRegistry } from '../cluster/registry/kubernetes-registry.js';
import { listenOn } from './listen.js';

/** `autoglm gateway`: the cluster front door. Runs until SIGTERM/SIGINT, then stops listening. */
export async function runGateway(argv: string[]): Promise<void> {
  const config = parseGatewayConfig(argv, process.env, () => `sk-autoglm-${randomBytes(18).toString('base64url')}`);
  if (config === 'help') {
    process.stdout.write(gatewayHelp() + '\n');
    return;
  }
  const registry = config.createRegistry();
  const gateway = await buildGateway({ ...config.options, registry });
  let url: string;
  try {
    url = await listenOn(() => gateway.listen({ host: config.host, port: config.port }), config);
  } catch (e) {
    await gateway.close().catch(() => {});
    throw e;
  }
  gateway.app.log.info({ url, registry: config.registryKind }, 'gateway listening');
  const lines = [``, `autoglm gateway (${config.registryKind} registry) at ${url}/v1`];
  if (config.registryKind === 'heartbeat')
    lines.push(`  Workers join with: autoglm serve --register ${url}${config.options.clusterSecret ? ' --cluster-secret ...' : ''}`);
  if (registry instanceof KubernetesRegistry) lines.push(`  Workers: the ready endpoints of Service ${registry.source}`);
  if (config.generatedKey) lines.push(`  No API key configured; this run generated one: OPENAI_API_KEY=${config.generatedKey}`);
  // only the heartbeat registry takes registrations (/cluster/register is not served otherwise)
  if (config.options.clusterSecret === undefined && config.registryKind === 'heartbeat')
    lines.push(`  No --cluster-secret: any process that can reach ${url} can register a worker.`);
  process.stderr.write(lines.join('\n') + '\n\n');
  await new Promise<void>((resolve) => {
    const stop = (): void => resolve();
    process.once('SIGTERM', stop);
    process.once('SIGINT', stop);
  });
  await gateway.close();
}
