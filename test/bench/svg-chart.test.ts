import { describe, expect, it } from 'vitest';
import { barChart, escapeXml, lineChart, niceTicks } from '../../src/bench/svg-chart.js';

/** A strict enough XML well-formedness check: every tag closes in order, attributes quoted, entities known. */
function assertWellFormed(xml: string): void {
  const stack: string[] = [];
  const tag = /<(\/?)([a-zA-Z][\w:-]*)((?:\s+[\w:-]+="[^"<]*")*)\s*(\/?)>/g;
  let last = 0;
  let m: RegExpExecArray | null;
  while ((m = tag.exec(xml)) !== null) {
    const text = xml.slice(last, m.index);
    expect(text).not.toMatch(/[<>]/);
    expect(text.replace(/&(lt|gt|amp|apos|quot);/g, '')).not.toContain('&');
    last = tag.lastIndex;
    const [, closing, name, , selfClosing] = m;
    if (closing) expect(stack.pop()).toBe(name);
    else if (!selfClosing) stack.push(name!);
  }
  expect(xml.slice(last).trim()).toBe('');
  expect(stack).toEqual([]);
}

describe('svg charts', () => {
  it('nice ticks are round steps covering the range', () => {
    expect(niceTicks(0, 97)).toEqual([0, 20, 40, 60, 80, 100]);
    expect(niceTicks(0, 1)).toEqual([0, 0.2, 0.4, 0.6, 0.8, 1]);
    expect(niceTicks(0, 0)).toEqual([0, 0.2, 0.4, 0.6, 0.8, 1]);
    const t = niceTicks(3, 4380);
    expect(t[0]).toBeLessThanOrEqual(3);
    expect(t[t.length - 1]).toBeGreaterThanOrEqual(4380);
  });

  it('line chart: well-formed SVG with one polyline per series, points placed by value, text escaped', () => {
    const svg = lineChart({
      title: 'Throughput <batch> & "latency"',
      xLabel: 'batch',
      yLabel: 'tokens/s',
      logX: true,
      series: [
        { name: 'ctx 128', points: [1, 2, 4, 8].map((x) => ({ x, y: x * 10 })) },
        { name: "ctx 1024 'long'", points: [1, 2, 4, 8].map((x) => ({ x, y: x * 5 })) },
        { name: 'empty', points: [] },
      ],
    });
    assertWellFormed(svg);
    expect(svg.startsWith('<svg xmlns="http://www.w3.org/2000/svg"')).toBe(true);
    expect(svg).toContain('Throughput &lt;batch&gt; &amp; &quot;latency&quot;');
    expect(svg).toContain('ctx 1024 &apos;long&apos;');
    const polylines = [...svg.matchAll(/<polyline [^>]*points="([^"]+)"/g)].map((m) =>
      m[1]!.split(' ').map((p) => p.split(',').map(Number)),
    );
    expect(polylines).toHaveLength(2);
    // log-2 x axis: batches 1, 2, 4, 8 evenly spaced; larger y is higher (smaller SVG y)
    const xs = polylines[0]!.map((p) => p[0]!);
    expect(xs[1]! - xs[0]!).toBeCloseTo(xs[3]! - xs[2]!, 0);
    const ys = polylines[0]!.map((p) => p[1]!);
    for (let i = 1; i < ys.length; i++) expect(ys[i]!).toBeLessThan(ys[i - 1]!);
    expect(polylines[1]![3]![1]).toBeGreaterThan(polylines[0]![3]![1]!);
    for (const label of ['1', '2', '4', '8']) expect(svg).toContain(`>${label}</text>`);
  });

  it('bar chart: a bar per value with height proportional to it; NaN values skipped', () => {
    const svg = barChart({
      title: 'Latency',
      yLabel: 'ms',
      groups: [
        {
          label: 'TTFT',
          values: [
            { name: 'median', value: 50 },
            { name: 'p99', value: 100 },
          ],
        },
        {
          label: 'TPOT',
          values: [
            { name: 'median', value: 25 },
            { name: 'p99', value: Number.NaN },
          ],
        },
      ],
    });
    assertWellFormed(svg);
    const bars = [...svg.matchAll(/<rect x="[^"]+" y="[^"]+" width="[^"]+" height="([^"]+)" fill="[^"]+"><title>/g)].map((m) =>
      Number(m[1]),
    );
    expect(bars).toHaveLength(3);
    expect(bars[1]! / bars[0]!).toBeCloseTo(2, 1);
    expect(bars[0]! / bars[2]!).toBeCloseTo(2, 1);
    expect(escapeXml(`a<b>&'"`)).toBe('a&lt;b&gt;&amp;&apos;&quot;');
  });
});
