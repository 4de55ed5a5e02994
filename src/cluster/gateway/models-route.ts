/**
 * GET /v1/models at the gateway: every model the cluster serves, not one worker's list. In a
 * cluster whose workers serve different models (or different LoRA adapters), forwarding the
 * call to one worker told a client only that worker's models, and a client that picks its
 * model from this list never saw the others.
 */
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { AutoGlmError } from '../../errors.js';
import type { HealthMonitor } from '../health-monitor.js';
import { requestOnce } from '../ready-probe.js';
import type { UpstreamPool } from './upstream-http.js';

type Guard = (request: FastifyRequest, reply: FastifyReply) => Promise<void>;

/** How long a worker may take to list its models before the answer goes without it. */
export const MODELS_TIMEOUT_MS = 5_000;

export interface ModelsRouteDeps {
  health: HealthMonitor;
  pool: UpstreamPool;
  /** The gateway's credentials at the workers (cluster secret, worker API key). */
  credentials: Record<string, string>;
  timeoutMs?: number;
}

interface ModelEntry {
  id: string;
  [field: string]: unknown;
}

/** The entries of a worker's /v1/models body; null when it is not that shape. */
export function modelEntriesOf(body: string): ModelEntry[] | null {
  let json: unknown;
  try {
    json = JSON.parse(body);
  } catch {
    return null;
  }
  const data = (json as { data?: unknown } | null)?.data;
  if (!Array.isArray(data)) return null;
  const isEntry = (m: unknown): m is ModelEntry =>
    typeof m === 'object' && m !== null && !Array.isArray(m) && typeof (m as { id?: unknown }).id === 'string';
  return data.every(isEntry) ? data : null;
}

/**
 * Every healthy worker's /v1/models is asked at once and the lists are merged by id: the
 * first worker to list an id, in worker-id order, gives its fields (workers serving one
 * model agree on them). A worker that fails, answers an error or takes longer than the
 * timeout is left out of the answer; when none answers, the client gets 502.
 */
export function installModelsRoute(app: FastifyInstance, deps: ModelsRouteDeps, guard: Guard): void {
  const timeoutMs = deps.timeoutMs ?? MODELS_TIMEOUT_MS;
  app.get('/v1/models', { onRequest: guard }, async () => {
    const workers = deps.health.healthy().sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
    if (workers.length === 0) throw new AutoGlmError('no_healthy_worker', 'No healthy worker; retry later.');
    const answers = await Promise.all(
      workers.map((w) => requestOnce(deps.pool, `${w.url}/v1/models`, { method: 'GET', headers: deps.credentials }, timeoutMs)),
    );
    const byId = new Map<string, ModelEntry>();
    const failures: string[] = [];
    answers.forEach((answer, i) => {
      const entries = 'error' in answer ? null : answer.status === 200 ? modelEntriesOf(answer.body) : null;
      if (entries === null) {
        const why = 'error' in answer ? answer.error : answer.status === 200 ? 'not a model list' : `HTTP ${answer.status}`;
        return void failures.push(`${workers[i]!.id}: ${why}`);
      }
      for (const m of entries) if (!byId.has(m.id)) byId.set(m.id, m);
    });
    if (failures.length === workers.length)
      throw new AutoGlmError('upstream_error', `No worker listed its models (${failures.join('; ')}).`);
    return { object: 'list', data: [...byId.values()] };
  });
}
