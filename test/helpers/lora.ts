// Synthetic LoRA files for tests: seeded random pairs in a chosen naming, and the DiT checkpoint with
// the same deltas merged into its weights (W + s·B·A in float32), the reference a branch must match.
import * as fs from 'node:fs';
import { TensorSource } from '../../src/inference/formats/safetensors';
import { TensorSpec, writeSafetensors } from '../../src/inference/formats/safetensorsWriter';
import { mulberry32 } from './prng';

/** Uniform values in [-0.5, 0.5): prng.ts's mulberry32, centred. */
export function seeded(seed: number): () => number {
  const next = mulberry32(seed);
  return () => next() - 0.5;
}

export interface Pair {
  down: Float32Array;
  up: Float32Array;
  rank: number;
  out: number;
  in: number;
}

export function randomPair(rand: () => number, out: number, inFeatures: number, rank: number, size = 0.3): Pair {
  return { down: Float32Array.from({ length: rank * inFeatures }, () => rand() * size), up: Float32Array.from({ length: out * rank }, () => rand() * size), rank, out, in: inFeatures };
}

/** B·A [out, in] */
export function product(p: Pair): Float32Array {
  const d = new Float32Array(p.out * p.in);
  for (let o = 0; o < p.out; o++) for (let r = 0; r < p.rank; r++) {
    const u = p.up[o * p.rank + r];
    for (let i = 0; i < p.in; i++) d[o * p.in + i] += u * p.down[r * p.in + i];
  }
  return d;
}

const f32 = (name: string, data: Float32Array, shape: number[]): TensorSpec => ({ name, dtype: 'F32', shape, bytes: () => new Uint8Array(data.buffer, data.byteOffset, data.byteLength) });

/** Writes pairs under `stem + downSuffix` / `upSuffix` (and an alpha when given). */
export function writeLora(file: string, pairs: Array<{ stem: string; pair: Pair; alpha?: number }>, naming: { down: string; up: string }, extra: TensorSpec[] = []): void {
  const specs: TensorSpec[] = [];
  for (const { stem, pair, alpha } of pairs) {
    specs.push(f32(`${stem}${naming.down}`, pair.down, [pair.rank, pair.in]), f32(`${stem}${naming.up}`, pair.up, [pair.out, pair.rank]));
    if (alpha !== undefined) specs.push(f32(`${stem}.alpha`, Float32Array.of(alpha), []));
  }
  writeSafetensors(file, [...specs, ...extra]);
}

/** The checkpoint as float32 with `deltas` (BFL weight name → [out, in] delta, already scaled) added. */
export function writeMerged(file: string, src: TensorSource, deltas: Map<string, Float32Array>): void {
  writeSafetensors(file, src.names().map((n) => {
    const base = src.readF32(n);
    const d = deltas.get(n);
    if (d) for (let i = 0; i < base.length; i++) base[i] = Math.fround(base[i] + d[i]);
    return f32(n, base, src.info(n).shape);
  }));
  if (!fs.existsSync(file)) throw new Error('not written');
}
