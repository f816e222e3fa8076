// LoRA files (safetensors) in the formats people download, read into low-rank pairs named by the
// module they adapt, in the file's own naming. Which model Linear each pair lands on is decided
// later, against the model's names: loraDit.ts (the DiT's BFL Linears), loraText.ts (CLIP).
//
// Formats: kohya / sd-scripts (`lora_unet_<bfl name, _ for .>.lora_down/.lora_up/.alpha`, CLIP as
// `lora_te1_`), diffusers / PEFT (`transformer.<diffusers module>.lora_A/.lora_B`, CLIP as
// `text_encoder.`), ComfyUI (`diffusion_model.<bfl name>` with either pair naming), XLabs
// (`double_blocks.N.processor.qkv_lora1.down/.up`). A pair's scale is alpha / rank when the file
// has an alpha, else 1 (PEFT without alpha and XLabs: the product B·A is the delta as stored).

import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { UserError } from '../../shared/api';
import { SafetensorsFile } from './safetensors';

/** Which model a pair adapts. */
export type LoraTarget = 'dit' | 'clip' | 't5';

/** One low-rank pair: delta W = scale · up · down. */
export interface LoraPair {
  /** The key stem in the file (for messages). */
  key: string;
  target: LoraTarget;
  /** The module's name with the target's prefix removed, dotted or (kohya) with `_` for `.`. */
  module: string;
  /** kohya keys: `.` became `_`, so the name is resolved by comparing against the model's names with the same change. */
  underscored: boolean;
  rank: number;
  inFeatures: number;
  outFeatures: number;
  /** A [rank, in] */
  down: Float32Array;
  /** B [out, rank] */
  up: Float32Array;
  /** alpha / rank, or 1 without alpha. */
  scale: number;
}

export interface LoraFile {
  path: string;
  /** The file's name without extension (A1111's `<lora:name:strength>`). */
  name: string;
  pairs: LoraPair[];
  /** Keys this reader does not understand (no pair naming it knows), kept for the notes. */
  unknownKeys: string[];
}

/** Prefix of a key's stem → the model it adapts and whether the rest is underscored (kohya). */
const PREFIXES: Array<{ prefix: string; target: LoraTarget; underscored: boolean }> = [
  { prefix: 'lora_unet_', target: 'dit', underscored: true },
  { prefix: 'lora_transformer_', target: 'dit', underscored: true },
  { prefix: 'lora_te1_', target: 'clip', underscored: true },
  { prefix: 'lora_te_', target: 'clip', underscored: true },
  // kohya's FLUX trainer writes T5 as lora_te3_ (its first versions lora_te2_).
  { prefix: 'lora_te2_', target: 't5', underscored: true },
  { prefix: 'lora_te3_', target: 't5', underscored: true },
  { prefix: 'model.diffusion_model.', target: 'dit', underscored: false },
  { prefix: 'diffusion_model.', target: 'dit', underscored: false },
  { prefix: 'base_model.model.', target: 'dit', underscored: false },
  { prefix: 'transformer.', target: 'dit', underscored: false },
  { prefix: 'text_encoder_2.', target: 't5', underscored: false },
  { prefix: 'text_encoder.', target: 'clip', underscored: false },
  { prefix: '', target: 'dit', underscored: false },
];

/** Key suffix → which tensor of a pair it is. */
const SUFFIXES: Array<[string, 'down' | 'up' | 'alpha']> = [
  ['.lora_down.weight', 'down'],
  ['.lora_up.weight', 'up'],
  ['.lora_A.default.weight', 'down'],
  ['.lora_B.default.weight', 'up'],
  ['.lora_A.weight', 'down'],
  ['.lora_B.weight', 'up'],
  ['.lora.down.weight', 'down'],
  ['.lora.up.weight', 'up'],
  ['.down.weight', 'down'],
  ['.up.weight', 'up'],
  ['.alpha', 'alpha'],
];

/** Adapter kinds other than plain LoRA, by a key fragment only they use. */
const UNSUPPORTED: Array<[RegExp, string]> = [
  [/\.dora_scale$|\.magnitude_vector|lora_magnitude_vector/, 'DoRA (weight-decomposed LoRA, dora_scale tensors)'],
  [/\.lokr_w[12](_[ab])?$|\.lokr_t2$/, 'LoKr (Kronecker-product adapter, lokr_w tensors)'],
  [/\.hada_w[12]_[ab]$|\.hada_t[12]$/, 'LoHa (Hadamard-product adapter, hada_w tensors)'],
  [/\.lora_mid\.weight$/, 'LoCon with a Tucker middle factor (lora_mid tensors)'],
  [/\.(diff|diff_b)$/, 'a full weight difference (diff tensors)'],
];

export const KNOWN_FORMATS = [
  'kohya/sd-scripts (lora_unet_double_blocks_0_img_attn_qkv.lora_down.weight)',
  'diffusers/PEFT (transformer.transformer_blocks.0.attn.to_q.lora_A.weight)',
  'ComfyUI (diffusion_model.double_blocks.0.img_attn.qkv.lora_A.weight)',
  'XLabs (double_blocks.0.processor.qkv_lora1.down.weight)',
];

/** A file whose keys are not a LoRA this reader knows: what it found and what it knows. */
export function notALoraError(file: string, keys: string[], detail = 'none of its keys is a LoRA pair MajicFLUX knows'): UserError {
  const some = keys.slice(0, 4).map((k) => `"${k}"`).join(', ');
  return new UserError(`${file} is not a LoRA MajicFLUX can apply: ${detail} (it has ${keys.length} tensor${keys.length === 1 ? '' : 's'}${some ? `, e.g. ${some}` : ''}). Known formats: ${KNOWN_FORMATS.join('; ')}.`);
}

/** Reads every pair of a LoRA file into float32. Throws a UserError for other adapter kinds and for a file with no pair at all. */
export function readLora(file: string): LoraFile {
  let f: SafetensorsFile;
  try {
    f = SafetensorsFile.open(file);
  } catch (e) {
    if (isPickle(file)) throw new UserError(`${file} is a PyTorch pickle file, not safetensors: MajicFLUX reads LoRAs only as .safetensors (a pickle can run code when loaded); download the .safetensors version or convert it`);
    const message = (e as Error).message;
    // The reader's messages begin with the path already.
    throw new UserError(`Cannot read the LoRA ${file}: ${message.startsWith(`${file}: `) ? message.slice(file.length + 2) : message}`);
  }
  try {
    const keys = f.names();
    for (const [pattern, what] of UNSUPPORTED) {
      const hit = keys.find((k) => pattern.test(k));
      if (hit) throw new UserError(`${file} is ${what}, which MajicFLUX does not support (found "${hit}"); only plain LoRA files (down/up or lora_A/lora_B pairs) can be applied.`);
    }
    const groups = new Map<string, Partial<Record<'down' | 'up' | 'alpha', string>>>();
    const unknownKeys: string[] = [];
    for (const k of keys) {
      const s = SUFFIXES.find(([suffix]) => k.endsWith(suffix));
      if (!s) {
        unknownKeys.push(k);
        continue;
      }
      const stem = k.slice(0, -s[0].length);
      const g = groups.get(stem) ?? {};
      g[s[1]] = k;
      groups.set(stem, g);
    }
    const pairs: LoraPair[] = [];
    for (const [stem, g] of groups) {
      if (!g.down || !g.up) {
        unknownKeys.push(...Object.values(g));
        continue;
      }
      const down = f.info(g.down).shape;
      const up = f.info(g.up).shape;
      if (down.length !== 2 || up.length !== 2) {
        // Conv LoRAs (4-D) have no place in FLUX's Linears.
        unknownKeys.push(g.down, g.up);
        continue;
      }
      if (down[0] !== up[1]) throw new UserError(`${file}: the LoRA pair "${stem}" has a down weight of shape [${down}] and an up weight of shape [${up}], whose ranks (${down[0]} and ${up[1]}) differ: the file is damaged.`);
      const rank = down[0];
      const alpha = g.alpha ? f.readF32(g.alpha)[0] : undefined;
      if (alpha !== undefined && !Number.isFinite(alpha)) throw new UserError(`${file}: "${g.alpha}" is not a finite number: the file is damaged.`);
      const p = PREFIXES.find((x) => stem.startsWith(x.prefix))!;
      pairs.push({
        key: stem, target: p.target, module: stem.slice(p.prefix.length), underscored: p.underscored, rank, inFeatures: down[1], outFeatures: up[0],
        down: f.readF32(g.down), up: f.readF32(g.up), scale: alpha === undefined ? 1 : alpha / rank,
      });
    }
    if (!pairs.length) throw notALoraError(file, keys);
    return { path: file, name: loraName(file), pairs, unknownKeys };
  } finally {
    f.close();
  }
}

/** A PyTorch checkpoint (.pt/.ckpt/.bin LoRAs of older tools): a zip archive, or a bare pickle (protocol 2+ starts with 0x80). */
function isPickle(file: string): boolean {
  const head = Buffer.alloc(4);
  let fd: number | undefined;
  try {
    fd = fs.openSync(file, 'r');
    const n = fs.readSync(fd, head, 0, 4, 0);
    return (n === 4 && head.toString('latin1') === 'PK\x03\x04') || (n >= 2 && head[0] === 0x80 && head[1] >= 2 && head[1] <= 5);
  } catch {
    return false;
  } finally {
    if (fd !== undefined) fs.closeSync(fd);
  }
}

/** The file's name without extension. */
export function loraName(file: string): string {
  return path.basename(file).replace(/\.safetensors$/i, '');
}

/** `a.b.c` → `a_b_c`: how kohya spells module names. */
export function underscored(name: string): string {
  return name.replace(/\./g, '_');
}

/**
 * A1111's "addnet" hash of a safetensors file, which its "Lora hashes" infotext and civitai use:
 * SHA-256 of the data after the 8-byte length and the JSON header (so editing the metadata keeps
 * it), as 64 hex digits; the infotext shows the first 12.
 */
export function addnetHash(file: string): string {
  const fd = fs.openSync(file, 'r');
  try {
    const len = Buffer.alloc(8);
    if (fs.readSync(fd, len, 0, 8, 0) !== 8) throw new UserError(`${file} is too short to be a safetensors file`);
    const h = crypto.createHash('sha256');
    const buf = Buffer.allocUnsafe(1 << 22);
    let pos = 8 + Number(len.readBigUInt64LE(0));
    for (let n; (n = fs.readSync(fd, buf, 0, buf.length, pos)) > 0; pos += n) h.update(buf.subarray(0, n));
    return h.digest('hex');
  } finally {
    fs.closeSync(fd);
  }
}
