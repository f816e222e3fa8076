// PNG output: encode with sharp, embed generation parameters as text chunks (A1111/Forge-style
// `parameters` plus a `majicflux` JSON chunk), and write files atomically. Reading the parameters
// back is pngText.ts's (re-exported here), which needs no sharp.
//
// sharp cannot write text chunks, so they are spliced into its output before the first IDAT
// (where PIL and A1111 put them, and where streaming readers look).

import * as crypto from 'node:crypto';
import * as fs from 'node:fs/promises';
import * as path from 'node:path';
import sharp from 'sharp';
import { ImageParameters, insertChunks, iTXtChunk, JSON_KEYWORD, PARAMETERS_KEYWORD, formatA1111Parameters } from './pngText';

// The text-chunk side lives in pngText.ts (no sharp, so the extension host can read parameters).
export * from './pngText';

// ---------------------------------------------------------------------------------------------
// Pixels → PNG

/** Interleaved RGB, row-major [H, W, 3]: floats in [0, 1] (clamped) or bytes. */
export interface RgbImage {
  width: number;
  height: number;
  data: Float32Array | Uint8Array | Uint8ClampedArray;
}

/**
 * Floats → bytes the way diffusers' numpy_to_pil does: clamp to [0, 1], multiply by 255 in
 * float32, round half to even. NaN becomes 0.
 */
export function toRgb8(image: RgbImage): Uint8Array {
  const { width, height, data } = image;
  if (!Number.isInteger(width) || !Number.isInteger(height) || width <= 0 || height <= 0) {
    throw new Error(`image size ${width}×${height} is invalid`);
  }
  if (data.length !== width * height * 3) {
    throw new Error(`image data has ${data.length} values; ${width}×${height} RGB needs ${width * height * 3}`);
  }
  if (!(data instanceof Float32Array)) return data instanceof Uint8Array ? data : new Uint8Array(data.buffer, data.byteOffset, data.length);
  const out = new Uint8Array(data.length);
  for (let i = 0; i < data.length; i++) {
    const x = data[i];
    const v = Math.fround((x > 0 ? (x < 1 ? x : 1) : 0) * 255);
    let r = Math.round(v);
    if (r - v === 0.5 && r % 2 === 1) r -= 1; // ties to even, like numpy/torch
    out[i] = r;
  }
  return out;
}

/** Encodes an RGB image as PNG, with parameter chunks when `params` is given. */
export async function encodePng(image: RgbImage, params?: ImageParameters): Promise<Buffer> {
  const rgb = toRgb8(image);
  const png = await sharp(Buffer.from(rgb.buffer, rgb.byteOffset, rgb.byteLength), {
    raw: { width: image.width, height: image.height, channels: 3 },
  })
    .png()
    .toBuffer();
  return params ? embedParameters(png, params) : png;
}

/** Adds the `parameters` and `majicflux` iTXt chunks to an existing PNG. */
export function embedParameters(png: Uint8Array, params: ImageParameters): Buffer {
  return insertChunks(png, [
    iTXtChunk(PARAMETERS_KEYWORD, formatA1111Parameters(params)),
    iTXtChunk(JSON_KEYWORD, JSON.stringify(params)),
  ]);
}

// ---------------------------------------------------------------------------------------------
// Files

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
export async function uniquePath(p: string): Promise<string> {
  if (!(await exists(p))) return p;
  const ext = path.extname(p);
  const stem = p.slice(0, p.length - ext.length);
  for (let i = 1; i < 100_000; i++) {
    const candidate = `${stem}-${i}${ext}`;
    if (!(await exists(candidate))) return candidate;
  }
  throw new Error(`no free file name like ${p}`);
}

export interface WriteOptions {
  /** Replace an existing file. Default false: an existing file is an error (FileExistsError). */
  overwrite?: boolean;
  /** Instead of failing on an existing file, write to the next free `name-N.ext`. */
  unique?: boolean;
}

/** Moves `tmp` to `dest` only if `dest` does not exist, atomically where the filesystem allows. */
async function placeNoClobber(tmp: string, dest: string): Promise<void> {
  try {
    await fs.link(tmp, dest); // fails with EEXIST instead of replacing
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'EEXIST') throw new FileExistsError(dest);
    if (code !== 'EPERM' && code !== 'ENOTSUP' && code !== 'ENOSYS' && code !== 'EXDEV' && code !== 'EOPNOTSUPP') throw err;
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
  const tmp = path.join(dir, `.${path.basename(target)}.${process.pid}-${crypto.randomBytes(6).toString('hex')}.tmp`);
  let handle: fs.FileHandle | undefined;
  try {
    handle = await fs.open(tmp, 'wx');
    await handle.writeFile(data);
    await handle.sync();
    await handle.close();
    handle = undefined;
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
    return dest;
  } catch (err) {
    await handle?.close().catch(() => undefined);
    await fs.rm(tmp, { force: true }).catch(() => undefined);
    throw err;
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
