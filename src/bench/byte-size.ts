/** Byte sizes for people: parse `80GiB`, `80GB`, `512MiB`, `1e9`; format in binary units. */
import { AutoGlmError } from '../errors.js';

const UNITS: Record<string, number> = {
  b: 1,
  kb: 1e3,
  mb: 1e6,
  gb: 1e9,
  tb: 1e12,
  kib: 2 ** 10,
  mib: 2 ** 20,
  gib: 2 ** 30,
  tib: 2 ** 40,
  k: 2 ** 10,
  m: 2 ** 20,
  g: 2 ** 30,
  t: 2 ** 40,
};

export function parseByteSize(text: string, param = 'memory'): number {
  const m = /^\s*([0-9]*\.?[0-9]+(?:e[0-9]+)?)\s*([a-z]*)\s*$/i.exec(text);
  const unit = m ? UNITS[(m[2] || 'b').toLowerCase()] : undefined;
  if (!m || unit === undefined) {
    throw new AutoGlmError('invalid_request', `bad ${param} '${text}': use e.g. 80GiB, 24GB, 512MiB or a byte count`, { param });
  }
  const bytes = Number(m[1]) * unit;
  if (!(bytes > 0)) throw new AutoGlmError('invalid_request', `${param} must be > 0 (got '${text}')`, { param });
  return Math.floor(bytes);
}

export function formatBytes(bytes: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let v = bytes;
  let i = 0;
  while (Math.abs(v) >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return `${i === 0 ? v : v.toFixed(v >= 100 ? 0 : v >= 10 ? 1 : 2)} ${units[i]}`;
}
