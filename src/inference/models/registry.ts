// The models MajicFLUX knows how to fetch (models/registry.json): where each lives on which hub, and
// which files of the repository make up each part. Loading validates the file and says what is
// wrong with it; planDownload turns a request into the list of files to fetch and where they land.
//
// Local layout, whatever the hub: <dest>/<owner>/<repo>/<path in repo>, e.g.
//   <dest>/black-forest-labs/FLUX.1-dev/ae.safetensors
//   <dest>/MAILAND/majicflus_v1/majicflus_v134.safetensors
// (the layout DiffSynth-Studio's `snapshot_download(..., cache_dir="models")` produces, minus
// ModelScope's `___` for dots), so the same files fetched from either hub end up in one place.

import * as fs from 'node:fs';
import * as path from 'node:path';
import * as v from 'valibot';
import { ModelSpec, UserError } from '../../shared/api';
import bundledRegistry from '../../../models/registry.json';
import { DownloadItem, DownloadRequest, HUB_NAMES, HubName, HubRepo, PART_ROLES, PartRole, Registry, RegistryFile, RegistryModel, RegistryModelSchema, RegistryPart, RegistrySchema } from '../../shared/models';

/** A registry problem: names the file and what is wrong, for the user. */
export class RegistryError extends UserError {
  constructor(readonly file: string, problem: string) {
    super(`${file}: ${problem}`);
    this.name = 'RegistryError';
  }
}

/** Where the bundled registry is read from when loadRegistry() is given no file (for messages). */
export const BUNDLED_REGISTRY = 'models/registry.json';

let cached: Registry | undefined;

/**
 * The registry: the given JSON file, or the one bundled with MajicFLUX (models/registry.json,
 * compiled into the bundle so it needs no file lookup). Validated; a RegistryError says what is
 * wrong and where.
 */
export function loadRegistry(file?: string): Registry {
  if (file === undefined) return (cached ??= validateRegistry(bundledRegistry, BUNDLED_REGISTRY));
  const abs = path.resolve(file);
  let text: string;
  try {
    text = fs.readFileSync(abs, 'utf8');
  } catch (e) {
    throw new RegistryError(abs, `cannot read: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (e) {
    throw new RegistryError(abs, `is not valid JSON (${(e as Error).message})`);
  }
  return validateRegistry(json, abs);
}

/** Checks a parsed registry; `where` names it in errors. Returns it typed (unknown keys are kept). */
export function validateRegistry(json: unknown, where = 'registry'): Registry {
  const fail = (at: string, problem: string): never => {
    throw new RegistryError(where, `${at}: ${problem}`);
  };
  const r = v.safeParse(RegistrySchema, json);
  if (!r.success) return fail(issuePlace(json, r.issues[0].path ?? []), r.issues[0].message);
  const registry = r.output;
  // What the schema cannot see: the relations between entries.
  const ids = new Set<string>();
  for (const model of registry.models) {
    const mat = `model "${model.id}"`;
    if (ids.has(model.id)) fail(mat, 'the id is used twice');
    ids.add(model.id);
    const hubs = new Set<string>();
    model.sources.forEach((src, k) => {
      if (hubs.has(src.hub)) fail(`${mat}.sources[${k}].hub`, `${src.hub} is listed twice`);
      hubs.add(src.hub);
    });
    const roles = new Set<string>();
    model.parts.forEach((part, k) => {
      const pat = `${mat}.parts[${k}]`;
      if (roles.has(part.role)) fail(`${pat}.role`, `"${part.role}" is listed twice`);
      roles.add(part.role);
      if (part.from === model.id) fail(`${pat}.from`, 'must be the id of another model');
      const paths = new Set<string>();
      part.files.forEach((file, n) => {
        if (paths.has(file.path)) fail(`${pat}.files[${n}].path`, `${file.path} is listed twice`);
        paths.add(file.path);
      });
    });
    const lacking = PART_ROLES.filter((role) => !roles.has(role));
    if (lacking.length) fail(`${mat}.parts`, `lacks ${lacking.join(', ')} (every model needs ${PART_ROLES.join(', ')})`);
  }
  // References between models, once every id is known.
  for (const m of registry.models) {
    for (const p of m.parts) {
      if (p.from === undefined) continue;
      const base = registry.models.find((x) => x.id === p.from);
      if (!base) fail(`model "${m.id}".parts (${p.role}).from`, `no model "${p.from}" in the registry`);
      if (base!.parts.find((x) => x.role === p.role)?.from !== undefined) fail(`model "${m.id}".parts (${p.role}).from`, `"${p.from}" itself takes its ${p.role} from another model: point at that one`);
    }
  }
  return registry;
}

/** Where an issue is, as a reader finds it: `model "flux1-dev".sources[0].hub` (a model by its id once it has a usable one). */
function issuePlace(json: unknown, path: readonly { key: unknown }[]): string {
  if (!path.length) return 'top level';
  let at = '';
  let node: unknown = json;
  path.forEach(({ key }, k) => {
    node = typeof node === 'object' && node !== null ? (node as Record<string, unknown>)[key as string] : undefined;
    const id = k === 1 ? (node as { id?: unknown } | undefined)?.id : undefined;
    if (id !== undefined && v.is(RegistryModelSchema.entries.id, id) && path[2]?.key !== 'id') at = `model "${id}"`;
    else at += typeof key === 'number' ? `[${key}]` : at ? `.${String(key)}` : String(key);
  });
  return at;
}

/** One registry model by id; a UserError lists the known ids. */
export function registryModel(id: string, registry: Registry = loadRegistry()): RegistryModel {
  const m = registry.models.find((x) => x.id === id);
  if (!m) throw new UserError(`Unknown model "${id}". Known models: ${registry.models.map((x) => x.id).join(', ')}.`);
  return m;
}

/** A part with the model whose repository holds its files (`from`, else the model itself). */
export interface ResolvedPart extends RegistryPart {
  /** The registry model whose repositories hold the files. */
  owner: RegistryModel;
}

/** The model's parts, each with the model that hosts its files (`from` resolved), in PART_ROLES order. */
export function partsOf(model: RegistryModel, registry: Registry = loadRegistry()): ResolvedPart[] {
  return PART_ROLES.map((role) => {
    const part = model.parts.find((p) => p.role === role);
    if (!part) throw new UserError(`Registry model "${model.id}" has no ${role} part.`);
    return { ...part, owner: part.from ? registryModel(part.from, registry) : model };
  });
}

/** The source of `model` on `hub`, if it has one. */
export function sourceOn(model: RegistryModel, hub: HubName): HubRepo | undefined {
  return model.sources.find((s) => s.hub === hub);
}

/** Where a repository's files land under a models root: <dest>/<owner>/<repo>. */
export function localRepoDir(dest: string, repo: string): string {
  const [owner, name] = repo.split('/');
  return path.join(path.resolve(dest), owner, name);
}

/** The registry model a repository id belongs to (any hub; ModelScope's `___` read as "."), if any. */
export function modelForRepo(repo: string, registry: Registry = loadRegistry()): RegistryModel | undefined {
  const key = normalizeRepo(repo);
  return registry.models.find((m) => m.sources.some((s) => normalizeRepo(s.repo) === key));
}

/** A repository id compared without case, with ModelScope's masked dots (`FLUX___1-dev`) read as dots. */
export function normalizeRepo(repo: string): string {
  return repo.replace(/___/g, '.').toLowerCase();
}

/** The registry model whose own DiT file has this name (e.g. majicflus_v134.safetensors), if any. */
export function modelForDitFile(fileName: string, registry: Registry = loadRegistry()): RegistryModel | undefined {
  const name = fileName.toLowerCase();
  return registry.models.find((m) => m.parts.some((p) => p.role === 'dit' && !p.from && p.files.some((f) => f.path.endsWith('.safetensors') && path.posix.basename(f.path).toLowerCase() === name)));
}

export interface PlanOptions {
  /** Roles to leave out even when requested (e.g. parts discovery found present and verified). */
  exclude?: PartRole[];
}

export interface DownloadPlan {
  items: DownloadItem[];
  /** What to give the pipeline once the files are there (all parts, whichever were fetched now). */
  spec: ModelSpec;
  /** The repositories the items come from (each once). */
  repos: HubRepo[];
}

/**
 * The files to fetch for a request. Hub: the request's, else the model's first source; a model not
 * offered on the requested hub is an error. Parts taken `from` another model come from that model's
 * repository on the same hub, or its first source when that hub does not host it. Files land in
 * <dest>/<owner>/<repo>/<path in repo>; `spec.dir` is the folder of the model that holds the text
 * encoders, VAE and tokenizers, `spec.transformer` the DiT file.
 */
export function planDownload(req: DownloadRequest, registry: Registry = loadRegistry(), opts: PlanOptions = {}): DownloadPlan {
  const model = registryModel(req.model, registry);
  if (!req.dest) throw new UserError('A download needs a destination folder.');
  const hub = req.hub ?? model.sources[0].hub;
  if (!HUB_NAMES.includes(hub)) throw new UserError(`Unknown hub "${hub}": use ${HUB_NAMES.join(' or ')}.`);
  if (!sourceOn(model, hub)) {
    throw new UserError(`${model.name} is not offered on ${hubLabel(hub)}; download it from ${model.sources.map((s) => hubLabel(s.hub)).join(' or ')}.`);
  }
  const requested = req.parts?.length ? req.parts : PART_ROLES;
  for (const r of requested) if (!PART_ROLES.includes(r)) throw new UserError(`Unknown part "${r}": use ${PART_ROLES.join(', ')}.`);
  const parts = partsOf(model, registry);
  const repoFor = (owner: RegistryModel): HubRepo => sourceOn(owner, hub) ?? owner.sources[0];

  const items: DownloadItem[] = [];
  const repos: HubRepo[] = [];
  for (const part of parts) {
    if (!requested.includes(part.role) || opts.exclude?.includes(part.role)) continue;
    const repo = repoFor(part.owner);
    if (!repos.includes(repo)) repos.push(repo);
    for (const f of part.files) {
      if (items.some((i) => i.repo === repo && i.path === f.path)) continue;
      items.push(itemFor(repo, f, req.dest));
    }
  }

  const dit = parts.find((p) => p.role === 'dit')!;
  const ditFile = dit.files.find((f) => f.path.endsWith('.safetensors'));
  const baseOwner = parts.find((p) => p.role === 'clip')!.owner;
  // A DiT in the base's own folder is found there (as discovery finds it); a fine-tune's lives elsewhere.
  const dir = localRepoDir(req.dest, repoFor(baseOwner).repo);
  const ditDir = localRepoDir(req.dest, repoFor(dit.owner).repo);
  const spec: ModelSpec = {
    dir,
    ...(ditFile && ditDir !== dir ? { transformer: path.join(ditDir, ...ditFile.path.split('/')) } : {}),
    name: model.name,
  };
  return { items, spec, repos };
}

function itemFor(repo: HubRepo, f: RegistryFile, dest: string): DownloadItem {
  return {
    repo,
    path: f.path,
    dest: path.join(localRepoDir(dest, repo.repo), ...f.path.split('/')),
    ...(f.size !== undefined ? { size: f.size } : {}),
    ...(f.sha256 ? { sha256: f.sha256 } : {}),
  };
}

export function hubLabel(hub: HubName): string {
  return hub === 'huggingface' ? 'Hugging Face' : 'ModelScope';
}
