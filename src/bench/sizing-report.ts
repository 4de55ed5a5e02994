/** Markdown and SVG charts of a sizing run: static table, measured decode curves, TPOT target. */
import { formatBytes } from './byte-size.js';
import type { DecodePoint } from './decode-curves.js';
import { metadataSection, num, table } from './markdown.js';
import type { RunMetadata } from './run-metadata.js';
import type { StaticSizing } from './sizing.js';
import { lineChart } from './svg-chart.js';

export interface SizingResults {
  static: StaticSizing;
  measured: DecodePoint[] | null;
  tpotTargetMs: number | null;
  largestBatch: { contextTokens: number; batch: number | null; tpotMs: number | null }[] | null;
}

export function sizingCharts(points: readonly DecodePoint[]): Record<string, string> {
  if (points.length === 0) return {};
  const contexts = [...new Set(points.map((p) => p.contextTokens))];
  const series = (y: (p: DecodePoint) => number) =>
    contexts.map((c) => ({
      name: `context ${c}`,
      points: points.filter((p) => p.contextTokens === c).map((p) => ({ x: p.batch, y: y(p) })),
    }));
  return {
    throughput: lineChart({
      title: 'Decode throughput vs batch size',
      xLabel: 'batch (sequences)',
      yLabel: 'output tokens/s',
      logX: true,
      series: series((p) => p.decodeTokensPerS),
    }),
    latency: lineChart({
      title: 'Time per output token vs batch size',
      xLabel: 'batch (sequences)',
      yLabel: 'TPOT (ms)',
      logX: true,
      series: series((p) => p.tpotMs),
    }),
  };
}

export function sizingMarkdown(meta: RunMetadata, r: SizingResults, chartFiles: Record<string, string>): string {
  const s = r.static;
  const out = [
    '# GPU sizing report',
    '',
    metadataSection(meta),
    '',
    `## Static sizing (${s.dtype}, ${formatBytes(s.memoryBytes)} device memory)`,
    '',
    table(
      ['quantity', 'value'],
      [
        ['parameters', s.parameters.toLocaleString('en-US')],
        ['weights', formatBytes(s.weightBytes)],
        ['KV cache per token', formatBytes(s.kvBytesPerToken)],
        ['usable memory', formatBytes(s.usableBytes)],
        ['step working set (f32 activations, logits)', formatBytes(s.activationBytes)],
        ...(s.loraBytes > 0 ? [['LoRA adapter slots (every projection)', formatBytes(s.loraBytes)]] : []),
        [
          'KV budget',
          `${formatBytes(s.kvBudgetBytes)} = ${s.kvBlocks.toLocaleString('en-US')} blocks of ${s.blockSize} = ${s.kvTokenCapacity.toLocaleString('en-US')} tokens`,
        ],
        ['fits', s.fits ? 'yes' : 'no: the weights alone exceed the usable memory'],
      ],
    ),
    '',
    table(
      ['context', 'KV per sequence', 'max sequences', 'TPOT bound (ms)', 'decode tokens/s bound'],
      s.contexts.map((c) => [
        c.contextTokens,
        formatBytes(c.kvBytesPerSequence),
        c.maxSequences,
        num(c.tpotLowerBoundMs),
        num(c.decodeTokensPerSUpperBound),
      ]),
    ),
    '',
  ];
  if (r.measured) {
    out.push(
      '## Measured on this adapter',
      '',
      'Steady decode window only (every sequence of the batch decoding); medians over repeats, spread = (max - min) / median.',
      '',
      table(
        ['context', 'batch', 'TPOT ms', 'spread', 'output tokens/s', 'prefill ms (slowest TTFT)', 'preemptions'],
        r.measured.map((p) => [
          p.contextTokens,
          p.batch,
          num(p.tpotMs),
          `${(p.tpotSpread * 100).toFixed(0)}%`,
          num(p.decodeTokensPerS),
          num(p.prefillMs),
          p.preemptions,
        ]),
      ),
      '',
    );
    if (r.tpotTargetMs !== null && r.largestBatch) {
      out.push(
        `### Largest batch meeting TPOT <= ${r.tpotTargetMs} ms`,
        '',
        table(
          ['context', 'largest batch', 'its TPOT ms'],
          r.largestBatch.map((b) => [b.contextTokens, b.batch ?? 'none', num(b.tpotMs)]),
        ),
        '',
      );
    }
    for (const [name, file] of Object.entries(chartFiles)) out.push(`![${name}](${file})`, '');
  }
  return out.join('\n');
}
