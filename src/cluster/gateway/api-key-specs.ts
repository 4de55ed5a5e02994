import { readFileSync } from 'node:fs';
import { AutoGlmError } from '../../errors.js';
import { parseKeyFile } from '../../server/auth.js';
import type { RateLimit } from './options.js';

/** Client keys and the limits some of them carry, as `autoglm gateway` reads them. */
export interface ApiKeySpecs {
  keys: string[];
  /** Keys given as KEY:RPS:BURST; `null` for RPS 0 (no limit for that key). */
  limits: Map<string, RateLimit | null>;
  /** Keys given as KEY:RPS:BURST:PRIORITY: the least priority value their generation requests carry. */
  priorities: Map<string, number>;
}

const SPEC_FORMAT =
  'KEY, KEY:RPS:BURST or KEY:RPS:BURST:PRIORITY (RPS a number of requests per second, 0 for no limit; BURST a whole number >= 1, ' +
  "empty with RPS 0; PRIORITY an integer, the least priority value the key's requests carry)";

/**
 * One `--api-keys` entry or `--api-key-file` line: `KEY`, `KEY:RPS:BURST` for a key with
 * its own rate limit, or `KEY:RPS:BURST:PRIORITY` for one whose generation requests are
 * scheduled at PRIORITY or later (workers run `--scheduling-policy priority`). A key with a
 * colon in any other shape is refused rather than taken whole, so a typo such as `sk-a:5`
 * cannot silently become a key nobody holds.
 */
export function parseApiKeySpec(entry: string, flag: string): { key: string; limit?: RateLimit | null; priority?: number } {
  const parts = entry.split(':');
  if (parts.length === 1) return { key: entry };
  const bad = (why: string): AutoGlmError =>
    new AutoGlmError('invalid_request', `--${flag}: '${redact(entry)}' ${why}; each key must be ${SPEC_FORMAT}.`, { param: flag });
  if (parts.length !== 3 && parts.length !== 4) throw bad('is not in the expected shape');
  const [key, rpsText, burstText, priorityText] = parts as [string, string, string, string | undefined];
  if (key === '') throw bad('has an empty key');
  const rps = Number(rpsText);
  const burst = Number(burstText);
  const priority = priorityText === undefined ? undefined : Number(priorityText);
  if (priority !== undefined && (priorityText!.trim() === '' || !Number.isSafeInteger(priority)))
    throw bad(`has PRIORITY '${priorityText}'`);
  const withPriority = priority === undefined ? {} : { priority };
  if (rpsText.trim() === '' || !Number.isFinite(rps) || rps < 0) throw bad(`has RPS '${rpsText}'`);
  if (rps === 0) return { key, limit: null, ...withPriority };
  if (burstText.trim() === '' || !Number.isInteger(burst) || burst < 1) throw bad(`has BURST '${burstText}'`);
  return { key, limit: { requestsPerSecond: rps, burst }, ...withPriority };
}

/** Keys from the comma list and the key file together; a key given twice keeps its last limit. */
export function readApiKeySpecs(sources: { list: string[]; listFlag: string; file: string | undefined; fileFlag: string }): ApiKeySpecs {
  const entries = sources.list.map((e) => parseApiKeySpec(e, sources.listFlag));
  if (sources.file !== undefined) {
    let lines: string[];
    try {
      lines = parseKeyFile(readFileSync(sources.file, 'utf8'));
    } catch (e) {
      throw new AutoGlmError('invalid_request', `Cannot read --${sources.fileFlag} ${sources.file}: ${(e as Error).message}`, {
        param: sources.fileFlag,
        cause: e,
      });
    }
    entries.push(...lines.map((l) => parseApiKeySpec(l, sources.fileFlag)));
  }
  const specs: ApiKeySpecs = { keys: [], limits: new Map(), priorities: new Map() };
  for (const { key, limit, priority } of entries) {
    if (!specs.keys.includes(key)) specs.keys.push(key);
    if (limit !== undefined) specs.limits.set(key, limit);
    if (priority !== undefined) specs.priorities.set(key, priority);
  }
  return specs;
}

/** Error messages show only a key's first characters: they end up in logs. */
function redact(entry: string): string {
  const [key, ...rest] = entry.split(':');
  return [`${key!.slice(0, Math.min(6, Math.floor(key!.length / 2)))}...`, ...rest].join(':');
}
