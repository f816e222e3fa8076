// The FLUX.1 transformer (black-forest-labs/flux: src/flux/model.py, src/flux/modules/layers.py)
// as an ONNX graph built from the checkpoint's tensors. Shapes in comments: n image tokens,
// m text tokens, L = m + n, h hidden size, H heads, Dh head dim.
//
// The RoPE tables depend only on the token ids, so they are computed here in TypeScript
// (ropeTables) and fed as the graph inputs pe_cos / pe_sin [L, Dh/2].
//
// Activations are float32 or float16 (`compute`, for GPUs); inputs and outputs are float32 either
// way. In float16 the residual streams are clipped to ±65504, as diffusers does for FLUX: a few
// channels of real checkpoints grow past float16's range in the later blocks.

import { Graph, Value } from '../onnx/graph';
import { ExecutionProvider } from '../onnx/session';
import { graphFor, opChoicesFor } from '../onnx/providerOps';
import { ComputeType, Weights, WeightFormat } from '../onnx/weights';
import { Fp8Decode } from '../onnx/weightOptions';
import { toFloat16Bits, toFloat32 } from '../formats/dtypes';
import { DitConfig } from '../formats/layouts/configs';
import { DitWeights } from '../formats/layouts/ditWeights';
import { readPiece, TensorPiece } from '../formats/layouts/pieces';
import { TensorInfo, TensorSource } from '../formats/safetensors';
import { attention as multiHeadAttention, geluTanh, layerNormAffine, rmsNorm, silu } from './layers';
import { LoraGraph, loraGraphOptions, loraSlots, WeightedBranches } from './ditLora';

/** BFL names of the checkpoint's Linear layers (without `.weight`). */
export function bflLinears(p: DitConfig): string[] {
  const names = ['img_in', 'txt_in', 'time_in.in_layer', 'time_in.out_layer', 'vector_in.in_layer', 'vector_in.out_layer'];
  if (p.guidance_embed) names.push('guidance_in.in_layer', 'guidance_in.out_layer');
  for (let i = 0; i < p.depth; i++) {
    for (const s of ['img', 'txt']) {
      const b = `double_blocks.${i}.${s}`;
      names.push(`${b}_mod.lin`, `${b}_attn.qkv`, `${b}_attn.proj`, `${b}_mlp.0`, `${b}_mlp.2`);
    }
  }
  for (let i = 0; i < p.depth_single_blocks; i++) {
    const b = `single_blocks.${i}`;
    names.push(`${b}.modulation.lin`, `${b}.linear1`, `${b}.linear2`);
  }
  names.push('final_layer.adaLN_modulation.1', 'final_layer.linear');
  return names;
}

/** Each BFL Linear's [out, in], as the checkpoint stores it (LoRA branches are built and checked against these). */
export function ditLinearShapes(weights: DitWeights, p: DitConfig): Map<string, [number, number]> {
  return new Map(bflLinears(p).map((n) => {
    const [out, inFeatures] = weights.tensor(`${n}.weight`).shape;
    return [n, [out, inFeatures]];
  }));
}

/**
 * The DiT's tensors under BFL names as a TensorSource for Weights, whatever the file's layout.
 * A BFL tensor that is one byte range of a file (always, in a BFL file) keeps its name; one that
 * the layout stores in pieces (diffusers to_q/to_k/to_v; norm_out's swapped halves) is served as
 * `<stem>@<i>.weight` / `.bias`, one Linear per piece, whose outputs are concatenated. Every piece
 * stays in the user's file, memory-mapped.
 */
export class BflTensors implements TensorSource {
  /** Served name → the BFL tensor and, for one of several pieces, which piece. */
  private readonly byName = new Map<string, { bfl: string; piece: TensorPiece; single: boolean }>();

  constructor(readonly weights: DitWeights) {
    for (const bfl of weights.names()) {
      const pieces = weights.pieces(bfl);
      if (pieces.length === 1) this.byName.set(bfl, { bfl, piece: pieces[0], single: true });
      else pieces.forEach((piece, i) => this.byName.set(pieceName(bfl, i), { bfl, piece, single: false }));
    }
  }

  get path(): string {
    return this.weights.tensors.path;
  }

  /** Names of the Linears (without `.weight`) whose concatenated outputs are BFL Linear `stem`. */
  linear(stem: string): string[] {
    const pieces = this.weights.pieces(`${stem}.weight`).length;
    if (pieces === 1) return [stem];
    if (this.weights.has(`${stem}.bias`) && this.weights.pieces(`${stem}.bias`).length !== pieces) throw new Error(`${this.path}: ${stem} has weight and bias in different pieces`);
    return Array.from({ length: pieces }, (_, i) => `${stem}@${i}`);
  }

  names(): string[] {
    return [...this.byName.keys()];
  }

  has(name: string): boolean {
    return this.byName.has(name);
  }

  info(name: string): TensorInfo {
    const { piece: p } = this.entry(name);
    return { name, dtype: p.source.dtype, shape: p.shape, file: p.source.file, offset: p.offset, byteLength: p.byteLength };
  }

  readBytes(name: string): Buffer {
    const e = this.entry(name);
    return e.single ? this.weights.readBytes(e.bfl) : readPiece(e.piece);
  }

  readF32(name: string): Float32Array {
    return toFloat32(this.readBytes(name), this.entry(name).piece.source.dtype);
  }

  readF16(name: string): Uint16Array {
    return toFloat16Bits(this.readBytes(name), this.entry(name).piece.source.dtype);
  }

  close(): void {
    this.weights.tensors.close();
  }

  private entry(name: string) {
    const e = this.byName.get(name);
    if (!e) throw new Error(`${this.path}: no DiT tensor "${name}" (BFL name)`);
    return e;
  }
}

/** `a.b.weight`, piece 1 → `a.b@1.weight` */
function pieceName(name: string, i: number): string {
  return name.replace(/\.(weight|bias)$/, `@${i}.$1`);
}

// ---------------------------------------------------------------------------------------------
// Graph

interface Dit {
  g: Graph;
  w: Weights;
  p: DitConfig;
  src: BflTensors;
  headDim: number;
  /** The last Linear's output: the next Linear's weight is dequantized only after it exists. */
  prev: Value;
  compute: ComputeType;
  flash: boolean;
  /** Attention form and query pieces (OpChoices). */
  attention: { form: 'fused' | 'matmul'; chunks: number };
  /** com.microsoft ops allowed (Graph.contribOps). */
  contrib: boolean;
  /** The LoRA branches (ditLora.ts), when built with LoRAs. */
  lora?: LoraGraph;
}

export interface DitGraph {
  graph: Graph;
  weights: Weights;
}

export interface DitBuildOptions {
  format: WeightFormat;
  cacheDir?: string;
  inlineLimit?: number;
  fp8Scale?: 'per-tensor' | 'per-channel';
  /** How fp8 weights are decoded at run time (weights.ts; default per provider, OpChoices). */
  fp8Decode?: Fp8Decode;
  /** Activation type (default float32; float16 for GPUs). */
  compute?: ComputeType;
  /** int8/int4 weights: a zero point per block instead of symmetric blocks. */
  zeroPoints?: boolean;
  /** int8/int4 weights: multiply in int8 (Weights' int8Activations; default per provider, OpChoices). */
  int8Activations?: boolean;
  /** int8/int4 weights: MatMulNBits block size (default per provider, OpChoices). */
  nbitsBlock?: number;
  /** Attention as MultiHeadAttention or MatMul → Softmax → MatMul (default per provider, OpChoices). */
  attention?: 'fused' | 'matmul';
  /** `matmul` attention: split the queries into this many pieces to bound the scores' memory. */
  attentionChunks?: number;
  /** int8/int4: the bias inside MatMulNBits (default per provider, OpChoices.nbitsBias). */
  nbitsBias?: boolean;
  /** LoRA branches' products as 8-bit MatMulNBits (default per provider, OpChoices.loraNbits). */
  loraNbits?: false | 'down' | 'both';
  /** LoRA down-projections in S pieces of the inner dimension side by side (default per provider, OpChoices.loraSplit). */
  loraSplit?: number;
  /** A float LoRA branch's up-projection and add as one Gemm (default per provider, OpChoices.loraGemm). */
  loraGemm?: boolean;
  /** First use: the fraction of the weights converted into the cache so far (prefillDit). */
  onProgress?: (fraction: number) => void;
  /**
   * Ask MultiHeadAttention for its present K/V outputs: the WebGPU provider's flash-attention
   * kernel needs them (layers.attention). Off by default: on the H100 host it ran at the speed of
   * the plain kernel with a higher GPU memory peak (docs/BENCHMARKS.md).
   */
  flashAttention?: boolean;
  /**
   * Build from the ops this provider implements and with its measured kernel choices (providerOps.ts
   * OpChoices: fp8 decode, MatMulNBits block and int8 activations, attention form, opset); default
   * cpu. Every option above left undefined takes this provider's choice. FluxTransformer.load
   * passes the provider it runs on.
   */
  opsFor?: ExecutionProvider;
  /**
   * Number of text tokens the graph is built for, when the provider needs constant Slice bounds
   * (CoreML; FluxTransformer.load defaults it to 512, the T5 length the pipeline uses).
   */
  textTokens?: number;
  /**
   * LoRAs built into the graph (ditLora.ts): their factors as initializers, each one's strength a
   * graph input (the strengths given here are what FluxTransformer.load feeds first).
   */
  loras?: readonly WeightedBranches[];
}

/** The T5 length a CoreML DiT is built for unless told otherwise (the pipeline's default t5MaxLength). */
export const DEFAULT_TEXT_TOKENS = 512;

/**
 * Inputs: img [1, n, in_channels], txt [1, m, context_in_dim], vec [1, vec_in_dim] (pooled CLIP),
 * timestep [1] (sigma in [0, 1]), guidance [1] (when guidance_embed), pe_cos / pe_sin [L, Dh/2]
 * (ropeTables of txt ids then img ids). Output: `out` [1, n, out_channels].
 */
export function buildDit(weights: DitWeights, p: DitConfig, opts: DitBuildOptions): DitGraph {
  const headDim = p.hidden_size / p.num_heads;
  if (headDim !== p.axes_dim.reduce((a, b) => a + b, 0)) throw new Error(`flux config: axes_dim ${JSON.stringify(p.axes_dim)} must sum to the head dim ${headDim}`);
  const src = new BflTensors(weights);
  const g = graphFor('flux_dit', opts.opsFor);
  const choices = opChoicesFor(opts.opsFor);
  if (choices.staticTextLength && !opts.textTokens) throw new Error(`DiT for ${opts.opsFor}: the number of text tokens (textTokens) is needed at build time`);
  const linearWeights = linearWeightNames(src, p);
  const compute = opts.compute ?? 'float32';
  const w = new Weights(g, src, { ...ditWeightOptions(opts), compute }, linearWeights);

  let img = g.input('img', 'float32', [1, 'n', p.in_channels]);
  let txt = g.input('txt', 'float32', [1, 'm', p.context_in_dim]);
  const y = g.input('vec', 'float32', [1, p.vec_in_dim]);
  const timestep = g.input('timestep', 'float32', [1]);
  const guidance = p.guidance_embed ? g.input('guidance', 'float32', [1]) : undefined;
  const peCos = g.input('pe_cos', 'float32', ['l', headDim / 2]);
  const peSin = g.input('pe_sin', 'float32', ['l', headDim / 2]);


  // Batch 1: activations are [tokens, features] inside, so every Linear is one Gemm.
  const attention = { form: opts.attention ?? choices.attention, chunks: opts.attentionChunks ?? choices.attentionChunks };
  const slots = loraSlots(opts.loras ?? []);
  const lora = slots.length ? new LoraGraph(g, slots.map((s) => s.branches), ditLinearShapes(weights, p), loraGraphOptions(opts, choices, compute, opts.format)) : undefined;
  const d: Dit = { g, w, p, src, headDim, prev: img, compute, flash: opts.flashAttention ?? false, attention, contrib: choices.contribOps, lora };
  img = toCompute(d, g.op('Reshape', [img, g.i64([-1, p.in_channels])]));
  txt = toCompute(d, g.op('Reshape', [txt, g.i64([-1, p.context_in_dim])]));
  d.prev = img;
  const pe = ropeInputs(d, peCos, peSin);
  img = linear(d, img, 'img_in');
  // The sinusoids take t·1000 (up to 1000 rad): float32, then the compute type.
  let vec = mlpEmbedder(d, toCompute(d, timestepEmbedding(g, timestep)), 'time_in');
  if (guidance) vec = g.op('Add', [vec, mlpEmbedder(d, toCompute(d, timestepEmbedding(g, guidance)), 'guidance_in')]);
  vec = g.op('Add', [vec, mlpEmbedder(d, toCompute(d, y), 'vector_in')]);
  txt = linear(d, txt, 'txt_in');
  // [1] = m: from the data, or a constant where the provider needs constant Slice bounds.
  const txtLen = choices.staticTextLength ? g.i64([opts.textTokens!]) : g.op('Shape', [txt], { start: 0, end: 1 });
  const siluVec = silu(g, vec); // every modulation starts with SiLU(vec)

  for (let i = 0; i < p.depth; i++) [img, txt] = g.scope(`double_blocks.${i}`, () => doubleBlock(d, `double_blocks.${i}`, img, txt, siluVec, pe, txtLen));
  let x = g.op('Concat', [txt, img], { axis: 0 }); // [L, h]
  for (let i = 0; i < p.depth_single_blocks; i++) x = g.scope(`single_blocks.${i}`, () => singleBlock(d, `single_blocks.${i}`, x, siluVec, pe));
  img = sliceSeq(g, x, txtLen, undefined);
  const out = g.op('Unsqueeze', [g.scope('final_layer', () => lastLayer(d, img, siluVec)), g.i64([0])]);
  g.output(compute === 'float32' ? out : g.op('Cast', [out], { to: 1 }), 'out', 'float32', [1, 'n', p.out_channels]);
  return { graph: g, weights: w };
}

function linearWeightNames(src: BflTensors, p: DitConfig): string[] {
  return bflLinears(p).flatMap((n) => src.linear(n)).map((n) => `${n}.weight`);
}

/** int8/int4: quantize the checkpoint's Linear weights into the cache on all cores (a no-op otherwise). */
export async function prefillDit(weights: DitWeights, p: DitConfig, opts: DitBuildOptions): Promise<void> {
  const src = new BflTensors(weights);
  await Weights.prefill(src, ditWeightOptions(opts), linearWeightNames(src, p), undefined, opts.onProgress);
}

/** The Weights options a DiT build uses: Weights.prefill must see the same ones (they key the cache). */
function ditWeightOptions(opts: DitBuildOptions) {
  // fp16 goes through the cache: 11.9 B weights converted by a Cast folded at session creation sit in RAM (24 GB) while it loads.
  const choices = opChoicesFor(opts.opsFor);
  return {
    format: opts.format, cacheDir: opts.cacheDir, inlineLimit: opts.inlineLimit, fp8Scale: opts.fp8Scale, fp8Decode: opts.fp8Decode ?? choices.fp8Decode, zeroPoints: opts.zeroPoints,
    int8Activations: opts.int8Activations ?? choices.int8Activations, nbitsBlock: opts.nbitsBlock ?? choices.nbitsBlock, nbitsBias: opts.nbitsBias ?? choices.nbitsBias,
    compute: opts.compute ?? 'float32', fp16Cache: opts.cacheDir !== undefined, explicitZeroPoints: choices.explicitZeroPoints,
  };
}

function toCompute(d: Dit, x: Value): Value {
  return d.compute === 'float32' ? x : d.g.op('Cast', [x], { to: 10 });
}

/** A scalar in the compute type. */
function scalar(d: Dit, x: number): Value {
  return d.w.constant([x], []);
}

/**
 * float16 only: clip a residual stream to the finite range, where diffusers does for FLUX (the
 * text stream after each double block, the joint stream after each single block).
 */
function clipF16(d: Dit, x: Value): Value {
  return d.compute === 'float16' ? d.g.op('Clip', [x, scalar(d, -65504), scalar(d, 65504)]) : x;
}

/** A BFL Linear y = x·Wᵀ + b, x [tokens, in]; from one or several source Linears (outputs concatenated). */
function linear(d: Dit, x: Value, name: string): Value {
  const parts = d.src.linear(name).map((n) => dense(d, x, n));
  const y = parts.length === 1 ? parts[0] : d.g.op('Concat', parts, { axis: -1 });
  return d.lora ? d.lora.apply(x, y, name) : y;
}

/**
 * Gemm(x, W, b, transB) reads the [out, in] weight in place. Its weight is dequantized after the
 * previous Linear ran (see weights.ts): with one gate per block, onnxruntime dequantized all of a
 * block's weights before its first Gemm. (Not Weights.linear: its MatMul(x, Transpose(W)) lets
 * onnxruntime's QDQ propagation rewrite DequantizeLinear → Transpose into
 * DequantizeLinear → Transpose → QuantizeLinear → DequantizeLinear, three extra passes over
 * every weight and two fp32 copies of it at once.)
 */
function dense(d: Dit, x: Value, name: string): Value {
  d.prev = d.w.dense(x, name, d.w.gate(d.prev));
  return d.prev;
}

/** Sinusoidal embedding of t·1000 as [cos, sin] (timestep_embedding, max_period 10000). t [1] → [1, dim] */
function timestepEmbedding(g: Graph, t: Value, dim = 256, maxPeriod = 10000, timeFactor = 1000): Value {
  const half = dim / 2;
  // float32 step by step, as torch computes exp(-ln(max_period) · arange(half) / half).
  const lnMax = Math.fround(-Math.log(maxPeriod));
  const freqs = Array.from({ length: half }, (_, i) => Math.fround(Math.exp(Math.fround(Math.fround(lnMax * i) / half))));
  const tScaled = g.op('Mul', [t, g.scalarF32(timeFactor)]);
  const args = g.op('Mul', [g.op('Unsqueeze', [tScaled, g.i64([1])]), g.f32(freqs, [half], 'freqs')]); // [1, half]
  return g.op('Concat', [g.op('Cos', [args]), g.op('Sin', [args])], { axis: -1 });
}

/** in_layer → SiLU → out_layer. x [1, in] → [1, h] */
function mlpEmbedder(d: Dit, x: Value, name: string): Value {
  return linear(d, silu(d.g, linear(d, x, `${name}.in_layer`)), `${name}.out_layer`);
}

/** Linear(SiLU(vec)) split into `chunks` × [1, h]: (shift, scale, gate) per modulation. */
function modulation(d: Dit, siluVec: Value, name: string, chunks: number): Value[] {
  const g = d.g;
  const m = linear(d, siluVec, `${name}.lin`); // [1, chunks·h]
  return g.opN('Split', [m, g.i64(new Array(chunks).fill(d.p.hidden_size))], { axis: -1 }, { outputs: chunks });
}

/**
 * (1 + scale) · LayerNorm(x) + shift, LayerNorm without affine, eps 1e-6. Batch 1 makes the
 * modulation one vector per channel, so it is LayerNormalization's own scale and bias: one kernel
 * instead of three passes over the activations.
 */
function normModulate(d: Dit, x: Value, shift: Value, scale: Value): Value {
  const g = d.g;
  const perChannel = (v: Value) => g.op('Reshape', [v, g.i64([d.p.hidden_size])]);
  return layerNormAffine(g, x, perChannel(g.op('Add', [scale, scalar(d, 1)])), perChannel(shift), 1e-6);
}

/** x + gate · y */
function gatedResidual(d: Dit, x: Value, gate: Value, y: Value): Value {
  return d.g.op('Add', [x, d.g.op('Mul', [gate, y])]);
}

/** [L, 3h] → q, k, v as [L, H, Dh] */
function splitQkv(d: Dit, qkv: Value): Value[] {
  const g = d.g;
  const h = d.p.hidden_size;
  const [q, k, v] = g.opN('Split', [qkv, g.i64([h, h, h])], { axis: -1 }, { outputs: 3 });
  return [q, k, v].map((t) => g.op('Reshape', [t, g.i64([0, d.p.num_heads, d.headDim])]));
}

/** RMSNorm of q and k over Dh with learned scales (QKNorm, eps 1e-6). */
function qkNorm(d: Dit, q: Value, k: Value, name: string): [Value, Value] {
  const scale = (n: string) => d.w.param(`${name}.${n}.scale`);
  const half = d.compute === 'float16';
  return [rmsNorm(d.g, q, scale('query_norm'), 1e-6, half), rmsNorm(d.g, k, scale('key_norm'), 1e-6, half)];
}

interface Rope {
  /** [L, Dh/2] in the compute type: token l's angles, one row per token (as [L, 1, Dh/2, 1] without com.microsoft ops). */
  cos: Value;
  sin: Value;
}

function ropeInputs(d: Dit, cos: Value, sin: Value): Rope {
  const r = { cos: toCompute(d, cos), sin: toCompute(d, sin) };
  if (d.contrib) return r;
  const perPair = (t: Value) => d.g.op('Reshape', [t, d.g.i64([-1, 1, d.headDim / 2, 1])]);
  return { cos: perPair(r.cos), sin: perPair(r.sin) };
}

/**
 * apply_rope: each pair (x0, x1) = (x[2j], x[2j+1]) of a head rotated by token l's angle j, as one
 * com.microsoft.RotaryEmbedding (interleaved). Its position ids [1] = 0 give token l row l of
 * the tables, so the three axes of FLUX's ids are already folded into them. x [1, L, h] → [1, L, h]
 */
function rope(d: Dit, x: Value, pe: Rope): Value {
  if (!d.contrib) {
    // The same rotation in standard ops: pairs as [L, H, Dh/2, 2], (x0·cos − x1·sin, x0·sin + x1·cos).
    const g = d.g;
    const pairs = g.op('Reshape', [x, g.i64([-1, d.p.num_heads, d.headDim / 2, 2])]);
    const [x0, x1] = g.opN('Split', [pairs, g.i64([1, 1])], { axis: -1 }, { outputs: 2 });
    const y0 = g.op('Sub', [g.op('Mul', [x0, pe.cos]), g.op('Mul', [x1, pe.sin])]);
    const y1 = g.op('Add', [g.op('Mul', [x0, pe.sin]), g.op('Mul', [x1, pe.cos])]);
    return g.op('Reshape', [g.op('Concat', [y0, y1], { axis: -1 }), g.i64([1, -1, d.p.hidden_size])]);
  }
  return d.g.op('RotaryEmbedding', [x, d.g.i64([0]), pe.cos, pe.sin], { interleaved: 1, num_heads: d.p.num_heads }, { domain: 'com.microsoft' });
}

/** RoPE on q and k, then softmax(q·kᵀ/√Dh)·v. q, k, v [L, H, Dh] → [L, h] */
function attention(d: Dit, q: Value, k: Value, v: Value, pe: Rope): Value {
  const g = d.g;
  const batch = (t: Value) => g.op('Reshape', [t, g.i64([1, -1, d.p.hidden_size])]); // [1, L, h]
  const out = multiHeadAttention(g, rope(d, batch(q), pe), rope(d, batch(k), pe), batch(v), d.p.num_heads, { flash: d.flash, headDim: d.headDim, half: d.compute === 'float16', ...d.attention });
  return g.op('Reshape', [out, g.i64([-1, d.p.hidden_size])]);
}

/** x[start:end] along the sequence; start/end are [1] int64 values (or undefined for the ends). */
function sliceSeq(g: Graph, x: Value, start: Value | undefined, end: Value | undefined): Value {
  return g.op('Slice', [x, start ?? g.i64([0]), end ?? g.i64([Number.MAX_SAFE_INTEGER]), g.i64([0])]);
}

/** Separate weights per stream, joint attention over [txt, img]. img [n, h], txt [m, h] */
function doubleBlock(d: Dit, name: string, img: Value, txt: Value, siluVec: Value, pe: Rope, txtLen: Value): [Value, Value] {
  const g = d.g;
  const [imgShift1, imgScale1, imgGate1, imgShift2, imgScale2, imgGate2] = modulation(d, siluVec, `${name}.img_mod`, 6);
  const [txtShift1, txtScale1, txtGate1, txtShift2, txtScale2, txtGate2] = modulation(d, siluVec, `${name}.txt_mod`, 6);

  const [imgQ0, imgK0, imgV] = splitQkv(d, linear(d, normModulate(d, img, imgShift1, imgScale1), `${name}.img_attn.qkv`));
  const [imgQ, imgK] = qkNorm(d, imgQ0, imgK0, `${name}.img_attn.norm`);
  const [txtQ0, txtK0, txtV] = splitQkv(d, linear(d, normModulate(d, txt, txtShift1, txtScale1), `${name}.txt_attn.qkv`));
  const [txtQ, txtK] = qkNorm(d, txtQ0, txtK0, `${name}.txt_attn.norm`);

  const cat = (a: Value, b: Value) => g.op('Concat', [a, b], { axis: 0 });
  const attn = attention(d, cat(txtQ, imgQ), cat(txtK, imgK), cat(txtV, imgV), pe); // [L, h]
  const txtAttn = sliceSeq(g, attn, undefined, txtLen);
  const imgAttn = sliceSeq(g, attn, txtLen, undefined);

  img = gatedResidual(d, img, imgGate1, linear(d, imgAttn, `${name}.img_attn.proj`));
  img = gatedResidual(d, img, imgGate2, mlp(d, normModulate(d, img, imgShift2, imgScale2), `${name}.img_mlp`));
  txt = gatedResidual(d, txt, txtGate1, linear(d, txtAttn, `${name}.txt_attn.proj`));
  txt = gatedResidual(d, txt, txtGate2, mlp(d, normModulate(d, txt, txtShift2, txtScale2), `${name}.txt_mlp`));
  return [img, clipF16(d, txt)];
}

/** Linear → GELU(tanh) → Linear */
function mlp(d: Dit, x: Value, name: string): Value {
  return linear(d, geluTanh(d.g, linear(d, x, `${name}.0`), d.compute === 'float16'), `${name}.2`);
}

/** Parallel attention + MLP on the joint sequence. x [L, h] */
function singleBlock(d: Dit, name: string, x: Value, siluVec: Value, pe: Rope): Value {
  const g = d.g;
  const h = d.p.hidden_size;
  const [shift, scale, gate] = modulation(d, siluVec, `${name}.modulation`, 3);
  const fused = linear(d, normModulate(d, x, shift, scale), `${name}.linear1`); // [L, 3h + mlp_hidden]
  const [qkv, mlpIn] = g.opN('Split', [fused, g.i64([3 * h, h * d.p.mlp_ratio])], { axis: -1 }, { outputs: 2 });
  const [q0, k0, v] = splitQkv(d, qkv);
  const [q, k] = qkNorm(d, q0, k0, `${name}.norm`);
  const attn = attention(d, q, k, v, pe);
  const out = linear(d, g.op('Concat', [attn, geluTanh(g, mlpIn, d.compute === 'float16')], { axis: -1 }), `${name}.linear2`);
  return clipF16(d, gatedResidual(d, x, gate, out));
}

/** adaLN (shift, scale) → modulated LayerNorm → Linear. x [n, h] → [n, out_channels] */
function lastLayer(d: Dit, x: Value, siluVec: Value): Value {
  const g = d.g;
  const mod = linear(d, siluVec, 'final_layer.adaLN_modulation.1'); // [1, 2h]
  const [shift, scale] = g.opN('Split', [mod, g.i64([d.p.hidden_size, d.p.hidden_size])], { axis: -1 }, { outputs: 2 });
  return linear(d, normModulate(d, x, shift, scale), 'final_layer.linear');
}

// ---------------------------------------------------------------------------------------------
// RoPE tables

/**
 * EmbedND: per token, the angles pos[axis] · theta^(-2j/axes_dim[axis]) for each axis, concatenated
 * → cos, sin as [L, Dh/2]. `ids` is [L, axes] row-major (txt ids then img ids). float64, then
 * rounded to float32, as the reference does.
 */
export function ropeTables(ids: ArrayLike<number>, axesDim: number[], theta: number): { cos: Float32Array; sin: Float32Array; length: number } {
  const axes = axesDim.length;
  const length = ids.length / axes;
  const half = axesDim.reduce((a, b) => a + b, 0) / 2;
  const omega: number[] = [];
  const axisOf: number[] = [];
  axesDim.forEach((dim, a) => {
    for (let j = 0; j < dim; j += 2) {
      omega.push(1 / theta ** (j / dim));
      axisOf.push(a);
    }
  });
  const cos = new Float32Array(length * half);
  const sin = new Float32Array(length * half);
  for (let l = 0; l < length; l++) {
    for (let j = 0; j < half; j++) {
      const angle = ids[l * axes + axisOf[j]] * omega[j];
      cos[l * half + j] = Math.cos(angle);
      sin[l * half + j] = Math.sin(angle);
    }
  }
  return { cos, sin, length };
}
