// The inference server: a long-lived child process of the extension (or `majicflux serve` on a GPU
// host), started by main.ts. It owns the one FluxPipeline (on a worker thread: pipeline/worker.ts),
// runs jobs one at a time, and speaks the NDJSON protocol of shared/protocol.ts (docs/PROTOCOL.md).

import '../system/privacy'; // first: telemetry off before onnxruntime loads
import * as crypto from 'node:crypto';
import * as fsp from 'node:fs/promises';
import * as path from 'node:path';
import * as zlib from 'node:zlib';
import { CancelledError, GenerateResult, ModelError, ModelSpec, RuntimeOptions, StageTiming, UserError } from '../../shared/api';
import { formatBytes } from '../../shared/bytes';
import { cleanStaleTemps } from '../system/atomicWrite';
import { availableMemory, currentRss, RssSampler } from '../system/processMemory';
import { VERSION } from '../pipeline/pipeline';
import { WorkerPipeline } from '../pipeline/worker';
import { ensureDemoModel } from '../models/demo';
import { DownloadError } from '../models/download';
import { checkModels, downloadModel, findModels, planModelDownload } from '../models/service';
import type { DownloadRequest } from '../../shared/models';
import { encodeImagePng, pngChunk, writePngAtomic } from '../formats/png';
import { encodeMessage, LineSplitter, MAX_LINE_BYTES } from '../../shared/ndjson';
import {
  ErrorCode,
  Event,
  JobEvent,
  JobInfo,
  JobRequest,
  JobState,
  LogLevel,
  parseRequest,
  PROTOCOL_VERSION,
  Request,
  ServerMessage,
  ServerSettings,
  StatusInfo,
} from '../../shared/protocol';
import { isInside, PathPolicy, remoteRoots } from './paths';

export const DEFAULT_HEARTBEAT_MS = 5000;
const MAX_QUEUE = 1000;
const HISTORY = 20;
/** Before `hello` over TCP: keep unauthenticated peers from making us buffer much. */
const PREAUTH_MAX_LINE = 256 * 1024;
const HELLO_TIMEOUT_MS = 10_000;

export interface ServerOptions {
  /** Required in `hello` when set (TCP). */
  token?: string;
  /** Default heartbeat interval; a client may ask for another in `hello` (0: none). */
  heartbeatMs?: number;
  /** When set, job outputs are relative to this folder and may not leave it (TCP). */
  outputDir?: string;
  /** Used until a client sends settings (serve --model …). */
  settings?: ServerSettings;
  /** The model to use whatever a client names (serve --model: client paths mean nothing here). */
  fixedModel?: ModelSpec;
  /** Write log lines to stderr even while a client receives them as events (serve). */
  echoLogs?: boolean;
  /** TCP: downloads may only go into this folder (relative `dest`); without it downloads are refused. */
  modelsDir?: string;
  /** The owner's converted-weight cache (serve --cache): a TCP client cannot move it. */
  cacheDir?: string;
  /** The disk the owner lets the caches take, bytes (serve --cache-max-gb): a TCP client cannot change it. */
  cacheMaxBytes?: number;
  /** TCP: input files (latentsFile) may come from here; relative names are taken from here. */
  inputsDir?: string;
  /** How long a cancelled job may take to stop before its pipeline is abandoned as stuck (ms). */
  cancelGraceMs?: number;
}

/** A step on a CPU can take a minute: only a job silent for longer than that after its cancel counts as stuck. */
export const DEFAULT_CANCEL_GRACE_MS = 90_000;

/** $MAJICFLUX_CANCEL_GRACE_MS (ms), for `serve` and for a server the extension starts; ignored unless a number ≥ 0. */
function envCancelGraceMs(): number | undefined {
  const raw = process.env.MAJICFLUX_CANCEL_GRACE_MS?.trim();
  const v = raw ? Number(raw) : NaN;
  return v >= 0 ? v : undefined;
}

// =============================================================================================
// Connection: one NDJSON peer

export interface Sink {
  write(data: string, cb?: (err?: Error | null) => void): unknown;
  end?(cb?: () => void): unknown;
}

export class Connection {
  /** No more sends. */
  private closed = false;
  /** onEnd has run. */
  private ended = false;
  readonly splitter: LineSplitter;

  constructor(
    input: NodeJS.ReadableStream,
    private readonly sink: Sink,
    onLine: (line: string) => void,
    onOverflow: (bytes: number) => void,
    private readonly onEnd: () => void,
    maxLine = MAX_LINE_BYTES,
  ) {
    this.splitter = new LineSplitter(onLine, onOverflow, maxLine);
    input.on('data', (chunk: Buffer | string) => {
      if (!this.ended) this.splitter.push(chunk);
    });
    input.on('end', () => {
      if (!this.ended) this.splitter.end();
      this.finish();
    });
    input.on('close', () => this.finish());
    input.on('error', () => this.finish());
  }

  get isClosed(): boolean {
    return this.closed;
  }

  send(msg: ServerMessage): void {
    if (this.closed) return;
    this.sink.write(encodeMessage(msg), (err) => {
      if (err) this.finish();
    });
  }

  /** Resolves once everything sent so far has been handed to the OS. */
  flush(): Promise<void> {
    if (this.closed) return Promise.resolve();
    return new Promise((resolve) => this.sink.write('', () => resolve()));
  }

  /** Flushes, ends the output and reports the end (once). */
  async close(): Promise<void> {
    await this.flush();
    this.closed = true;
    await new Promise<void>((resolve) => (this.sink.end ? this.sink.end(() => resolve()) : resolve()));
    this.finish();
  }

  private finish(): void {
    if (this.ended) return;
    this.ended = true;
    this.closed = true;
    this.onEnd();
  }
}

// =============================================================================================
// The server: sessions, queue, pipeline

type Transport = 'stdio' | 'fd' | 'tcp';

class Session {
  hello = false;
  /** Sent a wrong token: waits out its back-off, then is closed; nothing it sends is read. */
  rejected = false;
  /** Asked for shutdown: takes no more requests. */
  closing = false;
  heartbeat?: NodeJS.Timeout;
  helloTimer?: NodeJS.Timeout;
  constructor(
    readonly conn: Connection,
    readonly transport: Transport,
    /** The peer's address (TCP): wrong tokens from it are answered ever more slowly. */
    readonly peer?: string,
  ) {}
  send(msg: ServerMessage): void {
    this.conn.send(msg);
  }
}

interface Job {
  id: string;
  /** Only the request (a prompt and a few numbers): a long queue costs next to nothing. */
  request: JobRequest;
  /** Resolved absolute path. */
  output: string;
  state: JobState;
  owner: Session;
  controller?: AbortController;
  /** The input image as the client named it (the request holds the resolved path): the metadata records this. */
  imageAsNamed?: string;
}

export class InferenceServer {
  private settings?: ServerSettings;
  private pipe?: { key: string; instance: WorkerPipeline };
  private readonly queue: Job[] = [];
  private running?: Job;
  private runningDone?: Promise<void>;
  private readonly history: JobInfo[] = [];
  private mutex: Promise<void> = Promise.resolve();
  private loading = 0;
  private jobCounter = 0;
  private readonly downloads = new Map<string, { controller: AbortController; owner: Session }>();
  private downloadCounter = 0;
  private rejectedClients = 0;
  private readonly tokenFailures = new BackOff();
  private session?: Session;
  private stopping = false;
  /** A job was abandoned while stuck in I/O: its thread may never return, and the process cannot exit normally. */
  stuck = false;
  private readonly started = Date.now();
  /** Called after a session asked for `shutdown` and the server wound down for it. */
  onShutdownRequest: (session: Session) => void = () => undefined;

  /** What clients may name: anything for the local owner, the owner's folders only over TCP. */
  private readonly paths: PathPolicy;
  /** Output folders already swept for temp files a killed writer left. */
  private readonly swept = new Set<string>();

  constructor(private readonly opts: ServerOptions = {}) {
    this.settings = opts.settings;
    this.paths = new PathPolicy(opts.outputDir === undefined ? undefined : remoteRoots({ ...opts, outputDir: opts.outputDir, model: opts.fixedModel }));
  }

  // ---- sessions -----------------------------------------------------------------------------

  attach(input: NodeJS.ReadableStream, sink: Sink, transport: Transport, onClose: () => void = () => undefined, peer?: string): Session {
    // `session` is assigned before any data can arrive (data events come on a later tick).
    let session!: Session;
    const conn = new Connection(
      input,
      sink,
      (line) => this.onLine(session, line),
      (bytes) => session.send({ id: null, type: 'error', code: 'line-too-long', message: `line of ${bytes}+ bytes exceeds the limit of ${conn.splitter.maxLineBytes} bytes; ignored` }),
      () => {
        this.detach(session);
        onClose();
      },
      transport === 'tcp' && this.opts.token ? PREAUTH_MAX_LINE : MAX_LINE_BYTES,
    );
    session = new Session(conn, transport, peer);
    if (transport === 'tcp') {
      session.helloTimer = setTimeout(() => {
        if (!session.hello) {
          this.reply(session, null, 'unauthorized', 'no hello within 10 s; closing');
          void session.conn.close();
        }
      }, HELLO_TIMEOUT_MS);
      session.helloTimer.unref();
    }
    return session;
  }

  /** A session ended (its peer left or it was closed): its jobs are cancelled. */
  detach(session: Session): void {
    clearInterval(session.heartbeat);
    clearTimeout(session.helloTimer);
    this.cancelJobsOf(session);
    if (this.session === session) this.session = undefined;
  }

  get activeSession(): Session | undefined {
    return this.session && !this.session.conn.isClosed ? this.session : undefined;
  }

  /** Cancel everything, wait for the running job to stop, free the pipeline. */
  async shutdown(): Promise<void> {
    this.stopping = true;
    this.cancelJobsOf();
    await this.runningDone?.catch(() => undefined);
    await this.exclusive(() => this.releasePipeline());
  }

  // ---- requests -----------------------------------------------------------------------------

  private onLine(session: Session, line: string): void {
    // A client turned away for its token is heard no more: further guesses on the same connection
    // would skip the back-off.
    if (session.rejected) return;
    const req = parseRequest(line);
    if ('error' in req) {
      this.reply(session, req.id, req.code, req.error);
      return;
    }
    this.handle(session, req).catch((err: unknown) => {
      const e = err instanceof Error ? err : new Error(String(err));
      this.reply(session, req.id, 'failed', e.message, e instanceof UserError ? e.detail : e.stack);
    });
  }

  private reply(session: Session, id: number | null, code: ErrorCode, message: string, detail?: string): void {
    session.send({ id, type: 'error', code, message, ...(detail ? { detail } : {}) });
  }

  private async handle(session: Session, req: Request): Promise<void> {
    if (req.type === 'hello') return this.hello(session, req);
    if (!session.hello) return this.reply(session, req.id, 'handshake-required', `send hello first (got ${req.type})`);
    if ((this.stopping || session.closing) && req.type !== 'status' && req.type !== 'ping') return this.reply(session, req.id, 'shutting-down', 'the server is shutting down');
    switch (req.type) {
      case 'configure':
        this.configure(req.settings);
        return session.send({ id: req.id, type: 'ok' });
      case 'generate':
        return this.enqueue(session, req.id, req.job);
      case 'cancel':
        return this.cancelRequest(session, req.id, req.jobId);
      case 'status':
        return session.send({ id: req.id, type: 'status', status: this.status() });
      case 'load':
      case 'unload': {
        const components = req.components;
        const loaded = await this.exclusive(async () => {
          this.loading++;
          try {
            const p = await this.pipeline();
            if (req.type === 'load') await p.load(components);
            else await p.unload(components);
            return p.loaded();
          } finally {
            this.loading--;
          }
        });
        return session.send({ id: req.id, type: 'loaded', components: loaded });
      }
      case 'ping':
        return session.send({ id: req.id, type: 'pong', time: Date.now() });
      case 'models': {
        const s = this.settings;
        // The demo model is not one to list (its files may not even be written yet).
        const configured = s && s.model.demo === undefined ? this.allowedModel(s.model) : undefined;
        const r = await findModels({ configured, ...(this.remote ? {} : req.search), gpuMemory: s?.gpuMemory });
        return session.send({ id: req.id, type: 'models', ...r });
      }
      case 'check': {
        const spec = req.model && !this.opts.fixedModel ? req.model : this.settings?.model;
        if (!spec || Object.keys(spec).length === 0) return this.reply(session, req.id, 'failed', 'No model is configured: set majicflux.model.path (a FLUX.1-dev folder) or majicflux.model.transformer.');
        const report = await checkModels(this.modelFiles(spec), { verify: req.verify, cacheDir: this.settings?.cacheDir, gpuMemory: this.settings?.gpuMemory, width: req.width, height: req.height });
        return session.send({ id: req.id, type: 'check', report });
      }
      case 'download':
        return this.startDownload(session, req.id, req.download);
      case 'shutdown':
        session.closing = true;
        session.send({ id: req.id, type: 'ok' });
        this.cancelJobsOf(session);
        await this.runningDone?.catch(() => undefined);
        await this.exclusive(() => this.releasePipeline());
        return this.onShutdownRequest(session);
    }
  }

  private hello(session: Session, req: Extract<Request, { type: 'hello' }>): void {
    if (this.opts.token !== undefined && !sameSecret(req.token ?? '', this.opts.token)) {
      // Nothing a client sent before it authenticated is logged: only how many were turned away.
      this.log('warn', `rejected a client: wrong or missing token (${++this.rejectedClients} so far)`);
      session.rejected = true;
      const delay = session.peer === undefined ? 0 : this.tokenFailures.fail(session.peer);
      setTimeout(() => {
        this.reply(session, req.id, 'unauthorized', 'wrong or missing token');
        void session.conn.close();
      }, delay).unref();
      return;
    }
    if (session.peer !== undefined) this.tokenFailures.forgive(session.peer);
    if (req.protocol !== PROTOCOL_VERSION) {
      return this.reply(
        session,
        req.id,
        'protocol-mismatch',
        `the client speaks protocol ${req.protocol} but this server (MajicFLUX ${VERSION}) speaks protocol ${PROTOCOL_VERSION}; use matching versions of the extension and the server`,
      );
    }
    if (this.session && this.session !== session && !this.session.conn.isClosed && this.session.hello) {
      this.reply(session, req.id, 'busy', 'another client is connected to this server; one client at a time');
      void session.conn.close();
      return;
    }
    clearTimeout(session.helloTimer);
    session.hello = true;
    session.conn.splitter.maxLineBytes = MAX_LINE_BYTES;
    this.session = session;
    if (req.settings) this.configure(req.settings);
    const heartbeatMs = req.heartbeatMs ?? this.opts.heartbeatMs ?? DEFAULT_HEARTBEAT_MS;
    clearInterval(session.heartbeat);
    if (heartbeatMs > 0) {
      session.heartbeat = setInterval(() => session.send(this.heartbeat()), Math.max(50, heartbeatMs));
      session.heartbeat.unref();
    }
    session.send({ id: req.id, type: 'hello', protocol: PROTOCOL_VERSION, version: VERSION, pid: process.pid, platform: `${process.platform}-${process.arch}`, heartbeatMs });
  }

  private configure(requested: ServerSettings): void {
    const settings = this.ownSettings(requested);
    this.settings = settings;
    // Free a pipeline built for other settings now rather than at the next job.
    if (this.pipe && this.pipe.key !== pipelineKey(settings)) {
      this.exclusive(() => this.pipeline().then(() => undefined)).catch((err: Error) => this.log('warn', `could not apply the new settings yet: ${err.message}`));
    }
  }

  /**
   * The settings a client may set. Over TCP it sets no server path: the owner's cache folder stays,
   * and a model fixed at start replaces the client's (its paths are checked when they are used);
   * nor how much of the owner's disk the caches keep (a tiny limit would delete them).
   */
  private ownSettings(requested: ServerSettings): ServerSettings {
    if (!this.remote) return requested;
    const { cacheDir: _ignored, cacheMaxBytes: _notTheirs, ...rest } = requested;
    const cacheDir = this.opts.cacheDir ?? this.opts.settings?.cacheDir;
    const cacheMaxBytes = this.opts.cacheMaxBytes ?? this.opts.settings?.cacheMaxBytes;
    return { ...rest, model: this.opts.fixedModel ?? requested.model, ...(cacheDir !== undefined ? { cacheDir } : {}), ...(cacheMaxBytes !== undefined ? { cacheMaxBytes } : {}) };
  }

  /** The model, when this client may name it (for listing: a refused one is left out, not reported). */
  private allowedModel(spec: ModelSpec): ModelSpec | undefined {
    try {
      this.paths.modelSpec(spec);
      return spec;
    } catch {
      return undefined;
    }
  }

  private enqueue(session: Session, id: number, request: JobRequest): void {
    // Paths are checked now, not after loading a model: a bad name must not cost a generation.
    const output = this.paths.output(request.output);
    if (typeof output === 'object') return this.reply(session, id, 'bad-output', output.error);
    if (request.params.latentsFile !== undefined) {
      try {
        request = { ...request, params: { ...request.params, latentsFile: this.paths.inputFile(request.params.latentsFile, 'job.params.latentsFile') } };
      } catch (e) {
        return this.reply(session, id, 'bad-request', (e as Error).message);
      }
    }
    const imageAsNamed = request.params.image;
    if (imageAsNamed !== undefined) {
      try {
        request = { ...request, params: { ...request.params, image: this.paths.inputFile(imageAsNamed, 'job.params.image', 'a PNG, JPEG or WebP image') } };
      } catch (e) {
        return this.reply(session, id, 'bad-request', (e as Error).message);
      }
    }
    // LoRA files are inputs too: a remote client names them inside the server's inputs folder.
    if (request.params.loras?.length) {
      try {
        request = { ...request, params: { ...request.params, loras: request.params.loras.map((l, i) => ({ ...l, path: this.paths.inputFile(l.path, `job.params.loras[${i}].path`) })) } };
      } catch (e) {
        return this.reply(session, id, 'bad-request', (e as Error).message);
      }
    }
    if (this.queue.length >= MAX_QUEUE) return this.reply(session, id, 'queue-full', `the queue is full (${MAX_QUEUE} jobs); wait for some to finish`);
    const job: Job = { id: `job-${++this.jobCounter}`, request, output, state: 'queued', owner: session, ...(imageAsNamed !== undefined ? { imageAsNamed } : {}) };
    this.queue.push(job);
    session.send({ id, type: 'queued', jobId: job.id, position: this.queue.length - 1 + (this.running ? 1 : 0) });
    // The reply goes out before any of the job's events.
    setImmediate(() => this.pump());
  }

  /** A TCP server: client paths mean nothing here, and it writes only inside its own folders. */
  private get remote(): boolean {
    return this.opts.outputDir !== undefined;
  }

  private startDownload(session: Session, id: number, request: DownloadRequest): void {
    let dest = request.dest;
    if (this.remote) {
      const root = this.opts.modelsDir;
      if (!root) return this.reply(session, id, 'failed', 'This server does not accept downloads: start it with --models-dir DIR to allow them.');
      dest = path.resolve(root, request.dest);
      if (dest !== path.resolve(root) && !isInside(root, dest)) return this.reply(session, id, 'bad-output', `download folder ${JSON.stringify(request.dest)} is outside the server's models folder`);
    } else if (!path.isAbsolute(dest)) {
      return this.reply(session, id, 'bad-output', `download folder must be an absolute path, got ${JSON.stringify(dest)}`);
    }
    const req = { ...request, dest };
    let plan: ReturnType<typeof planModelDownload>;
    try {
      plan = planModelDownload(req);
    } catch (err) {
      return this.reply(session, id, 'failed', (err as Error).message);
    }
    const downloadId = `download-${++this.downloadCounter}`;
    const controller = new AbortController();
    this.downloads.set(downloadId, { controller, owner: session });
    session.send({ id, type: 'download', downloadId });
    const log = (level: LogLevel, message: string) => this.log(level, `${downloadId}: ${message}`);
    downloadModel(
      req,
      {
        signal: controller.signal,
        cacheDir: this.settings?.cacheDir,
        log,
        // The downloader sends a few progress reports a second.
        onProgress: (progress) => session.send({ type: 'event', event: 'download-progress', downloadId, progress }),
      },
      plan,
    )
      .then((result) => {
        log('info', `done: ${result.files.length} files`);
        session.send({ type: 'event', event: 'download-done', downloadId, result });
      })
      .catch((err: unknown) => {
        const e = err instanceof Error ? err : new Error(String(err));
        const code = err instanceof DownloadError ? err.code : controller.signal.aborted ? 'cancelled' : 'http';
        const detail = err instanceof UserError ? err.detail : e.stack;
        log(code === 'cancelled' ? 'info' : 'error', `${code}: ${e.message}`);
        session.send({ type: 'event', event: 'download-failed', downloadId, code, message: e.message, ...(detail ? { detail } : {}) });
      })
      .finally(() => this.downloads.delete(downloadId));
  }

  private cancelRequest(session: Session, id: number, jobId: string): void {
    const download = this.downloads.get(jobId);
    if (download) {
      download.controller.abort();
      return session.send({ id, type: 'cancel', jobId, state: 'cancelling' });
    }
    const i = this.queue.findIndex((j) => j.id === jobId);
    if (i >= 0) {
      const [job] = this.queue.splice(i, 1);
      session.send({ id, type: 'cancel', jobId, state: 'cancelled' });
      this.finish(job, { type: 'event', event: 'cancelled', jobId });
      return;
    }
    if (this.running?.id === jobId) {
      this.cancelRunning();
      return session.send({ id, type: 'cancel', jobId, state: 'cancelling' });
    }
    const past = this.history.find((j) => j.jobId === jobId);
    this.reply(session, id, 'unknown-job', past ? `job ${jobId} already ended (${past.state})` : `no job ${jobId}`);
  }

  /** Cancels the session's jobs (all jobs without one): queued ones at once, the running one at its next step. */
  private cancelJobsOf(session?: Session): void {
    for (const d of this.downloads.values()) if (!session || d.owner === session) d.controller.abort();
    for (const job of this.queue.filter((j) => !session || j.owner === session)) {
      this.queue.splice(this.queue.indexOf(job), 1);
      this.finish(job, { type: 'event', event: 'cancelled', jobId: job.id });
    }
    if (this.running && (!session || this.running.owner === session)) this.cancelRunning();
  }

  /**
   * Cancels the running job at its next step; if it has not stopped within the grace time it is
   * stuck (in a read that never returns, say), and its pipeline is abandoned so the job ends, the
   * queue moves and shutdown completes. A new pipeline is built for the next job.
   */
  private cancelRunning(): void {
    const job = this.running;
    if (!job?.controller || job.controller.signal.aborted) return;
    job.controller.abort();
    setTimeout(() => {
      const pipe = this.pipe;
      if (this.running !== job || !pipe) return;
      this.log('warn', `${job.id} did not stop within ${Math.round(this.cancelGraceMs / 1000)} s of its cancel (stuck reading a file?); abandoning its pipeline`, job.id);
      this.stuck = true;
      this.pipe = undefined;
      pipe.instance.abandon();
    }, this.cancelGraceMs).unref();
  }

  private get cancelGraceMs(): number {
    return this.opts.cancelGraceMs ?? envCancelGraceMs() ?? DEFAULT_CANCEL_GRACE_MS;
  }

  // ---- running jobs -------------------------------------------------------------------------

  /** Runs `fn` after everything queued before it: jobs, loads and pipeline swaps never overlap. */
  private exclusive<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.mutex.then(fn);
    this.mutex = run.then(
      () => undefined,
      () => undefined,
    );
    return run;
  }

  private pump(): void {
    if (this.running || this.stopping) return;
    const job = this.queue.shift();
    if (!job) return;
    const controller = new AbortController();
    job.controller = controller;
    job.state = 'running';
    this.running = job;
    this.runningDone = this.exclusive(() => this.run(job, controller.signal)).finally(() => {
      this.running = undefined;
      this.runningDone = undefined;
      setImmediate(() => this.pump());
    });
  }

  private async run(job: Job, signal: AbortSignal): Promise<void> {
    const send = (e: JobEvent) => job.owner.send(e);
    const jobId = job.id;
    const t0 = performance.now();
    send({ type: 'event', event: 'started', jobId });
    try {
      if (signal.aborted) throw new CancelledError();
      // First job into a folder: temp files a killed writer left there go (the folder may not exist yet).
      await this.sweep(path.dirname(job.output));
      const pipeline = await this.pipeline();
      const every = job.request.previewEvery ?? 0;
      const result = await pipeline.generate(job.request.params, {
        signal,
        wantPreview: every > 0,
        onStage: (stage, state, detail) => send({ type: 'event', event: 'stage', jobId, stage, state, ...(detail ? { detail } : {}) }),
        onLoad: (component, phase, fraction) => send({ type: 'event', event: 'loading', jobId, component, phase, ...(fraction !== undefined ? { fraction } : {}) }),
        onStep: ({ step, steps, preview }) => {
          const withPreview = preview && every > 0 && (step % every === 0 || step === steps);
          send({ type: 'event', event: 'step', jobId, step, steps, ...(withPreview ? { preview: { width: preview.width, height: preview.height, pngBase64: previewPng(preview.width, preview.height, preview.rgb).toString('base64') } } : {}) });
        },
      });
      // A cancel that arrived during the last step or the decode still means: no image.
      if (signal.aborted) throw new CancelledError();
      if (job.imageAsNamed !== undefined) result.metadata.image = job.imageAsNamed;
      const saved = await this.save(job, result, signal);
      this.finish(job, {
        type: 'event',
        event: 'done',
        jobId,
        file: saved.file,
        ...(saved.png ? { pngBase64: saved.png.toString('base64') } : {}),
        metadata: result.metadata,
        stages: [...result.stages, saved.timing],
        notes: result.notes,
        seconds: (performance.now() - t0) / 1000,
      });
    } catch (err) {
      if (err instanceof CancelledError || (signal.aborted && (err as Error)?.name === 'AbortError')) {
        this.finish(job, { type: 'event', event: 'cancelled', jobId });
      } else if (err instanceof UserError) {
        this.log('error', `${jobId} failed: ${err.message}${err.detail ? `\n${err.detail}` : ''}`, jobId);
        this.finish(job, { type: 'event', event: 'failed', jobId, message: err.message, ...(err.detail ? { detail: err.detail } : {}), ...(err instanceof ModelError ? { code: 'model' as const } : {}) });
      } else {
        const e = err instanceof Error ? err : new Error(String(err));
        this.log('error', `${jobId} failed: ${e.stack ?? e.message}`, jobId);
        this.finish(job, { type: 'event', event: 'failed', jobId, message: `Generation failed: ${e.message.split('\n')[0]}`, ...(e.stack ? { detail: e.stack } : {}) });
      }
    }
  }

  private async save(job: Job, result: GenerateResult, signal: AbortSignal): Promise<{ file: string; png?: Buffer; timing: StageTiming }> {
    job.owner.send({ type: 'event', event: 'stage', jobId: job.id, stage: 'save', state: 'start' });
    const sampler = new RssSampler();
    const t0 = performance.now();
    let written: { file: string; png: Buffer };
    let peakRss = 0;
    try {
      written = await this.writeOutput(job, result, signal);
    } finally {
      peakRss = sampler.stop();
    }
    const timing: StageTiming = { stage: 'save', seconds: (performance.now() - t0) / 1000, peakRss };
    job.owner.send({ type: 'event', event: 'stage', jobId: job.id, stage: 'save', state: 'end', detail: written.file });
    return { file: written.file, png: job.request.returnImage ? written.png : undefined, timing };
  }

  private async writeOutput(job: Job, result: GenerateResult, signal: AbortSignal): Promise<{ file: string; png: Buffer }> {
    const png = await encodeImagePng({ width: result.width, height: result.height, data: result.image }, result.metadata);
    signal.throwIfAborted();
    const dir = path.dirname(job.output);
    // Checked again now: a symlink made inside the output folder since the job was accepted.
    this.paths.assertWritable(job.output);
    await fsp.mkdir(dir, { recursive: true });
    this.paths.assertWritable(job.output);
    // Temp file + link: never a partial PNG, never an existing file replaced; a cancel up to the
    // moment `done` is sent (nothing but microtasks run between here and then) still removes the file.
    const file = await writePngAtomic(job.output, png, { unique: true, signal });
    return { file, png };
  }

  /** Removes temp files a killed writer left in `dir`, once per folder and process. */
  async sweep(dir: string): Promise<void> {
    if (this.swept.has(dir)) return;
    if (this.swept.size >= 1000) this.swept.clear();
    this.swept.add(dir);
    const removed = await cleanStaleTemps(dir);
    if (removed.length > 0) this.log('info', `removed ${removed.length} temporary file${removed.length > 1 ? 's' : ''} left by a writer that was killed, in ${dir}`);
  }

  private finish(job: Job, final: Extract<Event, { event: 'done' | 'failed' | 'cancelled' }>): void {
    job.state = final.event;
    job.owner.send(final);
    this.history.unshift(jobInfo(job));
    this.history.length = Math.min(this.history.length, HISTORY);
  }

  // ---- pipeline -----------------------------------------------------------------------------

  /** The pipeline for the current settings; one instance lives across jobs so its caches work. Call under `exclusive`. */
  private async pipeline(): Promise<WorkerPipeline> {
    const settings = this.settings;
    if (!settings) throw new UserError('No model is configured: send settings with hello or configure first.');
    const key = pipelineKey(settings);
    if (this.pipe?.key === key) return this.pipe.instance;
    const model = this.modelFiles(settings.model);
    await this.releasePipeline();
    const instance = await WorkerPipeline.create(model, runtimeOptions(settings), (level, message) => this.log(level, message));
    this.log('info', `memory mode ${settings.memory ?? 'auto'}, budget ${formatBytes(this.memoryBudget())} RAM${settings.gpuMemory ? `, ${formatBytes(settings.gpuMemory)} GPU` : ''}`);
    this.pipe = { key, instance };
    return instance;
  }

  /**
   * The model's files: a remote client's are checked against the allowed folders; the demo model's
   * random weights are written on first use here, in the server's process (≈15 MB with fsync would
   * stall the extension host's thread).
   */
  private modelFiles(spec: ModelSpec): ModelSpec {
    this.paths.modelSpec(spec);
    return spec.demo === undefined ? spec : ensureDemoModel(spec.demo);
  }

  private async releasePipeline(): Promise<void> {
    const p = this.pipe;
    this.pipe = undefined;
    await p?.instance.release();
  }

  /** RAM the `auto` memory mode may plan with: the setting, else what the OS says is available to us. */
  private memoryBudget(): number {
    return this.settings?.memoryBudget ?? Math.floor(0.8 * (availableMemory() + currentRss()));
  }

  // ---- reporting ----------------------------------------------------------------------------

  private state(): StatusInfo['state'] {
    return this.running ? 'busy' : this.loading > 0 ? 'loading' : 'idle';
  }

  private heartbeat(): ServerMessage {
    return { type: 'event', event: 'heartbeat', time: Date.now(), rss: currentRss(), state: this.state(), queued: this.queue.length };
  }

  private status(): StatusInfo {
    const live = [...(this.running ? [this.running] : []), ...this.queue].map((j, i) => ({ ...jobInfo(j), position: i }));
    return {
      version: VERSION,
      pid: process.pid,
      state: this.state(),
      loaded: this.pipe?.instance.loaded() ?? [],
      jobs: [...live, ...this.history],
      rss: currentRss(),
      eps: this.pipe?.instance.eps() ?? [],
      ...(this.pipe ? { model: this.pipe.instance.files.name } : {}),
      memory: this.settings?.memory ?? 'auto',
      memoryBudget: this.memoryBudget(),
      uptime: (Date.now() - this.started) / 1000,
    };
  }

  log(level: LogLevel, message: string, jobId?: string): void {
    const s = this.activeSession;
    if (s?.hello) s.send({ type: 'event', event: 'log', level, message, ...(jobId ? { jobId } : {}) });
    if (!s?.hello || this.opts.echoLogs) process.stderr.write(`[${new Date().toISOString()}] ${level}: ${oneLine(message)}\n`);
  }
}

function jobInfo(j: Job): JobInfo {
  const p = j.request.params.prompt;
  return { jobId: j.id, state: j.state, prompt: p.length > 200 ? `${p.slice(0, 199)}…` : p };
}

function runtimeOptions(s: ServerSettings): RuntimeOptions {
  return { weights: s.weights, ep: s.ep, stageEp: s.stageEp, memory: s.memory, memoryBudget: s.memoryBudget, cacheDir: s.cacheDir, cacheMaxBytes: s.cacheMaxBytes, threads: s.threads, gpuMemory: s.gpuMemory };
}

/** Settings that need a new pipeline when they change (all of them: the pipeline runs on a worker with its options). */
function pipelineKey(s: ServerSettings): string {
  return JSON.stringify([s.model, runtimeOptions(s)]);
}

/**
 * Wrong tokens from one address are answered after 0.25 s, 0.5 s, 1 s, … up to 8 s, so guessing is
 * slow; a right token clears the address, and an address quiet for 10 minutes is forgotten. At most
 * 1,000 addresses are remembered (the oldest go first): the table itself can't be grown without bound.
 */
export class BackOff {
  private readonly failures = new Map<string, { count: number; last: number }>();
  constructor(
    private readonly baseMs = 250,
    private readonly maxMs = 8_000,
    private readonly forgetMs = 600_000,
    private readonly maxEntries = 1_000,
    private readonly now = () => Date.now(),
  ) {}

  /** Records a failure; returns how long to wait before answering it, ms. */
  fail(key: string): number {
    const t = this.now();
    const prev = this.failures.get(key);
    const count = prev && t - prev.last < this.forgetMs ? prev.count + 1 : 1;
    this.failures.delete(key);
    this.failures.set(key, { count, last: t });
    if (this.failures.size > this.maxEntries) this.failures.delete(this.failures.keys().next().value!);
    return Math.min(this.baseMs * 2 ** (count - 1), this.maxMs);
  }

  forgive(key: string): void {
    this.failures.delete(key);
  }
}

/** A message as one log line: text from the network can't start a forged line of its own. */
export function oneLine(message: string): string {
  return message.replace(/[\u0000-\u001f\u007f\u2028\u2029]/g, (c) => (c === '\t' ? c : `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`));
}

function sameSecret(a: string, b: string): boolean {
  const h = (s: string) => crypto.createHash('sha256').update(s).digest();
  return crypto.timingSafeEqual(h(a), h(b));
}

/** A small RGB PNG, synchronously (previews go out in step order, with no sharp round trip). */
export function previewPng(width: number, height: number, rgb: Uint8Array): Buffer {
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(width, 0);
  ihdr.writeUInt32BE(height, 4);
  ihdr.set([8, 2, 0, 0, 0], 8); // 8-bit, truecolour, deflate, no filter method, no interlace
  const raw = Buffer.alloc(height * (width * 3 + 1));
  for (let y = 0; y < height; y++) raw.set(rgb.subarray(y * width * 3, (y + 1) * width * 3), y * (width * 3 + 1) + 1);
  return Buffer.concat([Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]), pngChunk('IHDR', ihdr), pngChunk('IDAT', zlib.deflateSync(raw)), pngChunk('IEND', new Uint8Array(0))]);
}
