// Finds FLUX.1 models on this machine and checks each part from file headers only: the configured
// paths, each workspace folder's models/, the extension's global storage models/, extra search
// paths, the Hugging Face hub cache and ModelScope's cache.
//
// Rules:
//  * Where: configured (the settings' ModelSpec, as given, never paired), workspace
//    `<folder>/models`, global storage `<storage>/models`, search paths, the Hugging Face cache
//    ($HF_HUB_CACHE, else $HF_HOME/hub, else ~/.cache/huggingface/hub: `models--<owner>--<name>/
//    snapshots/<commit>/…`, the snapshot refs/main names, else the newest), ModelScope's cache
//    ($MODELSCOPE_CACHE, else ~/.cache/modelscope/hub; `<owner>/<name>/` and the newer
//    `models/<owner>/<name>/`, dots in names written `___`).
//  * Folders are walked at most DEFAULT_MAX_DEPTH levels below a root (models/<owner>/<repo>/ is 2;
//    DiffSynth's models/FLUX/FLUX.1-dev is 2), hidden folders and node_modules skipped, at most
//    MAX_DIRS_PER_ROOT folders per root. A folder with component subfolders, ae.safetensors or
//    model_index.json (or 2–8 root checkpoints and no index) is a model folder; the walk goes on
//    only into its other subfolders (ComfyUI's models/unet beside models/vae). Elsewhere a root
//    .safetensors whose header holds a FLUX DiT and nothing else is a lone DiT (an unreadable one
//    counts when its name looks like a DiT, so that it is reported corrupt, not skipped).
//  * A folder with no weights at all (tokenizers only) is not reported.
//  * Identity: a registry model by its DiT file's name (majicflus_v134.safetensors), else by the
//    repository (cache layouts, or the folder's <owner>/<repo> path, ModelScope's `___` read as
//    "."), else by the folder's name (FLUX.1-dev); otherwise "custom".
//  * A lone DiT (a fine-tune's single file, or a folder whose only present part is the DiT) is
//    paired with a base found anywhere in the same discovery: the model its registry entry takes
//    the other parts from (flux1-dev), else any base with the most parts present. spec.dir is the
//    base's folder, spec.transformer the DiT. Without a base it is reported incomplete.
//  * A model folder with several root DiT files gives one model per file.
//  * Part status, from headers: `missing` when nothing is there, a shard an index lists is absent,
//    the file holds no such component, or a Hugging Face `.incomplete` blob stands in for it;
//    `corrupt` when the reader fails (truncated, garbage, a bad index: the reader's message) or
//    the tensors are not a complete FLUX component; `wrong-dtype` when a weight tensor of rank ≥ 2
//    has a non-float dtype (U8/I8/I32… packed quantizations such as bitsandbytes nf4/int8, which
//    the graphs cannot use); else `present`. Weights in a float dtype other than the registry
//    lists (e.g. an fp8 copy of the bf16 DiT) stay `present` with a note: the pipeline converts
//    any float dtype. Tokenizers: the files MajicFLUX's tokenizers read (tokenizer/vocab.json +
//    merges.txt, tokenizer_2/tokenizer.json), JSON that parses.
//  * The same model found twice (realpath of its folder and of the DiT used) is listed once, at
//    its first place in the order above. Nothing here throws for one bad folder.

import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import type { ModelSpec } from '../../shared/api';
import { Component, openComponent } from '../formats/layouts/components';
import { ComponentKind, detectLayouts, KIND_NAMES, LayoutError } from '../formats/layouts/detect';
import { isModelFolder, MAX_ROOT_FILES, SUBFOLDERS } from '../formats/layouts/folder';
import { ModelScan, scanModelFolder } from '../formats/layouts/model';
import { canDecode, isGgmlQuant } from '../formats/ggml';
import { isGgufFile } from '../formats/gguf';
import { elementCount, openTensors, readShardIndex, TensorSource } from '../formats/safetensors';
import { scanSingleFile } from './files';
import { isFloatDtype } from './memory';
import { loadRegistry, modelForDitFile, modelForRepo, normalizeRepo, partsOf } from './registry';
import { FoundModel, FoundWhere, PART_ROLES, PartCheck, PartRole, Registry, RegistryModel } from '../../shared/models';
import { errorText } from '../../shared/api';

export const DEFAULT_MAX_DEPTH = 3;
const MAX_DIRS_PER_ROOT = 400;
const MAX_ENTRIES_PER_DIR = 2000;

export interface DiscoverOptions {
  /** The model the settings give (majicflux.model.*). */
  configured?: ModelSpec;
  /** More folders (or DiT files) to look in. */
  searchPaths?: string[];
  /** Workspace folders: each one's models/ is searched. */
  workspaceFolders?: string[];
  /** The extension's global storage folder: its models/ holds what the extension downloaded. */
  globalStorage?: string;
  /** Environment for the cache locations (default process.env). */
  env?: NodeJS.ProcessEnv;
  /** Home folder for the default cache locations (default os.homedir()). */
  home?: string;
  registry?: Registry;
  /** Folder levels walked below each root (default 3). */
  maxDepth?: number;
}

const WEIGHT_ROLES: readonly ComponentKind[] = ['dit', 'vae', 'clip', 't5'];
const SPEC_KEY: Record<ComponentKind, 'transformer' | 'vae' | 'textEncoder' | 'textEncoder2'> = { dit: 'transformer', vae: 'vae', clip: 'textEncoder', t5: 'textEncoder2' };
const ROLE_NAMES: Record<PartRole, string> = { ...KIND_NAMES, tokenizer: 'CLIP tokenizer', tokenizer2: 'T5 tokenizer' };

// ─── Part checks ────────────────────────────────────────────────────────────────────────────────

function fileSize(p: string): number {
  try {
    return fs.statSync(p).size;
  } catch {
    return 0;
  }
}

/** Whether a path is (or links to) a Hugging Face blob still being downloaded. */
function isIncomplete(p: string): boolean {
  try {
    return fs.realpathSync(p).endsWith('.incomplete');
  } catch {
    return p.endsWith('.incomplete');
  }
}

/** The weight files a path stands for (a file, an index and its shards, or a folder's checkpoints). */
function weightFilesAt(p: string): string[] {
  let st: fs.Stats;
  try {
    st = fs.statSync(p);
  } catch {
    return [p];
  }
  if (st.isFile()) {
    if (!p.endsWith('.index.json')) return [p];
    try {
      return [p, ...readShardIndex(p).shards];
    } catch {
      return [p];
    }
  }
  let entries: string[];
  try {
    entries = fs.readdirSync(p);
  } catch {
    return [];
  }
  const index = entries.filter((e) => e.endsWith('.safetensors.index.json'));
  if (index.length === 1) return weightFilesAt(path.join(p, index[0]));
  return entries.filter((e) => e.endsWith('.safetensors')).map((e) => path.join(p, e));
}

interface DtypeSummary {
  dtypes: Record<string, number>;
  params: number;
  /** Dtypes of rank ≥ 2 tensors the graphs cannot use. */
  unusable: string[];
  /** Float dtypes of the rank ≥ 2 tensors. */
  matrixDtypes: Set<string>;
}

function summarize(src: TensorSource): DtypeSummary {
  const s: DtypeSummary = { dtypes: {}, params: 0, unusable: [], matrixDtypes: new Set() };
  for (const n of src.names()) {
    const t = src.info(n);
    s.dtypes[t.dtype] = (s.dtypes[t.dtype] ?? 0) + 1;
    s.params += elementCount(t.shape);
    if (t.shape.length >= 2) {
      if (!isFloatDtype(t.dtype) && !(isGgmlQuant(t.dtype) && canDecode(t.dtype))) {
        if (!s.unusable.includes(t.dtype)) s.unusable.push(t.dtype);
      } else s.matrixDtypes.add(t.dtype);
    }
  }
  return s;
}

function wrongDtypeMessage(role: PartRole, unusable: string[]): string {
  if (unusable.every(isGgmlQuant)) return `the ${ROLE_NAMES[role]}'s weights are GGUF ${unusable.join('/')}, a quantization MajicFLUX cannot read: download the Q8_0, Q4_0, Q5_0, Q5_1, Q4_1 or Q2_K–Q6_K file of the same model instead.`;
  return `the ${ROLE_NAMES[role]}'s weights are ${unusable.join('/')}: a packed quantization (bitsandbytes nf4/int8 or similar) that MajicFLUX cannot run. Use the original bf16/fp16/fp8 file; MajicFLUX makes fp8, int8 or int4 weights itself (setting majicflux.weights).`;
}

/** Dtypes of each checked part's rank ≥ 2 tensors (its weights proper), for the registry comparison. */
const matrixDtypes = new WeakMap<PartCheck, Set<string>>();

function withMatrixDtypes(p: PartCheck, s: DtypeSummary): PartCheck {
  matrixDtypes.set(p, s.matrixDtypes);
  return p;
}

function presentCheck(role: ComponentKind, c: Component): PartCheck {
  const s = summarize(c.tensors);
  // A component under a prefix may share its file with others (an all-in-one checkpoint): its own tensors' bytes.
  const bytes = c.prefix ? c.tensors.names().reduce((a, n) => a + c.tensors.info(n).byteLength, 0) : c.files.reduce((a, f) => a + fileSize(f), 0);
  const base: PartCheck = { role, status: 'present', path: c.path, layout: c.layout, dtypes: s.dtypes, params: s.params, bytes };
  if (s.unusable.length) return { ...base, status: 'wrong-dtype', message: wrongDtypeMessage(role, s.unusable) };
  return withMatrixDtypes(base, s);
}

/** One weight part at a path (file, index or component folder), from its headers. */
export function checkWeightPart(p: string, role: ComponentKind): PartCheck {
  const abs = path.resolve(p);
  if (!fs.existsSync(abs)) return { role, status: 'missing', path: abs, message: `${abs} does not exist` };
  const files = weightFilesAt(abs);
  const bytes = files.filter((f) => f.endsWith('.safetensors') || isGgufFile(f)).reduce((a, f) => a + fileSize(f), 0);
  if (!files.length) return { role, status: 'missing', path: abs, message: `${abs} holds no .safetensors file` };
  const absent = files.filter((f) => !fs.existsSync(f)).sort();
  if (absent.length) return { role, status: 'missing', path: abs, bytes, message: `${absent.map((f) => path.basename(f)).join(', ')} not found in ${path.dirname(absent[0])} (listed in ${path.basename(files[0])})` };
  const unfinished = files.filter(isIncomplete);
  if (unfinished.length) return { role, status: 'missing', path: abs, bytes, message: `${unfinished.map((f) => path.basename(f)).join(', ')}: the download has not finished` };
  let src: TensorSource;
  try {
    src = openTensors(abs);
  } catch (e) {
    return { role, status: 'corrupt', path: abs, bytes, message: errorText(e) };
  }
  let s: DtypeSummary;
  try {
    s = summarize(src);
  } finally {
    src.close();
  }
  if (s.unusable.length) return { role, status: 'wrong-dtype', path: abs, bytes, dtypes: s.dtypes, params: s.params, message: wrongDtypeMessage(role, s.unusable) };
  let c: Component;
  try {
    c = openComponent(abs, role);
  } catch (e) {
    const msg = errorText(e);
    const notThere = e instanceof LayoutError && / holds no |not a FLUX\.1 component/.test(msg);
    return { role, status: notThere ? 'missing' : 'corrupt', path: abs, bytes, dtypes: s.dtypes, params: s.params, message: msg };
  }
  try {
    return presentCheck(role, c);
  } finally {
    c.close();
  }
}

const TOKENIZER_FILES: Record<'tokenizer' | 'tokenizer2', { folder: string; needs: string[]; json: string[]; hint: string }> = {
  tokenizer: { folder: 'tokenizer', needs: ['vocab.json', 'merges.txt'], json: ['vocab.json'], hint: 'tokenizer/ with vocab.json and merges.txt' },
  tokenizer2: { folder: 'tokenizer_2', needs: ['tokenizer.json'], json: ['tokenizer.json'], hint: 'tokenizer_2/ with tokenizer.json' },
};

const tokenizerCache = new Map<string, { key: string; check: PartCheck }>();

/** A tokenizer folder: the files MajicFLUX's tokenizers read, present and parseable (cached while they are unchanged). */
export function checkTokenizerPart(dir: string, role: 'tokenizer' | 'tokenizer2'): PartCheck {
  const abs = path.resolve(dir);
  const key = TOKENIZER_FILES[role].needs.map((f) => {
    try {
      const st = fs.statSync(path.join(abs, f));
      return `${st.size}:${st.mtimeMs}`;
    } catch {
      return '-';
    }
  }).join('|');
  const hit = tokenizerCache.get(`${role}\0${abs}`);
  if (hit && hit.key === key) return { ...hit.check };
  const check = checkTokenizerFolder(abs, role);
  tokenizerCache.set(`${role}\0${abs}`, { key, check });
  return { ...check };
}

function checkTokenizerFolder(abs: string, role: 'tokenizer' | 'tokenizer2'): PartCheck {
  const spec = TOKENIZER_FILES[role];
  if (!fs.existsSync(abs)) return { role, status: 'missing', message: `no ${ROLE_NAMES[role]}: expected ${spec.hint}` };
  const lacking = spec.needs.filter((f) => !fs.existsSync(path.join(abs, f)) || isIncomplete(path.join(abs, f)));
  if (lacking.length) return { role, status: 'missing', path: abs, message: `${abs} lacks ${lacking.join(' and ')} (MajicFLUX's ${ROLE_NAMES[role]} reads ${spec.needs.join(' and ')})` };
  let bytes = 0;
  for (const f of spec.needs) {
    const p = path.join(abs, f);
    const size = fileSize(p);
    bytes += size;
    if (size === 0) return { role, status: 'corrupt', path: abs, bytes, message: `${p} is empty` };
    if (spec.json.includes(f)) {
      try {
        JSON.parse(fs.readFileSync(p, 'utf8'));
      } catch (e) {
        return { role, status: 'corrupt', path: abs, bytes, message: `${p} is not valid JSON (${errorText(e)}): download it again` };
      }
    }
  }
  return { role, status: 'present', path: abs, bytes };
}

/** A model folder's scan, or an all-in-one checkpoint's (models/files.ts scanSingleFile). */
function safeScan(dir: string): ModelScan | undefined {
  try {
    return fs.statSync(dir).isFile() ? scanSingleFile(dir) : scanModelFolder(dir);
  } catch {
    return undefined;
  }
}

function closeScan(scan: ModelScan | undefined): void {
  for (const c of scan?.components ?? []) c.close();
}

/** Which role a root checkpoint that could not be read most likely is, from its name. */
function roleByName(file: string): ComponentKind {
  const n = path.basename(file).toLowerCase();
  if (/(^|[-_.])(ae|vae)([-_.]|$)|autoencoder/.test(n)) return 'vae';
  if (/clip/.test(n)) return 'clip';
  if (/t5|umt5/.test(n)) return 't5';
  return 'dit';
}

/** The part checks of a ModelSpec (a folder with overrides), headers only. `scan` reuses a scan of spec.dir. */
export function checkSpecParts(spec: ModelSpec, scan?: ModelScan): PartCheck[] {
  const dir = spec.dir ? path.resolve(spec.dir) : undefined;
  const ownScan = dir && !scan;
  if (dir && !scan && fs.existsSync(dir)) scan = safeScan(dir);
  try {
    const parts: PartCheck[] = [];
    const singleFile = dir !== undefined && isFile(dir);
    const rootFiles = dir ? (singleFile ? [dir] : listSafetensors(dir)) : [];
    const opened = new Set(scan?.components.map((c) => c.path) ?? []);
    for (const role of WEIGHT_ROLES) {
      const given = spec[SPEC_KEY[role]];
      if (given) {
        parts.push(checkWeightPart(given, role));
        continue;
      }
      const chosen = scan?.chosen[role];
      if (chosen) {
        parts.push(presentCheck(role, chosen));
        continue;
      }
      if (!dir) {
        parts.push({ role, status: 'missing', message: `no ${KIND_NAMES[role]} given` });
        continue;
      }
      if (!fs.existsSync(dir)) {
        parts.push({ role, status: 'missing', message: `model folder not found: ${dir}` });
        continue;
      }
      const sub = path.join(dir, SUBFOLDERS[role]);
      if (!singleFile && fs.existsSync(sub)) {
        parts.push(checkWeightPart(sub, role));
        continue;
      }
      const broken = rootFiles.filter((f) => !opened.has(f) && roleByName(f) === role);
      if (broken.length) {
        parts.push(checkWeightPart(broken[0], role));
        continue;
      }
      const note = scan?.missing.find((m) => m.includes(KIND_NAMES[role]) || m.includes(`${SUBFOLDERS[role]}/`));
      parts.push({ role, status: 'missing', message: note ?? `no ${KIND_NAMES[role]} in ${dir}` });
    }
    for (const role of ['tokenizer', 'tokenizer2'] as const) {
      const given = role === 'tokenizer' ? spec.tokenizer : spec.tokenizer2;
      // An all-in-one file comes with the tokenizers shipped with MajicFLUX (its scan names them).
      const shipped = singleFile ? (role === 'tokenizer' ? scan?.tokenizer : scan?.tokenizer2) : undefined;
      const where = given ?? shipped ?? (dir && !singleFile ? path.join(dir, TOKENIZER_FILES[role].folder) : undefined);
      // One reason for every part of a folder that is not there, so a check can say it once.
      if (!given && dir && !fs.existsSync(dir)) parts.push({ role, status: 'missing', message: `model folder not found: ${dir}` });
      else parts.push(where ? checkTokenizerPart(where, role) : { role, status: 'missing', message: `no ${ROLE_NAMES[role]} given` });
    }
    return PART_ROLES.map((r) => parts.find((p) => p.role === r)!);
  } finally {
    if (ownScan) closeScan(scan);
  }
}

function isFile(p: string): boolean {
  try {
    return fs.statSync(p).isFile();
  } catch {
    return false;
  }
}

function listSafetensors(dir: string): string[] {
  try {
    return fs.readdirSync(dir).filter((e) => e.endsWith('.safetensors')).map((e) => path.join(dir, e)).filter((p) => {
      try {
        return fs.statSync(p).isFile() || isIncomplete(p);
      } catch {
        return false;
      }
    });
  } catch {
    return [];
  }
}

/**
 * Notes, on present parts, weights in a dtype other than the registry publishes (none of the
 * dtypes of the part's rank ≥ 2 tensors is among the registry's: e.g. an fp8 copy of the bf16
 * DiT). The pipeline converts any float dtype, so the part stays present.
 */
function noteRegistryDtypes(parts: PartCheck[], model: RegistryModel | undefined, registry: Registry): void {
  if (!model) return;
  let resolved: ReturnType<typeof partsOf>;
  try {
    resolved = partsOf(model, registry);
  } catch {
    return;
  }
  for (const p of parts) {
    const expected = resolved.find((r) => r.role === p.role)?.dtypes;
    if (!expected?.length || p.status !== 'present' || !p.dtypes) continue;
    const held = [...(matrixDtypes.get(p) ?? Object.keys(p.dtypes))];
    if (!held.length || held.some((d) => expected.includes(d))) continue;
    const note = `published as ${expected.join('/')}; this copy holds ${held.join('/')} (a converted variant: usable, but not the registry's file)`;
    p.message = p.message ? `${p.message}; ${note}` : note;
  }
}

// ─── Identity ───────────────────────────────────────────────────────────────────────────────────

interface Identity {
  model?: RegistryModel;
  /** Display name for a custom model. */
  name: string;
}

function identify(registry: Registry, opts: { ditFile?: string; repo?: string; dir?: string }): Identity {
  const byFile = opts.ditFile ? modelForDitFile(path.basename(opts.ditFile), registry) : undefined;
  if (byFile) return { model: byFile, name: byFile.name };
  const byRepo = opts.repo ? modelForRepo(opts.repo, registry) : undefined;
  if (byRepo) return { model: byRepo, name: byRepo.name };
  if (opts.dir) {
    const base = path.basename(opts.dir);
    const parent = path.basename(path.dirname(opts.dir));
    const byPath = modelForRepo(`${parent}/${base}`, registry);
    if (byPath) return { model: byPath, name: byPath.name };
    const key = normalizeRepo(base);
    const byName = registry.models.find((m) => m.sources.some((s) => normalizeRepo(s.repo.split('/')[1]) === key));
    if (byName) return { model: byName, name: byName.name };
  }
  return { name: opts.ditFile ? path.basename(opts.ditFile).replace(/\.safetensors$/, '') : opts.repo ? opts.repo.split('/')[1] : folderName(opts.dir ?? 'model') };
}

/** A folder's name for display; a generic one (models/, a snapshot hash) gives way to its parent's. */
function folderName(dir: string): string {
  const base = path.basename(dir);
  return /^(models?|weights|checkpoints|[0-9a-f]{40})$/i.test(base) ? path.basename(path.dirname(dir)) || base : base;
}

// ─── Candidates ─────────────────────────────────────────────────────────────────────────────────

interface Candidate {
  where: FoundWhere;
  /** A model folder, a lone DiT file, or an all-in-one checkpoint (lone false). */
  path: string;
  lone: boolean;
  /** Repository id when the location says it (cache layouts). */
  repo?: string;
}

function isDir(p: string): boolean {
  try {
    return fs.statSync(p).isDirectory();
  } catch {
    return false;
  }
}

function readDir(p: string): string[] {
  try {
    return fs.readdirSync(p).slice(0, MAX_ENTRIES_PER_DIR).sort();
  } catch {
    return [];
  }
}

/**
 * A root .safetensors or .gguf as a candidate: a lone DiT when its header holds a FLUX DiT and no
 * other component, an all-in-one checkpoint (a model by itself) when it holds a DiT and more; else none.
 */
function rootFileCandidate(file: string, where: FoundWhere, repo?: string): Candidate | undefined {
  let src: TensorSource | undefined;
  try {
    src = openTensors(file);
    const kinds = new Set(detectLayouts(src.names()).map((m) => m.kind));
    return kinds.has('dit') ? { where, path: file, lone: kinds.size === 1, repo } : undefined;
  } catch {
    // Unreadable: a DiT-looking name still counts (reported corrupt rather than silently skipped).
    const ditName = /flux|majicflus|dit|transformer|unet/i.test(path.basename(file)) && !/(^|[-_.])(ae|vae)([-_.]|$)|clip|t5/i.test(path.basename(file));
    return ditName ? { where, path: file, lone: true, repo } : undefined;
  } finally {
    src?.close();
  }
}

const COMPONENT_FOLDERS = new Set(['transformer', 'vae', 'text_encoder', 'text_encoder_2', 'tokenizer', 'tokenizer_2', 'scheduler']);

/** The snapshot folder of a Hugging Face cache repository: refs/main's commit, else the newest. */
export function hfSnapshot(repoDir: string): string | undefined {
  const snaps = path.join(repoDir, 'snapshots');
  try {
    const ref = fs.readFileSync(path.join(repoDir, 'refs', 'main'), 'utf8').trim();
    if (ref && isDir(path.join(snaps, ref))) return path.join(snaps, ref);
  } catch {
    // no refs/main: fall back to the newest snapshot
  }
  const mtime = (p: string) => {
    try {
      return fs.statSync(p).mtimeMs;
    } catch {
      return 0;
    }
  };
  const all = readDir(snaps).map((s) => path.join(snaps, s)).filter(isDir).map((p) => ({ p, t: mtime(p) }));
  all.sort((a, b) => b.t - a.t);
  return all[0]?.p;
}

/** `models--owner--name` → owner/name. */
function hfRepoOf(dirName: string): string | undefined {
  const m = /^models--([^]+?)--([^]+)$/.exec(dirName);
  return m ? `${m[1]}/${m[2]}` : undefined;
}

/** Walks a root for model folders and lone DiT files, bounded in depth and folders visited. */
function walk(root: string, where: FoundWhere, maxDepth: number, out: Candidate[]): void {
  let visited = 0;
  const visit = (dir: string, depth: number, repo?: string) => {
    if (visited++ >= MAX_DIRS_PER_ROOT) return;
    const entries = readDir(dir);
    const hfRepo = hfRepoOf(path.basename(dir));
    if (hfRepo && entries.includes('snapshots')) {
      const snap = hfSnapshot(dir);
      if (snap) visit(snap, depth, hfRepo);
      return;
    }
    const modelFolder = isModelFolder(entries);
    if (modelFolder) {
      out.push({ where, path: dir, lone: false, repo });
      if (repo) return;
    } else {
      const roots = entries.filter((e) => e.endsWith('.safetensors') || isGgufFile(e)).map((e) => path.join(dir, e));
      if (roots.length && roots.length <= MAX_ROOT_FILES && !entries.some((e) => e.endsWith('.safetensors.index.json'))) {
        for (const f of roots) {
          const c = rootFileCandidate(f, where, repo);
          if (c) out.push(c);
        }
      }
    }
    if (depth >= maxDepth) return;
    for (const e of entries) {
      // below a model folder, only folders that are not its parts (ComfyUI's models/unet beside models/vae)
      if (e.startsWith('.') || e === 'node_modules' || e === '__pycache__' || (modelFolder && COMPONENT_FOLDERS.has(e))) continue;
      const p = path.join(dir, e);
      if (isDir(p)) visit(p, depth + 1);
    }
  };
  let st: fs.Stats;
  try {
    st = fs.statSync(root);
  } catch {
    return;
  }
  if (st.isFile()) {
    if (root.endsWith('.safetensors') || isGgufFile(root)) out.push(rootFileCandidate(root, where) ?? { where, path: root, lone: true });
    return;
  }
  if (st.isDirectory()) visit(root, 0);
}

/** The Hugging Face hub cache folder. */
export function hfCacheDir(env: NodeJS.ProcessEnv = process.env, home = os.homedir()): string {
  if (env.HF_HUB_CACHE) return env.HF_HUB_CACHE;
  if (env.HUGGINGFACE_HUB_CACHE) return env.HUGGINGFACE_HUB_CACHE;
  if (env.HF_HOME) return path.join(env.HF_HOME, 'hub');
  return path.join(env.XDG_CACHE_HOME || path.join(home, '.cache'), 'huggingface', 'hub');
}

/**
 * ModelScope's cache roots that hold `<owner>/<name>` folders. modelscope's own code puts the
 * cache at $MODELSCOPE_CACHE (older releases: $MODELSCOPE_CACHE/hub), else ~/.cache/modelscope/hub,
 * and newer releases add a models/ level.
 */
export function modelscopeCacheDirs(env: NodeJS.ProcessEnv = process.env, home = os.homedir()): string[] {
  const bases = env.MODELSCOPE_CACHE ? [env.MODELSCOPE_CACHE, path.join(env.MODELSCOPE_CACHE, 'hub')] : [path.join(home, '.cache', 'modelscope', 'hub')];
  return bases.flatMap((b) => [b, path.join(b, 'models')]);
}

function hfCandidates(env: NodeJS.ProcessEnv, home: string, out: Candidate[]): void {
  const cache = hfCacheDir(env, home);
  for (const e of readDir(cache)) {
    const repo = hfRepoOf(e);
    if (!repo) continue;
    const snap = hfSnapshot(path.join(cache, e));
    if (snap) candidatesInFolder(snap, 'huggingface-cache', repo, out);
  }
}

const MODELSCOPE_SKIP = new Set(['models', 'datasets', 'hub', 'ast_indexer', 'ast_indexer.json']);

function modelscopeCandidates(env: NodeJS.ProcessEnv, home: string, out: Candidate[]): void {
  for (const root of modelscopeCacheDirs(env, home)) {
    for (const owner of readDir(root)) {
      if (owner.startsWith('.') || MODELSCOPE_SKIP.has(owner)) continue;
      const ownerDir = path.join(root, owner);
      if (!isDir(ownerDir)) continue;
      for (const name of readDir(ownerDir)) {
        if (name.startsWith('.')) continue;
        const dir = path.join(ownerDir, name);
        if (isDir(dir)) candidatesInFolder(dir, 'modelscope-cache', `${owner}/${name.replace(/___/g, '.')}`, out);
      }
    }
  }
}

/** A repository folder from a cache: a model folder, or lone DiT files at its top. */
function candidatesInFolder(dir: string, where: FoundWhere, repo: string, out: Candidate[]): void {
  const entries = readDir(dir);
  if (isModelFolder(entries)) {
    out.push({ where, path: dir, lone: false, repo });
    return;
  }
  if (entries.some((e) => e.endsWith('.safetensors.index.json'))) return;
  const roots = entries.filter((e) => e.endsWith('.safetensors') || isGgufFile(e)).map((e) => path.join(dir, e));
  if (roots.length > MAX_ROOT_FILES) return;
  for (const f of roots) {
    const c = rootFileCandidate(f, where, repo);
    if (c) out.push(c);
  }
}

// ─── Models from candidates ─────────────────────────────────────────────────────────────────────

function realpath(p: string | undefined): string {
  if (!p) return '';
  try {
    return fs.realpathSync(p);
  } catch {
    return path.resolve(p);
  }
}

function makeFound(id: Identity, where: FoundWhere, root: string, spec: ModelSpec, parts: PartCheck[], registry: Registry): FoundModel {
  noteRegistryDtypes(parts, id.model, registry);
  return {
    id: id.model?.id ?? 'custom',
    name: id.model?.name ?? id.name,
    where,
    root,
    parts,
    complete: parts.every((p) => p.status === 'present'),
    spec: { ...spec, name: spec.name ?? id.model?.name ?? id.name },
  };
}

/** A FoundModel for a ModelSpec as given (e.g. the configured one), identified but not paired. */
export function foundFromSpec(given: ModelSpec, where: FoundWhere = 'configured', registry: Registry = loadRegistry()): FoundModel {
  const spec = Object.fromEntries(Object.entries(given).filter(([, v]) => v !== undefined).map(([k, v]) => [k, k === 'name' ? v : path.resolve(v as string)])) as ModelSpec;
  const parts = checkSpecParts(spec);
  const ditPath = spec.transformer ? path.resolve(spec.transformer) : undefined;
  const dir = spec.dir ? path.resolve(spec.dir) : undefined;
  const id = identify(registry, { ditFile: ditPath, dir });
  const identity = spec.name ? { ...id, name: spec.name } : id;
  return makeFound(identity, where, dir ?? ditPath ?? '', spec, parts, registry);
}

interface Built {
  found: FoundModel;
  /** Only the DiT is there: pair it with a base. */
  lone: boolean;
  /** The registry model to take the other parts from (the `from` of its non-DiT parts). */
  baseId?: string;
}

function baseIdOf(model: RegistryModel | undefined): string | undefined {
  return model?.parts.find((p) => p.role === 'clip')?.from;
}

function fromFolder(c: Candidate, registry: Registry): Built[] {
  const scan = safeScan(c.path);
  try {
    const isRootFile = (x: Component) => (x.path.endsWith('.safetensors') || isGgufFile(x.path)) && path.dirname(x.path) === c.path;
    const rootDits = (scan?.components ?? []).filter((x) => x.kind === 'dit' && isRootFile(x));
    const chosen = scan?.chosen.dit;
    const chosenFile = chosen && isRootFile(chosen) ? chosen.path : undefined;
    // The folder as it resolves; with several root DiTs and none chosen, one model per DiT file;
    // beside a chosen DiT, each root DiT that is another model (e.g. majicflus in a FLUX.1-dev folder).
    const variants: (string | undefined)[] = [];
    if (chosen || rootDits.length <= 1) {
      variants.push(undefined);
      const folderModel = identify(registry, { ditFile: chosenFile, repo: c.repo, dir: c.path }).model?.id;
      for (const d of rootDits) {
        if (d === chosen) continue;
        const other = identify(registry, { ditFile: d.path }).model?.id;
        if (other !== folderModel || other === undefined) variants.push(d.path);
      }
    } else {
      variants.push(...rootDits.map((d) => d.path));
    }
    return variants.map((ditFile) => {
      // An all-in-one file among others (ComfyUI's models/checkpoints/) is a model by itself.
      if (ditFile && scan?.components.some((x) => x.path === ditFile && x.kind !== 'dit')) return fromSingleFile({ ...c, path: ditFile }, registry);
      const id = identify(registry, { ditFile: ditFile ?? chosenFile, repo: c.repo, dir: c.path });
      const spec: ModelSpec = ditFile ? { dir: c.path, transformer: ditFile } : { dir: c.path };
      const parts = checkSpecParts(spec, scan);
      const found = makeFound(id, c.where, c.path, spec, parts, registry);
      const onlyDit = parts.find((p) => p.role === 'dit')!.status !== 'missing' && parts.every((p) => p.role === 'dit' || p.status === 'missing');
      return { found, lone: onlyDit, baseId: baseIdOf(id.model) };
    });
  } finally {
    closeScan(scan);
  }
}

/** An all-in-one checkpoint: a model by itself, and a base a lone DiT may take its other parts from. */
function fromSingleFile(c: Candidate, registry: Registry): Built {
  const id = identify(registry, { ditFile: c.path, repo: c.repo });
  const spec: ModelSpec = { dir: c.path };
  return { found: makeFound(id, c.where, c.path, spec, checkSpecParts(spec), registry), lone: false };
}

function fromLoneFile(c: Candidate, registry: Registry): Built {
  const id = identify(registry, { ditFile: c.path, repo: c.repo });
  const dit = checkWeightPart(c.path, 'dit');
  const found = makeFound(id, c.where, c.path, { transformer: c.path }, [dit], registry);
  return { found, lone: true, baseId: baseIdOf(id.model) };
}

/**
 * The base to take a lone DiT's other parts from: the one with the most of them present, the
 * registry's choice (flux1-dev) among equals. Only folders with at least one such part count.
 */
function chooseBase(bases: FoundModel[], baseId: string | undefined): FoundModel | undefined {
  const preferred = baseId ?? 'flux1-dev';
  const score = (m: FoundModel) => 10 * m.parts.filter((p) => p.role !== 'dit' && p.status === 'present').length + (m.id === preferred ? 5 : 0);
  const usable = bases.filter((m) => m.spec.dir && m.parts.some((p) => p.role !== 'dit' && p.status === 'present'));
  return usable.sort((a, b) => score(b) - score(a))[0];
}

function pair(lone: Built, bases: FoundModel[]): FoundModel {
  const m = lone.found;
  const dit = m.parts.find((p) => p.role === 'dit')!;
  const base = chooseBase(bases, lone.baseId);
  const ditPath = dit.path ?? m.spec.transformer;
  if (!base) {
    const wanted = lone.baseId ? `${lone.baseId}'s` : "a FLUX.1 base model's";
    const parts = PART_ROLES.map((r) => (r === 'dit' ? dit : { role: r, status: 'missing' as const, message: `not found: this DiT needs ${wanted} ${ROLE_NAMES[r]} (a FLUX.1-dev folder), and none was found` }));
    return { ...m, parts, complete: false, spec: { transformer: ditPath, name: m.spec.name } };
  }
  const { transformer: _unused, name: _baseName, ...baseSpec } = base.spec;
  const parts = PART_ROLES.map((r) => (r === 'dit' ? dit : { ...base.parts.find((p) => p.role === r)! }));
  return { ...m, parts, complete: parts.every((p) => p.status === 'present'), spec: { ...baseSpec, transformer: ditPath, name: m.spec.name } };
}

/**
 * Every model found, in the order: configured, workspace, global storage, search paths, Hugging
 * Face cache, ModelScope cache. Headers only; never throws for a bad folder.
 */
export function discoverModels(opts: DiscoverOptions = {}): FoundModel[] {
  const registry = opts.registry ?? loadRegistry();
  const env = opts.env ?? process.env;
  const home = opts.home ?? os.homedir();
  const depth = opts.maxDepth ?? DEFAULT_MAX_DEPTH;
  const candidates: Candidate[] = [];
  const guard = (f: () => void) => {
    try {
      f();
    } catch {
      // one unreadable root must not hide the others
    }
  };
  for (const ws of opts.workspaceFolders ?? []) guard(() => walk(path.resolve(ws, 'models'), 'workspace', depth, candidates));
  if (opts.globalStorage) guard(() => walk(path.resolve(opts.globalStorage!, 'models'), 'global-storage', depth, candidates));
  for (const p of opts.searchPaths ?? []) guard(() => walk(path.resolve(p), 'search-path', depth, candidates));
  guard(() => hfCandidates(env, path.resolve(home), candidates));
  guard(() => modelscopeCandidates(env, path.resolve(home), candidates));

  const built: Built[] = [];
  const seenCandidates = new Set<string>();
  for (const c of candidates) {
    const key = realpath(c.path);
    if (seenCandidates.has(key)) continue;
    seenCandidates.add(key);
    try {
      if (c.lone) built.push(fromLoneFile(c, registry));
      else if (isFile(c.path)) built.push(fromSingleFile(c, registry));
      else built.push(...fromFolder(c, registry));
    } catch {
      // a folder that breaks the checks is skipped, not fatal
    }
  }
  const bases = built.filter((b) => !b.lone).map((b) => b.found);
  const models: FoundModel[] = [];
  if (opts.configured && (opts.configured.dir || opts.configured.transformer)) {
    try {
      models.push(foundFromSpec(opts.configured, 'configured', registry));
    } catch {
      // reported by the check of the configured model instead
    }
  }
  for (const b of built) {
    // A folder with no weights at all (tokenizers only, an empty repo) is not a model.
    if (!b.found.parts.some((p) => p.role !== 'tokenizer' && p.role !== 'tokenizer2' && p.status !== 'missing')) continue;
    models.push(b.lone ? pair(b, bases) : b.found);
  }

  const seen = new Set<string>();
  const unique = models.filter((m) => {
    const dit = m.parts.find((p) => p.role === 'dit')?.path;
    const key = `${realpath(m.spec.dir)}\0${realpath(dit ?? m.spec.transformer)}`;
    if (seen.has(key)) return false;
    seen.add(key);
    return true;
  });
  return distinctNames(unique);
}

/** Models of one name (a folder with a DiT file and a transformer/ folder, two copies) get their DiT's file name added. */
function distinctNames(models: FoundModel[]): FoundModel[] {
  const count = new Map<string, number>();
  for (const m of models) count.set(m.name, (count.get(m.name) ?? 0) + 1);
  return models.map((m) => {
    if ((count.get(m.name) ?? 0) < 2) return m;
    const dit = m.parts.find((p) => p.role === 'dit')?.path ?? m.spec.transformer;
    if (!dit) return m;
    const label = path.basename(dit) === 'transformer' || !/\.safetensors$/.test(dit) ? `${path.basename(dit)}/` : path.basename(dit);
    return { ...m, name: `${m.name} (${label})` };
  });
}

