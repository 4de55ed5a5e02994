#!/usr/bin/env node
/**
 * `autoglm <serve|gateway|bench> [options]`. Subcommands are imported lazily so one
 * that is missing or broken fails only itself.
 */
import { isAutoGlmError } from '../errors.js';

const USAGE = `Usage: autoglm <command> [options]

Commands:
  serve     OpenAI-compatible inference server for one model (autoglm serve --help)
  gateway   cluster gateway in front of serve workers
  bench     benchmarks
`;

type Command = (argv: string[]) => Promise<number | void>;

async function loadCommand(name: string): Promise<Command | null> {
  switch (name) {
    case 'serve':
      return (await import('./serve.js')).runServe;
    case 'gateway':
      return importEntry('./gateway.js', 'runGateway');
    case 'bench':
      return importEntry('./bench.js', 'runBench');
    default:
      return null;
  }
}

/** Written by other engineers; resolved at run time so their absence breaks only that subcommand. */
async function importEntry(specifier: string, exportName: string): Promise<Command> {
  let mod: Record<string, unknown>;
  try {
    mod = (await import(specifier)) as Record<string, unknown>;
  } catch (e) {
    const missing = (e as { code?: string }).code === 'ERR_MODULE_NOT_FOUND' && String((e as Error).message).includes(specifier.slice(2));
    if (missing) throw new Error(`this build has no '${specifier.slice(2, -3)}' command (${specifier.slice(2, -3)}.ts is missing)`);
    throw e;
  }
  const fn = mod[exportName] ?? mod.default;
  if (typeof fn !== 'function') throw new Error(`${specifier} does not export ${exportName}()`);
  return fn as Command;
}

async function main(): Promise<void> {
  const [name, ...rest] = process.argv.slice(2);
  if (name === undefined || name === '--help' || name === '-h') {
    process.stdout.write(USAGE);
    process.exitCode = name === undefined ? 1 : 0;
    return;
  }
  const command = await loadCommand(name);
  if (!command) {
    process.stderr.write(`autoglm: unknown command '${name}'\n\n${USAGE}`);
    process.exitCode = 1;
    return;
  }
  const code = await command(rest);
  // Servers hold handles (GPU device, worker threads) that would keep the process alive.
  process.exit(typeof code === 'number' ? code : 0);
}

main().catch((e: unknown) => {
  const message = isAutoGlmError(e) ? `${e.message} (${e.code})` : e instanceof Error ? e.message : String(e);
  process.stderr.write(`autoglm: ${message}\n`);
  process.exit(1);
});
