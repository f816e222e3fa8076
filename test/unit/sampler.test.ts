import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { resolveParams } from '../../src/shared/params';
import { calculateShift, eulerStep, flowMatchSchedule, predictX0 } from '../../src/inference/pipeline/flowMatch';
import { imageIds, initialLatents, latentShape, packLatents, textIds, unpackLatents } from '../../src/inference/pipeline/latents';
import { latentToPreviewRGB } from '../../src/inference/pipeline/latentPreview';
import { gaussianNoise, philox4x32_10, randomSeed } from '../../src/inference/pipeline/noise';
import { DEFAULT_SCHEDULER_CONFIG, readSchedulerConfig } from '../../src/inference/pipeline/schedulerConfig';

const FIXTURES = path.join(__dirname, '..', 'fixtures', 'flux-tiny');
const CASES = path.join(FIXTURES, 'cases');

/** Minimal F32-only safetensors reader, independent of src/inference/formats/safetensors.ts. */
function readSafetensors(file: string): Map<string, { shape: number[]; data: Float32Array }> {
  const buf = fs.readFileSync(file);
  const headerLen = Number(buf.readBigUInt64LE(0));
  const header = JSON.parse(buf.subarray(8, 8 + headerLen).toString('utf8')) as Record<
    string,
    { dtype: string; shape: number[]; data_offsets: [number, number] }
  >;
  const base = 8 + headerLen;
  const out = new Map<string, { shape: number[]; data: Float32Array }>();
  for (const [name, t] of Object.entries(header)) {
    if (name === '__metadata__') continue;
    assert.equal(t.dtype, 'F32', `${name} dtype`);
    const [start, end] = t.data_offsets;
    const bytes = buf.subarray(base + start, base + end);
    const data = new Float32Array(bytes.byteLength / 4);
    for (let i = 0; i < data.length; i++) data[i] = bytes.readFloatLE(i * 4);
    out.set(name, { shape: t.shape, data });
  }
  return out;
}

interface SchedulerCase {
  steps: number;
  height: number;
  width: number;
  image_seq_len: number;
  mu: number;
  timesteps: number[];
  sigmas: number[];
}

describe('sampler: flow-matching schedule', () => {
  const golden = JSON.parse(fs.readFileSync(path.join(CASES, 'scheduler.json'), 'utf8')) as {
    scheduler_config: Record<string, unknown>;
    cases: SchedulerCase[];
  };

  it('reads the model scheduler config', async () => {
    const cfg = await readSchedulerConfig(path.join(FIXTURES, 'models'));
    assert.equal(cfg.use_dynamic_shifting, true);
    assert.equal(cfg.base_shift, 0.5);
    assert.equal(cfg.max_shift, 1.15);
    assert.equal(cfg.base_image_seq_len, 256);
    assert.equal(cfg.max_image_seq_len, 4096);
    assert.equal(cfg.shift, 3.0);
    // The scheduler folder and the file itself work too.
    assert.deepEqual(await readSchedulerConfig(path.join(FIXTURES, 'models', 'scheduler')), cfg);
    assert.deepEqual(await readSchedulerConfig(path.join(FIXTURES, 'models', 'scheduler', 'scheduler_config.json')), cfg);
  });

  it('falls back to defaults without a config and rejects malformed ones', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'majicflux-sched-'));
    try {
      assert.deepEqual(await readSchedulerConfig(dir), DEFAULT_SCHEDULER_CONFIG);
      fs.writeFileSync(path.join(dir, 'scheduler_config.json'), '{"shift": "3"}');
      await assert.rejects(readSchedulerConfig(dir), /shift must be a number/);
      fs.writeFileSync(path.join(dir, 'scheduler_config.json'), '{"use_karras_sigmas": true}');
      await assert.rejects(readSchedulerConfig(dir), /use_karras_sigmas is not supported/);
      fs.writeFileSync(path.join(dir, 'scheduler_config.json'), '{oops');
      await assert.rejects(readSchedulerConfig(dir), /invalid JSON/);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  it(`matches all ${golden.cases.length} diffusers cases to 1e-6 (with the fixture config and with defaults)`, async () => {
    const cfg = await readSchedulerConfig(path.join(FIXTURES, 'models'));
    let worst = 0;
    for (const c of golden.cases) {
      for (const config of [cfg, undefined]) {
        const s = flowMatchSchedule({ steps: c.steps, width: c.width, height: c.height, config });
        const label = `${c.steps} steps ${c.width}×${c.height}`;
        assert.equal(s.timesteps.length, c.steps, label);
        assert.equal(s.sigmas.length, c.steps + 1, label);
        assert.ok(s.mu !== undefined && Math.abs(s.mu - c.mu) <= 1e-12, `${label}: mu ${s.mu} vs ${c.mu}`);
        c.timesteps.forEach((t, i) => (worst = Math.max(worst, Math.abs(s.timesteps[i] - t))));
        c.sigmas.forEach((t, i) => (worst = Math.max(worst, Math.abs(s.sigmas[i] - t))));
        assert.ok(worst <= 1e-6, `${label}: error ${worst}`);
      }
    }
    assert.equal(worst, 0, 'expected a bit-exact float32 reproduction');
  });

  it('computes mu like diffusers calculate_shift', () => {
    assert.equal(calculateShift(256), 0.5);
    assert.equal(calculateShift(4096), 1.15);
    for (const c of golden.cases) assert.equal(calculateShift(c.image_seq_len), c.mu);
  });

  it('fixed shift (DiffSynth style) follows shift·s/(1+(shift−1)·s)', () => {
    const s = flowMatchSchedule({ steps: 4, width: 1024, height: 1024, shift: 3 });
    assert.equal(s.mu, undefined);
    const base = [1, 0.75, 0.5, 0.25];
    base.forEach((t, i) => {
      const expected = (3 * t) / (1 + 2 * t);
      assert.ok(Math.abs(s.sigmas[i] - expected) < 1e-6, `sigma ${i}`);
      assert.ok(Math.abs(s.timesteps[i] - expected * 1000) < 1e-3, `timestep ${i}`);
    });
    assert.equal(s.sigmas[4], 0);
    // use_dynamic_shifting=false in the config selects the same path.
    const viaConfig = flowMatchSchedule({ steps: 4, width: 1024, height: 1024, config: { use_dynamic_shifting: false, shift: 3 } });
    assert.deepEqual(viaConfig, s);
    // shift=1 leaves the linear schedule.
    const plain = flowMatchSchedule({ steps: 4, width: 512, height: 512, shift: 1 });
    assert.deepEqual(Array.from(plain.sigmas), [1, 0.75, 0.5, 0.25, 0]);
  });

  it("'dynamic' forces the resolution shift even when the config disables it", () => {
    const s = flowMatchSchedule({ steps: 4, width: 512, height: 512, shift: 'dynamic', config: { use_dynamic_shifting: false } });
    assert.equal(s.mu, 0.63);
  });

  it('rejects bad arguments', () => {
    assert.throws(() => flowMatchSchedule({ steps: 0, width: 512, height: 512 }), /steps/);
    assert.throws(() => flowMatchSchedule({ steps: 4, width: 500, height: 512 }), /multiple of 16/);
    assert.throws(() => flowMatchSchedule({ steps: 4, width: 512, height: 512, shift: -1 }), /shift/);
  });
});

describe('sampler: Euler step', () => {
  it('computes x + (σnext − σ)·v, in place by default', () => {
    const x = new Float32Array([1, 2, 3]);
    const v = new Float32Array([0.5, -1, 2]);
    const r = eulerStep(x, v, 1, 0.75);
    assert.equal(r, x);
    assert.deepEqual(Array.from(x), [1 - 0.125, 2.25, 2.5]);
    const out = new Float32Array(3);
    const x2 = new Float32Array([1, 1, 1]);
    eulerStep(x2, v, 0.5, 0, out);
    assert.deepEqual(Array.from(x2), [1, 1, 1]);
    assert.deepEqual(Array.from(out), [0.75, 1.5, 0]);
    assert.throws(() => eulerStep(x, new Float32Array(2), 1, 0), /length mismatch/);
  });

  it('integrating a constant velocity over the whole schedule lands on x − v', () => {
    const sched = flowMatchSchedule({ steps: 28, width: 1024, height: 1024 });
    const x = new Float32Array([0.3, -1.2]);
    const v = new Float32Array([1.5, 0.25]);
    for (let i = 0; i < 28; i++) eulerStep(x, v, sched.sigmas[i], sched.sigmas[i + 1]);
    assert.ok(Math.abs(x[0] - (0.3 - 1.5)) < 1e-5 && Math.abs(x[1] - (-1.2 - 0.25)) < 1e-5);
  });

  it('predictX0 is x − σ·v', () => {
    assert.deepEqual(Array.from(predictX0(new Float32Array([1, 2]), new Float32Array([2, -2]), 0.5)), [0, 3]);
  });
});

describe('sampler: seeded noise', () => {
  it('Philox4x32-10 passes the Random123 known-answer vectors', () => {
    const kat: [number[], number[], number[]][] = [
      [[0, 0, 0, 0], [0, 0], [0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8]],
      [[0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff], [0xffffffff, 0xffffffff], [0x408f276d, 0x41c83b0e, 0xa20bc7c6, 0x6d5451fd]],
      [[0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344], [0xa4093822, 0x299f31d0], [0xd16cfe09, 0x94fdcceb, 0x5001e420, 0x24126ea1]],
    ];
    for (const [ctr, key, expected] of kat) assert.deepEqual(Array.from(philox4x32_10(ctr, key)), expected);
  });

  it('is deterministic, prefix-stable, and the same for number and bigint seeds', () => {
    const a = gaussianNoise(42, 1001);
    const b = gaussianNoise(42, 1001);
    assert.deepEqual(a, b);
    assert.deepEqual(gaussianNoise(42, 10), a.subarray(0, 10));
    assert.deepEqual(gaussianNoise(42n, 1001), a);
    const big = 2 ** 53 - 1;
    assert.deepEqual(gaussianNoise(big, 64), gaussianNoise(BigInt(big), 64));
    assert.notDeepEqual(gaussianNoise(43, 64), a.subarray(0, 64));
    // Seeds differing only in the high word give different streams.
    assert.notDeepEqual(gaussianNoise(2 ** 32, 64), gaussianNoise(0, 64));
    assert.notDeepEqual(gaussianNoise((1n << 64n) - 1n, 64), gaussianNoise(0, 64));
  });

  it('rejects seeds that are not exact unsigned 64-bit integers', () => {
    for (const bad of [-1, 1.5, 2 ** 53, Number.NaN, Infinity]) assert.throws(() => gaussianNoise(bad, 4), /seed/);
    assert.throws(() => gaussianNoise(1n << 64n, 4), /out of range/);
    assert.throws(() => gaussianNoise(-1n, 4), /out of range/);
  });

  it('is standard normal over 1e6 samples', () => {
    const n = 1_000_000;
    const z = gaussianNoise(12345, n);
    let sum = 0, sq = 0, cube = 0, quad = 0, within1 = 0, lag = 0, maxAbs = 0;
    for (let i = 0; i < n; i++) {
      const v = z[i];
      sum += v; sq += v * v; cube += v * v * v; quad += v * v * v * v;
      if (Math.abs(v) < 1) within1++;
      if (i > 0) lag += v * z[i - 1];
      maxAbs = Math.max(maxAbs, Math.abs(v));
    }
    const mean = sum / n;
    const std = Math.sqrt(sq / n - mean * mean);
    // Bounds are ~5 standard errors.
    assert.ok(Math.abs(mean) < 0.005, `mean ${mean}`);
    assert.ok(Math.abs(std - 1) < 0.005, `std ${std}`);
    assert.ok(Math.abs(cube / n) < 0.015, `skew ${cube / n}`);
    assert.ok(Math.abs(quad / n - 3) < 0.05, `kurtosis ${quad / n}`);
    assert.ok(Math.abs(within1 / n - 0.682689) < 0.0025, `P(|z|<1) ${within1 / n}`);
    assert.ok(Math.abs(lag / n) < 0.005, `lag-1 correlation ${lag / n}`);
    assert.ok(maxAbs > 4 && maxAbs < 6.8, `max |z| ${maxAbs}`);
  });

  it('regression: first values for seeds 0, 1, 42 (change only on purpose: it changes every seed)', () => {
    const expected: Record<number, number[]> = {
      0: [0.991137683391571, -0.9246625900268555, -0.6176089644432068, -0.48206859827041626],
      1: [0.38040074706077576, -0.29627788066864014, -0.2492334246635437, -1.00383722782135],
      42: [-0.9701898097991943, 0.19401895999908447, -1.2356207370758057, 1.9239267110824585],
    };
    for (const [seed, values] of Object.entries(expected)) {
      assert.deepEqual(Array.from(gaussianNoise(Number(seed), 4)), values, `seed ${seed}`);
    }
  });

  it('randomSeed gives integers in [0, 2^32)', () => {
    for (let i = 0; i < 100; i++) {
      const s = randomSeed();
      assert.ok(Number.isInteger(s) && s >= 0 && s < 2 ** 32);
    }
  });

  it('initialLatents draws in [1,16,H/8,W/8] order and packs', () => {
    const lat = initialLatents(7, 192, 128); // width, height
    assert.equal(lat.length, 96 * 64);
    assert.deepEqual(unpackLatents(lat, 16, 24), gaussianNoise(7, 16 * 16 * 24));
  });
});

describe('sampler: packing and ids', () => {
  it('latentShape', () => {
    assert.deepEqual(latentShape(192, 128), { h2: 16, w2: 24, tokens: 96, unpacked: [1, 16, 16, 24], packed: [1, 96, 64] });
    assert.equal(latentShape(1024, 1024).tokens, 4096);
    assert.throws(() => latentShape(100, 128), /multiple of 16/);
  });

  it('packs with channel index c·4 + py·2 + px', () => {
    const h2 = 4, w2 = 6, C = 16;
    const unpacked = new Float32Array(C * h2 * w2);
    // Encode (c, y, x) in the value so every position is checkable.
    for (let c = 0; c < C; c++) for (let y = 0; y < h2; y++) for (let x = 0; x < w2; x++) unpacked[(c * h2 + y) * w2 + x] = c * 10000 + y * 100 + x;
    const packed = packLatents(unpacked, h2, w2);
    for (let i = 0; i < h2 / 2; i++) for (let j = 0; j < w2 / 2; j++) {
      const token = i * (w2 / 2) + j;
      for (let c = 0; c < C; c++) for (let py = 0; py < 2; py++) for (let px = 0; px < 2; px++) {
        assert.equal(packed[token * 64 + c * 4 + py * 2 + px], c * 10000 + (2 * i + py) * 100 + (2 * j + px));
      }
    }
    assert.deepEqual(unpackLatents(packed, h2, w2), unpacked);
  });

  it('pack∘unpack and unpack∘pack are the identity on the golden pipeline latents', () => {
    const cases = JSON.parse(fs.readFileSync(path.join(CASES, 'pipeline.json'), 'utf8')) as { file: string; width: number; height: number }[];
    for (const c of cases) {
      const tensors = readSafetensors(path.join(CASES, c.file));
      const { h2, w2, packed } = latentShape(c.width, c.height);
      for (const [name, t] of tensors) {
        if (name === 'image') continue;
        assert.deepEqual(t.shape, packed, `${c.file} ${name}`);
        const roundTrip = packLatents(unpackLatents(t.data, h2, w2), h2, w2);
        assert.deepEqual(roundTrip, t.data, `${c.file} ${name}`);
      }
    }
    const rnd = gaussianNoise(3, 16 * 8 * 12);
    assert.deepEqual(unpackLatents(packLatents(rnd, 8, 12), 8, 12), rnd);
  });

  it('the golden 128×192 img_ids equal imageIds exactly; txt ids are zeros', () => {
    const t = readSafetensors(path.join(CASES, 'transformer.safetensors'));
    const img = t.get('img_ids')!;
    assert.deepEqual(img.shape, [96, 3]);
    assert.deepEqual(imageIds(128, 192), img.data);
    const txt = t.get('txt_ids')!;
    assert.deepEqual(textIds(512), txt.data);
  });

  it('rejects mismatched sizes', () => {
    assert.throws(() => packLatents(new Float32Array(10), 4, 4), /do not fit/);
    assert.throws(() => unpackLatents(new Float32Array(64), 3, 4), /even/);
  });
});

describe('sampler: image sizes (params.ts, checked before any sampling)', () => {
  const validateSize = (width: number, height: number) => resolveParams({ prompt: 'p', width, height });
  it('accepts multiples of 16 in range', () => {
    for (const [w, h] of [[64, 64], [1024, 1024], [768, 1344], [2048, 2048]]) validateSize(w, h);
  });
  it('suggests the nearest multiples', () => {
    assert.throws(() => validateSize(1000, 1024), { message: 'width 1000 is not a multiple of 16; try 992 or 1008' });
    assert.throws(() => validateSize(1024, 770), { message: 'height 770 is not a multiple of 16; try 768 or 784' });
    assert.throws(() => validateSize(70, 1024), { message: 'width 70 is not a multiple of 16; try 64 or 80' });
    assert.throws(() => validateSize(2040, 1024), { message: 'width 2040 is not a multiple of 16; try 2032 or 2048' });
  });
  it('rejects out-of-range and non-integer sizes', () => {
    assert.throws(() => validateSize(32, 1024), /width 32 is out of range; FLUX.1 sizes go from 64 to 2048/);
    assert.throws(() => validateSize(1024, 4096), /height 4096 is out of range/);
    assert.throws(() => validateSize(512.5, 512), /whole number/);
    assert.throws(() => validateSize(Number.NaN, 512), /whole number/);
  });
});

describe('sampler: latent preview', () => {
  it('produces an (H/8)×(W/8) RGB image following the latent layout', () => {
    const { h2, w2 } = latentShape(192, 128);
    const unpacked = new Float32Array(16 * h2 * w2);
    // Channel 8 has a strong blue factor (0.118): light it only in the top-left latent cell.
    unpacked[8 * h2 * w2] = 5;
    const rgb = latentToPreviewRGB(packLatents(unpacked, h2, w2), 192, 128);
    assert.equal(rgb.length, h2 * w2 * 3);
    const px = (y: number, x: number) => Array.from(rgb.subarray((y * w2 + x) * 3, (y * w2 + x) * 3 + 3));
    const background = px(5, 5);
    // Zero latent → bias only: ((bias + 1) / 2)·255.
    assert.deepEqual(background, [123, 118, 117]);
    const lit = px(0, 0);
    assert.ok(lit[2] > background[2] + 50, `blue ${lit[2]}`);
    assert.deepEqual(px(0, 1), background);
    assert.deepEqual(px(1, 0), background);
  });

  it('clamps and survives NaN', () => {
    const packed = new Float32Array(4 * 64).fill(1000);
    packed[0] = Number.NaN;
    const rgb = latentToPreviewRGB(packed, 32, 32);
    assert.ok(rgb.every((v) => v === 0 || v === 255));
    assert.throws(() => latentToPreviewRGB(new Float32Array(10), 32, 32), /expected 256 values/);
  });

  it('previews the golden final latent without error', () => {
    const t = readSafetensors(path.join(CASES, 'pipeline-1.safetensors'));
    const rgb = latentToPreviewRGB(t.get('latents_after_step_3')!.data, 192, 128);
    assert.equal(rgb.length, 16 * 24 * 3);
  });
});
