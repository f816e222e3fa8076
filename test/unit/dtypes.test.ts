import * as assert from 'node:assert/strict';
import {
  bf16ToF32, DTYPE_BYTES, E4M3_MAX, E4M3_TO_F32, E5M2_TO_F32, f16ToF32, f32ToBf16, f32ToE4M3, f32ToF16,
  DType, float32ToF16Bits, isDType, toFloat16Bits, toFloat32,
} from '../../src/inference/formats/dtypes';

// Reference decoders written from the format definitions, building float32 bit patterns directly
// rather than with the arithmetic the implementation uses.
const scratch = new DataView(new ArrayBuffer(4));
function fromBits(bits: number): number {
  scratch.setUint32(0, bits >>> 0);
  return scratch.getFloat32(0);
}
function bitsOf(x: number): number {
  scratch.setFloat32(0, x);
  return scratch.getUint32(0);
}

/** float8 e4m3fn: 1 sign, 4 exponent (bias 7), 3 mantissa; no infinities; S.1111.111 is NaN. */
function refE4M3(code: number): number {
  const sign = code >> 7;
  const e = (code >> 3) & 0xf;
  const m = code & 7;
  if (e === 0xf && m === 7) return NaN;
  if (e === 0) return (sign ? -1 : 1) * m / 512; // subnormals: multiples of 2^-9
  return fromBits((sign << 31) | ((e - 7 + 127) << 23) | (m << 20));
}

/** float8 e5m2: 1 sign, 5 exponent (bias 15), 2 mantissa, IEEE infinities and NaNs. */
function refE5M2(code: number): number {
  const sign = code >> 7;
  const e = (code >> 2) & 0x1f;
  const m = code & 3;
  if (e === 0x1f) return m ? NaN : sign ? -Infinity : Infinity;
  if (e === 0) return (sign ? -1 : 1) * m / 65536; // subnormals: multiples of 2^-16
  return fromBits((sign << 31) | ((e - 15 + 127) << 23) | (m << 21));
}

function refF16(h: number): number {
  const sign = h >> 15;
  const e = (h >> 10) & 0x1f;
  const m = h & 0x3ff;
  if (e === 0x1f) return m ? NaN : sign ? -Infinity : Infinity;
  if (e === 0) return (sign ? -1 : 1) * m / 2 ** 24;
  return fromBits((sign << 31) | ((e - 15 + 127) << 23) | (m << 13));
}

/**
 * Reference round-to-nearest-even onto a format, given its positive finite values in increasing
 * order with their codes (sign bit clear) and the magnitude from which results overflow.
 */
function makeRounder(values: Array<[number, number]>, overflowFrom: number, onOverflow: number, signBit: number) {
  return (x: number): number => {
    const sign = x < 0 || Object.is(x, -0) ? signBit : 0;
    const a = Math.abs(x);
    if (a >= overflowFrom) return sign | onOverflow;
    let lo = 0;
    let hi = values.length - 1;
    while (hi - lo > 1) {
      const mid = (lo + hi) >> 1;
      if (values[mid][0] <= a) lo = mid; else hi = mid;
    }
    if (a >= values[hi][0]) return sign | values[hi][1];
    const dl = a - values[lo][0];
    const dh = values[hi][0] - a;
    const pick = dl < dh ? lo : dh < dl ? hi : values[lo][1] % 2 === 0 ? lo : hi;
    return sign | values[pick][1];
  };
}

const halfValues: Array<[number, number]> = [];
for (let h = 0; h < 0x7c00; h++) halfValues.push([refF16(h), h]);
const refToF16 = makeRounder(halfValues, 65520, 0x7c00, 0x8000); // 65520 = 65504 + half an ulp

const bf16Values: Array<[number, number]> = [];
for (let b = 0; b < 0x7f80; b++) bf16Values.push([fromBits(b << 16), b]);
const BF16_OVERFLOW = fromBits(0x7f7f8000); // halfway between bf16 max and 2^128
const refToBf16 = makeRounder(bf16Values, BF16_OVERFLOW, 0x7f80, 0x8000);

const e4m3Values: Array<[number, number]> = [];
for (let c = 0; c <= 0x7e; c++) e4m3Values.push([refE4M3(c), c]);
const refToE4M3 = makeRounder(e4m3Values, Infinity, 0, 0x80);

/** Deterministic pseudo-random 32-bit patterns. */
function* randomBits(count: number, seed = 12345): Generator<number> {
  let s = seed >>> 0;
  for (let i = 0; i < count; i++) {
    s ^= s << 13; s >>>= 0;
    s ^= s >>> 17;
    s ^= s << 5; s >>>= 0;
    yield s;
  }
}

function sameFloat(actual: number, expected: number, what: string): void {
  if (Number.isNaN(expected)) assert.ok(Number.isNaN(actual), `${what}: expected NaN, got ${actual}`);
  else assert.ok(Object.is(actual, expected), `${what}: expected ${expected}, got ${actual}`);
}

const hex = (n: number, w = 4) => `0x${n.toString(16).padStart(w, '0')}`;

describe('dtypes', () => {
  it('reads every safetensors dtype it accepts at its own element size, little-endian', () => {
    // [1, 2, -3] (or [1, 2, 3] unsigned; BOOL [1, 0, 1]) written with Buffer's writers and the
    // formats' own bit patterns, not with this module: its element sizes must agree with them.
    const three = (size: number, put: (b: Buffer, v: number, at: number) => void, values = [1, 2, -3]) => {
      const b = Buffer.alloc(3 * size);
      values.forEach((v, i) => put(b, v, i * size));
      return b;
    };
    const cases: [DType, Buffer, number[]][] = [
      ['F64', three(8, (b, v, o) => b.writeDoubleLE(v, o)), [1, 2, -3]],
      ['F32', three(4, (b, v, o) => b.writeFloatLE(v, o)), [1, 2, -3]],
      ['F16', Buffer.from([0x00, 0x3c, 0x00, 0x40, 0x00, 0xc2]), [1, 2, -3]],
      ['BF16', Buffer.from([0x80, 0x3f, 0x00, 0x40, 0x40, 0xc0]), [1, 2, -3]],
      ['F8_E4M3', Buffer.from([0x38, 0x40, 0xc4]), [1, 2, -3]],
      ['F8_E5M2', Buffer.from([0x3c, 0x40, 0xc2]), [1, 2, -3]],
      ['I64', three(8, (b, v, o) => b.writeBigInt64LE(BigInt(v), o)), [1, 2, -3]],
      ['I32', three(4, (b, v, o) => b.writeInt32LE(v, o)), [1, 2, -3]],
      ['I16', three(2, (b, v, o) => b.writeInt16LE(v, o)), [1, 2, -3]],
      ['I8', three(1, (b, v, o) => b.writeInt8(v, o)), [1, 2, -3]],
      ['U64', three(8, (b, v, o) => b.writeBigUInt64LE(BigInt(v), o), [1, 2, 3]), [1, 2, 3]],
      ['U32', three(4, (b, v, o) => b.writeUInt32LE(v, o), [1, 2, 3]), [1, 2, 3]],
      ['U16', three(2, (b, v, o) => b.writeUInt16LE(v, o), [1, 2, 3]), [1, 2, 3]],
      ['U8', Buffer.from([1, 2, 3]), [1, 2, 3]],
      ['BOOL', Buffer.from([1, 0, 1]), [1, 0, 1]],
    ];
    assert.deepEqual(cases.map(([d]) => d).sort(), Object.keys(DTYPE_BYTES).sort(), 'every dtype is covered');
    for (const [dtype, bytes, values] of cases) {
      assert.deepEqual([...toFloat32(new Uint8Array(bytes), dtype)], values, dtype);
      if (bytes.length > 3) assert.throws(() => toFloat32(new Uint8Array(bytes.subarray(0, bytes.length - 1)), dtype), RangeError, `${dtype}: a partial element`);
    }
    assert.ok(isDType('BF16'));
    assert.ok(!isDType('F8_E4M3FNUZ'));
    assert.ok(!isDType('toString'));
    assert.ok(!isDType(undefined));
  });

  describe('float8 e4m3fn', () => {
    it('decodes all 256 codes bit-exactly', () => {
      for (let c = 0; c < 256; c++) sameFloat(E4M3_TO_F32[c], Math.fround(refE4M3(c)), `code ${hex(c, 2)}`);
    });

    it('has NaN only at 0x7F and 0xFF, max 448, subnormals in steps of 2^-9', () => {
      const nans = [...E4M3_TO_F32.keys()].filter((c) => Number.isNaN(E4M3_TO_F32[c]));
      assert.deepEqual(nans, [0x7f, 0xff]);
      assert.ok(![...E4M3_TO_F32].some((v) => !Number.isFinite(v) && !Number.isNaN(v)), 'no infinities');
      assert.equal(E4M3_TO_F32[0x7e], 448);
      assert.equal(E4M3_TO_F32[0xfe], -448);
      assert.equal(E4M3_MAX, Math.max(...E4M3_TO_F32.filter(Number.isFinite)), 'E4M3_MAX is the largest finite code');
      for (let m = 0; m < 8; m++) assert.equal(E4M3_TO_F32[m], m * 2 ** -9);
      assert.equal(E4M3_TO_F32[0x08], 2 ** -6); // smallest normal
      assert.equal(E4M3_TO_F32[0x38], 1);
      assert.ok(Object.is(E4M3_TO_F32[0x80], -0));
      for (let c = 1; c <= 0x7e; c++) assert.ok(E4M3_TO_F32[c] > E4M3_TO_F32[c - 1], `monotonic at ${hex(c, 2)}`);
    });

    it('round-trips every finite code through f32ToE4M3', () => {
      for (let c = 0; c < 256; c++) {
        if (c === 0x7f || c === 0xff) continue;
        assert.equal(f32ToE4M3(E4M3_TO_F32[c]), c, `code ${hex(c, 2)}`);
      }
    });

    it('rounds to nearest with ties to even, including subnormal ties', () => {
      for (let c = 0; c < 0x7e; c++) {
        const lo = E4M3_TO_F32[c];
        const hi = E4M3_TO_F32[c + 1];
        const mid = (lo + hi) / 2;
        const even = c % 2 === 0 ? c : c + 1;
        assert.equal(f32ToE4M3(mid), even, `tie between ${hex(c, 2)} and ${hex(c + 1, 2)}`);
        assert.equal(f32ToE4M3(-mid), 0x80 | even, `negative tie ${hex(c, 2)}`);
        const below = mid - (hi - lo) / 64;
        const above = mid + (hi - lo) / 64;
        assert.equal(f32ToE4M3(below), c);
        assert.equal(f32ToE4M3(above), c + 1);
      }
      assert.equal(f32ToE4M3(2 ** -10), 0); // half the smallest subnormal: tie to 0
      assert.equal(f32ToE4M3(3 * 2 ** -10), 2); // between 1 and 2 (×2^-9): tie to even 2
      assert.equal(f32ToE4M3(2 ** -11), 0);
    });

    it('saturates to ±448 (also for infinities) and keeps NaN', () => {
      for (const x of [448, 449, 463.9, 464, 480, 1e6, 3.4e38, Infinity]) {
        assert.equal(f32ToE4M3(x), 0x7e, String(x));
        assert.equal(f32ToE4M3(-x), 0xfe, String(-x));
      }
      assert.ok(Number.isNaN(E4M3_TO_F32[f32ToE4M3(NaN)]));
      assert.equal(f32ToE4M3(-0), 0x80);
      assert.equal(f32ToE4M3(0), 0x00);
    });

    it('matches the reference rounding on random float32 values', () => {
      for (const bits of randomBits(50000)) {
        // Bias exponents into and around the e4m3 range.
        const x = fromBits((bits & 0x807fffff) | ((((bits >>> 23) & 0x1f) + 108) << 23));
        assert.equal(f32ToE4M3(x), refToE4M3(x), `x = ${x} (${hex(bitsOf(x), 8)})`);
      }
    });
  });

  describe('float8 e5m2', () => {
    it('decodes all 256 codes bit-exactly, with infinities and NaNs', () => {
      for (let c = 0; c < 256; c++) sameFloat(E5M2_TO_F32[c], Math.fround(refE5M2(c)), `code ${hex(c, 2)}`);
      assert.equal(E5M2_TO_F32[0x7c], Infinity);
      assert.equal(E5M2_TO_F32[0xfc], -Infinity);
      assert.equal(E5M2_TO_F32[0x7b], 57344);
      assert.equal(E5M2_TO_F32[0x01], 2 ** -16);
      const nans = [...E5M2_TO_F32.keys()].filter((c) => Number.isNaN(E5M2_TO_F32[c]));
      assert.deepEqual(nans, [0x7d, 0x7e, 0x7f, 0xfd, 0xfe, 0xff]);
    });
  });

  describe('float16', () => {
    it('decodes all 65536 codes bit-exactly', () => {
      for (let h = 0; h < 65536; h++) sameFloat(f16ToF32(h), refF16(h), `half ${hex(h)}`);
    });

    it('round-trips every half through f32ToF16 (NaN stays NaN)', () => {
      for (let h = 0; h < 65536; h++) {
        const back = f32ToF16(f16ToF32(h));
        if ((h & 0x7c00) === 0x7c00 && h & 0x3ff) assert.ok((back & 0x7c00) === 0x7c00 && (back & 0x3ff) !== 0, `NaN ${hex(h)} → ${hex(back)}`);
        else assert.equal(back, h, `half ${hex(h)}`);
      }
    });

    it('rounds ties to even across the normal and subnormal ranges', () => {
      for (let h = 0; h < 0x7bff; h++) {
        const mid = (refF16(h) + refF16(h + 1)) / 2; // exact in float32: one more mantissa bit
        assert.equal(Math.fround(mid), mid);
        const even = h % 2 === 0 ? h : h + 1;
        assert.equal(f32ToF16(mid), even, `tie between ${hex(h)} and ${hex(h + 1)}`);
        assert.equal(f32ToF16(-mid), 0x8000 | even);
        // One float32 ulp either side of the tie.
        assert.equal(f32ToF16(fromBits(bitsOf(mid) - 1)), h, `just below tie ${hex(h)}`);
        assert.equal(f32ToF16(fromBits(bitsOf(mid) + 1)), h + 1, `just above tie ${hex(h)}`);
      }
    });

    it('flushes below half the smallest subnormal to ±0 and rounds up above it', () => {
      assert.equal(f32ToF16(2 ** -25), 0x0000); // exact tie with 0: even
      assert.equal(f32ToF16(fromBits(bitsOf(2 ** -25) + 1)), 0x0001);
      assert.equal(f32ToF16(2 ** -26), 0x0000);
      assert.equal(f32ToF16(-1e-30), 0x8000);
      assert.equal(f32ToF16(fromBits(1)), 0x0000); // float32 subnormal
      assert.equal(f32ToF16(-0), 0x8000);
    });

    it('overflows to infinity from 65520 and keeps NaN', () => {
      assert.equal(f32ToF16(65504), 0x7bff);
      assert.equal(f32ToF16(65519.996), 0x7bff);
      assert.equal(f32ToF16(65520), 0x7c00); // tie between 65504 (odd) and 2^16: even = infinity
      assert.equal(f32ToF16(1e10), 0x7c00);
      assert.equal(f32ToF16(-Infinity), 0xfc00);
      const nan = f32ToF16(NaN);
      assert.equal(nan & 0x7c00, 0x7c00);
      assert.notEqual(nan & 0x3ff, 0);
      const negNan = f32ToF16(fromBits(0xffc00001));
      assert.equal(negNan & 0x7c00, 0x7c00);
      assert.notEqual(negNan & 0x3ff, 0);
    });

    it('matches the reference rounding on random float32 values', () => {
      for (const bits of randomBits(100000, 99)) {
        const x = fromBits((bits & 0x807fffff) | ((((bits >>> 23) & 0x3f) + 95) << 23));
        assert.equal(f32ToF16(x), refToF16(x), `x = ${x} (${hex(bitsOf(x), 8)})`);
      }
    });

    it('float32ToF16Bits converts arrays the same way', () => {
      const src = Float32Array.from([0, -0, 1, -2.5, 65520, 1e-8, 0.1]);
      assert.deepEqual([...float32ToF16Bits(src)], [...src].map(f32ToF16));
    });
  });

  describe('bfloat16', () => {
    it('decodes by placing the bits above 16 zero bits', () => {
      for (let b = 0; b < 65536; b++) sameFloat(bf16ToF32(b), fromBits(b << 16), `bf16 ${hex(b)}`);
    });

    it('rounds to nearest even, with ties, subnormals, overflow and NaN', () => {
      for (let b = 0; b < 0x7f7f; b += 7) {
        const lo = bitsOf(fromBits(b << 16));
        const mid = fromBits(lo + 0x8000);
        const even = b % 2 === 0 ? b : b + 1;
        assert.equal(f32ToBf16(mid), even, `tie above ${hex(b)}`);
        assert.equal(f32ToBf16(-mid), 0x8000 | even);
        assert.equal(f32ToBf16(fromBits(lo + 0x7fff)), b);
        assert.equal(f32ToBf16(fromBits(lo + 0x8001)), b + 1);
      }
      assert.equal(f32ToBf16(fromBits(0x00008000)), 0x0000); // subnormal tie to even 0
      assert.equal(f32ToBf16(fromBits(0x00018000)), 0x0002); // subnormal tie to even 2
      assert.equal(f32ToBf16(fromBits(0x7f7f7fff)), 0x7f7f); // largest value that stays finite
      assert.equal(f32ToBf16(BF16_OVERFLOW), 0x7f80); // tie with 2^128: even = infinity
      assert.equal(f32ToBf16(-Infinity), 0xff80);
      const nan = f32ToBf16(NaN);
      assert.equal(nan & 0x7f80, 0x7f80);
      assert.notEqual(nan & 0x7f, 0);
      // A NaN whose payload sits only in the low 16 bits must not become infinity.
      const lowNan = f32ToBf16(fromBits(0x7f800001));
      assert.equal(lowNan & 0x7f80, 0x7f80);
      assert.notEqual(lowNan & 0x7f, 0);
      assert.equal(f32ToBf16(-0), 0x8000);
    });

    it('matches the reference rounding on random float32 values', () => {
      for (const bits of randomBits(100000, 7)) {
        const x = fromBits(bits);
        if (Number.isNaN(x)) continue;
        assert.equal(f32ToBf16(x), refToBf16(x), `x = ${x} (${hex(bits, 8)})`);
      }
    });
  });

  describe('toFloat32 / toFloat16Bits', () => {
    it('decode unaligned buffers (e.g. from Buffer pools)', () => {
      const backing = new Uint8Array(9);
      const bytes = backing.subarray(1);
      new DataView(bytes.buffer, bytes.byteOffset).setFloat32(0, 1.5, true);
      new DataView(bytes.buffer, bytes.byteOffset).setFloat32(4, -2, true);
      assert.deepEqual([...toFloat32(bytes, 'F32')], [1.5, -2]);
      const bf = backing.subarray(1, 5);
      new DataView(bf.buffer, bf.byteOffset).setUint16(0, 0x3fc0, true);
      new DataView(bf.buffer, bf.byteOffset).setUint16(2, 0xc000, true);
      assert.deepEqual([...toFloat32(bf, 'BF16')], [1.5, -2]);
    });

    it('decodes every F16 and BF16 code as the scalar decoders do, aligned or not, and leaves the input alone', () => {
      const codes = Uint16Array.from({ length: 65536 }, (_, i) => i);
      const backing = new Uint8Array(codes.byteLength + 1);
      backing.set(new Uint8Array(codes.buffer), 1);
      for (const bytes of [new Uint8Array(codes.buffer), backing.subarray(1)]) {
        const before = bytes.slice();
        const f16 = toFloat32(bytes, 'F16');
        const bf16 = toFloat32(bytes, 'BF16');
        for (let h = 0; h < 65536; h++) {
          assert.ok(Object.is(f16[h], f16ToF32(h)) || (Number.isNaN(f16[h]) && Number.isNaN(f16ToF32(h))), `F16 ${h}`);
          assert.ok(Object.is(bf16[h], bf16ToF32(h)) || (Number.isNaN(bf16[h]) && Number.isNaN(bf16ToF32(h))), `BF16 ${h}`);
        }
        assert.deepEqual(bytes, before);
      }
      const f32 = new Uint8Array(Float32Array.of(1.5, -0, Infinity).buffer);
      const out = toFloat32(f32, 'F32');
      out[0] = 7;
      assert.equal(new Float32Array(f32.buffer)[0], 1.5, 'F32 is copied, not a view of the input');
    });

    it('rejects a byte count that is not whole elements', () => {
      assert.throws(() => toFloat32(new Uint8Array(6), 'F32'), /6 bytes is not a whole number of F32 elements/);
    });

    it('toFloat16Bits copies F16 and rounds other dtypes once', () => {
      const h = new Uint8Array(Uint16Array.from([0x3c00, 0xfbff]).buffer);
      assert.deepEqual([...toFloat16Bits(h, 'F16')], [0x3c00, 0xfbff]);
      const bf = new Uint8Array(Uint16Array.from([0x3f80, 0x4780]).buffer); // 1, 65536
      assert.deepEqual([...toFloat16Bits(bf, 'BF16')], [0x3c00, 0x7c00]);
      assert.deepEqual([...toFloat16Bits(Uint8Array.from([0x38, 0x7e]), 'F8_E4M3')], [0x3c00, f32ToF16(448)]);
    });
  });
});
