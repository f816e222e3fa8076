// Element types found in Flux checkpoints and the conversions between them.
// Decoders are exact; encoders round to nearest, ties to even.

import { dequantizeGgml, GgmlQuant, isGgmlQuant } from './ggml';
import { f16ToF32 } from './half';

export { f16ToF32 };

export type DType =
  | 'F64' | 'F32' | 'F16' | 'BF16' | 'F8_E4M3' | 'F8_E5M2'
  | 'I64' | 'I32' | 'I16' | 'I8' | 'U64' | 'U32' | 'U16' | 'U8' | 'BOOL';

export const DTYPE_BYTES: Record<DType, number> = {
  F64: 8, F32: 4, F16: 2, BF16: 2, F8_E4M3: 1, F8_E5M2: 1, I64: 8, I32: 4, I16: 2, I8: 1, U64: 8, U32: 4, U16: 2, U8: 1, BOOL: 1,
};

/** A tensor's element type: safetensors' dtypes, or a GGUF file's block-quantized ggml types. */
export type TensorDType = DType | GgmlQuant;

export function isDType(s: unknown): s is DType {
  return typeof s === 'string' && Object.prototype.hasOwnProperty.call(DTYPE_BYTES, s);
}

const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);


export function f32ToF16(x: number): number {
  f32[0] = x;
  const bits = u32[0];
  const sign = (bits >>> 16) & 0x8000;
  const exp = (bits >>> 23) & 0xff;
  const mant = bits & 0x7fffff;
  if (exp === 0xff) return sign | 0x7c00 | (mant ? 0x200 : 0);
  const e = exp - 127 + 15;
  if (e >= 31) return sign | 0x7c00;
  if (e <= 0) {
    if (e < -10) return sign;
    // Subnormal half: shift the full significand, then round to nearest even.
    const m = mant | 0x800000;
    const shift = 14 - e;
    const half = m >>> shift;
    const rem = m & ((1 << shift) - 1);
    const mid = 1 << (shift - 1);
    return sign | (half + (rem > mid || (rem === mid && (half & 1)) ? 1 : 0));
  }
  let h = sign | (e << 10) | (mant >>> 13);
  const rem = mant & 0x1fff;
  if (rem > 0x1000 || (rem === 0x1000 && (h & 1))) h += 1; // may carry into the exponent: still correct
  return h;
}

export function bf16ToF32(b: number): number {
  u32[0] = b << 16;
  return f32[0];
}

export function f32ToBf16(x: number): number {
  f32[0] = x;
  const bits = u32[0];
  if ((bits & 0x7fffffff) > 0x7f800000) return (bits >>> 16) | 0x40; // quiet NaN
  return (bits + 0x7fff + ((bits >>> 16) & 1)) >>> 16;
}

// float8 e4m3fn: bias 7, no infinities, only S.1111.111 is NaN, max 448.
function decodeE4M3(b: number): number {
  const sign = b & 0x80 ? -1 : 1;
  const exp = (b >> 3) & 0xf;
  const mant = b & 7;
  if (exp === 15 && mant === 7) return NaN;
  if (exp === 0) return sign * mant * 2 ** -9;
  return sign * (1 + mant / 8) * 2 ** (exp - 7);
}

// float8 e5m2: the top byte of an IEEE half.
function decodeE5M2(b: number): number {
  return f16ToF32(b << 8);
}

export const E4M3_TO_F32 = Float32Array.from({ length: 256 }, (_, i) => decodeE4M3(i));
export const E5M2_TO_F32 = Float32Array.from({ length: 256 }, (_, i) => decodeE5M2(i));
export const E4M3_MAX = 448;

/** Round a float to float8 e4m3fn, nearest-even, saturating to ±448 (NaN stays NaN). */
export function f32ToE4M3(x: number): number {
  if (Number.isNaN(x)) return 0x7f;
  const sign = x < 0 || Object.is(x, -0) ? 0x80 : 0;
  const a = Math.min(Math.abs(x), E4M3_MAX);
  // Positive codes 0..126 are monotonic: binary-search the nearest.
  let lo = 0;
  let hi = 126;
  while (hi - lo > 1) {
    const mid = (lo + hi) >> 1;
    if (E4M3_TO_F32[mid] <= a) lo = mid; else hi = mid;
  }
  const dl = a - E4M3_TO_F32[lo];
  const dh = E4M3_TO_F32[hi] - a;
  const code = dl < dh ? lo : dh < dl ? hi : (lo & 1 ? hi : lo);
  return sign | code;
}

const LITTLE_ENDIAN = new Uint8Array(Uint16Array.of(1).buffer)[0] === 1;
let f16Table: Float32Array | undefined;

/**
 * The float dtypes through typed-array views, without DataView calls per element: weight caches
 * decode ~12·10⁹ DiT values. Only on little-endian hosts, where the views read the file's order.
 */
function fastToFloat32(bytes: Uint8Array, dtype: DType, n: number): Float32Array | undefined {
  if (!LITTLE_ENDIAN || (dtype !== 'F32' && dtype !== 'F16' && dtype !== 'BF16')) return undefined;
  const aligned = bytes.byteOffset % DTYPE_BYTES[dtype] === 0 ? bytes : bytes.slice();
  if (dtype === 'F32') return new Float32Array(aligned.buffer, aligned.byteOffset, n).slice();
  const src = new Uint16Array(aligned.buffer, aligned.byteOffset, n);
  const out = new Float32Array(n);
  if (dtype === 'BF16') {
    const o = new Uint32Array(out.buffer);
    for (let i = 0; i < n; i++) o[i] = src[i] << 16;
    return out;
  }
  const table = (f16Table ??= Float32Array.from({ length: 65536 }, (_, h) => f16ToF32(h)));
  for (let i = 0; i < n; i++) out[i] = table[src[i]];
  return out;
}

/** Decode raw little-endian tensor bytes to float32. */
export function toFloat32(bytes: Uint8Array, dtype: TensorDType): Float32Array {
  if (isGgmlQuant(dtype)) return dequantizeGgml(bytes, dtype);
  const n = bytes.byteLength / DTYPE_BYTES[dtype];
  if (!Number.isInteger(n)) throw new RangeError(`${bytes.byteLength} bytes is not a whole number of ${dtype} elements`);
  const fast = fastToFloat32(bytes, dtype, n);
  if (fast) return fast;
  const out = new Float32Array(n);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  switch (dtype) {
    case 'F32':
      for (let i = 0; i < n; i++) out[i] = view.getFloat32(i * 4, true);
      break;
    case 'F64':
      for (let i = 0; i < n; i++) out[i] = view.getFloat64(i * 8, true);
      break;
    case 'F16':
      for (let i = 0; i < n; i++) out[i] = f16ToF32(view.getUint16(i * 2, true));
      break;
    case 'BF16': {
      const o = new Uint32Array(out.buffer);
      for (let i = 0; i < n; i++) o[i] = view.getUint16(i * 2, true) << 16;
      break;
    }
    case 'F8_E4M3':
      for (let i = 0; i < n; i++) out[i] = E4M3_TO_F32[bytes[i]];
      break;
    case 'F8_E5M2':
      for (let i = 0; i < n; i++) out[i] = E5M2_TO_F32[bytes[i]];
      break;
    case 'I64':
      for (let i = 0; i < n; i++) out[i] = Number(view.getBigInt64(i * 8, true));
      break;
    case 'I32':
      for (let i = 0; i < n; i++) out[i] = view.getInt32(i * 4, true);
      break;
    case 'I16':
      for (let i = 0; i < n; i++) out[i] = view.getInt16(i * 2, true);
      break;
    case 'I8':
      for (let i = 0; i < n; i++) out[i] = view.getInt8(i);
      break;
    case 'U64':
      for (let i = 0; i < n; i++) out[i] = Number(view.getBigUint64(i * 8, true));
      break;
    case 'U32':
      for (let i = 0; i < n; i++) out[i] = view.getUint32(i * 4, true);
      break;
    case 'U16':
      for (let i = 0; i < n; i++) out[i] = view.getUint16(i * 2, true);
      break;
    case 'U8':
    case 'BOOL':
      for (let i = 0; i < n; i++) out[i] = bytes[i];
      break;
  }
  return out;
}

/** Float32 values to IEEE half bits (round to nearest even). */
export function float32ToF16Bits(src: Float32Array): Uint16Array {
  const out = new Uint16Array(src.length);
  for (let i = 0; i < src.length; i++) out[i] = f32ToF16(src[i]);
  return out;
}

/** Decode raw tensor bytes to IEEE half bits; values are rounded once, from their exact float32 value. */
export function toFloat16Bits(bytes: Uint8Array, dtype: TensorDType): Uint16Array {
  if (dtype === 'F16') {
    const out = new Uint16Array(bytes.byteLength / 2);
    new Uint8Array(out.buffer).set(bytes);
    return out;
  }
  return float32ToF16Bits(toFloat32(bytes, dtype));
}
