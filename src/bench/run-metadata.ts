/**
 * What every benchmark run records beside its numbers, so results from different
 * machines can be told apart and diffed: adapter and driver, model shape and dtype, git
 * commit, date, host. Writes `bench/results/<kind>-<stamp>.json` and the Markdown report.
 */
import { execFileSync } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { cpus, hostname } from 'node:os';
import { join } from 'node:path';
import type { ModelSpec } from '../engine/model/index.js';

export interface AdapterMetadata {
  name: string;
  /** Driver / description string as the adapter reports it (e.g. "llvmpipe: Mesa 25.0.7 (LLVM 15.0.6)"). */
  description: string;
  vendor: string;
  architecture: string;
  f16: boolean;
}

export interface ModelShape {
  architecture: string;
  parameters: number;
  vocabSize: number;
  hiddenSize: number;
  intermediateSize: number;
  numLayers: number;
  numHeads: number;
  numKvHeads: number;
  headDim: number;
  contextLength: number;
  tiedEmbeddings: boolean;
}

export interface RunMetadata {
  kind: string;
  date: string;
  gitCommit: string | null;
  gitDirty: boolean | null;
  host: { hostname: string; cpus: number; cpuModel: string; node: string; platform: string };
  adapter: AdapterMetadata | null;
  model: (ModelShape & { source: string }) | null;
  dtype: string | null;
  argv: string[];
  notes: string[];
}

export function modelShape(spec: ModelSpec, parameters: number): ModelShape {
  return {
    architecture: spec.architecture,
    parameters,
    vocabSize: spec.vocabSize,
    hiddenSize: spec.hiddenSize,
    intermediateSize: spec.intermediateSize,
    numLayers: spec.numLayers,
    numHeads: spec.numHeads,
    numKvHeads: spec.numKvHeads,
    headDim: spec.headDim,
    contextLength: spec.contextLength,
    tiedEmbeddings: spec.tiedEmbeddings,
  };
}

export function gitCommit(cwd = process.cwd()): { commit: string | null; dirty: boolean | null } {
  try {
    const commit = execFileSync('git', ['rev-parse', 'HEAD'], { cwd, encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
    const status = execFileSync('git', ['status', '--porcelain', '--untracked-files=no'], {
      cwd,
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'ignore'],
    });
    return { commit, dirty: status.trim().length > 0 };
  } catch {
    return { commit: null, dirty: null };
  }
}

export function runMetadata(init: {
  kind: string;
  adapter?: AdapterMetadata | null;
  model?: (ModelShape & { source: string }) | null;
  dtype?: string | null;
  argv?: string[];
  notes?: string[];
}): RunMetadata {
  const git = gitCommit();
  const cpuList = cpus();
  return {
    kind: init.kind,
    date: new Date().toISOString(),
    gitCommit: git.commit,
    gitDirty: git.dirty,
    host: {
      hostname: hostname(),
      cpus: cpuList.length,
      cpuModel: cpuList[0]?.model ?? 'unknown',
      node: process.version,
      platform: process.platform,
    },
    adapter: init.adapter ?? null,
    model: init.model ?? null,
    dtype: init.dtype ?? null,
    argv: init.argv ?? [],
    notes: init.notes ?? [],
  };
}

export interface WrittenRun {
  jsonPath: string;
  markdownPath: string | null;
  svgPaths: string[];
}

/**
 * Writes `<dir>/<kind>-<stamp>.json` (metadata + results), and when given, the Markdown
 * report and its SVG charts beside it (`<kind>-<stamp>.md`, `<kind>-<stamp>-<chart>.svg`).
 * `markdown` receives the chart file names to link.
 */
export function writeRun(options: {
  dir: string;
  meta: RunMetadata;
  results: unknown;
  charts?: Record<string, string>;
  markdown?: (chartFiles: Record<string, string>) => string;
}): WrittenRun {
  mkdirSync(options.dir, { recursive: true });
  const stamp = options.meta.date.replace(/[:.]/g, '-');
  const base = `${options.meta.kind}-${stamp}`;
  const jsonPath = join(options.dir, `${base}.json`);
  writeFileSync(jsonPath, JSON.stringify({ meta: options.meta, results: options.results }, null, 2) + '\n');
  const chartFiles: Record<string, string> = {};
  const svgPaths: string[] = [];
  for (const [name, svg] of Object.entries(options.charts ?? {})) {
    const file = `${base}-${name}.svg`;
    writeFileSync(join(options.dir, file), svg);
    chartFiles[name] = file;
    svgPaths.push(join(options.dir, file));
  }
  let markdownPath: string | null = null;
  if (options.markdown) {
    markdownPath = join(options.dir, `${base}.md`);
    writeFileSync(markdownPath, options.markdown(chartFiles));
  }
  return { jsonPath, markdownPath, svgPaths };
}
