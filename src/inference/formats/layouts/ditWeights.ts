// The DiT's weights under BFL names whatever naming the checkpoint uses: the BFL ⇄ diffusers
// name rules and the view that assembles (or slices) tensors by them.

import { toFloat16Bits, toFloat32 } from '../dtypes';
import { TensorSource } from '../safetensors';
import { countIndexed, LayoutError } from './detect';
import { LogicalTensor, pieceOf, rowCount, sliceRows, TensorPart, TensorPiece } from './pieces';

const MOD6 = ['shift_msa', 'scale_msa', 'gate_msa', 'shift_mlp', 'scale_mlp', 'gate_mlp'];
const MOD3 = ['shift', 'scale', 'gate'];

/** BFL stem (takes .weight and .bias) → diffusers stems concatenated in order. */
const TOP_LEVEL: Array<[string, string]> = [
  ['img_in', 'x_embedder'],
  ['txt_in', 'context_embedder'],
  ['time_in.in_layer', 'time_text_embed.timestep_embedder.linear_1'],
  ['time_in.out_layer', 'time_text_embed.timestep_embedder.linear_2'],
  ['vector_in.in_layer', 'time_text_embed.text_embedder.linear_1'],
  ['vector_in.out_layer', 'time_text_embed.text_embedder.linear_2'],
  ['guidance_in.in_layer', 'time_text_embed.guidance_embedder.linear_1'],
  ['guidance_in.out_layer', 'time_text_embed.guidance_embedder.linear_2'],
  ['final_layer.linear', 'proj_out'],
];

const DOUBLE_BLOCK: Array<[string, string[]]> = [
  ['img_mod.lin', ['norm1.linear']],
  ['txt_mod.lin', ['norm1_context.linear']],
  ['img_attn.qkv', ['attn.to_q', 'attn.to_k', 'attn.to_v']],
  ['txt_attn.qkv', ['attn.add_q_proj', 'attn.add_k_proj', 'attn.add_v_proj']],
  ['img_attn.proj', ['attn.to_out.0']],
  ['txt_attn.proj', ['attn.to_add_out']],
  ['img_mlp.0', ['ff.net.0.proj']],
  ['img_mlp.2', ['ff.net.2']],
  ['txt_mlp.0', ['ff_context.net.0.proj']],
  ['txt_mlp.2', ['ff_context.net.2']],
];

/** RMSNorm scales: BFL `.scale`, diffusers `.weight`. */
const DOUBLE_BLOCK_NORMS: Array<[string, string]> = [
  ['img_attn.norm.query_norm.scale', 'attn.norm_q.weight'],
  ['img_attn.norm.key_norm.scale', 'attn.norm_k.weight'],
  ['txt_attn.norm.query_norm.scale', 'attn.norm_added_q.weight'],
  ['txt_attn.norm.key_norm.scale', 'attn.norm_added_k.weight'],
];

const SINGLE_BLOCK: Array<[string, string[]]> = [
  ['linear1', ['attn.to_q', 'attn.to_k', 'attn.to_v', 'proj_mlp']],
  ['linear2', ['proj_out']],
  ['modulation.lin', ['norm.linear']],
];

const SINGLE_BLOCK_NORMS: Array<[string, string]> = [
  ['norm.query_norm.scale', 'attn.norm_q.weight'],
  ['norm.key_norm.scale', 'attn.norm_k.weight'],
];

export interface NameRule {
  /** Source tensors, concatenated along dim 0. */
  sources: string[];
  /** The single source's two row halves are stored in the opposite order (diffusers AdaLayerNormContinuous: scale, shift; BFL: shift, scale). */
  swapHalves?: boolean;
}

/** BFL name → how to assemble it from diffusers tensors, for blocks 0..depth-1 and 0..singles-1. */
export function diffusersRules(depth: number, singles: number): Map<string, NameRule> {
  const rules = new Map<string, NameRule>();
  const both = (bfl: string, stems: string[], swapHalves?: boolean) => {
    for (const s of ['weight', 'bias']) rules.set(`${bfl}.${s}`, { sources: stems.map((d) => `${d}.${s}`), swapHalves });
  };
  for (const [bfl, d] of TOP_LEVEL) both(bfl, [d]);
  both('final_layer.adaLN_modulation.1', ['norm_out.linear'], true);
  for (let i = 0; i < depth; i++) {
    for (const [bfl, d] of DOUBLE_BLOCK) both(`double_blocks.${i}.${bfl}`, d.map((x) => `transformer_blocks.${i}.${x}`));
    for (const [bfl, d] of DOUBLE_BLOCK_NORMS) rules.set(`double_blocks.${i}.${bfl}`, { sources: [`transformer_blocks.${i}.${d}`] });
  }
  for (let i = 0; i < singles; i++) {
    for (const [bfl, d] of SINGLE_BLOCK) both(`single_blocks.${i}.${bfl}`, d.map((x) => `single_transformer_blocks.${i}.${x}`));
    for (const [bfl, d] of SINGLE_BLOCK_NORMS) rules.set(`single_blocks.${i}.${bfl}`, { sources: [`single_transformer_blocks.${i}.${d}`] });
  }
  return rules;
}


/**
 * DiT weights under BFL names, from a BFL or diffusers checkpoint. Each tensor is described as
 * pieces of the user's files, so a builder can reference them in place:
 *  - `single(name)`: the tensor as one contiguous byte range, when it is (always, for BFL files);
 *  - `pieces(name)`: the ranges to concatenate along dim 0 otherwise (e.g. diffusers to_q, to_k, to_v);
 *  - `parts(name)`: the semantic sections of fused tensors, each one range, in either layout —
 *    for builders that keep q, k, v (or shift, scale) as separate weights.
 */
export class DitWeights {
  readonly layout: 'bfl-dit' | 'diffusers-dit';
  readonly depth: number;
  readonly depthSingle: number;
  private readonly rules?: Map<string, NameRule>;
  private readonly available: string[];
  private hiddenSize?: number;

  /** `tensors` must already be without any checkpoint prefix (see openComponent). */
  constructor(readonly tensors: TensorSource, layout: 'bfl-dit' | 'diffusers-dit') {
    this.layout = layout;
    const names = tensors.names();
    if (layout === 'bfl-dit') {
      this.depth = countIndexed(names, /^double_blocks\.(\d+)\./);
      this.depthSingle = countIndexed(names, /^single_blocks\.(\d+)\./);
      this.available = names;
    } else {
      this.depth = countIndexed(names, /^transformer_blocks\.(\d+)\./);
      this.depthSingle = countIndexed(names, /^single_transformer_blocks\.(\d+)\./);
      this.rules = diffusersRules(this.depth, this.depthSingle);
      this.available = [...this.rules].filter(([, r]) => r.sources.every((s) => tensors.has(s))).map(([n]) => n);
    }
  }

  /** BFL names of every tensor this checkpoint can give. */
  names(): string[] {
    return [...this.available];
  }

  has(name: string): boolean {
    return this.rules ? this.rules.has(name) && this.rules.get(name)!.sources.every((s) => this.tensors.has(s)) : this.tensors.has(name);
  }

  /** Names of the file's own tensors that make up a BFL tensor (for messages about missing ones). */
  sourceNames(name: string): string[] {
    if (!this.rules) return [name];
    const r = this.rules.get(name);
    return r ? [...r.sources] : [];
  }

  /** File tensors no BFL name uses (diffusers only; a BFL file is served as is). */
  unused(): string[] {
    if (!this.rules) return [];
    const used = new Set<string>();
    for (const r of this.rules.values()) for (const s of r.sources) used.add(s);
    return this.tensors.names().filter((n) => !used.has(n));
  }

  tensor(name: string): LogicalTensor {
    const pieces = this.resolve(name);
    const first = pieces[0].source;
    const tail = first.shape.slice(1);
    for (const p of pieces) {
      if (p.source.dtype !== first.dtype || p.source.shape.length !== first.shape.length || p.source.shape.slice(1).some((d, i) => d !== tail[i])) {
        throw new LayoutError(this.tensors.path, `cannot assemble "${name}": its parts ${pieces.map((q) => `${q.source.name} ${q.source.dtype} ${JSON.stringify(q.source.shape)}`).join(', ')} differ in dtype or trailing shape`);
      }
    }
    const rows = pieces.reduce((a, p) => a + p.rows[1] - p.rows[0], 0);
    return { name, dtype: first.dtype, shape: first.shape.length ? [rows, ...tail] : [], pieces };
  }

  pieces(name: string): TensorPiece[] {
    return this.tensor(name).pieces;
  }

  /** The tensor as one contiguous byte range of one file (zero-copy possible), or undefined when it must be assembled. */
  single(name: string): TensorPiece | undefined {
    const p = this.pieces(name);
    return p.length === 1 ? p[0] : undefined;
  }

  /** Fused tensors split into their sections, each one contiguous piece; other tensors as one part named 'all'. */
  parts(name: string): TensorPart[] {
    const t = this.tensor(name);
    const bounds = this.partBounds(name, t.shape.length ? t.shape[0] : 1);
    return bounds.map(([part, start, end]) => {
      const p = sliceRows(t.pieces, start, end);
      if (p.length !== 1) throw new Error(`internal: part ${part} of ${name} spans ${p.length} pieces`);
      return { part, piece: p[0] };
    });
  }

  /** The tensor's bytes in its file dtype, assembled when it has several pieces. */
  readBytes(name: string): Buffer {
    if (!this.rules) return this.tensors.readBytes(name);
    const rule = this.rules.get(name);
    if (!rule || !rule.sources.every((s) => this.tensors.has(s))) throw this.missing(name);
    const parts = rule.sources.map((s) => this.tensors.readBytes(s));
    if (rule.swapHalves) {
      const half = parts[0].byteLength / 2;
      return Buffer.concat([parts[0].subarray(half), parts[0].subarray(0, half)]);
    }
    return parts.length === 1 ? parts[0] : Buffer.concat(parts);
  }

  readF32(name: string): Float32Array {
    return toFloat32(this.readBytes(name), this.tensor(name).dtype);
  }

  /** IEEE half bits. */
  readF16(name: string): Uint16Array {
    return toFloat16Bits(this.readBytes(name), this.tensor(name).dtype);
  }

  private resolve(name: string): TensorPiece[] {
    if (!this.rules) {
      if (!this.tensors.has(name)) throw this.missing(name);
      return [pieceOf(this.tensors.info(name))];
    }
    const rule = this.rules.get(name);
    if (!rule) throw new LayoutError(this.tensors.path, `no DiT tensor named "${name}" (BFL name) in this diffusers checkpoint`);
    if (!rule.sources.every((s) => this.tensors.has(s))) throw this.missing(name);
    const infos = rule.sources.map((s) => this.tensors.info(s));
    if (rule.swapHalves) {
      const n = rowCount(infos[0].shape);
      if (n % 2) throw new LayoutError(this.tensors.path, `"${rule.sources[0]}" has an odd number of rows (${n}); expected scale and shift halves`);
      return [pieceOf(infos[0], n / 2, n), pieceOf(infos[0], 0, n / 2)];
    }
    return infos.map((i) => pieceOf(i));
  }

  private missing(name: string): LayoutError {
    const absent = this.sourceNames(name).filter((s) => !this.tensors.has(s));
    const what = this.rules ? `"${name}" needs ${absent.map((s) => `"${s}"`).join(', ')}, which the checkpoint lacks` : `no tensor named "${name}"`;
    return new LayoutError(this.tensors.path, what);
  }

  private hidden(): number {
    this.hiddenSize ??= this.tensor('img_in.weight').shape[0];
    return this.hiddenSize;
  }

  /** [label, first row, end row] of each section of a fused tensor, in BFL row order. */
  private partBounds(name: string, rows: number): Array<[string, number, number]> {
    const even = (labels: string[]): Array<[string, number, number]> => {
      const n = rows / labels.length;
      if (!Number.isInteger(n)) throw new LayoutError(this.tensors.path, `"${name}" has ${rows} rows, not divisible into ${labels.join('/')}`);
      return labels.map((l, i) => [l, i * n, (i + 1) * n]);
    };
    if (/^double_blocks\.\d+\.(img|txt)_attn\.qkv\.(weight|bias)$/.test(name)) return even(['q', 'k', 'v']);
    if (/^double_blocks\.\d+\.(img|txt)_mod\.lin\.(weight|bias)$/.test(name)) return even(MOD6);
    if (/^single_blocks\.\d+\.modulation\.lin\.(weight|bias)$/.test(name)) return even(MOD3);
    if (/^final_layer\.adaLN_modulation\.1\.(weight|bias)$/.test(name)) return even(['shift', 'scale']);
    if (/^single_blocks\.\d+\.linear1\.(weight|bias)$/.test(name)) {
      const h = this.hidden();
      if (rows <= 3 * h) throw new LayoutError(this.tensors.path, `"${name}" has ${rows} rows; expected 3 × ${h} (q, k, v) plus the MLP width`);
      return [['q', 0, h], ['k', h, 2 * h], ['v', 2 * h, 3 * h], ['mlp', 3 * h, rows]];
    }
    return [['all', 0, rows]];
  }
}
