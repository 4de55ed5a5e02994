/**
 * What stands at a model file's path, checked before the file is opened. A folder, a FIFO
 * or a device where a file should be would otherwise fail with a bare EISDIR, block the
 * load forever (a FIFO without a writer) or read without end (/dev/zero).
 */
import { stat } from 'node:fs/promises';

export interface FileProblem {
  /** Nothing at all is there: optional files may be absent. */
  missing: boolean;
  /** Completes "<path> ...", e.g. "is a folder, not a file". */
  problem: string;
}

/**
 * Null when `path` is a regular file (or a link to one), or when it cannot be examined for
 * another reason (permissions): opening it then reports that error.
 */
export async function fileProblem(path: string): Promise<FileProblem | null> {
  let info;
  try {
    info = await stat(path);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return { missing: true, problem: 'does not exist' };
    return null;
  }
  if (info.isFile()) return null;
  return { missing: false, problem: `is ${kindOf(info)}, not a file` };
}

function kindOf(info: { isDirectory(): boolean; isFIFO(): boolean; isSocket(): boolean }): string {
  if (info.isDirectory()) return 'a folder';
  if (info.isFIFO()) return 'a FIFO';
  if (info.isSocket()) return 'a socket';
  return 'a device';
}
