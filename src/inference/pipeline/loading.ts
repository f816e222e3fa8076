// How a component is loaded: the weight format `auto` picks, the GPU memory the DiT may take, each
// component's activation type, the weight cache folder, and what a failed load means for the user.

import * as path from 'node:path';
import { CancelledError, ComponentName, ComputeType, ExecutionProvider, MemoryMode, ModelError, RuntimeOptions, UserError, WeightFormat } from '../../shared/api';
import { formatBytes } from '../../shared/bytes';
import { LayoutError } from '../formats/layouts/detect';
import { SafetensorsError } from '../formats/safetensorsHeader';
import type { ModelFiles } from '../models/files';
import { chooseEp, chooseWeights } from '../onnx/providers';
import { GPU_CONTEXT_BYTES } from '../models/memory';
import { readShapes } from '../models/tensorShapes';
import { Architecture, architectureOf, DitAttention, ditGpuWorkingSet, ditTokens, FLUX_ARCHITECTURE } from '../models/workingSets';
import { plannedGpuMemory } from '../system/gpuMemory';
import { availableMemory } from '../system/processMemory';
import { isFsError, writeFailureReason } from '../system/fsErrors';
import { cacheRoot } from '../system/userDirs';

export type ResolvedRuntime = Omit<RuntimeOptions, 'weights' | 'memory'> & { weights: WeightFormat; memory: MemoryMode };

/** Tokens of the run the GPU plan leaves room for before any job has said its size: 1024², the default. */
export const PLANNED_DIT_TOKENS = ditTokens({ width: 1024, height: 1024 });

/** The weight format, and the GPU memory the DiT (weights and working set) may take where known. */
export interface DitPlan {
  format: WeightFormat;
  /** Bytes for the DiT's weights and one run's working set on its GPU provider when it is alone there; undefined on the CPU or where unknown. */
  gpuMemory?: number;
  /** What the other components hold on the GPU when everything stays resident (to come off gpuMemory then). */
  others: number;
}

/** The weight format: the one asked for, or for `auto` the one the DiT's provider and memory allow. */
export async function planDit(files: ModelFiles, runtime: RuntimeOptions, memory: MemoryMode, log: (level: 'info', message: string) => void): Promise<DitPlan> {
  const { ep } = await chooseEp('dit', runtime.stageEp?.dit ?? runtime.ep ?? 'auto', 'fp8');
  const free = ep === 'cpu' ? undefined : await plannedGpuMemory(runtime.gpuMemory);
  // The user's figure, else what the GPU reports free (most of its total where only that is known,
  // system/gpuMemory.ts), less the provider's context.
  const gpuMemory = free === undefined ? undefined : free - GPU_CONTEXT_BYTES;
  const others = (['clip', 't5', 'vae'] as const).reduce((a, c) => a + files.residentBytes('fp16', c), 0);
  if (runtime.weights !== 'auto') return { format: runtime.weights ?? 'fp8', gpuMemory, others };
  // The weights must leave room for a 1024² run in the attention form that needs least
  // (ditAttentionFor), and, unless the mode is sequential (auto may resolve to resident), the others.
  const alone = gpuMemory === undefined ? undefined : gpuMemory - (memory === 'sequential' ? 0 : others);
  const budget = runtime.gpuMemoryBudget ?? (alone === undefined ? undefined : alone - ditGpuWorkingSet(ditArchitecture(files), PLANNED_DIT_TOKENS, 'int8', 'fused'));
  const d = chooseWeights(ep, (f) => files.residentBytes(f, 'dit'), budget);
  log('info', `weights auto → ${d.format} (${d.reason})`);
  return { format: d.format, gpuMemory, others };
}

/** The DiT's shapes as workingSets.ts reads them (FLUX.1's where the header cannot be read). */
export function ditArchitecture(files: Pick<ModelFiles, 'transformer'>): Architecture {
  try {
    return architectureOf({ dit: readShapes(files.transformer, 'dit') });
  } catch {
    return FLUX_ARCHITECTURE;
  }
}

/**
 * The DiT's attention on WebGPU for runs of up to `tokens`: the MatMul form, 1.5× faster there at
 * 1024², where its working set fits beside the weights in `gpuMemory`; else MultiHeadAttention,
 * whose working set grows with the tokens, not their square (1.4 GiB less at 1024², 7.5 GiB at 1536²:
 * models/workingSets.ts); the MatMul form where the memory is unknown. The note says why when it is
 * not the MatMul form.
 */
export function ditAttentionFor(gpuMemory: number | undefined, weights: number, arch: Architecture, tokens: number, format: WeightFormat): { form: DitAttention; note?: string } {
  if (gpuMemory === undefined) return { form: 'matmul' };
  const need = (form: DitAttention) => weights + ditGpuWorkingSet(arch, tokens, format, form);
  if (need('matmul') <= gpuMemory) return { form: 'matmul' };
  const fits = need('fused') <= gpuMemory;
  return {
    form: 'fused',
    note: `attention as MultiHeadAttention (slower): the faster MatMul form needs about ${formatBytes(need('matmul'))} at ${tokens} tokens, more than the ${formatBytes(gpuMemory)} of GPU memory the DiT may take; MultiHeadAttention needs about ${formatBytes(need('fused'))}${fits ? '' : ', more than that too: expect an allocation failure (a smaller image, or weights int4)'}`,
  };
}

/** Activation type of a component: T5-XXL overflows float16 (its FFN activations pass 65504), so it stays float32. */
export function computeFor(c: ComponentName, ep: ExecutionProvider, choice: RuntimeOptions['compute']): ComputeType {
  if (c === 't5') return 'float32';
  if (choice && choice !== 'auto') return choice;
  return ep === 'cpu' ? 'float32' : 'float16';
}

export function defaultCacheDir(): string {
  return path.join(cacheRoot(), 'weights');
}

export function explainLoadFailure(c: ComponentName, e: unknown, needBytes: () => number, cacheDir: string, modelPath?: string): Error {
  // A cancel heard during a first use's weight conversion is a cancel, not a load failure.
  if (e instanceof UserError || e instanceof CancelledError) return e;
  // A model file gone, cut short or damaged since the model was found (a server keeps it across
  // jobs): the message says which file; the model settings are where the user fixes it.
  const bad = e instanceof SafetensorsError ? e.file : e instanceof LayoutError ? e.path : undefined;
  if (bad !== undefined && modelPath !== undefined && isInside(modelPath, bad)) return new ModelError((e as Error).message, (e as Error).stack);
  if (isCacheWriteFailure(e, cacheDir)) {
    return new UserError(
      `Could not load the ${c}: its converted weights cannot be written to the weight cache folder ${cacheDir}: ${writeFailureReason(e)}. Free some space there, or choose another folder (the majicflux.weightCache.folder setting; --cache on the command line).`,
      (e as Error).stack,
    );
  }
  const msg = (e as Error).message ?? String(e);
  // onnxruntime's own words are a C++ source line and a lambda's signature.
  if (/Failed to get a WebGPU adapter/i.test(msg)) {
    return new UserError(
      `Could not load the ${c}: WebGPU finds no GPU to run on (no GPU, or on Linux no Vulkan driver: libvulkan.so.1). Choose execution provider auto or cpu (the majicflux.executionProvider setting; --ep on the command line).`,
      (e as Error).stack,
    );
  }
  if (/bad_alloc|out of memory|Failed to allocate|ENOMEM/i.test(msg)) {
    return new UserError(
      `Not enough memory to load the ${c} (needs about ${formatBytes(needBytes())}, ${formatBytes(availableMemory())} available). Try weight format fp8 and memory mode sequential, or close other programs.`,
      msg,
    );
  }
  return new UserError(`Could not load the ${c}: ${msg.split('\n')[0]}`, (e as Error).stack);
}

/** Only writes fail so without a path (ENOSPC on write); an error naming a model file is not the cache's. */
function isCacheWriteFailure(e: unknown, cacheDir: string): boolean {
  if (!isFsError(e)) return false;
  if (e.path === undefined) return ['ENOSPC', 'EDQUOT', 'EROFS'].includes(e.code);
  return isInside(cacheDir, e.path);
}

function isInside(dir: string, p: string): boolean {
  const rel = path.relative(path.resolve(dir), path.resolve(p));
  return !rel.startsWith('..') && !path.isAbsolute(rel);
}
