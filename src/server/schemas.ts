/**
 * JSON schemas for every route. Type and range checks live here so fastify rejects bad
 * input before a handler runs; checks that need the model (context length, known model
 * name) happen in the handlers. Unknown top-level fields are accepted and ignored, as
 * OpenAI's API does, so newer clients keep working.
 */

const nullable = (t: string | string[]): string[] => [...(Array.isArray(t) ? t : [t]), 'null'];
const tokenId = { type: 'integer', minimum: 0 } as const;

/** Sampling and output controls shared by chat and completions. */
const commonProperties = {
  model: { type: 'string', minLength: 1 },
  stream: { type: nullable('boolean') },
  stream_options: {
    type: nullable('object'),
    properties: { include_usage: { type: nullable('boolean') } },
  },
  n: { type: nullable('integer'), minimum: 1 },
  max_tokens: { type: nullable('integer'), minimum: 1 },
  // vLLM's: each prompt token's logprob and rank, with this many alternatives
  prompt_logprobs: { type: nullable('integer'), minimum: 0, maximum: 20 },
  min_tokens: { type: nullable('integer'), minimum: 0 },
  // vLLM's: only the prompt's last N tokens are used (left truncation)
  truncate_prompt_tokens: { type: nullable('integer'), minimum: 1 },
  // vLLM's: with --scheduling-policy priority, lower values are served first
  priority: { type: nullable('integer'), minimum: -(2 ** 31), maximum: 2 ** 31 - 1 },
  temperature: { type: nullable('number'), minimum: 0, maximum: 2 },
  top_p: { type: nullable('number'), exclusiveMinimum: 0, maximum: 1 },
  top_k: { type: nullable('integer'), minimum: -1 },
  min_p: { type: nullable('number'), minimum: 0, maximum: 1 },
  repetition_penalty: { type: nullable('number'), exclusiveMinimum: 0, maximum: 10 },
  presence_penalty: { type: nullable('number'), minimum: -2, maximum: 2 },
  frequency_penalty: { type: nullable('number'), minimum: -2, maximum: 2 },
  seed: { type: nullable('integer'), minimum: 0 },
  // token id (as a JSON key) -> bias; keys and the vocabulary are checked by the engine
  logit_bias: {
    type: nullable('object'),
    maxProperties: 1024,
    additionalProperties: { type: 'number', minimum: -100, maximum: 100 },
  },
  // json_object / json_schema are enforced by constrained decoding; the engine checks the schema's keywords
  response_format: {
    description:
      "null, {type: 'text'}, {type: 'json_object'} or {type: 'json_schema', json_schema: {name: string, schema: object, strict?: boolean}}",
    anyOf: [
      { type: 'null' },
      { type: 'object', required: ['type'], properties: { type: { enum: ['text', 'json_object'] } } },
      {
        type: 'object',
        required: ['type', 'json_schema'],
        properties: {
          type: { const: 'json_schema' },
          json_schema: {
            type: 'object',
            required: ['name', 'schema'],
            properties: {
              name: { type: 'string', minLength: 1, maxLength: 64 },
              description: { type: 'string' },
              // (anyOf, not a type list: ajv's strict mode warns at start-up about unions other than with null)
              schema: { anyOf: [{ type: 'object' }, { type: 'boolean' }] },
              strict: { type: nullable('boolean') },
            },
          },
        },
      },
    ],
  },
  // vLLM's structured outputs (structured-outputs.ts); the engine checks bounds, patterns and schemas
  guided_choice: { type: nullable('array'), items: { type: 'string' } },
  guided_regex: { type: nullable('string') },
  guided_json: {
    description: 'null, a JSON Schema (an object or a boolean), or a string holding one',
    anyOf: [{ type: 'null' }, { type: 'object' }, { type: 'boolean' }, { type: 'string' }],
  },
  structured_outputs: {
    type: nullable('object'),
    properties: {
      choice: { type: nullable('array'), items: { type: 'string' } },
      regex: { type: nullable('string') },
      json: {
        description: 'null, a JSON Schema (an object or a boolean), or a string holding one',
        anyOf: [{ type: 'null' }, { type: 'object' }, { type: 'boolean' }, { type: 'string' }],
      },
      json_object: { type: nullable('boolean') },
    },
  },
  stop: {
    description: 'null, a string, or an array of at most 16 non-empty strings',
    anyOf: [{ type: 'null' }, { type: 'string' }, { type: 'array', items: { type: 'string', minLength: 1 }, maxItems: 16 }],
  },
  // vLLM's: the stop string that ended the output stays at its end
  include_stop_str_in_output: { type: nullable('boolean') },
  stop_token_ids: { type: nullable('array'), items: tokenId },
  ignore_eos: { type: nullable('boolean') },
  user: { type: nullable('string') },
  // Cluster extensions (the gateway relies on these).
  return_token_ids: { type: nullable('boolean') },
  resume_token_ids: { type: nullable('array'), items: tokenId },
} as const;

/** A past call in an assistant message; arguments are JSON text, parsed before templating (chat-messages.ts). */
const messageToolCallSchema = {
  type: 'object',
  required: ['id', 'type', 'function'],
  properties: {
    id: { type: 'string' },
    type: { const: 'function' },
    function: {
      type: 'object',
      required: ['name', 'arguments'],
      properties: { name: { type: 'string', minLength: 1 }, arguments: { type: 'string' } },
    },
  },
} as const;

const messageSchema = {
  type: 'object',
  required: ['role'],
  properties: {
    role: { type: 'string', minLength: 1 },
    content: {
      description: "null, a string, or an array of text parts ({type: 'text', text: string})",
      anyOf: [
        { type: 'null' },
        { type: 'string' },
        {
          type: 'array',
          items: {
            type: 'object',
            required: ['type'],
            // A text model: only text parts (images or audio would be silently lost otherwise).
            properties: { type: { const: 'text' }, text: { type: 'string' } },
          },
        },
      ],
    },
    name: { type: 'string' },
    tool_calls: { type: nullable('array'), items: messageToolCallSchema },
    tool_call_id: { type: 'string' },
  },
  // A tool result answers one call; without its id a client's bookkeeping is broken (OpenAI requires it too).
  if: { required: ['role'], properties: { role: { const: 'tool' } } },
  then: { required: ['tool_call_id'] },
} as const;

/** OpenAI's function tools; `parameters` is a JSON Schema the template renders as it is. */
const toolsSchema = {
  type: nullable('array'),
  items: {
    type: 'object',
    required: ['type', 'function'],
    properties: {
      type: { const: 'function' },
      function: {
        type: 'object',
        required: ['name'],
        properties: {
          name: { type: 'string', minLength: 1 },
          description: { type: 'string' },
          parameters: { type: 'object' },
          strict: { type: nullable('boolean') },
        },
      },
    },
  },
} as const;

const toolChoiceSchema = {
  description: "null, 'none', 'auto', 'required' or {type: 'function', function: {name: string}}",
  anyOf: [
    { type: 'null' },
    { enum: ['none', 'auto', 'required'] },
    {
      type: 'object',
      required: ['type', 'function'],
      properties: {
        type: { const: 'function' },
        function: { type: 'object', required: ['name'], properties: { name: { type: 'string' } } },
      },
    },
  ],
} as const;

export const chatCompletionSchema = {
  body: {
    type: 'object',
    required: ['model', 'messages'],
    properties: {
      ...commonProperties,
      messages: { type: 'array', minItems: 1, items: messageSchema },
      max_completion_tokens: { type: nullable('integer'), minimum: 1 },
      logprobs: { type: nullable('boolean') },
      top_logprobs: { type: nullable('integer'), minimum: 0, maximum: 20 },
      chat_template_kwargs: { type: nullable('object') },
      tools: toolsSchema,
      tool_choice: toolChoiceSchema,
      parallel_tool_calls: { type: nullable('boolean') },
      // vLLM's: false leaves the reasoning out of the answer (it is still generated)
      include_reasoning: { type: nullable('boolean') },
    },
  },
} as const;

export const completionSchema = {
  body: {
    type: 'object',
    required: ['model', 'prompt'],
    properties: {
      ...commonProperties,
      prompt: {
        description:
          'a string, a non-empty array of strings, a non-empty array of token ids (integers >= 0), or a non-empty array of non-empty token id arrays',
        anyOf: [
          { type: 'string' },
          { type: 'array', minItems: 1, items: { type: 'string' } },
          { type: 'array', minItems: 1, items: tokenId },
          { type: 'array', minItems: 1, items: { type: 'array', minItems: 1, items: tokenId } },
        ],
      },
      // 0 only with echo (the prompt alone), which the handler checks
      max_tokens: { type: nullable('integer'), minimum: 0 },
      logprobs: { type: nullable('integer'), minimum: 0, maximum: 20 },
      // the prompt returned before the completion (with logprobs: its tokens' logprobs too)
      echo: { type: nullable('boolean') },
      // a best_of other than n is refused by the handler, saying it is not supported
      suffix: { type: 'null' },
      best_of: { type: nullable('integer'), minimum: 1 },
    },
  },
} as const;

export const tokenizeSchema = {
  body: {
    type: 'object',
    properties: {
      model: { type: 'string' },
      prompt: { type: 'string' },
      messages: { type: 'array', minItems: 1, items: messageSchema },
      // with messages: what a chat completion would put in the template too (vLLM's /tokenize)
      tools: toolsSchema,
      chat_template_kwargs: { type: nullable('object') },
      add_special_tokens: { type: 'boolean' },
      add_generation_prompt: { type: 'boolean' },
    },
    description: "an object with exactly one of 'prompt' and 'messages'",
    oneOf: [{ required: ['prompt'] }, { required: ['messages'] }],
  },
} as const;

export const detokenizeSchema = {
  body: {
    type: 'object',
    required: ['tokens'],
    properties: { model: { type: 'string' }, tokens: { type: 'array', items: tokenId } },
  },
} as const;
