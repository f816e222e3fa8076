// The low-rank branch beside a DiT Linear that a LoRA covers:
//   y = base(x) + strength_k · ((x·A_kᵀ)·((α/r)_k·B_kᵀ)), one term per LoRA k covering it.
// The base keeps its weight format (fp8, int8, int4, GGUF blocks): the LoRA is never merged into it.
//
// The factors are initializers of the session (Aᵀ and the scaled Bᵀ in the compute type, or A and
// B as 8-bit MatMulNBits blocks: LoraGraphOptions.nbits), and each LoRA's strength is ONE [1] float32 input (`lora_strength_<slot>`). An earlier scheme fed A, s and Bᵀ of
// every Linear as inputs so that any LoRA set ran on one session; on an H100 with the WebGPU
// provider (FLUX.1-dev int8, 1024²) that cost 2.60 s/step against 1.23 s without branches, and
// still 2.49 s/step with zeros fed: onnxruntime uploads every input on every run at a fixed cost
// per tensor, and ~1,800 of them dominated, not the LoRA's arithmetic. Now a run feeds one scalar
// per LoRA, at the price of one session rebuild when a LoRA file the session was not built with
// comes in (FluxTransformer.setLoras); strengths, and removing a LoRA (strength 0), stay feeds.
//
// The strength multiplies the [tokens, r] product, the smallest tensor of the branch; α/r (one
// value per rank row: fused pieces may differ) is folded into Bᵀ on the host, so no graph node
// has only initializers as inputs (onnxruntime would constant-fold it into a second copy). Each
// rank row's magnitude is then shared out between A and B by a power of two (exact): with α/r
// folded in, B's values can be small enough to lose bits as float16 subnormals, or to put an
// 8-bit block's scale there.
// Strength 0 makes the branch add exactly zero: the base output bit for bit.

import * as ort from 'onnxruntime-node';
import { float32ToF16Bits } from '../formats/dtypes';
import { LinearShapes, LoraBranch } from '../formats/loraDit';
import { DitTuning, UserError } from '../../shared/api';
import { OpChoices } from '../onnx/providerOps';
import { bytesOf, Graph, Value } from '../onnx/graph';
import { ComputeType, WeightFormat } from '../onnx/weights';
import { ElemType } from '../onnx/proto';
import { blocksPerRow, midZeroPoints, nbitsAttrs, nbitsBytes, quantizeNBits, transposed } from '../onnx/quant';

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

/** How a graph's branches are built (OpChoices.loraNbits). */
export interface LoraGraphOptions {
  compute: ComputeType;
  /**
   * The down-projection (`down`) or both products (`both`) as 8-bit MatMulNBits (symmetric blocks
   * of `block` along K, accuracy_level 4 with `int8Activations`, mid zero points given where the
   * provider needs them): the kernels the int8 base runs on, where WebGPU's fp16 MatMul is the slow
   * one. Those factors carry the int8 error.
   */
  nbits?: { products: 'down' | 'both'; block: number; int8Activations: boolean; explicitZeroPoints: boolean };
  /** Float down-projections in this many pieces of the inner dimension, side by side (splitDown); 1: one MatMul. */
  split?: number;
  /** A float up-projection and its add onto the base output as one Gemm (C = the base output). */
  gemm?: boolean;
}

/**
 * The down-projection's output is padded to a multiple of this many columns (zero rows of A),
 * then sliced back to the rank: WebGPU's tiled MatMulNBits kernels work on 128-wide output tiles,
 * and a rank-32 output is narrower than one (an H100 profile: the float down-projection of a rank-32
 * branch took 0.26 ms, two thirds of the LoRA's cost, for 1 GFLOP).
 */
const DOWN_COLUMNS = 128;

/** Rows of A as an 8-bit down-projection: the rank padded to whole output tiles (DOWN_COLUMNS). */
const paddedRank = (r: number) => Math.ceil(r / DOWN_COLUMNS) * DOWN_COLUMNS;

/** The 8-bit up-projection's block along its K, the rank: no longer than the rank needs. */
const upBlock = (block: number, r: number) => Math.min(block, Math.max(16, 2 ** Math.ceil(Math.log2(r))));

/**
 * The branch form for a DiT built with these choices (undefined ones: the provider's, OpChoices).
 * The provider's 8-bit branches only beside a base that is quantized itself: an fp8 or fp16 base
 * is asked for as exact, and its LoRA stays so.
 */
export function loraGraphOptions(tuning: DitTuning, choices: OpChoices, compute: ComputeType, format: WeightFormat): LoraGraphOptions {
  const products = tuning.loraNbits ?? (format === 'int8' || format === 'int4' ? choices.loraNbits : false);
  return {
    compute,
    split: tuning.loraSplit ?? choices.loraSplit,
    gemm: tuning.loraGemm ?? choices.loraGemm,
    ...(products ? { nbits: { products, block: tuning.nbitsBlock ?? choices.nbitsBlock, int8Activations: tuning.int8Activations ?? choices.int8Activations, explicitZeroPoints: choices.explicitZeroPoints } } : {}),
  };
}

/** Builds the branches of one DiT graph: one strength input per slot, the factors as initializers. */
export class LoraGraph {
  private readonly strengths: Value[];
  private readonly type: 'float32' | 'float16';

  constructor(private readonly g: Graph, private readonly slots: ReadonlyArray<ReadonlyMap<string, LoraBranch>>, private readonly shapes: LinearShapes, private readonly opts: LoraGraphOptions) {
    this.type = opts.compute === 'float32' ? 'float32' : 'float16';
    this.strengths = slots.map((_, k) => {
      const s = g.input(strengthInput(k), 'float32', [1]);
      return this.type === 'float32' ? s : g.op('Cast', [s], { to: 10 });
    });
  }

  /** y plus the branch of every slot that covers Linear `linear`; x [tokens, in]. Its nodes are named lora_* (a profile tells them apart: scripts/gpu/profile-summary.mjs). */
  apply(x: Value, y: Value, linear: string): Value {
    const [out, inFeatures] = this.shapes.get(linear)!;
    this.slots.forEach((branches, k) => {
      const b = branches.get(linear);
      if (!b) return;
      if (b.a.length !== b.rank * inFeatures || b.bt.length !== b.rank * out) throw new Error(`LoRA branch on ${linear}: rank ${b.rank} factors do not fit [${out}, ${inFeatures}]`);
      const r = b.rank;
      const { a, bt } = balanced(b, inFeatures, out);
      let down: Value; // [tokens, r]
      if (this.opts.nbits) {
        // MatMulNBits takes W [N, K]: A [r, in] as it is, its rows padded with zeros to whole output tiles.
        const rp = paddedRank(r);
        let padded = a;
        if (rp !== r) (padded = new Float32Array(rp * inFeatures)).set(a);
        down = this.matMulNBits(x, padded, rp, inFeatures, this.opts.nbits.block, `lora${k}.${linear}.a`, 'lora_down');
        if (rp !== r) down = this.g.op('Slice', [down, this.g.i64([0]), this.g.i64([r]), this.g.i64([-1])], {}, { name: 'lora_slice' });
      } else {
        const s = this.opts.split ?? 1;
        down = s > 1 && inFeatures % s === 0
          ? this.splitDown(x, a, r, inFeatures, s, `lora${k}.${linear}.at`)
          : this.g.op('MatMul', [x, this.constant(transposed(a, r, inFeatures), [inFeatures, r], `lora${k}.${linear}.at`)], {}, { name: 'lora_down' });
      }
      down = this.g.op('Mul', [down, this.strengths[k]], {}, { name: 'lora_strength' });
      // The up-projection's K is the rank: its blocks no longer than it needs. onnxruntime's
      // MatMulAddFusion makes a float MatMul + Add one Gemm only where the shapes are static (the
      // modulation's single row), so `gemm` asks for it where the token count is not.
      const bt16 = () => this.constant(bt, [r, out], `lora${k}.${linear}.bt`);
      if (this.opts.nbits?.products === 'both') {
        y = this.g.op('Add', [y, this.matMulNBits(down, transposed(bt, r, out), out, r, upBlock(this.opts.nbits.block, r), `lora${k}.${linear}.b`, 'lora_up')], {}, { name: 'lora_add' });
      } else if (this.opts.gemm) {
        y = this.g.op('Gemm', [down, bt16(), y], {}, { name: 'lora_up' });
      } else {
        y = this.g.op('Add', [y, this.g.op('MatMul', [down, bt16()], {}, { name: 'lora_up' })], {}, { name: 'lora_add' });
      }
    });
    return y;
  }

  /**
   * x·Aᵀ with S times the output tiles: x's rows cut into S pieces, [tokens·S, in/S] (a reshape, no
   * copy), times the S pieces of Aᵀ side by side, [in/S, S·r]; row piece s keeps its product with
   * piece s (the diagonal of [tokens, S, S, r], gathered, not masked: an off-diagonal product may
   * overflow float16 and inf·0 is NaN), summed over s. S times the multiply-adds of one MatMul.
   */
  private splitDown(x: Value, a: Float32Array, r: number, inFeatures: number, s: number, hint: string): Value {
    const g = this.g;
    const w = inFeatures / s;
    const side = new Float32Array(w * s * r); // [w, s·r]: side[i, p·r + j] = A[j, p·w + i]
    for (let p = 0; p < s; p++) for (let j = 0; j < r; j++) for (let i = 0; i < w; i++) side[i * s * r + p * r + j] = a[j * inFeatures + p * w + i];
    const all = g.op('MatMul', [g.op('Reshape', [x, g.i64([-1, w])]), this.constant(side, [w, s * r], `${hint}.side`)], {}, { name: 'lora_down' }); // [tokens·s, s·r]
    const diagonal = g.op('Gather', [g.op('Reshape', [all, g.i64([-1, s * s, r])]), g.i64(Array.from({ length: s }, (_, p) => p * (s + 1)))], { axis: 1 }, { name: 'lora_diagonal' }); // [tokens, s, r]
    return g.op('ReduceSum', [diagonal, g.i64([1])], { keepdims: 0 }, { name: 'lora_sum' }); // [tokens, r]
  }

  /** x [tokens, k] · dequant(W)ᵀ for W [n, k] quantized here to 8-bit blocks. */
  private matMulNBits(x: Value, w: Float32Array, n: number, k: number, block: number, hint: string, name: string): Value {
    const { int8Activations, explicitZeroPoints } = this.opts.nbits!;
    const q = quantizeNBits(w, n, k, { bits: 8, blockSize: block });
    const data = this.inline('uint8', [n, blocksPerRow(k, block), block], q.data, `${hint}.q8`);
    const scales = this.inline(this.type, [q.scales.length], this.type === 'float32' ? bytesOf(q.scales) : bytesOf(float32ToF16Bits(q.scales)), `${hint}.scales`);
    const zp = explicitZeroPoints ? midZeroPoints(n, k, 8, block) : undefined;
    return this.g.op('MatMulNBits', [x, data, scales, zp && this.inline('uint8', [zp.length], zp, `${hint}.zero_points`)], nbitsAttrs(n, k, 8, block, int8Activations), { domain: 'com.microsoft', name });
  }

  private constant(data: Float32Array, dims: number[], hint: string): Value {
    return this.inline(this.type, dims, this.type === 'float32' ? bytesOf(data) : bytesOf(float32ToF16Bits(data)), hint);
  }

  private inline(type: ElemType, dims: number[], bytes: Uint8Array, hint: string): Value {
    // Inlined in the model's protobuf, which onnxruntime refuses past 2 GiB: say so before it does, cryptically.
    if (this.g.inlineBytes + bytes.byteLength > MAX_INLINE_BYTES) {
      throw new UserError(`These LoRAs are too large to apply together: their factors${this.opts.nbits ? '' : ` in ${this.type}`} pass ${(MAX_INLINE_BYTES / 2 ** 30).toFixed(1)} GiB, the most one model can hold inline. Use fewer LoRAs or ones of lower rank${this.type === 'float32' ? ' (on a GPU they take half as much, in float16)' : ''}.`);
    }
    return this.g.constant(type, dims, bytes, hint);
  }
}

/**
 * Bytes of the factors LoraGraph makes initializers of for these LoRAs (one slot per distinct LoRA,
 * as loraSlots): what a DiT built with them holds on its provider beside its weights.
 */
export function loraFactorBytes(loras: readonly WeightedBranches[], opts: LoraGraphOptions): number {
  const e = opts.compute === 'float32' ? 4 : 2;
  // Their scales are in the compute type, not nbitsBytes' float16.
  const nbits = (n: number, k: number, block: number) => nbitsBytes(n, k, 8, block, opts.nbits!.explicitZeroPoints) + (e - 2) * n * blocksPerRow(k, block);
  let bytes = 0;
  for (const { branches } of loraSlots(loras)) {
    for (const b of branches.values()) {
      const r = b.rank;
      const inFeatures = b.a.length / r;
      const out = b.bt.length / r;
      // As LoraGraph.apply builds them: the down-projection padded to whole output tiles where 8-bit.
      bytes += opts.nbits ? nbits(paddedRank(r), inFeatures, opts.nbits.block) : r * inFeatures * e;
      bytes += opts.nbits?.products === 'both' ? nbits(out, r, upBlock(opts.nbits.block, r)) : r * out * e;
    }
  }
  return bytes;
}

/**
 * A [r, in] and (α/r)·Bᵀ [r, out] with rank row j of A multiplied by 2^e_j and of Bᵀ divided by
 * it, e_j making the two rows' largest magnitudes about equal. Powers of two scale binary floats
 * exactly, so the branch's product is unchanged in float32.
 */
export function balanced(b: LoraBranch, inFeatures: number, out: number): { a: Float32Array; bt: Float32Array } {
  const a = Float32Array.from(b.a);
  const bt = new Float32Array(b.rank * out);
  for (let j = 0; j < b.rank; j++) {
    let maxA = 0;
    let maxB = 0;
    for (let i = 0; i < inFeatures; i++) maxA = Math.max(maxA, Math.abs(a[j * inFeatures + i]));
    for (let o = 0; o < out; o++) maxB = Math.max(maxB, Math.abs((bt[j * out + o] = Math.fround(b.bt[j * out + o] * b.scale[j]))));
    if (!(maxA > 0 && maxB > 0)) continue;
    const up = 2 ** Math.round(Math.log2(maxB / maxA) / 2);
    for (let i = 0; i < inFeatures; i++) a[j * inFeatures + i] *= up;
    for (let o = 0; o < out; o++) bt[j * out + o] /= up;
  }
  return { a, bt };
}
