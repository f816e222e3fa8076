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
  /**
   * `matmul`: MatMul → Softmax → MatMul even where MultiHeadAttention exists (faster on WebGPU,
   * OpChoices). `nbits`: both products as 8-bit MatMulNBits per head (attentionNBits; needs `tokens`).
   */
  form?: 'fused' | 'matmul' | 'nbits';
  /** `nbits`: the sequence length, fixed (MatMulNBits' K and N are attributes). */
  tokens?: number;
  /** `matmul`: the queries in this many pieces, so one piece's scores [B, H, Lq/chunks, Lk] are held at a time. */
  chunks?: number;
}

/**
 * Scaled dot-product attention with q, k, v as [B, L, H*Dh] (heads packed in the last axis),
 * returning [B, Lq, H*Dh]. com.microsoft.MultiHeadAttention runs fused on CPU, CUDA and WebGPU.
 */
export function attention(g: Graph, q: Value, k: Value, v: Value, heads: number, opts: AttentionOptions = {}): Value {
  if (opts.form === 'nbits' && g.contribOps) return attentionNBits(g, q, k, v, heads, opts);
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
 * Attention whose two products run on the WebGPU provider's tensor-core kernel, which onnxruntime
 * 1.30 has only for MatMulNBits on NVIDIA (its float16 MatMul stays at ≈ 31 TFLOP/s there): per
 * head, softmax(q·kᵀ) as MatMulNBits(q, k in 8-bit blocks of 32 along the head's channels), then
 * · v as MatMulNBits(p, vᵀ in 8-bit blocks of 32 along the tokens). k and v are quantized in the
 * graph, symmetric absmax per block as the Linears' weights (quant.ts): block / scale rounded by a
 * per-tensor QuantizeLinear (scale 1, zero point 128). q and p stay float16. The kernel takes one
 * 2-D A (no batch), so the heads are separate nodes; the sequence length is an attribute.
 * q, k, v [1, L, H*Dh] → [1, L, H*Dh]
 */
function attentionNBits(g: Graph, q: Value, k: Value, v: Value, heads: number, opts: AttentionOptions): Value {
  const dh = opts.headDim;
  const L = opts.tokens;
  if (!dh || !L) throw new Error('nbits attention needs the head dim and the token count');
  if (opts.bias ?? opts.causalMask) throw new Error('nbits attention takes no logit bias');
  // Blocks of 32 (what the tensor-core kernel takes); a head narrower than that (the tiny golden
  // models' 16) in blocks of 16 along its channels.
  const BLOCK = 32;
  const kBlock = dh % BLOCK === 0 ? BLOCK : 16;
  if (dh % kBlock) throw new Error(`nbits attention: head dim ${dh} is not a multiple of 16`);
  const half = opts.half ?? false;
  const h16 = (x: number) => scalarOf(g, x, half);
  const flat = (x: Value) => g.op('Reshape', [x, g.i64([L, heads * dh])]);
  // Per-block absmax scale (never 0: an all-zero block would divide 0 by 0) and the block divided by it.
  const blocks = (x: Value) => {
    const scale = g.op('Max', [g.op('Mul', [g.op('ReduceMax', [g.op('Abs', [x]), g.i64([-1])], { keepdims: 1 }), h16(1 / 127)]), h16(1e-4)]);
    return { scaled: g.op('Div', [x, scale]), scale };
  };
  const codes = (x: Value) => g.op('QuantizeLinear', [x, h16(1), g.constant('uint8', [], Uint8Array.of(128), 'zp128')]);
  // k: [L, H, Dh/32, 32] → head-major, so each head's blocks are one contiguous [L, Dh/32, 32].
  const kb = blocks(g.op('Reshape', [flat(k), g.i64([L, heads, dh / kBlock, kBlock])]));
  const kHeads = splitHeads(g, g.op('Transpose', [kb.scaled], { perm: [1, 0, 2, 3] }), heads, 0);
  const kScales = splitHeads(g, g.op('Transpose', [kb.scale], { perm: [1, 0, 2, 3] }), heads, 0);
  // vᵀ: [H, Dh, L/32, 32] (tokens padded to whole blocks with zeros, which add nothing to p·v).
  const Lp = Math.ceil(L / BLOCK) * BLOCK;
  const vPadded = Lp === L ? flat(v) : g.op('Pad', [flat(v), g.i64([0, 0, Lp - L, 0])]);
  const vb = blocks(g.op('Transpose', [g.op('Reshape', [vPadded, g.i64([Lp / BLOCK, BLOCK, heads, dh])])], { perm: [2, 3, 0, 1] }));
  const vHeads = splitHeads(g, vb.scaled, heads, 0);
  const vScales = splitHeads(g, vb.scale, heads, 0);
  const qHeads = splitHeads(g, flat(g.op('Mul', [q, h16(opts.scale ?? 1 / Math.sqrt(dh))])), heads, 1); // [L, Dh] each
  const attrs = (n: number, kk: number, block: number) => ({ K: kk, N: n, bits: 8, block_size: block, accuracy_level: 4 });
  const outs = qHeads.map((qh, h) => {
    const kq = codes(g.op('Reshape', [kHeads[h], g.i64([L, dh / kBlock, kBlock])]));
    const logits = g.op('MatMulNBits', [qh, kq, g.op('Reshape', [kScales[h], g.i64([-1])])], attrs(L, dh, kBlock), { domain: 'com.microsoft' }); // [L, L]
    const vq = codes(g.op('Reshape', [vHeads[h], g.i64([dh, Lp / BLOCK, BLOCK])]));
    return g.op('MatMulNBits', [g.op('Softmax', [logits], { axis: -1 }), vq, g.op('Reshape', [vScales[h], g.i64([-1])])], attrs(dh, L, BLOCK), { domain: 'com.microsoft' }); // [L, Dh]
  });
  return g.op('Reshape', [joinPieces(g, outs, 1), g.i64([1, L, heads * dh])]);
}

/** x cut along `axis` into `n` equal pieces, in Splits of at most MAX_PIECES outputs (see below). */
function splitHeads(g: Graph, x: Value, n: number, axis: number): Value[] {
  if (n <= MAX_PIECES) return g.opN('Split', [x], { axis, num_outputs: n }, { outputs: n });
  const groups = Math.ceil(n / MAX_PIECES);
  if (n % groups) throw new Error(`${n} pieces do not split evenly into ${groups} groups`);
  return g.opN('Split', [x], { axis, num_outputs: groups }, { outputs: groups }).flatMap((part) => splitHeads(g, part, n / groups, axis));
}

/** Concat along `axis` in levels of at most MAX_PIECES inputs. */
function joinPieces(g: Graph, pieces: Value[], axis: number): Value {
  if (pieces.length <= MAX_PIECES) return g.op('Concat', pieces, { axis });
  const groups: Value[] = [];
  for (let i = 0; i < pieces.length; i += MAX_PIECES) groups.push(joinPieces(g, pieces.slice(i, i + MAX_PIECES), axis));
  return joinPieces(g, groups, axis);
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
