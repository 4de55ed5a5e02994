import type { UpstreamPool, UpstreamRequest } from './gateway/upstream-http.js';

/** What one /ready probe saw: the status and body, or why there was none. */
export type ProbeResult = { status: number; body: string } | { error: string };

/**
 * Asks `url` (a worker's /ready) once; never rejects. `error` is 'timeout' when no answer
 * came within `timeoutMs`, else the connection error's code (ECONNREFUSED, ...).
 */
export type ReadyProbe = (url: string, timeoutMs: number) => Promise<ProbeResult>;

/** A probe over global fetch: for a monitor that has no connection pool of its own. */
export const fetchReadyProbe: ReadyProbe = async (url, timeoutMs) => {
  try {
    const r = await fetch(url, { signal: AbortSignal.timeout(timeoutMs) });
    return { status: r.status, body: await r.text() };
  } catch (err) {
    if ((err as Error).name === 'TimeoutError') return { error: 'timeout' };
    return { error: (err as { cause?: { code?: string } }).cause?.code ?? 'error' };
  }
};

/**
 * A probe over the gateway's keep-alive pool, with `headers` (the gateway's credentials: a
 * worker tells only a caller with them the folders of its run-time LoRA adapters). Probing
 * every worker a few times a second over fetch cost the gateway 10-18 ms of CPU per second
 * at idle (a fresh request object, abort signal and WHATWG stream per probe) on the same
 * cores that serve tokens; over the pool a probe is one write on an open socket.
 */
export function poolReadyProbe(pool: UpstreamPool, headers: Record<string, string> = {}): ReadyProbe {
  return (url, timeoutMs) => requestOnce(pool, url, { method: 'GET', headers }, timeoutMs);
}

/**
 * One whole request over the pool; never rejects: the status and body, or 'timeout' when no
 * whole answer came within `timeoutMs`, else the connection error's code.
 */
export async function requestOnce(pool: UpstreamPool, url: string, request: UpstreamRequest, timeoutMs: number): Promise<ProbeResult> {
  const call = pool.request(url, request);
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    call.cancel();
  }, timeoutMs);
  try {
    const r = await call.response;
    return { status: r.status, body: await r.text() };
  } catch (err) {
    return { error: timedOut ? 'timeout' : ((err as NodeJS.ErrnoException).code ?? 'error') };
  } finally {
    clearTimeout(timer);
  }
}
