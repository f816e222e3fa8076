// Config files beside the tensors (config.json, <name>.config.json): where they are, what they say
// in either naming, and how they merge over (and may not contradict) what the shapes measured.

import * as fs from 'node:fs';
import * as path from 'node:path';
import { readRegularFileSync } from '../../system/regularFile';
import { ClipConfig, Derived, DitConfig, Json, T5Config, VaeConfig } from './configs';
import { ComponentKind, LayoutError } from './detect';
import { SUBFOLDERS } from './folder';

export function ditFromJson(j: Json, file: string): Partial<DitConfig> {
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

export function vaeFromJson(j: Json, file: string): Partial<VaeConfig> {
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

export function clipFromJson(j: Json, file: string): Partial<ClipConfig> {
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

export function t5FromJson(j: Json, file: string): Partial<T5Config> {
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
export function configKind(j: Json): ComponentKind | undefined {
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

/**
 * The part of a config file that describes `kind`, or undefined. An all-in-one checkpoint's sidecar
 * keeps its DiT's FluxParams at the top and may describe its other components in sections named
 * like a model folder's subfolders (`vae`, `text_encoder`, `text_encoder_2`, holding what that
 * folder's config.json would), since only the DiT's numbers cannot all be read from the shapes. A
 * config that does not say which component it is for applies to any.
 */
export function configSection(j: Json, kind: ComponentKind): Json | undefined {
  const section = j[SUBFOLDERS[kind]];
  if (typeof section === 'object' && section !== null && !Array.isArray(section)) return section as Json;
  const says = configKind(j);
  return says === undefined || says === kind ? j : undefined;
}

/** Config files are a few KB; anything near this is not one. */
const MAX_CONFIG_BYTES = 16 * 2 ** 20;

export function readJson(file: string): Json {
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
export function configFileFor(opened: string, files: string[]): string | undefined {
  const isDir = fs.statSync(opened).isDirectory();
  if (!isDir) {
    const sidecar = opened.replace(/(\.safetensors(\.index\.json)?|\.gguf)$/, '') + '.config.json';
    if (sidecar !== opened && fs.existsSync(sidecar)) return sidecar;
  }
  const dir = isDir ? opened : path.dirname(opened);
  const folderConfig = path.join(dir, 'config.json');
  const standard = isDir || files.every((f) => STANDARD_WEIGHT_FILE.test(path.basename(f))) || STANDARD_WEIGHT_FILE.test(path.basename(opened));
  return standard && fs.existsSync(folderConfig) ? folderConfig : undefined;
}

/** Merges a config file (if any) over the derived values; rejects one that contradicts the tensors. */
export function applyConfig<C extends object>(derived: Derived<C>, fromFile: Partial<C> | undefined, file: string | undefined, tensorsPath: string): { config: C; notes: string[] } {
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
