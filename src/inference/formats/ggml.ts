// ggml's block-quantized element types, as GGUF files store them: the type table (the ids are
// GGUF's, the block sizes ggml's), exact decoders to float32 for the types FLUX GGUFs use, and
// the bit-level mapping of Q8_0 and Q4_0 onto MatMulNBits blocks of 32 (quant.ts's layout).
//
// Every block is a row-local run of elements along the innermost dimension (a Linear's K), so a
// row of a quantized [N, K] tensor is K/block blocks: contiguous, like a row of a float tensor.
// Arithmetic is float32 step by step (Math.fround after each operation, which rounds like a
// float32 operation: double rounding is harmless for +, −, ×), in ggml's order of operations.

import { f16ToF32 } from './half';

export type GgmlQuant =
  | 'Q4_0' | 'Q4_1' | 'Q5_0' | 'Q5_1' | 'Q8_0' | 'Q8_1'
  | 'Q2_K' | 'Q3_K' | 'Q4_K' | 'Q5_K' | 'Q6_K' | 'Q8_K'
  | 'IQ2_XXS' | 'IQ2_XS' | 'IQ3_XXS' | 'IQ1_S' | 'IQ4_NL' | 'IQ3_S' | 'IQ2_S' | 'IQ4_XS' | 'IQ1_M' | 'TQ1_0' | 'TQ2_0';

/** Elements per block and bytes per block. */
export const GGML_QUANT_BLOCKS: Record<GgmlQuant, { block: number; bytes: number }> = {
  Q4_0: { block: 32, bytes: 18 }, Q4_1: { block: 32, bytes: 20 }, Q5_0: { block: 32, bytes: 22 }, Q5_1: { block: 32, bytes: 24 },
  Q8_0: { block: 32, bytes: 34 }, Q8_1: { block: 32, bytes: 36 },
  Q2_K: { block: 256, bytes: 84 }, Q3_K: { block: 256, bytes: 110 }, Q4_K: { block: 256, bytes: 144 }, Q5_K: { block: 256, bytes: 176 },
  Q6_K: { block: 256, bytes: 210 }, Q8_K: { block: 256, bytes: 292 },
  IQ2_XXS: { block: 256, bytes: 66 }, IQ2_XS: { block: 256, bytes: 74 }, IQ3_XXS: { block: 256, bytes: 98 }, IQ1_S: { block: 256, bytes: 50 },
  IQ4_NL: { block: 32, bytes: 18 }, IQ3_S: { block: 256, bytes: 110 }, IQ2_S: { block: 256, bytes: 82 }, IQ4_XS: { block: 256, bytes: 136 },
  IQ1_M: { block: 256, bytes: 56 }, TQ1_0: { block: 256, bytes: 54 }, TQ2_0: { block: 256, bytes: 66 },
};

export function isGgmlQuant(dtype: string): dtype is GgmlQuant {
  return Object.prototype.hasOwnProperty.call(GGML_QUANT_BLOCKS, dtype);
}

/** Bytes of `elements` elements of a quantized type (its count must be whole blocks). */
export function ggmlQuantBytes(dtype: GgmlQuant, elements: number): number {
  const { block, bytes } = GGML_QUANT_BLOCKS[dtype];
  return (elements / block) * bytes;
}

type Decoder = (b: Uint8Array, at: number, y: Float32Array, out: number) => void;

const fr = Math.fround;
const half = (b: Uint8Array, at: number) => f16ToF32(b[at] | (b[at + 1] << 8));
const u32 = (b: Uint8Array, at: number) => (b[at] | (b[at + 1] << 8) | (b[at + 2] << 16) | (b[at + 3] << 24)) >>> 0;

/** ggml's decoders, one block each: block bytes at b[at…], 32 or 256 values into y[out…]. */
const DECODERS: Partial<Record<GgmlQuant, Decoder>> = {
  Q8_0: (b, at, y, out) => {
    const d = half(b, at);
    for (let j = 0; j < 32; j++) y[out + j] = fr(((b[at + 2 + j] << 24) >> 24) * d);
  },
  Q4_0: (b, at, y, out) => {
    const d = half(b, at);
    for (let j = 0; j < 16; j++) {
      const q = b[at + 2 + j];
      y[out + j] = fr(((q & 15) - 8) * d);
      y[out + j + 16] = fr(((q >> 4) - 8) * d);
    }
  },
  Q4_1: (b, at, y, out) => {
    const d = half(b, at);
    const m = half(b, at + 2);
    for (let j = 0; j < 16; j++) {
      const q = b[at + 4 + j];
      y[out + j] = fr(fr((q & 15) * d) + m);
      y[out + j + 16] = fr(fr((q >> 4) * d) + m);
    }
  },
  Q5_0: (b, at, y, out) => {
    const d = half(b, at);
    const qh = u32(b, at + 2);
    for (let j = 0; j < 16; j++) {
      const q = b[at + 6 + j];
      y[out + j] = fr((((q & 15) | (((qh >>> j) << 4) & 0x10)) - 16) * d);
      y[out + j + 16] = fr((((q >> 4) | ((qh >>> (j + 12)) & 0x10)) - 16) * d);
    }
  },
  Q5_1: (b, at, y, out) => {
    const d = half(b, at);
    const m = half(b, at + 2);
    const qh = u32(b, at + 4);
    for (let j = 0; j < 16; j++) {
      const q = b[at + 8 + j];
      y[out + j] = fr(fr(((q & 15) | (((qh >>> j) << 4) & 0x10)) * d) + m);
      y[out + j + 16] = fr(fr(((q >> 4) | ((qh >>> (j + 12)) & 0x10)) * d) + m);
    }
  },
  Q2_K: (b, at, y, out) => {
    // scales[16], qs[64], d, dmin
    const d = half(b, at + 80);
    const dmin = half(b, at + 82);
    let is = 0;
    for (let n = 0, q = at + 16; n < 256; n += 128, q += 32) {
      for (let shift = 0; shift < 8; shift += 2) {
        for (const off of [0, 16]) {
          const sc = b[at + is++];
          const dl = fr(d * (sc & 15));
          const ml = fr(dmin * (sc >> 4));
          for (let l = 0; l < 16; l++) y[out++] = fr(fr(dl * ((b[q + off + l] >> shift) & 3)) - ml);
        }
      }
    }
  },
  Q3_K: (b, at, y, out) => {
    // hmask[32], qs[64], scales[12], d
    const d = half(b, at + 108);
    const sc = k3Scales(b, at + 96);
    let is = 0;
    let m = 1;
    for (let n = 0, q = at + 32; n < 256; n += 128, q += 32) {
      for (let shift = 0; shift < 8; shift += 2, m <<= 1) {
        for (const off of [0, 16]) {
          const dl = fr(d * (sc[is++] - 32));
          for (let l = 0; l < 16; l++) {
            const v = ((b[q + off + l] >> shift) & 3) - (b[at + off + l] & m ? 0 : 4);
            y[out++] = fr(dl * v);
          }
        }
      }
    }
  },
  Q4_K: (b, at, y, out) => {
    // d, dmin, scales[12], qs[128]
    const d = half(b, at);
    const dmin = half(b, at + 2);
    for (let j = 0, is = 0, q = at + 16; j < 256; j += 64, is += 2, q += 32) {
      const [s1, m1] = scaleMinK4(b, at + 4, is);
      const [s2, m2] = scaleMinK4(b, at + 4, is + 1);
      const d1 = fr(d * s1), n1 = fr(dmin * m1), d2 = fr(d * s2), n2 = fr(dmin * m2);
      for (let l = 0; l < 32; l++) y[out++] = fr(fr(d1 * (b[q + l] & 15)) - n1);
      for (let l = 0; l < 32; l++) y[out++] = fr(fr(d2 * (b[q + l] >> 4)) - n2);
    }
  },
  Q5_K: (b, at, y, out) => {
    // d, dmin, scales[12], qh[32], qs[128]
    const d = half(b, at);
    const dmin = half(b, at + 2);
    let u1 = 1;
    let u2 = 2;
    for (let j = 0, is = 0, q = at + 48; j < 256; j += 64, is += 2, q += 32, u1 <<= 2, u2 <<= 2) {
      const [s1, m1] = scaleMinK4(b, at + 4, is);
      const [s2, m2] = scaleMinK4(b, at + 4, is + 1);
      const d1 = fr(d * s1), n1 = fr(dmin * m1), d2 = fr(d * s2), n2 = fr(dmin * m2);
      for (let l = 0; l < 32; l++) y[out++] = fr(fr(d1 * ((b[q + l] & 15) + (b[at + 16 + l] & u1 ? 16 : 0))) - n1);
      for (let l = 0; l < 32; l++) y[out++] = fr(fr(d2 * ((b[q + l] >> 4) + (b[at + 16 + l] & u2 ? 16 : 0))) - n2);
    }
  },
  Q6_K: (b, at, y, out) => {
    // ql[128], qh[64], scales[16] (int8), d
    const d = half(b, at + 208);
    for (let n = 0, ql = at, qh = at + 128, sc = at + 192; n < 256; n += 128, ql += 64, qh += 32, sc += 8, out += 128) {
      for (let l = 0; l < 32; l++) {
        const is = l >> 4;
        const h = b[qh + l];
        const q1 = ((b[ql + l] & 15) | ((h & 3) << 4)) - 32;
        const q2 = ((b[ql + l + 32] & 15) | (((h >> 2) & 3) << 4)) - 32;
        const q3 = ((b[ql + l] >> 4) | (((h >> 4) & 3) << 4)) - 32;
        const q4 = ((b[ql + l + 32] >> 4) | (((h >> 6) & 3) << 4)) - 32;
        const s = (i: number) => fr(d * ((b[sc + is + i] << 24) >> 24));
        y[out + l] = fr(s(0) * q1);
        y[out + l + 32] = fr(s(2) * q2);
        y[out + l + 64] = fr(s(4) * q3);
        y[out + l + 96] = fr(s(6) * q4);
      }
    }
  },
};

/** ggml's get_scale_min_k4: the 6-bit scale and min of sub-block j from the 12 packed bytes at `s`. */
function scaleMinK4(b: Uint8Array, s: number, j: number): [number, number] {
  if (j < 4) return [b[s + j] & 63, b[s + j + 4] & 63];
  return [(b[s + j + 4] & 15) | ((b[s + j - 4] >> 6) << 4), (b[s + j + 4] >> 4) | ((b[s + j] >> 6) << 4)];
}

/** Q3_K's sixteen 6-bit scales from its 12 packed bytes (ggml's kmask1/kmask2 shuffle). */
function k3Scales(b: Uint8Array, s: number): Int8Array {
  const a0 = u32(b, s), a1 = u32(b, s + 4), tmp = u32(b, s + 8);
  const k1 = 0x03030303, k2 = 0x0f0f0f0f;
  const aux = Uint32Array.of(
    (a0 & k2) | (((tmp >>> 0) & k1) << 4),
    (a1 & k2) | (((tmp >>> 2) & k1) << 4),
    ((a0 >>> 4) & k2) | (((tmp >>> 4) & k1) << 4),
    ((a1 >>> 4) & k2) | (((tmp >>> 6) & k1) << 4),
  );
  return new Int8Array(aux.buffer);
}

/** Types with a decoder here; the others are refused by name when a tensor of theirs is read. */
export function canDecode(dtype: GgmlQuant): boolean {
  return DECODERS[dtype] !== undefined;
}

export const DECODABLE = (Object.keys(DECODERS) as GgmlQuant[]);

/** The float32 values of a quantized tensor's bytes (whole blocks), exactly as ggml decodes them. */
export function dequantizeGgml(bytes: Uint8Array, dtype: GgmlQuant): Float32Array {
  const decode = DECODERS[dtype];
  if (!decode) throw new Error(`GGUF type ${dtype} is not supported (supported: F32, F16, BF16, ${DECODABLE.join(', ')}); convert the file with a supported quantization`);
  const { block, bytes: per } = GGML_QUANT_BLOCKS[dtype];
  if (bytes.byteLength % per !== 0) throw new Error(`${dtype}: ${bytes.byteLength} bytes are not whole ${per}-byte blocks`);
  const blocks = bytes.byteLength / per;
  const y = new Float32Array(blocks * block);
  for (let i = 0; i < blocks; i++) decode(bytes, i * per, y, i * block);
  return y;
}

/** The quantized types whose blocks are MatMulNBits blocks of 32 bit for bit (after repacking). */
export const NATIVE_NBITS: Partial<Record<GgmlQuant, 4 | 8>> = { Q8_0: 8, Q4_0: 4 };

/**
 * Q8_0 / Q4_0 rows as MatMulNBits data and scales, block 32, symmetric (the op's default zero
 * point): no value changes. Q8_0: int8 q → uint8 q + 128 (zero point 128), value (u − 128)·d = q·d.
 * Q4_0 stores element j in the low nibble of byte j and element j + 16 in its high nibble;
 * MatMulNBits wants elements 2i, 2i + 1 in byte i's low, high nibbles: same codes (zero point 8), moved.
 */
export function ggmlToNBits(bytes: Uint8Array, dtype: 'Q8_0' | 'Q4_0'): { data: Uint8Array; scales: Float32Array } {
  const per = GGML_QUANT_BLOCKS[dtype].bytes;
  const blocks = bytes.byteLength / per;
  if (!Number.isInteger(blocks)) throw new Error(`${dtype}: ${bytes.byteLength} bytes are not whole ${per}-byte blocks`);
  const blob = dtype === 'Q8_0' ? 32 : 16;
  const data = new Uint8Array(blocks * blob);
  const scales = new Float32Array(blocks);
  const codes = new Uint8Array(32);
  for (let i = 0; i < blocks; i++) {
    const at = i * per;
    scales[i] = half(bytes, at);
    const o = i * blob;
    if (dtype === 'Q8_0') {
      for (let j = 0; j < 32; j++) data[o + j] = bytes[at + 2 + j] ^ 0x80;
    } else {
      for (let j = 0; j < 16; j++) {
        codes[j] = bytes[at + 2 + j] & 15;
        codes[j + 16] = bytes[at + 2 + j] >> 4;
      }
      for (let j = 0; j < 16; j++) data[o + j] = codes[2 * j] | (codes[2 * j + 1] << 4);
    }
  }
  return { data, scales };
}
