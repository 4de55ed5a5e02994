/** The generate() iterator's channel, misused the way a hand-written consumer may. */
import { describe, expect, it } from 'vitest';
import { EventChannel } from '../../src/engine/event-channel.js';

describe('EventChannel', () => {
  it('next() called again before the last call settled gets the values in order, then done', async () => {
    // Promise.all over next() used to hang: each call replaced the one pending waiter.
    const channel = new EventChannel<number>();
    const it = channel[Symbol.asyncIterator]();
    const pending = Promise.all([it.next(), it.next(), it.next(), it.next()]);
    channel.push(1);
    channel.push(2);
    channel.push(3);
    channel.close();
    expect(await pending).toEqual([
      { value: 1, done: false },
      { value: 2, done: false },
      { value: 3, done: false },
      { value: undefined, done: true },
    ]);
  });

  it('a failure rejects every pending next()', async () => {
    const channel = new EventChannel<number>();
    const it = channel[Symbol.asyncIterator]();
    const a = it.next();
    const b = it.next();
    channel.fail(new Error('boom'));
    await expect(a).rejects.toThrow('boom');
    await expect(b).rejects.toThrow('boom');
  });

  it('return() settles a pending next() and calls the exit hook once', async () => {
    const channel = new EventChannel<number>();
    let exits = 0;
    channel.onConsumerExit(() => exits++);
    const it = channel[Symbol.asyncIterator]();
    const pending = it.next();
    await it.return!();
    expect(await pending).toEqual({ value: undefined, done: true });
    await it.return!();
    expect(exits).toBe(1);
  });
});
