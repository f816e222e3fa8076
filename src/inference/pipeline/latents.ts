// The latent's shapes: FLUX.1's packed 2×2 patches, their RoPE position ids, and the starting
// latents of a text-to-image run, in the layouts diffusers uses (the golden tests compare against it).

import { gaussianNoise, Seed } from './noise';

export const LATENT_CHANNELS = 16;
/** Pixels per latent cell (VAE downsampling). */
export const VAE_SCALE = 8;
/** Pixels per packed token: a 2×2 patch of latent cells. */
export const PATCH_PIXELS = 16;
export const PACKED_CHANNELS = LATENT_CHANNELS * 4;

/** Starting latents for a text-to-image run: noise in [1,16,H/8,W/8] order (as diffusers draws it), packed. */
export function initialLatents(seed: Seed, width: number, height: number): Float32Array {
  const s = latentShape(width, height);
  return packLatents(gaussianNoise(seed, s.unpacked.reduce((a, b) => a * b, 1)), s.h2, s.w2);
}

export interface LatentShape {
  /** Latent height and width: H/8, W/8. */
  h2: number;
  w2: number;
  /** Packed sequence length: (H/16)·(W/16). */
  tokens: number;
  unpacked: [1, number, number, number];
  packed: [1, number, number];
}

export function latentShape(width: number, height: number): LatentShape {
  assertMultipleOf16('width', width);
  assertMultipleOf16('height', height);
  const h2 = height / VAE_SCALE;
  const w2 = width / VAE_SCALE;
  const tokens = (h2 / 2) * (w2 / 2);
  return { h2, w2, tokens, unpacked: [1, LATENT_CHANNELS, h2, w2], packed: [1, tokens, PACKED_CHANNELS] };
}

function checkLatentDims(what: string, length: number, h2: number, w2: number): number {
  if (!Number.isInteger(h2) || !Number.isInteger(w2) || h2 <= 0 || w2 <= 0 || h2 % 2 || w2 % 2) {
    throw new Error(`${what}: latent size ${h2}×${w2} must be positive and even`);
  }
  const channels = length / (h2 * w2);
  if (!Number.isInteger(channels) || channels === 0) {
    throw new Error(`${what}: ${length} values do not fit a latent of ${h2}×${w2}`);
  }
  return channels;
}

/**
 * diffusers `_pack_latents` / `_unpack_latents` share one index map: [1, C, h2, w2] ↔
 * [1, (h2/2)(w2/2), 4C]; token (i, j) holds the 2×2 patch at rows 2i.., cols 2j.., channel index
 * c·4 + py·2 + px.
 */
function repack(what: 'packLatents' | 'unpackLatents', src: Float32Array, h2: number, w2: number): Float32Array {
  const C = checkLatentDims(what, src.length, h2, w2);
  const pack = what === 'packLatents';
  const out = new Float32Array(src.length);
  const gw = w2 / 2;
  const plane = h2 * w2;
  for (let c = 0; c < C; c++) {
    for (let y = 0; y < h2; y++) {
      const rowBase = ((y >> 1) * gw) * 4 * C + c * 4 + (y & 1) * 2;
      const cells = c * plane + y * w2;
      for (let x = 0; x < w2; x++) {
        const token = rowBase + (x >> 1) * 4 * C + (x & 1);
        if (pack) out[token] = src[cells + x];
        else out[cells + x] = src[token];
      }
    }
  }
  return out;
}

/** diffusers `_pack_latents`: [1, C, h2, w2] → [1, (h2/2)(w2/2), 4C]. */
export function packLatents(unpacked: Float32Array, h2: number, w2: number): Float32Array {
  return repack('packLatents', unpacked, h2, w2);
}

/** diffusers `_unpack_latents`: the inverse of packLatents. */
export function unpackLatents(packed: Float32Array, h2: number, w2: number): Float32Array {
  return repack('unpackLatents', packed, h2, w2);
}

/** RoPE position ids of the image tokens, [(H/16)(W/16), 3] rows (0, row, col), row-major. Pixel sizes. */
export function imageIds(height: number, width: number): Float32Array {
  assertMultipleOf16('height', height);
  assertMultipleOf16('width', width);
  const rows = height / PATCH_PIXELS;
  const cols = width / PATCH_PIXELS;
  const ids = new Float32Array(rows * cols * 3);
  for (let i = 0; i < rows; i++) {
    for (let j = 0; j < cols; j++) {
      const o = (i * cols + j) * 3;
      ids[o + 1] = i;
      ids[o + 2] = j;
    }
  }
  return ids;
}

/** Text token ids: [len, 3] zeros. */
export function textIds(len: number): Float32Array {
  if (!Number.isInteger(len) || len < 0) throw new Error(`textIds: length must be a non-negative integer, got ${len}`);
  return new Float32Array(len * 3);
}

/** A programming error, not a user's: the limits a user sees are params.ts's, checked before any sampling. */
export function assertMultipleOf16(name: string, value: number): void {
  if (!Number.isInteger(value) || value <= 0 || value % PATCH_PIXELS !== 0) {
    throw new Error(`${name} ${value} must be a positive multiple of ${PATCH_PIXELS}`);
  }
}
