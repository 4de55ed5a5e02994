/** parseWorkerReport: what the gateway's probes read from a worker's /ready body, and what they leave unknown. */
import { describe, expect, it } from 'vitest';
import { parseWorkerReport } from '../../src/cluster/worker-report.js';

describe('parseWorkerReport', () => {
  it("reads a worker's body: instance, model, adapters and run-time adapters' folders", () => {
    const r = parseWorkerReport(
      JSON.stringify({
        status: 'ready',
        model: 'm',
        pending: 0,
        instance: 'ab12',
        adapters: ['fox', 'owl'],
        runtime_adapters: { owl: '/a/owl' },
      }),
    );
    expect(r.instance).toBe('ab12');
    expect(r.model).toBe('m');
    expect([...r.adapters!]).toEqual(['fox', 'owl']);
    expect([...r.runtimeAdapters!]).toEqual([['owl', '/a/owl']]);
  });

  it('leaves unknown (null, never empty) what a body does not say or says wrongly', () => {
    const unknown = { instance: null, model: null, adapters: null, runtimeAdapters: null };
    for (const body of ['', 'ok', 'null', '[1]', '"ready"', '{"status":"ready"}']) expect(parseWorkerReport(body), body).toEqual(unknown);
    const bad = parseWorkerReport(JSON.stringify({ instance: 7, model: '', adapters: ['a', 1], runtime_adapters: { a: 3 } }));
    expect(bad).toEqual(unknown);
    // an empty list is known: the worker serves no adapter
    expect([...parseWorkerReport('{"adapters":[],"runtime_adapters":{}}').adapters!]).toEqual([]);
  });
});
