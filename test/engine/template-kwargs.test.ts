/** chat_template_kwargs keys that clash with what the renderer or the request supplies. */
import { Template } from '@huggingface/jinja';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { Engine } from '../../src/engine/engine.js';
import { isAutoGlmError } from '../../src/errors.js';
import { checkTemplateKwargs, TEMPLATE_LANGUAGE_GLOBALS } from '../../src/engine/tokenizer/template-kwargs.js';
import { failure } from '../helpers/caught.js';
import { DEMO } from '../helpers/demo-stories.js';

const paramOf = (kwargs: Record<string, unknown>, requestHasTools = false): string | undefined => {
  try {
    checkTemplateKwargs(kwargs, requestHasTools);
  } catch (e) {
    expect(isAutoGlmError(e, 'invalid_request')).toBe(true);
    return (e as { param?: string }).param;
  }
  return undefined;
};

describe('checkTemplateKwargs', () => {
  test("the template language's globals are exactly the names @huggingface/jinja refuses to declare again", () => {
    for (const name of TEMPLATE_LANGUAGE_GLOBALS)
      expect(() => new Template('{{ 1 }}').render({ [name]: 1 }), name).toThrow(`Variable already declared: ${name}`);
    // an ordinary template variable is the client's to set
    expect(new Template('{{ enable_thinking }}').render({ enable_thinking: false })).toBe('false');
  });

  test.each([
    [{ raise_exception: 1 }, false, 'chat_template_kwargs.raise_exception'],
    [{ None: 1 }, false, 'chat_template_kwargs.None'],
    [{ messages: [] }, false, 'chat_template_kwargs.messages'],
    // the request's tools are what the template gets: tools here would be dropped without a word
    [{ tools: [] }, true, 'chat_template_kwargs.tools'],
    [{ add_generation_prompt: 'no' }, false, 'chat_template_kwargs.add_generation_prompt'],
  ])('%j (request tools: %s) is refused naming %s', (kwargs, requestHasTools, param) => {
    expect(paramOf(kwargs, requestHasTools)).toBe(param);
  });

  test('what the client may set passes: its own variables, a boolean add_generation_prompt, tools when the request has none', () => {
    expect(paramOf({ enable_thinking: false, add_generation_prompt: false, constructor_name: 1 })).toBeUndefined();
    expect(paramOf({ tools: [] }, false)).toBeUndefined();
    expect(paramOf(Object.create(null) as Record<string, unknown>)).toBeUndefined();
  });
});

describe('the library checks them too (the demo engine)', () => {
  let engine: Engine;
  beforeAll(async () => {
    engine = await Engine.load(DEMO, { responseCacheEntries: 0 });
  });
  afterAll(async () => {
    await engine?.close();
  });

  test('generate() and tokenize() name the clashing key, where the template used to fail blamed on messages', async () => {
    const messages = [{ role: 'user', content: 'Tell me a story.' }];
    const refusal = async (run: () => Promise<unknown>): Promise<string | undefined> => {
      const e = await failure(run);
      expect(isAutoGlmError(e, 'invalid_request')).toBe(true);
      return (e as { param?: string }).param;
    };
    expect(await refusal(() => engine.complete({ prompt: messages, maxTokens: 1, chatTemplateKwargs: { raise_exception: 1 } }))).toBe(
      'chat_template_kwargs.raise_exception',
    );
    expect(await refusal(async () => engine.tokenize(messages, { chatTemplateKwargs: { messages: [] } }))).toBe(
      'chat_template_kwargs.messages',
    );
    // a library caller's tools travel in the kwargs: accepted
    expect((await engine.tokenize(messages, { chatTemplateKwargs: { tools: [] } })).length).toBeGreaterThan(0);
  });
});
