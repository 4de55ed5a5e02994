/**
 * The one flag reader behind `autoglm serve` and `autoglm gateway`: a table of flags, each
 * also read from AUTOGLM_<FLAG> in the environment, with typed accessors whose bad values
 * are AutoGlmError('invalid_request') naming the flag (or the variable the value came from).
 */
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { requireWorkerUrl } from '../cluster/types.js';
import { AutoGlmError } from '../errors.js';
import { parseKeyFile } from '../server/auth.js';
import { parseAllowedOrigins, type CorsOptions } from '../server/cors.js';

export type FlagKind = 'string' | 'int' | 'float' | 'bool' | 'list';
/** min/max bound numeric flags (inclusive; default min 0, max: the largest safe integer). */
export type FlagSpec = { kind: FlagKind; help: string; min?: number; max?: number };
export type FlagTable = Record<string, FlagSpec>;

/** setTimeout/setInterval fire at once (after 1 ms) for a delay above this: a "large" timeout would mean none. */
export const MAX_TIMER_MS = 2_147_483_647;
/** A delay or timeout flag in milliseconds (spread into a flag table entry). */
export const MS = { kind: 'int', max: MAX_TIMER_MS } as const;
/** A TCP port one listens on (0: any free one). */
export const PORT = { kind: 'int', max: 65_535 } as const;

const TRUE_WORDS = ['1', 'true', 'yes', 'on'];
const FALSE_WORDS = ['0', 'false', 'no', 'off'];

export function envName(flag: string): string {
  return `AUTOGLM_${flag.replace(/-/g, '_').toUpperCase()}`;
}

export function flagsHelp(usage: string, flags: FlagTable, column: number): string {
  const lines = Object.entries(flags).map(([name, f]) => {
    const arg = f.kind === 'bool' ? '' : ' <value>';
    // a name longer than the column still gets a space before its help
    return `  --${name}${arg} `.padEnd(column) + f.help + (name === 'help' ? '' : `  [${envName(name)}]`);
  });
  return [
    usage,
    '',
    ...lines,
    '',
    'Each flag may be given once. An empty AUTOGLM_* variable counts as unset; boolean ones take 1|true|yes|on or 0|false|no|off.',
  ].join('\n');
}

export interface FlagReader<N extends string> {
  str(name: N): string | undefined;
  /** A number within the flag's bounds (an integer for kind 'int', or when `integer` is true). */
  num(name: N, integer?: boolean): number | undefined;
  /** An http(s) base URL (a gateway, etcd, this worker as others reach it), normalized. */
  url(name: N): string | undefined;
  bool(name: N): boolean;
  /** Comma-separated values, trimmed, empties dropped. */
  list(name: N): string[];
  oneOf<T extends string>(name: N, allowed: readonly T[], fallback: T): T;
  /** Keys from `--api-keys` and `--api-key-file` together. */
  apiKeys(listFlag: N, fileFlag: N): string[];
  /** Whether the flag or its variable was given (a non-empty value). */
  has(name: N): boolean;
  /** How an error names the flag: `--port`, or `AUTOGLM_PORT (--port)` when the value came from the environment. */
  label(name: N): string;
}

function usageError(message: string, param?: string): AutoGlmError {
  return new AutoGlmError('invalid_request', message, param === undefined ? {} : { param });
}

/** Parses argv (strict: unknown flags throw) with env fallbacks; 'help' when --help was given. */
export function readFlags<T extends FlagTable>(
  flags: T,
  argv: string[],
  env: NodeJS.ProcessEnv,
  command = 'autoglm',
): FlagReader<keyof T & string> | 'help' {
  type N = keyof T & string;
  let parsed: ReturnType<typeof parseArgs>;
  try {
    parsed = parseArgs({
      args: argv,
      options: Object.fromEntries(Object.entries(flags).map(([n, f]) => [n, { type: f.kind === 'bool' ? 'boolean' : 'string' }])),
      strict: true,
      allowPositionals: false,
      tokens: true,
    });
  } catch (e) {
    // parseArgs' own wording ("Unknown option '--prot'"), on one line (a value starting with a
    // dash, `--port -1`, gets three), plus where the list is.
    throw usageError(`${(e as Error).message.replace(/\s*\n\s*/g, ' ')} (${command} --help lists the flags)`);
  }
  const values = parsed.values as Record<string, string | boolean | undefined>;
  if (values.help) return 'help';
  const seen = new Set<string>();
  for (const t of parsed.tokens ?? []) {
    if (t.kind !== 'option') continue;
    // Last-one-wins would drop a value silently (--api-keys a --api-keys b kept only b).
    if (seen.has(t.name)) throw usageError(`--${t.name} was given more than once; give it once.`, t.name);
    seen.add(t.name);
    if (t.value === '') throw usageError(`--${t.name} needs a value (got an empty string).`, t.name);
  }
  const fromFlag = (n: N): boolean => values[n] !== undefined;
  const raw = (n: N): string | boolean | undefined => values[n] ?? env[envName(n)];
  const reader: FlagReader<N> = {
    label(n) {
      return fromFlag(n) || env[envName(n)] === undefined ? `--${n}` : `${envName(n)} (--${n})`;
    },
    has(n) {
      const v = raw(n);
      return v === true || (typeof v === 'string' && v !== '');
    },
    str(n) {
      const v = raw(n);
      return typeof v === 'string' && v !== '' ? v : undefined;
    },
    num(n, integer) {
      const v = reader.str(n);
      if (v === undefined) return undefined;
      const spec = flags[n]!;
      const int = integer ?? spec.kind === 'int';
      const min = spec.min ?? 0;
      const max = spec.max ?? Number.MAX_SAFE_INTEGER;
      // Plain decimals only: Number() also takes ' ' (0), '0x10', '1e20' and 'Infinity'.
      const x = (int ? /^\d+$/ : /^(\d+(\.\d*)?|\.\d+)$/).test(v.trim()) ? Number(v) : NaN;
      if (!(x >= min && x <= max)) {
        const range = max === Number.MAX_SAFE_INTEGER ? `>= ${min}` : `from ${min} to ${max}`;
        throw usageError(`${reader.label(n)} must be ${int ? 'an integer' : 'a number'} ${range}, got '${v}'.`, n);
      }
      return x;
    },
    url(n) {
      const v = reader.str(n);
      // Checked here, not on first use: a bad URL used to surface as a TypeError from a
      // timer after start-up (or a heartbeat that failed every second, forever).
      return v === undefined ? undefined : requireWorkerUrl(v, reader.label(n), n);
    },
    bool(n) {
      const v = raw(n);
      if (typeof v !== 'string') return v === true;
      const word = v.trim().toLowerCase();
      if (word === '' || FALSE_WORDS.includes(word)) return false;
      if (TRUE_WORDS.includes(word)) return true;
      // A typo (AUTOGLM_NO_AUTH=ture) used to read as false without a word.
      throw usageError(`${envName(n)} (--${n}) must be one of ${[...TRUE_WORDS, ...FALSE_WORDS].join(', ')}, got '${v}'.`, n);
    },
    list(n) {
      return (reader.str(n)?.split(',') ?? []).map((s) => s.trim()).filter((s) => s !== '');
    },
    oneOf(n, allowed, fallback) {
      const v = reader.str(n) ?? fallback;
      if (!(allowed as readonly string[]).includes(v))
        throw usageError(`${reader.label(n)} must be one of ${allowed.join(', ')}, got '${v}'.`, n);
      return v as (typeof allowed)[number];
    },
    apiKeys(listFlag, fileFlag) {
      const keys = reader.list(listFlag);
      const keyFile = reader.str(fileFlag);
      if (keyFile !== undefined) {
        try {
          keys.push(...parseKeyFile(readFileSync(keyFile, 'utf8')));
        } catch (e) {
          throw new AutoGlmError('invalid_request', `Cannot read ${reader.label(fileFlag)} ${keyFile}: ${(e as Error).message}`, {
            param: fileFlag,
            cause: e,
          });
        }
      }
      return keys;
    },
  };
  return reader;
}

/** The help line of --allowed-origins, shared by serve and gateway. */
export const ALLOWED_ORIGINS_HELP =
  "browser origins allowed to call the API (CORS): '*' or a comma-separated list such as https://app.example.com (default: none)";

/** --allowed-origins as CORS options (undefined when not given); a value no browser Origin could match is a usage error. */
export function allowedOriginsOf<N extends string>(flags: FlagReader<N>, name: N): CorsOptions | undefined {
  const value = flags.str(name);
  if (value === undefined) return undefined;
  try {
    return { allowedOrigins: parseAllowedOrigins(value, flags.label(name)) };
  } catch (e) {
    throw usageError((e as Error).message, name);
  }
}
