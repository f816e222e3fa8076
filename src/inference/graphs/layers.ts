// Building blocks shared by the graph builders. Shapes in comments: B batch, L sequence, D width.

import { Graph, Value } from '../onnx/graph';
import { Weights } from '../onnx/weights';

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

/** RMSNorm over the last axis: x / sqrt(mean(x²) + eps) * scale (fused by onnxruntime's SimplifiedLayerNormalization). */
export function rmsNorm(g: Graph, x: Value, scale: Value, eps: number): Value {
  return g.op('SimplifiedLayerNormalization', [x, scale], { axis: -1, epsilon: { float: eps }, stash_type: 1 });
}

export function silu(g: Graph, x: Value): Value {
  return g.op('Mul', [x, g.op('Sigmoid', [x])]);
}

/** GELU with the tanh approximation (PyTorch gelu(approximate="tanh"), HF "gelu_new"). */
export function geluTanh(g: Graph, x: Value): Value {
  return g.op('FastGelu', [x], {}, { domain: 'com.microsoft' });
}

/** Exact erf GELU. */
export function gelu(g: Graph, x: Value): Value {
  return g.op('Gelu', [x], {}, { domain: 'com.microsoft' });
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
export function attention(g: Graph, q: Value, k: Value, v: Value, heads: number, opts: { bias?: Value; scale?: number; causalMask?: Value; flash?: boolean } = {}): Value {
  const attrs: Record<string, number | { float: number }> = { num_heads: heads };
  if (opts.scale !== undefined) attrs.scale = { float: opts.scale };
  // Inputs: query, key, value, bias, key_padding_mask, attention_bias. Outputs: output, present_key,
  // present_value. The WebGPU provider runs its flash-attention kernel only when the node also
  // writes present_key/value (otherwise it materialises the [H, L, L] scores); the CPU provider
  // does the opposite (its flash path needs them absent), hence the switch.
  const outputs = opts.flash ? 3 : 1;
  return g.opN('MultiHeadAttention', [q, k, v, undefined, undefined, opts.bias ?? opts.causalMask], attrs, { domain: 'com.microsoft', outputs })[0];
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
