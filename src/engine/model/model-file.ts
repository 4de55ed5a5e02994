/**
 * What stands at a model file's path, checked before the file is opened. A folder, a FIFO
 * or a device where a file should be would otherwise fail with a bare EISDIR, block the
 * load forever (a FIFO without a writer) or read without end (/dev/zero). A symbolic link
 * whose target is gone (Hugging Face cache folders are links into blobs/, and an interrupted
 * download leaves some dangling) is not a missing file: an optional file must not be skipped
 * for it, and "not found" beside a listing that shows the name would contradict itself.
 */
import { lstat, readlink, stat } from 'node:fs/promises';

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
    const code = (e as NodeJS.ErrnoException).code;
    if (code !== 'ENOENT' && code !== 'ELOOP') return null;
    return (await brokenLink(path, code)) ?? { missing: true, problem: 'does not exist' };
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

async function brokenLink(path: string, code: 'ENOENT' | 'ELOOP'): Promise<FileProblem | null> {
  try {
    if (!(await lstat(path)).isSymbolicLink()) return null;
    const target = await readlink(path);
    const why = code === 'ELOOP' ? 'which loops back on itself' : 'whose target does not exist (an interrupted download?)';
    return { missing: false, problem: `is a symbolic link to ${target}, ${why}` };
  } catch {
    return null;
  }
}
