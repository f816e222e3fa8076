// Seeded Gaussian noise: the starting latents of every image come from here, so the algorithm is
// part of what a seed means and must not change.

import * as crypto from 'node:crypto';

// Algorithm (stable; changing it changes every user's images for a given seed):
//   seed: an integer 0 ≤ seed < 2^64 (number up to 2^53−1, or bigint).
//   key  = [seed mod 2^32, floor(seed / 2^32)]                              (two uint32)
//   Block b (b = 0, 1, 2, …) = Philox4x32-10(counter = [b mod 2^32, floor(b / 2^32), 0, 0], key)
//     — the Random123 generator (Salmon et al., SC'11), 10 rounds, multipliers 0xD2511F53 and
//     0xCD9E8D57, key increments 0x9E3779B9 and 0xBB67AE85; it passes the Random123 known-answer
//     vectors (see the tests). It yields four uint32 x0..x3.
//   Two Box–Muller pairs per block, in float64:
//     u = (x0 + 0.5) / 2^32   (never 0),   a = 2π · x1 / 2^32
//     r = sqrt(−2 ln u);  n0 = r cos a,  n1 = r sin a;   likewise n2, n3 from x2, x3.
//   Output element k = block floor(k/4), lane k mod 4, rounded to float32.
// Each block depends only on (seed, b), so the stream is order-independent and can be split
// across workers. The only platform-sensitive parts are ln, sin, cos: V8 uses the same fdlibm
// code everywhere, and other libms differ by at most an ulp in float64, which float32 rounding
// hides in all but vanishingly rare cases.

export type Seed = number | bigint;

const PHILOX_M0 = 0xd2511f53;
const PHILOX_M1 = 0xcd9e8d57;
const PHILOX_W0 = 0x9e3779b9;
const PHILOX_W1 = 0xbb67ae85;
const TWO_32 = 4294967296;

/** High 32 bits of the 64-bit product of two uint32, exactly, with float64 pieces below 2^53. */
function mulhi32(a: number, b: number): number {
  const lo16 = a * (b & 0xffff); // < 2^48
  const hi16 = a * (b >>> 16); // < 2^48
  const hi16Low = hi16 % 65536;
  return ((hi16 - hi16Low) / 65536 + Math.floor((hi16Low * 65536 + lo16) / TWO_32)) >>> 0;
}

/** Philox4x32-10 of one counter block. Exported for known-answer tests. */
export function philox4x32_10(counter: ArrayLike<number>, key: ArrayLike<number>, out: Uint32Array = new Uint32Array(4)): Uint32Array {
  let c0 = counter[0] >>> 0, c1 = counter[1] >>> 0, c2 = counter[2] >>> 0, c3 = counter[3] >>> 0;
  let k0 = key[0] >>> 0, k1 = key[1] >>> 0;
  for (let round = 0; round < 10; round++) {
    if (round > 0) {
      k0 = (k0 + PHILOX_W0) >>> 0;
      k1 = (k1 + PHILOX_W1) >>> 0;
    }
    const hi0 = mulhi32(PHILOX_M0, c0), lo0 = Math.imul(PHILOX_M0, c0) >>> 0;
    const hi1 = mulhi32(PHILOX_M1, c2), lo1 = Math.imul(PHILOX_M1, c2) >>> 0;
    c0 = (hi1 ^ c1 ^ k0) >>> 0;
    c1 = lo1;
    c2 = (hi0 ^ c3 ^ k1) >>> 0;
    c3 = lo0;
  }
  out[0] = c0; out[1] = c1; out[2] = c2; out[3] = c3;
  return out;
}

/** Splits a seed into the two Philox key words, rejecting anything that is not an exact uint64. */
export function seedToKey(seed: Seed): [number, number] {
  if (typeof seed === 'bigint') {
    if (seed < 0n || seed >= 1n << 64n) throw new Error(`seed ${seed} is out of range (0 to 2^64−1)`);
    return [Number(seed & 0xffffffffn), Number(seed >> 32n)];
  }
  if (!Number.isSafeInteger(seed) || seed < 0) {
    throw new Error(`seed ${seed} must be a non-negative integer up to ${Number.MAX_SAFE_INTEGER} (use a bigint beyond)`);
  }
  return [seed % TWO_32, Math.floor(seed / TWO_32)];
}

/** `count` standard-normal float32 values for `seed`; see the algorithm above. */
export function gaussianNoise(seed: Seed, count: number): Float32Array {
  if (!Number.isSafeInteger(count) || count < 0) throw new Error(`count must be a non-negative integer, got ${count}`);
  const key = seedToKey(seed);
  const out = new Float32Array(count);
  const block = new Uint32Array(4);
  const ctr = [0, 0, 0, 0];
  for (let k = 0, b = 0; k < count; k += 4, b++) {
    ctr[0] = b % TWO_32;
    ctr[1] = Math.floor(b / TWO_32);
    philox4x32_10(ctr, key, block);
    for (let pair = 0; pair < 2; pair++) {
      const u = (block[2 * pair] + 0.5) / TWO_32;
      const a = (2 * Math.PI * block[2 * pair + 1]) / TWO_32;
      const r = Math.sqrt(-2 * Math.log(u));
      const i = k + 2 * pair;
      if (i < count) out[i] = r * Math.cos(a);
      if (i + 1 < count) out[i + 1] = r * Math.sin(a);
    }
  }
  return out;
}

/** A fresh seed in [0, 2^32): short enough to type, and accepted by every other tool. */
export function randomSeed(): number {
  return crypto.randomInt(0, TWO_32);
}
