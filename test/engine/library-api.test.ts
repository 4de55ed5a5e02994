/**
 * The in-process library API misused the way a Node app may: closing with streams running,
 * closing twice, a shared AbortSignal, an aborted signal, events changed by the consumer,
 * a request object changed while it runs, fields of the wrong type. Each must end in a typed
 * error or a clean result, and leave the engine serving with every KV block free.
 */
import { getEventListeners } from 'node:events';
import { readdirSync, readlinkSync } from 'node:fs';
import { cp, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Engine } from '../../src/engine/engine.js';
import type { GenerateRequest, TokenEvent } from '../../src/engine/types.js';
import { isAutoGlmError } from '../../src/errors.js';

const DEMO = 'models/demo-stories';
const greedy = { temperature: 0 };

async function errorOf(p: Promise<unknown>): Promise<unknown> {
  return p.then(
    () => null,
    (e: unknown) => e,
  );
}

async function drain(stream: AsyncIterable<TokenEvent>): Promise<TokenEvent[]> {
  const events: TokenEvent[] = [];
  for await (const ev of stream) events.push(ev);
  return events;
}

describe('library API misuse', () => {
  let engine: Engine;
  beforeAll(async () => {
    engine = await Engine.load(DEMO);
  });
  afterAll(async () => {
    await engine?.close();
  });

  it('fields of the wrong type are invalid_request naming the field, before anything is queued', async () => {
    const before = engine.stats();
    for (const [req, param] of [
      [{ maxTokens: 2 }, 'prompt'],
      [{ prompt: null }, 'prompt'],
      [{ prompt: 5 }, 'prompt'],
      [{ prompt: ['a story'] }, 'messages'],
      // messages without a string role and content were templated as if they had them
      [{ prompt: [{ role: 'user' }] }, 'messages'],
      [{ prompt: [{ content: 'x' }] }, 'messages'],
      [{ prompt: [{ role: 'user', content: 5 }] }, 'messages'],
      [{ prompt: [1, 'x'] }, 'prompt'],
      [{ prompt: 'x', sampling: null }, 'sampling'],
      // truthy strings were taken as true
      [{ prompt: 'x', ignoreEos: 'no' }, 'ignore_eos'],
      [{ prompt: 'x', logprobs: 'yes' }, 'logprobs'],
      [{ prompt: 'x', stopTokenIds: 5 }, 'stop_token_ids'],
      [{ prompt: 'x', resumeTokenIds: 'ab' }, 'resume_token_ids'],
      [{ prompt: 'x', chatTemplateKwargs: 'x' }, 'chat_template_kwargs'],
      // used to throw a TypeError after the request was queued, leaving it to run unheard
      [{ prompt: 'x', signal: {} }, 'signal'],
      [{ prompt: 'x', requestId: Symbol('id') }, 'requestId'],
      [null, 'request'],
    ] as const) {
      const e = await errorOf(engine.complete(req as never));
      expect(isAutoGlmError(e, 'invalid_request'), `${JSON.stringify(req)}: ${String(e)}`).toBe(true);
      expect((e as { param?: string }).param, JSON.stringify(req)).toBe(param);
    }
    const after = engine.stats();
    expect(after.promptTokens).toBe(before.promptTokens);
    expect([after.waiting, after.running, after.kvBlocksUsed]).toEqual([0, 0, 0]);
    expect(isAutoGlmError(await errorOf(engine.detokenize('ab' as never)), 'invalid_request')).toBe(true);
    // an id past the vocabulary names the argument as the caller calls it (the HTTP route: tokens)
    const past = await errorOf(engine.detokenize([1, 1_000_000]));
    expect([(past as { param?: string }).param, (past as Error).message]).toEqual([
      'token_ids',
      'token_ids contains 1000000, not a token id of this model (vocabulary of 258)',
    ]);
    const named = await errorOf(engine.detokenize([1, 1_000_000], { param: 'tokens' }));
    expect([(named as { param?: string }).param, (named as Error).message]).toEqual([
      'tokens',
      'tokens contains 1000000, not a token id of this model (vocabulary of 258)',
    ]);
    // a list of ids or strings used to be templated as if it were chat messages
    for (const input of [[1, 2], ['hi'], null, [{ role: 'user', content: null }]]) {
      expect(isAutoGlmError(await errorOf(engine.tokenize(input as never)), 'invalid_request'), JSON.stringify(input)).toBe(true);
    }
    expect(isAutoGlmError(await errorOf(engine.tokenize('hi', null as never)), 'invalid_request')).toBe(true);
    const kwargs = await errorOf(engine.tokenize([{ role: 'user', content: 'hi' }], { chatTemplateKwargs: 'x' as never }));
    expect((kwargs as { param?: string }).param).toBe('chat_template_kwargs');
  });

  it('a request built by a class with getters, or frozen, runs as written', async () => {
    class Request {
      readonly prompt = 'Once upon a time';
      get maxTokens(): number {
        return 3;
      }
      get sampling(): GenerateRequest['sampling'] {
        return new (class {
          get temperature(): number {
            return 0;
          }
        })();
      }
      get ignoreEos(): boolean {
        return true;
      }
    }
    const byClass = await engine.complete(new Request());
    expect(byClass.tokenIds).toHaveLength(3);
    const frozen = Object.freeze({
      prompt: 'Once upon a time',
      maxTokens: 3,
      ignoreEos: true,
      sampling: Object.freeze({ temperature: 0 }),
    });
    expect((await engine.complete(frozen)).tokenIds).toEqual(byClass.tokenIds);
  });

  it('a request object changed while it runs does not change it, nor fail the requests batched with it', async () => {
    // top_logprobs raised past 20 mid-stream used to fail the next step for every row in it
    const other = engine.complete({ prompt: 'The little dog', maxTokens: 6, sampling: greedy, ignoreEos: true });
    const req: GenerateRequest = {
      prompt: 'Once upon a time',
      maxTokens: 6,
      sampling: greedy,
      logprobs: true,
      topLogprobs: 2,
      ignoreEos: true,
    };
    const events: TokenEvent[] = [];
    for await (const ev of engine.generate(req)) {
      events.push(ev);
      req.topLogprobs = 50;
      req.resumeTokenIds = [1, 2, 3];
    }
    expect(events).toHaveLength(6);
    for (const ev of events) expect(ev.topLogprobs).toHaveLength(2);
    expect(events.at(-1)!.metrics!.generatedTokens).toBe(6);
    expect((await other).tokenIds).toHaveLength(6);
  });

  it('a consumer that changes its events does not change what the response cache serves later', async () => {
    const req = { prompt: 'Once upon a', maxTokens: 4, sampling: greedy, logprobs: true, topLogprobs: 2, ignoreEos: true };
    const original = await drain(engine.generate(req));
    const reference = structuredClone(original).map(({ metrics: _, ...ev }) => ev);
    for (const ev of original) {
      ev.text = 'CHANGED';
      ev.topLogprobs!.length = 0;
    }
    // a cache hit, whose consumer changes its events too
    const hit = await drain(engine.generate(req));
    expect(hit.at(-1)!.metrics!.responseCacheHit).toBe(true);
    expect(hit.map(({ metrics: _, ...ev }) => ev)).toEqual(reference);
    for (const ev of hit) ev.text = 'CHANGED AGAIN';
    const again = await engine.complete(req);
    expect(again.metrics!.responseCacheHit).toBe(true);
    expect(again.text).toBe(reference.map((ev) => ev.text).join(''));
  });

  it('one AbortSignal shared by many requests keeps no listener per finished request', async () => {
    const { signal } = new AbortController();
    for (let i = 0; i < 3; i++) await engine.complete({ prompt: `Tale ${i}`, maxTokens: 1, signal, sampling: greedy });
    // 11 requests on one signal used to print MaxListenersExceededWarning
    expect(getEventListeners(signal, 'abort')).toHaveLength(0);
  });

  it('an aborted request: complete() is request_cancelled; a signal aborted before generate() queues nothing', async () => {
    const deterministic = { prompt: 'Once upon a time there', maxTokens: 3, sampling: greedy };
    await engine.complete(deterministic); // now in the response cache
    const before = engine.stats();
    const aborted = AbortSignal.abort();
    const e = await errorOf(engine.complete({ ...deterministic, signal: aborted }));
    expect(isAutoGlmError(e, 'request_cancelled'), String(e)).toBe(true);
    expect(await drain(engine.generate({ prompt: 'A new tale', maxTokens: 3, signal: aborted }))).toEqual([]);
    const after = engine.stats();
    // neither queued (prompt tokens counted) nor replayed from the cache
    expect(after.promptTokens).toBe(before.promptTokens);
    expect(after.responseCacheHits).toBe(before.responseCacheHits);

    // aborted mid-stream
    const controller = new AbortController();
    const mid = engine.complete({ prompt: 'The cat', maxTokens: 100, ignoreEos: true, signal: controller.signal });
    setTimeout(() => controller.abort(), 50);
    expect(isAutoGlmError(await errorOf(mid), 'request_cancelled')).toBe(true);
    expect(engine.stats().kvBlocksUsed).toBe(0);
  });
});

describe('close()', () => {
  it('fails running and queued streams with server_draining; a second close() resolves only once the GPU is freed', async () => {
    const solo = await Engine.load(DEMO, { maxBatchSequences: 1, responseCacheEntries: 0 });
    const runner = (solo as unknown as { runner: { destroy: () => void } }).runner;
    const destroy = runner.destroy.bind(runner);
    let destroyed = false;
    runner.destroy = () => {
      destroyed = true;
      destroy();
    };
    const running = solo.generate({ prompt: 'Once upon a time', maxTokens: 100, ignoreEos: true, sampling: greedy });
    const queued = errorOf(solo.complete({ prompt: 'The dog', maxTokens: 100, ignoreEos: true, sampling: greedy }));
    const it = running[Symbol.asyncIterator]();
    expect((await it.next()).done).toBe(false);
    expect(solo.stats().waiting).toBe(1);
    const first = solo.close();
    await solo.close();
    // the second call used to resolve at once, before anything was freed
    expect(destroyed).toBe(true);
    await first;
    // the stream used to just end (the server then answered finish_reason 'length'), and
    // complete() threw an internal_error
    let e: unknown = null;
    try {
      for (let r = await it.next(); !r.done; r = await it.next());
    } catch (err) {
      e = err;
    }
    expect(isAutoGlmError(e, 'server_draining'), String(e)).toBe(true);
    expect(isAutoGlmError(await queued, 'server_draining')).toBe(true);
    expect(isAutoGlmError(await errorOf(solo.complete({ prompt: 'x' })), 'server_draining')).toBe(true);
    const s = solo.stats();
    expect([s.waiting, s.running, s.kvBlocksUsed]).toEqual([0, 0, 0]);
  });
});

describe('Engine.load', () => {
  let root: string;
  beforeAll(async () => {
    root = await mkdtemp(join(tmpdir(), 'autoglm-library-api-'));
  });
  afterAll(async () => {
    await rm(root, { recursive: true, force: true });
  });

  it('bad options are invalid_request naming the option, before the weights are read', async () => {
    for (const [options, param] of [
      [{ maxContextTokens: Number.NaN }, 'maxContextTokens'],
      [{ maxContextTokens: 0 }, 'maxContextTokens'],
      [{ maxBatchSequences: 0 }, 'maxBatchSequences'],
      [{ maxBatchTokens: 2.5 }, 'maxBatchTokens'],
      [{ kvCacheBytes: Number.NaN }, 'kvCacheBytes'],
      [{ responseCacheEntries: -1 }, 'responseCacheEntries'],
      [{ promptLogprobsRows: 1.5 }, 'promptLogprobsRows'],
      [{ promptLogprobsRows: -1 }, 'promptLogprobsRows'],
      [{ schedulingPolicy: 'lifo' as never }, 'schedulingPolicy'],
      [{ servedModelName: '' }, 'servedModelName'],
      [{ forceF32: 'no' as never }, 'forceF32'],
      [{ foldNorms: 1 as never }, 'foldNorms'],
      // was refused only after the upload
      [{ kvBlockSize: 2048 }, 'kvBlockSize'],
      // past a step's row limit: an untyped RangeError or a GPU allocation error after the upload
      [{ maxBatchSequences: 1e9 }, 'maxBatchSequences'],
      [{ maxBatchTokens: 65536 }, 'maxBatchTokens'],
      // was blamed on AUTOGLM_KERNEL_PROFILE
      [{ kernelProfile: 'bogus' as never }, 'kernelProfile'],
    ] as const) {
      // a folder that does not exist: the options must be refused before it is looked at
      const e = await errorOf(Engine.load(join(root, 'absent'), options));
      expect(isAutoGlmError(e, 'invalid_request'), `${JSON.stringify(options)}: ${String(e)}`).toBe(true);
      expect((e as { param?: string }).param).toBe(param);
    }
  });

  it('a bad AUTOGLM_GPU_EVENT_POLLING is invalid_request naming the variable, before the folder is read', async () => {
    const saved = process.env.AUTOGLM_GPU_EVENT_POLLING;
    process.env.AUTOGLM_GPU_EVENT_POLLING = 'sometimes';
    try {
      // was model_load_failed for the absent folder: the variable was read only when the GPU was acquired
      const e = await errorOf(Engine.load(join(root, 'absent')));
      expect(isAutoGlmError(e, 'invalid_request'), String(e)).toBe(true);
      expect((e as { param?: string }).param).toBe('AUTOGLM_GPU_EVENT_POLLING');
      expect((e as Error).message).toMatch(/^AUTOGLM_GPU_EVENT_POLLING must be one of auto, spin, paced/);
    } finally {
      if (saved === undefined) delete process.env.AUTOGLM_GPU_EVENT_POLLING;
      else process.env.AUTOGLM_GPU_EVENT_POLLING = saved;
    }
  });

  it('a load that finds no GPU closes the weights file', async () => {
    const dir = join(root, 'model');
    await cp(DEMO, dir, { recursive: true });
    const weightsFile = join(dir, 'model.safetensors');
    const openOnWeights = () =>
      readdirSync('/proc/self/fd').filter((fd) => {
        try {
          return readlinkSync(join('/proc/self/fd', fd)) === weightsFile;
        } catch {
          return false;
        }
      }).length;
    const e = await errorOf(Engine.load(dir, { adapter: 'no-such-adapter' }));
    expect(isAutoGlmError(e, 'gpu_unavailable'), String(e)).toBe(true);
    // the handle was left to the garbage collector (Node warns when it closes one)
    expect(openOnWeights()).toBe(0);
  });
});
