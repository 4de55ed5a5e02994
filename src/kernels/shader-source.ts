/**
 * Loads WGSL sources from shaders/ and expands their variants.
 *
 * The preprocessor is deliberately tiny: `{{NAME}}` is replaced by a define's value, and
 * lines between `#if NAME` / `#else` / `#endif` are kept or dropped by a define's
 * truthiness (one level of nesting is enough for our kernels), and a line `#include NAME`
 * is replaced by shaders/NAME.wgsl (declarations several kernels share, such as the matmul
 * family's params and x binding). Everything else is plain WGSL, so a shader file can be
 * read without knowing the generator.
 */
import { readFileSync, existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

export type Defines = Record<string, string | number | boolean>;

function findShaderDir(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 6; i++) {
    const candidate = join(dir, 'shaders');
    if (existsSync(join(dir, 'package.json')) && existsSync(candidate)) return candidate;
    dir = dirname(dir);
  }
  throw new Error('shaders/ folder not found above ' + fileURLToPath(import.meta.url));
}

const shaderDir = findShaderDir();
const rawCache = new Map<string, string>();

/** A shader's source with its `#include` lines replaced (one level: included files do not include). */
export function readShader(name: string): string {
  let src = rawCache.get(name);
  if (src === undefined) {
    src = readFileSync(join(shaderDir, `${name}.wgsl`), 'utf8').replace(/^#include\s+([\w-]+)\s*$/gm, (_, inc: string) =>
      readFileSync(join(shaderDir, `${inc}.wgsl`), 'utf8').trimEnd(),
    );
    rawCache.set(name, src);
  }
  return src;
}

export function expandShader(source: string, defines: Defines): string {
  const out: string[] = [];
  // stack of "is this region kept"
  const keep: boolean[] = [];
  for (const line of source.split('\n')) {
    const t = line.trim();
    const m = /^#if\s+(!?)(\w+)$/.exec(t);
    if (m) {
      const v = Boolean(defines[m[2]!]);
      keep.push(m[1] === '!' ? !v : v);
      continue;
    }
    if (t === '#else') {
      keep.push(!keep.pop()!);
      continue;
    }
    if (t === '#endif') {
      keep.pop();
      continue;
    }
    if (keep.every(Boolean)) out.push(line);
  }
  return out.join('\n').replace(/\{\{(\w+)\}\}/g, (_, name: string) => {
    if (!(name in defines)) throw new Error(`shader define ${name} is not set`);
    return String(defines[name]);
  });
}

export function loadShader(name: string, defines: Defines): string {
  return expandShader(readShader(name), defines);
}
