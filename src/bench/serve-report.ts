/** Markdown and SVG charts of a serving load run (one or several load levels). */
import type { LoadResult } from './load-generator.js';
import { SUMMARY_HEADERS, metadataSection, num, summaryRow, table } from './markdown.js';
import type { RunMetadata } from './run-metadata.js';
import { barChart, lineChart } from './svg-chart.js';

/** The x value of a level: its concurrency cap, else its request rate. */
export function levelOf(r: LoadResult): { label: string; x: number } {
  if (r.config.requestRate !== 'inf') return { label: `${r.config.requestRate} req/s`, x: r.config.requestRate };
  return { label: `concurrency ${r.config.maxConcurrency ?? 'unlimited'}`, x: r.config.maxConcurrency ?? r.config.numRequests };
}

export function serveCharts(levels: readonly LoadResult[]): Record<string, string> {
  const charts: Record<string, string> = {};
  const last = levels[levels.length - 1]!;
  const m = last.metrics;
  charts.percentiles = barChart({
    title: `Latency percentiles (${levelOf(last).label})`,
    yLabel: 'ms',
    groups: (['ttftMs', 'tpotMs', 'itlMs', 'e2eMs'] as const).map((k) => ({
      label: k.replace('Ms', '').toUpperCase(),
      values: (['mean', 'median', 'p90', 'p99'] as const).map((stat) => ({ name: stat, value: m[k][stat] })),
    })),
  });
  if (levels.length > 1) {
    const xName = last.config.requestRate !== 'inf' ? 'request rate (req/s)' : 'max concurrency';
    const pts = (f: (r: LoadResult) => number) => levels.map((r) => ({ x: levelOf(r).x, y: f(r) }));
    charts.throughput = lineChart({
      title: 'Throughput vs load',
      xLabel: xName,
      yLabel: 'output tokens/s',
      logX: last.config.requestRate === 'inf',
      series: [{ name: 'output tokens/s', points: pts((r) => r.metrics.outputTokensPerS) }],
    });
    charts.latency = lineChart({
      title: 'Latency vs load (medians and p99)',
      xLabel: xName,
      yLabel: 'ms',
      logX: last.config.requestRate === 'inf',
      series: [
        { name: 'TTFT median', points: pts((r) => r.metrics.ttftMs.median) },
        { name: 'TTFT p99', points: pts((r) => r.metrics.ttftMs.p99) },
        { name: 'TPOT median', points: pts((r) => r.metrics.tpotMs.median) },
        { name: 'TPOT p99', points: pts((r) => r.metrics.tpotMs.p99) },
      ],
    });
  }
  return charts;
}

export function serveMarkdown(meta: RunMetadata, levels: readonly LoadResult[], chartFiles: Record<string, string>): string {
  const c = levels[0]!.config;
  const out = [
    '# Serving benchmark',
    '',
    metadataSection(meta),
    `- Endpoint: ${c.baseUrl}${c.endpoint}, model ${c.model}; input ${c.inputLength} tokens, output ${c.outputLength} tokens (${c.promptMode} prompts), burstiness ${c.burstiness}, seed ${c.seed}`,
    c.slo.ttftMs !== undefined || c.slo.tpotMs !== undefined || c.slo.e2eMs !== undefined
      ? `- Goodput SLOs: ${[c.slo.ttftMs !== undefined ? `TTFT <= ${c.slo.ttftMs} ms` : '', c.slo.tpotMs !== undefined ? `TPOT <= ${c.slo.tpotMs} ms` : '', c.slo.e2eMs !== undefined ? `E2E <= ${c.slo.e2eMs} ms` : ''].filter(Boolean).join(', ')}`
      : '- Goodput: no SLO given',
    '',
    table(
      [
        'load',
        'requests ok/failed',
        'duration s',
        'req/s',
        'goodput req/s',
        'output tok/s',
        'total tok/s',
        'TTFT median',
        'TPOT median',
        'ITL median',
        'E2E median',
      ],
      levels.map((r) => {
        const m = r.metrics;
        return [
          levelOf(r).label,
          `${m.completed}/${m.failed}`,
          num(m.durationS),
          num(m.requestThroughput),
          num(m.goodput),
          num(m.outputTokensPerS),
          num(m.totalTokensPerS),
          num(m.ttftMs.median),
          num(m.tpotMs.median),
          num(m.itlMs.median),
          num(m.e2eMs.median),
        ];
      }),
    ),
    '',
  ];
  for (const r of levels) {
    const m = r.metrics;
    out.push(
      `## ${levelOf(r).label}`,
      '',
      table(SUMMARY_HEADERS, [
        summaryRow('TTFT', m.ttftMs),
        summaryRow('TPOT', m.tpotMs),
        summaryRow('ITL', m.itlMs),
        summaryRow('E2E', m.e2eMs),
      ]),
      '',
    );
    const errors = Object.entries(m.errorsByType);
    if (errors.length > 0) out.push(table(['error', 'count'], errors), '');
  }
  for (const [name, file] of Object.entries(chartFiles)) out.push(`![${name}](${file})`, '');
  return out.join('\n');
}
