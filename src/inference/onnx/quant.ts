// Block quantization of Linear weights for onnxruntime's com.microsoft.MatMulNBits, the one
// 8-bit/4-bit matrix product that keeps weights at their packed size on the CPU, WebGPU and
// DirectML providers (none of which has a float8 DequantizeLinear that stays small on the GPU).
//
// Layout (MatMulNBits' contract): B is the PyTorch Linear weight [N = out, K = in] cut into blocks
// of `blockSize` along K, stored [N][blocks][blockSize·bits/8]; element j of a block sits in byte
// j (8-bit) or in the low (even j) / high (odd j) nibble of byte j/2 (4-bit). One scale per block,
// [N·blocks]. Dequantized value = (q − zero point) · scale; without a zero-point input the zero
// point is 2^(bits−1), which makes the symmetric mode need no extra tensor.

import { float32ToF16Bits, toFloat32 } from '../formats/dtypes';
import { ggmlToNBits, GgmlQuant, NATIVE_NBITS } from '../formats/ggml';

export type NBits = 4 | 8;

export interface NBitsOptions {
  bits: NBits;
  /** Elements per block along K (a power of two ≥ 16; 128 is what the GPU kernels are tuned for). */
  blockSize?: number;
  /** Asymmetric (min/max with a zero point per block) instead of symmetric (absmax). */
  zeroPoints?: boolean;
}

export interface NBitsWeight {
  n: number;
  k: number;
  bits: NBits;
  blockSize: number;
  /** [N, blocks, blockSize·bits/8] */
  data: Uint8Array;
  /** [N·blocks] */
  scales: Float32Array;
  /** Asymmetric only: [N, ceil(blocks·bits/8)], packed like the data. */
  zeroPoints?: Uint8Array;
}

export const NBITS_BLOCK = 128;

export function blocksPerRow(k: number, blockSize: number): number {
  return Math.ceil(k / blockSize);
}

/** MatMulNBits' attributes for W [n, k] in `bits`-bit blocks of `block` (accuracy_level 4: int8 activations). */
export function nbitsAttrs(n: number, k: number, bits: NBits, block: number, int8Activations: boolean): Record<string, number> {
  return { K: k, N: n, bits, block_size: block, ...(int8Activations ? { accuracy_level: 4 } : {}) };
}

/** The zero points MatMulNBits assumes without that input (2^(bits−1) per block), packed as its zero_points input. */
export function midZeroPoints(n: number, k: number, bits: NBits, block: number): Uint8Array {
  const perRow = Math.ceil((blocksPerRow(k, block) * bits) / 8);
  return new Uint8Array(n * perRow).fill(bits === 8 ? 0x80 : 0x88);
}

/** Bytes a [n, k] weight takes as MatMulNBits data + float16 scales (+ zero points). */
export function nbitsBytes(n: number, k: number, bits: NBits, blockSize = NBITS_BLOCK, zeroPoints = false): number {
  const blocks = blocksPerRow(k, blockSize);
  const zp = zeroPoints ? n * Math.ceil((blocks * bits) / 8) : 0;
  return n * blocks * ((blockSize * bits) / 8) + n * blocks * 2 + zp;
}

/**
 * Quantize a row-major [n, k] float weight. Symmetric: the block's largest-magnitude value m maps
 * to −2^(bits−1) (scale = m / −2^(bits−1), which may be negative), so all 2^bits levels are used
 * and m itself is exact. Asymmetric: [min(x, 0), max(x, 0)] spread over the levels.
 */
export function quantizeNBits(w: Float32Array, n: number, k: number, opts: NBitsOptions): NBitsWeight {
  const bits = opts.bits;
  const bs = opts.blockSize ?? 128;
  if (w.length !== n * k) throw new Error(`quantizeNBits: ${w.length} values for [${n}, ${k}]`);
  if (bs < 16 || (bs & (bs - 1)) !== 0) throw new Error(`quantizeNBits: block size ${bs} must be a power of two ≥ 16`);
  const blocks = Math.ceil(k / bs);
  const blob = (bs * bits) / 8;
  const levels = (1 << bits) - 1;
  const mid = 1 << (bits - 1);
  const data = new Uint8Array(n * blocks * blob);
  const scales = new Float32Array(n * blocks);
  const zpRow = Math.ceil((blocks * bits) / 8);
  const zeroPoints = opts.zeroPoints ? new Uint8Array(n * zpRow) : undefined;
  const q = new Uint8Array(bs);

  for (let r = 0; r < n; r++) {
    const row = r * k;
    for (let b = 0; b < blocks; b++) {
      const start = row + b * bs;
      const end = Math.min(start + bs, row + k);
      let lo = 0;
      let hi = 0;
      for (let i = start; i < end; i++) {
        const x = w[i];
        if (x < lo) lo = x;
        if (x > hi) hi = x;
      }
      let scale: number;
      let zp = mid;
      if (zeroPoints) {
        scale = Math.fround((hi - lo) / levels);
        zp = scale > 0 ? Math.min(levels, Math.max(0, Math.round(-lo / scale))) : 0;
      } else {
        scale = Math.fround((hi >= -lo ? hi : lo) / -mid);
      }
      const inv = scale !== 0 ? 1 / scale : 0;
      // floor(v + 0.5) by truncation: v + zp + 0.5 is ≥ 0 wherever the result isn't clamped to 0.
      const offset = zp + 0.5;
      for (let j = 0; j < bs; j++) {
        const i = start + j;
        const v = i < end ? (w[i] * inv + offset) | 0 : zp;
        q[j] = v < 0 ? 0 : v > levels ? levels : v;
      }
      const out = (r * blocks + b) * blob;
      if (bits === 8) data.set(q, out);
      else for (let j = 0; j < blob; j++) data[out + j] = q[2 * j] | (q[2 * j + 1] << 4);
      scales[r * blocks + b] = scale;
      if (zeroPoints) {
        if (bits === 8) zeroPoints[r * zpRow + b] = zp;
        else zeroPoints[r * zpRow + (b >> 1)] |= b & 1 ? zp << 4 : zp;
      }
    }
  }
  return { n, k, bits, blockSize: bs, data, scales, ...(zeroPoints ? { zeroPoints } : {}) };
}

/** The [n, k] weight MatMulNBits computes with (for error measurements and tests). */
export function dequantizeNBits(q: NBitsWeight): Float32Array {
  const { n, k, bits, blockSize: bs } = q;
  const blocks = blocksPerRow(k, bs);
  const blob = (bs * bits) / 8;
  const zpRow = Math.ceil((blocks * bits) / 8);
  const out = new Float32Array(n * k);
  for (let r = 0; r < n; r++) {
    for (let b = 0; b < blocks; b++) {
      const scale = q.scales[r * blocks + b];
      let zp = 1 << (bits - 1);
      if (q.zeroPoints) zp = bits === 8 ? q.zeroPoints[r * zpRow + b] : (q.zeroPoints[r * zpRow + (b >> 1)] >> (b & 1 ? 4 : 0)) & 15;
      const base = (r * blocks + b) * blob;
      for (let j = 0; j < bs && b * bs + j < k; j++) {
        const v = bits === 8 ? q.data[base + j] : (q.data[base + (j >> 1)] >> (j & 1 ? 4 : 0)) & 15;
        out[r * k + b * bs + j] = (v - zp) * scale;
      }
    }
  }
  return out;
}

/** Source dtypes a quantization job can start from. */
export type FloatDType = 'F32' | 'F16' | 'BF16' | 'F8_E4M3' | 'F8_E5M2';

export interface QuantJob {
  /** MatMulNBits blocks (default), or the float16 bits of the transpose [k, n]. */
  target?: 'nbits' | 'f16';
  bytes: Uint8Array;
  /** A GGUF block-quantized type is decoded exactly, or mapped bit for bit (Q8_0, Q4_0; see runQuantJob). */
  dtype: FloatDType | GgmlQuant;
  n: number;
  k: number;
  opts: NBitsOptions;
  /** Dequantization scale of an fp8 source, per tensor (1 value) or per row. */
  scale?: Float32Array;
}

/** One weight's conversion, the same code on this thread and on QuantPool's workers. */
export function runQuantJob(job: QuantJob & { target: 'f16' }): Uint16Array;
export function runQuantJob(job: QuantJob & { target?: 'nbits' }): NBitsWeight;
export function runQuantJob(job: QuantJob): NBitsWeight | Uint16Array;
export function runQuantJob(job: QuantJob): NBitsWeight | Uint16Array {
  const native = NATIVE_NBITS[job.dtype as GgmlQuant];
  if (job.target !== 'f16' && native === job.opts.bits && job.opts.blockSize === 32 && !job.opts.zeroPoints && !job.scale) {
    // Q8_0 / Q4_0 rows are MatMulNBits blocks of 32 already: moved, never rounded.
    const { data, scales } = ggmlToNBits(job.bytes, job.dtype as 'Q8_0' | 'Q4_0');
    return { n: job.n, k: job.k, bits: native, blockSize: 32, data, scales };
  }
  const x = scaled(toFloat32(job.bytes, job.dtype), job.scale, job.n);
  return job.target === 'f16' ? float32ToF16Bits(transposed(x, job.n, job.k)) : quantizeNBits(x, job.n, job.k, job.opts);
}

/** x with row r multiplied by scale[r] (or all by scale[0]); x itself when there is no scale. In place. */
export function scaled(x: Float32Array, scale: Float32Array | undefined, rows: number): Float32Array {
  if (!scale) return x;
  const cols = x.length / rows;
  for (let r = 0; r < rows; r++) {
    const s = scale.length > 1 ? scale[r] : scale[0];
    for (let i = r * cols, end = i + cols; i < end; i++) x[i] *= s;
  }
  return x;
}

/** A row-major [rows, cols] matrix as [cols, rows]. */
export function transposed(x: Float32Array, rows: number, cols: number): Float32Array {
  const out = new Float32Array(x.length);
  // 64-wide tiles keep both sides in cache.
  for (let r0 = 0; r0 < rows; r0 += 64) {
    for (let c0 = 0; c0 < cols; c0 += 64) {
      const r1 = Math.min(r0 + 64, rows);
      const c1 = Math.min(c0 + 64, cols);
      for (let r = r0; r < r1; r++) for (let c = c0; c < c1; c++) out[c * rows + r] = x[r * cols + c];
    }
  }
  return out;
}
