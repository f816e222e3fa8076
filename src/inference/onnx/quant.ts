// Block quantization of Linear weights for onnxruntime's com.microsoft.MatMulNBits, the one
// 8-bit/4-bit matrix product that keeps weights at their packed size on the CPU, WebGPU and
// DirectML providers (none of which has a float8 DequantizeLinear that stays small on the GPU).
//
// Layout (MatMulNBits' contract): B is the PyTorch Linear weight [N = out, K = in] cut into blocks
// of `blockSize` along K, stored [N][blocks][blockSize·bits/8]; element j of a block sits in byte
// j (8-bit) or in the low (even j) / high (odd j) nibble of byte j/2 (4-bit). One scale per block,
// [N·blocks]. Dequantized value = (q − zero point) · scale; without a zero-point input the zero
// point is 2^(bits−1), which makes the symmetric mode need no extra tensor.

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
 *
 * Self-contained (no outer references): QuantPool ships its source to worker threads.
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

/**
 * Raw little-endian float tensor bytes to float32 (same values as dtypes.toFloat32).
 * Self-contained, like quantizeNBits, so that worker threads can run it.
 */
export function decodeToF32(bytes: Uint8Array, dtype: FloatDType): Float32Array {
  const size = dtype === 'F32' ? 4 : dtype === 'F16' || dtype === 'BF16' ? 2 : 1;
  const n = bytes.byteLength / size;
  const aligned = bytes.byteOffset % size === 0 ? bytes : bytes.slice();
  if (dtype === 'F32') return new Float32Array(aligned.buffer, aligned.byteOffset, n).slice();
  const out = new Float32Array(n);
  if (dtype === 'BF16') {
    const src = new Uint16Array(aligned.buffer, aligned.byteOffset, n);
    const o = new Uint32Array(out.buffer);
    for (let i = 0; i < n; i++) o[i] = src[i] << 16;
    return out;
  }
  const table = new Float32Array(dtype === 'F16' ? 65536 : 256);
  for (let c = 0; c < table.length; c++) {
    const [eBits, mBits] = dtype === 'F16' ? [5, 10] : dtype === 'F8_E4M3' ? [4, 3] : [5, 2];
    const bias = (1 << (eBits - 1)) - 1;
    const sign = c >> (eBits + mBits) ? -1 : 1;
    const e = (c >> mBits) & ((1 << eBits) - 1);
    const m = c & ((1 << mBits) - 1);
    const eMax = (1 << eBits) - 1;
    let v: number;
    if (dtype === 'F8_E4M3' && e === eMax && m === (1 << mBits) - 1) v = NaN; // e4m3fn: no infinities
    else if (dtype !== 'F8_E4M3' && e === eMax) v = m ? NaN : Infinity;
    else if (e === 0) v = (m / (1 << mBits)) * 2 ** (1 - bias);
    else v = (1 + m / (1 << mBits)) * 2 ** (e - bias);
    table[c] = sign * v;
  }
  if (dtype === 'F16') {
    const src = new Uint16Array(aligned.buffer, aligned.byteOffset, n);
    for (let i = 0; i < n; i++) out[i] = table[src[i]];
  } else {
    for (let i = 0; i < n; i++) out[i] = table[bytes[i]];
  }
  return out;
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

/** float32 → IEEE half bits, round to nearest even (as dtypes.float32ToF16Bits; self-contained for workers). */
export function f32ToF16Bits(x: Float32Array): Uint16Array {
  const bits = new Uint32Array(x.buffer, x.byteOffset, x.length);
  const out = new Uint16Array(x.length);
  for (let i = 0; i < x.length; i++) {
    const b = bits[i];
    const sign = (b >>> 16) & 0x8000;
    const e = (b >>> 23) & 0xff;
    const m = b & 0x7fffff;
    let he = e - 112;
    if (e === 0xff) {
      out[i] = sign | 0x7c00 | (m ? 0x200 : 0);
    } else if (he >= 0x1f) {
      out[i] = sign | 0x7c00;
    } else if (he <= 0) {
      // Subnormal half: value = hm · 2^-24 with hm = (1.m · 2^23) >> (14 − he).
      if (he < -10) {
        out[i] = sign;
        continue;
      }
      const full = m | 0x800000;
      const shift = 14 - he;
      let hm = full >>> shift;
      const rem = full & ((1 << shift) - 1);
      const half = 1 << (shift - 1);
      if (rem > half || (rem === half && hm & 1)) hm++;
      out[i] = sign | hm;
    } else {
      let hm = m >>> 13;
      const rem = m & 0x1fff;
      if (rem > 0x1000 || (rem === 0x1000 && hm & 1)) {
        hm++;
        if (hm === 0x400) {
          hm = 0;
          he++;
        }
      }
      out[i] = he >= 0x1f ? sign | 0x7c00 : sign | (he << 10) | hm;
    }
  }
  return out;
}

/** A row-major [rows, cols] matrix as [cols, rows] (self-contained for workers). */
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
