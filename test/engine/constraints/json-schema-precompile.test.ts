/**
 * JSON Schema formats compiled in slices (compileJsonSchemaSteps, precompile): a schema near
 * the grammar's node limit (0.2-0.4 s of one core here) pauses while it compiles and builds
 * what the inline compile builds; precompile caches the grammar, or the refusal under the
 * parameter the schema came in, for compile(); and the event loop keeps turning meanwhile,
 * for a response format's schema as for tools' parameters.
 */
import { describe, expect, it } from 'vitest';
import { compileJsonSchema, compileJsonSchemaSteps } from '../../../src/engine/constraints/json-schema.js';
import { isAutoGlmError } from '../../../src/errors.js';
import { byteConstraints } from '../../helpers/byte-vocabulary.js';
import { thrown } from '../../helpers/caught.js';
import { eventLoopTurnsDuring, runCountingPauses } from '../../helpers/event-loop.js';

const constraints = byteConstraints;

/** An object of `n` object-valued properties, each with an enum of 20 strings: about 300 grammar nodes apiece. */
function wideSchema(n: number): Record<string, unknown> {
  const properties: Record<string, unknown> = {};
  for (let i = 0; i < n; i++) {
    const choices = Array.from({ length: 20 }, (_, j) => `v${i}_${j}`);
    properties[`field_${i}`] = { type: 'object', properties: { a: { type: 'integer' }, b: { enum: choices } }, required: ['a'] };
  }
  return { type: 'object', properties };
}

describe('sliced JSON Schema compile', () => {
  it('pauses on a large schema and builds what the inline compile builds', () => {
    const schema = wideSchema(200);
    const { value, pauses } = runCountingPauses(compileJsonSchemaSteps(schema));
    expect(pauses).toBeGreaterThan(0);
    const inline = compileJsonSchema(schema);
    expect(value.nodeCount).toBe(inline.nodeCount);
    expect(value.nodeCount).toBeGreaterThan(50_000);
    expect(Array.from(value.final)).toEqual(Array.from(inline.final));
  });

  it('precompile caches the grammar for compile(), and a refusal under the parameter the schema came in', async () => {
    const c = constraints();
    const ok = { type: 'json_schema' as const, schema: wideSchema(3) };
    await c.precompile(ok);
    expect(c.compile(ok)).toBe(c.compile(ok));
    const tooLarge = { type: 'json_schema' as const, schema: wideSchema(400), param: 'guided_json' };
    await c.precompile(tooLarge);
    const first = thrown(() => c.compile(tooLarge));
    expect(isAutoGlmError(first, 'invalid_request')).toBe(true);
    expect((first as { param?: string }).param).toBe('guided_json');
    expect((first as Error).message).toMatch(/^guided_json: the schema is too large/);
    // the same error object: remembered, not compiled again
    expect(thrown(() => c.compile(tooLarge))).toBe(first);
  });

  it('the event loop keeps turning while a large schema compiles', async () => {
    const c = constraints();
    const ticks = await eventLoopTurnsDuring(() => c.precompile({ type: 'json_schema', schema: wideSchema(250) }));
    // inline, the whole compile is one turn of the loop: no ticks in between
    expect(ticks).toBeGreaterThan(10);
  });

  it("tool calls' parameters schemas compile in slices too, and a refusal names the tool's parameters", async () => {
    const c = constraints();
    const tools = (n: number) => [
      { name: 'small', parameters: { type: 'object', properties: { q: { type: 'string' } } } },
      { name: 'wide', parameters: wideSchema(n) },
    ];
    const ok = { type: 'tool_calls' as const, syntax: 'hermes' as const, tools: tools(150), parallel: false };
    expect(await eventLoopTurnsDuring(() => c.precompile(ok))).toBeGreaterThan(5);
    expect(c.compile(ok)).toBe(c.compile(ok));
    const tooLarge = { ...ok, tools: tools(400) };
    await c.precompile(tooLarge);
    const refusal = thrown(() => c.compile(tooLarge));
    expect(isAutoGlmError(refusal, 'invalid_request')).toBe(true);
    expect((refusal as Error).message).toMatch(/^tools: the schema is too large/);
    expect((refusal as { param?: string }).param).toBe('tools');
    expect(thrown(() => c.compile(tooLarge))).toBe(refusal);
  });
});
