// The token check of a TCP server: compared in constant time, and wrong tokens from one address
// answered ever more slowly so that guessing it is slow.

import * as crypto from 'node:crypto';

/**
 * Wrong tokens from one address are answered after 0.25 s, 0.5 s, 1 s, … up to 8 s, so guessing is
 * slow; a right token clears the address, and an address quiet for 10 minutes is forgotten. At most
 * 1,000 addresses are remembered (the oldest go first): the table itself can't be grown without bound.
 */
export class BackOff {
  private readonly failures = new Map<string, { count: number; last: number }>();
  constructor(
    private readonly baseMs = 250,
    private readonly maxMs = 8_000,
    private readonly forgetMs = 600_000,
    private readonly maxEntries = 1_000,
    private readonly now = () => Date.now(),
  ) {}

  /** Records a failure; returns how long to wait before answering it, ms. */
  fail(key: string): number {
    const t = this.now();
    const prev = this.failures.get(key);
    const count = prev && t - prev.last < this.forgetMs ? prev.count + 1 : 1;
    this.failures.delete(key);
    this.failures.set(key, { count, last: t });
    if (this.failures.size > this.maxEntries) this.failures.delete(this.failures.keys().next().value!);
    return Math.min(this.baseMs * 2 ** (count - 1), this.maxMs);
  }

  forgive(key: string): void {
    this.failures.delete(key);
  }
}

export function sameSecret(a: string, b: string): boolean {
  const h = (s: string) => crypto.createHash('sha256').update(s).digest();
  return crypto.timingSafeEqual(h(a), h(b));
}
