// What a FLUX.1 checkpoint on disk is: which component (DiT, VAE, CLIP, T5), in which naming
// (the original BFL/LDM one or diffusers/transformers), with which architecture numbers — and,
// for the DiT, one BFL-named view of the weights whatever naming the file uses, described as byte
// ranges of the user's files so graph builders can keep them memory-mapped.

import * as fs from 'node:fs';
import * as path from 'node:path';
import { DType, DTYPE_BYTES, toFloat16Bits, toFloat32 } from './dtypes';
import { ditExpectedShapes, ditShapeMismatches } from './ditShapes';
import { notRegularKind, readRegularFileSync } from '../system/regularFile';
import { elementCount, openTensors, SafetensorsError, TensorInfo, TensorSource } from './safetensors';

export class LayoutError extends Error {
  constructor(readonly path: string, problem: string) {
    super(`${path}: ${problem}`);
    this.name = 'LayoutError';
  }
}

// ─── Layout detection (names only) ──────────────────────────────────────────────────────────────

export type ComponentKind = 'dit' | 'vae' | 'clip' | 't5';
export type Layout = 'bfl-dit' | 'diffusers-dit' | 'ldm-vae' | 'diffusers-vae' | 'hf-clip' | 'hf-t5';

interface LayoutSpec {
  layout: Layout;
  kind: ComponentKind;
  description: string;
  /** Matches a tensor name only this layout has; group 1 is whatever prefix the file puts before it. */
  anchor: RegExp;
}

const LAYOUTS: LayoutSpec[] = [
  { layout: 'bfl-dit', kind: 'dit', description: 'FLUX.1 DiT, BFL single-file layout (double_blocks / single_blocks)', anchor: /^(.*?)(?:double_blocks\.\d+\.img_attn\.qkv|single_blocks\.\d+\.linear1)\.weight$/ },
  { layout: 'diffusers-dit', kind: 'dit', description: 'FLUX.1 DiT, diffusers FluxTransformer2DModel layout (transformer_blocks / single_transformer_blocks)', anchor: /^(.*?)(?:single_)?transformer_blocks\.\d+\.attn\.to_q\.weight$/ },
  { layout: 'ldm-vae', kind: 'vae', description: 'FLUX.1 autoencoder, LDM/BFL layout (ae.safetensors: encoder.down / decoder.up, 1×1-conv attention)', anchor: /^(.*?)(?:decoder\.up|encoder\.down)\.\d+\.block\.\d+\.conv1\.weight$/ },
  { layout: 'diffusers-vae', kind: 'vae', description: 'FLUX.1 autoencoder, diffusers AutoencoderKL layout (down_blocks / up_blocks, Linear attention)', anchor: /^(.*?)(?:decoder\.up_blocks|encoder\.down_blocks)\.\d+\.resnets\.\d+\.conv1\.weight$/ },
  { layout: 'hf-clip', kind: 'clip', description: 'CLIP text encoder, transformers CLIPTextModel layout', anchor: /^(.*?)encoder\.layers\.\d+\.self_attn\.q_proj\.weight$/ },
  { layout: 'hf-t5', kind: 't5', description: 'T5 text encoder, transformers T5EncoderModel layout', anchor: /^(.*?)encoder\.block\.\d+\.layer\.0\.SelfAttention\.q\.weight$/ },
];

const KIND_ORDER: ComponentKind[] = ['dit', 'vae', 'clip', 't5'];

export const KIND_NAMES: Record<ComponentKind, string> = { dit: 'DiT (transformer)', vae: 'VAE (autoencoder)', clip: 'CLIP text encoder', t5: 'T5 text encoder' };

export function layoutKind(layout: Layout): ComponentKind {
  return LAYOUTS.find((l) => l.layout === layout)!.kind;
}

export function describeLayout(layout: Layout): string {
  return LAYOUTS.find((l) => l.layout === layout)!.description;
}

export interface LayoutMatch {
  layout: Layout;
  kind: ComponentKind;
  /** Prefix the file puts before the layout's names, e.g. `model.diffusion_model.` ('' for none). */
  prefix: string;
}

/** Every component a set of tensor names holds (all-in-one checkpoints hold several), by names alone. */
export function detectLayouts(names: Iterable<string>): LayoutMatch[] {
  const found = new Map<string, LayoutMatch>();
  for (const name of names) {
    for (const spec of LAYOUTS) {
      const m = spec.anchor.exec(name);
      if (m) found.set(`${spec.layout}\0${m[1]}`, { layout: spec.layout, kind: spec.kind, prefix: m[1] });
    }
  }
  return [...found.values()].sort((a, b) => KIND_ORDER.indexOf(a.kind) - KIND_ORDER.indexOf(b.kind) || a.prefix.length - b.prefix.length);
}

// ─── A source seen without its prefix ───────────────────────────────────────────────────────────

/**
 * The tensors of `inner` whose names start with `prefix`, named without it — minus those under
 * `others`, the longer prefixes of other components in the same file.
 */
class PrefixedTensors implements TensorSource {
  private readonly stripped: Set<string>;

  constructor(private readonly inner: TensorSource, private readonly prefix: string, others: string[]) {
    const mine = (n: string) => n.startsWith(prefix) && !others.some((o) => o.length > prefix.length && n.startsWith(o));
    this.stripped = new Set(inner.names().filter(mine).map((n) => n.slice(prefix.length)));
  }

  get path(): string {
    return this.inner.path;
  }

  names(): string[] {
    return [...this.stripped];
  }

  has(name: string): boolean {
    return this.stripped.has(name);
  }

  private full(name: string): string {
    if (!this.stripped.has(name)) throw new SafetensorsError(this.inner.path, `no tensor named "${this.prefix}${name}"`);
    return this.prefix + name;
  }

  /** Named as this view names it (`info(n).name === n`); file and offset locate the bytes. */
  info(name: string): TensorInfo {
    return { ...this.inner.info(this.full(name)), name };
  }

  readBytes(name: string): Buffer {
    return this.inner.readBytes(this.full(name));
  }

  readF32(name: string): Float32Array {
    return this.inner.readF32(this.full(name));
  }

  readF16(name: string): Uint16Array {
    return this.inner.readF16(this.full(name));
  }

  close(): void {
    this.inner.close();
  }
}

/** The source seen as one component: its prefix removed, other components' tensors hidden. */
function componentView(source: TensorSource, prefix: string, otherPrefixes: string[]): TensorSource {
  const nested = otherPrefixes.filter((o) => o.length > prefix.length && o.startsWith(prefix));
  return prefix || nested.length ? new PrefixedTensors(source, prefix, nested) : source;
}

// ─── Pieces: logical tensors as row ranges of file tensors ──────────────────────────────────────

/** Rows [start, end) of a tensor in a file. Rows (first dimension) of a row-major tensor are one contiguous byte range. */
export interface TensorPiece {
  source: TensorInfo;
  rows: [number, number];
  /** [end - start, ...source.shape.slice(1)] (the source's shape when it is whole). */
  shape: number[];
  /** Absolute byte offset in source.file. */
  offset: number;
  byteLength: number;
  /** The piece is the entire source tensor. */
  whole: boolean;
}

/** A tensor under its BFL name: the concatenation along dim 0 of its pieces, in order. */
export interface LogicalTensor {
  name: string;
  dtype: DType;
  shape: number[];
  pieces: TensorPiece[];
}

/** A named section of a fused tensor (q, k, v, mlp; shift, scale, gate…): always one contiguous piece. */
export interface TensorPart {
  part: string;
  piece: TensorPiece;
}

function rowCount(shape: readonly number[]): number {
  return shape.length ? shape[0] : 1;
}

function rowBytes(t: TensorInfo): number {
  return elementCount(t.shape.slice(1)) * DTYPE_BYTES[t.dtype];
}

export function pieceOf(source: TensorInfo, start = 0, end = rowCount(source.shape)): TensorPiece {
  const rb = rowBytes(source);
  const whole = start === 0 && end === rowCount(source.shape);
  return {
    source,
    rows: [start, end],
    shape: whole ? [...source.shape] : [end - start, ...source.shape.slice(1)],
    offset: source.offset + start * rb,
    byteLength: (end - start) * rb,
    whole,
  };
}

/** Logical rows [start, end) of a concatenation of pieces. */
function sliceRows(pieces: TensorPiece[], start: number, end: number): TensorPiece[] {
  const out: TensorPiece[] = [];
  let base = 0;
  for (const p of pieces) {
    const n = p.rows[1] - p.rows[0];
    const s = Math.max(start, base);
    const e = Math.min(end, base + n);
    if (s < e) out.push(pieceOf(p.source, p.rows[0] + s - base, p.rows[0] + e - base));
    base += n;
  }
  return out;
}

/** Reads a byte range of a file (the pieces of one tensor may lie in several files). */
export function readPiece(p: TensorPiece): Buffer {
  const buf = Buffer.allocUnsafe(p.byteLength);
  const fd = fs.openSync(p.source.file, 'r');
  try {
    let done = 0;
    while (done < p.byteLength) {
      const n = fs.readSync(fd, buf, done, p.byteLength - done, p.offset + done);
      if (n === 0) throw new SafetensorsError(p.source.file, `unexpected end of file while reading tensor "${p.source.name}"`);
      done += n;
    }
  } finally {
    fs.closeSync(fd);
  }
  return buf;
}

// ─── BFL ⇄ diffusers DiT names ──────────────────────────────────────────────────────────────────

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

interface NameRule {
  /** Source tensors, concatenated along dim 0. */
  sources: string[];
  /** The single source's two row halves are stored in the opposite order (diffusers AdaLayerNormContinuous: scale, shift; BFL: shift, scale). */
  swapHalves?: boolean;
}

/** BFL name → how to assemble it from diffusers tensors, for blocks 0..depth-1 and 0..singles-1. */
function diffusersRules(depth: number, singles: number): Map<string, NameRule> {
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

/** 1 + the largest N in names matching `re` (group 1 = N); 0 when none match. */
function countIndexed(names: Iterable<string>, re: RegExp): number {
  let n = 0;
  for (const name of names) {
    const m = re.exec(name);
    if (m) n = Math.max(n, Number(m[1]) + 1);
  }
  return n;
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

// ─── Architecture configs ───────────────────────────────────────────────────────────────────────

/** BFL `FluxParams`. */
export interface DitConfig {
  in_channels: number;
  out_channels: number;
  vec_in_dim: number;
  context_in_dim: number;
  hidden_size: number;
  mlp_ratio: number;
  num_heads: number;
  depth: number;
  depth_single_blocks: number;
  axes_dim: number[];
  theta: number;
  qkv_bias: boolean;
  guidance_embed: boolean;
}

/** BFL `AutoEncoderParams`. */
export interface VaeConfig {
  resolution: number;
  in_channels: number;
  ch: number;
  out_ch: number;
  ch_mult: number[];
  num_res_blocks: number;
  z_channels: number;
  scale_factor: number;
  shift_factor: number;
}

/** transformers `CLIPTextConfig` (the fields inference needs). */
export interface ClipConfig {
  vocab_size: number;
  hidden_size: number;
  intermediate_size: number;
  num_hidden_layers: number;
  num_attention_heads: number;
  max_position_embeddings: number;
  layer_norm_eps: number;
  hidden_act: string;
}

/** transformers `T5Config` (encoder fields). */
export interface T5Config {
  vocab_size: number;
  d_model: number;
  d_kv: number;
  d_ff: number;
  num_layers: number;
  num_heads: number;
  relative_attention_num_buckets: number;
  relative_attention_max_distance: number;
  layer_norm_epsilon: number;
  is_gated_act: boolean;
  dense_act_fn: string;
}

type Json = Record<string, unknown>;

/** Config values read from tensor shapes, plus defaults for what shapes cannot tell. */
interface Derived<C> {
  config: C;
  /** Fields measured from shapes: a config file that disagrees does not belong to these tensors. */
  measured: Set<keyof C>;
  /** Fields filled with an assumption, with a note saying so (dropped when a config file gives the field). */
  assumed: Partial<Record<keyof C, string>>;
  /** Notes that hold whatever the config says. */
  notes: string[];
}

/** Shape of a tensor the derivation relies on; its absence is reported as an incomplete checkpoint. */
type Need = (name: string) => number[];

const FLUX_HEAD_DIM = 128;
const FLUX_AXES = [16, 56, 56];

function deriveDit(w: DitWeights, need: Need): Derived<DitConfig> {
  const img = need('img_in.weight');
  const hidden = img[0];
  const assumed: Derived<DitConfig>['assumed'] = {};
  const measured = new Set<keyof DitConfig>(['in_channels', 'out_channels', 'vec_in_dim', 'context_in_dim', 'hidden_size', 'depth', 'depth_single_blocks', 'qkv_bias', 'guidance_embed']);
  const qNorm = 'double_blocks.0.img_attn.norm.query_norm.scale';
  let headDim = FLUX_HEAD_DIM;
  if (w.has(qNorm)) {
    headDim = need(qNorm)[0];
    measured.add('num_heads');
  } else {
    assumed.num_heads = `attention heads assumed hidden_size / ${FLUX_HEAD_DIM} (FLUX.1 head dim)`;
  }
  let axes = FLUX_AXES;
  if (headDim !== FLUX_HEAD_DIM) {
    // Keep FLUX.1's proportions (1/8 index axis, 7/16 per spatial axis) with even sizes.
    const spatial = 2 * Math.round((7 * headDim) / 32);
    axes = [headDim - 2 * spatial, spatial, spatial];
    assumed.axes_dim = `RoPE axes guessed as ${JSON.stringify(axes)} for head dim ${headDim}: FLUX.1 uses [16, 56, 56] for head dim 128; give the real ones in a config`;
  }
  let mlpRatio = 4;
  const mlp = 'double_blocks.0.img_mlp.0.weight';
  if (w.has(mlp)) {
    mlpRatio = need(mlp)[0] / hidden;
    measured.add('mlp_ratio');
  }
  const config: DitConfig = {
    in_channels: img[1],
    out_channels: need('final_layer.linear.weight')[0],
    vec_in_dim: need('vector_in.in_layer.weight')[1],
    context_in_dim: need('txt_in.weight')[1],
    hidden_size: hidden,
    mlp_ratio: mlpRatio,
    num_heads: hidden / headDim,
    depth: w.depth,
    depth_single_blocks: w.depthSingle,
    axes_dim: axes,
    theta: 10000,
    qkv_bias: w.depth > 0 ? w.has('double_blocks.0.img_attn.qkv.bias') : true,
    guidance_embed: w.has('guidance_in.in_layer.weight'),
  };
  return { config, measured, assumed, notes: [] };
}

function ditFromJson(j: Json, file: string): Partial<DitConfig> {
  const c: Partial<DitConfig> = {};
  const r = fieldReader(j, file);
  // BFL FluxParams names.
  c.in_channels = r.int('in_channels');
  c.out_channels = r.intOrNull('out_channels') ?? undefined;
  c.vec_in_dim = r.int('vec_in_dim');
  c.context_in_dim = r.int('context_in_dim');
  c.hidden_size = r.int('hidden_size');
  c.mlp_ratio = r.num('mlp_ratio');
  c.num_heads = r.int('num_heads');
  c.depth = r.int('depth');
  c.depth_single_blocks = r.int('depth_single_blocks');
  c.axes_dim = r.ints('axes_dim');
  c.theta = r.num('theta');
  c.qkv_bias = r.bool('qkv_bias');
  c.guidance_embed = r.bool('guidance_embed');
  // diffusers FluxTransformer2DModel names.
  const heads = r.int('num_attention_heads');
  const headDim = r.int('attention_head_dim');
  if (heads !== undefined) c.num_heads = heads;
  if (heads !== undefined && headDim !== undefined) c.hidden_size = heads * headDim;
  c.depth ??= r.int('num_layers');
  c.depth_single_blocks ??= r.int('num_single_layers');
  c.context_in_dim ??= r.int('joint_attention_dim');
  c.vec_in_dim ??= r.int('pooled_projection_dim');
  c.axes_dim ??= r.ints('axes_dims_rope');
  c.guidance_embed ??= r.bool('guidance_embeds');
  if (j.out_channels === null && c.in_channels !== undefined) c.out_channels = c.in_channels;
  return c;
}

function deriveVae(src: TensorSource, layout: 'ldm-vae' | 'diffusers-vae', need: Need): Derived<VaeConfig> & { hasEncoder: boolean } {
  const names = src.names();
  const ldm = layout === 'ldm-vae';
  const hasEncoder = src.has('encoder.conv_in.weight');
  const ch = hasEncoder ? need('encoder.conv_in.weight')[0] : need('decoder.conv_out.weight')[1];
  const levels = countIndexed(names, ldm ? /^decoder\.up\.(\d+)\./ : /^decoder\.up_blocks\.(\d+)\./);
  // Level i's output width is ch × ch_mult[i]; diffusers numbers decoder levels deepest first.
  const chMult = Array.from({ length: levels }, (_, i) =>
    need(ldm ? `decoder.up.${i}.block.0.conv2.weight` : `decoder.up_blocks.${levels - 1 - i}.resnets.0.conv2.weight`)[0] / ch);
  const numRes = hasEncoder
    ? countIndexed(names, ldm ? /^encoder\.down\.0\.block\.(\d+)\./ : /^encoder\.down_blocks\.0\.resnets\.(\d+)\./)
    : countIndexed(names, ldm ? /^decoder\.up\.0\.block\.(\d+)\./ : /^decoder\.up_blocks\.0\.resnets\.(\d+)\./) - 1;
  const config: VaeConfig = {
    resolution: 256,
    in_channels: hasEncoder ? need('encoder.conv_in.weight')[1] : 3,
    ch,
    out_ch: need('decoder.conv_out.weight')[0],
    ch_mult: chMult,
    num_res_blocks: numRes,
    z_channels: need('decoder.conv_in.weight')[1],
    scale_factor: 0.3611,
    shift_factor: 0.1159,
  };
  const measured = new Set<keyof VaeConfig>(['ch', 'out_ch', 'ch_mult', 'num_res_blocks', 'z_channels']);
  if (hasEncoder) measured.add('in_channels');
  const notes = hasEncoder ? [] : ['decoder only (no encoder tensors): image-to-image is not possible'];
  const assumed = { scale_factor: 'latent scale_factor 0.3611 and shift_factor 0.1159 are the FLUX.1 values' };
  return { config, measured, assumed, notes, hasEncoder };
}

function vaeFromJson(j: Json, file: string): Partial<VaeConfig> {
  const r = fieldReader(j, file);
  const c: Partial<VaeConfig> = {
    resolution: r.int('resolution') ?? r.int('sample_size'),
    in_channels: r.int('in_channels'),
    ch: r.int('ch'),
    out_ch: r.int('out_ch') ?? r.int('out_channels'),
    ch_mult: r.ints('ch_mult'),
    num_res_blocks: r.int('num_res_blocks') ?? r.int('layers_per_block'),
    z_channels: r.int('z_channels') ?? r.int('latent_channels'),
    scale_factor: r.num('scale_factor') ?? r.num('scaling_factor'),
    shift_factor: r.numOrNull('shift_factor') ?? undefined,
  };
  const blocks = r.ints('block_out_channels');
  if (blocks && blocks.length) {
    c.ch ??= blocks[0];
    c.ch_mult ??= blocks.map((b) => b / blocks[0]);
  }
  return c;
}

function deriveClip(src: TensorSource, need: Need): Derived<ClipConfig> {
  const tok = need('embeddings.token_embedding.weight');
  const hidden = tok[1];
  const config: ClipConfig = {
    vocab_size: tok[0],
    hidden_size: hidden,
    intermediate_size: need('encoder.layers.0.mlp.fc1.weight')[0],
    num_hidden_layers: countIndexed(src.names(), /^encoder\.layers\.(\d+)\./),
    num_attention_heads: hidden / 64,
    max_position_embeddings: need('embeddings.position_embedding.weight')[0],
    layer_norm_eps: 1e-5,
    hidden_act: 'quick_gelu',
  };
  const measured = new Set<keyof ClipConfig>(['vocab_size', 'hidden_size', 'intermediate_size', 'num_hidden_layers', 'max_position_embeddings']);
  const assumed = { num_attention_heads: `attention heads assumed ${hidden / 64} (hidden_size / 64, as in CLIP ViT-L/14)` };
  const notes = src.has('text_projection.weight') ? ['has text_projection (CLIPTextModelWithProjection); FLUX.1 uses the pooled output without it'] : [];
  return { config, measured, assumed, notes };
}

function clipFromJson(j: Json, file: string): Partial<ClipConfig> {
  const r = fieldReader(j, file);
  return {
    vocab_size: r.int('vocab_size'),
    hidden_size: r.int('hidden_size'),
    intermediate_size: r.int('intermediate_size'),
    num_hidden_layers: r.int('num_hidden_layers'),
    num_attention_heads: r.int('num_attention_heads'),
    max_position_embeddings: r.int('max_position_embeddings'),
    layer_norm_eps: r.num('layer_norm_eps'),
    hidden_act: r.str('hidden_act'),
  };
}

const T5_EMBEDDING = ['shared.weight', 'encoder.embed_tokens.weight'];

function deriveT5(src: TensorSource, need: Need): Derived<T5Config> {
  const emb = need(T5_EMBEDDING.find((n) => src.has(n)) ?? T5_EMBEDDING[0]);
  const bias = need('encoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight');
  const heads = bias[1];
  const gated = src.has('encoder.block.0.layer.1.DenseReluDense.wi_0.weight');
  const config: T5Config = {
    vocab_size: emb[0],
    d_model: emb[1],
    d_kv: need('encoder.block.0.layer.0.SelfAttention.q.weight')[0] / heads,
    d_ff: need(`encoder.block.0.layer.1.DenseReluDense.${gated ? 'wi_0' : 'wi'}.weight`)[0],
    num_layers: countIndexed(src.names(), /^encoder\.block\.(\d+)\./),
    num_heads: heads,
    relative_attention_num_buckets: bias[0],
    relative_attention_max_distance: 128,
    layer_norm_epsilon: 1e-6,
    is_gated_act: gated,
    dense_act_fn: gated ? 'gelu_new' : 'relu',
  };
  const measured = new Set<keyof T5Config>(['vocab_size', 'd_model', 'd_kv', 'd_ff', 'num_layers', 'num_heads', 'relative_attention_num_buckets', 'is_gated_act']);
  return { config, measured, assumed: {}, notes: [] };
}

function t5FromJson(j: Json, file: string): Partial<T5Config> {
  const r = fieldReader(j, file);
  const ffProj = r.str('feed_forward_proj');
  const act = r.str('dense_act_fn');
  return {
    vocab_size: r.int('vocab_size'),
    d_model: r.int('d_model'),
    d_kv: r.int('d_kv'),
    d_ff: r.int('d_ff'),
    num_layers: r.int('num_layers'),
    num_heads: r.int('num_heads'),
    relative_attention_num_buckets: r.int('relative_attention_num_buckets'),
    relative_attention_max_distance: r.int('relative_attention_max_distance'),
    layer_norm_epsilon: r.num('layer_norm_epsilon'),
    is_gated_act: r.bool('is_gated_act') ?? (ffProj ? ffProj.startsWith('gated-') : undefined),
    dense_act_fn: act ?? (ffProj ? ffProj.replace(/^gated-/, '') : undefined),
  };
}

/** Typed reads of optional config fields; a present field of the wrong type is an error naming the file. */
function fieldReader(j: Json, file: string) {
  const bad = (key: string, want: string) => new LayoutError(file, `"${key}" should be ${want}, found ${JSON.stringify(j[key])}`);
  const get = <T>(key: string, ok: (v: unknown) => boolean, want: string): T | undefined => {
    if (!(key in j) || j[key] === undefined) return undefined;
    if (!ok(j[key])) throw bad(key, want);
    return j[key] as T;
  };
  const isInt = (v: unknown) => Number.isSafeInteger(v) && (v as number) >= 0;
  const isNum = (v: unknown) => typeof v === 'number' && Number.isFinite(v);
  return {
    int: (k: string) => get<number>(k, isInt, 'a whole number'),
    intOrNull: (k: string) => (j[k] === null ? undefined : get<number>(k, isInt, 'a whole number')),
    num: (k: string) => get<number>(k, isNum, 'a number'),
    numOrNull: (k: string) => (j[k] === null ? undefined : get<number>(k, isNum, 'a number')),
    ints: (k: string) => get<number[]>(k, (v) => Array.isArray(v) && v.every(isInt), 'a list of whole numbers'),
    bool: (k: string) => get<boolean>(k, (v) => typeof v === 'boolean', 'true or false'),
    str: (k: string) => get<string>(k, (v) => typeof v === 'string', 'a string'),
  };
}

/** Which component a config file describes, when it says; undefined when it gives no hint. */
function configKind(j: Json): ComponentKind | undefined {
  const arch = typeof j.architecture === 'string' ? j.architecture : '';
  if (arch === 'flux') return 'dit';
  if (arch === 'flux-ae' || arch === 'flux-vae') return 'vae';
  const cls = typeof j._class_name === 'string' ? j._class_name : '';
  if (cls === 'FluxTransformer2DModel') return 'dit';
  if (cls === 'AutoencoderKL') return 'vae';
  const archs = Array.isArray(j.architectures) ? j.architectures.join(' ') : '';
  if (j.model_type === 'clip_text_model' || /CLIPText/.test(archs)) return 'clip';
  if (j.model_type === 't5' || /T5Encoder/.test(archs)) return 't5';
  if ('depth_single_blocks' in j || 'num_single_layers' in j) return 'dit';
  if ('ch_mult' in j || 'z_channels' in j || 'block_out_channels' in j) return 'vae';
  if ('d_model' in j) return 't5';
  return undefined;
}

/** Config files are a few KB; anything near this is not one. */
const MAX_CONFIG_BYTES = 16 * 2 ** 20;

function readJson(file: string): Json {
  const text = readRegularFileSync(file, MAX_CONFIG_BYTES, (problem, why) => new LayoutError(file, why.code ? `cannot read: ${why.code}` : problem)).toString('utf8');
  let j: unknown;
  try {
    j = JSON.parse(text);
  } catch (e) {
    throw new LayoutError(file, `is not valid JSON (${(e as Error).message})`);
  }
  if (typeof j !== 'object' || j === null || Array.isArray(j)) throw new LayoutError(file, 'is not a JSON object');
  return j as Json;
}

const STANDARD_WEIGHT_FILE = /^(model|diffusion_pytorch_model)(-\d+-of-\d+)?\.safetensors(\.index\.json)?$/;

/**
 * The config file for tensors opened from `opened`: a sidecar `<name>.config.json` beside a
 * `<name>.safetensors`, else the `config.json` of a component folder (diffusers/transformers).
 */
function configFileFor(opened: string, files: string[]): string | undefined {
  const isDir = fs.statSync(opened).isDirectory();
  if (!isDir) {
    const sidecar = opened.replace(/(\.safetensors(\.index\.json)?)$/, '') + '.config.json';
    if (sidecar !== opened && fs.existsSync(sidecar)) return sidecar;
  }
  const dir = isDir ? opened : path.dirname(opened);
  const folderConfig = path.join(dir, 'config.json');
  const standard = isDir || files.every((f) => STANDARD_WEIGHT_FILE.test(path.basename(f))) || STANDARD_WEIGHT_FILE.test(path.basename(opened));
  return standard && fs.existsSync(folderConfig) ? folderConfig : undefined;
}

/** Merges a config file (if any) over the derived values; rejects one that contradicts the tensors. */
function applyConfig<C extends object>(derived: Derived<C>, fromFile: Partial<C> | undefined, file: string | undefined, tensorsPath: string): { config: C; notes: string[] } {
  const config = { ...derived.config };
  const given = new Set<keyof C>();
  for (const [k, v] of Object.entries(fromFile ?? {}) as Array<[keyof C, C[keyof C] | undefined]>) {
    if (v === undefined) continue;
    const measured = derived.config[k];
    const same = JSON.stringify(measured) === JSON.stringify(v) || (typeof v === 'number' && typeof measured === 'number' && Math.abs(v - measured) < 1e-9);
    if (derived.measured.has(k) && !same) {
      throw new LayoutError(file!, `says ${String(k)} = ${JSON.stringify(v)}, but the tensors in ${tensorsPath} have ${JSON.stringify(measured)}: the config does not belong to these weights`);
    }
    config[k] = v;
    given.add(k);
  }
  const assumptions = (Object.entries(derived.assumed) as Array<[keyof C, string]>).filter(([k]) => !given.has(k)).map(([, note]) => note);
  return { config, notes: [...assumptions, ...derived.notes] };
}

// ─── Required tensors ───────────────────────────────────────────────────────────────────────────

/** BFL names a DiT graph needs. */
export function ditRequiredNames(c: DitConfig): string[] {
  return [...ditExpectedShapes(c).keys()];
}

function vaeRequiredNames(c: VaeConfig, layout: 'ldm-vae' | 'diffusers-vae', encoder: boolean): string[] {
  const names: string[] = [];
  const wb = (stem: string) => names.push(`${stem}.weight`, `${stem}.bias`);
  const ldm = layout === 'ldm-vae';
  const resnet = (stem: string, cin: number, cout: number) => {
    for (const p of ['norm1', 'conv1', 'norm2', 'conv2']) wb(`${stem}.${p}`);
    if (cin !== cout) wb(`${stem}.${ldm ? 'nin_shortcut' : 'conv_shortcut'}`);
  };
  const mid = (side: 'encoder' | 'decoder', width: number) => {
    if (ldm) {
      resnet(`${side}.mid.block_1`, width, width);
      resnet(`${side}.mid.block_2`, width, width);
      for (const p of ['norm', 'q', 'k', 'v', 'proj_out']) wb(`${side}.mid.attn_1.${p}`);
    } else {
      resnet(`${side}.mid_block.resnets.0`, width, width);
      resnet(`${side}.mid_block.resnets.1`, width, width);
      for (const p of ['group_norm', 'to_q', 'to_k', 'to_v', 'to_out.0']) wb(`${side}.mid_block.attentions.0.${p}`);
    }
  };
  const L = c.ch_mult.length;
  const width = (i: number) => c.ch * c.ch_mult[i];
  if (encoder) {
    wb('encoder.conv_in');
    let cin = c.ch;
    for (let i = 0; i < L; i++) {
      for (let j = 0; j < c.num_res_blocks; j++) {
        resnet(ldm ? `encoder.down.${i}.block.${j}` : `encoder.down_blocks.${i}.resnets.${j}`, cin, width(i));
        cin = width(i);
      }
      if (i !== L - 1) wb(ldm ? `encoder.down.${i}.downsample.conv` : `encoder.down_blocks.${i}.downsamplers.0.conv`);
    }
    mid('encoder', width(L - 1));
    wb(ldm ? 'encoder.norm_out' : 'encoder.conv_norm_out');
    wb('encoder.conv_out');
  }
  wb('decoder.conv_in');
  mid('decoder', width(L - 1));
  let cin = width(L - 1);
  for (let i = L - 1; i >= 0; i--) {
    const level = ldm ? `decoder.up.${i}` : `decoder.up_blocks.${L - 1 - i}`;
    for (let j = 0; j <= c.num_res_blocks; j++) {
      resnet(ldm ? `${level}.block.${j}` : `${level}.resnets.${j}`, cin, width(i));
      cin = width(i);
    }
    if (i !== 0) wb(ldm ? `${level}.upsample.conv` : `${level}.upsamplers.0.conv`);
  }
  wb(ldm ? 'decoder.norm_out' : 'decoder.conv_norm_out');
  wb('decoder.conv_out');
  return names;
}

function clipRequiredNames(c: ClipConfig): string[] {
  const names = ['embeddings.token_embedding.weight', 'embeddings.position_embedding.weight', 'final_layer_norm.weight', 'final_layer_norm.bias'];
  for (let i = 0; i < c.num_hidden_layers; i++) {
    for (const p of ['self_attn.q_proj', 'self_attn.k_proj', 'self_attn.v_proj', 'self_attn.out_proj', 'layer_norm1', 'layer_norm2', 'mlp.fc1', 'mlp.fc2']) {
      names.push(`encoder.layers.${i}.${p}.weight`, `encoder.layers.${i}.${p}.bias`);
    }
  }
  return names;
}

function t5RequiredNames(c: T5Config): string[] {
  const names = ['encoder.final_layer_norm.weight', 'encoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight'];
  const ff = c.is_gated_act ? ['wi_0', 'wi_1', 'wo'] : ['wi', 'wo'];
  for (let i = 0; i < c.num_layers; i++) {
    const b = `encoder.block.${i}`;
    for (const p of ['q', 'k', 'v', 'o']) names.push(`${b}.layer.0.SelfAttention.${p}.weight`);
    names.push(`${b}.layer.0.layer_norm.weight`, `${b}.layer.1.layer_norm.weight`);
    for (const p of ff) names.push(`${b}.layer.1.DenseReluDense.${p}.weight`);
  }
  return names;
}

function listSome(names: string[], max = 6): string {
  return names.slice(0, max).join(', ') + (names.length > max ? `, … (${names.length - max} more)` : '');
}

function assertComplete(kind: ComponentKind, layout: Layout, at: string, missing: string[]): void {
  if (!missing.length) return;
  throw new LayoutError(at, `${KIND_NAMES[kind]} (${describeLayout(layout)}) is missing ${missing.length} tensor${missing.length > 1 ? 's' : ''}: ${listSome(missing)} — the checkpoint is incomplete or not a FLUX.1 model`);
}

/** Every tensor the graph reads has the architecture's shape (same element count is not enough). */
function assertDitShapes(at: string, c: DitConfig, weights: DitWeights): void {
  const wrong = ditShapeMismatches(c, (n) => weights.tensor(n).shape);
  if (!wrong.length) return;
  const { name, expected, actual } = wrong[0];
  const sources = weights.sourceNames(name);
  const label = sources.length === 1 && sources[0] !== name ? `"${sources[0]}" (BFL "${name}")` : `"${name}"`;
  const arch = `hidden_size ${c.hidden_size}, ${c.num_heads} heads, mlp_ratio ${c.mlp_ratio}`;
  const more = wrong.length > 1 ? ` (and ${wrong.length - 1} more tensor${wrong.length > 2 ? 's' : ''} with the wrong shape)` : '';
  throw new LayoutError(at, `DiT tensor ${label} has shape ${JSON.stringify(actual)}; the architecture (${arch}) needs ${JSON.stringify(expected)}${more}: the checkpoint is corrupt, or not a FLUX.1 DiT`);
}

/** Shape checks a derivation relies on; failing them means the tensors are not FLUX-shaped or need a config. */
function checkWhole(at: string, what: string, v: number): number {
  if (!Number.isInteger(v) || v <= 0) {
    throw new LayoutError(at, `${what} comes out as ${v} from the tensor shapes and FLUX.1 defaults: not a FLUX.1-shaped checkpoint, or one that needs its config.json (or <name>.config.json) beside it`);
  }
  return v;
}

// ─── Components ─────────────────────────────────────────────────────────────────────────────────

interface ComponentBase {
  layout: Layout;
  /** What was opened: a .safetensors file, a .safetensors.index.json, or a component folder. */
  path: string;
  /** The .safetensors files holding the tensors. */
  files: string[];
  /** Prefix removed from the file's names ('' for none). */
  prefix: string;
  /** The tensors, under the layout's names (prefix removed). */
  tensors: TensorSource;
  /** The config file used, or undefined when everything came from tensor shapes and FLUX.1 defaults. */
  configFile?: string;
  /** Assumptions made for values neither a config nor the shapes give. */
  notes: string[];
  /** Closes the files (they reopen on the next read). */
  close(): void;
}

export interface DitComponent extends ComponentBase { kind: 'dit'; config: DitConfig; weights: DitWeights }
export interface VaeComponent extends ComponentBase { kind: 'vae'; config: VaeConfig; hasEncoder: boolean }
export interface ClipComponent extends ComponentBase { kind: 'clip'; config: ClipConfig }
export interface T5Component extends ComponentBase { kind: 't5'; config: T5Config }
export type Component = DitComponent | VaeComponent | ClipComponent | T5Component;

function buildComponent(opened: string, source: TensorSource, match: LayoutMatch, otherPrefixes: string[], configFile: string | undefined): Component {
  const tensors = componentView(source, match.prefix, otherPrefixes);
  const at = source.path;
  const files = [...new Set(tensors.names().map((n) => tensors.info(n).file))];
  let json: Json | undefined;
  if (configFile) {
    json = readJson(configFile);
    const says = configKind(json);
    if (says !== undefined && says !== match.kind) {
      json = undefined;
      configFile = undefined;
    }
  }
  const base = { layout: match.layout, path: opened, files, prefix: match.prefix, tensors, configFile, close: () => tensors.close() };
  const absent = (names: string[]) => names.filter((n) => !tensors.has(n));
  const need: Need = (name) => {
    assertComplete(match.kind, match.layout, at, absent([name]));
    return tensors.info(name).shape;
  };

  switch (match.kind) {
    case 'dit': {
      const weights = new DitWeights(tensors, match.layout as 'bfl-dit' | 'diffusers-dit');
      const missingSources = (bfl: string[]) => [...new Set(bfl.filter((n) => !weights.has(n)).flatMap((n) => {
        const s = weights.sourceNames(n).filter((x) => !tensors.has(x));
        return s.length ? s : [n];
      }))];
      const ditNeed: Need = (name) => {
        assertComplete('dit', match.layout, at, missingSources([name]));
        return weights.tensor(name).shape;
      };
      const d = deriveDit(weights, ditNeed);
      checkWhole(at, 'the number of attention heads', d.config.num_heads);
      const { config, notes } = applyConfig(d, json && ditFromJson(json, configFile!), configFile, at);
      assertComplete('dit', match.layout, at, missingSources(ditRequiredNames(config)));
      assertDitShapes(at, config, weights);
      const unused = weights.unused();
      if (unused.length) notes.push(`${unused.length} tensor${unused.length > 1 ? 's' : ''} not used by FLUX.1: ${listSome(unused, 3)}`);
      return { ...base, kind: 'dit', config, weights, notes };
    }
    case 'vae': {
      const layout = match.layout as 'ldm-vae' | 'diffusers-vae';
      const d = deriveVae(tensors, layout, need);
      d.config.ch_mult.forEach((m, i) => checkWhole(at, `ch_mult[${i}]`, m));
      const { config, notes } = applyConfig(d, json && vaeFromJson(json, configFile!), configFile, at);
      assertComplete('vae', layout, at, absent(vaeRequiredNames(config, layout, d.hasEncoder)));
      return { ...base, kind: 'vae', config, hasEncoder: d.hasEncoder, notes };
    }
    case 'clip': {
      const { config, notes } = applyConfig(deriveClip(tensors, need), json && clipFromJson(json, configFile!), configFile, at);
      checkWhole(at, 'the number of attention heads', config.num_attention_heads);
      assertComplete('clip', match.layout, at, absent(clipRequiredNames(config)));
      return { ...base, kind: 'clip', config, notes };
    }
    case 't5': {
      const d = deriveT5(tensors, need);
      checkWhole(at, 'd_kv', d.config.d_kv);
      const { config, notes } = applyConfig(d, json && t5FromJson(json, configFile!), configFile, at);
      assertComplete('t5', match.layout, at, absent(t5RequiredNames(config)));
      return { ...base, kind: 't5', config, notes };
    }
  }
}

/**
 * Every FLUX.1 component in a checkpoint: a `.safetensors` file, a `.safetensors.index.json`, or a
 * component folder (`transformer/`, `vae/`, `text_encoder/`, `text_encoder_2/`). Throws a
 * LayoutError or SafetensorsError that names the file and the problem.
 */
export function openComponents(p: string): Component[] {
  const abs = path.resolve(p);
  if (fs.existsSync(abs) && fs.statSync(abs).isDirectory()) {
    if (isModelFolder(abs)) throw new LayoutError(abs, 'is a whole model folder, not one component: open it with openModel()');
    const entries = listFolder(abs).map((e) => e.label);
    if (!entries.some((e) => e.endsWith('.safetensors') || e.endsWith('.safetensors.index.json'))) {
      const expected = Object.values(SUBFOLDERS).map((s) => `${s}/`).join(', ');
      throw new LayoutError(abs, `not a FLUX.1 model or component: no .safetensors file here and none of ${expected}. Found: ${entries.length ? listSome(entries, 12) : 'nothing (empty folder)'}`);
    }
  }
  const source = openTensors(abs);
  try {
    const names = source.names();
    const matches = detectLayouts(names);
    if (!matches.length) {
      throw new LayoutError(source.path, `not a FLUX.1 component: its ${names.length} tensor names match none of the known layouts (${LAYOUTS.map((l) => l.layout).join(', ')}). First names: ${listSome(names.slice(0, 5), 5) || '(none)'}`);
    }
    const files = [...new Set(names.map((n) => source.info(n).file))];
    const configFile = configFileFor(abs, files);
    const prefixes = matches.map((m) => m.prefix);
    return matches.map((m) => buildComponent(abs, source, m, prefixes, configFile));
  } catch (e) {
    source.close();
    throw e;
  }
}

/** The one component of the given kind (or the only component) in a checkpoint. */
export function openComponent<K extends ComponentKind>(p: string, kind?: K): Extract<Component, { kind: K }> {
  const all = openComponents(p);
  const wanted = kind ? all.filter((c) => c.kind === kind) : all;
  const at = path.resolve(p);
  if (wanted.length !== 1) for (const c of all) c.close();
  if (!wanted.length) {
    throw new LayoutError(at, `holds no ${KIND_NAMES[kind!]}; found: ${all.map((c) => `${KIND_NAMES[c.kind]} (${c.layout})`).join(', ')}`);
  }
  if (wanted.length > 1) {
    throw new LayoutError(at, `holds ${wanted.length} components (${wanted.map((c) => `${KIND_NAMES[c.kind]}${c.prefix ? ` under "${c.prefix}"` : ''}`).join(', ')}): say which kind to open`);
  }
  return wanted[0] as Extract<Component, { kind: K }>;
}

// ─── Model folders ──────────────────────────────────────────────────────────────────────────────

const SUBFOLDERS: Record<ComponentKind, string> = { dit: 'transformer', vae: 'vae', clip: 'text_encoder', t5: 'text_encoder_2' };

const EXPECTED: Record<ComponentKind, string> = {
  dit: 'no FLUX transformer (DiT) found. Expected transformer/ with diffusion_pytorch_model.safetensors (or its .index.json), or a single-file DiT such as flux1-dev.safetensors',
  vae: 'no VAE found. Expected ae.safetensors, or vae/ with diffusion_pytorch_model.safetensors',
  clip: 'no text encoder found. Expected text_encoder/ (CLIP) with model.safetensors',
  t5: 'no T5 text encoder found. Expected text_encoder_2/ (T5) with model.safetensors or model.safetensors.index.json',
};

const MODEL_MARKERS = ['model_index.json', 'transformer', 'vae', 'text_encoder', 'text_encoder_2', 'tokenizer', 'tokenizer_2'];

/** A folder laid out like FLUX.1-dev (component subfolders), or holding several root checkpoints (e.g. flux1-dev.safetensors + ae.safetensors). */
export function isModelFolder(dir: string): boolean {
  const entries = fs.readdirSync(dir);
  if (MODEL_MARKERS.some((m) => entries.includes(m))) return true;
  return entries.filter((e) => e.endsWith('.safetensors')).length > 1 && !entries.some((e) => e.endsWith('.safetensors.index.json'));
}

export interface ModelScan {
  root: string;
  /** Every component recognised: subfolders first, then root-level checkpoints. */
  components: Component[];
  /** The component used for each kind (a subfolder's over a root file; a root file only when it is the only candidate). */
  chosen: Partial<Record<ComponentKind, Component>>;
  tokenizer?: string;
  tokenizer2?: string;
  scheduler?: string;
  /** One line per piece a complete model needs and the folder lacks. */
  missing: string[];
  /** Files or folders that were there but could not be used, with why. */
  problems: string[];
  /** What the folder holds (folders with a trailing /). */
  entries: string[];
}

interface FolderEntry {
  name: string;
  path: string;
  isFile: boolean;
  isDirectory: boolean;
  /** The name, with a trailing / for folders. */
  label: string;
}

/** A folder's entries sorted by name, following symlinks (the Hugging Face cache links every file into blobs/). */
function listFolder(dir: string): FolderEntry[] {
  return fs.readdirSync(dir).sort().map((name) => {
    const p = path.join(dir, name);
    let st: fs.Stats | undefined;
    try {
      st = fs.statSync(p);
    } catch {
      st = undefined; // dangling link
    }
    const isDirectory = st?.isDirectory() ?? false;
    return { name, path: p, isFile: st?.isFile() ?? false, isDirectory, label: isDirectory ? `${name}/` : name };
  });
}

function hasAll(dir: string, files: string[]): boolean {
  return files.every((f) => fs.existsSync(path.join(dir, f)));
}

function errorText(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}

/** Looks through a model folder without failing on what is missing or broken. */
export function scanModelFolder(dir: string): ModelScan {
  const root = path.resolve(dir);
  let listing: FolderEntry[];
  try {
    listing = listFolder(root);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOTDIR') {
      const st = fs.statSync(root, { throwIfNoEntry: false });
      throw new LayoutError(root, `is ${(st && notRegularKind(st)) ?? 'a file'}, not a model folder`);
    }
    throw new LayoutError(root, `cannot read folder: ${(e as NodeJS.ErrnoException).code ?? errorText(e)}`);
  }
  const entries = listing.map((e) => e.label);
  const scan: ModelScan = { root, components: [], chosen: {}, missing: [], problems: [], entries };
  const brokenSubfolder: Partial<Record<ComponentKind, string>> = {};

  for (const kind of KIND_ORDER) {
    const sub = path.join(root, SUBFOLDERS[kind]);
    if (!fs.existsSync(sub)) continue;
    try {
      const c = openComponent(sub, kind);
      scan.components.push(c);
      scan.chosen[kind] = c;
    } catch (e) {
      brokenSubfolder[kind] = errorText(e);
      scan.problems.push(errorText(e));
    }
  }
  const rootFiles = listing.filter((e) => e.isFile && e.name.endsWith('.safetensors')).map((e) => e.path);
  const rootCandidates: Partial<Record<ComponentKind, Component[]>> = {};
  for (const f of rootFiles) {
    try {
      for (const c of openComponents(f)) {
        scan.components.push(c);
        (rootCandidates[c.kind] ??= []).push(c);
      }
    } catch (e) {
      scan.problems.push(errorText(e));
    }
  }
  for (const kind of KIND_ORDER) {
    if (scan.chosen[kind]) continue;
    const candidates = rootCandidates[kind] ?? [];
    if (candidates.length === 1) scan.chosen[kind] = candidates[0];
    else if (candidates.length > 1) scan.missing.push(`several ${KIND_NAMES[kind]} checkpoints (${candidates.map((c) => path.basename(c.path)).join(', ')}): name the one to use`);
    else scan.missing.push(brokenSubfolder[kind] ? `${SUBFOLDERS[kind]}/ is unusable: ${brokenSubfolder[kind]}` : EXPECTED[kind]);
  }

  const tok = path.join(root, 'tokenizer');
  if (hasAll(tok, ['vocab.json', 'merges.txt']) || hasAll(tok, ['tokenizer.json'])) scan.tokenizer = tok;
  else scan.missing.push('no CLIP tokenizer found. Expected tokenizer/ with vocab.json and merges.txt (or tokenizer.json)');
  const tok2 = path.join(root, 'tokenizer_2');
  if (hasAll(tok2, ['tokenizer.json']) || hasAll(tok2, ['spiece.model'])) scan.tokenizer2 = tok2;
  else scan.missing.push('no T5 tokenizer found. Expected tokenizer_2/ with tokenizer.json (or spiece.model)');
  const sched = path.join(root, 'scheduler');
  if (hasAll(sched, ['scheduler_config.json'])) scan.scheduler = sched;
  return scan;
}

export interface ModelFolder {
  root: string;
  dit: DitComponent;
  vae: VaeComponent;
  clip: ClipComponent;
  t5: T5Component;
  /** tokenizer/ (CLIP BPE) and tokenizer_2/ (T5). */
  tokenizer: string;
  tokenizer2: string;
  /** scheduler/ when present (optional: FLUX.1 defaults apply without it). */
  scheduler?: string;
  /** Other components found in the folder and not chosen (e.g. flux1-dev.safetensors beside transformer/); closed until read. */
  others: Component[];
}

export function missingMessage(scan: ModelScan): string {
  const found = scan.entries.length ? scan.entries.join(', ') : 'nothing (empty folder)';
  return `${scan.missing.join('; ')}. Found: ${found}`;
}

/** A complete FLUX.1 model folder, or a LayoutError that says what is missing and what was found. */
export function openModel(dir: string): ModelFolder {
  const scan = scanModelFolder(dir);
  if (scan.missing.length) throw new LayoutError(scan.root, missingMessage(scan));
  const chosen = new Set(Object.values(scan.chosen));
  const others = scan.components.filter((c) => !chosen.has(c));
  for (const c of others) c.close();
  return {
    root: scan.root,
    dit: scan.chosen.dit as DitComponent,
    vae: scan.chosen.vae as VaeComponent,
    clip: scan.chosen.clip as ClipComponent,
    t5: scan.chosen.t5 as T5Component,
    tokenizer: scan.tokenizer!,
    tokenizer2: scan.tokenizer2!,
    scheduler: scan.scheduler,
    others,
  };
}

// ─── Sizes and the inspect report ───────────────────────────────────────────────────────────────

export interface DtypeStats {
  tensors: number;
  parameters: number;
  bytes: number;
}

export interface TensorStats extends DtypeStats {
  /** Per dtype, e.g. { BF16: {...}, F8_E4M3: {...} }. */
  dtypes: Partial<Record<DType, DtypeStats>>;
}

/** Counts from headers only. */
export function tensorStats(src: TensorSource): TensorStats {
  const s: TensorStats = { tensors: 0, parameters: 0, bytes: 0, dtypes: {} };
  for (const n of src.names()) {
    const t = src.info(n);
    const params = elementCount(t.shape);
    const d = (s.dtypes[t.dtype] ??= { tensors: 0, parameters: 0, bytes: 0 });
    for (const x of [s, d]) {
      x.tensors += 1;
      x.parameters += params;
      x.bytes += t.byteLength;
    }
  }
  return s;
}

export interface ComponentReport {
  kind: ComponentKind;
  layout: Layout;
  description: string;
  path: string;
  files: string[];
  prefix: string;
  /** Model folders: whether this is the component used for its kind. */
  used?: boolean;
  configFile: string | null;
  architecture: Record<string, number | number[] | boolean | string>;
  notes: string[];
  stats: TensorStats;
}

export interface InspectReport {
  path: string;
  type: 'model' | 'checkpoint';
  components: ComponentReport[];
  /** Model folders only. */
  complete?: boolean;
  tokenizers?: { clip: string | null; t5: string | null };
  scheduler?: string | null;
  missing: string[];
  problems: string[];
  /** Over the used components (model) or all components (checkpoint). */
  totals: { parameters: number; bytes: number };
}

function architectureOf(c: Component): ComponentReport['architecture'] {
  switch (c.kind) {
    case 'dit':
      return { ...c.config, head_dim: c.config.hidden_size / c.config.num_heads, mlp_hidden_dim: Math.round(c.config.hidden_size * c.config.mlp_ratio) };
    case 'vae':
      return { ...c.config, downsample_factor: 2 ** (c.config.ch_mult.length - 1), has_encoder: c.hasEncoder };
    case 'clip':
      return { ...c.config, head_dim: c.config.hidden_size / c.config.num_attention_heads };
    case 't5':
      return { ...c.config };
  }
}

export function componentReport(c: Component, used?: boolean): ComponentReport {
  return {
    kind: c.kind,
    layout: c.layout,
    description: describeLayout(c.layout),
    path: c.path,
    files: c.files,
    prefix: c.prefix,
    ...(used === undefined ? {} : { used }),
    configFile: c.configFile ?? null,
    architecture: architectureOf(c),
    notes: c.notes,
    stats: tensorStats(c.tensors),
  };
}

function totals(reports: ComponentReport[]) {
  return reports.reduce((t, r) => ({ parameters: t.parameters + r.stats.parameters, bytes: t.bytes + r.stats.bytes }), { parameters: 0, bytes: 0 });
}

/** What `majicflux inspect <path>` reports: a model folder, a component folder, a file or an index. */
export function inspectPath(p: string): InspectReport {
  const abs = path.resolve(p);
  let st: fs.Stats;
  try {
    st = fs.statSync(abs);
  } catch {
    throw new LayoutError(abs, 'no such file or folder');
  }
  if (st.isDirectory() && isModelFolder(abs)) {
    const scan = scanModelFolder(abs);
    const chosen = new Set(Object.values(scan.chosen));
    const rank = (c: Component) => KIND_ORDER.indexOf(c.kind) * 2 + (chosen.has(c) ? 0 : 1);
    const components = [...scan.components].sort((a, b) => rank(a) - rank(b)).map((c) => componentReport(c, chosen.has(c)));
    return {
      path: abs,
      type: 'model',
      components,
      complete: scan.missing.length === 0,
      tokenizers: { clip: scan.tokenizer ?? null, t5: scan.tokenizer2 ?? null },
      scheduler: scan.scheduler ?? null,
      missing: scan.missing,
      problems: scan.problems,
      totals: totals(components.filter((c) => c.used)),
    };
  }
  const components = openComponents(abs).map((c) => componentReport(c));
  return { path: abs, type: 'checkpoint', components, missing: [], problems: [], totals: totals(components) };
}
