#!/usr/bin/env node
/**
 * `autoglm <serve|gateway|bench> [options]`. Subcommands are imported lazily so one
 * that is missing or broken fails only itself.
 *
 * Exit codes: 0 done, 1 failed while running (a model that would not load, a port in use),
 * 2 bad usage (an unknown command or flag, a value a flag does not accept): one line on
 * stderr naming the flag, never a stack trace.
 */
import { isAutoGlmError } from '../errors.js';

/** Flag and value errors: AutoGlmError('invalid_request') from the flag readers. */
const EXIT_USAGE = 2;
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
  if (name === '--help' || name === '-h') {
    process.stdout.write(USAGE);
    return;
  }
  if (name === undefined) {
    process.stderr.write(USAGE);
    process.exitCode = EXIT_USAGE;
    return;
  }
  const command = await loadCommand(name);
  if (!command) {
    process.stderr.write(`autoglm: unknown command '${name}'\n\n${USAGE}`);
    process.exitCode = EXIT_USAGE;
    return;
  }
  const code = await command(rest);
  // Servers hold handles (GPU device, worker threads) that would keep the process alive.
  process.exit(typeof code === 'number' ? code : 0);
}

main().catch((e: unknown) => {
  const code = isAutoGlmError(e) ? e.code : undefined;
  const usage = code === 'invalid_request';
  // The code helps with a runtime failure (model_load_failed, gpu_unavailable); a usage error's message says it all.
  const text = e instanceof Error ? e.message : String(e);
  const message = code !== undefined && !usage ? `${text} (${code})` : text;
  process.stderr.write(`autoglm: ${message}\n`);
  process.exit(usage ? EXIT_USAGE : 1);
});
