// The inference server: a long-lived child process of the extension (or `majicflux serve` on a GPU
// host), started by main.ts. It speaks the NDJSON protocol of shared/protocol.ts (docs/PROTOCOL.md)
// with one client at a time: the handshake, settings and requests are here; the job queue and the
// one FluxPipeline (on a worker thread) are jobs.ts's, downloads downloads.ts's.

import '../system/privacy'; // first: telemetry off before onnxruntime loads
import { ModelSpec, UserError } from '../../shared/api';
import { currentRss } from '../system/processMemory';
import { checkModels, findModels } from '../models/service';
import type { DownloadRequest } from '../../shared/models';
import { VERSION } from '../pipeline/pipeline';
import { MAX_LINE_BYTES } from '../../shared/ndjson';
import {
  ErrorCode,
  JobRequest,
  LogLevel,
  parseRequest,
  PROTOCOL_VERSION,
  Request,
  ServerMessage,
  ServerSettings,
  StatusInfo,
} from '../../shared/protocol';
import { Connection, Session, Sink, Transport } from './connection';
import { ServerDownloads } from './downloads';
import { JobQueue } from './jobs';
import { PathPolicy, remoteRoots } from './paths';
import { BackOff, sameSecret } from './tokenCheck';

export const DEFAULT_HEARTBEAT_MS = 5000;
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

export class InferenceServer {
  private settings?: ServerSettings;
  private rejectedClients = 0;
  private readonly tokenFailures = new BackOff();
  private session?: Session;
  private readonly started = Date.now();
  /** Called after a session asked for `shutdown` and the server wound down for it. */
  onShutdownRequest: (session: Session) => void = () => undefined;

  /** What clients may name: anything for the local owner, the owner's folders only over TCP. */
  private readonly paths: PathPolicy;
  private readonly jobs: JobQueue;
  private readonly downloads = new ServerDownloads((level, message) => this.log(level, message));

  constructor(private readonly opts: ServerOptions = {}) {
    this.settings = opts.settings;
    this.paths = new PathPolicy(opts.outputDir === undefined ? undefined : remoteRoots({ ...opts, outputDir: opts.outputDir, model: opts.fixedModel }));
    this.jobs = new JobQueue({
      settings: () => this.settings,
      paths: this.paths,
      cancelGraceMs: () => this.opts.cancelGraceMs ?? envCancelGraceMs() ?? DEFAULT_CANCEL_GRACE_MS,
      log: (level, message, jobId) => this.log(level, message, jobId),
    });
  }

  /** A job was abandoned while stuck in I/O: its thread may never return, and the process cannot exit normally. */
  get stuck(): boolean {
    return this.jobs.stuck;
  }

  /** Removes temp files a killed writer left in `dir`, once per folder and process. */
  sweep(dir: string): Promise<void> {
    return this.jobs.sweep(dir);
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
    this.jobs.stopping = true;
    this.cancelJobsOf();
    await this.jobs.drain();
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
      const detail = e instanceof UserError ? e.detail : e.stack;
      this.reply(session, req.id, 'failed', this.paths.forClient(e.message), detail && (this.paths.forClient(detail).trim() || undefined));
    });
  }

  private reply(session: Session, id: number | null, code: ErrorCode, message: string, detail?: string): void {
    session.send({ id, type: 'error', code, message, ...(detail ? { detail } : {}) });
  }

  private async handle(session: Session, req: Request): Promise<void> {
    if (req.type === 'hello') return this.hello(session, req);
    if (!session.hello) return this.reply(session, req.id, 'handshake-required', `send hello first (got ${req.type})`);
    if ((this.jobs.stopping || session.closing) && req.type !== 'status' && req.type !== 'ping') return this.reply(session, req.id, 'shutting-down', 'the server is shutting down');
    switch (req.type) {
      case 'configure':
        this.configure(req.settings);
        return session.send({ id: req.id, type: 'ok' });
      case 'generate':
        return this.enqueue(session, req.id, req.job);
      case 'cancel':
        return this.cancelRequest(session, req.id, req.jobId);
      case 'status':
        return session.send({ id: req.id, type: 'status', status: this.status(session) });
      case 'load':
      case 'unload': {
        const loaded = await this.jobs.loadOrUnload(req.type === 'load', req.components);
        return session.send({ id: req.id, type: 'loaded', components: loaded });
      }
      case 'ping':
        return session.send({ id: req.id, type: 'pong', time: Date.now() });
      case 'models': {
        const s = this.settings;
        // The demo model is not one to list (its files may not even be written yet).
        const configured = s && s.model.demo === undefined ? this.allowedModel(s.model) : undefined;
        // A TCP client's paths mean nothing here; it sees what it may use: the models folder's, not the owner's others.
        const search = this.remote ? { searchPaths: this.opts.modelsDir ? [this.opts.modelsDir] : [] } : req.search;
        const r = await findModels({ configured, ...search, gpuMemory: s?.gpuMemory });
        const found = this.remote ? r.found.filter((m) => this.allowedModel(m.spec)) : r.found;
        return session.send({ id: req.id, type: 'models', ...r, found });
      }
      case 'check': {
        const spec = req.model && !this.opts.fixedModel ? req.model : this.settings?.model;
        if (!spec || Object.keys(spec).length === 0) return this.reply(session, req.id, 'failed', 'No model is configured: set majicflux.model.path (a FLUX.1-dev folder) or majicflux.model.transformer.');
        const report = await checkModels(this.jobs.modelFiles(spec), { verify: req.verify, cacheDir: this.settings?.cacheDir, gpuMemory: this.settings?.gpuMemory, width: req.width, height: req.height });
        return session.send({ id: req.id, type: 'check', report });
      }
      case 'download':
        return this.startDownload(session, req.id, req.download);
      case 'shutdown':
        session.closing = true;
        session.send({ id: req.id, type: 'ok' });
        this.cancelJobsOf(session);
        await this.jobs.drain();
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
      this.reply(
        session,
        req.id,
        'protocol-mismatch',
        `the client speaks protocol ${req.protocol} but this server (MajicFLUX ${VERSION}) speaks protocol ${PROTOCOL_VERSION}; use matching versions of the extension and the server`,
      );
      // Over TCP the refused client is done: left open, its hello timer later told it "no hello within 10 s".
      if (session.transport === 'tcp') {
        clearTimeout(session.helloTimer);
        void session.conn.close();
      }
      return;
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
    this.jobs.settingsChanged(settings);
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
    // Server path → the client's name for it: what a remote client hears of its inputs (paths.asNamed).
    const names = new Map<string, string>();
    const input = (file: string, what: string, expected?: string): string => {
      const resolved = this.paths.inputFile(file, what, expected);
      names.set(resolved, file);
      return resolved;
    };
    if (request.params.latentsFile !== undefined) {
      try {
        request = { ...request, params: { ...request.params, latentsFile: input(request.params.latentsFile, 'job.params.latentsFile') } };
      } catch (e) {
        return this.reply(session, id, 'bad-request', (e as Error).message);
      }
    }
    const imageAsNamed = request.params.image;
    if (imageAsNamed !== undefined) {
      try {
        request = { ...request, params: { ...request.params, image: input(imageAsNamed, 'job.params.image', 'a PNG, JPEG or WebP image') } };
      } catch (e) {
        return this.reply(session, id, 'bad-request', (e as Error).message);
      }
    }
    // LoRA files are inputs too: a remote client names them inside the server's inputs folder.
    if (request.params.loras?.length) {
      try {
        request = { ...request, params: { ...request.params, loras: request.params.loras.map((l, i) => ({ ...l, path: input(l.path, `job.params.loras[${i}].path`) })) } };
      } catch (e) {
        return this.reply(session, id, 'bad-request', (e as Error).message);
      }
    }
    const added = this.jobs.add(session, request, output, imageAsNamed, this.remote ? names : undefined);
    if ('full' in added) return this.reply(session, id, 'queue-full', added.full);
    session.send({ id, type: 'queued', jobId: added.job.id, position: added.position });
  }


  /** A TCP server: client paths mean nothing here, and it writes only inside its own folders. */
  private get remote(): boolean {
    return this.opts.outputDir !== undefined;
  }

  private startDownload(session: Session, id: number, request: DownloadRequest): void {
    const refused = this.downloads.start(session, id, request, { remote: this.remote, modelsDir: this.opts.modelsDir, cacheDir: this.settings?.cacheDir, forClient: (text) => this.paths.forClient(text) });
    if (refused) this.reply(session, id, refused.code, refused.message);
  }

  private cancelRequest(session: Session, id: number, jobId: string): void {
    if (this.downloads.cancel(jobId, session)) return session.send({ id, type: 'cancel', jobId, state: 'cancelling' });
    if (this.jobs.cancel(jobId, session, (state) => session.send({ id, type: 'cancel', jobId, state }))) return;
    const past = this.jobs.history.find((j) => j.info.jobId === jobId && j.owner === session);
    this.reply(session, id, 'unknown-job', past ? `job ${jobId} already ended (${past.info.state})` : `no job ${jobId} of this client's`);
  }

  /** Cancels the session's downloads and jobs (everything without one). */
  private cancelJobsOf(session?: Session): void {
    this.downloads.cancelOf(session);
    this.jobs.cancelJobsOf(session);
  }

  // ---- reporting ----------------------------------------------------------------------------

  private heartbeat(): ServerMessage {
    return { type: 'event', event: 'heartbeat', time: Date.now(), rss: currentRss(), state: this.jobs.state(), queued: this.jobs.queued };
  }

  /** A TCP client sees the queue's shape, and the prompts of its own jobs only. */
  private status(viewer: Session): StatusInfo {
    const jobs = this.jobs.status(this.remote ? viewer : undefined);
    return {
      version: VERSION,
      pid: process.pid,
      state: jobs.state,
      loaded: jobs.loaded,
      jobs: jobs.jobs,
      rss: currentRss(),
      eps: jobs.eps,
      ...(jobs.model !== undefined ? { model: jobs.model } : {}),
      memory: this.settings?.memory ?? 'auto',
      memoryBudget: this.jobs.memoryBudget(),
      uptime: (Date.now() - this.started) / 1000,
    };
  }

  log(level: LogLevel, message: string, jobId?: string): void {
    const s = this.activeSession;
    if (s?.hello) s.send({ type: 'event', event: 'log', level, message: this.paths.forClient(message), ...(jobId ? { jobId } : {}) });
    if (!s?.hello || this.opts.echoLogs) process.stderr.write(`[${new Date().toISOString()}] ${level}: ${oneLine(message)}\n`);
  }
}

/** A message as one log line: text from the network can't start a forged line of its own. */
export function oneLine(message: string): string {
  // eslint-disable-next-line no-control-regex -- control characters are what it escapes
  return message.replace(/[\u0000-\u001f\u007f\u2028\u2029]/g, (c) => (c === '\t' ? c : `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`));
}
