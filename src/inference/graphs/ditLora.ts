// The low-rank branch beside each DiT Linear: y = base(x) + ((x·Aᵀ)·s)·Bᵀ. A, s and Bᵀ are graph
// inputs, not initializers, so the base keeps its weight format (fp8, int8, int4, GGUF blocks)
// and the LoRA its full precision, and adding, removing or re-weighting LoRAs changes only what is
// fed: the session is built once with a branch on every Linear. A Linear no LoRA covers is fed
// rank 1 of zeros; the rank of each Linear is its own symbolic dimension.

import * as ort from 'onnxruntime-node';
import { float32ToF16Bits } from '../formats/dtypes';
import { LinearShapes, LoraBranch } from '../formats/loraDit';
import { Graph, Value } from '../onnx/graph';
import { ComputeType } from '../onnx/weights';

const inputName = (linear: string, part: 'at' | 's' | 'bt') => `lora.${linear}.${part}`;

/**
 * y + ((x·Aᵀ)·s)·Bᵀ with Aᵀ [in, R], s [R], Bᵀ [R, out] fed as inputs in the compute type; x
 * [tokens, in]. Plain MatMuls of two inputs: every provider has them for any R (CoreML's Gemm
 * wants a constant weight, providerOps.ts).
 */
export function loraBranch(g: Graph, x: Value, y: Value, linear: string, [out, inFeatures]: readonly [number, number], compute: ComputeType): Value {
  const type = compute === 'float32' ? 'float32' : 'float16';
  const rank = `rank:${linear}`;
  const at = g.input(inputName(linear, 'at'), type, [inFeatures, rank]);
  const s = g.input(inputName(linear, 's'), type, [rank]);
  const bt = g.input(inputName(linear, 'bt'), type, [rank, out]);
  const down = g.op('MatMul', [x, at]); // [tokens, R]
  return g.op('Add', [y, g.op('MatMul', [g.op('Mul', [down, s]), bt])]);
}

/** One LoRA's branches and how strongly it applies. */
export interface WeightedBranches {
  branches: ReadonlyMap<string, LoraBranch>;
  strength: number;
}

/**
 * The inputs of every branch for these LoRAs: each Linear's LoRAs stacked along the rank, each
 * rank row scaled by its LoRA's strength · alpha/rank; rank 1 of zeros where none applies.
 */
export function loraFeeds(shapes: LinearShapes, loras: readonly WeightedBranches[], compute: ComputeType): Record<string, ort.Tensor> {
  const feeds: Record<string, ort.Tensor> = {};
  const tensor = (data: Float32Array, dims: number[]) => (compute === 'float32' ? new ort.Tensor('float32', data, dims) : new ort.Tensor('float16', float32ToF16Bits(data), dims));
  for (const [linear, [out, inFeatures]] of shapes) {
    const here = loras.flatMap((l) => (l.branches.has(linear) ? [{ b: l.branches.get(linear)!, strength: l.strength }] : []));
    const rank = here.reduce((n, h) => n + h.b.rank, 0);
    const r = Math.max(rank, 1);
    const at = new Float32Array(inFeatures * r);
    const bt = new Float32Array(r * out);
    const s = new Float32Array(r);
    let row = 0;
    for (const { b, strength } of here) {
      for (let j = 0; j < b.rank; j++) for (let i = 0; i < inFeatures; i++) at[i * r + row + j] = b.a[j * inFeatures + i];
      bt.set(b.bt, row * out);
      for (let j = 0; j < b.rank; j++) s[row + j] = strength * b.scale[j];
      row += b.rank;
    }
    feeds[inputName(linear, 'at')] = tensor(at, [inFeatures, r]);
    feeds[inputName(linear, 's')] = tensor(s, [r]);
    feeds[inputName(linear, 'bt')] = tensor(bt, [r, out]);
  }
  return feeds;
}
