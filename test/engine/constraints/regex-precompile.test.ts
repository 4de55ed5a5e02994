/**
 * Regex and choice formats compiled in slices (compileRegexSteps, precompile): the sliced
 * compile pauses and builds the same grammar as the inline one, a precompiled format or
 * refusal is what compile() then returns or throws without compiling again, and a pattern
 * that takes long to refuse lets the event loop run while it is compiled.
 */
import { describe, expect, it } from 'vitest';
import { compileRegex, compileRegexSteps } from '../../../src/engine/constraints/regex.js';
import { isAutoGlmError } from '../../../src/errors.js';
import { byteConstraints } from '../../helpers/byte-vocabulary.js';
import { thrown } from '../../helpers/caught.js';
import { eventLoopTurnsDuring, runCountingPauses } from '../../helpers/event-loop.js';

const constraints = byteConstraints;
/** Ambiguous: each DFA state is a large set of NFA states; refused as too complex after about a second of work. */
const AMBIGUOUS = '(\\w+ ?){1,100}';

describe('sliced regex compile', () => {
  it('pauses on a large pattern and builds what the inline compile builds', () => {
    const pattern = '[a-z]{1,1000}[0-9]{1,1000}';
    const { value, pauses } = runCountingPauses(compileRegexSteps(pattern));
    expect(pauses).toBeGreaterThan(0);
    const inline = compileRegex(pattern);
    expect(value.nodeCount).toBe(inline.nodeCount);
    expect(Array.from(value.final)).toEqual(Array.from(inline.final));
  });

  it('precompile caches the grammar for compile(), and a refusal, which compile() then throws as it is', async () => {
    const c = constraints();
    const ok = { type: 'regex' as const, pattern: '(yes|no)' };
    await c.precompile(ok);
    expect(c.compile(ok)).toBe(c.compile(ok));
    const bad = { type: 'regex' as const, pattern: AMBIGUOUS, param: 'guided_regex' };
    await c.precompile(bad);
    const first = thrown(() => c.compile(bad));
    expect(isAutoGlmError(first, 'invalid_request')).toBe(true);
    expect((first as { param?: string }).param).toBe('guided_regex');
    expect((first as Error).message).toContain('too complex');
    // the same error object: remembered, not compiled again
    expect(thrown(() => c.compile(bad))).toBe(first);
  });

  it('a refusal found inline is remembered too', () => {
    const c = constraints();
    const first = thrown(() => c.compile({ type: 'regex', pattern: AMBIGUOUS }));
    expect(isAutoGlmError(first, 'invalid_request')).toBe(true);
    expect(thrown(() => c.compile({ type: 'regex', pattern: AMBIGUOUS }))).toBe(first);
  });

  it('the event loop keeps turning while a slow refusal compiles', async () => {
    const c = constraints();
    const ticks = await eventLoopTurnsDuring(() => c.precompile({ type: 'regex', pattern: AMBIGUOUS }));
    // inline, the whole compile is one turn of the loop: no ticks in between
    expect(ticks).toBeGreaterThan(20);
  });
});
