// A tiny seeded PRNG for fuzz tests, so a failure can be replayed from its seed and case number.

/** mulberry32: uniform floats in [0, 1). */
export function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export interface Rng {
  /** Integer in [0, n). */
  int(n: number): number;
  pick<T>(items: readonly T[]): T;
  chance(p: number): boolean;
}

export function rng(seed: number): Rng {
  const next = mulberry32(seed);
  return {
    int: (n) => Math.floor(next() * n),
    pick: (items) => items[Math.floor(next() * items.length)],
    chance: (p) => next() < p,
  };
}

/** Runs `body(i)` for up to `count` cases or until `budgetMs` has passed; returns how many ran. */
export function fuzzLoop(count: number, budgetMs: number, body: (i: number) => void): number {
  const end = Date.now() + budgetMs;
  let i = 0;
  for (; i < count && Date.now() < end; i++) body(i);
  return i;
}
