// A LoRA's DiT pairs mapped onto the DiT's BFL Linears (the names graphs/dit.ts builds), whatever
// naming the file uses. A Linear that the file adapts in pieces (diffusers to_q, to_k, to_v of the
// fused qkv; the four parts of a single block's linear1) gets one exact branch: the pieces' A
// stacked along the rank, and each piece's B rows placed in its own rank columns (zeros elsewhere),
// so Bᵀ·A adds each piece's delta to its own rows and nothing to the others.

import { UserError } from '../../shared/api';
import { DitConfig } from './layouts/configs';
import { diffusersRules } from './layouts/ditWeights';
import { LoraFile, LoraPair, underscored } from './lora';

/** A BFL Linear's [out, in]. */
export type LinearShapes = ReadonlyMap<string, readonly [number, number]>;

/** One LoRA's branch on one BFL Linear: delta W = Bᵀᵀ · diag(scale) · A. */
export interface LoraBranch {
  rank: number;
  /** A [rank, in] */
  a: Float32Array;
  /** Bᵀ [rank, out] (rank-major, so LoRAs stack by concatenating rows). */
  bt: Float32Array;
  /** alpha / rank of the pair each rank row came from (strength not applied). */
  scale: Float32Array;
}

export interface DitLora {
  /** BFL Linear name → its branch. */
  branches: Map<string, LoraBranch>;
  /** Keys of the file's DiT pairs that match no Linear of this DiT. */
  skipped: string[];
}

/** Where a module name of the file lands: rows [start, start + rows) of the BFL Linear's output, halves swapped for diffusers' norm_out. */
interface Place {
  bfl: string;
  start: number;
  rows: number;
  swapHalves: boolean;
}

/** Every name a DiT LoRA may use for a piece of each BFL Linear (BFL, diffusers, XLabs; dotted and kohya-underscored). */
function places(config: DitConfig, shapes: LinearShapes): Map<string, Place> {
  const out = new Map<string, Place>();
  const add = (name: string, p: Place) => {
    out.set(name, p);
    out.set(underscored(name), p);
  };
  for (const [bfl, [rows]] of shapes) add(bfl, { bfl, start: 0, rows, swapHalves: false });
  const h = config.hidden_size;
  for (const [name, rule] of diffusersRules(config.depth, config.depth_single_blocks)) {
    if (!name.endsWith('.weight')) continue;
    const bfl = name.slice(0, -'.weight'.length);
    const shape = shapes.get(bfl);
    if (!shape) continue;
    // Pieces along the rows: q, k, v of h each, then (linear1) the MLP's rest.
    let start = 0;
    rule.sources.forEach((source, i) => {
      const rows = rule.sources.length === 1 ? shape[0] : i < 3 ? h : shape[0] - 3 * h;
      add(source.slice(0, -'.weight'.length), { bfl, start, rows, swapHalves: rule.swapHalves ?? false });
      start += rows;
    });
  }
  // XLabs: the double blocks' attention, stream 1 = image, 2 = text.
  for (let i = 0; i < config.depth; i++) {
    ([['1', 'img'], ['2', 'txt']] as const).forEach(([n, s]) => {
      for (const [x, bfl] of [['qkv', 'qkv'], ['proj', 'proj']]) {
        const target = `double_blocks.${i}.${s}_attn.${bfl}`;
        const shape = shapes.get(target);
        if (shape) add(`double_blocks.${i}.processor.${x}_lora${n}`, { bfl: target, start: 0, rows: shape[0], swapHalves: false });
      }
    });
  }
  return out;
}

/** The file's DiT pairs as branches on this DiT's Linears. A pair whose shape does not fit its Linear is a UserError (a LoRA for another model). */
export function ditLora(file: LoraFile, config: DitConfig, shapes: LinearShapes): DitLora {
  const where = places(config, shapes);
  const byLinear = new Map<string, Array<{ pair: LoraPair; place: Place }>>();
  const skipped: string[] = [];
  for (const pair of file.pairs) {
    if (pair.target !== 'dit') continue;
    const place = where.get(pair.module);
    if (!place) {
      skipped.push(pair.key);
      continue;
    }
    const [, inFeatures] = shapes.get(place.bfl)!;
    if (pair.inFeatures !== inFeatures || pair.outFeatures !== place.rows) {
      throw new UserError(
        `The LoRA ${file.path} does not fit this model: "${pair.key}" changes a layer of shape [${pair.outFeatures}, ${pair.inFeatures}] where the model's ${place.bfl} has [${place.rows}, ${inFeatures}]. The LoRA was made for another model (another FLUX size or family).`,
      );
    }
    const list = byLinear.get(place.bfl) ?? [];
    list.push({ pair, place });
    byLinear.set(place.bfl, list);
  }
  const branches = new Map<string, LoraBranch>();
  for (const [bfl, parts] of byLinear) branches.set(bfl, fuse(parts, shapes.get(bfl)!));
  return { branches, skipped };
}

function fuse(parts: Array<{ pair: LoraPair; place: Place }>, [out, inFeatures]: readonly [number, number]): LoraBranch {
  const rank = parts.reduce((n, p) => n + p.pair.rank, 0);
  const a = new Float32Array(rank * inFeatures);
  const bt = new Float32Array(rank * out);
  const scale = new Float32Array(rank);
  let col = 0;
  for (const { pair, place } of parts) {
    const r = pair.rank;
    a.set(pair.down, col * inFeatures);
    scale.fill(pair.scale, col, col + r);
    const half = pair.outFeatures / 2;
    for (let row = 0; row < pair.outFeatures; row++) {
      const target = place.start + (place.swapHalves ? (row + half) % pair.outFeatures : row);
      for (let j = 0; j < r; j++) bt[(col + j) * out + target] = pair.up[row * r + j];
    }
    col += r;
  }
  return { rank, a, bt, scale };
}
