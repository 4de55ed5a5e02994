import { describe, expect, it } from 'vitest';
import { StopStringMatcher } from '../../src/engine/tokenizer/index.js';

function run(stops: string[], deltas: string[], includeStop = false): { emitted: string[]; stopped: boolean; stop?: string } {
  const m = new StopStringMatcher(stops, { includeStop });
  const emitted: string[] = [];
  for (const d of deltas) {
    const r = m.push(d);
    emitted.push(r.text);
    if (r.stopped) return { emitted, stopped: true, ...(r.stop === undefined ? {} : { stop: r.stop }) };
  }
  emitted.push(m.flush());
  return { emitted, stopped: false };
}

describe('StopStringMatcher', () => {
  it('holds back a possible stop-string start and drops the stop string split across deltas', () => {
    const r = run(['\nUser:'], ['Hello', ' there\n', 'Us', 'er: more']);
    expect(r.emitted).toEqual(['Hello', ' there', '', '']);
    expect(r.stopped).toBe(true);
    expect(r.stop).toBe('\nUser:');
  });

  it('releases held text when it turns out not to be a stop string', () => {
    const r = run(['END'], ['the E', 'N', 'D', 'ing']);
    expect(r.emitted.join('')).toBe('the ');
    const r2 = run(['END'], ['the E', 'N', 'o']);
    expect(r2.emitted).toEqual(['the ', '', 'ENo', '']);
    expect(r2.stopped).toBe(false);
  });

  it('stops at the earliest of several stop strings, emoji and CJK included', () => {
    const r = run(['猫', '😀!'], ['ab😀', '!x猫']);
    expect(r.emitted.join('')).toBe('ab');
    expect(r.stop).toBe('😀!');
    const r2 = run(['。', 'zz'], ['你好', '。再见']);
    expect(r2.emitted).toEqual(['你好', '']);
  });

  it('emits everything when there are no stop strings, and flush returns the held tail', () => {
    expect(run([], ['a', 'b']).emitted).toEqual(['a', 'b', '']);
    expect(run([''], ['a']).emitted).toEqual(['a', '']);
    expect(run(['xyz'], ['abcxy']).emitted).toEqual(['abc', 'xy']);
  });

  it('with includeStop, the stop string that matched ends the text (split across deltas too) and what follows is dropped', () => {
    const r = run(['\nUser:'], ['Hello', ' there\n', 'Us', 'er: more'], true);
    expect(r.emitted).toEqual(['Hello', ' there', '', '\nUser:']);
    expect(r.stop).toBe('\nUser:');
    // the earliest of several, not the longest
    expect(run(['猫', '😀!'], ['ab😀', '!x猫'], true).emitted.join('')).toBe('ab😀!');
    expect(run(['END'], ['the E', 'N', 'o'], true).emitted.join('')).toBe('the ENo');
  });

  it('after a stop, further deltas produce nothing', () => {
    const m = new StopStringMatcher(['.']);
    expect(m.push('a.b')).toEqual({ text: 'a', stopped: true, stop: '.' });
    expect(m.push('more')).toEqual({ text: '', stopped: true });
    expect(m.flush()).toBe('');
  });
});
