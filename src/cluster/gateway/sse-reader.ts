import type { Readable } from 'node:stream';
import { finished } from 'node:stream';
import { StringDecoder } from 'node:string_decoder';

/**
 * The longest event the reader holds while waiting for its end. Worker events are a few
 * hundred bytes; a body that never completes one (not SSE: a wrong URL, a proxy's page, a
 * broken worker) would otherwise grow the gateway's memory for as long as it kept sending.
 */
export const MAX_EVENT_CHARS = 4 * 1024 * 1024;

/** What a batch handler wants next: more data (nothing), to stop reading, or to wait (the client is slow). */
export type BatchVerdict = void | 'stop' | Promise<void>;

/**
 * Reads the Server-Sent Events in a response body and calls `onBatch` once per network
 * read with the `data:` payloads it completed (possibly none), so a relay can answer one
 * read with one write. Event-driven rather than an async iterator: an upstream read is one
 * synchronous call, not a chain of promises through the stream's iterator and a generator.
 * Resolves at the body's end or when `onBatch` says 'stop'; rejects if the body is cut
 * (reset, destroyed), an event outgrows MAX_EVENT_CHARS or `onBatch` throws. A returned
 * promise pauses the body until it settles.
 */
export function readSseBatches(body: Readable, onBatch: (batch: string[]) => BatchVerdict): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    const decoder = new StringDecoder('utf8');
    let buffered = '';
    let settled = false;
    const settle = (err?: unknown): void => {
      if (settled) return;
      settled = true;
      body.off('data', onData);
      stopWatching();
      if (err === undefined) resolve();
      else reject(err);
    };
    const onData = (chunk: Buffer): void => {
      buffered += decoder.write(chunk);
      const batch: string[] = [];
      let start = 0;
      let cut: number;
      while ((cut = buffered.indexOf('\n\n', start)) >= 0) {
        const data = frameData(buffered.slice(start, cut));
        start = cut + 2;
        if (data !== '') batch.push(data);
      }
      if (start > 0) buffered = buffered.slice(start);
      if (buffered.length > MAX_EVENT_CHARS) {
        settle(new Error(`upstream event stream: no event end within ${MAX_EVENT_CHARS} characters (not SSE?)`));
        return;
      }
      let verdict: BatchVerdict;
      try {
        verdict = onBatch(batch);
      } catch (e) {
        settle(e);
        return;
      }
      if (verdict === 'stop') settle();
      else if (verdict !== undefined) {
        body.pause();
        verdict.then(() => {
          if (!settled) body.resume();
        }, settle);
      }
    };
    const stopWatching = finished(body, (err) => settle(err ?? undefined));
    body.on('data', onData);
  });
}

function frameData(frame: string): string {
  // The common case, one `data: ` line, without splitting.
  if (frame.startsWith('data: ') && !frame.includes('\n')) return frame.slice(6);
  return frame
    .split('\n')
    .filter((l) => l.startsWith('data:'))
    .map((l) => l.slice(l.startsWith('data: ') ? 6 : 5))
    .join('\n');
}
