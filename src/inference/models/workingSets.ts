// What one run of each component needs besides its weights (activations and onnxruntime's
// buffers) at a given image size, from the architecture numbers the tensor shapes give. The
// constants are fitted to measurements: see the Calibration in memory.ts's header.
//
// Working set of one run (bytes); L = text tokens + image tokens, image tokens = (W/16)·(H/16):
//   DiT, CPU (float32)  SESSION + 640 · L · hidden + 4 · heads · L² + 4 · (largest Linear, fp8/fp16)
//         640 bytes per token per hidden unit (160 float32 values: the blocks' activations that
//         onnxruntime's planner keeps), 4·heads·L² the attention probabilities the CPU's fused
//         MultiHeadAttention materialises, and one Linear weight converted to float32 at a time.
//   DiT, GPU (float16)  SESSION + β · L · hidden + κ · heads · L² + 17 · (largest Linear, fp8)
//         by the attention's form: the MatMul form β = 136, κ = 4.3 (its float16 scores and the
//         softmax's output, 2 bytes each per head per token pair); MultiHeadAttention β = 184,
//         κ = 0.07 (its kernel keeps no scores). β is the activations the WebGPU provider's buffer
//         cache holds per token per hidden unit. fp8 adds the float16 decoded and transposed copies
//         the cache keeps of each weight shape (17 bytes per element of the largest Linear).
//         Fitted, a little above each, to the int8 DiT at 512², 1024² and 1536² and the fp8 DiT at
//         1024² (onnxruntime 1.31, memory.ts's Calibration).
//   T5    SESSION + L_t5 · (3·d_ff + 6·d_model) · 4 + heads · L_t5² · 4 + 4 · (largest Linear)
//         (T5 computes in float32 everywhere; its bf16 weights are converted one Linear at a time)
//   CLIP  the same with 77 tokens, hidden and intermediate.
//   VAE   32 · ch · W · H + 4 · (W·H/64)²: four float32 activations of 2·ch channels at full
//         resolution (the upsampled level-1 output and the convolutions around it) + the mid-block
//         attention's single-head probabilities at latent resolution.

import type { ComponentName, WeightFormat } from '../../shared/api';
import { elements, isHeldLinear } from './weightBytes';
import type { ComponentShapes, ShapeSource } from './tensorShapes';

/** A session's own overhead per run (kernels' scratch, the planner's arena chunks). */
export const SESSION_BYTES = 256 * 2 ** 20;
/** DiT activations kept per token per hidden unit (160 float32 values). */
export const DIT_BYTES_PER_TOKEN_WIDTH = 640;
/** DiT activations kept per token per hidden unit on a GPU (float16), by the attention's form (DitAttention). */
export const DIT_GPU_BYTES_PER_TOKEN_WIDTH = { matmul: 136, fused: 184 } as const;
/** GPU attention buffers per head per token pair, by the attention's form. */
export const GPU_ATTENTION_BYTES = { matmul: 4.3, fused: 0.07 } as const;
/** fp8 on the GPU: decoded float16 weights the buffer cache keeps, bytes per element of the largest Linear. */
export const FP8_GPU_DECODED_BYTES = 17;
/** How the DiT computes attention: MatMul → Softmax → MatMul, or the provider's MultiHeadAttention. */
export type DitAttention = keyof typeof GPU_ATTENTION_BYTES;
export const DEFAULT_T5_TOKENS = 512;
const CLIP_TOKENS = 77;

export interface Architecture {
  dit: { hidden: number; heads: number; largestLinear: number };
  t5: { dModel: number; dFf: number; heads: number; largestLinear: number };
  clip: { hidden: number; intermediate: number; heads: number; largestLinear: number };
  vae: { ch: number };
}

/** FLUX.1's numbers, used for whatever the shapes do not tell (or a component that is missing). */
export const FLUX_ARCHITECTURE: Architecture = {
  dit: { hidden: 3072, heads: 24, largestLinear: 21504 * 3072 },
  t5: { dModel: 4096, dFf: 10240, heads: 64, largestLinear: 10240 * 4096 },
  clip: { hidden: 768, intermediate: 3072, heads: 12, largestLinear: 3072 * 768 },
  vae: { ch: 128 },
};

const find = (shapes: ShapeSource, ...suffixes: string[]) => shapes.find((t) => suffixes.some((s) => t.name === s || t.name.endsWith(`.${s}`)));

/** Elements of the largest 2-D weight that is not an embedding table (those are gathered, not converted). */
function largestMatrix(shapes: ShapeSource, held = false): number {
  let max = 0;
  for (const t of shapes) {
    if (t.shape.length !== 2 || /embed|shared\.weight$/.test(t.name) || (held && !isHeldLinear(t))) continue;
    max = Math.max(max, elements(t));
  }
  return max;
}

export function architectureOf(shapes: Partial<ComponentShapes>): Architecture {
  const a = structuredClone(FLUX_ARCHITECTURE);
  const dit = shapes.dit ?? [];
  const img = find(dit, 'img_in.weight', 'x_embedder.weight');
  if (img) a.dit.hidden = img.shape[0];
  const qn = find(dit, 'img_attn.norm.query_norm.scale', 'norm.query_norm.scale', 'attn.norm_q.weight');
  a.dit.heads = Math.max(1, Math.round(a.dit.hidden / (qn?.shape[0] || 128)));
  if (dit.length) a.dit.largestLinear = largestMatrix(dit, true);
  const t5 = shapes.t5 ?? [];
  const emb = find(t5, 'shared.weight', 'embed_tokens.weight');
  if (emb) a.t5.dModel = emb.shape[1];
  const wi = find(t5, 'DenseReluDense.wi_0.weight', 'DenseReluDense.wi.weight');
  if (wi) a.t5.dFf = wi.shape[0];
  const bias = find(t5, 'relative_attention_bias.weight');
  if (bias) a.t5.heads = bias.shape[1];
  if (t5.length) a.t5.largestLinear = largestMatrix(t5);
  const clip = shapes.clip ?? [];
  const tok = find(clip, 'token_embedding.weight');
  if (tok) {
    a.clip.hidden = tok.shape[1];
    a.clip.heads = Math.max(1, Math.round(tok.shape[1] / 64));
  }
  const fc1 = find(clip, 'mlp.fc1.weight');
  if (fc1) a.clip.intermediate = fc1.shape[0];
  if (clip.length) a.clip.largestLinear = largestMatrix(clip);
  const out = find(shapes.vae ?? [], 'decoder.conv_out.weight');
  if (out && out.shape.length === 4) a.vae.ch = out.shape[1];
  return a;
}

// ─── Working sets ───────────────────────────────────────────────────────────────────────────────

export type Device = 'cpu' | 'gpu';

export interface RunSize {
  width: number;
  height: number;
  /** T5 sequence length (512 for dev-type models, 256 for schnell). */
  t5Tokens?: number;
}

/** Tokens the DiT sees: T5 tokens + one per 16×16 pixels (2×2 patches of the 8× latent). */
export function ditTokens(size: RunSize): number {
  return (size.t5Tokens ?? DEFAULT_T5_TOKENS) + Math.ceil(size.width / 16) * Math.ceil(size.height / 16);
}

/** The DiT's GPU working set at L tokens (text + image) with its attention in `attention`'s form. */
export function ditGpuWorkingSet(arch: Architecture, L: number, format: WeightFormat, attention: DitAttention = 'matmul'): number {
  const d = arch.dit;
  const converted = format === 'fp8' ? FP8_GPU_DECODED_BYTES * d.largestLinear : 0;
  return Math.round(SESSION_BYTES + DIT_GPU_BYTES_PER_TOKEN_WIDTH[attention] * L * d.hidden + GPU_ATTENTION_BYTES[attention] * d.heads * L * L + converted);
}

/** Bytes one run of a component needs besides its weights (see the formulas at the top); the GPU DiT's in the MatMul form. */
export function workingSet(component: ComponentName, arch: Architecture, size: RunSize, format: WeightFormat, device: Device = 'cpu'): number {
  switch (component) {
    case 'dit': {
      const L = ditTokens(size);
      const d = arch.dit;
      if (device === 'gpu') return ditGpuWorkingSet(arch, L, format);
      const converted = format === 'fp8' || format === 'fp16' ? 4 * d.largestLinear : 0;
      return SESSION_BYTES + DIT_BYTES_PER_TOKEN_WIDTH * L * d.hidden + 4 * d.heads * L * L + converted;
    }
    case 't5': {
      const L = size.t5Tokens ?? DEFAULT_T5_TOKENS;
      const t = arch.t5;
      return SESSION_BYTES + L * (3 * t.dFf + 6 * t.dModel) * 4 + t.heads * L * L * 4 + 4 * t.largestLinear;
    }
    case 'clip': {
      const L = CLIP_TOKENS;
      const c = arch.clip;
      return SESSION_BYTES + L * (3 * c.intermediate + 6 * c.hidden) * 4 + c.heads * L * L * 4 + 4 * c.largestLinear;
    }
    case 'vae': {
      const px = size.width * size.height;
      const latent = px / 64;
      return 32 * arch.vae.ch * px + 4 * latent * latent;
    }
  }
}
