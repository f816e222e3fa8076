// The server's job queue and its one pipeline: jobs run one at a time on a worker-thread
// FluxPipeline that lives across jobs (so its caches work), each job's events go to the session
// that asked for it, and a job stuck past its cancel is abandoned so the queue moves on.

import * as fsp from 'node:fs/promises';
import * as path from 'node:path';
import { CancelledError, ComponentName, GenerateResult, ModelError, ModelSpec, RuntimeOptions, StageTiming, UserError } from '../../shared/api';
import { formatBytes } from '../../shared/bytes';
import type { Event, JobEvent, JobInfo, JobRequest, JobState, LogLevel, ServerSettings, StatusInfo } from '../../shared/protocol';
import { encodeImagePng, previewPng, writePngAtomic } from '../formats/png';
import { imageNotSavedMessage, isFsError } from '../system/fsErrors';
import { ensureDemoModel } from '../models/demo';
import { WorkerPipeline } from '../pipeline/worker';
import { cleanStaleTemps } from '../system/atomicWrite';
import { availableMemory, currentRss, RssSampler } from '../system/processMemory';
import type { Session } from './connection';
import { asNamed, type PathPolicy } from './paths';

const MAX_QUEUE = 1000;
const HISTORY = 20;

export interface Job {
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
  /** A remote client's inputs, server path → as it named them: its failure names them so (paths.asNamed). */
  inputNames?: ReadonlyMap<string, string>;
}

/** What the queue needs of the server. */
export interface JobsHost {
  /** The settings a client sent (undefined until one does). */
  settings(): ServerSettings | undefined;
  readonly paths: PathPolicy;
  /** How long a cancelled job may take to stop before its pipeline is abandoned as stuck (ms). */
  cancelGraceMs(): number;
  log(level: LogLevel, message: string, jobId?: string): void;
}

export class JobQueue {
  private pipe?: { key: string; instance: WorkerPipeline };
  private readonly queue: Job[] = [];
  private running?: Job;
  private runningDone?: Promise<void>;
  /** Ended jobs, newest first, with the session that asked for each. */
  readonly history: Array<{ info: JobInfo; owner: Session }> = [];
  private mutex: Promise<void> = Promise.resolve();
  private loading = 0;
  private jobCounter = 0;
  stopping = false;
  /** A job was abandoned while stuck in I/O: its thread may never return, and the process cannot exit normally. */
  stuck = false;
  /** Output folders already swept for temp files a killed writer left. */
  private readonly swept = new Set<string>();

  constructor(private readonly host: JobsHost) {}

  /** Queues a job whose paths were checked: its place in line, or why the queue takes no more. */
  add(owner: Session, request: JobRequest, output: string, imageAsNamed?: string, inputNames?: ReadonlyMap<string, string>): { job: Job; position: number } | { full: string } {
    if (this.queue.length >= MAX_QUEUE) return { full: `the queue is full (${MAX_QUEUE} jobs); wait for some to finish` };
    const job: Job = { id: `job-${++this.jobCounter}`, request, output, state: 'queued', owner, ...(imageAsNamed !== undefined ? { imageAsNamed } : {}), ...(inputNames ? { inputNames } : {}) };
    this.queue.push(job);
    // The reply goes out before any of the job's events.
    setImmediate(() => this.pump());
    return { job, position: this.queue.length - 1 + (this.running ? 1 : 0) };
  }

  /**
   * Cancels a live job: a queued one at once, the running one at its next step. `ack` hears which,
   * before the job's own `cancelled` event; false when no such job is live.
   */
  cancel(jobId: string, by: Session, ack: (state: 'cancelled' | 'cancelling') => void): boolean {
    // A client cancels its own jobs only: on a TCP server the others are other people's.
    const i = this.queue.findIndex((j) => j.id === jobId && j.owner === by);
    if (i >= 0) {
      const [job] = this.queue.splice(i, 1);
      ack('cancelled');
      this.finish(job, { type: 'event', event: 'cancelled', jobId });
      return true;
    }
    if (this.running?.id === jobId && this.running.owner === by) {
      this.cancelRunning();
      ack('cancelling');
      return true;
    }
    return false;
  }

  /** Cancels the session's jobs (all jobs without one): queued ones at once, the running one at its next step. */
  cancelJobsOf(session?: Session): void {
    for (const job of this.queue.filter((j) => !session || j.owner === session)) {
      this.queue.splice(this.queue.indexOf(job), 1);
      this.finish(job, { type: 'event', event: 'cancelled', jobId: job.id });
    }
    if (this.running && (!session || this.running.owner === session)) this.cancelRunning();
  }

  /** Waits for the running job to stop, then frees the pipeline. */
  async drain(): Promise<void> {
    await this.runningDone?.catch(() => undefined);
    await this.exclusive(() => this.releasePipeline());
  }

  /** Loads or unloads components of the pipeline, between jobs; returns what is loaded then. */
  loadOrUnload(load: boolean, components: ComponentName[] | undefined): Promise<ComponentName[]> {
    return this.exclusive(async () => {
      this.loading++;
      try {
        const p = await this.pipeline();
        if (load) await p.load(components);
        else await p.unload(components);
        return p.loaded();
      } finally {
        this.loading--;
      }
    });
  }

  /** New settings: a pipeline built for other ones is freed now rather than at the next job. */
  settingsChanged(settings: ServerSettings): void {
    if (this.pipe && this.pipe.key !== pipelineKey(settings)) {
      this.exclusive(() => this.pipeline().then(() => undefined)).catch((err: Error) => this.host.log('warn', `could not apply the new settings yet: ${err.message}`));
    }
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
    const graceMs = this.host.cancelGraceMs();
    setTimeout(() => {
      const pipe = this.pipe;
      if (this.running !== job || !pipe) return;
      this.host.log('warn', `${job.id} did not stop within ${Math.round(graceMs / 1000)} s of its cancel (stuck reading a file?); abandoning its pipeline`, job.id);
      this.stuck = true;
      this.pipe = undefined;
      pipe.instance.abandon();
    }, graceMs).unref();
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
      this.recheckInputs(job.request);
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
        ...(result.warnings.length ? { warnings: result.warnings } : {}),
        seconds: (performance.now() - t0) / 1000,
      });
    } catch (err) {
      if (err instanceof CancelledError || (signal.aborted && (err as Error)?.name === 'AbortError')) {
        this.finish(job, { type: 'event', event: 'cancelled', jobId });
      } else if (err instanceof UserError) {
        const [message, detail] = [this.shown(job, err.message), err.detail && this.shown(job, err.detail)];
        this.host.log('error', `${jobId} failed: ${message}${detail ? `\n${detail}` : ''}`, jobId);
        // A user error may still carry a stack (a load failure's) or the cache folder: a remote client hears neither.
        const heard = err.detail && this.heard(job, err.detail).trim();
        this.finish(job, { type: 'event', event: 'failed', jobId, message: this.heard(job, err.message), ...(heard ? { detail: heard } : {}), ...(err instanceof ModelError ? { code: 'model' as const } : {}) });
      } else {
        // Not the user's error: the owner's client gets the stack for its log; a remote client
        // neither it (it names the install) nor a server path outside the folders it may name.
        const e = err instanceof Error ? err : new Error(String(err));
        const stack = e.stack && this.shown(job, e.stack);
        this.host.log('error', `${jobId} failed: ${stack ?? this.shown(job, e.message)}`, jobId);
        const detail = this.host.paths.remote ? undefined : stack;
        this.finish(job, { type: 'event', event: 'failed', jobId, message: `Generation failed: ${this.heard(job, e.message.split('\n')[0])}`, ...(detail ? { detail } : {}) });
      }
    }
  }

  /** `text` as the owner's log shows it: a remote client's inputs by the names it gave. */
  private shown(job: Job, text: string): string {
    return job.inputNames ? asNamed(text, job.inputNames) : text;
  }

  /** `text` as the job's client hears it: shown, and nothing of the server's outside the folders it may name (paths.forClient). */
  private heard(job: Job, text: string): string {
    return this.host.paths.forClient(this.shown(job, text));
  }

  /** The inputs were checked when the job was accepted; a symlink put in their place since must not lead out. */
  private recheckInputs({ params }: JobRequest): void {
    const paths = this.host.paths;
    if (params.latentsFile !== undefined) paths.assertReadable(params.latentsFile, 'job.params.latentsFile');
    if (params.image !== undefined) paths.assertReadable(params.image, 'job.params.image');
    params.loras?.forEach((l, i) => paths.assertReadable(l.path, `job.params.loras[${i}].path`));
  }

  private async save(job: Job, result: GenerateResult, signal: AbortSignal): Promise<{ file: string; png?: Buffer; timing: StageTiming }> {
    job.owner.send({ type: 'event', event: 'stage', jobId: job.id, stage: 'save', state: 'start' });
    const sampler = new RssSampler();
    const t0 = performance.now();
    let written: { file: string; png: Buffer };
    let peakRss: number;
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
    this.host.paths.assertWritable(job.output);
    try {
      await fsp.mkdir(dir, { recursive: true });
      this.host.paths.assertWritable(job.output);
      // Temp file + link: never a partial PNG, never an existing file replaced; a cancel up to the
      // moment `done` is sent (nothing but microtasks run between here and then) still removes the file.
      const file = await writePngAtomic(job.output, png, { unique: true, signal });
      return { file, png };
    } catch (e) {
      if (!isFsError(e)) throw e;
      throw new UserError(
        imageNotSavedMessage(job.output, e, `Free some space or choose another output folder (the majicflux.output.folder setting), then run again with seed ${result.seed} to get the same image.`),
        e.stack,
      );
    }
  }

  /** Removes temp files a killed writer left in `dir`, once per folder and process. */
  async sweep(dir: string): Promise<void> {
    if (this.swept.has(dir)) return;
    if (this.swept.size >= 1000) this.swept.clear();
    this.swept.add(dir);
    const removed = await cleanStaleTemps(dir);
    if (removed.length > 0) this.host.log('info', `removed ${removed.length} temporary file${removed.length > 1 ? 's' : ''} left by a writer that was killed, in ${dir}`);
  }

  private finish(job: Job, final: Extract<Event, { event: 'done' | 'failed' | 'cancelled' }>): void {
    job.state = final.event;
    job.owner.send(final);
    this.history.unshift({ info: jobInfo(job), owner: job.owner });
    this.history.length = Math.min(this.history.length, HISTORY);
  }

  // ---- pipeline -----------------------------------------------------------------------------

  /** The pipeline for the current settings; one instance lives across jobs so its caches work. Call under `exclusive`. */
  private async pipeline(): Promise<WorkerPipeline> {
    const settings = this.host.settings();
    if (!settings) throw new UserError('No model is configured: send settings with hello or configure first.');
    const key = pipelineKey(settings);
    if (this.pipe?.key === key) return this.pipe.instance;
    const model = this.modelFiles(settings.model);
    await this.releasePipeline();
    const instance = await WorkerPipeline.create(model, runtimeOptions(settings), (level, message) => this.host.log(level, message));
    this.host.log('info', `memory mode ${settings.memory ?? 'auto'}, budget ${formatBytes(this.memoryBudget())} RAM${settings.gpuMemory ? `, ${formatBytes(settings.gpuMemory)} GPU` : ''}`);
    this.pipe = { key, instance };
    return instance;
  }

  /**
   * The model's files: a remote client's are checked against the allowed folders; the demo model's
   * random weights are written on first use here, in the server's process (≈15 MB with fsync would
   * stall the extension host's thread).
   */
  modelFiles(spec: ModelSpec): ModelSpec {
    this.host.paths.modelSpec(spec);
    return spec.demo === undefined ? spec : ensureDemoModel(spec.demo);
  }

  private async releasePipeline(): Promise<void> {
    const p = this.pipe;
    this.pipe = undefined;
    await p?.instance.release();
  }

  /** RAM the `auto` memory mode may plan with: the setting, else what the OS says is available to us. */
  memoryBudget(): number {
    return this.host.settings()?.memoryBudget ?? Math.floor(0.8 * (availableMemory() + currentRss()));
  }

  // ---- reporting ----------------------------------------------------------------------------

  state(): StatusInfo['state'] {
    return this.running ? 'busy' : this.loading > 0 ? 'loading' : 'idle';
  }

  get queued(): number {
    return this.queue.length;
  }

  /** The status's part that is the queue's and the pipeline's. */
  /** The server's state; with `viewer`, other sessions' jobs keep their place but not their prompt. */
  status(viewer?: Session): Pick<StatusInfo, 'state' | 'loaded' | 'jobs' | 'eps' | 'model'> {
    const shown = (info: JobInfo, owner: Session): JobInfo => (viewer && owner !== viewer ? { ...info, prompt: '' } : info);
    const live = [...(this.running ? [this.running] : []), ...this.queue].map((j, i) => ({ ...shown(jobInfo(j), j.owner), position: i }));
    return {
      state: this.state(),
      loaded: this.pipe?.instance.loaded() ?? [],
      jobs: [...live, ...this.history.map((h) => shown(h.info, h.owner))],
      eps: this.pipe?.instance.eps() ?? [],
      ...(this.pipe ? { model: this.pipe.instance.files.name } : {}),
    };
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
