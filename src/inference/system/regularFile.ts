// Opening files a user (or a remote client) names, without hanging on what is not a file: opening a
// FIFO for reading waits for a writer forever, and a device such as /dev/zero never ends. Open
// non-blocking, then look at what was opened (fstat, so nothing can be swapped in between).

import * as fs from 'node:fs';

// Absent on Windows, where a path cannot name a FIFO this way.
const READ_NONBLOCK = fs.constants.O_RDONLY | (fs.constants.O_NONBLOCK ?? 0);

/** "a folder", "a FIFO (named pipe)", …; undefined for a regular file. */
export function notRegularKind(st: fs.Stats): string | undefined {
  if (st.isFile()) return undefined;
  if (st.isDirectory()) return 'a folder';
  if (st.isFIFO()) return 'a FIFO (named pipe)';
  if (st.isCharacterDevice()) return 'a character device';
  if (st.isBlockDevice()) return 'a block device';
  if (st.isSocket()) return 'a socket';
  return 'not a regular file';
}

/** The problem to report for a non-regular file, e.g. "is a FIFO (named pipe), not a regular file". */
export function notRegularProblem(kind: string): string {
  return kind === 'not a regular file' ? 'is not a regular file' : `is ${kind}, not a regular file`;
}

/** Why a file was refused: the open error's code, or what the path is instead of a regular file. */
export interface Refusal {
  code?: string;
  kind?: string;
}

export type Fail = (problem: string, why: Refusal) => Error;

/**
 * Opens `file` for reading. Throws `fail(problem, why)` when it cannot be opened or is not a
 * regular file (the descriptor is closed then); the caller closes `fd` otherwise.
 */
export function openRegularSync(file: string, fail: Fail): { fd: number; size: number } {
  let fd: number;
  try {
    fd = fs.openSync(file, READ_NONBLOCK);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    throw fail(`cannot open: ${code ?? (e as Error).message}`, { code });
  }
  const st = fs.fstatSync(fd);
  const kind = notRegularKind(st);
  if (kind) {
    fs.closeSync(fd);
    throw fail(notRegularProblem(kind), { kind });
  }
  return { fd, size: st.size };
}

/** A whole regular file of at most `maxBytes` (checked before reading), else `fail(…)`. */
export function readRegularFileSync(file: string, maxBytes: number, fail: Fail): Buffer {
  const { fd, size } = openRegularSync(file, fail);
  try {
    if (size > maxBytes) throw fail(tooLarge(size, maxBytes), {});
    const buf = Buffer.alloc(size);
    let done = 0;
    while (done < size) {
      const n = fs.readSync(fd, buf, done, size - done, done);
      if (n === 0) break;
      done += n;
    }
    return buf.subarray(0, done);
  } finally {
    fs.closeSync(fd);
  }
}

function tooLarge(size: number, maxBytes: number): string {
  return `is ${size} bytes, over the ${maxBytes}-byte limit for this kind of file`;
}

/**
 * Reads a regular file of at most `maxBytes`, checked before reading: larger files are refused
 * (`fail`), or with `{ head: true }` read only that far. `fail` also reports files that cannot be
 * opened or are not regular files.
 */
export async function readRegularFile(file: string, maxBytes: number, fail: Fail, opts: { head?: boolean } = {}): Promise<Buffer> {
  let handle: fs.promises.FileHandle;
  try {
    handle = await fs.promises.open(file, READ_NONBLOCK);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    throw fail(`cannot open: ${code ?? (e as Error).message}`, { code });
  }
  try {
    const st = await handle.stat();
    const kind = notRegularKind(st);
    if (kind) throw fail(notRegularProblem(kind), { kind });
    if (st.size > maxBytes && !opts.head) throw fail(tooLarge(st.size, maxBytes), {});
    // The size from the stat: a file that grows meanwhile is read only that far.
    const buf = Buffer.alloc(Math.min(st.size, maxBytes));
    let done = 0;
    while (done < buf.length) {
      const { bytesRead } = await handle.read(buf, done, buf.length - done, done);
      if (bytesRead === 0) break;
      done += bytesRead;
    }
    return buf.subarray(0, done);
  } finally {
    await handle.close();
  }
}
