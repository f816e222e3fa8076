// What a download keeps on disk beside its destination D (D.part, the D.part.json sidecar) and
// the file steps around it: stat, remove, fsync the folder, sha256 of what is there.

import { createHash, Hash } from 'node:crypto';
import * as fs from 'node:fs';
import * as fsp from 'node:fs/promises';
import type { Job } from './download';
import { Stopped } from './downloadFailures';

export const SIDECAR_VERSION = 1;

export interface Sidecar {
  version: number;
  url: string;
  size?: number;
  sha256?: string;
  etag?: string;
  commit?: string;
}

export function partPath(job: Job): string {
  return `${job.item.dest}.part`;
}
export function sidecarPath(job: Job): string {
  return `${job.item.dest}.part.json`;
}

export async function statOrUndefined(p: string): Promise<fs.Stats | undefined> {
  try {
    return await fsp.stat(p);
  } catch {
    return undefined;
  }
}

export async function readSidecar(p: string): Promise<Sidecar | undefined> {
  try {
    const j = JSON.parse(await fsp.readFile(p, 'utf8')) as Sidecar;
    return j && j.version === SIDECAR_VERSION && typeof j.url === 'string' ? j : undefined;
  } catch {
    return undefined;
  }
}

export async function writeSidecar(p: string, s: Sidecar): Promise<void> {
  const tmp = `${p}.tmp`;
  await fsp.writeFile(tmp, JSON.stringify(s));
  await fsp.rename(tmp, p);
}

export async function removeQuietly(...paths: string[]): Promise<void> {
  for (const p of paths) await fsp.rm(p, { force: true }).catch(() => undefined);
}

export async function syncDir(dir: string): Promise<void> {
  if (process.platform === 'win32') return;
  try {
    const h = await fsp.open(dir, 'r');
    try {
      await h.sync();
    } finally {
      await h.close();
    }
  } catch {
    // not supported on every file system
  }
}

export async function hashInto(hasher: Hash, file: string, length: number, signal: AbortSignal): Promise<void> {
  if (length <= 0) return;
  const stream = fs.createReadStream(file, { start: 0, end: length - 1, highWaterMark: 1 << 20 });
  try {
    for await (const chunk of stream) {
      if (signal.aborted) throw new Stopped();
      hasher.update(chunk as Buffer);
    }
  } finally {
    stream.destroy();
  }
}

/** sha256 of a whole file, read in 1 MiB chunks (also the check's --verify). */
export async function sha256File(file: string, signal: AbortSignal = new AbortController().signal): Promise<string> {
  const h = createHash('sha256');
  const st = await fsp.stat(file);
  await hashInto(h, file, st.size, signal);
  return h.digest('hex');
}

