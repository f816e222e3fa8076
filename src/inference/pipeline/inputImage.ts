// The input image of an image-to-image run: read with sharp (PNG, JPEG, WebP), turned upright by
// its EXIF orientation, transparency flattened onto white, fitted to the run's size, as the VAE
// encoder's input [1, 3, H, W] in [-1, 1]. Also the hires pass's Lanczos resize of a decoded image.
//
// White under transparency, as A1111/Forge's img2img default background: a transparent pixel's own
// colour is arbitrary (often black), so dropping alpha would feed whatever the editor left there.

import type { Metadata, OutputInfo } from 'sharp';
import { UserError } from '../../shared/api';
import { formatBytes } from '../../shared/bytes';
import { LIMITS } from '../../shared/params';
import { readRegularFile } from '../system/regularFile';

/** sharp (libvips) loads on first use: the pipeline's text-to-image runs, and the GPU host's benchmarks, go without it. */
async function loadSharp(): Promise<typeof import('sharp').default> {
  return (await import('sharp')).default;
}

/** Formats an input image may have. */
const FORMATS = ['png', 'jpeg', 'webp'] as const;
export const MIN_INPUT_SIDE = LIMITS.inputImage.minSide;
/** Larger files are not images people feed to img2img (a 2048² 16-bit PNG is ~25 MB). */
const MAX_INPUT_BYTES = 512 * 2 ** 20;
const MAX_INPUT_PIXELS = LIMITS.inputImage.maxPixels;

export type ImageFit = 'crop' | 'stretch';

export interface InputImage {
  file: string;
  bytes: Buffer;
  /** Upright size (EXIF orientation applied). */
  width: number;
  height: number;
}

/** Reads and checks the input image's header: a UserError for what cannot be used, before any model loads. */
export async function readInputImage(file: string): Promise<InputImage> {
  const name = JSON.stringify(file);
  const bytes = await readRegularFile(file, MAX_INPUT_BYTES, (problem, why) =>
    new UserError(why.code === 'ENOENT' ? `the input image ${name} does not exist` : `the input image ${name} cannot be read: ${problem}`));
  const sharp = await loadSharp();
  let meta: Metadata;
  try {
    meta = await sharp(bytes, { limitInputPixels: MAX_INPUT_PIXELS }).metadata();
  } catch (e) {
    throw new UserError(`the input image ${name} is not an image MajicFLUX can read (PNG, JPEG or WebP)`, (e as Error).message);
  }
  if (!(FORMATS as readonly string[]).includes(meta.format)) {
    throw new UserError(`the input image ${name} is ${meta.format.toUpperCase()}; use a PNG, JPEG or WebP image`);
  }
  const { width, height } = meta.autoOrient;
  if (width * height > MAX_INPUT_PIXELS) throw new UserError(`the input image ${name} is ${width}×${height} pixels; at most ${MAX_INPUT_PIXELS.toLocaleString('en')} pixels are read (scale it down first)`);
  if (Math.min(width, height) < MIN_INPUT_SIDE) throw new UserError(`the input image ${name} is ${width}×${height} pixels; it needs at least ${MIN_INPUT_SIDE} pixels per side`);
  return { file, bytes, width, height };
}

/**
 * The image at width×height as the encoder's input [1, 3, H, W] in [-1, 1] (diffusers' 2x − 1 of
 * x/255). `crop` scales to cover and cuts the centre, `stretch` ignores the aspect ratio; both Lanczos.
 */
export async function inputImageTensor(image: InputImage, width: number, height: number, fit: ImageFit): Promise<Float32Array> {
  const sharp = await loadSharp();
  let s = sharp(image.bytes, { limitInputPixels: MAX_INPUT_PIXELS }).autoOrient().flatten({ background: '#ffffff' }).toColourspace('srgb');
  if (image.width !== width || image.height !== height) s = s.resize(width, height, { fit: fit === 'crop' ? 'cover' : 'fill', position: 'centre', kernel: 'lanczos3' });
  let raw: { data: Buffer; info: OutputInfo };
  try {
    raw = await s.removeAlpha().raw({ depth: 'uchar' }).toBuffer({ resolveWithObject: true });
  } catch (e) {
    throw new UserError(`the input image ${JSON.stringify(image.file)} (${formatBytes(image.bytes.length)}) could not be decoded: it is damaged or truncated`, (e as Error).message);
  }
  const { data, info } = raw;
  if (info.width !== width || info.height !== height || info.channels !== 3) throw new Error(`input image: got ${info.width}×${info.height}×${info.channels}, expected ${width}×${height}×3`);
  const plane = width * height;
  const out = new Float32Array(3 * plane);
  const f32 = Math.fround;
  for (let i = 0; i < plane; i++) for (let c = 0; c < 3; c++) out[c * plane + i] = f32(2 * f32(data[i * 3 + c] / 255) - 1);
  return out;
}

/** A decoded image [H, W, 3] in [0, 1] resized with Lanczos (in float: no 8-bit rounding between the passes) → [1, 3, h, w] in [-1, 1]. */
export async function resizeForEncoder(image: Float32Array, width: number, height: number, toWidth: number, toHeight: number): Promise<Float32Array> {
  const sharp = await loadSharp();
  const { data, info } = await sharp(image, { raw: { width, height, channels: 3 } })
    .resize(toWidth, toHeight, { fit: 'fill', kernel: 'lanczos3' })
    .raw({ depth: 'float' })
    .toBuffer({ resolveWithObject: true });
  if (info.width !== toWidth || info.height !== toHeight || info.channels !== 3) throw new Error(`resize: got ${info.width}×${info.height}×${info.channels}, expected ${toWidth}×${toHeight}×3`);
  const px = new Float32Array(data.buffer, data.byteOffset, data.byteLength / 4);
  const plane = toWidth * toHeight;
  const out = new Float32Array(3 * plane);
  for (let i = 0; i < plane; i++) for (let c = 0; c < 3; c++) out[c * plane + i] = 2 * Math.min(1, Math.max(0, px[i * 3 + c])) - 1;
  return out;
}
