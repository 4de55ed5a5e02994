import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { loadGenerationConfig } from '../../src/engine/model/generation-config.js';
import { loadTokenizer } from '../../src/engine/tokenizer/index.js';
import { SUPPORTED_ARCHITECTURES } from '../../src/engine/model/model-spec.js';
import { generateTestModel } from '../../src/testing/generate-model.js';
import { argmax, loadReferenceModel, topGap } from '../reference/forward.js';

const root = join(import.meta.dirname, '..', '..');
const DEMO = join(root, 'models/demo-stories');

const EXPECTED_CAT =
  'Once upon a time, there was a curious cow named Lucy. Lucy loved to play in the farm. One day, Lucy found a blue box. Lucy felt sad and smiled. Lucy asked the frog, "Do you want to play with my box?" Then a big wind took the box away. Lucy learned that it is good to share. That night, Lucy slept with the box and had happy dreams.';

describe('reference forward pass on demo-stories (real bf16 weights)', () => {
  it('greedy answer to "Tell me a story about a cat." is the README text, ending in </s>', async () => {
    const model = await loadReferenceModel(DEMO);
    const tok = await loadTokenizer(DEMO);
    const gen = await loadGenerationConfig(DEMO, model.spec);
    const prompt = tok.applyChatTemplate([{ role: 'user', content: 'Tell me a story about a cat.' }]);
    const { tokens } = model.greedy(prompt, { maxTokens: 400, stopTokenIds: gen.eosTokenIds });
    expect(tokens.at(-1)).toBe(257);
    expect(tok.decode(tokens, { skipSpecialTokens: true })).toBe(EXPECTED_CAT);
  });
});

describe('reference forward pass on generated models', () => {
  const dirs: string[] = [];
  afterAll(() => dirs.forEach((d) => rmSync(d, { recursive: true, force: true })));

  for (const architecture of SUPPORTED_ARCHITECTURES) {
    it(`${architecture}: cached decode equals full recompute, logits well spread, greedy output varied`, async () => {
      const dir = mkdtempSync(join(tmpdir(), `ref-${architecture}-`));
      dirs.push(dir);
      await generateTestModel(dir, { architecture, seed: 7 });
      const model = await loadReferenceModel(dir);
      const prompt = Array.from({ length: 24 }, (_, i) => (i * 37 + 11) % 256);
      const cache = model.newCache();
      const prefill = model.forward(prompt.slice(0, 20), cache);
      const decoded = model.forward(prompt.slice(20), cache);
      const full = model.forward(prompt);
      [...prefill, ...decoded].forEach((l, i) => {
        for (let v = 0; v < l.length; v++) expect(Math.abs(l[v]! - full[i]![v]!)).toBeLessThan(1e-9);
      });
      // the last logits depend on the whole prompt, not only the last token
      const other = model.forward([...prompt.slice(0, 23).reverse(), prompt[23]!]);
      expect(argmax(other.at(-1)!) !== argmax(full.at(-1)!) || topGap(other.at(-1)!) !== topGap(full.at(-1)!)).toBe(true);

      const { tokens, logits } = model.greedy(prompt, { maxTokens: 32 });
      const gaps = logits.map(topGap).sort((a, b) => a - b);
      expect(gaps[Math.floor(gaps.length / 2)]).toBeGreaterThan(0.1);
      expect(new Set(tokens).size).toBeGreaterThanOrEqual(6);
    });
  }
});
