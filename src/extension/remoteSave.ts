// Saving the images a remote server sends back (the extension writes them, not the server). The
// write is atomic (a temp file beside the target, then linked into place): a cancel or a failure
// removes the temp file; one left by a window that was closed or crashed mid-write is removed the
// next time this folder is written to, or at start for the folders the history knows.

import * as fs from 'node:fs';
import * as path from 'node:path';
import { cleanStaleTemps, writePngAtomic } from '../inference/system/atomicWrite';

export class RemoteSaver {
  private readonly swept = new Set<string>();

  constructor(private readonly log?: { info(m: string): void }) {}

  /** Writes `png` to `target` or the first free numbered name beside it; `signal` aborts and removes what was written. */
  async save(target: string, png: Uint8Array, signal?: AbortSignal): Promise<string> {
    const dir = path.dirname(target);
    await fs.promises.mkdir(dir, { recursive: true });
    await this.sweep(dir);
    return writePngAtomic(target, png, { unique: true, signal });
  }

  /**
   * Removes temp files a killed writer left in `dir` (our own temp-name pattern only, of processes
   * no longer alive: never a user's file), once per folder and session.
   */
  async sweep(dir: string): Promise<void> {
    if (this.swept.has(dir)) return;
    this.swept.add(dir);
    const removed = await cleanStaleTemps(dir);
    if (removed.length) this.log?.info(`removed ${removed.length} temporary file(s) an interrupted save left in ${dir}: ${removed.join(', ')}`);
  }
}
