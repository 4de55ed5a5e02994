/**
 * What a worker's /ready body says about it, as the gateway's probes read it: which process
 * answered (its instance id changes on a restart), which LoRA adapters its requests may
 * name, and, to a probe with the worker's credentials, the folders of the adapters loaded at
 * run time. Fields a worker does not send (an older build, another server behind the
 * registry) are null: unknown, never "none".
 */
export interface WorkerReport {
  instance: string | null;
  /** The served model's name. */
  model: string | null;
  /** More names the base model answers to (`--served-model-name NAME,ALIAS,...`). */
  aliases: ReadonlySet<string> | null;
  adapters: ReadonlySet<string> | null;
  /** Adapters loaded through /v1/load_lora_adapter: name -> folder on the worker's disk. */
  runtimeAdapters: ReadonlyMap<string, string> | null;
}

const UNKNOWN: WorkerReport = { instance: null, model: null, aliases: null, adapters: null, runtimeAdapters: null };

/** Reads a /ready body; anything that is not the worker's JSON object is an unknown report (never throws). */
export function parseWorkerReport(body: string): WorkerReport {
  let json: unknown;
  try {
    json = JSON.parse(body);
  } catch {
    return UNKNOWN;
  }
  if (typeof json !== 'object' || json === null || Array.isArray(json)) return UNKNOWN;
  const o = json as Record<string, unknown>;
  const str = (v: unknown): string | null => (typeof v === 'string' && v !== '' ? v : null);
  const names = (v: unknown): Set<string> | null =>
    Array.isArray(v) && v.every((a) => typeof a === 'string') ? new Set(v as string[]) : null;
  let runtimeAdapters: Map<string, string> | null = null;
  const runtime = o.runtime_adapters;
  if (typeof runtime === 'object' && runtime !== null && !Array.isArray(runtime)) {
    const entries = Object.entries(runtime as Record<string, unknown>);
    if (entries.every(([, path]) => typeof path === 'string' && path !== '')) runtimeAdapters = new Map(entries as [string, string][]);
  }
  return { instance: str(o.instance), model: str(o.model), aliases: names(o.aliases), adapters: names(o.adapters), runtimeAdapters };
}

/**
 * Whether a request naming `name` as its model can run on the worker that sent `report`: the
 * base model's name or an alias, or a LoRA adapter. null when the report does not say (no
 * model name in it: a worker still loading, an older build, another server).
 */
export function reportServes(report: WorkerReport | null, name: string): boolean | null {
  if (report?.model == null) return null;
  return report.model === name || report.aliases?.has(name) === true || report.adapters?.has(name) === true;
}
