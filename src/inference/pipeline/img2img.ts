// Image-to-image maths, as diffusers' FluxImg2ImgPipeline: the encoder's mean made a packed latent,
// the schedule entered part-way (get_timesteps), the image noised to that point
// (FlowMatchEulerDiscreteScheduler.scale_noise); and the hires pass's latent upscale. Rounded like
// torch's float32 kernels, which the golden fixtures need.

import { img2imgSteps } from '../../shared/params';
import { packLatents } from './latents';

const f32 = Math.fround;

/** The schedule index img2img starts at: the first `steps − img2imgSteps` steps are skipped. */
export function img2imgStart(steps: number, strength: number): number {
  return steps - img2imgSteps(steps, strength);
}

/** Encoder mean [zc, h2, w2] → (mean − shift)·scale, packed [tokens, 4·zc]: the latent the DiT works on. */
export function imageLatents(mean: Float32Array, h2: number, w2: number, vae: { scale: number; shift: number }): Float32Array {
  const shift = f32(vae.shift);
  const scale = f32(vae.scale);
  const z = new Float32Array(mean.length);
  for (let i = 0; i < z.length; i++) z[i] = f32(f32(mean[i] - shift) * scale);
  return packLatents(z, h2, w2);
}

/** σ·noise + (1 − σ)·x: the image latent noised to the schedule's sigma σ (scale_noise). */
export function scaleNoise(x: Float32Array, noise: Float32Array, sigma: number): Float32Array {
  if (x.length !== noise.length) throw new Error(`scaleNoise: image latent has ${x.length} values, noise ${noise.length}`);
  const s = f32(sigma);
  const keep = f32(1 - s);
  const out = new Float32Array(x.length);
  for (let i = 0; i < x.length; i++) out[i] = f32(f32(s * noise[i]) + f32(keep * x[i]));
  return out;
}

/**
 * Bilinear resize of unpacked latents [C, h, w] → [C, H, W], as torch's interpolate(mode='bilinear',
 * align_corners=False): sample points at (i + 0.5)·h/H − 0.5, clamped to the edges.
 */
export function upscaleLatents(z: Float32Array, C: number, h: number, w: number, H: number, W: number): Float32Array {
  if (z.length !== C * h * w) throw new Error(`upscaleLatents: ${z.length} values, expected ${C}×${h}×${w}`);
  const axis = (n: number, N: number) => {
    const lo = new Int32Array(N), hi = new Int32Array(N), t = new Float32Array(N);
    for (let i = 0; i < N; i++) {
      const src = Math.max(0, ((i + 0.5) * n) / N - 0.5);
      lo[i] = Math.min(n - 1, Math.floor(src));
      hi[i] = Math.min(n - 1, lo[i] + 1);
      t[i] = src - lo[i];
    }
    return { lo, hi, t };
  };
  const ys = axis(h, H), xs = axis(w, W);
  const out = new Float32Array(C * H * W);
  for (let c = 0; c < C; c++) {
    const p = c * h * w;
    for (let y = 0; y < H; y++) {
      const r0 = p + ys.lo[y] * w, r1 = p + ys.hi[y] * w, ty = ys.t[y];
      for (let x = 0; x < W; x++) {
        const tx = xs.t[x];
        const top = z[r0 + xs.lo[x]] * (1 - tx) + z[r0 + xs.hi[x]] * tx;
        const bottom = z[r1 + xs.lo[x]] * (1 - tx) + z[r1 + xs.hi[x]] * tx;
        out[(c * H + y) * W + x] = top * (1 - ty) + bottom * ty;
      }
    }
  }
  return out;
}
