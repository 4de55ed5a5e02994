/** Minimal Markdown builders for benchmark reports: tables, metadata header, number formats. */
import type { RunMetadata } from './run-metadata.js';
import type { Summary } from './stats.js';

export function table(headers: string[], rows: (string | number)[][]): string {
  const cell = (v: string | number) => String(v).replace(/\|/g, '\\|');
  return [
    `| ${headers.map(cell).join(' | ')} |`,
    `| ${headers.map(() => '---').join(' | ')} |`,
    ...rows.map((row) => `| ${row.map(cell).join(' | ')} |`),
  ].join('\n');
}

/** 3 significant digits, thousands kept whole; '-' for missing values. */
export function num(v: number | null | undefined, digits = 3): string {
  if (v === null || v === undefined || !Number.isFinite(v)) return '-';
  if (Math.abs(v) >= 1000) return Math.round(v).toLocaleString('en-US');
  return Number(v.toPrecision(digits)).toString();
}

export function summaryRow(name: string, s: Summary): (string | number)[] {
  return [name, num(s.mean), num(s.median), num(s.p90), num(s.p99), num(s.std), s.count];
}

export const SUMMARY_HEADERS = ['metric (ms)', 'mean', 'median', 'p90', 'p99', 'std', 'n'];

export function metadataSection(meta: RunMetadata): string {
  const lines = [
    `- Date: ${meta.date}`,
    `- Commit: ${meta.gitCommit ?? 'unknown'}${meta.gitDirty ? ' (with uncommitted changes)' : ''}`,
    `- Host: ${meta.host.hostname}, ${meta.host.cpus} x ${meta.host.cpuModel}, Node ${meta.host.node}`,
  ];
  if (meta.adapter)
    lines.push(
      `- Adapter: ${meta.adapter.name} (${meta.adapter.description}; vendor ${meta.adapter.vendor}; shader-f16 ${meta.adapter.f16})`,
    );
  if (meta.model) {
    const m = meta.model;
    lines.push(
      `- Model: ${m.source}: ${m.architecture}, ${num(m.parameters / 1e6)}M parameters, ${m.numLayers} layers, hidden ${m.hiddenSize}, ` +
        `${m.numHeads} heads / ${m.numKvHeads} KV heads x ${m.headDim}, MLP ${m.intermediateSize}, vocab ${m.vocabSize}, context ${m.contextLength}`,
    );
  }
  if (meta.dtype) lines.push(`- Dtype: ${meta.dtype}`);
  if (meta.argv.length > 0) lines.push(`- Command: \`autoglm ${meta.argv.join(' ')}\``);
  for (const note of meta.notes) lines.push(`- Note: ${note}`);
  return lines.join('\n');
}
