// The shapes shared by the model registry, discovery, check and download code, the server protocol
// and the extension. Types, a few constant lists and the registry's schemas (valibot, pure JavaScript):
// nothing here touches node modules, so the extension and protocol.ts can import it.

import * as v from 'valibot';
import type { ComponentName, MemoryMode, ModelSpec, WeightFormat } from './api';
import { Guidance, Steps, T5MaxLength } from './params';

export type HubName = 'huggingface' | 'modelscope';
export const HUB_NAMES: readonly HubName[] = ['huggingface', 'modelscope'];

/** The pieces a FLUX.1 pipeline needs: the four weight components and the two tokenizers. */
export type PartRole = ComponentName | 'tokenizer' | 'tokenizer2';
export const PART_ROLES: readonly PartRole[] = ['dit', 'clip', 't5', 'vae', 'tokenizer', 'tokenizer2'];

// ─── registry (models/registry.json) ────────────────────────────────────────────────────────────
// Schemas, with the types inferred from them. The messages complete "<where>: " (the registry code
// names the place); relations between entries (ids used twice, `from` references) are checked there.

const found = (i: { input: unknown }) => `found ${JSON.stringify(i.input)}`;
const nonEmpty = v.pipe(v.string('must be a non-empty string'), v.check((s) => s.trim() !== '', 'must be a non-empty string'));
const ID_RE = /^[a-z0-9][a-z0-9._-]*$/;
const REPO_RE = /^[A-Za-z0-9][A-Za-z0-9._-]*\/[A-Za-z0-9][A-Za-z0-9._-]*$/;
const SHA256_RE = /^[0-9a-f]{64}$/;

/** A path inside a repository: relative, `/`-separated, no `..`, nothing that leaves it. */
export function safeRepoPath(p: string): boolean {
  return p.length > 0 && !p.startsWith('/') && !p.includes('\\') && !/^[A-Za-z]:/.test(p) && p.split('/').every((s) => s !== '' && s !== '.' && s !== '..');
}

/** One repository on one hub. `revision` defaults to the hub's main branch. */
export const HubRepoSchema = v.looseObject(
  {
    hub: v.picklist(HUB_NAMES, (i) => `must be one of ${HUB_NAMES.join(', ')}, ${found(i)}`),
    repo: v.pipe(v.string((i) => `must be "owner/name", ${found(i)}`), v.regex(REPO_RE, (i) => `must be "owner/name", ${found(i)}`)),
    revision: v.optional(v.pipe(v.string('must be a non-empty string'), v.minLength(1, 'must be a non-empty string'))),
    /** A login and an accepted licence are needed (Hugging Face gated repositories). */
    gated: v.optional(v.boolean('must be true or false')),
    /** Where the user accepts the licence / asks for access. */
    licenceUrl: v.optional(v.pipe(v.string('must be an https:// URL'), v.startsWith('https://', 'must be an https:// URL'))),
  },
  'must be an object',
);
export type HubRepo = v.InferOutput<typeof HubRepoSchema>;

/** A file as the registry knows it: its path inside the repository; size and sha256 where known. */
export const RegistryFileSchema = v.looseObject(
  {
    path: v.pipe(
      v.string((i) => `must be a relative path inside the repository (no "..", no leading "/"), ${found(i)}`),
      v.check(safeRepoPath, (i) => `must be a relative path inside the repository (no "..", no leading "/"), ${found(i)}`),
    ),
    size: v.optional(v.pipe(v.number('must be a whole number of bytes'), v.safeInteger('must be a whole number of bytes'), v.minValue(0, 'must be a whole number of bytes'))),
    /** '' (unknown) is allowed. */
    sha256: v.optional(v.pipe(v.string('must be 64 lower-case hex digits (or left out when unknown)'), v.check((s) => s === '' || SHA256_RE.test(s), 'must be 64 lower-case hex digits (or left out when unknown)'))),
  },
  'must be an object with a "path"',
);
export type RegistryFile = v.InferOutput<typeof RegistryFileSchema>;

export const RegistryPartSchema = v.looseObject(
  {
    role: v.picklist(PART_ROLES, (i) => `must be one of ${PART_ROLES.join(', ')}, ${found(i)}`),
    /** Id of the registry model whose repository holds this part (default: the model itself). */
    from: v.optional(v.string('must be the id of another model')),
    /** The files of this part, all needed. */
    files: v.pipe(v.array(RegistryFileSchema, 'must list at least one file'), v.minLength(1, 'must list at least one file')),
    /** Dtypes the part's tensors are published in (e.g. ["BF16"]); others count as a different variant. */
    dtypes: v.optional(v.array(v.pipe(v.string('must be a dtype name such as "BF16"'), v.minLength(1, 'must be a dtype name such as "BF16"')), 'must be a list of dtype names such as "BF16"')),
  },
  'must be an object',
);
export type RegistryPart = v.InferOutput<typeof RegistryPartSchema>;

export const RegistryModelSchema = v.looseObject(
  {
    id: v.pipe(
      v.string((i) => `must be lower-case letters, digits, ".", "_" or "-", ${found(i)}`),
      v.regex(ID_RE, (i) => `must be lower-case letters, digits, ".", "_" or "-", ${found(i)}`),
    ),
    name: nonEmpty,
    description: nonEmpty,
    /** The same repository on each hub that has it; the first is the default download source. */
    sources: v.pipe(v.array(HubRepoSchema, 'must list at least one hub repository'), v.minLength(1, 'must list at least one hub repository')),
    parts: v.array(RegistryPartSchema, 'must be a list'),
    /** Default generation parameters for this model (schnell: 4 steps, guidance 0, t5 256), within params.ts's limits. */
    defaults: v.optional(
      v.strictObject(
        { steps: v.optional(Steps), guidance: v.optional(Guidance), t5MaxLength: v.optional(T5MaxLength) },
        (i) => (i.expected === 'never' ? 'is not a field (the fields are steps, guidance, t5MaxLength)' : 'must be an object'),
      ),
    ),
  },
  'must be an object',
);
export type RegistryModel = v.InferOutput<typeof RegistryModelSchema>;

export const RegistrySchema = v.looseObject(
  {
    version: v.literal(1, (i) => `must be 1, ${found(i)}`),
    models: v.pipe(v.array(RegistryModelSchema, 'must be a non-empty list'), v.minLength(1, 'must be a non-empty list')),
  },
  'must be a JSON object with "version" and "models"',
);
export type Registry = v.InferOutput<typeof RegistrySchema>;

// ─── discovery and check ────────────────────────────────────────────────────────────────────────

/** Where a model was found. */
export type FoundWhere = 'configured' | 'workspace' | 'global-storage' | 'search-path' | 'huggingface-cache' | 'modelscope-cache';

export type PartStatus = 'present' | 'missing' | 'wrong-dtype' | 'corrupt';

export interface PartCheck {
  role: PartRole;
  status: PartStatus;
  /** File or folder used for this part (absent when missing). */
  path?: string;
  /** Layout detected from the tensor names (e.g. "bfl-dit", "hf-t5"). */
  layout?: string;
  /** Dtypes of the tensors with their counts, e.g. { BF16: 780, F32: 4 }. */
  dtypes?: Record<string, number>;
  params?: number;
  /** Bytes on disk. */
  bytes?: number;
  /** What is wrong or notable, in one sentence for the user. */
  message?: string;
  /** sha256 when verified (full read), and whether it matched the registry's or the recorded one. */
  sha256?: string;
  verified?: 'match' | 'mismatch' | 'recorded';
}

export interface FoundModel {
  /** The registry model it matches, or "custom". */
  id: string;
  name: string;
  where: FoundWhere;
  /** The folder (or file) the model was found at. */
  root: string;
  parts: PartCheck[];
  /** Every part present and usable. */
  complete: boolean;
  /** What to give the pipeline (settings majicflux.model.*) to use this model. */
  spec: ModelSpec;
}

/** The one reason no part is usable, when they all share it (e.g. "model folder not found: /models/x"): said once, by the CLI and the extension. */
export function commonProblem(model: FoundModel): string | undefined {
  const reasons = new Set(model.parts.map((p) => (p.status === 'present' ? undefined : p.message)));
  const [only] = reasons;
  return reasons.size === 1 && only ? only : undefined;
}

export interface MachineInfo {
  platform: string;
  arch: string;
  cpus: number;
  totalMemory: number;
  freeMemory: number;
  /** GPU memory in bytes, from nvidia-smi or the user's setting; absent when unknown. */
  gpuMemory?: number;
  gpuName?: string;
}

/** Peak memory of one weight format in one memory mode at one resolution. */
export interface MemoryEstimate {
  weights: WeightFormat;
  mode: Exclude<MemoryMode, 'auto'>;
  width: number;
  height: number;
  /** Weights of each component as held in memory, bytes. */
  components: Record<ComponentName, number>;
  /** Peak resident bytes of the whole pipeline (weights held + the largest working set). */
  peak: number;
  fitsRam: boolean;
  /** Whether the DiT step fits the GPU (absent when the GPU memory is unknown). */
  fitsGpu?: boolean;
}

export interface ModelCheckReport {
  model: FoundModel;
  machine: MachineInfo;
  estimates: MemoryEstimate[];
  /** Plain sentences: what fits this machine and what does not, best choice first. */
  advice: string[];
}

// ─── download ───────────────────────────────────────────────────────────────────────────────────

export interface DownloadRequest {
  /** Registry model id. */
  model: string;
  /** Hub to fetch from (default: the model's first source). */
  hub?: HubName;
  /** Models root: files land in <dest>/<owner>/<repo>/<path in repo>. */
  dest: string;
  /** Hugging Face access token (gated repositories). Never logged or stored by the server. */
  token?: string;
  /** Parts to fetch (default: every part the model needs that is not already present and verified). */
  parts?: PartRole[];
  /** Base URLs of the hubs (mirrors, tests); default https://huggingface.co and https://modelscope.cn. */
  endpoints?: Partial<Record<HubName, string>>;
}

/** One file to fetch: from where, to where, and what it should be (where known). */
export interface DownloadItem {
  repo: HubRepo;
  /** Path inside the repository. */
  path: string;
  /** Absolute destination path. */
  dest: string;
  size?: number;
  sha256?: string;
}

export interface DownloadProgress {
  /** File being transferred now (one of them, when several run in parallel). */
  file: string;
  files: number;
  filesDone: number;
  /** Bytes on disk for this download, resumed bytes included. */
  bytes: number;
  total: number;
  /** Transfer speed over the last few seconds. */
  bytesPerSecond: number;
  /** Seconds left at that speed; absent until known. */
  etaSeconds?: number;
}

export type DownloadErrorCode =
  | 'auth-required' // 401: no token, or the token is invalid/expired
  | 'forbidden' // 403: the token has no access (licence not accepted)
  | 'not-found' // 404
  | 'network' // DNS, refused, reset, timeout
  | 'http' // another HTTP status
  | 'disk-full'
  | 'checksum'
  | 'cancelled';

export interface DownloadResult {
  /** What to give the pipeline (settings majicflux.model.*) to use the model. */
  spec: ModelSpec;
  files: { path: string; bytes: number; sha256: string; resumedFrom?: number; skipped?: boolean }[];
}
