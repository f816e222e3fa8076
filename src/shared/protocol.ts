// The message protocol between a client (the extension, a script) and the inference server: every
// request, reply and event, one schema each. Both sides import it, so it imports nothing at runtime
// beyond the rest of src/shared/ (free of node modules) and valibot: it must stay bundleable
// anywhere. docs/PROTOCOL.md documents every message. Around it: ndjson.ts frames messages as lines,
// wireSchema.ts has the bounded schema builders, protocolModels.ts the model-management payloads.
//
// Every message is validated on receipt (validateRequest / validateServerMessage): validation
// never throws, rebuilds the object from known fields only (unknown ones are dropped, so a newer
// peer's additions are harmless) and says which field is wrong. Each message's type is inferred
// from its schema, so a field can't be typed and then forgotten by the validator. A generation's
// parameters and an image's metadata are params.ts's schemas: one set of limits for every surface.

import * as v from 'valibot';
import type { StageTiming } from './api';
import { COMPONENTS, EP_CHOICES, errorText, EXECUTION_PROVIDERS, LOAD_PHASES, MEMORY_MODES, WEIGHT_CHOICES } from './api';
import { MAX_LINE_BYTES, parseJsonLine } from './ndjson';
import { GenerateParamsSchema, Height, ImageMetadataSchema, Width } from './params';
import {
  CheckReportSchema,
  DOWNLOAD_ERROR_CODES,
  DownloadProgressSchema,
  DownloadRequestSchema,
  DownloadResultSchema,
  FoundModelSchema,
  MachineInfoSchema,
  ModelSearchSchema,
  ModelSpecSchema,
} from './protocolModels';
import { arr, bool, bytes, got, int, isPlainObject, MAX_SAFE, num, obj, oneOf, partialRecord, path, Same, str } from './wireSchema';

/** Bumped on any incompatible change; `hello` fails when client and server differ. */
export const PROTOCOL_VERSION = 1;

/** A message: `type` (or `event`) fixed, then its fields. */
function message<const T extends string, E extends v.ObjectEntries>(type: T, entries: E) {
  return obj({ id, type: v.literal(type), ...entries });
}

function event<const T extends string, E extends v.ObjectEntries>(name: T, entries: E) {
  return obj({ type: v.literal('event'), event: v.literal(name), ...entries });
}

// =============================================================================================
// Shared shapes

const id = int(0, MAX_SAFE);
const jobId = str(100, 1);
const ep = oneOf(...EXECUTION_PROVIDERS);
const epChoice = oneOf(...EP_CHOICES);
const component = oneOf(...COMPONENTS);
const components = arr(component, COMPONENTS.length);
const stage = oneOf('load', 'text', 'encode', 'denoise', 'decode', 'save');
const weightChoice = oneOf(...WEIGHT_CHOICES);
const memoryMode = oneOf(...MEMORY_MODES);
const LOG_LEVELS = ['trace', 'debug', 'info', 'warn', 'error'] as const;
const logLevel = oneOf(...LOG_LEVELS);

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

const StageTimingSchema = obj({ stage, seconds: num(0, Infinity), peakRss: bytes, ep: v.optional(ep) });

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
    /** The notes to show the user with the image (GenerateResult.warnings): something asked for did not apply as asked. */
    warnings: v.optional(arr(str(10_000), 1000)),
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

// The pipeline's StageTiming (api.ts) is what the rest of the code reads: it must be exactly its
// schema's output, field for field, or this does not compile (protocolModels.ts checks the others).
const stageTimingMatches: Same<v.InferOutput<typeof StageTimingSchema>, StageTiming> = true;
void stageTimingMatches;

export function isJobEvent(e: Event): e is JobEvent {
  return e.event !== 'log' && e.event !== 'heartbeat' && !isDownloadEvent(e);
}

export function isDownloadEvent(e: Event): e is DownloadEvent {
  return e.event === 'download-progress' || e.event === 'download-done' || e.event === 'download-failed';
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
