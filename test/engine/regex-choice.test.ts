/**
 * Regex and choice formats end to end in the engine (real weights, the GPU token-mask
 * kernel before sampling): on the demo model (a byte-level vocabulary that never saw most
 * of these texts) and on a tiny random-weight model with Qwen3's real tokenizer (150k
 * multi-byte tokens, whose masks are worked out by the vocabulary walk). Every output that
 * ends by itself matches the pattern whole, checked with JavaScript's RegExp anchored at
 * both ends; a cut one is a prefix of a match.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { GrammarAutomaton } from '../../src/engine/constraints/automaton.js';
import { compileRegex } from '../../src/engine/constraints/regex.js';
import { Engine } from '../../src/engine/engine.js';
import type { CompletionResult, GenerateRequest, ResponseFormat } from '../../src/engine/types.js';
import { isAutoGlmError } from '../../src/errors.js';
import { generateTestModel } from '../../src/testing/generate-model.js';
import { DEMO } from '../helpers/demo-stories.js';
import { failure } from '../helpers/caught.js';
import { TINY_QWEN3_MODEL } from '../helpers/qwen3.js';

const SEEDS = [1, 2, 3, 4, 5, 6];

/** A prefix of some match (the automaton has not rejected it). */
function isPrefix(pattern: string, text: string): boolean {
  const automaton = new GrammarAutomaton(compileRegex(pattern));
  return automaton.advanceBytes(automaton.initial(), new TextEncoder().encode(text)).length > 0;
}

function checkRegexOutputs(pattern: string, results: readonly CompletionResult[], minStopped: number): void {
  const re = new RegExp(`^(?:${pattern})$`, 'u');
  for (const r of results) {
    if (r.finishReason === 'stop') expect(re.test(r.text), `${pattern} wrote ${JSON.stringify(r.text)}`).toBe(true);
    else expect(isPrefix(pattern, r.text), `${pattern} wrote ${JSON.stringify(r.text)}`).toBe(true);
  }
  expect(results.filter((r) => r.finishReason === 'stop').length, pattern).toBeGreaterThanOrEqual(minStopped);
}

describe('regex and choice formats on the demo model', () => {
  let engine: Engine;
  beforeAll(async () => {
    engine = await Engine.load(DEMO, { responseCacheEntries: 0 });
  });
  afterAll(async () => {
    await engine?.close();
  });

  const sampled = (seed: number, responseFormat: ResponseFormat, extra: Partial<GenerateRequest> = {}): GenerateRequest => ({
    prompt: 'Once upon a time,',
    maxTokens: 80,
    sampling: { temperature: 1, seed },
    responseFormat,
    ...extra,
  });

  it('sampled outputs match the regex whole whenever they end by themselves', async () => {
    for (const pattern of [
      '(The|A) (cat|dog|bird) (sat|ran|sang)( happily)?\\.',
      '[A-Z][a-z]{2,8} is \\d{1,2} years old\\.',
      '\\{"name": "[a-z]{1,10}", "age": \\d{1,3}\\}',
      '[^\\n]{3,30}!',
    ]) {
      const results = await Promise.all(SEEDS.map((seed) => engine.complete(sampled(seed, { type: 'regex', pattern }))));
      checkRegexOutputs(pattern, results, SEEDS.length);
      expect(new Set(results.map((r) => r.text)).size, pattern).toBeGreaterThan(1);
    }
  });

  it('choice outputs are always one of the choices, ended by the constraint (finish_reason stop)', async () => {
    const choices = ['happy', 'sad', 'happy ending', 'the end'];
    const results = await Promise.all(SEEDS.map((seed) => engine.complete(sampled(seed, { type: 'choice', choices }))));
    for (const r of results) {
      expect(choices).toContain(r.text);
      expect(r.finishReason).toBe('stop');
    }
  });

  it('a complete match that cannot grow ends with EOS at once', async () => {
    const r = await engine.complete(sampled(3, { type: 'regex', pattern: 'yes' }));
    expect(r.text).toBe('yes');
    expect(r.finishReason).toBe('stop');
  });

  it('a max_tokens cut ends with finish_reason length and a prefix of a match', async () => {
    const pattern = '[a-z]{20,30}';
    const r = await engine.complete(sampled(2, { type: 'regex', pattern }, { maxTokens: 5 }));
    expect(r.finishReason).toBe('length');
    expect(isPrefix(pattern, r.text)).toBe(true);
  });

  it('a resumed request replays its tokens through the regex and continues exactly as the uninterrupted run', async () => {
    for (const format of [
      { type: 'regex', pattern: '[A-Z][a-z]{2,8} is \\d{1,2} years old\\.' },
      { type: 'choice', choices: ['once upon a time', 'once more', 'the end'] },
    ] satisfies ResponseFormat[]) {
      const request = sampled(4, format);
      const whole = await engine.complete(request);
      expect(whole.finishReason).toBe('stop');
      for (const cut of [1, Math.floor(whole.tokenIds.length / 2), whole.tokenIds.length - 1]) {
        const resumed = await engine.complete({ ...request, resumeTokenIds: whole.tokenIds.slice(0, cut) });
        expect(resumed.tokenIds).toEqual(whole.tokenIds.slice(cut));
      }
      const bad = await failure(() => engine.complete({ ...request, resumeTokenIds: [...new TextEncoder().encode('zz')] }));
      expect(isAutoGlmError(bad, 'invalid_request') && bad.param === 'resume_token_ids', String(bad)).toBe(true);
    }
  });

  it('refuses at admission what cannot be enforced, naming the parameter', async () => {
    const cases: [ResponseFormat, string, RegExp][] = [
      [{ type: 'regex', pattern: '(a)\\1' }, 'response_format', /backreference/],
      [{ type: 'regex', pattern: 'a(?=b)', param: 'guided_regex' }, 'guided_regex', /lookahead/],
      [{ type: 'regex', pattern: '[^\\x00-\\x{10FFFF}]', param: 'guided_regex' }, 'guided_regex', /matches no text/],
      [{ type: 'regex', pattern: 'x{5000}' }, 'response_format', /repeat count above 1000/],
      [{ type: 'choice', choices: [] }, 'response_format', /1 to 1024 strings/],
      [{ type: 'choice', choices: ['a', ''], param: 'guided_choice' }, 'guided_choice.1', /non-empty string/],
      [{ type: 'json_schema', schema: { type: 'object', patternProperties: {} }, param: 'guided_json' }, 'guided_json', /^guided_json/],
    ];
    for (const [format, param, message] of cases) {
      const e = await failure(() => engine.complete(sampled(1, format)));
      expect(isAutoGlmError(e, 'invalid_request'), String(e)).toBe(true);
      expect((e as { param: string }).param, JSON.stringify(format)).toBe(param);
      expect((e as Error).message, JSON.stringify(format)).toMatch(message);
    }
    expect(engine.stats().kvBlocksUsed).toBe(0);
  });
});

describe('regex and choice formats and the response cache', () => {
  let engine: Engine;
  beforeAll(async () => {
    engine = await Engine.load(DEMO);
  });
  afterAll(async () => {
    await engine?.close();
  });

  it('the pattern and the choices are part of the key', async () => {
    const request = (responseFormat: ResponseFormat): GenerateRequest => ({
      prompt: 'Once upon a time,',
      maxTokens: 30,
      sampling: { temperature: 1, seed: 7 },
      responseFormat,
    });
    const first = await engine.complete(request({ type: 'regex', pattern: '[a-m]{3,6}' }));
    const again = await engine.complete(request({ type: 'regex', pattern: '[a-m]{3,6}' }));
    expect(again.metrics!.responseCacheHit).toBe(true);
    expect(again.text).toBe(first.text);
    const other = await engine.complete(request({ type: 'regex', pattern: '[n-z]{3,6}' }));
    expect(other.metrics!.responseCacheHit).toBe(false);
    expect(other.text).toMatch(/^[n-z]{3,6}$/);
    const choice = await engine.complete(request({ type: 'choice', choices: ['[a-m]{3,6}'] }));
    expect(choice.metrics!.responseCacheHit).toBe(false);
    expect(choice.text).toBe('[a-m]{3,6}');
  });
});

describe('regex and choice formats on a model with the Qwen3 tokenizer', () => {
  let engine: Engine;
  let dir: string;
  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'regex-qwen3-'));
    await generateTestModel(dir, { ...TINY_QWEN3_MODEL, seed: 3 });
    engine = await Engine.load(dir, { responseCacheEntries: 0 });
  }, 120_000);
  afterAll(async () => {
    await engine?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('random-weight sampling under a regex: multi-byte tokens, Unicode classes, every output a whole match', async () => {
    for (const pattern of [
      '\\d{4}-\\d{2}-\\d{2}',
      '\\{"name": "[A-Za-z ]{1,12}", "tags": \\[("[a-z]{1,6}"(, "[a-z]{1,6}"){0,2})?\\]\\}',
      '[α-ω]{2,6}( [а-я]{2,6})?',
      '(?:[^\\n"]|\\\\")\\w{1,8}\\.',
    ]) {
      const results = await Promise.all(
        [1, 2, 3, 4].map((seed) =>
          engine.complete({
            prompt: 'Hello',
            maxTokens: 96,
            sampling: { temperature: 1, seed },
            responseFormat: { type: 'regex', pattern },
          }),
        ),
      );
      checkRegexOutputs(pattern, results, 3);
    }
  }, 240_000);

  it('choice outputs are one of the choices, ended by the constraint', async () => {
    const choices = ['positive', 'negative', 'neutral', 'négatif 😀'];
    const results = await Promise.all(
      [1, 2, 3, 4, 5].map((seed) =>
        engine.complete({
          prompt: 'Hello',
          maxTokens: 32,
          sampling: { temperature: 1, seed },
          responseFormat: { type: 'choice', choices },
        }),
      ),
    );
    for (const r of results) {
      expect(choices).toContain(r.text);
      expect(r.finishReason).toBe('stop');
    }
  }, 120_000);
});
