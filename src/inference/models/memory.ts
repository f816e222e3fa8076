// How much memory a FLUX.1 model needs: the peak of the whole pipeline in each memory mode, from
// the weights held (weightBytes.ts) and the working sets (workingSets.ts), against what this
// machine may plan on: what `Check Models` reports and advises.
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
//   GPU, thirteenth H100 session (onnxruntime 1.31, int8 in blocks of 32, the DiT alone, GPU after
//     the steps less GPU after the load, a process each), MiB at 512² / 1024² / 1536²: MatMul-form
//     attention 988 / 4,155 / 13,253 (the working-set model: 1,100 / 4,182 / 13,446), MultiHeadAttention
//     1,051 / 2,742 / 5,548 (model 1,088 / 2,774 / 5,652); fp8 with the GatherBlockQuantized decode at
//     1024²: 5,204 (model 5,253).
// No CPU measurement at 1024² exists: the CPU working sets there are extrapolated (linear in
// L·hidden, quadratic in L for attention).

import * as os from 'node:os';
import type { ComponentName, MemoryMode, WeightFormat } from '../../shared/api';
import { COMPONENTS, WEIGHT_FORMATS } from '../../shared/api';
import type { MachineInfo, MemoryEstimate } from '../../shared/models';
import type { ComponentShapes } from './tensorShapes';
import { componentWeightBytes } from './weightBytes';
import { architectureOf, Device, RunSize, workingSet } from './workingSets';

const GiB = 2 ** 30;
const MiB = 2 ** 20;

export const MODES: readonly Exclude<MemoryMode, 'auto'>[] = ['resident', 'sequential'];

/** What the process keeps whatever runs: Node, onnxruntime and sharp, prompt embeddings, latents. */
export const RUNTIME_BYTES = 0.5 * GiB;
/** GPU provider context (device, kernels, staging buffers). */
export const GPU_CONTEXT_BYTES = 800 * MiB;
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
