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

const canWrite: WriteCheck = (dir) => {
  try {
    fs.accessSync(dir, fs.constants.W_OK);
    return true;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'EROFS') return 'readOnly';
    // Read-only only where the user can change that: their own folder with its write bits off. Another
    // user's folder (root's 0555 /opt/x) is a permission they must be given.
    try {
      const st = fs.statSync(dir);
      return st.uid === process.getuid?.() && (st.mode & 0o222) === 0 ? 'readOnly' : false;
    } catch {
      return false;
    }
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
