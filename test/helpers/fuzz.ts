// Seeded random inputs for fuzz tests: a PRNG, JSON-ish values, mutations of valid messages.

/** Deterministic PRNG, so a fuzz failure can be replayed (prng.ts). */
export { mulberry32 as rng } from './prng';

/** Random JSON-ish values biased towards protocol-looking shapes. */
export function randomValue(r: () => number, depth = 0): unknown {
  const keys = ['id', 'type', 'job', 'params', 'prompt', 'output', 'settings', 'model', 'event', 'jobId', '__proto__', 'constructor', 'toString', 'steps', 'width'];
  const strings = ['hello', 'generate', 'cancel', 'event', 'done', 'step', 'status', '', 'x'.repeat(5000), '\u0000', 'dynamic', '__proto__'];
  const k = Math.floor(r() * (depth > 3 ? 6 : 8));
  switch (k) {
    case 0: return null;
    case 1: return r() < 0.5;
    case 2: return [0, -1, 1.5, 1e308, -0, NaN, Infinity, Number.MAX_SAFE_INTEGER + 2, 7][Math.floor(r() * 9)];
    case 3: return strings[Math.floor(r() * strings.length)];
    case 4: return Math.floor(r() * 100);
    case 5: return undefined;
    case 6: return Array.from({ length: Math.floor(r() * 4) }, () => randomValue(r, depth + 1));
    default: {
      const o: Record<string, unknown> = {};
      for (let i = Math.floor(r() * 5); i > 0; i--) o[keys[Math.floor(r() * keys.length)]] = randomValue(r, depth + 1);
      return o;
    }
  }
}

/** Replaces or deletes one random field somewhere in a (cloned) message. */
export function mutate(msg: unknown, r: () => number): unknown {
  const clone = JSON.parse(JSON.stringify(msg)) as Record<string, unknown>;
  let node: Record<string, unknown> = clone;
  for (;;) {
    const keys = Object.keys(node);
    if (keys.length === 0) return clone;
    const key = keys[Math.floor(r() * keys.length)];
    const child = node[key];
    if (child && typeof child === 'object' && r() < 0.6) {
      node = child as Record<string, unknown>;
      continue;
    }
    if (r() < 0.3) delete node[key];
    else node[key] = randomValue(r, 3);
    return clone;
  }
}
