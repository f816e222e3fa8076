// Building blocks shared by the graph builders. Shapes in comments: B batch, L sequence, D width.

import { float32ToF16Bits } from '../formats/dtypes';
import { bytesOf, Graph, Value } from '../onnx/graph';
import { Weights } from '../onnx/weights';

// Where the graph may not use onnxruntime's com.microsoft ops (Graph.contribOps off: CoreML has
// none of them, providerOps.ts), each fused op below is written out in standard ONNX ops with the
// same math; test/unit/provider-ops.test.ts runs both forms on the CPU provider against the goldens.

/** A scalar constant in float16 (`half`) or float32. */
function scalarOf(g: Graph, x: number, half: boolean): Value {
  return half ? g.constant('float16', [], bytesOf(float32ToF16Bits(Float32Array.of(x))), 'scalar') : g.scalarF32(x);
}

/** LayerNorm over the last axis; `name` gives `.weight`/`.bias`, or none for an affine-free norm. */
export function layerNorm(w: Weights, x: Value, name: string | undefined, eps: number, width: number): Value {
  const g = w.g;
  const scale = name ? w.param(`${name}.weight`) : w.constant(new Array(width).fill(1), [width]);
  const bias = name && w.src.has(`${name}.bias`) ? w.param(`${name}.bias`) : w.constant(new Array(width).fill(0), [width]);
  return layerNormAffine(g, x, scale, bias, eps);
}

/** LayerNorm over the last axis with the given per-channel scale and bias values [D]. */
export function layerNormAffine(g: Graph, x: Value, scale: Value, bias: Value, eps: number): Value {
  return g.op('LayerNormalization', [x, scale, bias], { axis: -1, epsilon: { float: eps } });
}

/**
 * RMSNorm over the last axis: x / sqrt(mean(x²) + eps) * scale (fused by onnxruntime's
 * SimplifiedLayerNormalization). `half`: x and scale are float16; the statistics stay float32
 * either way (stash_type 1).
 */
export function rmsNorm(g: Graph, x: Value, scale: Value, eps: number, half = false): Value {
  if (g.contribOps) return g.op('SimplifiedLayerNormalization', [x, scale], { axis: -1, epsilon: { float: eps }, stash_type: 1 });
  const x32 = half ? g.op('Cast', [x], { to: 1 }) : x;
  const meanSquare = g.op('ReduceMean', [g.op('Mul', [x32, x32]), g.i64([-1])], { keepdims: 1 });
  const normed = g.op('Div', [x32, g.op('Sqrt', [g.op('Add', [meanSquare, g.scalarF32(eps)])])]);
  return g.op('Mul', [half ? g.op('Cast', [normed], { to: 10 }) : normed, scale]);
}

export function silu(g: Graph, x: Value): Value {
  return g.op('Mul', [x, g.op('Sigmoid', [x])]);
}

/** GELU with the tanh approximation (PyTorch gelu(approximate="tanh"), HF "gelu_new"). `half`: x is float16. */
export function geluTanh(g: Graph, x: Value, half = false): Value {
  if (g.contribOps) return g.op('FastGelu', [x], {}, { domain: 'com.microsoft' });
  // 0.5 · x · (1 + tanh(√(2/π) · (x + 0.044715 · x³)))
  const c = (v: number) => scalarOf(g, v, half);
  const cube = g.op('Mul', [g.op('Mul', [x, x]), x]);
  const inner = g.op('Mul', [g.op('Add', [x, g.op('Mul', [cube, c(0.044715)])]), c(Math.sqrt(2 / Math.PI))]);
  return g.op('Mul', [g.op('Mul', [x, c(0.5)]), g.op('Add', [g.op('Tanh', [inner]), c(1)])]);
}

/** Exact erf GELU. `half`: x is float16. */
export function gelu(g: Graph, x: Value, half = false): Value {
  if (g.contribOps) return g.op('Gelu', [x], {}, { domain: 'com.microsoft' });
  // 0.5 · x · (1 + erf(x / √2))
  const c = (v: number) => scalarOf(g, v, half);
  return g.op('Mul', [g.op('Mul', [x, c(0.5)]), g.op('Add', [g.op('Erf', [g.op('Mul', [x, c(Math.SQRT1_2)])]), c(1)])]);
}

export interface AttentionOptions {
  /** Added to the logits, [B or 1, H, Lq, Lk]. */
  bias?: Value;
  /** Default 1/sqrt(Dh). */
  scale?: number;
  causalMask?: Value;
  /** MultiHeadAttention: ask for present K/V (see below). */
  flash?: boolean;
  headDim?: number;
  /** q, k, v are float16. */
  half?: boolean;
  /** `matmul`: MatMul → Softmax → MatMul even where MultiHeadAttention exists (faster on WebGPU, OpChoices). */
  form?: 'fused' | 'matmul';
  /** `matmul`: the queries in this many pieces, so one piece's scores [B, H, Lq/chunks, Lk] are held at a time. */
  chunks?: number;
}

/**
 * Scaled dot-product attention with q, k, v as [B, L, H*Dh] (heads packed in the last axis),
 * returning [B, Lq, H*Dh]. com.microsoft.MultiHeadAttention runs fused on CPU, CUDA and WebGPU.
 */
export function attention(g: Graph, q: Value, k: Value, v: Value, heads: number, opts: AttentionOptions = {}): Value {
  if (!g.contribOps || opts.form === 'matmul') return attentionMatMul(g, q, k, v, heads, opts);
  const attrs: Record<string, number | { float: number }> = { num_heads: heads };
  if (opts.scale !== undefined) attrs.scale = { float: opts.scale };
  // Inputs: query, key, value, bias, key_padding_mask, attention_bias. Outputs: output, present_key,
  // present_value. The WebGPU provider runs its flash-attention kernel only when the node also
  // writes present_key/value (otherwise it materialises the [H, L, L] scores); the CPU provider
  // does the opposite (its flash path needs them absent), hence the switch.
  const outputs = opts.flash ? 3 : 1;
  return g.opN('MultiHeadAttention', [q, k, v, undefined, undefined, opts.bias ?? opts.causalMask], attrs, { domain: 'com.microsoft', outputs })[0];
}

/**
 * MultiHeadAttention in standard ops: softmax(q·kᵀ · scale + bias) · v per head, the scale applied
 * to q first (keeps float16 logits in range). Needs `scale` or `headDim`. With `chunks` > 1 the
 * queries are split by Split's num_outputs: pieces of ⌈Lq/chunks⌉ and the rest, which onnxruntime
 * refuses when the pieces cannot add up to Lq (Lq ≤ 9 for 4 pieces); the DiT's Lq is at least its
 * 16 image tokens plus the text.
 */
function attentionMatMul(g: Graph, q: Value, k: Value, v: Value, heads: number, opts: AttentionOptions): Value {
  const scale = opts.scale ?? (opts.headDim ? 1 / Math.sqrt(opts.headDim) : undefined);
  if (scale === undefined) throw new Error('attention without com.microsoft ops needs the scale or the head dim');
  const split = (x: Value, perm: number[]) => g.op('Transpose', [g.op('Reshape', [x, g.i64([0, 0, heads, -1])])], { perm });
  const qh = split(g.op('Mul', [q, scalarOf(g, scale, opts.half ?? false)]), [0, 2, 1, 3]); // [B, H, Lq, Dh]
  const kt = split(k, [0, 2, 3, 1]); // [B, H, Dh, Lk]
  const vh = split(v, [0, 2, 1, 3]); // [B, H, Lk, Dh]
  const bias = opts.bias ?? opts.causalMask;
  const chunks = opts.chunks ?? 1;
  if (bias && chunks > 1) throw new Error('chunked attention takes no logit bias');
  const head = (qc: Value) => {
    let logits = g.op('MatMul', [qc, kt]); // [B, H, Lq, Lk]
    if (bias) logits = g.op('Add', [logits, bias]);
    return g.op('MatMul', [g.op('Softmax', [logits], { axis: -1 }), vh]); // [B, H, Lq, Dh]
  };
  const out = inPieces(g, qh, chunks, head);
  return g.op('Reshape', [g.op('Transpose', [out], { perm: [0, 2, 1, 3] }), g.i64([0, 0, -1])]);
}

/**
 * A WebGPU shader binds at most 16 storage buffers, so a Split or Concat over more than 15 pieces
 * fails at run time ("Too many storage buffers in shader", seen at 64 pieces on an H100): more
 * pieces are split and joined in levels of at most 8.
 */
const MAX_PIECES = 8;

/** `f` over the queries (axis 2) in `chunks` pieces, the results joined again. */
function inPieces(g: Graph, x: Value, chunks: number, f: (piece: Value) => Value): Value {
  if (chunks <= 1) return f(x);
  const n = Math.min(chunks, MAX_PIECES);
  const pieces = g.opN('Split', [x], { axis: 2, num_outputs: n }, { outputs: n });
  return g.op('Concat', pieces.map((p) => inPieces(g, p, Math.ceil(chunks / n), f)), { axis: 2 });
}
