// The flow-matching sigma schedule and the Euler step that walks it, FLUX.1's sampler.
//
// The schedule reproduces diffusers' FluxPipeline + FlowMatchEulerDiscreteScheduler bit for bit:
// diffusers builds sigmas with float64 numpy, casts them to float32 and then shifts them in float32
// numpy arithmetic. Math.fround after every operation replays that exactly (double rounding of a
// single +,-,*,/ through float64 is harmless), which the golden timesteps need: at t≈1000 one
// float32 ulp is 6e-5, far above the 1e-6 the tests demand.

import { assertMultipleOf16, PATCH_PIXELS } from './latents';
import { DEFAULT_SCHEDULER_CONFIG, SchedulerConfig } from './schedulerConfig';

const f32 = Math.fround;

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
