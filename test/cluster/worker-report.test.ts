/** parseWorkerReport: what the gateway's probes read from a worker's /ready body, and what they leave unknown. */
import { describe, expect, it } from 'vitest';
import { parseWorkerReport, reportServes } from '../../src/cluster/worker-report.js';

describe('parseWorkerReport', () => {
  it("reads a worker's body: instance, model, adapters and run-time adapters' folders", () => {
    const r = parseWorkerReport(
      JSON.stringify({
        status: 'ready',
        model: 'm',
        aliases: ['m2'],
        pending: 0,
        instance: 'ab12',
        adapters: ['fox', 'owl'],
        runtime_adapters: { owl: '/a/owl' },
      }),
    );
    expect(r.instance).toBe('ab12');
    expect(r.model).toBe('m');
    expect([...r.aliases!]).toEqual(['m2']);
    expect([...r.adapters!]).toEqual(['fox', 'owl']);
    expect([...r.runtimeAdapters!]).toEqual([['owl', '/a/owl']]);
  });

  it('leaves unknown (null, never empty) what a body does not say or says wrongly', () => {
    const unknown = { instance: null, model: null, aliases: null, adapters: null, runtimeAdapters: null };
    for (const body of ['', 'ok', 'null', '[1]', '"ready"', '{"status":"ready"}']) expect(parseWorkerReport(body), body).toEqual(unknown);
    const bad = parseWorkerReport(JSON.stringify({ instance: 7, model: '', aliases: 'x', adapters: ['a', 1], runtime_adapters: { a: 3 } }));
    expect(bad).toEqual(unknown);
    // an empty list is known: the worker serves no adapter
    expect([...parseWorkerReport('{"adapters":[],"runtime_adapters":{}}').adapters!]).toEqual([]);
  });

  it('says which names a worker serves: its model, an alias or an adapter; unknown without a model name', () => {
    const r = parseWorkerReport(JSON.stringify({ model: 'm', aliases: ['m2'], adapters: ['fox'] }));
    expect(['m', 'm2', 'fox', 'owl', 'M'].map((n) => reportServes(r, n))).toEqual([true, true, true, false, false]);
    // an older worker's body (no aliases field) still serves its model
    expect(reportServes(parseWorkerReport('{"model":"m"}'), 'm')).toBe(true);
    expect(reportServes(parseWorkerReport('{"model":"m"}'), 'm2')).toBe(false);
    // a worker still loading (model null) or no report at all: unknown, never "does not serve"
    expect(reportServes(parseWorkerReport('{"status":"loading","model":null,"adapters":null}'), 'm')).toBeNull();
    expect(reportServes(null, 'm')).toBeNull();
  });
});
