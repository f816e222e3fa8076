// The message protocol between a client (the extension, a script) and the inference server. The
// only file both sides import, so it imports nothing at runtime beyond api.ts, params.ts and
// models.ts (free of node modules) and valibot: it must stay bundleable anywhere. Messages are
// JSON objects, one per line (NDJSON), over a pipe or a TCP socket. docs/PROTOCOL.md documents
// every message.
//
// Every message is validated on receipt (validateRequest / validateServerMessage): validation
// never throws, rebuilds the object from known fields only (unknown ones are dropped, so a newer
// peer's additions are harmless) and says which field is wrong. Each message's type is inferred
// from its schema, so a field can't be typed and then forgotten by the validator. A generation's
// parameters and an image's metadata are params.ts's schemas: one set of limits for every surface.

import * as v from 'valibot';
import type { ComponentName, ExecutionProvider, ModelSpec, StageTiming } from './api';
import { COMPONENTS, EP_CHOICES, errorText, EXECUTION_PROVIDERS, LOAD_PHASES, MEMORY_MODES, WEIGHT_CHOICES, WEIGHT_FORMATS } from './api';
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
import { GenerateParamsSchema, Height, ImageMetadataSchema, Width } from './params';

/** Bumped on any incompatible change; `hello` fails when client and server differ. */
export const PROTOCOL_VERSION = 1;

/** Longest line either side accepts (a done event with the image inline is the largest message). */
export const MAX_LINE_BYTES = 64 * 1024 * 1024;

// =============================================================================================
// Schema builders: valibot schemas whose messages say what was expected and what came. The field
// path is added by `describeIssue`. Strings, arrays and records all have a maximum size: a hostile
// peer must not make the other side keep or walk unbounded data.

function got(x: unknown): string {
  if (x === null) return 'null';
  if (Array.isArray(x)) return 'an array';
  if (typeof x === 'string') return x.length > 40 ? `a string of ${x.length} characters` : JSON.stringify(x);
  if (typeof x === 'object') return 'an object';
  return String(x);
}

const expected = (want: string) => (i: { input: unknown }) => `expected ${want}, got ${got(i.input)}`;

function str(max = 4096, min = 0) {
  const m = expected(`a string of ${min}–${max} characters`);
  return v.pipe(v.string(m), v.minLength(min, m), v.maxLength(max, m));
}

function num(min: number, max: number) {
  const m = expected(`a number between ${min} and ${max}`);
  return v.pipe(v.number(m), v.finite(m), v.minValue(min, m), v.maxValue(max, m));
}

function int(min: number, max: number) {
  const m = expected(`an integer between ${min} and ${max}`);
  return v.pipe(v.number(m), v.integer(m), v.minValue(min, m), v.maxValue(max, m));
}

const bool = v.boolean(expected('true or false'));

function oneOf<const T extends readonly string[]>(...values: T) {
  return v.picklist(values, expected(`one of ${values.map((x) => JSON.stringify(x)).join(', ')}`));
}

function isPlainObject(x: unknown): x is Record<string, unknown> {
  return typeof x === 'object' && x !== null && !Array.isArray(x);
}

/** An object of known fields; others are dropped. Not an array (valibot's object would take one). */
function obj<E extends v.ObjectEntries>(entries: E) {
  const anObject = expected('an object');
  return v.pipe(
    v.custom<Record<string, unknown>>(isPlainObject, anObject),
    v.object(entries, (i) => (i.path ? 'required but missing' : anObject(i))),
  );
}

/** An object with only the listed keys, all optional, all of one kind. */
function partialRecord<const K extends string, S extends v.GenericSchema>(keys: readonly K[], value: S) {
  const entries = Object.fromEntries(keys.map((k) => [k, v.optional(value)])) as { [P in K]: v.OptionalSchema<S, undefined> };
  return v.strictObject(entries, (i) =>
    i.expected === 'never' ? `unknown key ${JSON.stringify(i.input)} (expected ${keys.join(', ')})` : expected('an object')(i),
  );
}

/** Checked for size before any item is: a million-item array is refused, not walked. */
function arr<S extends v.GenericSchema>(item: S, max: number) {
  return v.pipe(
    v.custom<unknown[]>((x) => Array.isArray(x) && x.length <= max, expected(`an array of at most ${max} items`)),
    v.array(item),
  );
}

/** A string-keyed record of at most `max` entries, all of one kind. */
function record<S extends v.GenericSchema>(value: S, max: number) {
  return v.pipe(
    v.custom<Record<string, unknown>>((x) => isPlainObject(x) && Object.keys(x).length <= max, expected(`an object of at most ${max} keys`)),
    v.record(v.string(), value),
  );
}

/** A message: `type` (or `event`) fixed, then its fields. */
function message<const T extends string, E extends v.ObjectEntries>(type: T, entries: E) {
  return obj({ id, type: v.literal(type), ...entries });
}

function event<const T extends string, E extends v.ObjectEntries>(name: T, entries: E) {
  return obj({ type: v.literal('event'), event: v.literal(name), ...entries });
}

// =============================================================================================
// Shared shapes

const MAX_SAFE = Number.MAX_SAFE_INTEGER;
const path = str(4096, 1);
const id = int(0, MAX_SAFE);
const jobId = str(100, 1);
const ep = oneOf(...EXECUTION_PROVIDERS);
const epChoice = oneOf(...EP_CHOICES);
const component = oneOf(...COMPONENTS);
const components = arr(component, COMPONENTS.length);
const stage = oneOf('load', 'text', 'encode', 'denoise', 'decode', 'save');
const weights = oneOf(...WEIGHT_FORMATS);
const weightChoice = oneOf(...WEIGHT_CHOICES);
const memoryMode = oneOf(...MEMORY_MODES);
const bytes = num(0, 2 ** 60);
const LOG_LEVELS = ['trace', 'debug', 'info', 'warn', 'error'] as const;
const logLevel = oneOf(...LOG_LEVELS);
const hub = oneOf(...HUB_NAMES);
const role = oneOf(...PART_ROLES);

const ModelSpecSchema = obj({
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

const ServerSettingsSchema = obj({
  model: ModelSpecSchema,
  weights: v.optional(weightChoice),
  ep: v.optional(epChoice),
  stageEp: v.optional(partialRecord(COMPONENTS, epChoice)),
  memory: v.optional(memoryMode),
  /** RAM budget in bytes for memory `auto` (default: detected from the OS). */
  memoryBudget: v.optional(bytes),
  /** GPU memory in bytes, for memory `auto` on a GPU execution provider (the user's setting). */
  gpuMemory: v.optional(bytes),
  cacheDir: v.optional(path),
  /** Disk the weight caches may take, bytes: the least recently used are removed past it (0 or absent: no limit). */
  cacheMaxBytes: v.optional(bytes),
  threads: v.optional(int(0, 1024)),
});
/** Server-wide settings, sent with `hello` and changeable with `configure`. */
export type ServerSettings = v.InferOutput<typeof ServerSettingsSchema>;

const JobRequestSchema = obj({
  params: GenerateParamsSchema,
  /**
   * Path of the PNG to write, on the server's machine. Never overwritten: when taken, the server
   * writes `name-1.png`, `name-2.png`, … and reports the path used in `done`. Absolute for a
   * local server; in `serve` mode relative to (and confined to) the server's output folder.
   */
  output: path,
  /** Also send the PNG bytes in `done` (a remote server, whose files the client cannot read). */
  returnImage: v.optional(bool),
  /** Send a latent preview with every Nth step event (0 or absent: none). */
  previewEvery: v.optional(int(0, 1000)),
});
export type JobRequest = v.InferOutput<typeof JobRequestSchema>;

const JOB_STATES = ['queued', 'running', 'done', 'failed', 'cancelled'] as const;
export type JobState = (typeof JOB_STATES)[number];

const JobInfoSchema = obj({
  jobId,
  state: oneOf(...JOB_STATES),
  /** The prompt, shortened to 200 characters. */
  prompt: str(100_000),
  /** 0 for the running job, 1 for the next one, …; absent once finished. */
  position: v.optional(int(0, MAX_SAFE)),
});
export type JobInfo = v.InferOutput<typeof JobInfoSchema>;

const serverState = oneOf('idle', 'loading', 'busy');

const StatusInfoSchema = obj({
  /** Software version of the server. */
  version: str(200),
  pid: int(0, MAX_SAFE),
  state: serverState,
  loaded: components,
  /** The running job first, then the queue, then up to 20 recently finished jobs. */
  jobs: arr(JobInfoSchema, 100_000),
  rss: bytes,
  eps: arr(obj({ component, ep, note: v.optional(str()) }), 100),
  model: v.optional(str()),
  memory: memoryMode,
  /** RAM budget used for memory `auto`, bytes. */
  memoryBudget: bytes,
  uptime: num(0, Infinity),
});
export type StatusInfo = v.InferOutput<typeof StatusInfoSchema>;

export type LogLevel = (typeof LOG_LEVELS)[number];

export const ERROR_CODES = [
  'bad-json', // the line is not JSON
  'bad-request', // JSON, but not a valid request
  'line-too-long',
  'handshake-required', // a request before `hello`
  'protocol-mismatch',
  'unauthorized', // wrong or missing token (TCP); the server closes the connection
  'busy', // TCP: another client is connected; the server closes the connection
  'unknown-job',
  'queue-full',
  'bad-output', // output path missing or outside the output folder
  'shutting-down',
  'failed', // the request was valid but could not be carried out (message says why)
] as const;
export type ErrorCode = (typeof ERROR_CODES)[number];

/** Where to look for models besides the configured one and the hub caches. */
const ModelSearchSchema = obj({
  searchPaths: v.optional(arr(path, 1000)),
  workspaceFolders: v.optional(arr(path, 1000)),
  /** The extension's global storage folder (its models/ subfolder holds what it downloaded). */
  globalStorage: v.optional(path),
});
export type ModelSearch = v.InferOutput<typeof ModelSearchSchema>;

const DownloadRequestSchema = obj({
  model: str(200, 1),
  hub: v.optional(hub),
  dest: path,
  token: v.optional(str(1000)),
  parts: v.optional(arr(role, PART_ROLES.length)),
  endpoints: v.optional(partialRecord(HUB_NAMES, str(2000, 1))),
});

// =============================================================================================
// client → server

const REQUESTS = {
  hello: message('hello', {
    protocol: int(0, MAX_SAFE),
    client: str(200),
    token: v.optional(str(1000)),
    settings: v.optional(ServerSettingsSchema),
    heartbeatMs: v.optional(int(0, 3_600_000)),
  }),
  configure: message('configure', { settings: ServerSettingsSchema }),
  generate: message('generate', { job: JobRequestSchema }),
  cancel: message('cancel', { jobId }),
  status: message('status', {}),
  load: message('load', { components: v.optional(components) }),
  unload: message('unload', { components: v.optional(components) }),
  ping: message('ping', {}),
  shutdown: message('shutdown', {}),
  /** Find models on the server's disks (configured model, folders given, hub caches). */
  models: message('models', { search: v.optional(ModelSearchSchema) }),
  /** Check a model's files (headers; full sha256 with `verify`) and what fits this machine. Default: the configured model. */
  check: message('check', { model: v.optional(ModelSpecSchema), verify: v.optional(bool), width: v.optional(Width), height: v.optional(Height) }),
  /** Start downloading a registry model; progress comes as download-* events; cancel with `cancel` and the downloadId. */
  download: message('download', { download: DownloadRequestSchema }),
};

type Outputs<T extends Record<string, v.GenericSchema>> = { [K in keyof T]: v.InferOutput<T[K]> }[keyof T];

export type Request = Outputs<typeof REQUESTS>;
export type RequestType = Request['type'];

/** A request as the caller writes it; the client adds the id. */
export type RequestBody<T extends RequestType = RequestType> = T extends RequestType ? Omit<Extract<Request, { type: T }>, 'id'> : never;

// =============================================================================================
// server → client

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

const FoundModelSchema = obj({
  id: str(200),
  name: str(500),
  where: oneOf('configured', 'workspace', 'global-storage', 'search-path', 'huggingface-cache', 'modelscope-cache'),
  root: path,
  parts: arr(PartCheckSchema, 64),
  complete: bool,
  spec: ModelSpecSchema,
});

const MachineInfoSchema = obj({
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

const CheckReportSchema = obj({
  model: FoundModelSchema,
  machine: MachineInfoSchema,
  estimates: arr(MemoryEstimateSchema, 1000),
  advice: arr(str(10_000), 100),
});

const DownloadProgressSchema = obj({
  file: str(4096),
  files: int(0, MAX_SAFE),
  filesDone: int(0, MAX_SAFE),
  bytes,
  total: bytes,
  bytesPerSecond: num(0, Infinity),
  etaSeconds: v.optional(num(0, Infinity)),
});

const DownloadResultSchema = obj({
  spec: ModelSpecSchema,
  files: arr(obj({ path, bytes, sha256: str(64), resumedFrom: v.optional(bytes), skipped: v.optional(bool) }), 10_000),
});

const StageTimingSchema = obj({ stage, seconds: num(0, Infinity), peakRss: bytes, ep: v.optional(ep) });

const DOWNLOAD_ERROR_CODES = ['auth-required', 'forbidden', 'not-found', 'network', 'http', 'disk-full', 'checksum', 'cancelled'] as const;

const RESPONSES = {
  hello: message('hello', {
    protocol: int(0, MAX_SAFE),
    /** Software version. */
    version: str(200),
    pid: int(0, MAX_SAFE),
    platform: str(100),
    /** Interval of heartbeat events, ms. */
    heartbeatMs: int(0, 3_600_000),
  }),
  ok: message('ok', {}),
  queued: message('queued', { jobId, position: int(0, MAX_SAFE) }),
  cancel: message('cancel', { jobId, state: oneOf('cancelled', 'cancelling') }),
  status: message('status', { status: StatusInfoSchema }),
  loaded: message('loaded', { components }),
  pong: message('pong', { time: num(0, Infinity) }),
  models: message('models', { found: arr(FoundModelSchema, 1000), machine: MachineInfoSchema }),
  check: message('check', { report: CheckReportSchema }),
  download: message('download', { downloadId: jobId }),
  error: obj({
    /** null when the request's id could not be read. */
    id: v.nullable(id),
    type: v.literal('error'),
    code: oneOf(...ERROR_CODES),
    message: str(100_000),
    detail: v.optional(str(1_000_000)),
  }),
};

export type Response = Outputs<typeof RESPONSES>;
export type HelloReply = Extract<Response, { type: 'hello' }>;
export type ErrorReply = Extract<Response, { type: 'error' }>;

/** Which reply each request gets when it succeeds (any request may instead get an ErrorReply). */
export interface ReplyFor {
  hello: HelloReply;
  configure: Extract<Response, { type: 'ok' }>;
  generate: Extract<Response, { type: 'queued' }>;
  cancel: Extract<Response, { type: 'cancel' }>;
  status: Extract<Response, { type: 'status' }>;
  load: Extract<Response, { type: 'loaded' }>;
  unload: Extract<Response, { type: 'loaded' }>;
  ping: Extract<Response, { type: 'pong' }>;
  shutdown: Extract<Response, { type: 'ok' }>;
  models: Extract<Response, { type: 'models' }>;
  check: Extract<Response, { type: 'check' }>;
  download: Extract<Response, { type: 'download' }>;
}

export const REPLY_TYPE: { [K in RequestType]: ReplyFor[K]['type'] } = {
  hello: 'hello',
  configure: 'ok',
  generate: 'queued',
  cancel: 'cancel',
  status: 'status',
  load: 'loaded',
  unload: 'loaded',
  ping: 'pong',
  shutdown: 'ok',
  models: 'models',
  check: 'check',
  download: 'download',
};

const PngPreviewSchema = obj({ width: int(1, 16384), height: int(1, 16384), pngBase64: str(MAX_LINE_BYTES) });
export type PngPreview = v.InferOutput<typeof PngPreviewSchema>;

const EVENTS = {
  started: event('started', { jobId }),
  stage: event('stage', { jobId, stage, state: oneOf('start', 'end'), detail: v.optional(str(10_000)) }),
  /** A model part is loaded inside the current stage; `fraction` with `prepare` (first-use weight conversion). */
  loading: event('loading', { jobId, component, phase: oneOf(...LOAD_PHASES), fraction: v.optional(num(0, 1)) }),
  step: event('step', { jobId, step: int(0, 100_000), steps: int(0, 100_000), preview: v.optional(PngPreviewSchema) }),
  done: event('done', {
    jobId,
    /** The PNG written (on the server's machine). */
    file: path,
    /** The PNG itself, when the job asked for `returnImage`. */
    pngBase64: v.optional(str(MAX_LINE_BYTES)),
    /** Seed (the one drawn, for seed -1), size, model: everything to reproduce the image. */
    metadata: ImageMetadataSchema,
    /** Per-stage time and peak RSS, in order; a stage the pipeline skipped (text encoding on a prompt-cache hit) is absent. */
    stages: arr(StageTimingSchema, 100),
    notes: arr(str(10_000), 1000),
    /** Wall time from start to file written. */
    seconds: v.optional(num(0, Infinity)),
  }),
  /** `code` "model": the configured model cannot be used (folder not found, parts missing): the fix is in the model settings. */
  failed: event('failed', { jobId, message: str(100_000), detail: v.optional(str(1_000_000)), code: v.optional(oneOf('model')) }),
  cancelled: event('cancelled', { jobId }),
  log: event('log', { level: logLevel, message: str(1_000_000), jobId: v.optional(jobId) }),
  heartbeat: event('heartbeat', { time: num(0, Infinity), rss: bytes, state: serverState, queued: int(0, MAX_SAFE) }),
  'download-progress': event('download-progress', { downloadId: jobId, progress: DownloadProgressSchema }),
  'download-done': event('download-done', { downloadId: jobId, result: DownloadResultSchema }),
  'download-failed': event('download-failed', { downloadId: jobId, code: oneOf(...DOWNLOAD_ERROR_CODES), message: str(100_000), detail: v.optional(str(1_000_000)) }),
};

type EventOf<K extends keyof typeof EVENTS> = v.InferOutput<(typeof EVENTS)[K]>;
export type StartedEvent = EventOf<'started'>;
export type StageEvent = EventOf<'stage'>;
export type StepEvent = EventOf<'step'>;
export type LoadingEvent = EventOf<'loading'>;
export type DoneEvent = EventOf<'done'>;
export type FailedEvent = EventOf<'failed'>;
export type CancelledEvent = EventOf<'cancelled'>;
export type LogEvent = EventOf<'log'>;
export type HeartbeatEvent = EventOf<'heartbeat'>;
export type DownloadProgressEvent = EventOf<'download-progress'>;
export type DownloadDoneEvent = EventOf<'download-done'>;
export type DownloadFailedEvent = EventOf<'download-failed'>;
/** Events about one download: download-progress*, then download-done or download-failed (code "cancelled" when cancelled). */
export type DownloadEvent = DownloadProgressEvent | DownloadDoneEvent | DownloadFailedEvent;

/** Events about one job, in the order a job sees them: started, (stage|loading|step)*, done|failed|cancelled. */
export type JobEvent = StartedEvent | StageEvent | LoadingEvent | StepEvent | DoneEvent | FailedEvent | CancelledEvent;
export type Event = Outputs<typeof EVENTS>;
export type ServerMessage = Response | Event;

// The model-management and pipeline interfaces (models.ts, api.ts) are what the rest of the code
// reads; each must be exactly its schema's output, field for field (optional ones included), or
// this does not compile.
type Same<A, B> = [A, keyof A] extends [B, keyof B] ? ([B, keyof B] extends [A, keyof A] ? true : false) : false;
export type SchemasMatchInterfaces = [
  Same<v.InferOutput<typeof ModelSpecSchema>, ModelSpec>,
  Same<v.InferOutput<typeof PartCheckSchema>, PartCheck>,
  Same<v.InferOutput<typeof FoundModelSchema>, FoundModel>,
  Same<v.InferOutput<typeof MachineInfoSchema>, MachineInfo>,
  Same<v.InferOutput<typeof MemoryEstimateSchema>, MemoryEstimate>,
  Same<v.InferOutput<typeof CheckReportSchema>, ModelCheckReport>,
  Same<v.InferOutput<typeof DownloadRequestSchema>, DownloadRequest>,
  Same<v.InferOutput<typeof DownloadProgressSchema>, DownloadProgress>,
  Same<v.InferOutput<typeof DownloadResultSchema>, DownloadResult>,
  Same<v.InferOutput<typeof StageTimingSchema>, StageTiming>,
  Same<(typeof DOWNLOAD_ERROR_CODES)[number], DownloadErrorCode>,
] extends true[] ? true : never;
const schemasMatchInterfaces: SchemasMatchInterfaces = true;
void schemasMatchInterfaces;

export function isJobEvent(e: Event): e is JobEvent {
  return e.event !== 'log' && e.event !== 'heartbeat' && !isDownloadEvent(e);
}

export function isDownloadEvent(e: Event): e is DownloadEvent {
  return e.event === 'download-progress' || e.event === 'download-done' || e.event === 'download-failed';
}

// =============================================================================================
// Framing: NDJSON

const utf8 = new TextEncoder();

/** One message as a line. JSON.stringify escapes control characters, so the line holds no raw newline. */
export function encodeMessage(msg: Request | ServerMessage): string {
  return JSON.stringify(msg) + '\n';
}

/**
 * Splits a byte (or text) stream into lines. Chunks may end anywhere, also inside a multi-byte
 * character: splitting happens on bytes (0x0A never occurs inside a UTF-8 sequence) and each whole
 * line is decoded once. A line longer than `maxLineBytes` is dropped up to its newline and
 * reported through `onOverflow`, so a peer cannot make the other side buffer without bound.
 * Trailing `\r` is removed; blank lines are skipped.
 */
export class LineSplitter {
  private parts: Uint8Array[] = [];
  private size = 0;
  private discarding = false;
  private readonly decoder = new TextDecoder('utf-8');

  constructor(
    private readonly onLine: (line: string) => void,
    private readonly onOverflow: (bytes: number) => void = () => undefined,
    /** May be changed between chunks (e.g. raised once a TCP peer has authenticated). */
    public maxLineBytes = MAX_LINE_BYTES,
  ) {}

  push(chunk: Uint8Array | string): void {
    const buf = typeof chunk === 'string' ? utf8.encode(chunk) : chunk;
    let start = 0;
    while (start <= buf.length) {
      const nl = buf.indexOf(10, start);
      const end = nl < 0 ? buf.length : nl;
      this.append(buf.subarray(start, end), nl < 0);
      if (nl < 0) return;
      this.finishLine();
      start = nl + 1;
    }
  }

  /** End of stream: a last line without a newline still counts. */
  end(): void {
    if (this.size > 0 || this.discarding) this.finishLine();
  }

  private append(piece: Uint8Array, partial: boolean): void {
    if (this.discarding || piece.length === 0) return;
    if (this.size + piece.length > this.maxLineBytes) {
      this.discarding = true;
      const dropped = this.size + piece.length;
      this.parts = [];
      this.size = 0;
      this.onOverflow(dropped);
      return;
    }
    // The stream may reuse its buffer after we return: keep a copy of an unfinished piece.
    this.parts.push(partial ? piece.slice() : piece);
    this.size += piece.length;
  }

  private finishLine(): void {
    if (this.discarding) {
      this.discarding = false;
      return;
    }
    const bytes = this.parts.length === 1 ? this.parts[0] : concat(this.parts, this.size);
    this.parts = [];
    this.size = 0;
    let line = this.decoder.decode(bytes);
    if (line.endsWith('\r')) line = line.slice(0, -1);
    if (line.trim() !== '') this.onLine(line);
  }
}

function concat(parts: Uint8Array[], size: number): Uint8Array {
  const out = new Uint8Array(size);
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return out;
}

/** JSON.parse that reports instead of throwing. */
export function parseJsonLine(line: string): { ok: true; value: unknown } | { ok: false; error: string } {
  try {
    return { ok: true, value: JSON.parse(line) };
  } catch (err) {
    return { ok: false, error: errorText(err) };
  }
}

// =============================================================================================
// Validation

export interface ValidationError {
  error: string;
  /** The message's id when it could be read, so the error reply reaches the right request. */
  id: number | null;
}

/** "job.params.steps: steps must be …": the field's path, then what is wrong with it. */
function describeIssue(issue: v.BaseIssue<unknown>): string {
  let at = '';
  // An unknown key is the container's fault: name the container, the message names the key.
  const items = (issue.path ?? []).slice(0, issue.expected === 'never' ? -1 : undefined);
  for (const p of items) at += typeof p.key === 'number' ? `[${p.key}]` : `${at ? '.' : ''}${String(p.key)}`;
  return `${at || 'message'}: ${issue.message}`;
}

function readId(x: unknown): number | null {
  if (!isPlainObject(x)) return null;
  const n = x.id;
  return typeof n === 'number' && Number.isSafeInteger(n) && n >= 0 ? n : null;
}

function readString(x: unknown, key: 'type' | 'event'): string | undefined {
  return isPlainObject(x) && typeof x[key] === 'string' ? x[key] : undefined;
}

function check<T>(schema: v.GenericSchema<unknown, T>, x: unknown): T | ValidationError {
  try {
    const r = v.safeParse(schema, x, { abortEarly: true });
    return r.success ? r.output : { error: describeIssue(r.issues[0]), id: readId(x) };
  } catch (err) {
    // A bug in a schema must not take the peer down either.
    return { error: `invalid message (${errorText(err)})`, id: readId(x) };
  }
}

function lookup<T extends object>(table: T, key: string | undefined): T[keyof T] | undefined {
  return key !== undefined && Object.prototype.hasOwnProperty.call(table, key) ? table[key as keyof T] : undefined;
}

export function isValidationError(x: unknown): x is ValidationError {
  return isPlainObject(x) && typeof x.error === 'string' && !('type' in x);
}

/** Checks a parsed JSON value from the client. Never throws. */
export function validateRequest(x: unknown): Request | ValidationError {
  const type = readString(x, 'type');
  const schema = lookup(REQUESTS, type);
  if (schema) return check<Request>(schema, x);
  const why = type === undefined ? `expected a request type, got ${got(isPlainObject(x) ? x.type : x)}` : `unknown request type ${JSON.stringify(type)} (expected ${Object.keys(REQUESTS).join(', ')})`;
  return { error: `type: ${why}`, id: readId(x) };
}

/** Checks a parsed JSON value from the server. Never throws. */
export function validateServerMessage(x: unknown): ServerMessage | ValidationError {
  const type = readString(x, 'type');
  if (type === 'event') {
    const schema = lookup(EVENTS, readString(x, 'event'));
    if (schema) return check<Event>(schema, x);
    return { error: `event: expected an event name, got ${got((x as Record<string, unknown>).event)}`, id: readId(x) };
  }
  const schema = lookup(RESPONSES, type);
  if (schema) return check<Response>(schema, x);
  return { error: `type: expected "event" or a response type (${Object.keys(RESPONSES).join(', ')}), got ${got(isPlainObject(x) ? x.type : x)}`, id: readId(x) };
}

/** Parses and validates one line from a client. Never throws. */
export function parseRequest(line: string): Request | (ValidationError & { code: 'bad-json' | 'bad-request' }) {
  const parsed = parseJsonLine(line);
  if (!parsed.ok) return { error: `not JSON: ${parsed.error}`, id: null, code: 'bad-json' };
  const r = validateRequest(parsed.value);
  return isValidationError(r) ? { ...r, code: 'bad-request' } : r;
}

/** Parses and validates one line from the server. Never throws. */
export function parseServerMessage(line: string): ServerMessage | ValidationError {
  const parsed = parseJsonLine(line);
  if (!parsed.ok) return { error: `not JSON: ${parsed.error}`, id: null };
  return validateServerMessage(parsed.value);
}
