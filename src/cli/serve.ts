import { randomBytes } from 'node:crypto';
import { readFileSync, statSync } from 'node:fs';
import { basename } from 'node:path';
import type { InferenceEngine } from '../engine/types.js';
import { buildServer } from '../server/index.js';
import { engineOptionsOf, parseServeConfig, serveHelp, type ServeConfig } from './serve-config.js';
import { AutoGlmError, isAutoGlmError } from '../errors.js';
import { withoutUndefined } from '../without-undefined.js';
import { listenOn } from './listen.js';

/** `autoglm serve`: load the model, serve it, register with a gateway if asked, drain on SIGTERM. */
export async function runServe(argv: string[]): Promise<number> {
  const parsed = parseServeConfig(argv);
  if (parsed === 'help') {
    process.stdout.write(serveHelp() + '\n');
    return 0;
  }
  const config = applyLocalDefaultAuth(parsed);
  // Before anything starts: a typo in --model used to bind the port, then die with a logged stack.
  requireModelFolder(config);
  const tls = config.tls && { key: readFlagFile(config.tls.keyFile, 'tls-key'), cert: readFlagFile(config.tls.certFile, 'tls-cert') };
  const enginePromise = loadEngine(config);
  const server = buildServer({
    engine: enginePromise,
    servedModelName: config.servedModelName,
    modelAliases: config.modelAliases,
    auth: { apiKeys: config.apiKeys, disabled: config.authDisabled },
    clusterSecret: config.clusterSecret,
    rateLimit: config.rateLimit,
    limits: {
      maxBodyBytes: config.maxBodyBytes,
      maxPromptTokens: config.maxPromptTokens,
      maxCompletionTokens: config.maxCompletionTokens,
      maxPendingRequests: config.maxPendingRequests,
      maxChoices: config.maxChoices,
      streamStallTimeoutMs: config.streamStallTimeoutMs,
    },
    tokenizerPool: { modelDir: config.modelDir, threads: config.tokenizerThreads, minChars: config.tokenizerMinChars },
    toolCallParser: config.toolCallParser,
    reasoningParser: config.reasoningParser,
    logger: { level: config.logLevel },
    tls,
    cors: config.cors,
    allowRuntimeLoraUpdates: config.allowRuntimeLoraUpdates,
  });
  const log = server.app.log;

  // Listen before the model is loaded: /health answers at once, /ready turns 200 when loaded.
  let url: string;
  try {
    url = await listenOn(() => server.listen({ host: config.host, port: config.port }), config);
  } catch (e) {
    enginePromise.then((engine) => engine.close()).catch(() => {});
    await server.close().catch(() => {});
    throw e;
  }
  let agent: { stop(): Promise<void> } | null = null;
  let engine: InferenceEngine | null = null;
  let stopping = false;
  const stopped = new Promise<number>((resolve) => {
    const shutdown = async (signal: string): Promise<void> => {
      if (stopping) {
        log.warn({ signal }, 'second signal: exiting without waiting');
        process.exit(1);
      }
      stopping = true;
      log.info({ signal, pending: server.lifecycle.pending, drainTimeoutMs: config.drainTimeoutMs }, 'draining');
      // Leave the registry first so the gateway stops routing here before we refuse anything.
      await agent?.stop().catch((err: unknown) => log.warn({ err }, 'worker agent stop failed'));
      const aborted = await server.drain(config.drainTimeoutMs);
      log.info({ aborted }, 'drained');
      await server.close();
      await engine?.close();
      resolve(0);
    };
    // Installed before the model loads, so a SIGTERM during loading is a clean exit too.
    process.once('SIGTERM', () => void shutdown('SIGTERM'));
    process.once('SIGINT', () => void shutdown('SIGINT'));
  });
  try {
    engine = await Promise.race([enginePromise, stopped.then(() => null)]);
  } catch (e) {
    // An expected failure (no config.json, unsupported architecture) is one line, not a logged stack.
    log.fatal(isAutoGlmError(e) ? { code: e.code, reason: e.message } : { err: e }, 'model failed to load');
    await server.close();
    throw e;
  }
  if (engine === null || stopping) return stopped;
  const name = config.servedModelName ?? engine.modelName;
  log.info({ url, model: name, modelDir: config.modelDir, contextLength: engine.contextLength }, 'serving');
  printBanner(config, url, name);
  agent = await startAgent(config, url, (err) => log.warn({ err }, 'worker registration failed; retrying'));
  return stopped;
}

async function loadEngine(config: ServeConfig): Promise<InferenceEngine> {
  const options = engineOptionsOf(config);
  // Imported here, not at the top, so `serve --help` and bad flags answer without loading WebGPU.
  const { Engine } = await import('../engine/engine.js');
  const engine = await Engine.load(config.modelDir, options);
  if (!config.engine.warmUp) return engine;
  // Before /ready: a worker that says ready must not spend its first requests compiling shaders.
  process.stderr.write(
    'autoglm serve: model loaded; warming up (compiling kernels; on lavapipe with a cold shader cache about a minute, later starts take seconds)\n',
  );
  try {
    const ms = await engine.warmUp();
    process.stderr.write(`autoglm serve: warm-up (kernel compiles) took ${(ms / 1000).toFixed(1)} s\n`);
  } catch (e) {
    await engine.close();
    throw e;
  }
  return engine;
}

/**
 * Auth is off only when asked for. With no keys configured, the server makes one up and
 * prints it, so `npm start` works out of the box without ever listening unauthenticated.
 */
function applyLocalDefaultAuth(config: ServeConfig): ServeConfig & { generatedKey?: string } {
  if (config.authDisabled || config.apiKeys.length > 0) return config;
  const key = `sk-autoglm-${randomBytes(18).toString('base64url')}`;
  return { ...config, apiKeys: [key], generatedKey: key };
}

function printBanner(config: ServeConfig & { generatedKey?: string }, url: string, name: string): void {
  const lines = [``, `autoglm serve: ${name} (${config.modelDir}) at ${url}/v1`];
  if (config.generatedKey) {
    lines.push(
      `  No API key configured, so this run generated one (pass --api-keys, --api-key-file or AUTOGLM_API_KEYS to choose; --no-auth to disable):`,
      `    OPENAI_API_KEY=${config.generatedKey}`,
      `  Try: curl ${url}/v1/chat/completions -H "Authorization: Bearer ${config.generatedKey}" -H "Content-Type: application/json" \\`,
      `         -d '{"model": "${name}", "messages": [{"role": "user", "content": "Tell me a story about a cat."}], "max_tokens": 64}'`,
    );
  } else if (config.authDisabled) lines.push(`  Auth is DISABLED (--no-auth): anyone who can reach ${url} can use it.`);
  const loras = config.engine.loraAdapters;
  if (loras.length > 0) lines.push(`  LoRA adapters (send one's name as "model"): ${loras.map((a) => `${a.name} (${a.path})`).join(', ')}`);
  if (config.usingDefaultModel)
    lines.push(
      `  This is the bundled demo model (${basename(config.modelDir)}). To serve a real model folder (config.json, *.safetensors, tokenizer.json):`,
      `    npm start -- --model /path/to/model --served-model-name my-model`,
    );
  process.stderr.write(lines.join('\n') + '\n\n');
}

async function startAgent(config: ServeConfig, url: string, onError: (error: Error) => void): Promise<{ stop(): Promise<void> } | null> {
  if (config.register === undefined && config.etcd === undefined) return null;
  // Loaded only when registration is asked for.
  const { startWorkerAgent } = await import('../cluster/worker-agent.js');
  return startWorkerAgent(
    withoutUndefined({
      selfUrl: config.advertiseUrl ?? url.replace('://0.0.0.0:', '://127.0.0.1:'),
      registerUrl: config.register,
      etcdUrl: config.etcd,
      clusterSecret: config.clusterSecret,
      heartbeatMs: config.heartbeatMs,
      onError,
    }),
  );
}

function requireModelFolder(config: ServeConfig): void {
  if (config.usingDefaultModel) return;
  let isFolder = false;
  try {
    isFolder = statSync(config.modelDir).isDirectory();
  } catch {
    // missing: reported below
  }
  if (!isFolder)
    throw new AutoGlmError(
      'invalid_request',
      `${config.modelLabel} ${config.modelDir} is not a folder (it should hold config.json, *.safetensors and tokenizer.json).`,
      { param: 'model' },
    );
}

function readFlagFile(path: string, flag: string): Buffer {
  try {
    return readFileSync(path);
  } catch (e) {
    throw new AutoGlmError('invalid_request', `Cannot read --${flag} ${path}: ${(e as Error).message}`, { param: flag, cause: e });
  }
}
