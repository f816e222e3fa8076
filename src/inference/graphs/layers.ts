// Building blocks shared by the graph builders. Shapes in comments: B batch, L sequence, D width.

import { float32ToF16Bits } from '../dtypes';
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

/** CLIP's quick_gelu: x * sigmoid(1.702 x). */
export function quickGelu(g: Graph, x: Value): Value {
  return g.op('Mul', [x, g.op('Sigmoid', [g.op('Mul', [x, g.scalarF32(1.702)])])]);
}

/**
 * Scaled dot-product attention with q, k, v as [B, L, H*Dh] (heads packed in the last axis),
 * returning [B, Lq, H*Dh]. `bias` is added to the logits, [B or 1, H, Lq, Lk]. `scale` defaults to 1/sqrt(Dh).
 * com.microsoft.MultiHeadAttention runs fused on CPU, CUDA and WebGPU.
 */
export function attention(g: Graph, q: Value, k: Value, v: Value, heads: number, opts: { bias?: Value; scale?: number; causalMask?: Value; flash?: boolean; headDim?: number; half?: boolean } = {}): Value {
  if (!g.contribOps) return attentionOps(g, q, k, v, heads, opts);
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
 * to q first (keeps float16 logits in range). Needs `scale` or `headDim`.
 */
function attentionOps(g: Graph, q: Value, k: Value, v: Value, heads: number, opts: { bias?: Value; scale?: number; causalMask?: Value; headDim?: number; half?: boolean }): Value {
  const scale = opts.scale ?? (opts.headDim ? 1 / Math.sqrt(opts.headDim) : undefined);
  if (scale === undefined) throw new Error('attention without com.microsoft ops needs the scale or the head dim');
  const split = (x: Value, perm: number[]) => g.op('Transpose', [g.op('Reshape', [x, g.i64([0, 0, heads, -1])])], { perm });
  const qh = split(g.op('Mul', [q, scalarOf(g, scale, opts.half ?? false)]), [0, 2, 1, 3]); // [B, H, Lq, Dh]
  const kt = split(k, [0, 2, 3, 1]); // [B, H, Dh, Lk]
  const vh = split(v, [0, 2, 1, 3]); // [B, H, Lk, Dh]
  let logits = g.op('MatMul', [qh, kt]);
  const bias = opts.bias ?? opts.causalMask;
  if (bias) logits = g.op('Add', [logits, bias]);
  const out = g.op('MatMul', [g.op('Softmax', [logits], { axis: -1 }), vh]); // [B, H, Lq, Dh]
  return g.op('Reshape', [g.op('Transpose', [out], { perm: [0, 2, 1, 3] }), g.i64([0, 0, -1])]);
}

/** [B, L, H*Dh] → [B, H, L, Dh] */
export function splitHeads(g: Graph, x: Value, heads: number, headDim: number): Value {
  const r = g.op('Reshape', [x, g.i64([0, 0, heads, headDim])]);
  return g.op('Transpose', [r], { perm: [0, 2, 1, 3] });
}

/** [B, H, L, Dh] → [B, L, H*Dh] */
export function mergeHeads(g: Graph, x: Value, heads: number, headDim: number): Value {
  const t = g.op('Transpose', [x], { perm: [0, 2, 1, 3] });
  return g.op('Reshape', [t, g.i64([0, 0, heads * headDim])]);
}
