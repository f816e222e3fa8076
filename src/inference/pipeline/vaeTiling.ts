// Tiled VAE decode and encode: the image is cut into overlapping tiles of a fixed latent size, each
// run through the same VAE session on its own, and the results blended linearly across the
// overlaps. A run's activations are one tile's, so a 2048² image needs the memory of a 1024² one.
//
// Not exact: the VAE's GroupNorms and its mid-block attention see one tile, not the whole image, so
// tiles differ slightly where they meet; the linear ramps across a wide overlap (a quarter of the
// tile, as diffusers' AutoencoderKL tiling) hide that. test/unit/vae-tiling.test.ts bounds it.

import { VAE_SCALE } from './latents';

export interface TileGrid {
  /** Tile side and overlap, in latent cells (8 pixels each). */
  tile: number;
  overlap: number;
}

/**
 * 128 latent cells = 1024-pixel tiles overlapping by 256 pixels: a 2048² image is 3×3 tiles, each
 * the size `auto` never tiles, so memory is a 1024² decode's (the promise) and each GroupNorm sees
 * as much of the image as diffusers' FLUX tiling gives it (512-pixel tiles were cheaper by a third
 * but their statistics stray further from the whole image's).
 */
export const VAE_TILES: TileGrid = { tile: 128, overlap: 32 };

/**
 * GPU memory one VAE decode holds per output pixel on WebGPU in float16: 13,535 MiB for a 1024²
 * tile (an H200, eighth session, docs/BENCHMARKS.md) — 2.5× what models/workingSets.ts estimates
 * for the CPU, and more than a 12 GB card has.
 */
export const VAE_GPU_BYTES_PER_PIXEL = 13_535;
/** Tile sides `auto` may fall back to on a smaller GPU, in latent cells (1024, 768, 512, 384 px). */
const SMALLER_TILES = [96, 64, 48];

/**
 * The tiles for a VAE run on a GPU with `gpuMemory` bytes it may use (undefined: unknown, or the
 * CPU): the 1024-pixel tiles where one fits (VAE_GPU_BYTES_PER_PIXEL), else the largest smaller
 * side that does, overlapping by a quarter as VAE_TILES; the smallest when none fits.
 */
export function tileGridFor(gpuMemory: number | undefined): TileGrid {
  const fits = (cells: number) => gpuMemory === undefined || (cells * VAE_SCALE) ** 2 * VAE_GPU_BYTES_PER_PIXEL <= gpuMemory;
  if (fits(VAE_TILES.tile)) return VAE_TILES;
  const cells = SMALLER_TILES.find(fits) ?? SMALLER_TILES[SMALLER_TILES.length - 1];
  return { tile: cells, overlap: cells / 4 };
}

/** Whether a `width` × `height` run is tiled: `on`, or `auto` with the image larger than one tile of `grid`. */
export function useTiling(mode: 'auto' | 'on' | 'off', width: number, height: number, grid: TileGrid = VAE_TILES): boolean {
  return mode === 'on' || (mode === 'auto' && width * height > (grid.tile * VAE_SCALE) ** 2);
}

/** Where tiles start along a side of `size` cells: every tile − overlap cells, the last one flush with the end. */
export function tileStarts(size: number, { tile, overlap }: TileGrid): number[] {
  if (size <= tile) return [0];
  const stride = tile - overlap;
  const starts: number[] = [];
  for (let s = 0; s + tile < size; s += stride) starts.push(s);
  starts.push(size - tile);
  return starts;
}

/**
 * Blend weights along one side of a tile of `len` output units: 1 in its interior, rising linearly
 * across the overlap with the tile before and falling across the one after, so overlapping tiles'
 * weights sum to 1.
 */
function ramp(len: number, before: number, after: number): Float32Array {
  const w = new Float32Array(len).fill(1);
  for (let p = 0; p < before; p++) w[p] = (p + 0.5) / before;
  for (let p = 0; p < after; p++) w[len - 1 - p] = Math.min(w[len - 1 - p], (p + 0.5) / after);
  return w;
}

/** The run of one tile: input [inC, th·inScale, tw·inScale] → output [outC, th·outScale, tw·outScale]. */
type TileRun = (input: Float32Array, height: number, width: number) => Promise<Float32Array>;

interface Sides {
  channels: number;
  /** Units per latent cell: 1 for latents, 8 for pixels. */
  scale: number;
}

/** Called before each tile (`done` of `total` finished): progress, and where a cancel is noticed. */
export type OnTile = (done: number, total: number) => void;

/** Runs `run` on each tile of a latent grid h×w and blends the outputs. */
async function tiled(input: Float32Array, h: number, w: number, from: Sides, to: Sides, run: TileRun, grid: TileGrid, onTile: OnTile): Promise<Float32Array> {
  const ys = tileStarts(h, grid);
  const xs = tileStarts(w, grid);
  const inH = h * from.scale, inW = w * from.scale;
  const outH = h * to.scale, outW = w * to.scale;
  const sum = new Float32Array(to.channels * outH * outW);
  const weight = new Float32Array(outH * outW);
  const th = Math.min(grid.tile, h), tw = Math.min(grid.tile, w);
  const cut = new Float32Array(from.channels * th * from.scale * tw * from.scale);
  for (let iy = 0; iy < ys.length; iy++) {
    for (let ix = 0; ix < xs.length; ix++) {
      onTile(iy * xs.length + ix, ys.length * xs.length);
      const y0 = ys[iy], x0 = xs[ix];
      // The input tile.
      const ch = th * from.scale, cw = tw * from.scale;
      for (let c = 0; c < from.channels; c++) {
        for (let y = 0; y < ch; y++) {
          const src = c * inH * inW + (y0 * from.scale + y) * inW + x0 * from.scale;
          cut.set(input.subarray(src, src + cw), (c * ch + y) * cw);
        }
      }
      const out = await run(cut, ch, cw);
      const oh = th * to.scale, ow = tw * to.scale;
      if (out.length !== to.channels * oh * ow) throw new Error(`VAE tile: ${out.length} values, expected ${to.channels}×${oh}×${ow}`);
      // Overlaps with the neighbours, in output units (the last tile may overlap more than `overlap`).
      const wy = ramp(oh, iy > 0 ? (ys[iy - 1] + th - y0) * to.scale : 0, iy < ys.length - 1 ? (y0 + th - ys[iy + 1]) * to.scale : 0);
      const wx = ramp(ow, ix > 0 ? (xs[ix - 1] + tw - x0) * to.scale : 0, ix < xs.length - 1 ? (x0 + tw - xs[ix + 1]) * to.scale : 0);
      const oy0 = y0 * to.scale, ox0 = x0 * to.scale;
      for (let y = 0; y < oh; y++) {
        const row = (oy0 + y) * outW + ox0;
        for (let x = 0; x < ow; x++) weight[row + x] += wy[y] * wx[x];
        for (let c = 0; c < to.channels; c++) {
          const dst = c * outH * outW + row;
          const src = (c * oh + y) * ow;
          for (let x = 0; x < ow; x++) sum[dst + x] += out[src + x] * wy[y] * wx[x];
        }
      }
    }
  }
  const plane = outH * outW;
  for (let c = 0; c < to.channels; c++) for (let i = 0; i < plane; i++) sum[c * plane + i] /= weight[i];
  return sum;
}

/** z [zc, h, w] (un-scaled) → image [3, 8h, 8w], tile by tile. */
export function decodeTiled(decode: TileRun, z: Float32Array, zc: number, h: number, w: number, grid: TileGrid = VAE_TILES, onTile: OnTile = () => {}): Promise<Float32Array> {
  return tiled(z, h, w, { channels: zc, scale: 1 }, { channels: 3, scale: VAE_SCALE }, decode, grid, onTile);
}

/** image [3, H, W] in [-1, 1] → posterior mean [zc, H/8, W/8], tile by tile. */
export function encodeTiled(encode: TileRun, image: Float32Array, H: number, W: number, zc: number, grid: TileGrid = VAE_TILES, onTile: OnTile = () => {}): Promise<Float32Array> {
  return tiled(image, H / VAE_SCALE, W / VAE_SCALE, { channels: 3, scale: VAE_SCALE }, { channels: zc, scale: 1 }, encode, grid, onTile);
}
