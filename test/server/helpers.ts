import { afterAll, beforeAll } from 'vitest';
import { Engine } from '../../src/engine/engine.js';
import type { EngineOptions, InferenceEngine } from '../../src/engine/types.js';
import { buildServer, type AutoGlmServer, type ServerOptions } from '../../src/server/index.js';

import { API_KEY, DEMO_MODEL_DIR } from './constants.js';

export { API_KEY, DEMO_MODEL_DIR, STORY_PROMPT } from './constants.js';
export { parseMetrics, postJson, readSse, waitFor } from './http.js';

/** The real engine on the bundled demo model, small KV cache (lavapipe runs on the CPU). */
export function loadDemoEngine(options: EngineOptions = {}): Promise<InferenceEngine> {
  return Engine.load(DEMO_MODEL_DIR, { kvCacheBytes: 16 * 1024 * 1024, servedModelName: 'demo-stories', ...options });
}

export interface RunningServer {
  server: AutoGlmServer;
  url: string;
  close(): Promise<void>;
}

/** A real server on a loopback port. */
export async function startServer(options: Partial<ServerOptions> & Pick<ServerOptions, 'engine'>): Promise<RunningServer> {
  const server = buildServer({ auth: { apiKeys: [API_KEY] }, logger: false, ...options });
  const url = await server.listen({ port: 0, host: '127.0.0.1' });
  return { server, url, close: () => server.close() };
}

/**
 * The demo engine behind a real server on loopback, for the test file that calls this at
 * its top level: loaded before the file's tests, both closed after them. The getter gives
 * the running server and its engine (to compare HTTP answers with in-process ones).
 */
export function useDemoServer(
  engineOptions: EngineOptions = {},
  serverOptions: Partial<ServerOptions> = {},
): () => RunningServer & { engine: InferenceEngine } {
  let engine: InferenceEngine | undefined;
  let running: RunningServer | undefined;
  beforeAll(async () => {
    engine = await loadDemoEngine(engineOptions);
    running = await startServer({ engine, ...serverOptions });
  });
  afterAll(async () => {
    await running?.close();
    await engine?.close();
  });
  return () => {
    if (!running || !engine) throw new Error('useDemoServer: the server is not up (call it at the top level of a test file)');
    return { ...running, engine };
  };
}
