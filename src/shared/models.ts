// The shapes shared by the model registry, discovery, check and download code, the server protocol
// and the extension. Types only (and a few constant lists): nothing here touches node modules, so
// the extension and protocol.ts can import it.

import type { ComponentName, MemoryMode, ModelSpec, WeightFormat } from './api';

export type HubName = 'huggingface' | 'modelscope';
export const HUB_NAMES: readonly HubName[] = ['huggingface', 'modelscope'];

/** The pieces a FLUX.1 pipeline needs: the four weight components and the two tokenizers. */
export type PartRole = ComponentName | 'tokenizer' | 'tokenizer2';
export const PART_ROLES: readonly PartRole[] = ['dit', 'clip', 't5', 'vae', 'tokenizer', 'tokenizer2'];

// ─── registry (models/registry.json) ────────────────────────────────────────────────────────────

/** One repository on one hub. `revision` defaults to the hub's main branch. */
export interface HubRepo {
  hub: HubName;
  repo: string;
  revision?: string;
  /** A login and an accepted licence are needed (Hugging Face gated repositories). */
  gated?: boolean;
  /** Where the user accepts the licence / asks for access. */
  licenceUrl?: string;
}

/** A file as the registry knows it: its path inside the repository; size and sha256 where known. */
export interface RegistryFile {
  path: string;
  size?: number;
  sha256?: string;
}

export interface RegistryPart {
  role: PartRole;
  /** Id of the registry model whose repository holds this part (default: the model itself). */
  from?: string;
  /** The files of this part, all needed. */
  files: RegistryFile[];
  /** Dtypes the part's tensors are published in (e.g. ["BF16"]); others count as a different variant. */
  dtypes?: string[];
}

export interface RegistryModel {
  id: string;
  name: string;
  description: string;
  /** The same repository on each hub that has it; the first is the default download source. */
  sources: HubRepo[];
  parts: RegistryPart[];
  /** Default generation parameters for this model (schnell: 4 steps, guidance 0, t5 256). */
  defaults?: { steps?: number; guidance?: number; t5MaxLength?: number };
}

export interface Registry {
  version: 1;
  models: RegistryModel[];
}

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
