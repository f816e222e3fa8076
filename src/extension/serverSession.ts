// One session with the inference server: a link, from hello to its end. Numbers requests and
// matches their replies, routes each event to the job or download it belongs to, watches for a
// hung server and stalled jobs, and, when the link ends, settles everything still open.

import { CancelledError } from '../shared/api';
import type { DownloadResult } from '../shared/models';
import { encodeMessage, LineSplitter } from '../shared/ndjson';
import {
  DoneEvent,
  DownloadEvent,
  Event,
  HelloReply,
  isDownloadEvent,
  isJobEvent,
  isValidationError,
  JobEvent,
  parseServerMessage,
  REPLY_TYPE,
  ReplyFor,
  Request,
  RequestBody,
  RequestType,
  ServerMessage,
} from '../shared/protocol';
import { DownloadFailedError, JobFailedError, ServerError } from './serverErrors';
import { connectServer, Link, LinkOptions, Logger, spawnServer } from './serverLink';

interface Pending {
  type: RequestType;
  resolve(reply: ServerMessage): void;
  reject(err: Error): void;
}

export interface TrackedJob {
  state: 'queued' | 'running';
  /** It has sent a denoising step: past loading the DiT. */
  stepped?: boolean;
  /** A model part is loading now (a `loading` event not yet followed by `loaded`): the VAE loads after the steps. */
  loading?: boolean;
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

export class Session {
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
    opts: LinkOptions,
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

  /** The link ended: nothing more will arrive. Jobs still open end as `cancelled` if we stopped it on purpose, else `failed` (a queued one's rejection marked notStarted). */
  close(requestError: Error, jobMessage: (jobId: string, state: TrackedJob['state']) => string, cancelled: boolean, downloadMessage: (downloadId: string) => string): void {
    clearInterval(this.watchdog);
    // A crash while a job was loading the model (out of memory, most often) would come again for
    // the queued jobs: they fail with it. One later in a job, or with none running, may not.
    const resubmittable = !cancelled && ![...this.jobs.values()].some((j) => j.state === 'running' && (!j.stepped || j.loading));
    for (const p of this.pending.values()) {
      // A generate the server had not answered: stopped on purpose, it is cancelled as the queued ones are.
      if (p.type === 'generate' && cancelled) p.reject(new CancelledError());
      else if (p.type === 'generate' && resubmittable && requestError instanceof ServerError) p.reject(new ServerError(requestError.code, requestError.message, requestError.detail, true));
      else p.reject(requestError);
    }
    this.pending.clear();
    for (const [downloadId, d] of this.downloads) {
      const message = downloadMessage(downloadId);
      const detail = cancelled ? undefined : this.link.recentOutput() || undefined;
      const e: DownloadEvent = { type: 'event', event: 'download-failed', downloadId, code: cancelled ? 'cancelled' : 'network', message, ...(detail ? { detail } : {}) };
      this.notify('download', () => d.onEvent?.(e));
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
      // A job still queued that may be submitted again gets no failed event (its rejection says so).
      if (job.state === 'running' || !resubmittable) this.emit(job, { type: 'event', event: 'failed', jobId, message, ...(detail ? { detail } : {}) });
      job.reject(new JobFailedError(jobId, message, detail, job.state === 'queued' && resubmittable));
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
    this.notify('event', () => this.onServerEvent(e));
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
      case 'step':
        job.stepped = true;
        job.loading = false;
        break;
      case 'loading':
        job.loading = e.phase !== 'loaded';
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
    this.notify('download', () => d.onEvent?.(e));
    if (e.event === 'download-done') {
      this.downloads.delete(e.downloadId);
      d.resolve(e.result);
    } else if (e.event === 'download-failed') {
      this.downloads.delete(e.downloadId);
      d.reject(new DownloadFailedError(e.downloadId, e.code, e.message, e.detail));
    }
  }

  private emit(job: TrackedJob, e: JobEvent): void {
    this.notify('job', () => job.onEvent?.(e));
  }

  /** A listener that throws is logged: it must not stop the other listeners or the session's bookkeeping. */
  private notify(listener: 'event' | 'job' | 'download', call: () => void): void {
    try {
      call();
    } catch (err) {
      this.logger.error(`${listener} listener: ${(err as Error).message}`);
    }
  }
}

function formatSpan(ms: number): string {
  const s = Math.round(ms / 1000);
  return s < 120 ? `${s} s` : `${Math.round(s / 60)} min`;
}
