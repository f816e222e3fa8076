// Finds FLUX.1 models on this machine and checks each part from file headers only: the configured
// paths, each workspace folder's models/, the extension's global storage models/, extra search
// paths, the Hugging Face hub cache and ModelScope's cache. Where to look is candidates.ts's, the
// part checks are partChecks.ts's; this file makes models of what was found.
//
// Rules:
//  * A folder with no weights at all (tokenizers only) is not reported.
//  * Identity: a registry model by its DiT file's name (majicflus_v134.safetensors), else by the
//    repository (cache layouts, or the folder's <owner>/<repo> path, ModelScope's `___` read as
//    "."), else by the folder's name (FLUX.1-dev); otherwise "custom".
//  * A lone DiT (a fine-tune's single file, or a folder whose only present part is the DiT) is
//    paired with a base found anywhere in the same discovery: the model its registry entry takes
//    the other parts from (flux1-dev), else any base with the most parts present. spec.dir is the
//    base's folder, spec.transformer the DiT. Without a base it is reported incomplete.
//  * A model folder with several root DiT files gives one model per file.
//  * The same model found twice (realpath of its folder and of the DiT used) is listed once, at
//    its first place in the order above. Nothing here throws for one bad folder.

import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import type { ModelSpec } from '../../shared/api';
import { Component } from '../formats/layouts/components';
import { isGgufFile } from '../formats/gguf';
import { isFile } from './files';
import { loadRegistry, modelForDitFile, modelForRepo, normalizeRepo } from './registry';
import { FoundModel, FoundWhere, PART_ROLES, PartCheck, Registry, RegistryModel } from '../../shared/models';
import { Candidate, DEFAULT_MAX_DEPTH, hfCandidates, modelscopeCandidates, walk } from './candidates';
import { checkSpecParts, checkWeightPart, closeScan, noteRegistryDtypes, ROLE_NAMES, safeScan } from './partChecks';

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

