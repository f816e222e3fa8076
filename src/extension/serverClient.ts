// The client of the inference server: starts it as a child process (or connects to a remote one),
// does the handshake, correlates requests and replies, dispatches job events, and survives the
// server dying. No vscode import: the extension wraps it, scripts and tests use it directly.
//
// Lifecycle: nothing runs until the first request. If the server stops unexpectedly (killed,
// native crash, out of memory, or hung and killed by the heartbeat watchdog), every job it held is
// reported failed, and the next request starts a new one after a back-off (1 s, 2 s, 4 s … capped;
// reset once a server has run healthily for a while). Files are never touched here: the server
// writes each PNG atomically, so a crash leaves either a whole image or none.

import { ChildProcess, spawn } from 'node:child_process';
import * as net from 'node:net';
import * as path from 'node:path';
import type { Readable } from 'node:stream';
import { CancelledError } from '../shared/api';
import type { ComponentName, ModelSpec } from '../shared/api';
import {
  DoneEvent,
  DownloadEvent,
  encodeMessage,
  ErrorCode,
  Event,
  HelloReply,
  isDownloadEvent,
  isJobEvent,
  isValidationError,
  JobEvent,
  JobRequest,
  LineSplitter,
  ModelSearch,
  parseServerMessage,
  PROTOCOL_VERSION,
  REPLY_TYPE,
  ReplyFor,
  Request,
  RequestBody,
  RequestType,
  ServerMessage,
  ServerSettings,
  StatusInfo,
} from '../shared/protocol';
import type { DownloadErrorCode, DownloadRequest, DownloadResult, FoundModel, MachineInfo, ModelCheckReport } from '../shared/models';

export interface Logger {
  debug(message: string): void;
  info(message: string): void;
  warn(message: string): void;
  error(message: string): void;
}

export interface RemoteServer {
  host: string;
  port: number;
  /** Printed by `majicflux serve`. */
  token: string;
}

export interface ServerClientOptions {
  /** dist/server.js; default: next to this bundle (dist/extension.js and dist/server.js share a folder). */
  serverPath?: string;
  /** Node to run it with; default process.execPath (in VS Code, its Electron, run as node). */
  nodePath?: string;
  /** Extra environment for the server process. */
  env?: Record<string, string>;
  cwd?: string;
  /** Connect to a `majicflux serve` server instead of starting one. */
  remote?: RemoteServer;
  /** Sent with hello, so a restarted server gets them too; change with configure(). */
  settings?: ServerSettings;
  logger?: Logger;
  clientName?: string;
  /** For quick requests (generate, cancel, status …); load/unload have none. Default 30 s. */
  requestTimeoutMs?: number;
  /** Wait for the hello reply (a cold start loads onnxruntime). Default 60 s. */
  helloTimeoutMs?: number;
  /** Heartbeat interval asked of the server. Default 5 s. */
  heartbeatMs?: number;
  /** Silence after which the server counts as hung and is killed. Default 120 s. */
  heartbeatTimeoutMs?: number;
  /**
   * A running job that sends no event for this long is cancelled and fails (heartbeats keep
   * coming from a server whose job is stuck in a read). Default 30 min: loading and converting a
   * large DiT, or one step on a slow CPU, takes minutes. 0: off.
   */
  jobStallTimeoutMs?: number;
  backoff?: { initialMs?: number; maxMs?: number; healthyMs?: number };
  /** Server events not about a job (log, heartbeat) and job events, for status displays. */
  onEvent?: (e: Event) => void;
  /** The server (or connection) ended; `unexpected` unless dispose()/restart() asked for it. */
  onDidStop?: (info: { unexpected: boolean; reason: string }) => void;
}

/** An error reply from the server, or the server not answering. */
export class ServerError extends Error {
  constructor(
    readonly code: ErrorCode | 'timeout' | 'stopped' | 'disposed',
    message: string,
    readonly detail?: string,
  ) {
    super(message);
    this.name = 'ServerError';
  }
}

export class JobFailedError extends Error {
  constructor(
    readonly jobId: string,
    message: string,
    readonly detail?: string,
  ) {
    super(message);
    this.name = 'JobFailedError';
  }
}

/**
 * A download that did not finish: the server's `download-failed` (its code and message, for the
 * user), or `stopped` when the server went away mid-download. Partial files stay on disk either
 * way, and the next download of the same model resumes them.
 */
export class DownloadFailedError extends Error {
  constructor(
    readonly downloadId: string,
    readonly code: DownloadErrorCode | 'stopped',
    message: string,
    readonly detail?: string,
  ) {
    super(message);
    this.name = 'DownloadFailedError';
  }
}

export interface DownloadHandle {
  downloadId: string;
  /** Resolves with the files and the model spec; rejects with DownloadFailedError (code `cancelled` after cancel()) or ServerError. */
  done: Promise<DownloadResult>;
}

export interface CheckOptions {
  /** Default: the server's configured model. */
  model?: ModelSpec;
  /** Read every file for its sha256 (minutes for FLUX.1-dev): no time limit. */
  verify?: boolean;
  width?: number;
  height?: number;
}

export interface GenerateHandle {
  jobId: string;
  /** Jobs ahead of this one when it was queued. */
  position: number;
  /** Resolves with the done event; rejects with JobFailedError, CancelledError or ServerError. */
  done: Promise<DoneEvent>;
}

const capitalize = (s: string) => s.charAt(0).toUpperCase() + s.slice(1);

const NULL_LOGGER: Logger = { debug() {}, info() {}, warn() {}, error() {} };

// =============================================================================================
// Links: a running local child or a TCP connection

interface LinkEnd {
  code: number | null;
  signal: NodeJS.Signals | null;
  error?: Error;
}

interface Link {
  readonly remote: boolean;
  readonly pid?: number;
  send(line: string): void;
  /** End our side: the server sees end of input and shuts down (local) or drops us (remote). */
  end(): void;
  kill(): void;
  readonly ended: Promise<LinkEnd>;
  /** Last lines of the server's stderr, for error details. */
  recentOutput(): string;
}

function forEachLine(stream: Readable, onLine: (line: string) => void): void {
  const splitter = new LineSplitter(onLine, () => undefined, 1 << 20);
  stream.on('data', (c: Buffer) => splitter.push(c));
  stream.on('end', () => splitter.end());
  stream.on('error', () => undefined);
}

function spawnServer(loc: Pick<ServerClientOptions, 'serverPath' | 'nodePath' | 'env' | 'cwd'>, onData: (chunk: Buffer) => void, logger: Logger): Link {
  const script = loc.serverPath ?? path.join(__dirname, 'server.js');
  const child: ChildProcess = spawn(loc.nodePath ?? process.execPath, [script, '--fd', '3'], {
    // fd 3 carries the protocol; stdout/stderr are diagnostics only (see server.ts for why).
    stdio: ['ignore', 'pipe', 'pipe', 'pipe'],
    env: { ...process.env, ...loc.env, ELECTRON_RUN_AS_NODE: '1' },
    cwd: loc.cwd,
    windowsHide: true,
  });
  // All four are null when the spawn itself failed (then 'error' follows).
  const channel = child.stdio[3] as net.Socket | null;
  const tail: string[] = [];
  const onOutput = (line: string) => {
    tail.push(line);
    if (tail.length > 30) tail.shift();
    const level = /\] (error|warn|info|debug): /.exec(line)?.[1] as keyof Logger | undefined;
    logger[level ?? 'info'](`server: ${line}`);
  };
  if (child.stdout) forEachLine(child.stdout, onOutput);
  if (child.stderr) forEachLine(child.stderr, onOutput);
  channel?.on('data', onData);
  channel?.on('error', (err) => logger.debug(`server channel: ${err.message}`));
  const ended = new Promise<LinkEnd>((resolve) => {
    child.once('error', (error) => resolve({ code: null, signal: null, error }));
    child.once('close', (code, signal) => resolve({ code, signal }));
  });
  return {
    remote: false,
    pid: child.pid,
    send: (line) => void channel?.write(line),
    end: () => void channel?.end(),
    kill: () => void child.kill('SIGKILL'),
    ended,
    recentOutput: () => tail.join('\n'),
  };
}

function connectServer(loc: RemoteServer, onData: (chunk: Buffer) => void): Link {
  const socket = net.connect({ host: loc.host, port: loc.port });
  socket.setNoDelay(true);
  socket.on('data', onData);
  let error: Error | undefined;
  socket.on('error', (err) => (error = err));
  const ended = new Promise<LinkEnd>((resolve) => socket.once('close', () => resolve({ code: null, signal: null, error })));
  return {
    remote: true,
    send: (line) => void socket.write(line),
    end: () => void socket.end(),
    kill: () => void socket.destroy(),
    ended,
    recentOutput: () => '',
  };
}

// =============================================================================================
// Session: one link, from hello to its end

interface Pending {
  type: RequestType;
  resolve(reply: ServerMessage): void;
  reject(err: Error): void;
}

interface TrackedJob {
  state: 'queued' | 'running';
  /** When the server last sent an event of this job. */
  progressAt?: number;
  /** Set when the stall watchdog cancelled it: the job then fails with this message. */
  stalled?: string;
  /** The caller's name for the job (the extension's job-N), used in messages instead of the server's id. */
  label?: string;
  onEvent?: (e: JobEvent) => void;
  resolve(e: DoneEvent): void;
  reject(err: Error): void;
}

interface TrackedDownload {
  onEvent?: (e: DownloadEvent) => void;
  resolve(r: DownloadResult): void;
  reject(err: Error): void;
}

class Session {
  private nextId = 1;
  private readonly pending = new Map<number, Pending>();
  readonly jobs = new Map<string, TrackedJob>();
  readonly downloads = new Map<string, TrackedDownload>();
  readonly link: Link;
  hello?: HelloReply;
  startedAt = Date.now();
  lastHeard = Date.now();
  /** Set when we end it on purpose (dispose, restart) or kill it (hung). */
  stopReason?: { expected: boolean; text: string };
  private watchdog?: NodeJS.Timeout;

  constructor(
    opts: ServerClientOptions,
    private readonly logger: Logger,
    private readonly onServerEvent: (e: Event) => void,
  ) {
    const splitter = new LineSplitter(
      (line) => this.onLine(line),
      (bytes) => this.logger.warn(`ignored a ${bytes}+ byte line from the server`),
    );
    const onData = (chunk: Buffer) => splitter.push(chunk);
    this.link = opts.remote ? connectServer(opts.remote, onData) : spawnServer(opts, onData, logger);
  }

  request<B extends RequestBody, T extends RequestType = B['type']>(body: B, timeoutMs: number, onReply?: (r: ReplyFor[T]) => void): Promise<ReplyFor[T]> {
    const id = this.nextId++;
    return new Promise<ReplyFor[T]>((resolve, reject) => {
      const timer =
        timeoutMs > 0
          ? setTimeout(() => {
              this.pending.delete(id);
              reject(new ServerError('timeout', `The MajicFLUX server did not answer "${body.type}" within ${Math.round(timeoutMs / 1000)} s.`));
            }, timeoutMs)
          : undefined;
      this.pending.set(id, {
        type: body.type,
        resolve: (reply) => {
          clearTimeout(timer);
          // Runs synchronously with the reply's arrival, before any later line is read: a job's
          // listener is in place before its first event.
          onReply?.(reply as ReplyFor[T]);
          resolve(reply as ReplyFor[T]);
        },
        reject: (err) => {
          clearTimeout(timer);
          reject(err);
        },
      });
      this.link.send(encodeMessage({ ...body, id } as Request));
    });
  }

  track(jobId: string, onEvent?: (e: JobEvent) => void, label?: string): Promise<DoneEvent> {
    const done = new Promise<DoneEvent>((resolve, reject) => this.jobs.set(jobId, { state: 'queued', label, onEvent, resolve, reject }));
    done.catch(() => undefined); // a caller that only listens to events must not cause an unhandled rejection
    return done;
  }

  trackDownload(downloadId: string, onEvent?: (e: DownloadEvent) => void): Promise<DownloadResult> {
    const done = new Promise<DownloadResult>((resolve, reject) => this.downloads.set(downloadId, { onEvent, resolve, reject }));
    done.catch(() => undefined);
    return done;
  }

  startWatchdog(timeoutMs: number, onHung: () => void, stallMs = 0, onStall: (jobId: string, message: string) => void = () => undefined): void {
    if (timeoutMs <= 0 && stallMs <= 0) return;
    this.watchdog = setInterval(() => {
      const now = Date.now();
      if (timeoutMs > 0 && now - this.lastHeard > timeoutMs) onHung();
      if (stallMs <= 0) return;
      for (const [jobId, job] of this.jobs) {
        if (job.state !== 'running' || job.stalled || now - (job.progressAt ?? now) <= stallMs) continue;
        job.stalled = `Job ${jobId} made no progress for ${formatSpan(now - job.progressAt!)} (the server may be stuck reading a file) and was cancelled.`;
        onStall(jobId, job.stalled);
      }
    }, Math.min(1000, Math.max(timeoutMs, stallMs) / 4));
    this.watchdog.unref();
  }

  /** The link ended: nothing more will arrive. Jobs still open end as `cancelled` if we stopped it on purpose, else `failed`. */
  close(requestError: Error, jobMessage: (jobId: string, state: TrackedJob['state']) => string, cancelled: boolean, downloadMessage: (downloadId: string) => string): void {
    clearInterval(this.watchdog);
    for (const p of this.pending.values()) p.reject(requestError);
    this.pending.clear();
    for (const [downloadId, d] of this.downloads) {
      const message = downloadMessage(downloadId);
      const detail = cancelled ? undefined : this.link.recentOutput() || undefined;
      const e: DownloadEvent = { type: 'event', event: 'download-failed', downloadId, code: cancelled ? 'cancelled' : 'network', message, ...(detail ? { detail } : {}) };
      try {
        d.onEvent?.(e);
      } catch (err) {
        this.logger.error(`download listener: ${(err as Error).message}`);
      }
      d.reject(new DownloadFailedError(downloadId, cancelled ? 'cancelled' : 'stopped', message, detail));
    }
    this.downloads.clear();
    for (const [jobId, job] of this.jobs) {
      if (cancelled) {
        this.emit(job, { type: 'event', event: 'cancelled', jobId });
        job.reject(new CancelledError());
        continue;
      }
      const message = jobMessage(job.label ?? jobId, job.state);
      const detail = this.link.recentOutput() || undefined;
      this.emit(job, { type: 'event', event: 'failed', jobId, message, ...(detail ? { detail } : {}) });
      job.reject(new JobFailedError(jobId, message, detail));
    }
    this.jobs.clear();
  }

  private onLine(line: string): void {
    this.lastHeard = Date.now();
    const msg = parseServerMessage(line);
    if (isValidationError(msg)) {
      this.logger.warn(`ignored a malformed message from the server: ${msg.error}`);
      return;
    }
    if (msg.type === 'event') return this.onEvent(msg);
    if (msg.id === null) {
      if (msg.type === 'error') this.logger.warn(`server error: ${msg.message}`);
      return;
    }
    const pending = this.pending.get(msg.id);
    if (!pending) return this.logger.debug(`reply to an unknown or timed-out request ${msg.id} (${msg.type})`);
    this.pending.delete(msg.id);
    if (msg.type === 'error') pending.reject(new ServerError(msg.code, msg.message, msg.detail));
    else if (msg.type !== REPLY_TYPE[pending.type]) pending.reject(new ServerError('bad-request', `the server answered "${pending.type}" with "${msg.type}"`));
    else pending.resolve(msg);
  }

  private onEvent(e: Event): void {
    try {
      this.onServerEvent(e);
    } catch (err) {
      this.logger.error(`event listener: ${(err as Error).message}`);
    }
    if (e.event === 'log') {
      const text = `server${e.jobId ? ` ${e.jobId}` : ''}: ${e.message}`;
      if (e.level === 'trace' || e.level === 'debug') this.logger.debug(text);
      else this.logger[e.level](text);
      return;
    }
    if (isDownloadEvent(e)) return this.onDownloadEvent(e);
    if (!isJobEvent(e)) return;
    const job = this.jobs.get(e.jobId);
    if (!job) return this.logger.debug(`event for an unknown job ${e.jobId} (${e.event})`);
    job.progressAt = Date.now();
    this.emit(job, e);
    switch (e.event) {
      case 'started':
        job.state = 'running';
        break;
      case 'done':
        this.jobs.delete(e.jobId);
        job.resolve(e);
        break;
      case 'failed':
        this.jobs.delete(e.jobId);
        job.reject(new JobFailedError(e.jobId, e.message, e.detail));
        break;
      case 'cancelled':
        this.jobs.delete(e.jobId);
        job.reject(job.stalled ? new JobFailedError(e.jobId, job.stalled) : new CancelledError());
        break;
    }
  }

  private onDownloadEvent(e: DownloadEvent): void {
    const d = this.downloads.get(e.downloadId);
    if (!d) return this.logger.debug(`event for an unknown download ${e.downloadId} (${e.event})`);
    try {
      d.onEvent?.(e);
    } catch (err) {
      this.logger.error(`download listener: ${(err as Error).message}`);
    }
    if (e.event === 'download-done') {
      this.downloads.delete(e.downloadId);
      d.resolve(e.result);
    } else if (e.event === 'download-failed') {
      this.downloads.delete(e.downloadId);
      d.reject(new DownloadFailedError(e.downloadId, e.code, e.message, e.detail));
    }
  }

  private emit(job: TrackedJob, e: JobEvent): void {
    try {
      job.onEvent?.(e);
    } catch (err) {
      this.logger.error(`job listener: ${(err as Error).message}`);
    }
  }
}

// =============================================================================================
// The client

export class ServerClient {
  private session?: Session;
  private starting?: Promise<Session>;
  private disposed = false;
  private failures = 0;
  private retryAt = 0;
  private settings?: ServerSettings;
  private readonly logger: Logger;

  constructor(private readonly opts: ServerClientOptions = {}) {
    this.logger = opts.logger ?? NULL_LOGGER;
    this.settings = opts.settings;
  }

  /** The local server's process id while one runs. */
  get pid(): number | undefined {
    return this.session?.link.pid;
  }

  get isRunning(): boolean {
    return this.session !== undefined;
  }

  /** Starts (or connects to) the server now rather than at the first request. */
  async start(): Promise<HelloReply> {
    return (await this.connect()).hello!;
  }

  /** `label`: the caller's name for the job, so its messages and the caller's log name the same job. */
  async generate(job: JobRequest, onEvent?: (e: JobEvent) => void, label?: string): Promise<GenerateHandle> {
    const s = await this.connect();
    let done!: Promise<DoneEvent>;
    const reply = await s.request({ type: 'generate', job }, this.timeout(), (r) => (done = s.track(r.jobId, onEvent, label)));
    return { jobId: reply.jobId, position: reply.position, done };
  }

  /** Finds models on the server's disks: the configured one, the folders given, the hub caches. */
  async models(search: ModelSearch = {}, timeoutMs = 5 * 60_000): Promise<{ found: FoundModel[]; machine: MachineInfo }> {
    const s = await this.connect();
    const r = await s.request({ type: 'models', search }, timeoutMs);
    return { found: r.found, machine: r.machine };
  }

  /**
   * Checks a model's files and what fits this machine. Headers only: seconds even for FLUX.1-dev
   * (a long limit all the same, for slow disks); `verify` reads every file, so it has no limit.
   */
  async check(opts: CheckOptions = {}, timeoutMs = opts.verify ? 0 : 10 * 60_000): Promise<ModelCheckReport> {
    const s = await this.connect();
    const body = {
      type: 'check' as const,
      ...(opts.model ? { model: opts.model } : {}),
      ...(opts.verify ? { verify: true } : {}),
      ...(opts.width ? { width: opts.width } : {}),
      ...(opts.height ? { height: opts.height } : {}),
    };
    return (await s.request(body, timeoutMs)).report;
  }

  /**
   * Starts downloading a registry model. Progress arrives through `onEvent`; `done` settles with the
   * final event. cancel(downloadId) stops it (partial files are kept for a later resume). If the
   * server dies meanwhile, `done` rejects with DownloadFailedError code `stopped`.
   */
  async download(request: DownloadRequest, onEvent?: (e: DownloadEvent) => void): Promise<DownloadHandle> {
    const s = await this.connect();
    let done!: Promise<DownloadResult>;
    const reply = await s.request({ type: 'download', download: request }, this.timeout(), (r) => (done = s.trackDownload(r.downloadId, onEvent)));
    return { downloadId: reply.downloadId, done };
  }

  /** Downloads running on the current server. */
  get activeDownloads(): string[] {
    return [...(this.session?.downloads.keys() ?? [])];
  }

  /**
   * Cancels a queued job at once, a running one at its next step (its `done` then rejects with
   * CancelledError), or a download (its `done` then rejects with code `cancelled`). 'gone': no such
   * job or download any more (finished, or its server stopped).
   */
  async cancel(jobId: string): Promise<'cancelled' | 'cancelling' | 'gone'> {
    const s = this.session;
    if (!s || (!s.jobs.has(jobId) && !s.downloads.has(jobId))) return 'gone';
    try {
      return (await s.request({ type: 'cancel', jobId }, this.timeout())).state;
    } catch (err) {
      if (err instanceof ServerError && err.code === 'unknown-job') return 'gone';
      throw err;
    }
  }

  async status(): Promise<StatusInfo> {
    const s = await this.connect();
    return (await s.request({ type: 'status' }, this.timeout())).status;
  }

  /** New settings: sent now if a server runs, and with every later hello. */
  async configure(settings: ServerSettings): Promise<void> {
    this.settings = settings;
    const s = this.session;
    if (s) await s.request({ type: 'configure', settings }, this.timeout());
  }

  async load(components?: ComponentName[]): Promise<ComponentName[]> {
    const s = await this.connect();
    return (await s.request({ type: 'load', ...(components ? { components } : {}) }, 0)).components;
  }

  async unload(components?: ComponentName[]): Promise<ComponentName[]> {
    const s = this.session;
    if (!s) return [];
    return (await s.request({ type: 'unload', ...(components ? { components } : {}) }, 0)).components;
  }

  async ping(): Promise<number> {
    const s = await this.connect();
    const t0 = Date.now();
    await s.request({ type: 'ping' }, this.timeout());
    return Date.now() - t0;
  }

  /** Stops the server (its jobs are cancelled) and starts a fresh one, with no back-off. */
  async restart(): Promise<HelloReply> {
    const s = this.session ?? (await this.starting?.catch(() => undefined));
    if (s) await this.stop(s, 'restart requested');
    this.failures = 0;
    this.retryAt = 0;
    return this.start();
  }

  /** Shuts the server down (jobs cancelled, memory released). The client cannot be used afterwards. */
  async dispose(): Promise<void> {
    if (this.disposed) return;
    this.disposed = true;
    const s = this.session ?? (await this.starting?.catch(() => undefined));
    if (s) await this.stop(s, 'the client was disposed');
  }

  // ---- internals ----------------------------------------------------------------------------

  private timeout(): number {
    return this.opts.requestTimeoutMs ?? 30_000;
  }

  private connect(): Promise<Session> {
    if (this.disposed) return Promise.reject(new ServerError('disposed', 'The MajicFLUX server client was disposed.'));
    if (this.session) return Promise.resolve(this.session);
    this.starting ??= this.open().finally(() => (this.starting = undefined));
    return this.starting;
  }

  private async open(): Promise<Session> {
    const wait = this.retryAt - Date.now();
    if (wait > 0) {
      this.logger.info(`starting the MajicFLUX server again in ${(wait / 1000).toFixed(1)} s`);
      await new Promise((r) => setTimeout(r, wait));
    }
    const s = new Session(this.opts, this.logger, (e) => this.opts.onEvent?.(e));
    const what = this.describe(s);
    this.logger.info(`starting ${what}`);
    let ready = false;
    void s.link.ended.then((end) => this.onEnded(s, end, ready));
    const token = this.opts.remote ? { token: this.opts.remote.token } : {};
    try {
      const hello = await s.request(
        {
          type: 'hello',
          protocol: PROTOCOL_VERSION,
          client: this.opts.clientName ?? 'majicflux-client',
          ...token,
          ...(this.settings ? { settings: this.settings } : {}),
          heartbeatMs: this.opts.heartbeatMs ?? 5000,
        },
        this.opts.helloTimeoutMs ?? 60_000,
      );
      if (hello.protocol !== PROTOCOL_VERSION) {
        throw new ServerError('protocol-mismatch', `The MajicFLUX server speaks protocol ${hello.protocol} (version ${hello.version}) but this client speaks ${PROTOCOL_VERSION}; use matching versions.`);
      }
      if (this.disposed) throw new ServerError('disposed', 'The MajicFLUX server client was disposed.');
      s.hello = hello;
      s.startedAt = Date.now();
      ready = true;
      s.startWatchdog(this.opts.heartbeatTimeoutMs ?? 120_000, () => {
        const seconds = Math.round((Date.now() - s.lastHeard) / 1000);
        if (s.stopReason) return;
        s.stopReason = { expected: false, text: `stopped responding (nothing heard for ${seconds} s) and was stopped` };
        this.logger.error(`the MajicFLUX server ${s.stopReason.text}`);
        s.link.kill();
      }, this.opts.jobStallTimeoutMs ?? 30 * 60_000, (jobId, message) => {
        this.logger.error(message);
        s.request({ type: 'cancel', jobId }, this.timeout()).catch((err: Error) => this.logger.warn(`cancelling stalled ${jobId}: ${err.message}`));
      });
      this.session = s;
      this.logger.info(`connected to ${what}: MajicFLUX ${hello.version}, pid ${hello.pid}, ${hello.platform}`);
      return s;
    } catch (err) {
      s.stopReason ??= { expected: true, text: 'handshake failed' };
      s.link.kill();
      this.noteFailure(undefined);
      const e = err instanceof Error ? err : new Error(String(err));
      if (e instanceof ServerError && e.code === 'unauthorized') throw new ServerError('unauthorized', `${capitalize(what)} rejected this client: ${e.message}. Check the token.`, e.detail);
      throw e instanceof ServerError ? e : new ServerError('stopped', `Could not start ${what}: ${e.message}`);
    }
  }

  private describe(s: Session): string {
    return this.opts.remote ? `the MajicFLUX server at ${this.opts.remote.host}:${this.opts.remote.port}` : `the MajicFLUX server (${s.link.pid ? `pid ${s.link.pid}` : 'not started'})`;
  }

  private onEnded(s: Session, end: LinkEnd, wasReady: boolean): void {
    if (this.session === s) this.session = undefined;
    const remote = s.link.remote;
    const how = end.error
      ? end.error.message
      : end.signal
        ? `signal ${end.signal}`
        : end.code !== null
          ? `exit code ${end.code}`
          : 'connection closed';
    const unexpected = !s.stopReason?.expected;
    if (unexpected && wasReady) this.noteFailure(s.startedAt);
    const restart = remote ? 'it will reconnect on the next request' : 'it will restart on the next request';
    let sentence: (doing: string) => string;
    if (s.stopReason && !s.stopReason.expected) sentence = (doing) => `The MajicFLUX server ${s.stopReason!.text} while ${doing}; ${restart}.`;
    else if (s.stopReason) sentence = (doing) => `The MajicFLUX server was shut down (${s.stopReason!.text}) while ${doing}.`;
    else if (remote) sentence = (doing) => `The connection to the MajicFLUX server at ${this.locationText()} was lost (${how}) while ${doing}; ${restart}.`;
    else sentence = (doing) => `The MajicFLUX server stopped unexpectedly (${how}) while ${doing}; ${restart}.`;
    const notStarted = remote
      ? `Could not connect to the MajicFLUX server at ${this.locationText()} (${how}); it is tried again on the next request.`
      : `The MajicFLUX server could not start (${how}); it is tried again on the next request. See the log for its output.`;
    const requestError = new ServerError('stopped', wasReady || s.stopReason ? sentence('answering a request') : notStarted, s.link.recentOutput() || undefined);
    if (unexpected) this.logger.error(requestError.message);
    else this.logger.info(`the MajicFLUX server stopped (${s.stopReason?.text})`);
    const keep = 'The partial files are kept: download the model again to resume where it stopped.';
    s.close(
      requestError,
      (jobId, state) => sentence(state === 'running' ? `running job ${jobId}` : `job ${jobId} was waiting in the queue`),
      !unexpected,
      (downloadId) => `${sentence(`downloading (${downloadId})`)} ${keep}`,
    );
    this.opts.onDidStop?.({ unexpected, reason: s.stopReason?.text ?? how });
  }

  private locationText(): string {
    return this.opts.remote ? `${this.opts.remote.host}:${this.opts.remote.port}` : 'local';
  }

  /** Another failure: the next start waits 1 s, 2 s, 4 s … (capped); a long healthy run resets it. */
  private noteFailure(startedAt: number | undefined): void {
    const { initialMs = 1000, maxMs = 30_000, healthyMs = 60_000 } = this.opts.backoff ?? {};
    if (startedAt !== undefined && Date.now() - startedAt >= healthyMs) this.failures = 0;
    this.failures++;
    this.retryAt = Date.now() + Math.min(maxMs, initialMs * 2 ** (this.failures - 1));
  }

  /** Asks the server to shut down (it cancels its jobs and exits); kills it if it will not. */
  private async stop(s: Session, reason: string, graceMs = 10_000): Promise<void> {
    s.stopReason = { expected: true, text: reason };
    const ended = (ms: number) => Promise.race([s.link.ended.then(() => true), new Promise<boolean>((r) => setTimeout(() => r(false), ms).unref())]);
    let asked = false;
    try {
      await s.request({ type: 'shutdown' }, Math.min(graceMs, 5000));
      asked = true;
    } catch {
      // already gone, or cannot answer: ending the link (then killing) covers both
    }
    if (asked && (await ended(graceMs))) return;
    s.link.end();
    if (await ended(2000)) return;
    s.link.kill();
    await s.link.ended;
  }
}

function formatSpan(ms: number): string {
  const s = Math.round(ms / 1000);
  return s < 120 ? `${s} s` : `${Math.round(s / 60)} min`;
}
