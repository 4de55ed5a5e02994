/**
 * The one flag reader behind `autoglm serve` and `autoglm gateway`: a table of flags, each
 * also read from AUTOGLM_<FLAG> in the environment, with typed accessors whose bad values
 * are AutoGlmError('invalid_request') naming the flag.
 */
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { requireWorkerUrl } from '../cluster/types.js';
import { AutoGlmError } from '../errors.js';
import { parseKeyFile } from '../server/auth.js';

export type FlagKind = 'string' | 'int' | 'float' | 'bool' | 'list';
export type FlagTable = Record<string, { kind: FlagKind; help: string }>;

export function envName(flag: string): string {
  return `AUTOGLM_${flag.replace(/-/g, '_').toUpperCase()}`;
}

export function flagsHelp(usage: string, flags: FlagTable, column: number): string {
  const lines = Object.entries(flags).map(([name, f]) => {
    const arg = f.kind === 'bool' ? '' : ' <value>';
    return `  --${name}${arg}`.padEnd(column) + f.help + (name === 'help' ? '' : `  [${envName(name)}]`);
  });
  return [usage, '', ...lines].join('\n');
}

export interface FlagReader<N extends string> {
  str(name: N): string | undefined;
  /** A non-negative number (an integer unless `integer` is false). */
  num(name: N, integer?: boolean): number | undefined;
  /** An http(s) base URL (a gateway, etcd, this worker as others reach it), normalized. */
  url(name: N): string | undefined;
  bool(name: N): boolean;
  /** Comma-separated values, trimmed, empties dropped. */
  list(name: N): string[];
  oneOf<T extends string>(name: N, allowed: readonly T[], fallback: T): T;
  /** Keys from `--api-keys` and `--api-key-file` together. */
  apiKeys(listFlag: N, fileFlag: N): string[];
}

/** Parses argv (strict: unknown flags throw) with env fallbacks; 'help' when --help was given. */
export function readFlags<T extends FlagTable>(flags: T, argv: string[], env: NodeJS.ProcessEnv): FlagReader<keyof T & string> | 'help' {
  type N = keyof T & string;
  const { values } = parseArgs({
    args: argv,
    options: Object.fromEntries(Object.entries(flags).map(([n, f]) => [n, { type: f.kind === 'bool' ? 'boolean' : 'string' }])) as Record<
      N,
      { type: 'boolean' | 'string' }
    >,
    strict: true,
    allowPositionals: false,
  });
  if ((values as Record<string, unknown>).help) return 'help';
  const raw = (n: N): string | boolean | undefined => (values as Record<string, string | boolean | undefined>)[n] ?? env[envName(n)];
  const reader: FlagReader<N> = {
    str(n) {
      const v = raw(n);
      return typeof v === 'string' && v !== '' ? v : undefined;
    },
    num(n, integer = true) {
      const v = reader.str(n);
      if (v === undefined) return undefined;
      const x = Number(v);
      if (!Number.isFinite(x) || x < 0 || (integer && !Number.isInteger(x))) {
        throw new AutoGlmError('invalid_request', `--${n} must be a non-negative ${integer ? 'integer' : 'number'}, got '${v}'.`, {
          param: n,
        });
      }
      return x;
    },
    url(n) {
      const v = reader.str(n);
      // Checked here, not on first use: a bad URL used to surface as a TypeError from a
      // timer after start-up (or a heartbeat that failed every second, forever).
      return v === undefined ? undefined : requireWorkerUrl(v, `--${n}`, n);
    },
    bool(n) {
      const v = raw(n);
      return v === true || (typeof v === 'string' && /^(1|true|yes|on)$/i.test(v));
    },
    list(n) {
      return (reader.str(n)?.split(',') ?? []).map((s) => s.trim()).filter((s) => s !== '');
    },
    oneOf(n, allowed, fallback) {
      const v = reader.str(n) ?? fallback;
      if (!(allowed as readonly string[]).includes(v)) {
        throw new AutoGlmError('invalid_request', `--${n} must be one of ${allowed.join(', ')}, got '${v}'.`, { param: n });
      }
      return v as (typeof allowed)[number];
    },
    apiKeys(listFlag, fileFlag) {
      const keys = reader.list(listFlag);
      const keyFile = reader.str(fileFlag);
      if (keyFile !== undefined) {
        try {
          keys.push(...parseKeyFile(readFileSync(keyFile, 'utf8')));
        } catch (e) {
          throw new AutoGlmError('invalid_request', `Cannot read --${fileFlag} ${keyFile}: ${(e as Error).message}`, {
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
