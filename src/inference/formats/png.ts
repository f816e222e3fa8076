// PNG output: encode with sharp, embed generation parameters as text chunks (A1111/Forge-style
// `parameters` plus a `majicflux` JSON chunk). Reading the parameters back is pngText.ts's and
// writing files atomically is atomicWrite.ts's (both re-exported here); neither needs sharp.
//
// sharp cannot write text chunks, so they are spliced into its output before the first IDAT
// (where PIL and A1111 put them, and where streaming readers look).

import * as zlib from 'node:zlib';
import sharp from 'sharp';
import type { ImageMetadata } from '../../shared/params';
import { ImageParameters, imageParameters, insertChunks, iTXtChunk, JSON_KEYWORD, PARAMETERS_KEYWORD, formatA1111Parameters, pngChunk } from './pngText';

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

/**
 * Encodes an RGB image as PNG, with parameter chunks when `params` is given; `json` is the JSON
 * chunk's content (our images: their ImageMetadata), `params` itself when absent.
 */
export async function encodePng(image: RgbImage, params?: ImageParameters, json: object | undefined = params): Promise<Buffer> {
  const rgb = toRgb8(image);
  const png = await sharp(Buffer.from(rgb.buffer, rgb.byteOffset, rgb.byteLength), {
    raw: { width: image.width, height: image.height, channels: 3 },
  })
    .png()
    .toBuffer();
  return params ? embedParameters(png, params, json) : png;
}

/** An image of ours: A1111's infotext for other tools, and its ImageMetadata as the JSON chunk. */
export function encodeImagePng(image: RgbImage, metadata: ImageMetadata): Promise<Buffer> {
  return encodePng(image, imageParameters(metadata), metadata);
}

/** Adds the `parameters` and `majicflux` iTXt chunks to an existing PNG. */
export function embedParameters(png: Uint8Array, params: ImageParameters, json: object = params): Buffer {
  return insertChunks(png, [
    iTXtChunk(PARAMETERS_KEYWORD, formatA1111Parameters(params)),
    iTXtChunk(JSON_KEYWORD, JSON.stringify(json)),
  ]);
}

// ---------------------------------------------------------------------------------------------
// Step previews

/** A small RGB PNG, synchronously (previews go out in step order, with no sharp round trip). */
export function previewPng(width: number, height: number, rgb: Uint8Array): Buffer {
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(width, 0);
  ihdr.writeUInt32BE(height, 4);
  ihdr.set([8, 2, 0, 0, 0], 8); // 8-bit, truecolour, deflate, no filter method, no interlace
  const raw = Buffer.alloc(height * (width * 3 + 1));
  for (let y = 0; y < height; y++) raw.set(rgb.subarray(y * width * 3, (y + 1) * width * 3), y * (width * 3 + 1) + 1);
  return Buffer.concat([Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]), pngChunk('IHDR', ihdr), pngChunk('IDAT', zlib.deflateSync(raw)), pngChunk('IEND', new Uint8Array(0))]);
}

// ---------------------------------------------------------------------------------------------
// Atomic, never-clobbering file writes live in atomicWrite.ts; re-exported for existing callers.
export { FileExistsError, uniquePath, writePngAtomic } from '../system/atomicWrite';
export type { WriteOptions } from '../system/atomicWrite';
