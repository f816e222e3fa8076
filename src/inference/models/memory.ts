// How much memory a FLUX.1 model needs, from tensor shapes and dtypes alone (safetensors headers):
// the weights each component holds in each weight format, the working set of one run of each
// component (activations and onnxruntime's buffers) at a given image size, and from those the peak
// of the whole pipeline in each memory mode. The pipeline's pre-flight (modelFiles.residentBytes)
// and `Check Models` share these numbers.
//
// Weights held (bytes), per component:
//   DiT   every Linear weight the graph keeps in the chosen format — a 2-D tensor of more than
//         INLINE_LIMIT bytes in the file, as onnx/weights.ts decides — at
//           fp8 n·k · 1, fp16 n·k · 2, fp32 n·k · 4,
//           int8/int4 n · ⌈k/32⌉ · (32·bits/8 + 2)   (MatMulNBits blocks of 32, WebGPU's, + one fp16
//           scale each; the CPU's blocks of 128 take slightly less);
//         every other tensor (biases, norm scales, the two small 2-D weights img_in / final linear)
//         inlined as float32: elements · 4. The fp8 per-row scales (4 bytes per output row, < 0.1 %)
//         are left out.
//   CLIP, T5, VAE   their bytes in the file: the CPU runs them from the memory-mapped file, GPUs hold
//         them as float16, the same size for FLUX.1's bf16 encoders (the VAE is used as it is).
//
// Working set of one run (bytes); L = text tokens + image tokens, image tokens = (W/16)·(H/16):
//   DiT, CPU (float32)  SESSION + 640 · L · hidden + 4 · heads · L² + 4 · (largest Linear, fp8/fp16)
//         640 bytes per token per hidden unit (160 float32 values: the blocks' activations that
//         onnxruntime's planner keeps), 4·heads·L² the attention probabilities the CPU's fused
//         MultiHeadAttention materialises, and one Linear weight converted to float32 at a time.
//   DiT, GPU (float16)  SESSION + 32 · L · hidden + κ · heads · L² + 2 · (largest Linear, fp8)
//         32 bytes per token per hidden unit (16 float16 values: a single block's linear1 output
//         alone is 14; the WebGPU provider's 'simple' buffer cache reuses exact-size buffers, so
//         little more stays), and κ bytes per head per token pair
//         for the attention: κ = 2 for MatMul graphs (fp8/fp16/fp32; the float16 probabilities of
//         the plain kernel), 4 for MatMulNBits (int8/int4), fitted to the 1024² measurements below.
//   T5    SESSION + L_t5 · (3·d_ff + 6·d_model) · 4 + heads · L_t5² · 4 + 4 · (largest Linear)
//         (T5 computes in float32 everywhere; its bf16 weights are converted one Linear at a time)
//   CLIP  the same with 77 tokens, hidden and intermediate.
//   VAE   32 · ch · W · H + 4 · (W·H/64)²: four float32 activations of 2·ch channels at full
//         resolution (the upsampled level-1 output and the convolutions around it) + the mid-block
//         attention's single-head probabilities at latent resolution.
//
// Peaks:
//   sequential  RUNTIME + max over components of (its weights + its working set)
//   resident    RUNTIME + Σ weights + the largest working set of CLIP/T5/DiT + the VAE's working
//               set (the VAE session keeps its CPU arena between jobs, so from the second image on
//               the DiT runs beside it)
//   GPU         GPU_CONTEXT + the same, with GPU working sets; resident adds every component's
//               working set (WebGPU keeps each session's buffers in its cache), then
//               GPU_RESIDENT_MARGIN: the one resident measurement was 10 % above this model.
//
// Calibration (docs/BENCHMARKS.md, raw numbers in docs/bench/*.json): peak RSS measured / this
// model's estimate (weights + working set + RUNTIME), computed from the synthetic checkpoints'
// shapes (synthetic.ts) in the dtypes each run read:
//   full DiT, int8 from the fp8 file, CPU, 512² (L = 1536), H100 host session 2: 14.57 / 15.04 GiB;
//   quarter DiT (hidden 768), CPU, 512², same session: fp32 4.16 / 4.28, fp16 2.48 / 2.91,
//     int8 1.69 / 2.21, fp8 1.63 / 2.29;
//   quarter DiT, CPU, 256² (L = 768), 2-core VM: fp32 3.16 / 3.89, int8 1.72 / 1.82,
//     fp8 1.86 / 1.90, fp16 2.90 / 2.52 (the one run under-estimated, by 0.4 GiB);
//   quarter pipeline, 256², 2-core VM: sequential fp32 3.43 / 3.89, fp16 2.93 / 2.52,
//     fp8 1.85 / 1.83, int8 1.66 / 1.82; resident fp32 4.48 / 5.29, fp16 3.63 / 3.92,
//     fp8 2.59 / 3.22, int8 2.38 / 3.22; the resident fp32 decode stage is 0.26 GiB above the
//     weights, which 32·ch·W·H (0.25 GiB) matches;
//   T5-XXL text stage (WebGPU host, bf16 → fp16 at load): 9.28 / 9.94 GiB (8.87 of weights, a
//     0.57 working set, RUNTIME);
//   GPU (WebGPU, fp16 compute, 'simple' buffer cache, plain attention, nvidia-smi device memory,
//     fourth H100 session), full DiT at 1024² (L = 4608): fp16 24,712 / 25,170 MiB, int8
//     14,077 / 14,974, int4 8,963 / 9,301; the whole pipeline sequential at 1024², fp16
//     24,712 and int8 14,635 MiB (the DiT stage). With the 'bucket' cache of the first sessions
//     the same runs took 6,301–13,019 MiB more. After-load plateaus put the provider's context at
//     0.63–0.79 GiB. The resident pipeline (51.0 GiB at 1024², 'bucket', first session; this
//     model without the margin gave 46.4 then) was not re-measured with 'simple': the margin
//     keeps "fits" on the safe side until it is. Only one size (1024²) was measured with 'simple'.
// No CPU measurement at 1024² exists: the CPU working sets there are extrapolated (linear in
// L·hidden, quadratic in L for attention).

import * as fs from 'node:fs';
import * as os from 'node:os';
import type { ComponentName, MemoryMode, WeightFormat } from '../../shared/api';
import { COMPONENTS, WEIGHT_FORMATS } from '../../shared/api';
import { DTYPE_BYTES, isDType } from '../formats/dtypes';
import { ggmlQuantBytes, isGgmlQuant, NATIVE_NBITS } from '../formats/ggml';
import { openComponent } from '../formats/layouts/components';
import { ComponentKind } from '../formats/layouts/detect';
import { elementCount, openTensors } from '../formats/safetensors';
import { nbitsBytes } from '../onnx/quant';
import type { MachineInfo, MemoryEstimate } from '../../shared/models';

const GiB = 2 ** 30;
const MiB = 2 ** 20;

/** One tensor as a header describes it. */
export interface TensorShape {
  name: string;
  shape: readonly number[];
  dtype: string;
}

/** The tensors of one component (names, shapes, dtypes: what a safetensors header gives). */
export type ShapeSource = readonly TensorShape[];
export type ComponentShapes = Record<ComponentName, ShapeSource>;

export const MODES: readonly Exclude<MemoryMode, 'auto'>[] = ['resident', 'sequential'];

/** Tensors up to this many bytes are inlined in the graph in the compute type (onnx/weights.ts default). */
export const INLINE_LIMIT = 1 << 20;
/** What the process keeps whatever runs: Node, onnxruntime and sharp, prompt embeddings, latents. */
export const RUNTIME_BYTES = 0.5 * GiB;
/** A session's own overhead per run (kernels' scratch, the planner's arena chunks). */
export const SESSION_BYTES = 256 * MiB;
/** DiT activations kept per token per hidden unit (160 float32 values). */
export const DIT_BYTES_PER_TOKEN_WIDTH = 640;
/** GPU provider context (device, kernels, staging buffers). */
export const GPU_CONTEXT_BYTES = 800 * MiB;
/** DiT activations kept per token per hidden unit on a GPU (float16). */
export const DIT_GPU_BYTES_PER_TOKEN_WIDTH = 32;
/** GPU attention buffers per head per token pair: MatMul graphs, MatMulNBits (int8/int4) graphs. */
export const GPU_ATTENTION_BYTES = { matmul: 2, nbits: 4 } as const;
/** GPU, resident: the whole-pipeline peak over the sum of weights and working sets (see Calibration). */
export const GPU_RESIDENT_MARGIN = 1.15;
/** Share of RAM the pipeline may plan on (the OS, VS Code and other programs keep the rest). */
export const RAM_USABLE = 0.85;
/** Share of GPU memory the pipeline may plan on (a display and other processes keep some). */
export const GPU_USABLE = 0.95;
/** Sizes every check estimates. */
export const DEFAULT_SIZES: readonly { width: number; height: number }[] = [
  { width: 512, height: 512 },
  { width: 1024, height: 1024 },
];
export const DEFAULT_T5_TOKENS = 512;
const CLIP_TOKENS = 77;

const FLOAT_DTYPES = new Set(['F64', 'F32', 'F16', 'BF16', 'F8_E4M3', 'F8_E5M2']);

export function isFloatDtype(dtype: string): boolean {
  return FLOAT_DTYPES.has(dtype);
}

export function elements(t: { shape: readonly number[] }): number {
  return elementCount(t.shape);
}

/** Bytes of a tensor in its file dtype (0 for a dtype this reader does not know). */
export function tensorBytes(t: TensorShape): number {
  if (isGgmlQuant(t.dtype)) return ggmlQuantBytes(t.dtype, elements(t));
  return isDType(t.dtype) ? elements(t) * DTYPE_BYTES[t.dtype] : 0;
}

/** A Linear weight the DiT graph keeps in the chosen format (2-D, over the inline limit in its file dtype). */
export function isHeldLinear(t: TensorShape): boolean {
  return t.shape.length === 2 && tensorBytes(t) > INLINE_LIMIT;
}

/** Bytes of one [n, k] Linear weight held in `format`. */
export function linearBytes(n: number, k: number, format: WeightFormat): number {
  switch (format) {
    case 'fp8':
      return n * k;
    case 'fp16':
      return 2 * n * k;
    case 'fp32':
      return 4 * n * k;
    // Blocks of 32 (WebGPU's, OpChoices.nbitsBlock): the larger scale overhead, so the estimate holds for 128 too.
    case 'int8':
      return nbitsBytes(n, k, 8, 32);
    case 'int4':
      return nbitsBytes(n, k, 4, 32);
  }
}

/** The DiT's weights held in `format`: Linear weights in the format, everything else float32. */
export function ditWeightBytes(shapes: ShapeSource, format: WeightFormat): number {
  let total = 0;
  for (const t of shapes) total += isHeldLinear(t) ? heldLinearBytes(t, format) : elements(t) * 4;
  return total;
}

/** GGUF quantized Linears are MatMulNBits blocks of 32 whatever the format (onnx/weights.ts nbitsFor). */
function heldLinearBytes(t: TensorShape, format: WeightFormat): number {
  const [n, k] = t.shape;
  return isGgmlQuant(t.dtype) ? nbitsBytes(n, k, NATIVE_NBITS[t.dtype] ?? 8, 32) : linearBytes(n, k, format);
}

/** Sum of the tensors' bytes in their file dtypes. */
export function sourceBytes(shapes: ShapeSource): number {
  return shapes.reduce((a, t) => a + tensorBytes(t), 0);
}

/** Bytes a component's weights take in memory with this DiT weight format (only the DiT depends on it). */
export function componentWeightBytes(shapes: ShapeSource, component: ComponentName, format: WeightFormat): number {
  return component === 'dit' ? ditWeightBytes(shapes, format) : sourceBytes(shapes);
}

// ─── Architecture numbers the working sets need, from names and shapes ──────────────────────────

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

/** Bytes one run of a component needs besides its weights (see the formulas at the top). */
export function workingSet(component: ComponentName, arch: Architecture, size: RunSize, format: WeightFormat, device: Device = 'cpu'): number {
  switch (component) {
    case 'dit': {
      const L = ditTokens(size);
      const d = arch.dit;
      if (device === 'cpu') {
        const converted = format === 'fp8' || format === 'fp16' ? 4 * d.largestLinear : 0;
        return SESSION_BYTES + DIT_BYTES_PER_TOKEN_WIDTH * L * d.hidden + 4 * d.heads * L * L + converted;
      }
      const kappa = format === 'int8' || format === 'int4' ? GPU_ATTENTION_BYTES.nbits : GPU_ATTENTION_BYTES.matmul;
      const converted = format === 'fp8' ? 2 * d.largestLinear : 0;
      return SESSION_BYTES + DIT_GPU_BYTES_PER_TOKEN_WIDTH * L * d.hidden + kappa * d.heads * L * L + converted;
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

// ─── Peaks ──────────────────────────────────────────────────────────────────────────────────────

/** A MemoryEstimate with the numbers behind it. */
export interface DetailedEstimate extends MemoryEstimate {
  /** Working set of one run of each component on the CPU, bytes. */
  workingSets: Record<ComponentName, number>;
  /** What the process keeps besides the components (RUNTIME_BYTES). */
  runtime: number;
  /** Peak GPU memory when the components run on the GPU (present when the GPU's memory is known). */
  gpuPeak?: number;
}

function peakOf(weights: Record<ComponentName, number>, ws: Record<ComponentName, number>, mode: 'resident' | 'sequential', device: Device): number {
  if (mode === 'sequential') return Math.max(...COMPONENTS.map((c) => weights[c] + ws[c]));
  const held = COMPONENTS.reduce((a, c) => a + weights[c], 0);
  if (device === 'gpu') return GPU_RESIDENT_MARGIN * (held + COMPONENTS.reduce((a, c) => a + ws[c], 0));
  return held + ws.vae + Math.max(ws.clip, ws.t5, ws.dit);
}

/** RAM (and GPU memory, where known) the pipeline may plan on. */
export function usableMemory(machine: Pick<MachineInfo, 'totalMemory' | 'gpuMemory'>): { ram: number; gpu?: number } {
  return { ram: RAM_USABLE * machine.totalMemory, gpu: machine.gpuMemory === undefined ? undefined : GPU_USABLE * machine.gpuMemory };
}

export interface EstimateOptions {
  /** Default: this machine's RAM, no GPU. */
  machine?: Pick<MachineInfo, 'totalMemory' | 'gpuMemory'>;
  /** Image sizes (default 512² and 1024²); a size given here is added to those. */
  sizes?: readonly { width: number; height: number }[];
  t5Tokens?: number;
  formats?: readonly WeightFormat[];
  modes?: readonly Exclude<MemoryMode, 'auto'>[];
}

/**
 * Peak memory of each weight format × memory mode × image size, from the components' shapes.
 * Ordered by size, then format (WEIGHT_FORMATS order), then mode (resident first).
 */
export function estimateMemory(shapes: Partial<ComponentShapes>, opts: EstimateOptions = {}): DetailedEstimate[] {
  const machine = opts.machine ?? { totalMemory: os.totalmem() };
  const usable = usableMemory(machine);
  const arch = architectureOf(shapes);
  const sizes: { width: number; height: number }[] = [];
  for (const s of [...DEFAULT_SIZES, ...(opts.sizes ?? [])]) if (!sizes.some((x) => x.width === s.width && x.height === s.height)) sizes.push({ width: s.width, height: s.height });
  const out: DetailedEstimate[] = [];
  for (const size of sizes) {
    const run: RunSize = { ...size, t5Tokens: opts.t5Tokens };
    for (const format of opts.formats ?? WEIGHT_FORMATS) {
      const components = {} as Record<ComponentName, number>;
      const ws = {} as Record<ComponentName, number>;
      const wsGpu = {} as Record<ComponentName, number>;
      for (const c of COMPONENTS) {
        components[c] = componentWeightBytes(shapes[c] ?? [], c, format);
        ws[c] = workingSet(c, arch, run, format, 'cpu');
        wsGpu[c] = workingSet(c, arch, run, format, 'gpu');
      }
      for (const mode of opts.modes ?? MODES) {
        const peak = Math.round(RUNTIME_BYTES + peakOf(components, ws, mode, 'cpu'));
        const e: DetailedEstimate = { weights: format, mode, width: size.width, height: size.height, components, peak, fitsRam: peak <= usable.ram, workingSets: ws, runtime: RUNTIME_BYTES };
        if (usable.gpu !== undefined) {
          e.gpuPeak = Math.round(GPU_CONTEXT_BYTES + peakOf(components, wsGpu, mode, 'gpu'));
          e.fitsGpu = e.gpuPeak <= usable.gpu;
        }
        out.push(e);
      }
    }
  }
  return out;
}

// ─── Shapes from files ──────────────────────────────────────────────────────────────────────────

const shapeCache = new Map<string, { key: string; shapes: TensorShape[] }>();

function identity(p: string): string {
  try {
    const st = fs.statSync(p);
    return `${st.size}:${st.mtimeMs}`;
  } catch {
    return 'missing';
  }
}

/**
 * The tensors of a component's checkpoint (headers only): the component's own view when the layout reader
 * recognises it (prefix removed, other components of an all-in-one file left out), else every
 * tensor of the file. Cached by path, size and modification time. Throws what the readers throw.
 */
export function readShapes(p: string, kind?: ComponentKind): TensorShape[] {
  const key = `${kind ?? ''}\0${p}`;
  const id = identity(p);
  const hit = shapeCache.get(key);
  if (hit && hit.key === id) return hit.shapes;
  let shapes: TensorShape[] | undefined;
  if (kind) {
    try {
      const c = openComponent(p, kind);
      try {
        shapes = c.tensors.names().map((n) => ({ name: n, shape: c.tensors.info(n).shape, dtype: c.tensors.info(n).dtype }));
      } finally {
        c.close();
      }
    } catch {
      shapes = undefined;
    }
  }
  if (!shapes) {
    const src = openTensors(p);
    try {
      shapes = src.names().map((n) => ({ name: n, shape: src.info(n).shape, dtype: src.info(n).dtype }));
    } finally {
      src.close();
    }
  }
  shapeCache.set(key, { key: id, shapes });
  return shapes;
}
