// The client of the inference server: starts it as a child process (or connects to a remote one),
// does the handshake, offers one method per request, and survives the server dying. One session
// (serverSession.ts) correlates requests and replies and dispatches events over one link
// (serverLink.ts). No vscode import: the extension wraps it, scripts and tests use it directly.
//
// Lifecycle: nothing runs until the first request. If the server stops unexpectedly (killed,
// native crash, out of memory, or hung and killed by the heartbeat watchdog), every job it held is
// reported failed (a queued one marked notStarted, for its owner to submit again, unless the running
// job was still loading the model), and the next request starts a new one after a back-off (1 s, 2 s, 4 s … capped;
// reset once a server has run healthily for a while). Files are never touched here: the server
// writes each PNG atomically, so a crash leaves either a whole image or none.

import type { ComponentName, ModelSpec } from '../shared/api';
import type { DownloadRequest, DownloadResult, FoundModel, MachineInfo, ModelCheckReport } from '../shared/models';
import type { DoneEvent, DownloadEvent, Event, HelloReply, JobEvent, JobRequest, ServerSettings, StatusInfo } from '../shared/protocol';
import { PROTOCOL_VERSION } from '../shared/protocol';
import type { ModelSearch } from '../shared/protocolModels';
import { ServerError } from './serverErrors';
import { LinkEnd, LinkOptions, Logger } from './serverLink';
import { Session } from './serverSession';

export interface ServerClientOptions extends LinkOptions {
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
