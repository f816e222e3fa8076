// The low-rank branch beside a DiT Linear that a LoRA covers:
//   y = base(x) + strength_k · ((x·A_kᵀ)·((α/r)_k·B_kᵀ)), one term per LoRA k covering it.
// The base keeps its weight format (fp8, int8, int4, GGUF blocks): the LoRA is never merged into it.
//
// Aᵀ and the scaled Bᵀ are initializers of the session, in the compute type, and each LoRA's
// strength is ONE [1] float32 input (`lora_strength_<slot>`). An earlier scheme fed A, s and Bᵀ of
// every Linear as inputs so that any LoRA set ran on one session; on an H100 with the WebGPU
// provider (FLUX.1-dev int8, 1024²) that cost 2.60 s/step against 1.23 s without branches, and
// still 2.49 s/step with zeros fed: onnxruntime uploads every input on every run at a fixed cost
// per tensor, and ~1,800 of them dominated, not the LoRA's arithmetic. Now a run feeds one scalar
// per LoRA, at the price of one session rebuild when a LoRA file the session was not built with
// comes in (FluxTransformer.setLoras); strengths, and removing a LoRA (strength 0), stay feeds.
//
// The strength multiplies the [tokens, r] product, the smallest tensor of the branch; α/r (one
// value per rank row: fused pieces may differ) is folded into Bᵀ on the host, so no graph node
// has only initializers as inputs (onnxruntime would constant-fold it into a second copy).
// Strength 0 makes the branch add exactly zero: the base output bit for bit.

import * as ort from 'onnxruntime-node';
import { float32ToF16Bits } from '../formats/dtypes';
import { LinearShapes, LoraBranch } from '../formats/loraDit';
import { UserError } from '../../shared/api';
import { bytesOf, Graph, Value } from '../onnx/graph';
import { ComputeType } from '../onnx/weights';

/** One LoRA's branches and how strongly it applies. */
export interface WeightedBranches {
  branches: ReadonlyMap<string, LoraBranch>;
  strength: number;
  /**
   * What makes two entries the same LoRA (the pipeline's cached file id: path, size, mtime); the
   * branches map itself when absent. A session built with a LoRA takes it again without a rebuild.
   */
  id?: string;
}

/** What the model's protobuf may inline in all (its 2 GiB limit, less room for the rest of the model). */
const MAX_INLINE_BYTES = 1.875 * 2 ** 30;

/** The graph input of a LoRA slot's strength. */
export const strengthInput = (slot: number): string => `lora_strength_${slot}`;

/** A LoRA slot of a built session: what identifies it (WeightedBranches id, else its branches). */
export type LoraKey = string | ReadonlyMap<string, LoraBranch>;

export const loraKey = (l: WeightedBranches): LoraKey => l.id ?? l.branches;

/**
 * The LoRAs a session is built with: those that change some DiT Linear, one slot per distinct
 * LoRA (the same LoRA twice is one slot at the sum of its strengths).
 */
export function loraSlots(loras: readonly WeightedBranches[]): Array<{ key: LoraKey; branches: ReadonlyMap<string, LoraBranch>; strength: number }> {
  const slots: Array<{ key: LoraKey; branches: ReadonlyMap<string, LoraBranch>; strength: number }> = [];
  for (const l of loras) {
    if (!l.branches.size) continue;
    const key = loraKey(l);
    const have = slots.find((s) => s.key === key);
    if (have) have.strength += l.strength;
    else slots.push({ key, branches: l.branches, strength: l.strength });
  }
  return slots;
}

/** The strength feeds of a session built with slots `built` for the LoRAs wanted now (0 for a slot not wanted). */
export function strengthFeeds(built: readonly LoraKey[], wanted: readonly WeightedBranches[]): Record<string, ort.Tensor> {
  const strengths = new Float32Array(built.length);
  for (const s of loraSlots(wanted)) {
    const slot = built.indexOf(s.key);
    if (slot < 0) throw new Error('strengthFeeds: a LoRA the session was not built with');
    strengths[slot] = s.strength;
  }
  return Object.fromEntries(built.map((_, k) => [strengthInput(k), new ort.Tensor('float32', strengths.subarray(k, k + 1), [1])]));
}

/** Builds the branches of one DiT graph: one strength input per slot, the factors as initializers. */
export class LoraGraph {
  private readonly strengths: Value[];
  private readonly type: 'float32' | 'float16';

  private readonly gemm: boolean;

  constructor(private readonly g: Graph, private readonly slots: ReadonlyArray<ReadonlyMap<string, LoraBranch>>, private readonly shapes: LinearShapes, opts: { compute: ComputeType; gemm?: boolean }) {
    this.type = opts.compute === 'float32' ? 'float32' : 'float16';
    this.gemm = opts.gemm ?? false;
    this.strengths = slots.map((_, k) => {
      const s = g.input(strengthInput(k), 'float32', [1]);
      return this.type === 'float32' ? s : g.op('Cast', [s], { to: 10 });
    });
  }

  /** y plus the branch of every slot that covers Linear `linear`; x [tokens, in]. Its last two nodes are one Gemm(down, Bᵀ, y) with `gemm` (OpChoices.loraGemm). */
  apply(x: Value, y: Value, linear: string): Value {
    const [out, inFeatures] = this.shapes.get(linear)!;
    this.slots.forEach((branches, k) => {
      const b = branches.get(linear);
      if (!b) return;
      if (b.a.length !== b.rank * inFeatures || b.bt.length !== b.rank * out) throw new Error(`LoRA branch on ${linear}: rank ${b.rank} factors do not fit [${out}, ${inFeatures}]`);
      const r = b.rank;
      const at = new Float32Array(inFeatures * r);
      for (let j = 0; j < r; j++) for (let i = 0; i < inFeatures; i++) at[i * r + j] = b.a[j * inFeatures + i];
      const bt = new Float32Array(r * out);
      for (let j = 0; j < r; j++) for (let o = 0; o < out; o++) bt[j * out + o] = b.bt[j * out + o] * b.scale[j];
      const down = this.g.op('Mul', [this.g.op('MatMul', [x, this.constant(at, [inFeatures, r], `lora${k}.${linear}.at`)]), this.strengths[k]]); // [tokens, r]
      const up = this.constant(bt, [r, out], `lora${k}.${linear}.bt`);
      y = this.gemm ? this.g.op('Gemm', [down, up, y]) : this.g.op('Add', [y, this.g.op('MatMul', [down, up])]);
    });
    return y;
  }

  private constant(data: Float32Array, dims: number[], hint: string): Value {
    const bytes = this.type === 'float32' ? bytesOf(data) : bytesOf(float32ToF16Bits(data));
    // Inlined in the model's protobuf, which onnxruntime refuses past 2 GiB: say so before it does, cryptically.
    if (this.g.inlineBytes + bytes.byteLength > MAX_INLINE_BYTES) {
      throw new UserError(`These LoRAs are too large to apply together: their factors in ${this.type} pass ${(MAX_INLINE_BYTES / 2 ** 30).toFixed(1)} GiB, the most one model can hold inline. Use fewer LoRAs or ones of lower rank${this.type === 'float32' ? ' (on a GPU they take half as much, in float16)' : ''}.`);
    }
    return this.g.constant(this.type, dims, bytes, hint);
  }
}
