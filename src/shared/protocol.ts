// The message protocol between a client (the extension, a script) and the inference server. The
// only file both sides import, so it imports nothing at runtime beyond api.ts (itself free of node
// modules): it must stay bundleable anywhere. Messages are JSON objects, one per line (NDJSON), over
// a pipe or a TCP socket. docs/PROTOCOL.md documents every message.
//
// Every message is validated on receipt (validateRequest / validateServerMessage): validation
// never throws, rebuilds the object from known fields only (unknown ones are dropped, so a newer
// peer's additions are harmless) and says which field is wrong.

import type {
  ComponentName,
  EpChoice,
  ExecutionProvider,
  GenerateParams,
  ImageMetadata,
  MemoryMode,
  ModelSpec,
  Stage,
  StageTiming,
  WeightChoice,
  WeightFormat,
} from './api';
import { SHIFT_RANGE, WEIGHT_CHOICES, WEIGHT_FORMATS } from './api';
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

/** Bumped on any incompatible change; `hello` fails when client and server differ. */
export const PROTOCOL_VERSION = 1;

/** Longest line either side accepts (a done event with the image inline is the largest message). */
export const MAX_LINE_BYTES = 64 * 1024 * 1024;

// =============================================================================================
// Shared shapes

/** Server-wide settings, sent with `hello` and changeable with `configure`. */
export interface ServerSettings {
  model: ModelSpec;
  weights?: WeightChoice;
  ep?: EpChoice;
  stageEp?: Partial<Record<ComponentName, EpChoice>>;
  memory?: MemoryMode;
  /** RAM budget in bytes for memory `auto` (default: detected from the OS). */
  memoryBudget?: number;
  /** GPU memory in bytes, for memory `auto` on a GPU execution provider (the user's setting). */
  gpuMemory?: number;
  cacheDir?: string;
  /** Disk the weight caches may take, bytes: the least recently used are removed past it (0 or absent: no limit). */
  cacheMaxBytes?: number;
  threads?: number;
}

export interface JobRequest {
  params: GenerateParams;
  /**
   * Path of the PNG to write, on the server's machine. Never overwritten: when taken, the server
   * writes `name-1.png`, `name-2.png`, … and reports the path used in `done`. Absolute for a
   * local server; in `serve` mode relative to (and confined to) the server's output folder.
   */
  output: string;
  /** Also send the PNG bytes in `done` (a remote server, whose files the client cannot read). */
  returnImage?: boolean;
  /** Send a latent preview with every Nth step event (0 or absent: none). */
  previewEvery?: number;
}

export type JobState = 'queued' | 'running' | 'done' | 'failed' | 'cancelled';

export interface JobInfo {
  jobId: string;
  state: JobState;
  /** The prompt, shortened to 200 characters. */
  prompt: string;
  /** 0 for the running job, 1 for the next one, …; absent once finished. */
  position?: number;
}

export interface StatusInfo {
  /** Software version of the server. */
  version: string;
  pid: number;
  state: 'idle' | 'loading' | 'busy';
  loaded: ComponentName[];
  /** The running job first, then the queue, then up to 20 recently finished jobs. */
  jobs: JobInfo[];
  rss: number;
  eps: { component: ComponentName; ep: ExecutionProvider; note?: string }[];
  model?: string;
  memory: MemoryMode;
  /** RAM budget used for memory `auto`, bytes. */
  memoryBudget: number;
  uptime: number;
}

export type LogLevel = 'trace' | 'debug' | 'info' | 'warn' | 'error';

export type ErrorCode =
  | 'bad-json' // the line is not JSON
  | 'bad-request' // JSON, but not a valid request
  | 'line-too-long'
  | 'handshake-required' // a request before `hello`
  | 'protocol-mismatch'
  | 'unauthorized' // wrong or missing token (TCP); the server closes the connection
  | 'busy' // TCP: another client is connected; the server closes the connection
  | 'unknown-job'
  | 'queue-full'
  | 'bad-output' // output path missing or outside the output folder
  | 'shutting-down'
  | 'failed'; // the request was valid but could not be carried out (message says why)

// =============================================================================================
// client → server

export type Request =
  | { id: number; type: 'hello'; protocol: number; client: string; token?: string; settings?: ServerSettings; heartbeatMs?: number }
  | { id: number; type: 'configure'; settings: ServerSettings }
  | { id: number; type: 'generate'; job: JobRequest }
  | { id: number; type: 'cancel'; jobId: string }
  | { id: number; type: 'status' }
  | { id: number; type: 'load'; components?: ComponentName[] }
  | { id: number; type: 'unload'; components?: ComponentName[] }
  | { id: number; type: 'ping' }
  | { id: number; type: 'shutdown' }
  /** Find models on the server's disks (configured model, folders given, hub caches). */
  | { id: number; type: 'models'; search?: ModelSearch }
  /** Check a model's files (headers; full sha256 with `verify`) and what fits this machine. Default: the configured model. */
  | { id: number; type: 'check'; model?: ModelSpec; verify?: boolean; width?: number; height?: number }
  /** Start downloading a registry model; progress comes as download-* events; cancel with `cancel` and the downloadId. */
  | { id: number; type: 'download'; download: DownloadRequest };

/** Where to look for models besides the configured one and the hub caches. */
export interface ModelSearch {
  searchPaths?: string[];
  workspaceFolders?: string[];
  /** The extension's global storage folder (its models/ subfolder holds what it downloaded). */
  globalStorage?: string;
}

export type RequestType = Request['type'];

/** A request as the caller writes it; the client adds the id. */
export type RequestBody<T extends RequestType = RequestType> = T extends RequestType ? Omit<Extract<Request, { type: T }>, 'id'> : never;

// =============================================================================================
// server → client

export interface HelloReply {
  id: number;
  type: 'hello';
  protocol: number;
  /** Software version. */
  version: string;
  pid: number;
  platform: string;
  /** Interval of heartbeat events, ms. */
  heartbeatMs: number;
}

export interface ErrorReply {
  /** null when the request's id could not be read. */
  id: number | null;
  type: 'error';
  code: ErrorCode;
  message: string;
  detail?: string;
}

export type Response =
  | HelloReply
  | { id: number; type: 'ok' }
  | { id: number; type: 'queued'; jobId: string; position: number }
  | { id: number; type: 'cancel'; jobId: string; state: 'cancelled' | 'cancelling' }
  | { id: number; type: 'status'; status: StatusInfo }
  | { id: number; type: 'loaded'; components: ComponentName[] }
  | { id: number; type: 'pong'; time: number }
  | { id: number; type: 'models'; found: FoundModel[]; machine: MachineInfo }
  | { id: number; type: 'check'; report: ModelCheckReport }
  | { id: number; type: 'download'; downloadId: string }
  | ErrorReply;

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

export interface PngPreview {
  width: number;
  height: number;
  pngBase64: string;
}

export type StartedEvent = { type: 'event'; event: 'started'; jobId: string };
export type StageEvent = { type: 'event'; event: 'stage'; jobId: string; stage: Stage; state: 'start' | 'end'; detail?: string };
export type StepEvent = { type: 'event'; event: 'step'; jobId: string; step: number; steps: number; preview?: PngPreview };
export interface DoneEvent {
  type: 'event';
  event: 'done';
  jobId: string;
  /** The PNG written (on the server's machine). */
  file: string;
  /** The PNG itself, when the job asked for `returnImage`. */
  pngBase64?: string;
  /** Seed (the one drawn, for seed -1), size, model: everything to reproduce the image. */
  metadata: ImageMetadata;
  /** Per-stage time and peak RSS, in order; a stage the pipeline skipped (text encoding on a prompt-cache hit) is absent. */
  stages: StageTiming[];
  notes: string[];
  /** Wall time from start to file written. */
  seconds?: number;
}
export type FailedEvent = { type: 'event'; event: 'failed'; jobId: string; message: string; detail?: string };
export type CancelledEvent = { type: 'event'; event: 'cancelled'; jobId: string };
export type LogEvent = { type: 'event'; event: 'log'; level: LogLevel; message: string; jobId?: string };
export type HeartbeatEvent = { type: 'event'; event: 'heartbeat'; time: number; rss: number; state: StatusInfo['state']; queued: number };
export type DownloadProgressEvent = { type: 'event'; event: 'download-progress'; downloadId: string; progress: DownloadProgress };
export type DownloadDoneEvent = { type: 'event'; event: 'download-done'; downloadId: string; result: DownloadResult };
export type DownloadFailedEvent = { type: 'event'; event: 'download-failed'; downloadId: string; code: DownloadErrorCode; message: string; detail?: string };
/** Events about one download: download-progress*, then download-done or download-failed (code "cancelled" when cancelled). */
export type DownloadEvent = DownloadProgressEvent | DownloadDoneEvent | DownloadFailedEvent;

/** Events about one job, in the order a job sees them: started, (stage|step)*, done|failed|cancelled. */
export type JobEvent = StartedEvent | StageEvent | StepEvent | DoneEvent | FailedEvent | CancelledEvent;
export type Event = JobEvent | DownloadEvent | LogEvent | HeartbeatEvent;
export type ServerMessage = Response | Event;

export function isJobEvent(e: Event): e is JobEvent {
  return e.event !== 'log' && e.event !== 'heartbeat' && !isDownloadEvent(e);
}

export function isDownloadEvent(e: Event): e is DownloadEvent {
  return e.event === 'download-progress' || e.event === 'download-done' || e.event === 'download-failed';
}

/** Events after which a job sends nothing more. */
export function isFinalEvent(e: Event): e is DoneEvent | FailedEvent | CancelledEvent {
  return e.event === 'done' || e.event === 'failed' || e.event === 'cancelled';
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
    return { ok: false, error: err instanceof Error ? err.message : String(err) };
  }
}

// =============================================================================================
// Validation
//
// A tiny schema language: each Check rebuilds a value or throws Invalid with the path of the
// offending field. Only validate* below are exported, and they catch.

class Invalid extends Error {}

type Check<T> = (v: unknown, at: string) => T;
type Opt<T> = Check<T | undefined> & { optional: true };

function fail(at: string, want: string, v: unknown): never {
  let got: string;
  if (v === null) got = 'null';
  else if (Array.isArray(v)) got = 'an array';
  else if (typeof v === 'string') got = v.length > 40 ? `a string of ${v.length} characters` : JSON.stringify(v);
  else if (typeof v === 'object') got = 'an object';
  else got = String(v);
  throw new Invalid(`${at || 'message'}: expected ${want}, got ${got}`);
}

function str(opts: { max?: number; min?: number } = {}): Check<string> {
  const max = opts.max ?? 4096;
  const min = opts.min ?? 0;
  return (v, at) => {
    if (typeof v !== 'string' || v.length > max || v.length < min) fail(at, `a string of ${min}–${max} characters`, v);
    return v;
  };
}

function num(min: number, max: number): Check<number> {
  return (v, at) => {
    if (typeof v !== 'number' || !Number.isFinite(v) || v < min || v > max) fail(at, `a number between ${min} and ${max}`, v);
    return v;
  };
}

function int(min: number, max: number): Check<number> {
  return (v, at) => {
    if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > max) fail(at, `an integer between ${min} and ${max}`, v);
    return v;
  };
}

const bool: Check<boolean> = (v, at) => {
  if (typeof v !== 'boolean') fail(at, 'true or false', v);
  return v;
};

function oneOf<const T extends readonly (string | number)[]>(...values: T): Check<T[number]> {
  return (v, at) => {
    if (!values.includes(v as T[number])) fail(at, `one of ${values.map((x) => JSON.stringify(x)).join(', ')}`, v);
    return v as T[number];
  };
}

function either<A, B>(a: Check<A>, b: Check<B>, want: string): Check<A | B> {
  return (v, at) => {
    for (const c of [a, b]) {
      try {
        return c(v, at);
      } catch (err) {
        if (!(err instanceof Invalid)) throw err;
      }
    }
    return fail(at, want, v);
  };
}

function nullable<T>(c: Check<T>): Check<T | null> {
  return (v, at) => (v === null ? null : c(v, at));
}

function opt<T>(c: Check<T>): Opt<T> {
  const f = ((v: unknown, at: string) => (v === undefined ? undefined : c(v, at))) as Opt<T>;
  f.optional = true;
  return f;
}

function arr<T>(item: Check<T>, max: number): Check<T[]> {
  return (v, at) => {
    if (!Array.isArray(v) || v.length > max) fail(at, `an array of at most ${max} items`, v);
    // Array.from, not map: map skips the holes of a sparse array.
    return Array.from(v, (x: unknown, i) => item(x, `${at}[${i}]`));
  };
}

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

type Shape = Record<string, Check<unknown>>;
type Out<S extends Shape> = {
  [K in keyof S as S[K] extends { optional: true } ? never : K]: S[K] extends Check<infer T> ? T : never;
} & {
  [K in keyof S as S[K] extends { optional: true } ? K : never]?: S[K] extends Check<infer T> ? Exclude<T, undefined> : never;
};

function obj<S extends Shape>(shape: S): Check<Out<S>> {
  return (v, at) => {
    if (!isPlainObject(v)) fail(at, 'an object', v);
    const out: Record<string, unknown> = {};
    for (const key of Object.keys(shape)) {
      // Own properties only: `{"__proto__": …}` or inherited names must not count as fields.
      const value = Object.prototype.hasOwnProperty.call(v, key) ? v[key] : undefined;
      const checked = shape[key](value, at ? `${at}.${key}` : key);
      if (checked !== undefined) out[key] = checked;
    }
    return out as Out<S>;
  };
}

/** An object with only the listed keys, all optional, all of one kind. */
function partialRecord<K extends string, T>(keys: readonly K[], value: Check<T>): Check<Partial<Record<K, T>>> {
  return (v, at) => {
    if (!isPlainObject(v)) fail(at, 'an object', v);
    const out: Partial<Record<K, T>> = {};
    for (const k of Object.keys(v)) {
      if (!keys.includes(k as K)) throw new Invalid(`${at}: unknown key ${JSON.stringify(k)} (expected ${keys.join(', ')})`);
      out[k as K] = value(v[k], `${at}.${k}`);
    }
    return out;
  };
}

// ---- field checks ----------------------------------------------------------------------------

const MAX_SAFE = Number.MAX_SAFE_INTEGER;
const path = str({ min: 1, max: 4096 });
const id = int(0, MAX_SAFE);
const jobId = str({ min: 1, max: 100 });
const COMPONENTS = ['clip', 't5', 'dit', 'vae'] as const satisfies readonly ComponentName[];
const EPS = ['cpu', 'webgpu', 'cuda', 'dml', 'coreml'] as const satisfies readonly ExecutionProvider[];
const epChoice = oneOf('auto', ...EPS);
const component = oneOf(...COMPONENTS);
const components = arr(component, COMPONENTS.length);
const stage = oneOf('load', 'text', 'denoise', 'decode', 'save');
const weights = oneOf(...WEIGHT_FORMATS);
const weightChoice = oneOf(...WEIGHT_CHOICES);
const memoryMode = oneOf('sequential', 'resident', 'auto');
const shift = either(oneOf('dynamic'), num(SHIFT_RANGE.min, SHIFT_RANGE.max), `"dynamic" or a number from ${SHIFT_RANGE.min} to ${SHIFT_RANGE.max}`);
const bytes = num(0, 2 ** 60);
const logLevel = oneOf('trace', 'debug', 'info', 'warn', 'error');

const modelSpec: Check<ModelSpec> = obj({
  dir: opt(path),
  transformer: opt(path),
  vae: opt(path),
  textEncoder: opt(path),
  textEncoder2: opt(path),
  tokenizer: opt(path),
  tokenizer2: opt(path),
  name: opt(str({ max: 200 })),
});

const settings: Check<ServerSettings> = obj({
  model: modelSpec,
  weights: opt(weightChoice),
  ep: opt(epChoice),
  stageEp: opt(partialRecord(COMPONENTS, epChoice)),
  memory: opt(memoryMode),
  memoryBudget: opt(bytes),
  gpuMemory: opt(bytes),
  cacheDir: opt(path),
  cacheMaxBytes: opt(bytes),
  threads: opt(int(0, 1024)),
});

const generateParams: Check<GenerateParams> = obj({
  prompt: str({ max: 100_000 }),
  seed: opt(int(-1, MAX_SAFE)),
  steps: opt(int(1, 1000)),
  width: opt(int(16, 16384)),
  height: opt(int(16, 16384)),
  guidance: opt(num(0, 100)),
  t5MaxLength: opt(int(1, 4096)),
  shift: opt(shift),
  latentsFile: opt(path),
});

const paths = arr(path, 1000);
const hub = oneOf(...HUB_NAMES);
const role = oneOf(...PART_ROLES);

const modelSearch: Check<ModelSearch> = obj({
  searchPaths: opt(paths),
  workspaceFolders: opt(paths),
  globalStorage: opt(path),
});

const downloadRequest: Check<DownloadRequest> = obj({
  model: str({ min: 1, max: 200 }),
  hub: opt(hub),
  dest: path,
  token: opt(str({ max: 1000 })),
  parts: opt(arr(role, PART_ROLES.length)),
  endpoints: opt(partialRecord(HUB_NAMES, str({ min: 1, max: 2000 }))),
});

const jobRequest: Check<JobRequest> = obj({
  params: generateParams,
  output: path,
  returnImage: opt(bool),
  previewEvery: opt(int(0, 1000)),
});

const REQUESTS: { [K in RequestType]: Check<Extract<Request, { type: K }>> } = {
  hello: typed('hello', {
    protocol: int(0, MAX_SAFE),
    client: str({ max: 200 }),
    token: opt(str({ max: 1000 })),
    settings: opt(settings),
    heartbeatMs: opt(int(0, 3_600_000)),
  }),
  configure: typed('configure', { settings }),
  generate: typed('generate', { job: jobRequest }),
  cancel: typed('cancel', { jobId }),
  status: typed('status', {}),
  load: typed('load', { components: opt(components) }),
  unload: typed('unload', { components: opt(components) }),
  ping: typed('ping', {}),
  shutdown: typed('shutdown', {}),
  models: typed('models', { search: opt(modelSearch) }),
  check: typed('check', { model: opt(modelSpec), verify: opt(bool), width: opt(int(16, 16384)), height: opt(int(16, 16384)) }),
  download: typed('download', { download: downloadRequest }),
};

/** An object check that also carries `type: T` through to the output. */
function typed<T extends string, S extends Shape>(type: T, shape: S): Check<{ id: number; type: T } & Out<S>> {
  const body = obj({ id, ...shape });
  return (v, at) => ({ ...body(v, at), type }) as { id: number; type: T } & Out<S>;
}

export interface ValidationError {
  error: string;
  /** The message's id when it could be read, so the error reply reaches the right request. */
  id: number | null;
}

function readId(v: unknown): number | null {
  if (!isPlainObject(v)) return null;
  const x = v.id;
  return typeof x === 'number' && Number.isSafeInteger(x) && x >= 0 ? x : null;
}

function readType(v: unknown): string | undefined {
  return isPlainObject(v) && typeof v.type === 'string' ? v.type : undefined;
}

function guard<T>(v: unknown, check: () => T): T | ValidationError {
  try {
    return check();
  } catch (err) {
    if (err instanceof Invalid) return { error: err.message, id: readId(v) };
    // A bug in a check must not take the peer down either.
    return { error: `invalid message (${err instanceof Error ? err.message : String(err)})`, id: readId(v) };
  }
}

export function isValidationError(x: unknown): x is ValidationError {
  return isPlainObject(x) && typeof x.error === 'string' && !('type' in x);
}

/** Checks a parsed JSON value from the client. Never throws. */
export function validateRequest(v: unknown): Request | ValidationError {
  return guard(v, () => {
    const type = readType(v);
    if (type === undefined) fail('type', 'a request type', isPlainObject(v) ? v.type : v);
    if (!Object.prototype.hasOwnProperty.call(REQUESTS, type)) {
      throw new Invalid(`type: unknown request type ${JSON.stringify(type)} (expected ${Object.keys(REQUESTS).join(', ')})`);
    }
    return REQUESTS[type as RequestType](v, '');
  });
}

// ---- server messages -------------------------------------------------------------------------

const stageTiming: Check<StageTiming> = obj({
  stage,
  seconds: num(0, Infinity),
  peakRss: bytes,
  ep: opt(oneOf(...EPS)),
});

const imageMetadata: Check<ImageMetadata> = obj({
  prompt: str({ max: 100_000 }),
  seed: int(-1, MAX_SAFE),
  steps: int(0, 100_000),
  width: int(0, 1 << 20),
  height: int(0, 1 << 20),
  guidance: num(-Infinity, Infinity),
  shift,
  t5MaxLength: int(0, 1 << 20),
  model: str({ max: 4096 }),
  weights,
  sampler: oneOf('euler'),
  software: str({ max: 200 }),
});

const jobInfo: Check<JobInfo> = obj({
  jobId,
  state: oneOf('queued', 'running', 'done', 'failed', 'cancelled'),
  prompt: str({ max: 100_000 }),
  position: opt(int(0, MAX_SAFE)),
});

const serverState = oneOf('idle', 'loading', 'busy');

const statusInfo: Check<StatusInfo> = obj({
  version: str({ max: 200 }),
  pid: int(0, MAX_SAFE),
  state: serverState,
  loaded: components,
  jobs: arr(jobInfo, 100_000),
  rss: bytes,
  eps: arr(obj({ component, ep: oneOf(...EPS), note: opt(str()) }), 100),
  model: opt(str()),
  memory: memoryMode,
  memoryBudget: bytes,
  uptime: num(0, Infinity),
});

/** A string-keyed record of at most `max` entries, all of one kind. */
function record<T>(value: Check<T>, max: number): Check<Record<string, T>> {
  return (v, at) => {
    if (!isPlainObject(v)) fail(at, 'an object', v);
    const keys = Object.keys(v);
    if (keys.length > max) fail(at, `an object of at most ${max} keys`, v);
    const out: Record<string, T> = {};
    for (const k of keys) if (k !== '__proto__') out[k] = value(v[k], `${at}.${k}`);
    return out;
  };
}

const partCheck: Check<PartCheck> = obj({
  role,
  status: oneOf('present', 'missing', 'wrong-dtype', 'corrupt'),
  path: opt(path),
  layout: opt(str({ max: 200 })),
  dtypes: opt(record(int(0, MAX_SAFE), 64)),
  params: opt(int(0, MAX_SAFE)),
  bytes: opt(bytes),
  message: opt(str({ max: 10_000 })),
  sha256: opt(str({ max: 64 })),
  verified: opt(oneOf('match', 'mismatch', 'recorded')),
});

const foundModel: Check<FoundModel> = obj({
  id: str({ max: 200 }),
  name: str({ max: 500 }),
  where: oneOf('configured', 'workspace', 'global-storage', 'search-path', 'huggingface-cache', 'modelscope-cache'),
  root: path,
  parts: arr(partCheck, 64),
  complete: bool,
  spec: modelSpec,
});

const machineInfo: Check<MachineInfo> = obj({
  platform: str({ max: 100 }),
  arch: str({ max: 100 }),
  cpus: int(0, 1 << 20),
  totalMemory: bytes,
  freeMemory: bytes,
  gpuMemory: opt(bytes),
  gpuName: opt(str({ max: 500 })),
});

const memoryEstimate: Check<MemoryEstimate> = obj({
  weights,
  mode: oneOf('sequential', 'resident'),
  width: int(0, 1 << 20),
  height: int(0, 1 << 20),
  components: obj({ clip: bytes, t5: bytes, dit: bytes, vae: bytes }),
  peak: bytes,
  fitsRam: bool,
  fitsGpu: opt(bool),
});

const checkReport: Check<ModelCheckReport> = obj({
  model: foundModel,
  machine: machineInfo,
  estimates: arr(memoryEstimate, 1000),
  advice: arr(str({ max: 10_000 }), 100),
});

const downloadId = jobId;

const downloadProgress: Check<DownloadProgress> = obj({
  file: str({ max: 4096 }),
  files: int(0, MAX_SAFE),
  filesDone: int(0, MAX_SAFE),
  bytes,
  total: bytes,
  bytesPerSecond: num(0, Infinity),
  etaSeconds: opt(num(0, Infinity)),
});

const downloadResult: Check<DownloadResult> = obj({
  spec: modelSpec,
  files: arr(obj({ path, bytes, sha256: str({ max: 64 }), resumedFrom: opt(bytes), skipped: opt(bool) }), 10_000),
});

const DOWNLOAD_ERROR_CODES = ['auth-required', 'forbidden', 'not-found', 'network', 'http', 'disk-full', 'checksum', 'cancelled'] as const satisfies readonly DownloadErrorCode[];

const ERROR_CODES = [
  'bad-json', 'bad-request', 'line-too-long', 'handshake-required', 'protocol-mismatch', 'unauthorized',
  'busy', 'unknown-job', 'queue-full', 'bad-output', 'shutting-down', 'failed',
] as const satisfies readonly ErrorCode[];

const RESPONSES: { [K in Response['type']]: Check<Extract<Response, { type: K }>> } = {
  hello: typed('hello', {
    protocol: int(0, MAX_SAFE),
    version: str({ max: 200 }),
    pid: int(0, MAX_SAFE),
    platform: str({ max: 100 }),
    heartbeatMs: int(0, 3_600_000),
  }),
  ok: typed('ok', {}),
  queued: typed('queued', { jobId, position: int(0, MAX_SAFE) }),
  cancel: typed('cancel', { jobId, state: oneOf('cancelled', 'cancelling') }),
  status: typed('status', { status: statusInfo }),
  loaded: typed('loaded', { components }),
  pong: typed('pong', { time: num(0, Infinity) }),
  models: typed('models', { found: arr(foundModel, 1000), machine: machineInfo }),
  check: typed('check', { report: checkReport }),
  download: typed('download', { downloadId }),
  error: (v, at) => ({
    ...obj({ id: nullable(id), code: oneOf(...ERROR_CODES), message: str({ max: 100_000 }), detail: opt(str({ max: 1_000_000 })) })(v, at),
    type: 'error' as const,
  }),
};

const previewCheck: Check<PngPreview> = obj({ width: int(1, 16384), height: int(1, 16384), pngBase64: str({ max: MAX_LINE_BYTES }) });

function event<T extends Event['event'], S extends Shape>(name: T, shape: S): Check<{ type: 'event'; event: T } & Out<S>> {
  const body = obj(shape);
  return (v, at) => ({ type: 'event', event: name, ...body(v, at) }) as { type: 'event'; event: T } & Out<S>;
}

const EVENTS: { [K in Event['event']]: Check<Extract<Event, { event: K }>> } = {
  started: event('started', { jobId }),
  stage: event('stage', { jobId, stage, state: oneOf('start', 'end'), detail: opt(str({ max: 10_000 })) }),
  step: event('step', { jobId, step: int(0, 100_000), steps: int(0, 100_000), preview: opt(previewCheck) }),
  done: event('done', {
    jobId,
    file: path,
    pngBase64: opt(str({ max: MAX_LINE_BYTES })),
    metadata: imageMetadata,
    stages: arr(stageTiming, 100),
    notes: arr(str({ max: 10_000 }), 1000),
    seconds: opt(num(0, Infinity)),
  }),
  failed: event('failed', { jobId, message: str({ max: 100_000 }), detail: opt(str({ max: 1_000_000 })) }),
  cancelled: event('cancelled', { jobId }),
  log: event('log', { level: logLevel, message: str({ max: 1_000_000 }), jobId: opt(jobId) }),
  heartbeat: event('heartbeat', { time: num(0, Infinity), rss: bytes, state: serverState, queued: int(0, MAX_SAFE) }),
  'download-progress': event('download-progress', { downloadId, progress: downloadProgress }),
  'download-done': event('download-done', { downloadId, result: downloadResult }),
  'download-failed': event('download-failed', { downloadId, code: oneOf(...DOWNLOAD_ERROR_CODES), message: str({ max: 100_000 }), detail: opt(str({ max: 1_000_000 })) }),
};

/** Checks a parsed JSON value from the server. Never throws. */
export function validateServerMessage(v: unknown): ServerMessage | ValidationError {
  return guard(v, () => {
    const type = readType(v);
    if (type === 'event') {
      const name = isPlainObject(v) ? v.event : undefined;
      if (typeof name !== 'string' || !Object.prototype.hasOwnProperty.call(EVENTS, name)) fail('event', 'an event name', name);
      return EVENTS[name as Event['event']](v, '');
    }
    if (type === undefined || !Object.prototype.hasOwnProperty.call(RESPONSES, type)) {
      fail('type', `"event" or a response type (${Object.keys(RESPONSES).join(', ')})`, isPlainObject(v) ? v.type : v);
    }
    return RESPONSES[type as Response['type']](v, '');
  });
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
