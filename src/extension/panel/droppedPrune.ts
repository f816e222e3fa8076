// Which images dropped from the desktop (droppedImages.ts) are kept, and removing the rest. Each
// drop is a copy of a file the user still has, so a bounded folder costs at worst a drop again.
// A file's modification time is its last use (a drop, a run with it: see DroppedImages.touch), so
// the rule is least recently used first, and every window sharing the global storage sees it.
// Pure: no vscode import (unit-tested in plain Node on real files).

import * as fs from 'node:fs';
import * as path from 'node:path';

export interface PruneLimits {
  /** Unused this long and referred to by nothing here, a file goes. */
  maxAgeMs: number;
  /** Past this total the least recently used go, even those the history refers to. */
  maxBytes: number;
  /** Used this recently, a file stays whatever the limits (a drop under way in another window). */
  freshMs: number;
}

const DAY = 24 * 3600_000;

/**
 * 30 days: the images of a recent session come back with their history's re-runs; a month later
 * the user has the originals. 1 GiB: a few hundred photos, twenty of the largest drops (50 MiB),
 * small beside the model on disk, and small enough that nobody has to find this folder.
 */
export const DROPPED_LIMITS: PruneLimits = { maxAgeMs: 30 * DAY, maxBytes: 2 ** 30, freshMs: 10 * 60_000 };

/** Everything but what is in use: the palette's Clear command (an image dropped a moment ago may be on its way to being the panel's input image). */
export const CLEAR_ALL: PruneLimits = { maxAgeMs: 0, maxBytes: 0, freshMs: 60_000 };

/** A write that never finished (the extension host ended mid-drop) is older than this. */
const STALE_PART_MS = DAY;

/** The names storeDroppedImage writes; anything else in the folder is left alone. */
const STORED = /^[0-9a-f]{64}\.(png|jpg|webp)$/;
const PART = /^[0-9a-f]{64}\.(png|jpg|webp)\.[0-9a-f]{8}\.part$/;

export interface DroppedFile {
  file: string;
  size: number;
  /** Its modification time: when it was last dropped or run with. */
  lastUsed: number;
}

export interface DroppedRefs {
  /** Never removed: the panel's input image, the images of jobs not finished. */
  inUse: Iterable<string>;
  /** Kept past the age limit while the total allows: input images the history's re-runs need. */
  referenced: Iterable<string>;
}

/** The files to remove, least recently used first. */
export function filesToPrune(files: readonly DroppedFile[], refs: DroppedRefs, now: number, limits: PruneLimits): DroppedFile[] {
  const inUse = new Set([...refs.inUse].map((f) => path.resolve(f)));
  const referenced = new Set([...refs.referenced].map((f) => path.resolve(f)));
  const held = (f: DroppedFile) => inUse.has(path.resolve(f.file)) || now - f.lastUsed < limits.freshMs;
  const isReferenced = (f: DroppedFile) => referenced.has(path.resolve(f.file));
  const oldestFirst = [...files].sort((a, b) => a.lastUsed - b.lastUsed);
  const gone = new Set(oldestFirst.filter((f) => !held(f) && !isReferenced(f) && now - f.lastUsed >= limits.maxAgeMs));
  let total = oldestFirst.reduce((sum, f) => sum + (gone.has(f) ? 0 : f.size), 0);
  // Over the size limit, least recently used first whatever refers to it: an image used yesterday
  // may be another window's input image, which this window cannot see.
  for (const f of oldestFirst) {
    if (total <= limits.maxBytes) break;
    if (gone.has(f) || held(f)) continue;
    gone.add(f);
    total -= f.size;
  }
  return oldestFirst.filter((f) => gone.has(f));
}

export interface PruneResult {
  removed: DroppedFile[];
  /** Files left and their total size. */
  kept: number;
  keptBytes: number;
}

async function statOf(file: string): Promise<fs.Stats | undefined> {
  try {
    return await fs.promises.stat(file);
  } catch {
    return undefined;
  }
}

/** Removes from `dir` what filesToPrune says, and writes that never finished. A missing folder is an empty one. */
export async function pruneDroppedImages(dir: string, refs: DroppedRefs, limits: PruneLimits = DROPPED_LIMITS, now = Date.now()): Promise<PruneResult> {
  let names: string[];
  try {
    names = await fs.promises.readdir(dir);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return { removed: [], kept: 0, keptBytes: 0 };
    throw err;
  }
  const files: DroppedFile[] = [];
  const removed: DroppedFile[] = [];
  for (const name of names) {
    const file = path.join(dir, name);
    const st = await statOf(file);
    if (!st?.isFile()) continue;
    if (STORED.test(name)) files.push({ file, size: st.size, lastUsed: st.mtimeMs });
    else if (PART.test(name) && now - st.mtimeMs > STALE_PART_MS && (await remove(file))) removed.push({ file, size: st.size, lastUsed: st.mtimeMs });
  }
  const doomed = new Set(filesToPrune(files, refs, now, limits));
  for (const f of doomed) {
    // Dropped again or run with (in another window) since it was listed: it stays.
    const st = await statOf(f.file);
    if (!st || st.mtimeMs !== f.lastUsed) {
      doomed.delete(f);
      continue;
    }
    if (await remove(f.file)) removed.push(f);
    else doomed.delete(f);
  }
  const left = files.filter((f) => !doomed.has(f));
  return { removed, kept: left.length, keptBytes: left.reduce((s, f) => s + f.size, 0) };
}

async function remove(file: string): Promise<boolean> {
  try {
    await fs.promises.unlink(file);
    return true;
  } catch (err) {
    // Gone already (another window pruned it): nothing to do; anything else is the caller's to hear.
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return false;
    throw err;
  }
}
