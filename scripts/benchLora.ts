// Benchmark of a LoRA on the DiT (bench.ts --stages dit --lora-rank R): a synthetic rank-R kohya
// LoRA on every Linear, written to a temporary file and read the way the pipeline reads one; the
// time to apply it (the one session rebuild with its factors as initializers, graphs/ditLora.ts),
// the steps with it, the time to change its strength and to remove it (one scalar input each: no
// rebuild, checked here), and the steps after its removal (its strength fed 0).

import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { readLora } from '../src/inference/formats/lora';
import { ditLora } from '../src/inference/formats/loraDit';
import { writeSafetensors } from '../src/inference/formats/safetensorsWriter';
import { DitLoadTimings, FluxTransformer } from '../src/inference/graphs/fluxTransformer';

export interface LoraBench {
  rank: number;
  fileMiB: number;
  /** Reading the file and mapping it onto the DiT. */
  readSeconds: number;
  /** The first setLoras: the session built again with the LoRA's branches (its factors as initializers). */
  applySeconds: number;
  /** That rebuild's parts (FluxTransformer.loadTimings): the weight cache checked, the graph with the factors built, the session created. */
  applyTimings?: DitLoadTimings;
  stepSeconds: number[];
  /** setLoras at another strength, and with none (a strength input each; no rebuild). */
  strengthSeconds: number;
  removeSeconds: number;
  /** Steps after the removal: the branches kept, strength 0 fed (what a removed LoRA costs until a rebuild). */
  removedStepSeconds: number[];
}

/** A kohya LoRA of rank `rank` on every Linear of this DiT, random values of a LoRA's usual size. */
function writeSyntheticLora(file: string, dit: FluxTransformer, rank: number): void {
  let s = 12345;
  const rand = () => ((s = (Math.imul(s, 1664525) + 1013904223) >>> 0) / 4294967296 - 0.5) * 0.02;
  const f32 = (n: number) => {
    const a = new Float32Array(n);
    for (let i = 0; i < n; i++) a[i] = rand();
    return new Uint8Array(a.buffer);
  };
  writeSafetensors(file, [...dit.linearShapes].flatMap(([name, [out, inF]]) => {
    const stem = `lora_unet_${name.replace(/\./g, '_')}`;
    return [
      { name: `${stem}.lora_down.weight`, dtype: 'F32' as const, shape: [rank, inF], bytes: () => f32(rank * inF) },
      { name: `${stem}.lora_up.weight`, dtype: 'F32' as const, shape: [out, rank], bytes: () => f32(out * rank) },
      { name: `${stem}.alpha`, dtype: 'F32' as const, shape: [], bytes: () => new Uint8Array(Float32Array.of(rank).buffer) },
    ];
  }));
}

/** `step()` runs one forward; called `steps` times per phase. The DiT must not have branches yet (a fresh load). */
export async function benchLora(dit: FluxTransformer, rank: number, steps: number, step: () => Promise<void>, progress: (m: string) => void): Promise<LoraBench> {
  const file = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'bench-lora-')), `synthetic-r${rank}.safetensors`);
  try {
    writeSyntheticLora(file, dit, rank);
    const fileMiB = fs.statSync(file).size / 2 ** 20;
    const time = async (fn: () => Promise<unknown> | unknown) => {
      const t0 = performance.now();
      await fn();
      return (performance.now() - t0) / 1000;
    };
    let branches: ReturnType<typeof ditLora>['branches'] = new Map();
    const readSeconds = await time(() => (branches = ditLora(readLora(file), dit.config, dit.linearShapes).branches));
    // The file's path as its id, as the pipeline keys a LoRA by its cached file id.
    const applySeconds = await time(() => dit.setLoras([{ branches, strength: 1, id: file }]));
    const applyTimings = dit.loadTimings;
    progress(`LoRA rank ${rank} (${fileMiB.toFixed(0)} MiB): read ${readSeconds.toFixed(2)} s, applied (session rebuilt with branches) in ${applySeconds.toFixed(2)} s (${Object.entries(applyTimings ?? {}).map(([k, v]) => `${k} ${v.toFixed(2)} s`).join(', ')})`);
    const timed = async (label: string) => {
      const out: number[] = [];
      for (let i = 0; i < steps; i++) {
        out.push(await time(step));
        progress(`${label} step ${i + 1}: ${out[i].toFixed(2)} s`);
      }
      return out;
    };
    const stepSeconds = await timed('with LoRA');
    const builds = dit.sessionBuilds;
    const strengthSeconds = await time(() => dit.setLoras([{ branches, strength: 0.5, id: file }]));
    const removeSeconds = await time(() => dit.setLoras([]));
    if (dit.sessionBuilds !== builds) throw new Error('benchLora: a strength change or a removal rebuilt the session');
    progress(`strength changed in ${strengthSeconds.toFixed(3)} s, removed in ${removeSeconds.toFixed(3)} s`);
    const removedStepSeconds = await timed('LoRA removed');
    return { rank, fileMiB, readSeconds, applySeconds, applyTimings, stepSeconds, strengthSeconds, removeSeconds, removedStepSeconds };
  } finally {
    fs.rmSync(path.dirname(file), { recursive: true, force: true });
  }
}
