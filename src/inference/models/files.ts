// Where a model's parts are on disk: a FLUX.1-dev-style folder or one all-in-one checkpoint,
// optionally with a single-file DiT (a fine-tune such as majicflus_v134.safetensors) or other
// parts given separately.

import * as fs from 'node:fs';
import * as path from 'node:path';
import { ComponentName, ModelError, ModelSpec, WeightFormat } from '../../shared/api';
import { Component, openComponents } from '../formats/layouts/components';
import { ComponentKind, KIND_NAMES, KIND_ORDER, listSome } from '../formats/layouts/detect';
import { SUBFOLDERS } from '../formats/layouts/folder';
import { ModelScan, scanModelFolder } from '../formats/layouts/model';
import { readShardIndex } from '../formats/safetensors';
import { demoAssetsDir } from './demo';
import { readShapes } from './tensorShapes';
import { componentWeightBytes } from './weightBytes';

export interface ModelFiles {
  name: string;
  transformer: string;
  textEncoder: string;
  textEncoder2: string;
  tokenizer: string;
  tokenizer2: string;
  vae: string;
  scheduler?: string;
  /** Estimated resident bytes of one component (or all) with this weight format. */
  residentBytes(format: WeightFormat, component?: ComponentName): number;
}

const OVERRIDES: Record<ComponentKind, keyof ModelSpec> = { dit: 'transformer', vae: 'vae', clip: 'textEncoder', t5: 'textEncoder2' };

/**
 * The files of each part: the folder's (as scanModelFolder chooses them), overridden by the spec's.
 * `dir` may be one all-in-one checkpoint instead (ComfyUI's and Forge's flux1-dev-fp8.safetensors):
 * it serves every component it holds, with the FLUX.1-dev tokenizers shipped in models/demo.
 */
export function resolveModel(spec: ModelSpec): ModelFiles {
  const scan = spec.dir ? (isFile(spec.dir) ? scanSingleFile(spec.dir) : scanFolder(spec.dir)) : undefined;
  const missing: string[] = [];
  const part = (kind: ComponentKind): string => {
    const given = spec[OVERRIDES[kind]];
    if (given) {
      const p = path.resolve(given);
      if (fs.existsSync(p)) checkOverride(p, kind);
      else missing.push(`${KIND_NAMES[kind]}: ${p} does not exist`);
      return p;
    }
    const chosen = scan?.chosen[kind];
    if (chosen) return chosen.path;
    missing.push(scan?.missing.find((m) => m.includes(KIND_NAMES[kind]) || m.includes(`${SUBFOLDERS[kind]}/`)) ?? `no ${KIND_NAMES[kind]} given`);
    return '';
  };
  const transformer = part('dit');
  const vae = part('vae');
  const textEncoder = part('clip');
  const textEncoder2 = part('t5');
  // Every part given on its own, no folder (ComfyUI keeps them so): the shipped tokenizers, as for an
  // all-in-one file; "no CLIP tokenizer given" had no flag to answer it.
  const tokenizer = spec.tokenizer ? path.resolve(spec.tokenizer) : scan ? scan.tokenizer : shippedTokenizer('tokenizer');
  const tokenizer2 = spec.tokenizer2 ? path.resolve(spec.tokenizer2) : scan ? scan.tokenizer2 : shippedTokenizer('tokenizer2');
  if (!tokenizer) missing.push(scan?.missing.find((m) => m.includes('CLIP tokenizer')) ?? 'no CLIP tokenizer given (tokenizer/ with vocab.json and merges.txt)');
  if (!tokenizer2) missing.push(scan?.missing.find((m) => m.includes('T5 tokenizer')) ?? 'no T5 tokenizer given (tokenizer_2/ with tokenizer.json)');
  for (const c of scan?.components ?? []) c.close();
  if (missing.length) {
    const where = scan ? scan.root : 'the model settings';
    const found = scan ? ` Found: ${scan.entries.length ? listSome(scan.entries, 12) : 'nothing (empty folder)'}.` : '';
    const problems = scan ? scan.problems.filter((p) => !missing.some((m) => m.includes(p))) : [];
    // A file that is there but broken (cut short, a config that is not its own) comes first: it is
    // most often what to fix, and "no FLUX transformer found" alone read as if the file were not seen
    // at all. Said side by side, not as cause and effect: a broken stray file may not be the missing part.
    if (problems.length) throw new ModelError(`The model in ${where} cannot be used: ${[...new Set(problems)].join('; ')}. Missing: ${[...new Set(missing)].join('; ')}.${found}`);
    throw new ModelError(`The model in ${where} is incomplete. Missing: ${[...new Set(missing)].join('; ')}.${found}`);
  }
  const base = path.basename(transformer).replace(/\.(safetensors|gguf)$/i, '');
  const name = spec.name ?? (base === 'transformer' && scan ? path.basename(scan.root) : base);
  return {
    name, transformer, textEncoder, textEncoder2, vae, tokenizer: tokenizer!, tokenizer2: tokenizer2!, scheduler: scan?.scheduler,
    residentBytes: (f, c) => estimate({ transformer, textEncoder, textEncoder2, vae }, f, c),
  };
}

/**
 * A part given on its own that is not that part (an SDXL checkpoint, a LoRA, a VAE given as the
 * DiT, a device): said now from its header, not once the text encoders have run.
 */
function checkOverride(p: string, kind: ComponentKind): void {
  let components: Component[];
  try {
    components = openComponents(p);
  } catch (e) {
    throw new ModelError((e as Error).message, (e as Error).stack);
  }
  for (const c of components) c.close();
  if (!components.some((c) => c.kind === kind)) throw new ModelError(`${p}: holds no ${KIND_NAMES[kind]}; found: ${[...new Set(components.map((c) => KIND_NAMES[c.kind]))].join(', ')}`);
}

/** Whether `p` is a file; false when it is not there or cannot be read. */
export function isFile(p: string): boolean {
  try {
    return fs.statSync(path.resolve(p)).isFile();
  } catch {
    return false;
  }
}

/** FLUX.1's CLIP-L and T5 tokenizers, shipped with MajicFLUX: for a model given without a folder that has its own. */
export function shippedTokenizer(role: 'tokenizer' | 'tokenizer2'): string {
  return path.join(demoAssetsDir(), role === 'tokenizer' ? 'tokenizer' : 'tokenizer_2');
}

/** An all-in-one checkpoint as a model folder's scan: its components, and the shipped tokenizers and scheduler. */
export function scanSingleFile(file: string): ModelScan {
  const abs = path.resolve(file);
  let components: Component[];
  try {
    components = openComponents(abs);
  } catch (e) {
    throw new ModelError((e as Error).message);
  }
  const chosen: ModelScan['chosen'] = {};
  const missing: string[] = [];
  for (const kind of KIND_ORDER) {
    const c = components.filter((x) => x.kind === kind);
    if (c.length === 1) chosen[kind] = c[0];
    else if (c.length > 1) missing.push(`${abs} holds ${c.length} ${KIND_NAMES[kind]}s (under ${c.map((x) => `"${x.prefix}"`).join(', ')}): give the one to use separately`);
    // Said once: a lone DiT given as the model is the likely mistake.
    else missing.push(`${KIND_NAMES[kind]}: ${path.basename(abs)} holds none${kind === 'vae' && chosen.dit ? ' (a model given as one file must hold every component; a DiT alone goes with a model folder: --model DIR --transformer FILE, or the majicflux.model.transformer setting)' : ''}`);
  }
  return {
    root: abs, components, chosen, missing, problems: [], entries: [path.basename(abs)],
    tokenizer: shippedTokenizer('tokenizer'), tokenizer2: shippedTokenizer('tokenizer2'), scheduler: path.join(demoAssetsDir(), 'scheduler'),
  };
}

function scanFolder(dir: string): ModelScan {
  const root = path.resolve(dir);
  if (!fs.existsSync(root)) throw new ModelError(`Model folder not found: ${root}`);
  try {
    return scanModelFolder(root);
  } catch (e) {
    throw new ModelError((e as Error).message);
  }
}

/**
 * Weights held in memory, the numbers `Check Models` uses too (models/weightBytes.ts): the DiT's Linear
 * weights in `format`, its other tensors as float32, the other components at their file size.
 */
function estimate(parts: Record<'transformer' | 'textEncoder' | 'textEncoder2' | 'vae', string>, format: WeightFormat, c?: ComponentName): number {
  const file: Record<ComponentName, string> = { dit: parts.transformer, clip: parts.textEncoder, t5: parts.textEncoder2, vae: parts.vae };
  const of = (comp: ComponentName): number => componentWeightBytes(readShapes(file[comp], comp), comp, format);
  return c ? of(c) : of('dit') + of('clip') + of('t5') + of('vae');
}

export interface WeightPartFiles {
  /** The checkpoint files: the file; an index, then the shards it lists (there or not: the check says which are missing); a folder's `.safetensors` files. */
  files: string[];
  /** Whose `config.json` goes with them: an index's folder or the folder; none for a single file or an index that cannot be read. */
  folder?: string;
}

/**
 * The files a weight part at `p` stands for: a file, a `*.safetensors.index.json` and its shards,
 * or a folder (its one index as such, else its `.safetensors` files). Undefined when nothing is at
 * `p`. The part check (partChecks.ts) and verification (check.ts partFiles) both read this.
 */
export function weightPartFiles(p: string): WeightPartFiles | undefined {
  let st: fs.Stats;
  try {
    st = fs.statSync(p);
  } catch {
    return undefined;
  }
  if (st.isFile()) {
    if (!p.endsWith('.index.json')) return { files: [p] };
    try {
      return { files: [p, ...readShardIndex(p).shards], folder: path.dirname(p) };
    } catch {
      return { files: [p] };
    }
  }
  let entries: string[];
  try {
    entries = fs.readdirSync(p);
  } catch {
    return { files: [] };
  }
  const index = entries.filter((e) => e.endsWith('.safetensors.index.json'));
  if (index.length === 1) return weightPartFiles(path.join(p, index[0]));
  // A folder named like a checkpoint is none (a dangling link stays: the check reports it missing).
  const files = entries.filter((e) => e.endsWith('.safetensors')).map((e) => path.join(p, e)).filter((f) => !isDirectory(f));
  return { files, folder: p };
}

function isDirectory(p: string): boolean {
  try {
    return fs.statSync(p).isDirectory();
  } catch {
    return false;
  }
}
