// Tiled VAE decode and encode (pipeline/vaeTiling.ts): the blending is exact for an operator that
// sees only its own pixels, and the tiny golden VAE's tiled output stays within stated bounds of the
// untiled one, with no seam (the error along tile borders is not larger than elsewhere).
import * as assert from 'node:assert/strict';
import * as path from 'node:path';
import { VaeDecoder, VaeEncoder } from '../../src/inference/graphs/vae';
import { FluxPipeline } from '../../src/inference/pipeline/pipeline';
import { CancelledError } from '../../src/shared/api';
import { gaussianNoise } from '../../src/inference/pipeline/noise';
import { decodeTiled, encodeTiled, TileGrid, tileGridFor, tileStarts, useTiling, VAE_GPU_BYTES_PER_PIXEL, VAE_TILES } from '../../src/inference/pipeline/vaeTiling';
import { compare, goldenCase, GOLDEN_MODELS } from '../helpers/golden';

const AE = path.join(GOLDEN_MODELS, 'ae.safetensors');

/** Mean of the per-pixel (max over channels) abs error inside the tiles' overlap bands, and elsewhere. */
function seamErrors(a: Float32Array, b: Float32Array, C: number, H: number, W: number, grid: TileGrid, unit: number) {
  const band = (size: number, p: number) => {
    const s = tileStarts(size, grid);
    for (let i = 1; i < s.length; i++) if (p >= s[i] * unit && p < (s[i - 1] + grid.tile) * unit) return true;
    return false;
  };
  let bs = 0, bn = 0, os = 0, on = 0;
  for (let y = 0; y < H; y++) {
    for (let x = 0; x < W; x++) {
      let e = 0;
      for (let c = 0; c < C; c++) e = Math.max(e, Math.abs(a[c * H * W + y * W + x] - b[c * H * W + y * W + x]));
      if (band(H / unit, y) || band(W / unit, x)) {
        bs += e;
        bn++;
      } else {
        os += e;
        on++;
      }
    }
  }
  return { band: bs / bn, elsewhere: os / on };
}

describe('tiled VAE (pipeline/vaeTiling.ts)', function () {
  this.timeout(120_000);
  let decoder: VaeDecoder;
  let encoder: VaeEncoder;
  before(async () => {
    decoder = await VaeDecoder.load(AE);
    encoder = await VaeEncoder.load(AE);
  });
  after(async () => {
    await decoder.release();
    await encoder.release();
  });
  const decode = (z: Float32Array, h: number, w: number) => decoder.decode(z, h, w);
  const encode = (x: Float32Array, h: number, w: number) => encoder.encodeMean(x, h, w);

  it('tiles: 1024-pixel tiles overlapping by 256, the last flush with the edge; auto tiles above 1024² pixels', () => {
    assert.deepEqual(VAE_TILES, { tile: 128, overlap: 32 });
    assert.deepEqual(tileStarts(256, VAE_TILES), [0, 96, 128], '2048 px: 3 tiles a side');
    assert.deepEqual(tileStarts(320, VAE_TILES), [0, 96, 192]);
    assert.deepEqual(tileStarts(300, VAE_TILES), [0, 96, 172], 'the last overlaps more');
    assert.deepEqual(tileStarts(128, VAE_TILES), [0]);
    assert.deepEqual(tileStarts(40, VAE_TILES), [0], 'smaller than a tile: one');
    assert.deepEqual([useTiling('auto', 1024, 1024), useTiling('auto', 1040, 1024), useTiling('on', 64, 64), useTiling('off', 2048, 2048)], [false, true, true, false]);
  });

  it('on a GPU too small for a 1024² VAE run (≈ 13.5 KB a pixel on WebGPU), auto takes smaller tiles: 768, 512, then 384 pixels', () => {
    const GiB = 2 ** 30;
    assert.equal(tileGridFor(undefined), VAE_TILES, 'unknown memory (or the CPU): 1024-pixel tiles');
    assert.equal(tileGridFor(16 * GiB), VAE_TILES);
    assert.equal(tileGridFor(1024 ** 2 * VAE_GPU_BYTES_PER_PIXEL), VAE_TILES, 'exactly one 1024² run');
    assert.deepEqual(tileGridFor(1024 ** 2 * VAE_GPU_BYTES_PER_PIXEL - 1), { tile: 96, overlap: 24 });
    assert.deepEqual(tileGridFor(0.9 * 12 * GiB), { tile: 96, overlap: 24 }, 'a 12 GB card: 768-pixel tiles');
    assert.deepEqual(tileGridFor(0.9 * 6 * GiB), { tile: 64, overlap: 16 });
    assert.deepEqual(tileGridFor(2 * GiB), { tile: 48, overlap: 12 });
    assert.deepEqual(tileGridFor(GiB / 2), { tile: 48, overlap: 12 }, 'nothing fits: the smallest');
    const small = tileGridFor(0.9 * 12 * GiB);
    assert.deepEqual([useTiling('auto', 1024, 1024, small), useTiling('auto', 768, 768, small), useTiling('off', 1024, 1024, small)], [true, false, false]);
    assert.deepEqual(tileStarts(128, small), [0, 32], 'a 1024-pixel side in two 768-pixel tiles');
  });

  it('the blend is exact where tiles agree: a per-pixel "decoder" and an 8×8-mean "encoder" give the untiled result', async () => {
    const grid = { tile: 8, overlap: 3 };
    const h = 20, w = 29 * 2;
    const z = gaussianNoise(1, 16 * h * w);
    // Each output pixel from its own latent cell: channels 0–2 plus a bias per channel.
    const pointwise = async (x: Float32Array, th: number, tw: number) => {
      const out = new Float32Array(3 * th * 8 * tw * 8);
      for (let c = 0; c < 3; c++) for (let y = 0; y < th * 8; y++) for (let x2 = 0; x2 < tw * 8; x2++) out[(c * th * 8 + y) * tw * 8 + x2] = x[(c * th + (y >> 3)) * tw + (x2 >> 3)] + c;
      return out;
    };
    const whole = await pointwise(z, h, w);
    const tiled = await decodeTiled(pointwise, z, 16, h, w, grid);
    assert.ok(compare(tiled, whole).maxAbs < 1e-5, `decode ${compare(tiled, whole).maxAbs}`);
    const img = gaussianNoise(2, 3 * h * 8 * w * 8);
    const pool = async (x: Float32Array, H: number, W: number) => {
      const out = new Float32Array(16 * (H / 8) * (W / 8));
      for (let c = 0; c < 16; c++) for (let y = 0; y < H; y++) for (let x2 = 0; x2 < W; x2++) out[(c * (H / 8) + (y >> 3)) * (W / 8) + (x2 >> 3)] += x[((c % 3) * H + y) * W + x2] / 64;
      return out;
    };
    const wholeE = await pool(img, h * 8, w * 8);
    const tiledE = await encodeTiled(pool, img, h * 8, w * 8, 16, grid);
    assert.ok(compare(tiledE, wholeE).maxAbs < 1e-5, `encode ${compare(tiledE, wholeE).maxAbs}`);
  });

  it('one tile covering the image is the untiled decode exactly', async () => {
    const z = goldenCase('vae.safetensors').readF32('z');
    assert.equal(compare(await decodeTiled(decode, z, 16, 16, 24, VAE_TILES), await decode(z, 16, 24)).maxAbs, 0);
  });

  // The tiny VAE has random weights: its GroupNorm statistics change a lot from tile to tile (a real
  // VAE on a natural image's latents changes far less), so these bounds are loose; the seam bound
  // is the point: blending leaves no border worse than the tiles' interiors.
  it('decodes the golden latent z [16, 16×24] in 12-cell tiles within the stated bound, with no seam', async () => {
    const grid = { tile: 12, overlap: 4 };
    const z = goldenCase('vae.safetensors').readF32('z');
    const whole = await decode(z, 16, 24);
    const tiled = await decodeTiled(decode, z, 16, 16, 24, grid);
    const s = compare(tiled, whole);
    const seam = seamErrors(tiled, whole, 3, 128, 192, grid, 8);
    console.log(`      max abs ${s.maxAbs.toFixed(3)} (|x| ≤ ${s.maxRef.toFixed(2)}), rel L2 ${s.relL2.toFixed(3)}; mean error in the overlaps ${seam.band.toFixed(3)}, elsewhere ${seam.elsewhere.toFixed(3)}`);
    assert.ok(s.maxAbs <= 1.2 && s.relL2 <= 0.25, `max abs ${s.maxAbs}, rel L2 ${s.relL2}`);
    assert.ok(seam.band <= 1.5 * seam.elsewhere, `overlaps ${seam.band} vs ${seam.elsewhere}`);
  });

  it('decodes a larger random latent [16, 48×64] in 32-cell tiles: closer, and no seam', async () => {
    const grid = { tile: 32, overlap: 8 };
    const z = gaussianNoise(5, 16 * 48 * 64);
    const whole = await decode(z, 48, 64);
    const tiled = await decodeTiled(decode, z, 16, 48, 64, grid);
    const s = compare(tiled, whole);
    const seam = seamErrors(tiled, whole, 3, 384, 512, grid, 8);
    console.log(`      max abs ${s.maxAbs.toFixed(3)} (|x| ≤ ${s.maxRef.toFixed(2)}), rel L2 ${s.relL2.toFixed(3)}; mean error in the overlaps ${seam.band.toFixed(3)}, elsewhere ${seam.elsewhere.toFixed(3)}`);
    assert.ok(s.maxAbs <= 0.4 && s.relL2 <= 0.1, `max abs ${s.maxAbs}, rel L2 ${s.relL2}`);
    assert.ok(seam.band <= 1.25 * seam.elsewhere, `overlaps ${seam.band} vs ${seam.elsewhere}`);
  });

  it('encodes a random image [3, 384×512] in 24-cell (192-pixel) tiles within the stated bound, with no seam', async () => {
    const grid = { tile: 24, overlap: 8 };
    const img = gaussianNoise(6, 3 * 384 * 512).map((x) => Math.tanh(x));
    const whole = await encode(img, 384, 512);
    const tiled = await encodeTiled(encode, img, 384, 512, 16, grid);
    const s = compare(tiled, whole);
    const seam = seamErrors(tiled, whole, 16, 48, 64, grid, 1);
    console.log(`      max abs ${s.maxAbs.toFixed(3)} (|x| ≤ ${s.maxRef.toFixed(2)}), rel L2 ${s.relL2.toFixed(3)}; mean error in the overlaps ${seam.band.toFixed(3)}, elsewhere ${seam.elsewhere.toFixed(3)}`);
    assert.ok(s.maxAbs <= 0.35 && s.relL2 <= 0.1, `max abs ${s.maxAbs}, rel L2 ${s.relL2}`);
    assert.ok(seam.band <= 1.25 * seam.elsewhere, `overlaps ${seam.band} vs ${seam.elsewhere}`);
  });

  it('the pipeline decodes in tiles when vaeTiling is on, and a cancel between tiles stops it', async () => {
    const p = await FluxPipeline.create({ dir: GOLDEN_MODELS, transformer: path.join(GOLDEN_MODELS, 'flux-tiny.safetensors') }, { weights: 'fp32', ep: 'cpu', memory: 'resident' });
    try {
      const params = { prompt: 'a lighthouse', width: 1040, height: 1024, steps: 1, seed: 9 };
      // (auto's choice of tiling for this size is the unit test above's useTiling('auto', 1040, 1024))
      const [off, on] = [await p.generate({ ...params, vaeTiling: 'off' }), await p.generate({ ...params, vaeTiling: 'on' })];
      const d = compare(on.image, off.image);
      assert.ok(d.maxAbs > 0 && d.relL2 < 0.2, `tiled decode: max abs ${d.maxAbs}, rel L2 ${d.relL2}`);
      // 130×128 latent cells: two tiles. A cancel after the first is noticed before the second runs.
      const ac = new AbortController();
      const tiles: string[] = [];
      await assert.rejects(p.generate({ ...params, vaeTiling: 'on' }, { signal: ac.signal, onTile: (k, n) => { tiles.push(`${k}/${n}`); if (k === 1) ac.abort(); } }), CancelledError);
      assert.deepEqual(tiles, ['0/2', '1/2']);
    } finally {
      await p.release();
    }
  });
});
