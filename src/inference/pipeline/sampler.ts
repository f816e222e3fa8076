// FLUX.1 sampling maths: the flow-matching sigma schedule, the Euler step, seeded noise, latent
// packing and position ids, size checks and a cheap latent preview.
//
// The schedule reproduces diffusers' FluxPipeline + FlowMatchEulerDiscreteScheduler bit for bit:
// diffusers builds sigmas with float64 numpy, casts them to float32 and then shifts them in float32
// numpy arithmetic. Math.fround after every operation replays that exactly (double rounding of a
// single +,-,*,/ through float64 is harmless), which the golden timesteps need: at t≈1000 one
// float32 ulp is 6e-5, far above the 1e-6 the tests demand.

import * as crypto from 'node:crypto';
import * as path from 'node:path';
import { readRegularFile } from '../system/regularFile';

const f32 = Math.fround;

export const LATENT_CHANNELS = 16;
/** Pixels per latent cell (VAE downsampling). */
export const VAE_SCALE = 8;
/** Pixels per packed token: a 2×2 patch of latent cells. */
export const PATCH_PIXELS = 16;
export const PACKED_CHANNELS = LATENT_CHANNELS * 4;

// ---------------------------------------------------------------------------------------------
// Schedule

/** The fields of diffusers' scheduler_config.json that FLUX uses. */
export interface SchedulerConfig {
  num_train_timesteps: number;
  shift: number;
  use_dynamic_shifting: boolean;
  base_shift: number;
  max_shift: number;
  base_image_seq_len: number;
  max_image_seq_len: number;
  time_shift_type: 'exponential' | 'linear';
  shift_terminal: number | null;
}

/** FLUX.1-dev/schnell-style defaults, used for fields a config file leaves out (or with no file). */
export const DEFAULT_SCHEDULER_CONFIG: Readonly<SchedulerConfig> = Object.freeze({
  num_train_timesteps: 1000,
  shift: 3.0,
  use_dynamic_shifting: true,
  base_shift: 0.5,
  max_shift: 1.15,
  base_image_seq_len: 256,
  max_image_seq_len: 4096,
  time_shift_type: 'exponential',
  shift_terminal: null,
});

// Options diffusers supports that change the schedule and that we do not implement.
const UNSUPPORTED_FLAGS = ['use_karras_sigmas', 'use_exponential_sigmas', 'use_beta_sigmas', 'invert_sigmas'];

/** Merges a parsed scheduler_config.json over the defaults, checking types. */
export function parseSchedulerConfig(raw: unknown, source = 'scheduler config'): SchedulerConfig {
  if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) {
    throw new Error(`${source}: expected a JSON object`);
  }
  const obj = raw as Record<string, unknown>;
  const cfg: SchedulerConfig = { ...DEFAULT_SCHEDULER_CONFIG };
  const num = (key: 'num_train_timesteps' | 'shift' | 'base_shift' | 'max_shift' | 'base_image_seq_len' | 'max_image_seq_len') => {
    const v = obj[key];
    if (v === undefined || v === null) return;
    if (typeof v !== 'number' || !Number.isFinite(v)) throw new Error(`${source}: ${key} must be a number`);
    cfg[key] = v;
  };
  num('num_train_timesteps');
  num('shift');
  num('base_shift');
  num('max_shift');
  num('base_image_seq_len');
  num('max_image_seq_len');
  if (obj.use_dynamic_shifting !== undefined && obj.use_dynamic_shifting !== null) {
    if (typeof obj.use_dynamic_shifting !== 'boolean') throw new Error(`${source}: use_dynamic_shifting must be true or false`);
    cfg.use_dynamic_shifting = obj.use_dynamic_shifting;
  }
  if (obj.time_shift_type !== undefined && obj.time_shift_type !== null) {
    if (obj.time_shift_type !== 'exponential' && obj.time_shift_type !== 'linear') {
      throw new Error(`${source}: time_shift_type ${JSON.stringify(obj.time_shift_type)} is not supported (exponential or linear)`);
    }
    cfg.time_shift_type = obj.time_shift_type;
  }
  if (obj.shift_terminal !== undefined && obj.shift_terminal !== null) {
    const t = obj.shift_terminal;
    if (typeof t !== 'number' || !(t >= 0 && t < 1)) throw new Error(`${source}: shift_terminal must be a number in [0, 1)`);
    cfg.shift_terminal = t === 0 ? null : t; // diffusers tests truthiness: 0 means off
  }
  for (const flag of UNSUPPORTED_FLAGS) {
    if (obj[flag] === true) throw new Error(`${source}: ${flag} is not supported`);
  }
  if (cfg.max_image_seq_len === cfg.base_image_seq_len) {
    throw new Error(`${source}: max_image_seq_len must differ from base_image_seq_len`);
  }
  return cfg;
}

/**
 * Reads `scheduler_config.json`. `location` may be the model folder (with a `scheduler/`
 * subfolder), the scheduler folder itself, or the JSON file. A missing file gives the defaults;
 * a malformed one throws.
 */
export async function readSchedulerConfig(location: string): Promise<SchedulerConfig> {
  const candidates = location.endsWith('.json')
    ? [location]
    : [path.join(location, 'scheduler', 'scheduler_config.json'), path.join(location, 'scheduler_config.json')];
  for (const file of candidates) {
    let text: string;
    try {
      // A FIFO or device there is refused, not read forever (readRegularFile).
      text = (await readRegularFile(file, 1 << 20, (problem, why) => Object.assign(new Error(`${file}: ${problem}`), { code: why.code }))).toString('utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT' || (err as NodeJS.ErrnoException).code === 'ENOTDIR') continue;
      throw err;
    }
    let raw: unknown;
    try {
      raw = JSON.parse(text);
    } catch (err) {
      throw new Error(`${file}: invalid JSON (${(err as Error).message})`);
    }
    return parseSchedulerConfig(raw, file);
  }
  return { ...DEFAULT_SCHEDULER_CONFIG };
}

export interface Schedule {
  /** n+1 values from 1 down to a trailing 0; step i goes from sigmas[i] to sigmas[i+1]. */
  sigmas: Float32Array;
  /** n values, sigmas*1000: diffusers' timesteps (FluxPipeline feeds the transformer timestep/1000). */
  timesteps: Float32Array;
  /** The dynamic shift, when one was used. */
  mu?: number;
}

export interface ScheduleOptions {
  steps: number;
  width: number;
  height: number;
  /**
   * 'dynamic': resolution-dependent shift (FluxPipeline). A number: fixed shift
   * s' = shift·s / (1 + (shift−1)·s), e.g. 3.0 as DiffSynth-Studio samples FLUX.
   * Default: whatever the config says (use_dynamic_shifting, else its `shift`).
   */
  shift?: 'dynamic' | number;
  config?: Partial<SchedulerConfig>;
}

/** diffusers `calculate_shift`, in float64 like the Python original. */
export function calculateShift(imageSeqLen: number, config: Partial<SchedulerConfig> = {}): number {
  const c = { ...DEFAULT_SCHEDULER_CONFIG, ...config };
  const m = (c.max_shift - c.base_shift) / (c.max_image_seq_len - c.base_image_seq_len);
  const b = c.base_shift - m * c.base_image_seq_len;
  return imageSeqLen * m + b;
}

/** Packed tokens for an image: (H/16)·(W/16). */
export function imageSeqLen(width: number, height: number): number {
  return (height / PATCH_PIXELS) * (width / PATCH_PIXELS);
}

/** numpy.linspace(start, stop, n) in float64 (same formula, so the same bits). */
function linspace(start: number, stop: number, n: number): number[] {
  if (n === 1) return [start];
  const step = (stop - start) / (n - 1);
  const out: number[] = [];
  for (let i = 0; i < n; i++) out.push(i * step + start);
  out[n - 1] = stop;
  return out;
}

export function flowMatchSchedule(opts: ScheduleOptions): Schedule {
  const { steps, width, height } = opts;
  if (!Number.isInteger(steps) || steps < 1) throw new Error(`steps must be a positive integer, got ${steps}`);
  assertMultipleOf16('width', width);
  assertMultipleOf16('height', height);
  const cfg: SchedulerConfig = { ...DEFAULT_SCHEDULER_CONFIG, ...opts.config };
  const dynamic = opts.shift === undefined ? cfg.use_dynamic_shifting : opts.shift === 'dynamic';
  if (typeof opts.shift === 'number' && !(opts.shift > 0 && Number.isFinite(opts.shift))) {
    throw new Error(`shift must be a positive number, got ${opts.shift}`);
  }

  // FluxPipeline passes sigmas = np.linspace(1, 1/n, n); the scheduler casts them to float32.
  let sigmas = linspace(1.0, 1 / steps, steps).map(f32);
  let mu: number | undefined;

  if (dynamic) {
    mu = calculateShift(imageSeqLen(width, height), cfg);
    // time_shift(mu, 1.0, t); `** 1.0` is exact, so it is left out.
    if (cfg.time_shift_type === 'exponential') {
      const e = f32(Math.exp(mu));
      sigmas = sigmas.map((t) => f32(e / f32(e + f32(f32(1 / t) - 1))));
    } else {
      const m = f32(mu);
      sigmas = sigmas.map((t) => f32(m / f32(m + f32(f32(1 / t) - 1))));
    }
  } else {
    const shift = typeof opts.shift === 'number' ? opts.shift : cfg.shift;
    const s = f32(shift);
    const sm1 = f32(shift - 1);
    sigmas = sigmas.map((t) => f32(f32(s * t) / f32(1 + f32(sm1 * t))));
  }

  if (cfg.shift_terminal) {
    // diffusers stretch_shift_to_terminal: rescale so the last sigma becomes shift_terminal.
    const oneMinus = sigmas.map((t) => f32(1 - t));
    const scale = f32(oneMinus[oneMinus.length - 1] / f32(1 - cfg.shift_terminal));
    sigmas = oneMinus.map((x) => f32(1 - f32(x / scale)));
  }

  const out = new Float32Array(steps + 1);
  out.set(sigmas);
  const timesteps = new Float32Array(steps);
  const T = f32(cfg.num_train_timesteps);
  for (let i = 0; i < steps; i++) timesteps[i] = f32(sigmas[i] * T);
  return mu === undefined ? { sigmas: out, timesteps } : { sigmas: out, timesteps, mu };
}

// ---------------------------------------------------------------------------------------------
// Euler

/**
 * One flow-matching Euler step, x + (σnext − σ)·v, rounded like torch's float32 kernels.
 * Writes into `out`, which defaults to `x` (in place); returns it.
 */
export function eulerStep(x: Float32Array, v: Float32Array, sigma: number, sigmaNext: number, out: Float32Array = x): Float32Array {
  if (v.length !== x.length || out.length !== x.length) {
    throw new Error(`eulerStep: length mismatch (x ${x.length}, v ${v.length}, out ${out.length})`);
  }
  const dt = f32(f32(sigmaNext) - f32(sigma));
  for (let i = 0; i < x.length; i++) out[i] = x[i] + f32(dt * v[i]);
  return out;
}

/** The model's current estimate of the clean latent, x − σ·v: what previews should show. */
export function predictX0(x: Float32Array, v: Float32Array, sigma: number): Float32Array {
  if (v.length !== x.length) throw new Error(`predictX0: length mismatch (x ${x.length}, v ${v.length})`);
  const s = f32(sigma);
  const out = new Float32Array(x.length);
  for (let i = 0; i < x.length; i++) out[i] = x[i] - f32(s * v[i]);
  return out;
}

// ---------------------------------------------------------------------------------------------
// Seeded Gaussian noise
//
// Algorithm (stable; changing it changes every user's images for a given seed):
//   seed: an integer 0 ≤ seed < 2^64 (number up to 2^53−1, or bigint).
//   key  = [seed mod 2^32, floor(seed / 2^32)]                              (two uint32)
//   Block b (b = 0, 1, 2, …) = Philox4x32-10(counter = [b mod 2^32, floor(b / 2^32), 0, 0], key)
//     — the Random123 generator (Salmon et al., SC'11), 10 rounds, multipliers 0xD2511F53 and
//     0xCD9E8D57, key increments 0x9E3779B9 and 0xBB67AE85; it passes the Random123 known-answer
//     vectors (see the tests). It yields four uint32 x0..x3.
//   Two Box–Muller pairs per block, in float64:
//     u = (x0 + 0.5) / 2^32   (never 0),   a = 2π · x1 / 2^32
//     r = sqrt(−2 ln u);  n0 = r cos a,  n1 = r sin a;   likewise n2, n3 from x2, x3.
//   Output element k = block floor(k/4), lane k mod 4, rounded to float32.
// Each block depends only on (seed, b), so the stream is order-independent and can be split
// across workers. The only platform-sensitive parts are ln, sin, cos: V8 uses the same fdlibm
// code everywhere, and other libms differ by at most an ulp in float64, which float32 rounding
// hides in all but vanishingly rare cases.

export type Seed = number | bigint;

const PHILOX_M0 = 0xd2511f53;
const PHILOX_M1 = 0xcd9e8d57;
const PHILOX_W0 = 0x9e3779b9;
const PHILOX_W1 = 0xbb67ae85;
const TWO_32 = 4294967296;

/** High 32 bits of the 64-bit product of two uint32, exactly, with float64 pieces below 2^53. */
function mulhi32(a: number, b: number): number {
  const lo16 = a * (b & 0xffff); // < 2^48
  const hi16 = a * (b >>> 16); // < 2^48
  const hi16Low = hi16 % 65536;
  return ((hi16 - hi16Low) / 65536 + Math.floor((hi16Low * 65536 + lo16) / TWO_32)) >>> 0;
}

/** Philox4x32-10 of one counter block. Exported for known-answer tests. */
export function philox4x32_10(counter: ArrayLike<number>, key: ArrayLike<number>, out: Uint32Array = new Uint32Array(4)): Uint32Array {
  let c0 = counter[0] >>> 0, c1 = counter[1] >>> 0, c2 = counter[2] >>> 0, c3 = counter[3] >>> 0;
  let k0 = key[0] >>> 0, k1 = key[1] >>> 0;
  for (let round = 0; round < 10; round++) {
    if (round > 0) {
      k0 = (k0 + PHILOX_W0) >>> 0;
      k1 = (k1 + PHILOX_W1) >>> 0;
    }
    const hi0 = mulhi32(PHILOX_M0, c0), lo0 = Math.imul(PHILOX_M0, c0) >>> 0;
    const hi1 = mulhi32(PHILOX_M1, c2), lo1 = Math.imul(PHILOX_M1, c2) >>> 0;
    c0 = (hi1 ^ c1 ^ k0) >>> 0;
    c1 = lo1;
    c2 = (hi0 ^ c3 ^ k1) >>> 0;
    c3 = lo0;
  }
  out[0] = c0; out[1] = c1; out[2] = c2; out[3] = c3;
  return out;
}

/** Splits a seed into the two Philox key words, rejecting anything that is not an exact uint64. */
export function seedToKey(seed: Seed): [number, number] {
  if (typeof seed === 'bigint') {
    if (seed < 0n || seed >= 1n << 64n) throw new Error(`seed ${seed} is out of range (0 to 2^64−1)`);
    return [Number(seed & 0xffffffffn), Number(seed >> 32n)];
  }
  if (!Number.isSafeInteger(seed) || seed < 0) {
    throw new Error(`seed ${seed} must be a non-negative integer up to ${Number.MAX_SAFE_INTEGER} (use a bigint beyond)`);
  }
  return [seed % TWO_32, Math.floor(seed / TWO_32)];
}

/** `count` standard-normal float32 values for `seed`; see the algorithm above. */
export function gaussianNoise(seed: Seed, count: number): Float32Array {
  if (!Number.isSafeInteger(count) || count < 0) throw new Error(`count must be a non-negative integer, got ${count}`);
  const key = seedToKey(seed);
  const out = new Float32Array(count);
  const block = new Uint32Array(4);
  const ctr = [0, 0, 0, 0];
  for (let k = 0, b = 0; k < count; k += 4, b++) {
    ctr[0] = b % TWO_32;
    ctr[1] = Math.floor(b / TWO_32);
    philox4x32_10(ctr, key, block);
    for (let pair = 0; pair < 2; pair++) {
      const u = (block[2 * pair] + 0.5) / TWO_32;
      const a = (2 * Math.PI * block[2 * pair + 1]) / TWO_32;
      const r = Math.sqrt(-2 * Math.log(u));
      const i = k + 2 * pair;
      if (i < count) out[i] = r * Math.cos(a);
      if (i + 1 < count) out[i + 1] = r * Math.sin(a);
    }
  }
  return out;
}

/** A fresh seed in [0, 2^32): short enough to type, and accepted by every other tool. */
export function randomSeed(): number {
  return crypto.randomInt(0, TWO_32);
}

/** Starting latents for a text-to-image run: noise in [1,16,H/8,W/8] order (as diffusers draws it), packed. */
export function initialLatents(seed: Seed, width: number, height: number): Float32Array {
  const s = latentShape(width, height);
  return packLatents(gaussianNoise(seed, s.unpacked.reduce((a, b) => a * b, 1)), s.h2, s.w2);
}

// ---------------------------------------------------------------------------------------------
// Shapes, packing, position ids

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
 * diffusers `_pack_latents`: [1, C, h2, w2] → [1, (h2/2)(w2/2), 4C]; token (i, j) holds the 2×2
 * patch at rows 2i.., cols 2j.., channel index c·4 + py·2 + px.
 */
export function packLatents(unpacked: Float32Array, h2: number, w2: number): Float32Array {
  const C = checkLatentDims('packLatents', unpacked.length, h2, w2);
  const out = new Float32Array(unpacked.length);
  const gw = w2 / 2;
  const plane = h2 * w2;
  for (let c = 0; c < C; c++) {
    for (let y = 0; y < h2; y++) {
      const rowBase = ((y >> 1) * gw) * 4 * C + c * 4 + (y & 1) * 2;
      const src = c * plane + y * w2;
      for (let x = 0; x < w2; x++) out[rowBase + (x >> 1) * 4 * C + (x & 1)] = unpacked[src + x];
    }
  }
  return out;
}

/** diffusers `_unpack_latents`: the inverse of packLatents. */
export function unpackLatents(packed: Float32Array, h2: number, w2: number): Float32Array {
  const C = checkLatentDims('unpackLatents', packed.length, h2, w2);
  const out = new Float32Array(packed.length);
  const gw = w2 / 2;
  const plane = h2 * w2;
  for (let c = 0; c < C; c++) {
    for (let y = 0; y < h2; y++) {
      const rowBase = ((y >> 1) * gw) * 4 * C + c * 4 + (y & 1) * 2;
      const dst = c * plane + y * w2;
      for (let x = 0; x < w2; x++) out[dst + x] = packed[rowBase + (x >> 1) * 4 * C + (x & 1)];
    }
  }
  return out;
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

// ---------------------------------------------------------------------------------------------
// Size checks (the limits a user sees are params.ts's)

function assertMultipleOf16(name: string, value: number): void {
  if (!Number.isInteger(value) || value <= 0 || value % PATCH_PIXELS !== 0) {
    throw new Error(`${name} ${value} must be a positive multiple of ${PATCH_PIXELS}`);
  }
}

// ---------------------------------------------------------------------------------------------
// Preview

/**
 * Linear map from the 16 FLUX latent channels (as the transformer sees them, i.e. after the VAE
 * scale/shift) to RGB in about [−1, 1]: the public factors ComfyUI's `latent_formats.Flux` uses for
 * its fast previews. Rows are channels, columns R, G, B.
 */
const FLUX_LATENT_RGB: readonly (readonly [number, number, number])[] = [
  [-0.0346, 0.0244, 0.0681],
  [0.0034, 0.021, 0.0687],
  [0.0275, -0.0668, -0.0433],
  [-0.0174, 0.016, 0.0617],
  [0.0859, 0.0721, 0.0329],
  [0.0004, 0.0383, 0.0115],
  [0.0405, 0.0861, 0.0915],
  [-0.0236, -0.0185, -0.0259],
  [-0.0245, 0.025, 0.118],
  [0.1008, 0.0755, -0.0421],
  [-0.0515, 0.0201, 0.0011],
  [0.0428, -0.0012, -0.0036],
  [0.0817, 0.0765, 0.0749],
  [-0.1264, -0.0522, -0.1103],
  [-0.028, -0.0881, -0.0499],
  [-0.1262, -0.0982, -0.0778],
];
const FLUX_LATENT_RGB_BIAS = [-0.0329, -0.0718, -0.0851] as const;

/**
 * A low-resolution RGB preview of a packed latent: Uint8Array of (H/8)·(W/8)·3 bytes, row-major
 * RGB. Pass the predicted clean latent (predictX0) for a meaningful picture mid-run; the raw noisy
 * latent previews as noise early on.
 */
export function latentToPreviewRGB(packedLatent: Float32Array, width: number, height: number): Uint8Array {
  const { h2, w2, tokens } = latentShape(width, height);
  if (packedLatent.length !== tokens * PACKED_CHANNELS) {
    throw new Error(`latentToPreviewRGB: expected ${tokens * PACKED_CHANNELS} values for ${width}×${height}, got ${packedLatent.length}`);
  }
  const out = new Uint8Array(h2 * w2 * 3);
  const gw = w2 / 2;
  for (let y = 0; y < h2; y++) {
    for (let x = 0; x < w2; x++) {
      const base = ((y >> 1) * gw + (x >> 1)) * PACKED_CHANNELS + (y & 1) * 2 + (x & 1);
      let r = FLUX_LATENT_RGB_BIAS[0], g = FLUX_LATENT_RGB_BIAS[1], b = FLUX_LATENT_RGB_BIAS[2];
      for (let c = 0; c < LATENT_CHANNELS; c++) {
        const v = packedLatent[base + c * 4];
        const f = FLUX_LATENT_RGB[c];
        r += v * f[0];
        g += v * f[1];
        b += v * f[2];
      }
      const o = (y * w2 + x) * 3;
      out[o] = toByte(r);
      out[o + 1] = toByte(g);
      out[o + 2] = toByte(b);
    }
  }
  return out;
}

function toByte(v: number): number {
  const t = (v + 1) / 2; // [-1, 1] → [0, 1]
  return t > 0 ? (t < 1 ? Math.round(t * 255) : 255) : 0; // NaN → 0
}
