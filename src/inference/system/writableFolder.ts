// Whether files can be written in a folder that may not exist yet, asked before minutes of work
// whose result would otherwise be lost at the save: the extension before a job, the CLI before
// --out's model loads. node:fs only (the extension loads it: eslint.config.mjs EXTENSION_MAY_LOAD).

import * as fs from 'node:fs';
import * as path from 'node:path';

export type FolderProblem =
  /** A file where a folder must be (`path` is that file). */
  | { code: 'fileInTheWay'; path: string }
  /**
   * The nearest folder that exists (`path`) cannot be written in. `readOnly` when that is why (a
   * read-only disk, or the user's own folder with its write bits off), which the user fixes
   * otherwise than a permission of someone else's folder.
   */
  | { code: 'notWritable'; path: string; readOnly?: true };

/** Whether a process can write in `dir`: true, 'readOnly' (see FolderProblem), or false (no permission). */
export type WriteCheck = (dir: string) => boolean | 'readOnly';

/**
 * Why a folder refused a write, from access()'s error code, the folder's stat and the process's uid:
 * 'readOnly' for a read-only disk or the user's own folder with its write bits off (what they can
 * change), else false: another user's folder, even a read-only one (root's 0555 /opt/x), is a
 * permission they must be given.
 */
export function refusalKind(code: string | undefined, st: { uid: number; mode: number } | undefined, uid: number | undefined): 'readOnly' | false {
  if (code === 'EROFS') return 'readOnly';
  return st !== undefined && st.uid === uid && (st.mode & 0o222) === 0 ? 'readOnly' : false;
}

const canWrite: WriteCheck = (dir) => {
  try {
    fs.accessSync(dir, fs.constants.W_OK);
    return true;
  } catch (err) {
    let st: fs.Stats | undefined;
    try {
      st = fs.statSync(dir);
    } catch {
      // gone meanwhile: no permission is all that can be said
    }
    return refusalKind((err as NodeJS.ErrnoException).code, st, process.getuid?.());
  }
};

/**
 * Why a file could not be written in `dir`, or undefined. Folders yet to be made are fine (the
 * writer makes them); what decides is the nearest one that exists. `writable` is asked of that
 * folder (the tests stand in for a read-only one, which root can write anyway).
 */
export function folderProblem(dir: string, writable: WriteCheck = canWrite): FolderProblem | undefined {
  for (let d = path.resolve(dir); ; d = path.dirname(d)) {
    let stat: fs.Stats | undefined;
    try {
      stat = fs.statSync(d);
    } catch {
      // not there (or under a file: ENOTDIR), so the folder above decides
    }
    if (stat) {
      if (!stat.isDirectory()) return { code: 'fileInTheWay', path: d };
      const can = writable(d);
      return can === true ? undefined : { code: 'notWritable', path: d, ...(can === 'readOnly' ? { readOnly: true as const } : {}) };
    }
    if (path.dirname(d) === d) return undefined;
  }
}
