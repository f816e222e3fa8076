// Where models may be: the roots discovery.ts searches, walked for model folders and lone DiT
// files, and the Hugging Face and ModelScope caches read in their own layouts.
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

import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import type { FoundWhere } from '../../shared/models';
import { detectLayouts } from '../formats/layouts/detect';
import { isModelFolder, MAX_ROOT_FILES } from '../formats/layouts/folder';
import { isGgufFile } from '../formats/gguf';
import { openTensors, TensorSource } from '../formats/safetensors';

export const DEFAULT_MAX_DEPTH = 3;
const MAX_DIRS_PER_ROOT = 400;
const MAX_ENTRIES_PER_DIR = 2000;

export interface Candidate {
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
export function walk(root: string, where: FoundWhere, maxDepth: number, out: Candidate[]): void {
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

export function hfCandidates(env: NodeJS.ProcessEnv, home: string, out: Candidate[]): void {
  const cache = hfCacheDir(env, home);
  for (const e of readDir(cache)) {
    const repo = hfRepoOf(e);
    if (!repo) continue;
    const snap = hfSnapshot(path.join(cache, e));
    if (snap) candidatesInFolder(snap, 'huggingface-cache', repo, out);
  }
}

const MODELSCOPE_SKIP = new Set(['models', 'datasets', 'hub', 'ast_indexer', 'ast_indexer.json']);

export function modelscopeCandidates(env: NodeJS.ProcessEnv, home: string, out: Candidate[]): void {
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
