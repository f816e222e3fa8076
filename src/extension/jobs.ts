// The extension's view of generation jobs: what was asked, where it stands, what came out. Every
// entry point (palette, selection, .flux CodeLens, panel, re-run) submits here; the status bar,
// progress notifications, the panel and CodeLens listen. Pure (no vscode), driven by the server's
// events through an InferenceClient.

import type { ComponentName, LoadPhase, Stage, StageTiming } from '../shared/api';
import type { ImageMetadata } from '../shared/params';
import type { Event as ServerEvent, JobRequest, StatusInfo } from '../shared/protocol';

/** What src/extension needs from serverClient.ts. */
export interface InferenceClient {
  generate(job: JobRequest, onEvent: (e: ServerEvent) => void, label?: string): { jobId: string; done: Promise<unknown> } | Promise<{ jobId: string; done: Promise<unknown> }>;
  cancel(jobId: string): unknown;
  status(): Promise<StatusInfo>;
}

export type JobState = 'pending' | 'queued' | 'running' | 'done' | 'failed' | 'cancelled';

export interface JobOrigin {
  kind: 'palette' | 'selection' | 'flux' | 'panel' | 'rerun' | 'walkthrough';
  /** The .flux file (absolute path) and the block's key (see blockKey). */
  fluxFile?: string;
  blockKey?: string;
  /**
   * The file the run was started from (the selection's document, the re-run PNG, the panel's input
   * image): its workspace folder is where a relative output folder goes (output.ts workspaceFolderFor).
   */
  document?: string;
  /** A re-run: the LoRAs as the image recorded them, to say when a file found by that name is another (generation.ts). */
  recordedLoras?: { name: string; hash: string }[];
}

export interface Job {
  id: string;
  serverJobId?: string;
  request: JobRequest;
  origin: JobOrigin;
  state: JobState;
  stage?: Stage;
  step?: number;
  steps?: number;
  /** A model part being loaded inside the current stage (the server's `loading` events); gone once loaded. */
  loading?: { component: ComponentName; phase: Exclude<LoadPhase, 'loaded'>; fraction?: number };
  preview?: { width: number; height: number; pngBase64: string };
  result?: { file: string; metadata: ImageMetadata; stages: StageTiming[]; notes: string[]; warnings?: string[]; seconds?: number };
  /** Where the image is wanted on this machine (differs from request.output for a remote server). */
  target?: string;
  /** `code` "model": the configured model cannot be used (the server's failed event). */
  error?: { message: string; detail?: string; code?: 'model' };
  created: number;
  finished?: number;
  /** Times the server stopped while this job waited in its queue and it was submitted again. */
  resubmitted?: number;
}

export const isActive = (j: Job) => j.state === 'pending' || j.state === 'queued' || j.state === 'running';

type Listener<T> = (e: T) => void;

export class Emitter<T> {
  private listeners = new Set<Listener<T>>();
  readonly event = (l: Listener<T>): { dispose(): void } => {
    this.listeners.add(l);
    return { dispose: () => this.listeners.delete(l) };
  };
  fire(e: T): void {
    for (const l of [...this.listeners]) {
      try {
        l(e);
      } catch {
        // a listener's bug must not stop the others
      }
    }
  }
  dispose(): void {
    this.listeners.clear();
  }
}

export interface JobsOptions {
  client: () => Promise<InferenceClient>;
  log?: { info(m: string): void; warn(m: string): void; error(m: string): void; debug?(m: string): void };
  /** Writes an image a remote server sent back; resolves to the path written. `signal`: the job was cancelled meanwhile (write nothing, leave nothing). */
  saveImage?: (job: Job, png: Buffer, signal: AbortSignal) => Promise<string>;
  /** Finished jobs kept for listing. */
  keepFinished?: number;
}

export class Jobs {
  private readonly jobs = new Map<string, Job>();
  private readonly waiters = new Map<string, ((j: Job) => void)[]>();
  private readonly cancelRequested = new Set<string>();
  /** Jobs whose image a remote server sent back and that is being written here; aborted by a cancel. */
  private readonly saving = new Map<string, AbortController>();
  private next = 1;
  private readonly changed = new Emitter<Job>();
  /** Fires on every change of a job (state, step, preview, result). */
  readonly onDidChange = this.changed.event;

  constructor(private readonly opts: JobsOptions) {}

  submit(request: JobRequest, origin: JobOrigin, target?: string): Job {
    const job: Job = { id: `job-${this.next++}`, request, origin, state: 'pending', created: Date.now(), target: target ?? request.output };
    this.jobs.set(job.id, job);
    this.prune();
    this.changed.fire(job);
    void this.start(job);
    return job;
  }

  private async start(job: Job): Promise<void> {
    let again = false;
    try {
      const client = await this.opts.client();
      if (this.cancelRequested.has(job.id)) return this.finish(job, 'cancelled');
      const handle = await client.generate(job.request, (e) => this.onEvent(job, e), job.id);
      job.serverJobId = handle.jobId;
      // The server numbers its jobs itself: this line maps its log lines ("server job-1: …") to ours.
      this.opts.log?.info(`${job.id}: the server's ${handle.jobId}`);
      if (job.state === 'pending') job.state = 'queued';
      this.changed.fire(job);
      if (this.cancelRequested.has(job.id)) void Promise.resolve(client.cancel(handle.jobId)).catch(() => undefined);
      await handle.done.then(
        (v: unknown) => {
          // A client may resolve `done` with the result instead of (or before) the done event. Not
          // while a remote image is being saved here: that save finishes the job, with the local path.
          const r = v as Partial<Extract<ServerEvent, { event: 'done' }>> | undefined;
          if (isActive(job) && !this.saving.has(job.id) && r && typeof r === 'object' && typeof r.file === 'string' && r.metadata) {
            this.onEvent(job, { type: 'event', event: 'done', jobId: handle.jobId, file: r.file, metadata: r.metadata, stages: r.stages ?? [], notes: r.notes ?? [], ...(r.warnings ? { warnings: r.warnings } : {}) });
          }
        },
        (err: unknown) => {
          if (!isActive(job)) return;
          if (this.cancelRequested.has(job.id) || isCancelError(err)) this.finish(job, 'cancelled');
          else if (mayResubmit(job, err)) again = true;
          else this.fail(job, errorMessage(err), errorDetail(err));
        },
      );
      if (again) return await this.resubmit(job);
      if (isActive(job) && !this.saving.has(job.id)) {
        if (this.cancelRequested.has(job.id)) this.finish(job, 'cancelled');
        else this.fail(job, 'The server ended the job without a result.');
      }
    } catch (err) {
      if (!isActive(job)) return;
      if (this.cancelRequested.has(job.id) || isCancelError(err)) return this.finish(job, 'cancelled');
      // The server went away while the request was on its way: it never queued the job.
      if (mayResubmit(job, err)) return await this.resubmit(job);
      this.fail(job, errorMessage(err), errorDetail(err));
    }
  }

  /**
   * The server stopped (a crash of the job before it) while this one waited: nothing of it ran.
   * The restarted server takes it, in the order it was queued; a third loss fails it.
   */
  private async resubmit(job: Job): Promise<void> {
    job.resubmitted = (job.resubmitted ?? 0) + 1;
    job.state = 'pending';
    job.serverJobId = undefined;
    this.opts.log?.warn(`${job.id}: the server stopped while it waited in the queue; submitted again`);
    this.changed.fire(job);
    await this.start(job);
  }

  private onEvent(job: Job, e: ServerEvent): void {
    if (e.event === 'log' || e.event === 'heartbeat') return;
    if (!isActive(job)) return;
    switch (e.event) {
      case 'started':
        job.state = 'running';
        break;
      case 'stage':
        job.state = 'running';
        job.stage = e.stage;
        job.loading = undefined;
        break;
      case 'loading':
        job.state = 'running';
        job.loading = e.phase === 'loaded' ? undefined : { component: e.component, phase: e.phase, ...(e.fraction !== undefined ? { fraction: e.fraction } : {}) };
        break;
      case 'step':
        job.state = 'running';
        job.loading = undefined;
        job.stage = 'denoise';
        job.step = e.step;
        job.steps = e.steps;
        if (e.preview) job.preview = e.preview;
        break;
      case 'done': {
        job.result = { file: e.file, metadata: e.metadata, stages: e.stages, notes: e.notes, ...(e.warnings?.length ? { warnings: e.warnings } : {}), seconds: e.seconds };
        if (e.pngBase64 !== undefined && this.opts.saveImage) {
          // A remote server: its file is on another machine; write the bytes it sent here.
          const result = job.result;
          const abort = new AbortController();
          this.saving.set(job.id, abort);
          void this.opts.saveImage(job, Buffer.from(e.pngBase64, 'base64'), abort.signal).then(
            (file) => {
              result.file = file;
              this.finish(job, 'done');
            },
            (err: unknown) => (abort.signal.aborted ? this.finish(job, 'cancelled') : this.fail(job, errorMessage(err), errorDetail(err))),
          );
          return;
        }
        return this.finish(job, 'done');
      }
      case 'failed':
        return this.fail(job, e.message, e.detail, e.code);
      case 'cancelled':
        return this.finish(job, 'cancelled');
    }
    this.changed.fire(job);
  }

  private fail(job: Job, message: string, detail?: string, code?: 'model'): void {
    job.error = { message, detail, ...(code ? { code } : {}) };
    this.opts.log?.error(`${job.id} failed: ${message}${detail ? `\n${detail}` : ''}`);
    this.finish(job, 'failed');
  }

  private finish(job: Job, state: 'done' | 'failed' | 'cancelled'): void {
    if (!isActive(job)) return;
    if (state === 'cancelled') this.opts.log?.info(`${job.id} cancelled${job.step !== undefined && job.steps ? ` at step ${job.step}/${job.steps}` : ''}`);
    job.state = state;
    job.finished = Date.now();
    if (state !== 'done') job.preview = undefined;
    this.cancelRequested.delete(job.id);
    this.saving.delete(job.id);
    this.changed.fire(job);
    for (const w of this.waiters.get(job.id) ?? []) w(job);
    this.waiters.delete(job.id);
  }

  /** Resolves when the job has finished (whatever the outcome). */
  whenFinished(job: Job): Promise<Job> {
    if (!isActive(job)) return Promise.resolve(job);
    return new Promise((resolve) => {
      const list = this.waiters.get(job.id) ?? [];
      list.push(resolve);
      this.waiters.set(job.id, list);
    });
  }

  async cancel(id: string): Promise<void> {
    const job = this.jobs.get(id);
    if (!job || !isActive(job)) return;
    this.cancelRequested.add(id);
    // Shown at once (the CodeLens returns to "Generate"); the server confirms at its next step.
    this.changed.fire(job);
    // Already made, being saved here: the save stops and removes what it wrote.
    this.saving.get(id)?.abort();
    if (job.serverJobId) {
      try {
        const client = await this.opts.client();
        await client.cancel(job.serverJobId);
      } catch (err) {
        this.opts.log?.warn(`cancel ${id}: ${errorMessage(err)}`);
      }
    }
  }

  async cancelAll(): Promise<void> {
    await Promise.all(this.active().map((j) => this.cancel(j.id)));
  }

  get(id: string): Job | undefined {
    return this.jobs.get(id);
  }

  /** A cancel was asked for and the server has not confirmed it yet. */
  cancelling(job: Job): boolean {
    return this.cancelRequested.has(job.id);
  }

  active(): Job[] {
    return [...this.jobs.values()].filter(isActive);
  }

  all(): Job[] {
    return [...this.jobs.values()];
  }

  /** The job the server is working on, if any. */
  running(): Job | undefined {
    return this.active().find((j) => j.state === 'running') ?? this.active()[0];
  }

  private prune(): void {
    const keep = this.opts.keepFinished ?? 50;
    const finished = [...this.jobs.values()].filter((j) => !isActive(j));
    for (const j of finished.slice(0, Math.max(0, finished.length - keep))) this.jobs.delete(j.id);
  }

  dispose(): void {
    // The window is closing: a save under way stops and removes its temp file rather than leave it.
    for (const abort of this.saving.values()) abort.abort();
    this.changed.dispose();
  }
}

/** Submissions again of one job whose server stopped while it waited (each stop was another job's crash). */
const MAX_RESUBMITS = 2;

/**
 * The server went away before the job started (serverErrors.JobFailedError's and ServerError's
 * notStarted), and the job has not been submitted again MAX_RESUBMITS times yet.
 */
function mayResubmit(job: Job, err: unknown): boolean {
  const lost = !!err && typeof err === 'object' && (err as { notStarted?: unknown }).notStarted === true;
  return lost && (job.resubmitted ?? 0) < MAX_RESUBMITS;
}

function isCancelError(err: unknown): boolean {
  return !!err && typeof err === 'object' && ((err as { name?: unknown }).name === 'CancelledError' || (err as { cancelled?: unknown }).cancelled === true);
}

export function errorMessage(err: unknown): string {
  if (err instanceof Error) return err.message;
  if (err && typeof err === 'object' && 'message' in err && typeof (err as { message: unknown }).message === 'string') return (err as { message: string }).message;
  return String(err);
}

function errorDetail(err: unknown): string | undefined {
  if (err && typeof err === 'object' && 'detail' in err && typeof (err as { detail: unknown }).detail === 'string') return (err as { detail: string }).detail;
  return err instanceof Error ? err.stack : undefined;
}
