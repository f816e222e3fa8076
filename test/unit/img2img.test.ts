// Image-to-image and the hires pass (issue 13 items 2 and 3): golden runs against diffusers'
// FluxImg2ImgPipeline, the input image's reading and refusals, the size it gives, and a hires run.
import * as assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import sharp from 'sharp';
import { UserError } from '../../src/shared/api';
import { resolveParams, sizeForImage } from '../../src/shared/params';
import { FluxPipeline } from '../../src/inference/pipeline/pipeline';
import { VaeEncoder } from '../../src/inference/graphs/vae';
import { imageLatents, img2imgStart, scaleNoise, upscaleLatents } from '../../src/inference/pipeline/img2img';
import { inputImageTensor, readInputImage } from '../../src/inference/pipeline/inputImage';
import { writeSafetensors } from '../../src/inference/formats/safetensorsWriter';
import { assertGoldenClose, assertMaxAbs, GOLDEN_CASES, GOLDEN_MODELS, goldenCase } from '../helpers/golden';

interface Img2ImgCase { file: string; png: string; input: string; prompt: string; height: number; width: number; strength: number; num_inference_steps: number; steps_run: number; guidance_scale: number; max_sequence_length: number; first_sigma: number }
const cases: Img2ImgCase[] = JSON.parse(fs.readFileSync(path.join(GOLDEN_CASES, 'img2img.json'), 'utf8'));
const AE = path.join(GOLDEN_MODELS, 'ae.safetensors');
const spec = { dir: GOLDEN_MODELS, transformer: path.join(GOLDEN_MODELS, 'flux-tiny.safetensors') };

describe('image-to-image (pipeline/img2img.ts, inputImage.ts)', function () {
  this.timeout(120_000);
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'mf-img2img-'));
  const cacheDir = path.join(tmp, 'cache');
  let pipeline: FluxPipeline;
  before(async () => {
    pipeline = await FluxPipeline.create(spec, { weights: 'fp32', ep: 'cpu', memory: 'resident', cacheDir });
  });
  after(async () => {
    await pipeline.release();
    fs.rmSync(tmp, { recursive: true, force: true });
  });

  /** A PNG of `width`×`height` whose pixel (x, y) is `color(x, y)` (RGB or RGBA bytes). */
  async function png(name: string, width: number, height: number, color: (x: number, y: number) => number[], channels: 3 | 4 = 3): Promise<string> {
    const data = Buffer.alloc(width * height * channels);
    for (let y = 0; y < height; y++) for (let x = 0; x < width; x++) data.set(color(x, y), (y * width + x) * channels);
    const file = path.join(tmp, name);
    await sharp(data, { raw: { width, height, channels } }).png().toFile(file);
    return file;
  }

  describe('golden: diffusers FluxImg2ImgPipeline on the tiny model (encoder mean)', () => {
    cases.forEach((c, n) => {
      const golden = goldenCase(c.file);
      it(`case ${n} (strength ${c.strength}): the input pixels, the encoded image latents and the noised start`, async () => {
        const input = await readInputImage(path.join(GOLDEN_CASES, c.input));
        const pixels = await inputImageTensor(input, c.width, c.height, 'crop');
        const fed = golden.readF32('input_image'); // [H, W, 3] in [0, 1]
        const plane = c.width * c.height;
        for (let i = 0; i < plane; i++) for (let ch = 0; ch < 3; ch++) assert.ok(Math.abs(pixels[ch * plane + i] - (2 * fed[i * 3 + ch] - 1)) < 1e-6, `pixel ${i} channel ${ch}`);
        const enc = await VaeEncoder.load(AE);
        try {
          const latents = imageLatents(await enc.encodeMean(pixels, c.height, c.width), c.height / 8, c.width / 8, enc.config);
          assertGoldenClose(latents, golden.readF32('image_latents'), 'image_latents');
        } finally {
          await enc.release();
        }
        const start = img2imgStart(c.num_inference_steps, c.strength);
        assert.equal(c.num_inference_steps - start, c.steps_run);
        const initial = scaleNoise(golden.readF32('image_latents'), golden.readF32('noise'), Math.fround(c.first_sigma));
        assertGoldenClose(initial, golden.readF32('initial_latents'), 'initial_latents');
      });

      it(`case ${n} (strength ${c.strength}): every step's latent and the final image, fed the recorded noise`, async () => {
        const noiseFile = path.join(tmp, `noise-${n}.safetensors`);
        const noise = golden.readF32('noise');
        writeSafetensors(noiseFile, [{ name: 'initial_latents', dtype: 'F32', shape: golden.info('noise').shape, bytes: () => new Uint8Array(noise.buffer, noise.byteOffset, noise.byteLength) }]);
        const seen: { step: number; steps: number; latents: Float32Array }[] = [];
        const stages: string[] = [];
        const result = await pipeline.generate(
          { prompt: c.prompt, image: path.join(GOLDEN_CASES, c.input), strength: c.strength, steps: c.num_inference_steps, guidance: c.guidance_scale, t5MaxLength: c.max_sequence_length, latentsFile: noiseFile, seed: 0 },
          { onStep: (p) => seen.push({ step: p.step, steps: p.steps, latents: p.latents.slice() }), onStage: (s, state) => state === 'start' && stages.push(s) },
        );
        // The size comes from the image (no width/height given), and progress counts the steps that run.
        assert.deepEqual([result.width, result.height], [c.width, c.height]);
        assert.deepEqual(seen.map((s) => `${s.step}/${s.steps}`), Array.from({ length: c.steps_run }, (_, k) => `${k + 1}/${c.steps_run}`));
        seen.forEach((s, k) => assertGoldenClose(s.latents, golden.readF32(`latents_after_step_${k}`), `step ${k}`));
        assertMaxAbs(result.image, golden.readF32('image'), 1e-3, 'image');
        assert.deepEqual(stages.filter((s) => s !== 'text'), ['encode', 'denoise', 'decode']);
        assert.equal(result.stages.find((s) => s.stage === 'encode')?.ep, 'cpu', 'the encode stage says where it ran');
        assert.equal(result.metadata.image, path.join(GOLDEN_CASES, c.input));
        assert.equal(result.metadata.strength, c.strength);
        assert.equal(result.metadata.imageFit, 'crop');
      });
    });
  });

  describe('the input image', () => {
    it('refuses what is not a usable image with a clear message, before any model part loads', async () => {
      const fresh = await FluxPipeline.create(spec, { weights: 'fp32', ep: 'cpu', memory: 'resident', cacheDir });
      const loads: string[] = [];
      const text = path.join(tmp, 'notes.png');
      fs.writeFileSync(text, 'these are my notes, not a picture');
      const gif = path.join(tmp, 'anim.gif');
      await sharp({ create: { width: 32, height: 32, channels: 3, background: '#808080' } }).gif().toFile(gif);
      const tiny = await png('tiny.png', 12, 40, () => [0, 0, 0]);
      const truncated = path.join(tmp, 'truncated.png');
      fs.writeFileSync(truncated, fs.readFileSync(path.join(GOLDEN_CASES, 'pipeline-1.png')).subarray(0, 200));
      const cases: [string, RegExp][] = [
        [path.join(tmp, 'missing.png'), /input image ".*missing\.png" does not exist/],
        [tmp, /input image ".*" cannot be read: is a folder/],
        [text, /is not an image MajicFLUX can read \(PNG, JPEG or WebP\)/],
        [gif, /is GIF; use a PNG, JPEG or WebP image/],
        [tiny, /is 12×40 pixels; it needs at least 16 pixels per side/],
        [truncated, /damaged or truncated|not an image MajicFLUX can read/],
      ];
      for (const [image, message] of cases) {
        await assert.rejects(fresh.generate({ prompt: 'x', image, steps: 2, seed: 1 }, { onLoad: (c) => loads.push(c) }), (e: Error) => e instanceof UserError && message.test(e.message) && !/\n\s+at /.test(e.message), image);
      }
      assert.deepEqual(loads, [], 'nothing loaded');
      assert.deepEqual(fresh.loaded(), []);
      await fresh.release();
    });

    it('loading the pipeline does not load sharp: benchmarks on a bare GPU host run without it', () => {
      const pipelineModule = JSON.stringify(path.resolve(__dirname, '../../src/inference/pipeline/pipeline'));
      const r = spawnSync(process.execPath, ['-r', 'tsx/cjs', '-e', `require(${pipelineModule}); console.log(Object.keys(require.cache).some((k) => /[\\\\/]sharp[\\\\/]/.test(k)))`], { encoding: 'utf8', timeout: 60_000 });
      assert.equal(r.stdout.trim(), 'false', r.stderr);
    });

    it('width/height default to the image size to the nearest 16 (aspect kept when out of range); one side given, the other follows the image', () => {
      assert.deepEqual(sizeForImage(100, 70), { width: 96, height: 64 });
      assert.deepEqual(sizeForImage(4000, 3000), { width: 2048, height: 1536 });
      assert.deepEqual(sizeForImage(40, 80), { width: 64, height: 128 });
      const r = (p: object, img = { width: 1000, height: 500 }) => resolveParams({ prompt: 'x', image: 'in.png', ...p }, img);
      assert.deepEqual([r({}).width, r({}).height], [1008, 496]);
      assert.deepEqual([r({ width: 512 }).width, r({ width: 512 }).height], [512, 256]);
      assert.deepEqual([r({ height: 320 }).width, r({ height: 320 }).height], [640, 320]);
      assert.deepEqual([r({ width: 256, height: 768 }).width, r({ width: 256, height: 768 }).height], [256, 768]);
      assert.equal(r({ width: 2048 }, { width: 4000, height: 40 }).height, 64, 'a derived side stays within the limits (20 px → 64)');
      assert.equal(r({ height: 64 }, { width: 4000, height: 40 }).width, 2048, 'a derived side stays within the limits (6400 px → 2048)');
      assert.equal(resolveParams({ prompt: 'x' }, { width: 100, height: 100 }).width, 1024, 'no image: the usual default');
    });

    it('an input image outside the side limits runs scaled, and the result says so (warnings); one within them, or sides given, says nothing', async () => {
      const small = await png('small.png', 40, 48, () => [90, 120, 150]);
      const r = await pipeline.generate({ prompt: 'x', steps: 1, seed: 1, image: small, strength: 0.5 });
      assert.deepEqual([r.width, r.height], [64, 80]);
      assert.deepEqual(r.warnings, ['input image 40×48 runs at 64×80: image sides are 64–2048 px (set width/height to choose)']);
      assert.deepEqual((await pipeline.generate({ prompt: 'x', steps: 1, seed: 1, image: small, strength: 0.5, width: 64, height: 64 })).warnings, [], 'the size chosen');
      const fits = await png('fits.png', 64, 80, () => [90, 120, 150]);
      assert.deepEqual((await pipeline.generate({ prompt: 'x', steps: 1, seed: 1, image: fits, strength: 0.5 })).warnings, []);
    });

    it("'crop' scales to cover and cuts the centre, 'stretch' keeps everything; transparency becomes white", async () => {
      // Thirds: red | green | blue, 300×100.
      const file = await png('thirds.png', 300, 100, (x) => (x < 100 ? [255, 0, 0] : x < 200 ? [0, 255, 0] : [0, 0, 255]));
      const img = await readInputImage(file);
      const at = (t: Float32Array, x: number, y: number, w: number, h: number) => [0, 1, 2].map((c) => Math.round(((t[c * w * h + y * w + x] + 1) / 2) * 255));
      const crop = await inputImageTensor(img, 64, 64, 'crop');
      assert.deepEqual([at(crop, 8, 32, 64, 64), at(crop, 55, 32, 64, 64)], [[0, 255, 0], [0, 255, 0]], 'the centre square is the green third');
      const stretch = await inputImageTensor(img, 96, 64, 'stretch');
      assert.deepEqual([at(stretch, 8, 32, 96, 64), at(stretch, 48, 32, 96, 64), at(stretch, 88, 32, 96, 64)], [[255, 0, 0], [0, 255, 0], [0, 0, 255]]);
      const clear = await readInputImage(await png('clear.png', 64, 64, (x) => (x < 32 ? [0, 0, 0, 0] : [0, 0, 0, 255]), 4));
      const t = await inputImageTensor(clear, 64, 64, 'crop');
      assert.deepEqual([at(t, 5, 5, 64, 64), at(t, 60, 5, 64, 64)], [[255, 255, 255], [0, 0, 0]], 'transparent → white, opaque black stays');
    });

    it('honours the EXIF orientation (a JPEG stored sideways is read upright)', async () => {
      // Stored 64 wide × 32 high, left half black; orientation 6 = rotate 90° clockwise to display: 32 wide × 64 high, top half black.
      const raw = Buffer.alloc(64 * 32 * 3, 255);
      for (let y = 0; y < 32; y++) for (let x = 0; x < 32; x++) raw.fill(0, (y * 64 + x) * 3, (y * 64 + x) * 3 + 3);
      const file = path.join(tmp, 'sideways.jpg');
      await sharp(raw, { raw: { width: 64, height: 32, channels: 3 } }).withMetadata({ orientation: 6 }).jpeg({ quality: 95 }).toFile(file);
      assert.equal((await sharp(file).metadata()).orientation, 6, 'the fixture carries the tag');
      const img = await readInputImage(file);
      assert.deepEqual([img.width, img.height], [32, 64]);
      const t = await inputImageTensor(img, 32, 64, 'crop');
      assert.ok(t[5 * 32 + 16] < -0.9 && t[58 * 32 + 16] > 0.9, 'top dark, bottom light');
    });
  });

  describe('the hires pass', () => {
    for (const upscale of ['image', 'latent'] as const) {
      it(`${upscale} upscale: two passes, progress over both, the larger image, metadata`, async () => {
        const steps: string[] = [];
        const stages: string[] = [];
        const t0 = performance.now();
        const r = await pipeline.generate(
          { prompt: 'a lighthouse', width: 64, height: 96, steps: 4, seed: 3, hires: { scale: 2, strength: 0.5, steps: 4, upscale } },
          { onStep: (p) => steps.push(`${p.step}/${p.steps}`), onStage: (s, state) => state === 'start' && stages.push(s) },
        );
        const ms = performance.now() - t0;
        console.log(`      ${upscale} upscale, 64×96 → 128×192, 4 + 2 steps: ${ms.toFixed(0)} ms; stages ${r.stages.map((s) => `${s.stage} ${s.seconds.toFixed(2)} s`).join(', ')}`);
        assert.deepEqual([r.width, r.height, r.image.length], [128, 192, 128 * 192 * 3]);
        assert.deepEqual(steps, ['1/6', '2/6', '3/6', '4/6', '5/6', '6/6'], 'the second pass continues the count; the total is known from the first step');
        assert.deepEqual(stages.filter((s) => s !== 'text'), ['denoise', 'encode', 'denoise', 'decode']);
        assert.deepEqual({ w: r.metadata.width, h: r.metadata.height, hires: r.metadata.hires }, { w: 64, h: 96, hires: { scale: 2, strength: 0.5, steps: 4, upscale, width: 128, height: 192 } });
        assert.equal(r.metadata.image, undefined);
      });
    }

    it('the two upscalers start the second pass from different latents, and the hires image differs from a plain run at the larger size', async () => {
      const a = await pipeline.generate({ prompt: 'a lighthouse', width: 64, height: 64, steps: 2, seed: 5, hires: { scale: 2, strength: 0.5, steps: 2, upscale: 'image' } });
      const b = await pipeline.generate({ prompt: 'a lighthouse', width: 64, height: 64, steps: 2, seed: 5, hires: { scale: 2, strength: 0.5, steps: 2, upscale: 'latent' } });
      const plain = await pipeline.generate({ prompt: 'a lighthouse', width: 128, height: 128, steps: 2, seed: 5 });
      const diff = (x: Float32Array, y: Float32Array) => x.reduce((m, v, i) => Math.max(m, Math.abs(v - y[i])), 0);
      assert.ok(diff(a.image, b.image) > 1e-3);
      assert.ok(diff(a.image, plain.image) > 1e-3);
    });

    it('sequential memory: an input image with a hires pass runs, and nothing stays loaded (the encoder goes with the VAE)', async () => {
      const built: string[] = [];
      const seq = await FluxPipeline.create(spec, { weights: 'fp32', ep: 'cpu', memory: 'sequential', cacheDir }, (_, m) => m.startsWith('dit: built for') && built.push(m));
      const loads: string[] = [];
      const steps: string[] = [];
      const r = await seq.generate(
        { prompt: 'a fox', image: path.join(GOLDEN_CASES, 'pipeline-2.png'), strength: 0.5, steps: 4, seed: 2, hires: { scale: 1.5, steps: 2, strength: 0.5 } },
        { onLoad: (c, phase) => phase === 'loaded' && loads.push(c), onStep: (p) => steps.push(`${p.step}/${p.steps}`) },
      );
      assert.deepEqual([r.width, r.height], [96, 96]);
      assert.deepEqual(steps, ['1/3', '2/3', '3/3']);
      assert.deepEqual(loads, ['clip', 't5', 'vae', 'dit', 'vae', 'vae', 'dit', 'vae'], 'encode, pass 1, decode + encode (image upscale), pass 2, decode');
      // Reloaded between the passes, the DiT is built for each pass's own tokens (t5 512 + 4×4 = 528 at 64², 512 + 6×6 at 96²).
      assert.deepEqual(built, ['dit: built for up to 528 tokens, attention in 1 query piece', 'dit: built for up to 548 tokens, attention in 1 query piece']);
      assert.deepEqual(seq.loaded(), []);
      assert.deepEqual(r.metadata.hires, { scale: 1.5, strength: 0.5, steps: 2, upscale: 'image', width: 96, height: 96 });
      await seq.release();
    });

    it('latent upscale is torch bilinear (align_corners false): ×2 of [[0, 1], [2, 3]]', () => {
      const out = upscaleLatents(Float32Array.from([0, 1, 2, 3]), 1, 2, 2, 4, 4);
      assert.deepEqual(Array.from(out), [0, 0.25, 0.75, 1, 0.5, 0.75, 1.25, 1.5, 1.5, 1.75, 2.25, 2.5, 2, 2.25, 2.75, 3]);
    });
  });
});
