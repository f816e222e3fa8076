// Images dropped on the panel from the desktop or a file manager arrive as bytes with no path the
// host could read. They are kept as files under the extension's global storage (`inputs/`), named
// by their content's hash, so that the input image is a path like a chosen file's (the server reads
// it, the PNG records it, a re-run finds it) and the same image dropped twice is one file. The
// folder is kept bounded (droppedPrune.ts); storing and pruning take turns (DroppedImages).
// Pure: no vscode import (unit-tested in plain Node).

import { createHash, randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { imageSize } from 'image-size';
import { DroppedRefs, DROPPED_LIMITS, pruneDroppedImages, PruneLimits, PruneResult } from './droppedPrune';

/** The largest file the panel takes by drop; a larger one is refused before its bytes are sent. Choose… takes any size. */
export const MAX_DROPPED_IMAGE_BYTES = 50 * 2 ** 20;

/** The MIME types the webview lets through (what the server reads: sharp's PNG, JPEG, WebP); the host checks the bytes again. */
export const DROPPED_IMAGE_TYPES = ['image/png', 'image/jpeg', 'image/webp'];

/** image-size's name for each format the server reads, and the extension its file gets. */
const EXTENSIONS: Record<string, string> = { png: 'png', jpg: 'jpg', webp: 'webp' };

export type StoreResult = { file: string; existed: boolean } | { problem: 'empty' | 'tooLarge' | 'notImage' };

/** The format the bytes are, from their signature (not a name), if the server reads it. */
export function imageKind(bytes: Uint8Array): string | undefined {
  try {
    return EXTENSIONS[imageSize(bytes).type ?? ''];
  } catch {
    return undefined;
  }
}

/** Keeps `bytes` as `<dir>/<sha256>.<ext>`; an image already there is not written again, only marked used now. */
export async function storeDroppedImage(dir: string, bytes: Uint8Array): Promise<StoreResult> {
  if (bytes.byteLength === 0) return { problem: 'empty' };
  if (bytes.byteLength > MAX_DROPPED_IMAGE_BYTES) return { problem: 'tooLarge' };
  const ext = imageKind(bytes);
  if (!ext) return { problem: 'notImage' };
  const file = path.join(dir, `${createHash('sha256').update(bytes).digest('hex')}.${ext}`);
  if ((await isFile(file)) && (await touch(file))) return { file, existed: true };
  await fs.promises.mkdir(dir, { recursive: true });
  // Written aside and renamed, so a file under a hash name always holds all of that content.
  const part = `${file}.${randomBytes(4).toString('hex')}.part`;
  try {
    await fs.promises.writeFile(part, bytes, { flag: 'wx' });
    await fs.promises.rename(part, file);
  } catch (err) {
    await fs.promises.rm(part, { force: true });
    throw err;
  }
  return { file, existed: false };
}

/** Marks `file` used now (its modification time, which pruning reads); false when it is not there. */
async function touch(file: string): Promise<boolean> {
  try {
    const now = new Date();
    await fs.promises.utimes(file, now, now);
    return true;
  } catch {
    return false;
  }
}

/**
 * The folder of dropped images: storing, marking used and pruning, one at a time in this window,
 * so that a prune never removes an image a drop is handing to the panel.
 */
export class DroppedImages {
  private turn: Promise<unknown> = Promise.resolve();

  /** `refs` is read when a prune starts (after the drops before it have settled). */
  constructor(readonly dir: string, private readonly refs: () => DroppedRefs) {}

  /** Whether `file` is one of these (a path the panel or a PNG may name). */
  holds(file: string): boolean {
    return path.isAbsolute(file) && path.dirname(path.resolve(file)) === path.resolve(this.dir);
  }

  store(bytes: Uint8Array): Promise<StoreResult> {
    return this.inTurn(() => storeDroppedImage(this.dir, bytes));
  }

  /** A run with `file` is a use: it stays a while longer. Files not in the folder are left alone. */
  async touch(file: string): Promise<void> {
    if (this.holds(file)) await this.inTurn(() => touch(file));
  }

  prune(limits: PruneLimits = DROPPED_LIMITS): Promise<PruneResult> {
    return this.inTurn(() => pruneDroppedImages(this.dir, this.refs(), limits));
  }

  private inTurn<T>(fn: () => Promise<T>): Promise<T> {
    const r = this.turn.then(fn, fn);
    this.turn = r.catch(() => undefined);
    return r;
  }
}

async function isFile(file: string): Promise<boolean> {
  try {
    return (await fs.promises.stat(file)).isFile();
  } catch {
    return false;
  }
}
