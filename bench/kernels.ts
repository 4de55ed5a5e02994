/**
 * Kernel benchmark: matmul/GEMV, add, and the rest of the kernel library (norms,
 * activations, embedding, RoPE, RoPE + KV write, prefill and decode attention, sampling:
 * bench/kernel-library.ts) against two ceilings measured in the same run
 * (bench/ceilings.ts). A benchmark, not a test.
 *
 * Run: npm run bench:kernels [-- --sweep] [-- --quick]
 *   --sweep  also times several tilings of the two target shapes (to choose defaults)
 *   --quick  fewer repeats
 *   --only=gemv|matmul|decode  with --sweep: sweep one kernel (decode: GEMV against GEMM at
 *            12-32 rows) and skip the standard rows
 *   --only=targets  only the paired target checks (quick A/B of a kernel or a toggle)
 *   --only=library  only the library rows (not matmul, not the targets)
 *   --only=int8  int8 weights against f16 (and f32) on the decode and prefill shapes: the
 *            table rows, then each int8 shape timed interleaved with its f16 twin (--pairs
 *            pairs; median of per-pair time ratios)
 *   --pairs=N  pairs per target check (default 7, 3 with --quick)
 *   --tunings='[{"gemmRows":8,...}, ...]'  with --sweep: these tilings instead of the built-in lists
 *   --paired  with --sweep --only=matmul: time each GEMM tiling interleaved with the FMA
 *             kernel (--pairs pairs) and print the median ratio: steadier on a busy machine
 * Prints a table, writes bench/results/kernels.json and the "kernels" section of
 * bench/RESULTS.md.
 */
import { add } from '../src/kernels/add.js';
import { defaultMatmulTuning, matmul, prepareMatmulWeight, type MatmulTuning, type WeightDType } from '../src/kernels/matmul.js';
import { KernelRuntime, f32ToF16Bits } from '../src/kernels/runtime.js';
import { fmaProbe, measureCeilings, readProbe, type Ceilings, type Probe } from './ceilings.js';
import { benchKernelLibrary, pseudoRandom } from './kernel-library.js';
import {
  formatTable,
  markdownTable,
  median,
  timeGpu,
  updateResultsSection,
  writeResultsJson,
  type Cell,
  type TimeOptions,
} from './report.js';

export interface KernelBenchRow {
  kernel: string;
  shape: string;
  dtype: string;
  tuning?: string;
  medianMs: number;
  spread: number;
  bytes: number;
  flops: number;
  gbPerS: number;
  gflops: number;
  /** Fraction of the ceiling that bounds this kernel (read bandwidth or FMA rate). */
  ofCeiling: number;
  bound: 'bandwidth' | 'compute';
}

interface MatmulCase {
  M: number;
  N: number;
  K: number;
  dtype: WeightDType;
  tuning?: Partial<MatmulTuning>;
}

async function benchMatmul(rt: KernelRuntime, c: MatmulCase, ceil: Ceilings, o: TimeOptions): Promise<KernelBenchRow> {
  const { M, N, K, dtype } = c;
  const w = pseudoRandom(N * K, N + K);
  const weight = prepareMatmulWeight(rt, { data: dtype === 'f16' ? f32ToF16Bits(w) : w, N, K, dtype });
  const x = rt.upload('f32', pseudoRandom(M * K, M));
  const out = rt.tensor('f32', M * N);
  const t = await timeGpu(rt, (rec) => matmul(rt, rec, { x, weight, out, M, tuning: c.tuning }), o);
  const bytes = weight.bytes + (M * K + M * N) * 4;
  const flops = 2 * M * N * K;
  weight.destroy();
  rt.destroyBuffer(x.buffer);
  rt.destroyBuffer(out.buffer);
  const gbPerS = bytes / t.medianMs / 1e6;
  const gflops = flops / t.medianMs / 1e6;
  const bound = M <= 8 ? 'bandwidth' : 'compute';
  return {
    kernel: M <= 8 ? 'gemv' : 'matmul',
    shape: `${M}x${N}x${K}`,
    dtype,
    tuning: c.tuning ? JSON.stringify(c.tuning) : undefined,
    medianMs: t.medianMs,
    spread: t.spread,
    bytes,
    flops,
    gbPerS,
    gflops,
    ofCeiling: bound === 'bandwidth' ? gbPerS / ceil.readGBps : gflops / ceil.fmaGflops,
    bound,
  };
}

async function benchAdd(rt: KernelRuntime, n: number, ceil: Ceilings, o: TimeOptions): Promise<KernelBenchRow> {
  const a = rt.upload('f32', pseudoRandom(n, 1));
  const b = rt.upload('f32', pseudoRandom(n, 2));
  const out = rt.tensor('f32', n);
  const t = await timeGpu(rt, (rec) => add(rt, rec, a, b, out), o);
  for (const x of [a, b, out]) rt.destroyBuffer(x.buffer);
  const bytes = 3 * n * 4;
  const gbPerS = bytes / t.medianMs / 1e6;
  return {
    kernel: 'add',
    shape: `${n}`,
    dtype: 'f32',
    medianMs: t.medianMs,
    spread: t.spread,
    bytes,
    flops: n,
    gbPerS,
    gflops: n / t.medianMs / 1e6,
    ofCeiling: gbPerS / ceil.readGBps,
    bound: 'bandwidth',
  };
}

export interface TargetCheck {
  name: string;
  /** Median over interleaved pairs of (kernel rate / ceiling rate). */
  ratio: number;
  target: number;
  met: boolean;
  ratios: number[];
  /** Per pair, the kernel's and the ceiling's own rates (in `unit`): which side moved. */
  unit: 'GB/s' | 'GFLOP/s';
  kernelRates: number[];
  ceilingRates: number[];
}

/**
 * Interleaves samples of a kernel and of the ceiling it is judged against, so that both
 * see the same load from whatever else runs on the machine (two shared CPU cores here),
 * and returns the median of the per-pair ratios of their rates.
 */
async function pairedRatio(
  rt: KernelRuntime,
  kernel: Probe,
  ceiling: Probe,
  pairs: number,
  o: TimeOptions,
): Promise<{ ratios: number[]; kernelRates: number[]; ceilingRates: number[] }> {
  const one: TimeOptions = { warmup: 1, repeats: 1, targetSampleMs: o.targetSampleMs };
  const out = { ratios: [] as number[], kernelRates: [] as number[], ceilingRates: [] as number[] };
  for (let i = 0; i < pairs; i++) {
    const c = await timeGpu(rt, (rec) => ceiling.record(rec), one);
    const k = await timeGpu(rt, (rec) => kernel.record(rec), one);
    // amount per ms / 1e6 = G per s
    const kernelRate = kernel.amount / k.medianMs / 1e6;
    const ceilingRate = ceiling.amount / c.medianMs / 1e6;
    out.kernelRates.push(kernelRate);
    out.ceilingRates.push(ceilingRate);
    out.ratios.push(kernelRate / ceilingRate);
  }
  return out;
}

function matmulProbe(
  rt: KernelRuntime,
  M: number,
  N: number,
  K: number,
  amount: 'bytes' | 'flops',
  dtype: WeightDType = 'f32',
  tuning?: Partial<MatmulTuning>,
): Probe {
  const w = pseudoRandom(N * K, 7);
  const weight = prepareMatmulWeight(rt, { data: dtype === 'f16' ? f32ToF16Bits(w) : w, N, K, dtype });
  const x = rt.upload('f32', pseudoRandom(M * K, 3));
  const out = rt.tensor('f32', M * N);
  return {
    amount: amount === 'bytes' ? weight.bytes + (M * K + M * N) * 4 : 2 * M * N * K,
    record: (rec) => matmul(rt, rec, { x, weight, out, M, tuning }),
    destroy() {
      weight.destroy();
      rt.destroyBuffer(x.buffer);
      rt.destroyBuffer(out.buffer);
    },
  };
}

/** The issue's two targets on this adapter, each measured interleaved with its ceiling. */
async function checkTargets(rt: KernelRuntime, pairs: number, o: TimeOptions): Promise<TargetCheck[]> {
  const checks: TargetCheck[] = [];
  const specs = [
    {
      name: 'GEMV 1x4096x4096 f32 vs read kernel',
      target: 0.8,
      unit: 'GB/s' as const,
      kernel: () => matmulProbe(rt, 1, 4096, 4096, 'bytes'),
      ceiling: () => readProbe(rt),
    },
    {
      name: 'matmul 1024x1024x1024 f32 vs FMA kernel',
      target: 0.5,
      unit: 'GFLOP/s' as const,
      kernel: () => matmulProbe(rt, 1024, 1024, 1024, 'flops'),
      ceiling: () => fmaProbe(rt),
    },
  ];
  for (const spec of specs) {
    const kernel = spec.kernel();
    const ceiling = spec.ceiling();
    try {
      const paired = await pairedRatio(rt, kernel, ceiling, pairs, o);
      const ratio = median(paired.ratios);
      checks.push({ name: spec.name, ratio, target: spec.target, met: ratio >= spec.target, unit: spec.unit, ...paired });
    } finally {
      kernel.destroy();
      ceiling.destroy();
    }
  }
  return checks;
}

/** The int8 rows' shapes (M x N x K): 4096 x 4096 and 11008 x 4096 GEMVs (Llama-2-7B), a 128-row GEMM. */
const INT8_SHAPES = [
  [1, 4096, 4096],
  [1, 11008, 4096],
  [128, 4096, 4096],
] as const;

/**
 * Each INT8_SHAPES matmul with int8 weights timed interleaved with the same shape in
 * `against` (f16, or f32 without shader-f16), so both see the same machine load: the median
 * of per-pair time ratios (int8 / other).
 */
async function int8AgainstF16(
  rt: KernelRuntime,
  against: WeightDType,
  pairs: number,
  o: TimeOptions,
): Promise<{ shape: string; against: WeightDType; ratio: number; ratios: number[] }[]> {
  const out = [];
  for (const [M, N, K] of INT8_SHAPES) {
    const int8 = matmulProbe(rt, M, N, K, 'flops', 'int8');
    const other = matmulProbe(rt, M, N, K, 'flops', against);
    try {
      // rate ratio int8 / other = time ratio other / int8
      const { ratios } = await pairedRatio(rt, int8, other, pairs, o);
      const timeRatios = ratios.map((r) => 1 / r);
      out.push({ shape: `${M}x${N}x${K}`, against, ratio: median(timeRatios), ratios: timeRatios });
    } finally {
      int8.destroy();
      other.destroy();
    }
  }
  return out;
}

/** Tilings tried by --sweep on the two target shapes. */
const GEMV_SWEEP: Partial<MatmulTuning>[] = [
  { gemvWorkgroupN: 64, gemvSplitK: 1 },
  { gemvWorkgroupN: 32, gemvSplitK: 1 },
  { gemvWorkgroupN: 16, gemvSplitK: 1 },
  { gemvWorkgroupN: 128, gemvSplitK: 1 },
  { gemvWorkgroupN: 64, gemvSplitK: 4 },
  // more workgroups or a deeper K split: for GPUs, where 4096 columns in 64-lane groups
  // leave 16 workgroups for a hundred or more compute units
  { gemvWorkgroupN: 32, gemvSplitK: 8 },
  { gemvWorkgroupN: 16, gemvSplitK: 16 },
  { gemvWorkgroupN: 64, gemvSplitK: 4, gemvMinWorkgroups: 128 },
];
const GEMM_SWEEP: Partial<MatmulTuning>[] = [
  { gemmRows: 4, gemmCols4: 2, gemmWorkgroupN: 16, gemmVecWidth: 4 },
  { gemmRows: 8, gemmCols4: 2, gemmWorkgroupN: 16, gemmVecWidth: 4 },
  { gemmRows: 8, gemmCols4: 2, gemmWorkgroupN: 8, gemmVecWidth: 4 },
  { gemmRows: 8, gemmCols4: 2, gemmWorkgroupN: 32, gemmVecWidth: 4 },
  { gemmRows: 8, gemmCols4: 4, gemmWorkgroupN: 16, gemmVecWidth: 4 },
  { gemmRows: 16, gemmCols4: 2, gemmWorkgroupN: 16, gemmVecWidth: 4 },
  { gemmRows: 16, gemmCols4: 1, gemmWorkgroupN: 16, gemmVecWidth: 4 },
  { gemmRows: 12, gemmCols4: 3, gemmWorkgroupN: 16, gemmVecWidth: 4 },
  { gemmRows: 8, gemmCols4: 1, gemmWorkgroupN: 64, gemmVecWidth: 1 },
];

/** Where the GEMV should hand over to the GEMM: both kernels on decode batches of 12-32 rows. */
const DECODE_SWEEP: Partial<MatmulTuning>[] = [{}, { gemvMaxRows: 32 }, { gemvMaxRows: 32, gemvSplitK: 1 }];

const HEADERS = ['kernel', 'shape (matmul: MxNxK)', 'dtype', 'tuning', 'median ms', 'spread', 'GB/s', 'GFLOP/s', 'of ceiling'];

function cells(r: KernelBenchRow): Cell[] {
  const pct = (v: number): string => `${(v * 100).toFixed(0)}%`;
  return [
    r.kernel,
    r.shape,
    r.dtype,
    r.tuning ?? 'default',
    r.medianMs,
    pct(r.spread),
    r.gbPerS,
    r.gflops,
    `${pct(r.ofCeiling)} ${r.bound === 'bandwidth' ? 'read BW' : 'FMA'}`,
  ];
}

async function main(): Promise<void> {
  const argv = process.argv.slice(2);
  const quick = argv.includes('--quick');
  const sweep = argv.includes('--sweep');
  const only = argv.find((a) => a.startsWith('--only='))?.slice(7);
  const toggles = (process.env.AUTOGLM_DAWN_TOGGLES ?? '').split(',').filter(Boolean);
  const o: TimeOptions = quick ? { warmup: 1, repeats: 3, targetSampleMs: 100 } : { warmup: 2, repeats: 7, targetSampleMs: 250 };
  const rt = await KernelRuntime.create();
  const started = new Date();
  console.log(
    `adapter: ${rt.adapterName}  f16: ${rt.hasF16}  timestamps: ${rt.ctx.features.timestampQuery}  toggles: ${toggles.join(',') || 'none'}`,
  );
  console.log(`default tuning: ${JSON.stringify(defaultMatmulTuning(rt))}`);

  const ceil = await measureCeilings(rt, o);
  console.log(
    `ceilings: read ${ceil.readGBps.toFixed(1)} GB/s over ${ceil.readBytes / 2 ** 20} MiB, copy ${ceil.copyGBps.toFixed(1)} GB/s, FMA ${ceil.fmaGflops.toFixed(1)} GFLOP/s`,
  );

  const dtypes: WeightDType[] = rt.hasF16 ? ['f32', 'f16'] : ['f32'];
  const rows: KernelBenchRow[] = [];
  // each row is kept for the table and printed as it is measured
  const show = (r: KernelBenchRow): void => {
    rows.push(r);
    console.log(formatTable(HEADERS, [cells(r)]).split('\n')[2]);
  };
  const run = async (c: MatmulCase): Promise<void> => show(await benchMatmul(rt, c, ceil, o));
  const tuningsArg = argv.find((a) => a.startsWith('--tunings='))?.slice(10);
  const custom = tuningsArg ? (JSON.parse(tuningsArg) as Partial<MatmulTuning>[]) : undefined;
  const pairsArg = Number(argv.find((a) => a.startsWith('--pairs='))?.slice(8));
  const pairs = Number.isInteger(pairsArg) && pairsArg > 0 ? pairsArg : quick ? 3 : 7;
  if (sweep && only === 'matmul' && argv.includes('--paired')) {
    for (const dtype of dtypes) {
      for (const tuning of custom ?? GEMM_SWEEP) {
        const kernel = matmulProbe(rt, 1024, 1024, 1024, 'flops', dtype, tuning);
        const ceiling = fmaProbe(rt);
        try {
          const { ratios } = await pairedRatio(rt, kernel, ceiling, pairs, o);
          const pct = (r: number): string => `${(r * 100).toFixed(0)}%`;
          console.log(
            `paired matmul 1024^3 ${dtype} ${JSON.stringify(tuning)}: ${pct(median(ratios))} of FMA; pairs ${ratios.map(pct).join(' ')}`,
          );
        } finally {
          kernel.destroy();
          ceiling.destroy();
        }
      }
    }
  } else if (sweep && only !== 'targets') {
    for (const dtype of dtypes) {
      if (!only || only === 'gemv') for (const tuning of custom ?? GEMV_SWEEP) await run({ M: 1, N: 4096, K: 4096, dtype, tuning });
      if (!only || only === 'matmul') for (const tuning of custom ?? GEMM_SWEEP) await run({ M: 1024, N: 1024, K: 1024, dtype, tuning });
      // decode batches just above the GEMV's row limit: the GEMM (default) against the GEMV
      if (!only || only === 'decode')
        for (const M of [12, 16, 32]) for (const tuning of DECODE_SWEEP) await run({ M, N: 4096, K: 4096, dtype, tuning });
    }
  }
  for (const dtype of only ? [] : dtypes) {
    await run({ M: 1, N: 4096, K: 4096, dtype });
    await run({ M: 4, N: 4096, K: 4096, dtype });
    await run({ M: 1, N: 11008, K: 4096, dtype });
    await run({ M: 1024, N: 1024, K: 1024, dtype });
    await run({ M: 128, N: 4096, K: 4096, dtype });
  }
  // int8 weights (quantized at load): the decode GEMVs and a prefill GEMM
  if (!only || only === 'int8') {
    for (const dtype of only ? [...dtypes, 'int8' as const] : ['int8' as const]) {
      for (const [M, N, K] of INT8_SHAPES) await run({ M, N, K, dtype });
    }
  }
  const int8Pairs = only === 'int8' ? await int8AgainstF16(rt, rt.hasF16 ? 'f16' : 'f32', pairs, o) : [];
  if (!only) rows.push(await benchAdd(rt, 4096 * 1024, ceil, o));
  // the rest of the library (norms, activations, embedding, RoPE, attention, sampling)
  if (!only || only === 'library') {
    await benchKernelLibrary(rt, ceil, o, show);
  }

  const targets = !only || only === 'targets' ? await checkTargets(rt, pairs, o) : [];
  for (const t of targets) {
    console.log(
      `target ${t.name}: ${(t.ratio * 100).toFixed(0)}% (target ${t.target * 100}%) ${t.met ? 'met' : 'NOT met'}; pairs: ${t.ratios.map((r) => (r * 100).toFixed(0) + '%').join(' ')}` +
        ` (kernel ${median(t.kernelRates).toFixed(1)}, ceiling ${median(t.ceilingRates).toFixed(1)} ${t.unit}, medians)`,
    );
  }

  for (const c of int8Pairs) {
    console.log(
      `int8 vs ${c.against} ${c.shape}: int8 takes ${c.ratio.toFixed(2)}x the time; pairs ${c.ratios.map((r) => r.toFixed(2)).join(' ')}`,
    );
  }

  const table = rows.map(cells);
  console.log('\n' + formatTable(HEADERS, table));
  const jsonPath = writeResultsJson('kernels', {
    adapter: rt.adapterName,
    date: started.toISOString(),
    toggles,
    ceilings: ceil,
    defaultTuning: defaultMatmulTuning(rt),
    rows,
    targets,
    int8Pairs,
  });
  const md = [
    '## Kernels',
    '',
    `Adapter: ${rt.adapterName}. Date: ${started.toISOString().slice(0, 10)}. Command: \`npm run bench:kernels${sweep ? ' -- --sweep' : ''}\`${toggles.length ? ` with AUTOGLM_DAWN_TOGGLES=${toggles.join(',')}` : ''}.`,
    `Timing: ${ceil.timings.read.method === 'timestamp' ? 'GPU timestamp queries' : 'wall clock'}, median of ${o.repeats} samples after ${o.warmup} warm-up runs; spread = (max - min) / median.`,
    '',
    `Ceilings: read kernel ${ceil.readGBps.toFixed(1)} GB/s (${ceil.readBytes / 2 ** 20} MiB), copyBufferToBuffer ${ceil.copyGBps.toFixed(1)} GB/s, FMA kernel ${ceil.fmaGflops.toFixed(1)} GFLOP/s.`,
    '',
    markdownTable(HEADERS, table),
    '',
    'Targets, each kernel timed interleaved with its ceiling (median of per-pair ratios, so both see the same machine load):',
    '',
    ...targets.map((t) => `- ${t.name}: ${(t.ratio * 100).toFixed(0)}% (target ${t.target * 100}%): ${t.met ? 'met' : '**not met**'}`),
  ].join('\n');
  if (!only) updateResultsSection('kernels', md);
  console.log(`\nwrote ${jsonPath}${only ? '' : ' and bench/RESULTS.md (section kernels)'}`);
  rt.destroy();
}

await main();
