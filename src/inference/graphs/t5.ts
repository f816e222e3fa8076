// T5 encoder (HF T5EncoderModel, FLUX.1's T5-XXL v1.1) as an ONNX graph built from its safetensors.
// ids [B, L] → shared embedding → blocks of (RMSNorm → self-attention with relative position bias,
// RMSNorm → gated-GELU FFN), each with a residual → final RMSNorm = last_hidden_state [B, L, D].
// Shapes in comments: B batch, L sequence (512 for dev, 256 for schnell; fixed when building),
// D d_model, H heads, Dkv head width.

import * as ort from 'onnxruntime-node';
import { bytesOf, Value } from '../onnx/graph';
import { TensorSource, openTensors } from '../formats/safetensors';
import {
  BuiltEncoder, countBlocks, Ctx, encoderContext, embed, loadEncoder, outputF32, readHfConfig, TextEncoderOptions, TextEncoderRuntimeOptions, toF32,
} from './clip';
import { graphFor } from '../onnx/providerOps';
import { attention, gelu, geluTanh, rmsNorm } from './layers';

export interface T5Config {
  dModel: number;
  dKv: number;
  dFf: number;
  layers: number;
  heads: number;
  numBuckets: number;
  maxDistance: number;
  eps: number;
  /** Gated FFN (T5 v1.1: act(wi_0 h) · wi_1 h) or plain (act(wi h)). */
  gated: boolean;
  act: 'gelu_tanh' | 'gelu' | 'relu';
}

export interface T5Options extends TextEncoderOptions {
  /** Sequence length the graph is built for (default 512). */
  maxLength?: number;
}

const ATTN = 'layer.0.SelfAttention';
const FFN = 'layer.1.DenseReluDense';

/** From config.json beside the weights, else from the tensor shapes (T5 v1.1 defaults for the rest). */
export function readT5Config(from: string | TensorSource): T5Config {
  const j = readHfConfig(from, ['t5'], 't5');
  if (j) {
    const proj = String(j.feed_forward_proj ?? 'gated-gelu');
    const act = String(j.dense_act_fn ?? proj.replace(/^gated-/, ''));
    return {
      dModel: j.d_model as number,
      dKv: j.d_kv as number,
      dFf: j.d_ff as number,
      layers: j.num_layers as number,
      heads: j.num_heads as number,
      numBuckets: (j.relative_attention_num_buckets as number | undefined) ?? 32,
      maxDistance: (j.relative_attention_max_distance as number | undefined) ?? 128,
      eps: (j.layer_norm_epsilon as number | undefined) ?? 1e-6,
      gated: (j.is_gated_act as boolean | undefined) ?? proj.startsWith('gated-'),
      act: activation(act),
    };
  }
  const src = typeof from === 'string' ? openTensors(from) : from;
  try {
    const [numBuckets, heads] = src.info(`encoder.block.0.${ATTN}.relative_attention_bias.weight`).shape;
    const gated = src.has(`encoder.block.0.${FFN}.wi_0.weight`);
    return {
      dModel: src.info(`encoder.block.0.${ATTN}.q.weight`).shape[1],
      dKv: src.info(`encoder.block.0.${ATTN}.q.weight`).shape[0] / heads,
      dFf: src.info(`encoder.block.0.${FFN}.${gated ? 'wi_0' : 'wi'}.weight`).shape[0],
      layers: countBlocks(src, 'encoder.block.'),
      heads,
      numBuckets,
      maxDistance: 128,
      eps: 1e-6,
      gated,
      act: 'gelu_tanh',
    };
  } finally {
    if (typeof from === 'string') src.close();
  }
}

function activation(name: string): T5Config['act'] {
  if (name === 'gelu_new' || name === 'gelu_pytorch_tanh' || name === 'gelu_fast') return 'gelu_tanh';
  if (name === 'gelu' || name === 'relu') return name;
  throw new Error(`T5 activation "${name}" is not supported`);
}

export function buildT5(src: TensorSource, cfg: T5Config, opts: T5Options = {}): BuiltEncoder {
  const g = graphFor('t5_encoder', opts.opsFor);
  const ctx = encoderContext(g, src, opts);
  const L = opts.maxLength ?? 512;
  const ids = g.input('input_ids', 'int32', ['batch', L]);

  let x = embed(ctx, src.has('encoder.embed_tokens.weight') ? 'encoder.embed_tokens.weight' : 'shared.weight', ids); // [B, L, D]
  const bias = positionBias(ctx, cfg, L, x); // [1, H, L, L], computed once, used by every block
  for (let i = 0; i < cfg.layers; i++) x = g.scope(`block.${i}`, () => t5Block(ctx, cfg, `encoder.block.${i}`, x, bias));
  const hidden = norm(ctx, cfg, x, 'encoder.final_layer_norm');

  g.output(toF32(ctx, hidden), 'last_hidden_state', 'float32', ['batch', L, cfg.dModel]);
  return { graph: g, weightsFolder: ctx.w.folder(), inputs: ['input_ids'], outputs: ['last_hidden_state'] };
}

function t5Block(ctx: Ctx, cfg: T5Config, n: string, x: Value, bias: Value): Value {
  const g = ctx.g;
  x = g.op('Add', [x, selfAttention(ctx, cfg, n, norm(ctx, cfg, x, `${n}.layer.0.layer_norm`), bias)]);
  return g.op('Add', [x, feedForward(ctx, cfg, n, norm(ctx, cfg, x, `${n}.layer.1.layer_norm`))]);
}

/** T5LayerNorm: x / sqrt(mean(x²) + eps) · weight — no mean subtraction, no bias. */
function norm(ctx: Ctx, cfg: T5Config, x: Value, name: string): Value {
  return rmsNorm(ctx.g, x, ctx.w.param(`${name}.weight`), cfg.eps, ctx.compute === 'float16');
}

/**
 * softmax(q·kᵀ + position bias) · v, [B, L, D] → [B, L, D]. Scale 1, not 1/sqrt(Dkv): T5 folds the
 * scaling into the initialisation of q, so the checkpoint expects unscaled logits.
 */
function selfAttention(ctx: Ctx, cfg: T5Config, n: string, h: Value, bias: Value): Value {
  const gate = ctx.w.gate(h);
  const q = ctx.linear(h, `${n}.${ATTN}.q`, gate); // [B, L, H·Dkv]
  const k = ctx.linear(h, `${n}.${ATTN}.k`, gate);
  const v = ctx.linear(h, `${n}.${ATTN}.v`, gate);
  return ctx.linear(attention(ctx.g, q, k, v, cfg.heads, { bias, scale: 1, half: ctx.compute === 'float16' }), `${n}.${ATTN}.o`, gate);
}

/** wo(act(wi_0 h) · wi_1 h), or wo(act(wi h)) for the ungated T5. */
function feedForward(ctx: Ctx, cfg: T5Config, n: string, h: Value): Value {
  const g = ctx.g;
  const gate = ctx.w.gate(h);
  const half = ctx.compute === 'float16';
  const act = (a: Value) => (cfg.act === 'gelu_tanh' ? geluTanh(g, a, half) : cfg.act === 'gelu' ? gelu(g, a, half) : g.op('Relu', [a]));
  const a = cfg.gated
    ? g.op('Mul', [act(ctx.linear(h, `${n}.${FFN}.wi_0`, gate)), ctx.linear(h, `${n}.${FFN}.wi_1`, gate)])
    : act(ctx.linear(h, `${n}.${FFN}.wi`, gate));
  return ctx.linear(a, `${n}.${FFN}.wo`, gate);
}

/**
 * Block 0's relative_attention_bias [buckets, H] gathered with the bucket of every (query, key) pair
 * → [1, H, L, L]. The buckets depend only on L, so they are computed here and stored as an int32
 * constant (L² · 4 bytes: 1 MiB at 512). The gather runs after a gate on the embeddings so that
 * onnxruntime does not fold it into a resident [1, H, L, L] float tensor (64 MiB for T5-XXL at 512).
 */
function positionBias(ctx: Ctx, cfg: T5Config, L: number, embeddings: Value): Value {
  const g = ctx.g;
  const gate = ctx.w.gate(embeddings);
  const table = ctx.w.param(`encoder.block.0.${ATTN}.relative_attention_bias.weight`, gate); // [buckets, H]
  const buckets = relativePositionBuckets(L, cfg.numBuckets, cfg.maxDistance);
  const idx = g.op('Reshape', [g.constant('int32', [L, L], bytesOf(buckets), 'buckets'), g.op('Concat', [g.i64([L, L]), gate], { axis: 0 })]);
  const b = g.op('Gather', [table, idx], { axis: 0 }); // [L, L, H]
  return g.op('Reshape', [g.op('Transpose', [b], { perm: [2, 0, 1] }), g.i64([1, cfg.heads, L, L])]);
}

/** [L, L] row-major: bucket of key position k seen from query position q (HF _relative_position_bucket, bidirectional). */
export function relativePositionBuckets(L: number, numBuckets: number, maxDistance: number): Int32Array {
  const out = new Int32Array(L * L);
  for (let q = 0; q < L; q++) for (let k = 0; k < L; k++) out[q * L + k] = relativePositionBucket(k - q, numBuckets, maxDistance);
  return out;
}

/**
 * Half the buckets for keys before the query, half for keys after; in each half exact distances up
 * to a quarter of the buckets, then logarithmic up to maxDistance. The logarithmic part is done in
 * float32 like torch, so exact powers (distance 16, 32, 64 with the default 32/128) land in the
 * same bucket.
 */
export function relativePositionBucket(relative: number, numBuckets: number, maxDistance: number): number {
  const half = Math.floor(numBuckets / 2);
  const maxExact = Math.floor(half / 2);
  const base = relative > 0 ? half : 0;
  const n = Math.abs(relative);
  if (n < maxExact) return base + n;
  const f = Math.fround;
  const logRatio = f(f(Math.log(f(n / maxExact))) / f(Math.log(maxDistance / maxExact)));
  return base + Math.min(maxExact + Math.trunc(f(logRatio * (half - maxExact))), half - 1);
}

/** T5 encoder session: ids (Int32Array of B × maxLength) → last hidden state [B, L, D], flat. */
export class T5Encoder {
  private constructor(private readonly session: ort.InferenceSession, readonly cfg: T5Config, readonly maxLength: number) {}

  static async load(dir: string, opts: T5Options & TextEncoderRuntimeOptions = {}): Promise<T5Encoder> {
    const o = { ...opts, opsFor: opts.opsFor ?? opts.ep };
    const { session, cfg } = await loadEncoder(dir, 't5', o, readT5Config, (src, c) => buildT5(src, c, o));
    return new T5Encoder(session, cfg, opts.maxLength ?? 512);
  }

  async encode(ids: Int32Array): Promise<Float32Array> {
    const L = this.maxLength;
    if (ids.length === 0 || ids.length % L) throw new Error(`T5 encoder was built for ${L} token ids per prompt, got ${ids.length}`);
    const out = await this.session.run({ input_ids: new ort.Tensor('int32', ids, [ids.length / L, L]) });
    return outputF32(out.last_hidden_state);
  }

  async release(): Promise<void> {
    await this.session.release();
  }
}
