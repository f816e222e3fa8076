// The model-management payloads of the protocol (find, check and download models): each a schema
// whose output must equal its interface in models.ts (or api.ts's ModelSpec) field for field, or
// this file does not compile. Kept apart from protocol.ts because these shapes follow the model
// tooling (discovery, memory estimates, downloads) and change with it, not with the messages.

import * as v from 'valibot';
import type { ModelSpec } from './api';
import { WEIGHT_FORMATS } from './api';
import type {
  DownloadErrorCode,
  DownloadProgress,
  DownloadRequest,
  DownloadResult,
  FoundModel,
  MachineInfo,
  MemoryEstimate,
  ModelCheckReport,
  PartCheck,
} from './models';
import { HUB_NAMES, PART_ROLES } from './models';
import { arr, bool, bytes, int, MAX_SAFE, num, obj, oneOf, partialRecord, path, record, Same, str } from './wireSchema';

const weights = oneOf(...WEIGHT_FORMATS);
const hub = oneOf(...HUB_NAMES);
const role = oneOf(...PART_ROLES);

export const ModelSpecSchema = obj({
  dir: v.optional(path),
  transformer: v.optional(path),
  vae: v.optional(path),
  textEncoder: v.optional(path),
  textEncoder2: v.optional(path),
  tokenizer: v.optional(path),
  tokenizer2: v.optional(path),
  name: v.optional(str(200)),
  demo: v.optional(path),
});

/** Where to look for models besides the configured one and the hub caches. */
export const ModelSearchSchema = obj({
  searchPaths: v.optional(arr(path, 1000)),
  workspaceFolders: v.optional(arr(path, 1000)),
  /** The extension's global storage folder (its models/ subfolder holds what it downloaded). */
  globalStorage: v.optional(path),
});
export type ModelSearch = v.InferOutput<typeof ModelSearchSchema>;

export const DownloadRequestSchema = obj({
  model: str(200, 1),
  hub: v.optional(hub),
  dest: path,
  token: v.optional(str(1000)),
  parts: v.optional(arr(role, PART_ROLES.length)),
  endpoints: v.optional(partialRecord(HUB_NAMES, str(2000, 1))),
});

const PartCheckSchema = obj({
  role,
  status: oneOf('present', 'missing', 'wrong-dtype', 'corrupt'),
  path: v.optional(path),
  layout: v.optional(str(200)),
  dtypes: v.optional(record(int(0, MAX_SAFE), 64)),
  params: v.optional(int(0, MAX_SAFE)),
  bytes: v.optional(bytes),
  message: v.optional(str(10_000)),
  sha256: v.optional(str(64)),
  verified: v.optional(oneOf('match', 'mismatch', 'recorded')),
});

export const FoundModelSchema = obj({
  id: str(200),
  name: str(500),
  where: oneOf('configured', 'workspace', 'global-storage', 'search-path', 'huggingface-cache', 'modelscope-cache'),
  root: path,
  parts: arr(PartCheckSchema, 64),
  complete: bool,
  spec: ModelSpecSchema,
});

export const MachineInfoSchema = obj({
  platform: str(100),
  arch: str(100),
  cpus: int(0, 1 << 20),
  totalMemory: bytes,
  freeMemory: bytes,
  gpuMemory: v.optional(bytes),
  gpuName: v.optional(str(500)),
});

const MemoryEstimateSchema = obj({
  weights,
  mode: oneOf('sequential', 'resident'),
  width: int(0, 1 << 20),
  height: int(0, 1 << 20),
  components: obj({ clip: bytes, t5: bytes, dit: bytes, vae: bytes }),
  peak: bytes,
  fitsRam: bool,
  fitsGpu: v.optional(bool),
});

export const CheckReportSchema = obj({
  model: FoundModelSchema,
  machine: MachineInfoSchema,
  estimates: arr(MemoryEstimateSchema, 1000),
  advice: arr(str(10_000), 100),
});

export const DownloadProgressSchema = obj({
  file: str(4096),
  files: int(0, MAX_SAFE),
  filesDone: int(0, MAX_SAFE),
  bytes,
  total: bytes,
  bytesPerSecond: num(0, Infinity),
  etaSeconds: v.optional(num(0, Infinity)),
});

export const DownloadResultSchema = obj({
  spec: ModelSpecSchema,
  files: arr(obj({ path, bytes, sha256: str(64), resumedFrom: v.optional(bytes), skipped: v.optional(bool) }), 10_000),
});

export const DOWNLOAD_ERROR_CODES = ['auth-required', 'forbidden', 'not-found', 'network', 'http', 'disk-full', 'checksum', 'cancelled'] as const;

type SchemasMatchInterfaces = [
  Same<v.InferOutput<typeof ModelSpecSchema>, ModelSpec>,
  Same<v.InferOutput<typeof PartCheckSchema>, PartCheck>,
  Same<v.InferOutput<typeof FoundModelSchema>, FoundModel>,
  Same<v.InferOutput<typeof MachineInfoSchema>, MachineInfo>,
  Same<v.InferOutput<typeof MemoryEstimateSchema>, MemoryEstimate>,
  Same<v.InferOutput<typeof CheckReportSchema>, ModelCheckReport>,
  Same<v.InferOutput<typeof DownloadRequestSchema>, DownloadRequest>,
  Same<v.InferOutput<typeof DownloadProgressSchema>, DownloadProgress>,
  Same<v.InferOutput<typeof DownloadResultSchema>, DownloadResult>,
  Same<(typeof DOWNLOAD_ERROR_CODES)[number], DownloadErrorCode>,
] extends true[] ? true : never;
const schemasMatchInterfaces: SchemasMatchInterfaces = true;
void schemasMatchInterfaces;
