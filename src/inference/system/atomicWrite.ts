// Writing a file so that no reader (and no crash) ever sees a partial one, and an existing file is
// never replaced unless asked: temp file in the same folder, fsync, then link (or rename) into place.

import * as crypto from 'node:crypto';
import * as fsSync from 'node:fs';
import * as fs from 'node:fs/promises';
import * as path from 'node:path';
import { firstFreeNameAsync } from './freeName';
import { processRunning } from './pids';


export class FileExistsError extends Error {
  readonly code = 'EEXIST';
  constructor(readonly path: string) {
    super(`${path} already exists; not overwriting it (pass { overwrite: true } to replace it)`);
    this.name = 'FileExistsError';
  }
}

async function exists(p: string): Promise<boolean> {
  try {
    await fs.lstat(p);
    return true;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return false;
    throw err;
  }
}

/** `p` if free, else `name-1.ext`, `name-2.ext`, … — the first that does not exist. */
export function uniquePath(p: string): Promise<string> {
  return firstFreeNameAsync(p, exists);
}

export interface WriteOptions {
  /** Replace an existing file. Default false: an existing file is an error (FileExistsError). */
  overwrite?: boolean;
  /** Instead of failing on an existing file, write to the next free `name-N.ext`. */
  unique?: boolean;
  /**
   * Abort: the temp file is removed and nothing is left, also when the abort comes while the file
   * is being linked into place (then the file just placed is removed again; with `overwrite` the
   * replaced file is gone, so an abort after the rename is too late). Rejects with the signal's
   * reason (an AbortError).
   */
  signal?: AbortSignal;
}

/** Characters the temp file's name adds to the target's: `.` + `.<pid>-<12 hex>.tmp`, pids of up to 10 digits. */
export const TEMP_NAME_ROOM = 2 + 10 + 1 + 12 + 4;
const TEMP_NAME = /^\..+\.(\d+)-[0-9a-f]{12}\.tmp$/;

/** Whether `name` is a temp file of ours whose writer is gone (killed mid-write): litter. */
export function isStaleTemp(name: string): boolean {
  const m = TEMP_NAME.exec(name);
  return !!m && !processRunning(Number(m[1]));
}

function tempName(target: string): string {
  return path.join(path.dirname(target), `.${path.basename(target)}.${process.pid}-${crypto.randomBytes(6).toString('hex')}.tmp`);
}

/**
 * Removes temp files that writers killed mid-write (kill -9, power loss) left in `dir`: only names
 * of our own pattern, only of processes no longer alive. Returns the names removed.
 */
export async function cleanStaleTemps(dir: string): Promise<string[]> {
  let names: string[];
  try {
    names = await fs.readdir(dir);
  } catch {
    return [];
  }
  const removed: string[] = [];
  for (const name of names) {
    if (!isStaleTemp(name)) continue;
    await fs.rm(path.join(dir, name), { force: true }).then(() => removed.push(name), () => undefined);
  }
  return removed;
}

/** Codes of a filesystem without hard links (FAT, some network shares): there a check, then a rename. */
const NO_LINKS = new Set(['EPERM', 'ENOTSUP', 'ENOSYS', 'EXDEV', 'EOPNOTSUPP']);

/** Moves `tmp` to `dest` only if `dest` does not exist, atomically where the filesystem allows. */
async function placeNoClobber(tmp: string, dest: string): Promise<void> {
  try {
    await fs.link(tmp, dest); // fails with EEXIST instead of replacing
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'EEXIST') throw new FileExistsError(dest);
    if (!NO_LINKS.has(code ?? '')) throw err;
    // No hard links here (FAT, some network shares): check, then rename. Racy, but only there.
    if (await exists(dest)) throw new FileExistsError(dest);
    await fs.rename(tmp, dest);
    return;
  }
  await fs.unlink(tmp);
}

/**
 * Writes `data` to `target` so readers never see a partial file: temp file in the same directory,
 * fsync, then rename (or link when not overwriting). On any failure the temp file is removed.
 * Resolves to the path written (differs from `target` only with `unique`).
 */
export async function writePngAtomic(target: string, data: Uint8Array, opts: WriteOptions = {}): Promise<string> {
  const dir = path.dirname(target);
  const tmp = tempName(target);
  let handle: fs.FileHandle | undefined;
  try {
    handle = await fs.open(tmp, 'wx');
    await handle.writeFile(data);
    await handle.sync();
    await handle.close();
    handle = undefined;
    opts.signal?.throwIfAborted();
    let dest = target;
    if (opts.overwrite) {
      await fs.rename(tmp, dest);
    } else {
      for (let attempt = 0; ; attempt++) {
        if (opts.unique) dest = await uniquePath(target);
        try {
          await placeNoClobber(tmp, dest);
          break;
        } catch (err) {
          // Another writer took the name between uniquePath and the link: try the next one.
          if (!(opts.unique && err instanceof FileExistsError && attempt < 100)) throw err;
        }
      }
    }
    await syncDirectory(dir);
    // The last await is behind us: from here to the caller's reply nothing else runs, so an abort
    // that is not seen now came too late to matter.
    if (opts.signal?.aborted && !opts.overwrite) {
      await fs.rm(dest, { force: true }).catch(() => undefined);
      opts.signal.throwIfAborted();
    }
    return dest;
  } catch (err) {
    await handle?.close().catch(() => undefined);
    await fs.rm(tmp, { force: true }).catch(() => undefined);
    throw err;
  }
}

/** A temp file beside `target` holding `data`, synced: for a rename or link into place. */
function tempWithSync(target: string, data: string | Uint8Array): string {
  const tmp = tempName(target);
  try {
    const fd = fsSync.openSync(tmp, 'wx');
    try {
      fsSync.writeFileSync(fd, data);
      fsSync.fsyncSync(fd);
    } finally {
      fsSync.closeSync(fd);
    }
    return tmp;
  } catch (err) {
    fsSync.rmSync(tmp, { force: true });
    throw err;
  }
}

/**
 * renameSync, tried again for up to 2 s on Windows, where a file someone holds open for a moment (a
 * reader, a virus scanner, the indexer) cannot be renamed or replaced (EPERM, EACCES, EBUSY).
 */
export function renameSyncRetrying(from: string, to: string): void {
  for (let waited = 0; ; waited += 50) {
    try {
      return fsSync.renameSync(from, to);
    } catch (err) {
      if (process.platform !== 'win32' || waited >= 2000 || !['EPERM', 'EACCES', 'EBUSY'].includes((err as NodeJS.ErrnoException).code ?? '')) throw err;
      Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 50);
    }
  }
}

/**
 * Replaces `target` with `data` at once for every reader (the last writer wins, whole): temp file,
 * fsync, rename. Synchronous, for callers that cannot wait (the weight cache, written as a graph
 * is built).
 */
export function replaceFileSync(target: string, data: string | Uint8Array): void {
  const tmp = tempWithSync(target, data);
  try {
    renameSyncRetrying(tmp, target);
  } catch (err) {
    fsSync.rmSync(tmp, { force: true });
    throw err;
  }
}

/**
 * Writes `target` whole only if it does not exist, atomically where the filesystem has hard links
 * (elsewhere a check, then a rename). False when it existed: the first writer's stays.
 */
export function writeFileOnceSync(target: string, data: string | Uint8Array): boolean {
  const tmp = tempWithSync(target, data);
  try {
    fsSync.linkSync(tmp, target);
    return true;
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'EEXIST') return false;
    if (!NO_LINKS.has(code ?? '')) throw err;
    if (fsSync.existsSync(target)) return false;
    renameSyncRetrying(tmp, target);
    return true;
  } finally {
    fsSync.rmSync(tmp, { force: true });
  }
}

/** Makes the rename durable. Not possible on Windows (directories cannot be opened): ignored. */
async function syncDirectory(dir: string): Promise<void> {
  let h: fs.FileHandle | undefined;
  try {
    h = await fs.open(dir, 'r');
    await h.sync();
  } catch {
    // best effort
  } finally {
    await h?.close().catch(() => undefined);
  }
}

/**
 * Writes `data` to `target`, or to the first numbered name free at the moment of writing, never
 * replacing a file (the extension saving what a remote server sent back). Atomic like the server's
 * own writes: a write that fails midway (a full disk) or a killed process leaves no partial file
 * under the name. Resolves to the path written.
 */
export function writeNewFile(target: string, data: Uint8Array): Promise<string> {
  return writePngAtomic(target, data, { unique: true });
}
