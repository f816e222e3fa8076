// CLIP text encoder (HF CLIPTextModel, FLUX.1's CLIP-L) as an ONNX graph built from its safetensors.
// ids [B, L] → token + position embeddings → pre-LN layers with causal self-attention and a
// quick_gelu MLP → final LayerNorm = last_hidden_state [B, L, D]; pooled [B, D] is that state at the
// EOS position. Shapes in comments: B batch, L = max_position_embeddings (77), D hidden size.
//
// Also home to what both text encoders share (t5.ts imports it): the weight-format option, the
// per-layer Linear, small typed constants and the session wrapper plumbing.

import * as fs from 'node:fs';
import * as path from 'node:path';
import * as ort from 'onnxruntime-node';
import { f16ToF32, float32ToF16Bits } from '../formats/dtypes';
import { isGgmlQuant } from '../formats/ggml';
import { bytesOf, Graph, Value } from '../onnx/graph';
import { createSession, ExecutionProvider } from '../onnx/session';
import { graphFor, opChoicesFor } from '../onnx/providerOps';
import { ComputeType, WeightFormat, Weights } from '../onnx/weights';
import { WeightOptions } from '../onnx/weightOptions';
import { openTensors, TensorSource } from '../formats/safetensors';
import { componentTensors } from '../formats/layouts/components';
import { configSection, readJson } from '../formats/layouts/configFiles';
import { attention, gelu, layerNorm } from './layers';

// ---------------------------------------------------------------------------------------------
// Shared by the text encoders

/**
 * How Linear weights are held in memory. 'source' (default): in the file's own dtype (bf16, fp16,
 * fp8), memory-mapped, cast to the compute type one layer at a time — the text encoders stay as
 * small as their checkpoint. The Weights formats convert: 'fp16' (a bf16 file is converted once,
 * same size: with fp16Cache into the memory-mapped cache, else a resident copy made at session
 * creation), 'fp32' (twice the size of a bf16 file), 'fp8'.
 */
export type EncoderWeightFormat = WeightFormat | 'source';

export interface TextEncoderOptions {
  format?: EncoderWeightFormat;
  /** Activation type; float32 on CPU (onnxruntime's CPU kernels have no fp16 LayerNorm/attention). */
  compute?: ComputeType;
  /** Tensors up to this many bytes are inlined in the model as the compute type (Weights' default 1 MiB). */
  inlineLimit?: number;
  /** Cache folder for converted weights (format 'fp8' from a non-fp8 file, and fp16Cache). */
  cacheDir?: string;
  /**
   * Format 'fp16' from a bf16 file: convert once into the cache, which onnxruntime memory-maps,
   * instead of a Cast folded at session creation that holds every converted weight in RAM while
   * the session loads (T5-XXL on WebGPU: 9.1 GiB peak RSS on the H100 host). Needs cacheDir.
   */
  fp16Cache?: boolean;
  /** Build from the ops this provider implements (providerOps.ts; default cpu). The encoders' load() pass their ep. */
  opsFor?: ExecutionProvider;
}

export interface TextEncoderRuntimeOptions extends TextEncoderOptions {
  ep?: ExecutionProvider;
  intraOpThreads?: number;
  /** First use: the fraction of the weights converted into the cache so far (Weights.prefill). */
  onProgress?: (fraction: number) => void;
  /** Serves the checkpoint's tensors changed (LoRA-merged weights, formats/loraText.ts). */
  adapt?: (src: TensorSource) => TensorSource;
}

export interface BuiltEncoder {
  graph: Graph;
  /** External-data folder to give createSession. */
  weightsFolder: string;
  inputs: string[];
  outputs: string[];
}

/** What the block builders share. */
export interface Ctx {
  g: Graph;
  w: Weights;
  compute: ComputeType;
  /** y = x·Wᵀ + b for the Linear `name`, its weight converted after `gate`. */
  linear(x: Value, name: string, gate: Value): Value;
}

/** The encoder's 2-D weights (Linears and embedding tables). */
function matricesOf(src: TensorSource): string[] {
  return src.names().filter((n) => n.endsWith('.weight') && src.info(n).shape.length === 2);
}

/** Weights options of an encoder build; Weights.prefill must see the same ones (they key the cache). */
function encoderWeightOptions(opts: TextEncoderOptions): WeightOptions {
  const format = opts.format ?? 'source';
  // Weights has no "keep the file dtype" format; param(name, gate) is exactly that (a stored
  // tensor cast after the gate), so 'source' uses it and never calls Weights.matrix.
  return {
    format: format === 'source' ? 'fp32' : format, compute: opts.compute ?? 'float32', inlineLimit: opts.inlineLimit, cacheDir: opts.cacheDir,
    fp16Cache: format === 'fp16' && opts.fp16Cache === true && opts.cacheDir !== undefined, explicitZeroPoints: opChoicesFor(opts.opsFor).explicitZeroPoints,
  };
}

export function encoderContext(g: Graph, src: TensorSource, opts: TextEncoderOptions): Ctx {
  const format = opts.format ?? 'source';
  const compute = opts.compute ?? 'float32';
  const w = new Weights(g, src, encoderWeightOptions(opts), matricesOf(src));
  const linear = (x: Value, name: string, gate: Value): Value => {
    // GGUF quantized Linears (a T5 encoder GGUF) are only read as MatMulNBits blocks, as the GGUF DiT's.
    if (format !== 'source' || isGgmlQuant(src.info(`${name}.weight`).dtype)) return w.linear(x, name, gate);
    const y = g.op('MatMul', [x, g.op('Transpose', [w.param(`${name}.weight`, gate)], { perm: [1, 0] })]);
    return src.has(`${name}.bias`) ? g.op('Add', [y, w.param(`${name}.bias`)]) : y;
  };
  return { g, w, compute, linear };
}

/** ONNX TensorProto.DataType of a compute type. */
export const onnxType = (t: ComputeType) => (t === 'float32' ? 1 : 10);

/** A constant in the compute type. */
export function constOf(ctx: Ctx, values: ArrayLike<number>, dims: number[], hint = 'const'): Value {
  const data = Float32Array.from(values);
  if (ctx.compute === 'float32') return ctx.g.constant('float32', dims, bytesOf(data), hint);
  return ctx.g.constant('float16', dims, bytesOf(float32ToF16Bits(data)), hint);
}

/** Rows of a (bf16, fp16, ...) table picked by `ids`, as the compute type; the table stays in its file dtype. */
export function embed(ctx: Ctx, table: string, ids: Value): Value {
  return ctx.w.gatherRows(table, ids);
}

/** Graph outputs are float32 whatever the compute type. */
export function toF32(ctx: Ctx, x: Value): Value {
  return ctx.compute === 'float32' ? x : ctx.g.op('Cast', [x], { to: 1 });
}

/**
 * config.json next to the weights (a folder or a file's folder), else an all-in-one file's sidecar
 * section for `kind` (layouts/configFiles.ts configSection), if it describes `modelType`.
 */
export function readHfConfig(from: string | TensorSource, modelTypes: string[], kind: 'clip' | 't5'): Record<string, unknown> | undefined {
  const p = typeof from === 'string' ? from : from.path;
  const isDir = fs.existsSync(p) && fs.statSync(p).isDirectory();
  const file = path.join(isDir ? p : path.dirname(p), 'config.json');
  const sidecar = p.replace(/(\.safetensors(\.index\.json)?|\.gguf)$/, '') + '.config.json';
  const candidates = [
    () => (fs.existsSync(file) ? (JSON.parse(fs.readFileSync(file, 'utf8')) as Record<string, unknown>) : undefined),
    () => (!isDir && sidecar !== p && fs.existsSync(sidecar) ? configSection(readJson(sidecar), kind) : undefined),
  ];
  for (const read of candidates) {
    const json = read();
    const cfg = (json?.text_config as Record<string, unknown> | undefined) ?? json;
    if (cfg && modelTypes.includes(String(cfg.model_type))) return cfg;
  }
  return undefined;
}

/** Count of `<prefix>N.` blocks among the tensor names. */
export function countBlocks(src: TensorSource, prefix: string): number {
  let n = 0;
  while (src.names().some((k) => k.startsWith(`${prefix}${n}.`))) n++;
  return n;
}

/** Read a float32 or float16 output tensor as float32. */
export function outputF32(t: ort.Tensor): Float32Array {
  if (t.type === 'float32') return t.data as Float32Array;
  const h = t.data as Uint16Array;
  return Float32Array.from(h, (x) => f16ToF32(x));
}

/** Build → session; the tensor source is only needed while building. */
export async function loadEncoder<C>(
  dir: string, kind: 'clip' | 't5', opts: TextEncoderRuntimeOptions, read: (src: TensorSource) => C, build: (src: TensorSource, cfg: C) => BuiltEncoder,
): Promise<{ session: ort.InferenceSession; cfg: C }> {
  const opened = componentTensors(dir, kind);
  let src = opened;
  try {
    if (opts.adapt) src = opts.adapt(opened);
    // Embedding tables are read by Gather from the file, not through the fp16 cache.
    const linears = matricesOf(src).filter((n) => !/embed|shared\.weight|relative_attention_bias/.test(n));
    await Weights.prefill(src, encoderWeightOptions(opts), linears, opts.intraOpThreads, opts.onProgress);
    const cfg = read(src);
    const { graph, weightsFolder } = build(src, cfg);
    const session = await createSession(graph, { ep: opts.ep, weightsFolder, intraOpThreads: opts.intraOpThreads });
    return { session, cfg };
  } finally {
    opened.close();
  }
}

// ---------------------------------------------------------------------------------------------
// CLIP

export interface ClipConfig {
  hiddenSize: number;
  intermediateSize: number;
  layers: number;
  heads: number;
  /** Sequence length (77). */
  maxPositions: number;
  eps: number;
  act: 'quick_gelu' | 'gelu';
  /** 2 (CLIP-L's config) selects transformers' legacy pooling: the first position of the highest id. */
  eosTokenId: number;
}

/** From config.json beside the weights, else from the tensor shapes (CLIP-L defaults for the rest). */
export function readClipConfig(from: string | TensorSource): ClipConfig {
  const j = readHfConfig(from, ['clip_text_model', 'clip'], 'clip');
  if (j) {
    return {
      hiddenSize: j.hidden_size as number,
      intermediateSize: j.intermediate_size as number,
      layers: j.num_hidden_layers as number,
      heads: j.num_attention_heads as number,
      maxPositions: (j.max_position_embeddings as number | undefined) ?? 77,
      eps: (j.layer_norm_eps as number | undefined) ?? 1e-5,
      act: j.hidden_act === 'gelu' ? 'gelu' : 'quick_gelu',
      eosTokenId: (j.eos_token_id as number | undefined) ?? 2,
    };
  }
  const src = typeof from === 'string' ? openTensors(from) : from;
  try {
    const p = clipPrefix(src);
    const [, hidden] = src.info(`${p}embeddings.token_embedding.weight`).shape;
    return {
      hiddenSize: hidden,
      intermediateSize: src.info(`${p}encoder.layers.0.mlp.fc1.weight`).shape[0],
      layers: countBlocks(src, `${p}encoder.layers.`),
      heads: hidden / 64,
      maxPositions: src.info(`${p}embeddings.position_embedding.weight`).shape[0],
      eps: 1e-5,
      act: 'quick_gelu',
      eosTokenId: 2,
    };
  } finally {
    if (typeof from === 'string') src.close();
  }
}

/** transformers 4 saves CLIPTextModel under "text_model.", transformers 5 without it. */
function clipPrefix(src: TensorSource): string {
  return src.has('text_model.embeddings.token_embedding.weight') ? 'text_model.' : '';
}

export function buildClip(src: TensorSource, cfg: ClipConfig, opts: TextEncoderOptions = {}): BuiltEncoder {
  const g = graphFor('clip_text', opts.opsFor);
  const ctx = encoderContext(g, src, opts);
  const p = clipPrefix(src);
  const L = cfg.maxPositions;
  const D = cfg.hiddenSize;
  const ids = g.input('input_ids', 'int32', ['batch', L]);

  let x = clipEmbeddings(ctx, p, ids); // [B, L, D]
  const mask = causalMask(ctx, L);
  for (let i = 0; i < cfg.layers; i++) x = g.scope(`layers.${i}`, () => clipLayer(ctx, cfg, `${p}encoder.layers.${i}`, x, mask));
  const hidden = layerNorm(ctx.w, x, `${p}final_layer_norm`, cfg.eps, D);
  const pooled = g.op('GatherND', [hidden, eosPosition(g, ids, cfg.eosTokenId)], { batch_dims: 1 }); // [B, D]

  g.output(toF32(ctx, hidden), 'last_hidden_state', 'float32', ['batch', L, D]);
  g.output(toF32(ctx, pooled), 'pooled', 'float32', ['batch', D]);
  return { graph: g, weightsFolder: ctx.w.folder(), inputs: ['input_ids'], outputs: ['last_hidden_state', 'pooled'] };
}

/** token_embedding[ids] + position_embedding (positions 0..L-1). */
function clipEmbeddings(ctx: Ctx, p: string, ids: Value): Value {
  const tokens = embed(ctx, `${p}embeddings.token_embedding.weight`, ids); // [B, L, D]
  const positions = ctx.w.param(`${p}embeddings.position_embedding.weight`, ctx.w.gate(tokens)); // [L, D]
  return ctx.g.op('Add', [tokens, positions]);
}

/** [1, 1, L, L]: 0 on and below the diagonal, the type's lowest value above (as transformers). */
function causalMask(ctx: Ctx, L: number): Value {
  const lowest = ctx.compute === 'float32' ? -3.4028234663852886e38 : -65504;
  const m = new Float32Array(L * L);
  for (let q = 0; q < L; q++) for (let k = q + 1; k < L; k++) m[q * L + k] = lowest;
  return constOf(ctx, m, [1, 1, L, L], 'causal_mask');
}

function clipLayer(ctx: Ctx, cfg: ClipConfig, n: string, x: Value, mask: Value): Value {
  const g = ctx.g;
  x = g.op('Add', [x, clipAttention(ctx, cfg, n, layerNorm(ctx.w, x, `${n}.layer_norm1`, cfg.eps, cfg.hiddenSize), mask)]);
  return g.op('Add', [x, clipMlp(ctx, cfg, n, layerNorm(ctx.w, x, `${n}.layer_norm2`, cfg.eps, cfg.hiddenSize))]);
}

/** Causal multi-head self-attention, scale 1/sqrt(head dim). [B, L, D] → [B, L, D] */
function clipAttention(ctx: Ctx, cfg: ClipConfig, n: string, h: Value, mask: Value): Value {
  const gate = ctx.w.gate(h);
  const q = ctx.linear(h, `${n}.self_attn.q_proj`, gate);
  const k = ctx.linear(h, `${n}.self_attn.k_proj`, gate);
  const v = ctx.linear(h, `${n}.self_attn.v_proj`, gate);
  return ctx.linear(attention(ctx.g, q, k, v, cfg.heads, { bias: mask, headDim: cfg.hiddenSize / cfg.heads, half: ctx.compute === 'float16' }), `${n}.self_attn.out_proj`, gate);
}

/** fc2(act(fc1(h))) */
function clipMlp(ctx: Ctx, cfg: ClipConfig, n: string, h: Value): Value {
  const gate = ctx.w.gate(h);
  const a = ctx.linear(h, `${n}.mlp.fc1`, gate);
  return ctx.linear(cfg.act === 'gelu' ? gelu(ctx.g, a, ctx.compute === 'float16') : quickGelu(ctx, a), `${n}.mlp.fc2`, gate);
}

/** CLIP's quick_gelu, x · sigmoid(1.702 x), with the constant in the compute type (not always f32). */
function quickGelu(ctx: Ctx, x: Value): Value {
  const g = ctx.g;
  return g.op('Mul', [x, g.op('Sigmoid', [g.op('Mul', [x, constOf(ctx, [1.702], [], 'quick_gelu_alpha')])])]);
}

/**
 * [B, 1] index of the EOS token, as transformers' CLIPTextTransformer: with eos_token_id == 2 (the
 * legacy value in CLIP-L's config) the first position of the highest id — 49407 = <|endoftext|>,
 * which is also the padding — else the first position of eos_token_id. torch.argmax and ArgMax
 * (select_last_index 0) both take the first maximum. Ids go through float32 (exact below 2^24)
 * because ArgMax over integers is not on every execution provider.
 */
function eosPosition(g: Graph, ids: Value, eosTokenId: number): Value {
  const key = eosTokenId === 2 ? g.op('Cast', [ids], { to: 1 }) : g.op('Cast', [g.op('Equal', [ids, g.constant('int32', [], bytesOf(Int32Array.of(eosTokenId)), 'eos')])], { to: 1 });
  return g.op('ArgMax', [key], { axis: 1, keepdims: 1 });
}

/** CLIP text encoder session: ids (Int32Array of B × 77) → last hidden state and pooled output. */
export class ClipEncoder {
  private constructor(private readonly session: ort.InferenceSession, readonly cfg: ClipConfig) {}

  static async load(dir: string, opts: TextEncoderRuntimeOptions = {}): Promise<ClipEncoder> {
    const o = { ...opts, opsFor: opts.opsFor ?? opts.ep };
    const { session, cfg } = await loadEncoder(dir, 'clip', o, readClipConfig, (src, c) => buildClip(src, c, o));
    return new ClipEncoder(session, cfg);
  }

  /** hidden: [B, L, D], pooled: [B, D], both flat. */
  async encode(ids: Int32Array): Promise<{ pooled: Float32Array; hidden: Float32Array }> {
    const L = this.cfg.maxPositions;
    if (ids.length === 0 || ids.length % L) throw new Error(`CLIP expects ${L} token ids per prompt, got ${ids.length}`);
    const out = await this.session.run({ input_ids: new ort.Tensor('int32', ids, [ids.length / L, L]) });
    return { pooled: outputF32(out.pooled), hidden: outputF32(out.last_hidden_state) };
  }

  async release(): Promise<void> {
    await this.session.release();
  }
}
