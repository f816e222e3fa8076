// Runs the FluxPipeline on a worker thread. onnxruntime-node's `run` blocks the thread that calls
// it for the whole step (seconds to minutes on a CPU), so the server's own thread must not host
// it: there it answers requests, cancels and heartbeats while a step runs.
//
// `WorkerPipeline` (server side) mirrors the FluxPipeline methods the server uses. A cancel is a
// flag in shared memory that the worker reads between steps, since a blocked worker cannot
// receive messages until the step ends.

import '../system/privacy'; // first: telemetry off before onnxruntime loads
import * as path from 'node:path';
import { isMainThread, parentPort, Worker, workerData } from 'node:worker_threads';
import { CancelledError, ComponentName, ExecutionProvider, GenerateHooks, GenerateResult, LoadPhase, ModelError, ModelSpec, RuntimeOptions, Stage, UserError } from '../../shared/api';
import type { GenerateParams } from '../../shared/params';
import { FluxPipeline } from './pipeline';

type Level = 'debug' | 'info' | 'warn' | 'error';
type Eps = { component: ComponentName; ep: ExecutionProvider; note?: string }[];

type ToWorker =
  | { op: 'generate'; id: number; params: GenerateParams; wantPreview: boolean }
  | { op: 'load' | 'unload'; id: number; components?: ComponentName[] }
  | { op: 'release'; id: number };

type FromWorker =
  | { op: 'ready'; name: string }
  | { op: 'failed-to-start'; error: SerializedError }
  | { op: 'log'; level: Level; message: string }
  | { op: 'state'; loaded: ComponentName[]; eps: Eps }
  | { op: 'stage'; id: number; stage: Stage; state: 'start' | 'end'; detail?: string }
  | { op: 'loading'; id: number; component: ComponentName; phase: LoadPhase; fraction?: number }
  | { op: 'step'; id: number; step: number; steps: number; preview?: { width: number; height: number; rgb: Uint8Array } }
  | { op: 'done'; id: number; result?: GenerateResult }
  | { op: 'error'; id: number; error: SerializedError };

interface SerializedError {
  kind: 'user' | 'model' | 'cancelled' | 'other';
  message: string;
  detail?: string;
}

interface Pending {
  resolve(v: GenerateResult | undefined): void;
  reject(e: Error): void;
  hooks?: GenerateHooks;
}

export class WorkerPipeline {
  private nextId = 1;
  private readonly pending = new Map<number, Pending>();
  private state: { loaded: ComponentName[]; eps: Eps } = { loaded: [], eps: [] };
  private exited?: Error;

  private constructor(private readonly worker: Worker, readonly files: { name: string }, private readonly cancelFlag: Int32Array) {}

  static async create(model: ModelSpec, runtime: RuntimeOptions, log: (level: Level, message: string) => void, workerFile = path.join(__dirname, 'pipelineWorker.js')): Promise<WorkerPipeline> {
    const cancelFlag = new Int32Array(new SharedArrayBuffer(4));
    const worker = new Worker(workerFile, { workerData: { model, runtime, cancel: cancelFlag } });
    const starting = { message: (_m: FromWorker) => {}, error: (_e: Error) => {}, exit: (_code: number) => {} };
    const name = await new Promise<string>((resolve, reject) => {
      starting.message = (m: FromWorker) => {
        if (m.op === 'log') log(m.level, m.message);
        else if (m.op === 'ready') resolve(m.name);
        else if (m.op === 'failed-to-start') reject(toError(m.error));
      };
      starting.error = reject;
      starting.exit = (code) => reject(new Error(`the pipeline worker exited (code ${code}) while starting`));
      worker.on('message', starting.message).on('error', starting.error).on('exit', starting.exit);
    }).finally(() => worker.off('message', starting.message).off('error', starting.error).off('exit', starting.exit));
    const p = new WorkerPipeline(worker, { name }, cancelFlag);
    worker.on('message', (m: FromWorker) => p.onMessage(m, log));
    worker.on('error', (e) => p.fail(e));
    worker.on('exit', (code) => p.fail(new Error(`the pipeline worker exited (code ${code})`)));
    return p;
  }

  loaded(): ComponentName[] {
    return this.state.loaded;
  }

  eps(): Eps {
    return this.state.eps;
  }

  async generate(params: GenerateParams, hooks: GenerateHooks = {}): Promise<GenerateResult> {
    Atomics.store(this.cancelFlag, 0, 0);
    const onAbort = () => Atomics.store(this.cancelFlag, 0, 1);
    if (hooks.signal?.aborted) throw new CancelledError();
    hooks.signal?.addEventListener('abort', onAbort, { once: true });
    try {
      const r = await this.call({ op: 'generate', id: 0, params, wantPreview: hooks.wantPreview ?? false }, hooks);
      return r!;
    } finally {
      hooks.signal?.removeEventListener('abort', onAbort);
    }
  }

  async load(components?: ComponentName[]): Promise<void> {
    await this.call({ op: 'load', id: 0, components });
  }

  async unload(components?: ComponentName[]): Promise<void> {
    await this.call({ op: 'unload', id: 0, components });
  }

  /**
   * Gives up on a worker stuck in a call that never returns: its calls fail as cancelled now and the
   * worker is told to stop (a thread blocked in a system call stops only when the call returns).
   */
  abandon(): void {
    this.fail(new CancelledError());
    this.worker.terminate().catch(() => undefined);
  }

  async release(): Promise<void> {
    if (!this.exited) await this.call({ op: 'release', id: 0 }).catch(() => undefined);
    await this.worker.terminate();
  }

  private call(msg: ToWorker, hooks?: GenerateHooks): Promise<GenerateResult | undefined> {
    if (this.exited) return Promise.reject(this.exited);
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve, reject, hooks });
      this.worker.postMessage({ ...msg, id });
    });
  }

  private onMessage(m: FromWorker, log: (level: Level, message: string) => void): void {
    switch (m.op) {
      case 'log':
        return log(m.level, m.message);
      case 'state':
        this.state = { loaded: m.loaded, eps: m.eps };
        return;
      case 'stage':
        return this.pending.get(m.id)?.hooks?.onStage?.(m.stage, m.state, m.detail);
      case 'loading':
        return this.pending.get(m.id)?.hooks?.onLoad?.(m.component, m.phase, m.fraction);
      case 'step':
        return this.pending.get(m.id)?.hooks?.onStep?.({ step: m.step, steps: m.steps, preview: m.preview, latents: new Float32Array(0) });
      case 'done':
      case 'error': {
        const p = this.pending.get(m.id);
        this.pending.delete(m.id);
        if (m.op === 'done') p?.resolve(m.result);
        else p?.reject(toError(m.error));
        return;
      }
    }
  }

  private fail(e: Error): void {
    this.exited ??= e;
    for (const p of this.pending.values()) p.reject(e);
    this.pending.clear();
  }
}

function serialize(e: unknown): SerializedError {
  if (e instanceof CancelledError) return { kind: 'cancelled', message: e.message };
  if (e instanceof UserError) return { kind: e instanceof ModelError ? 'model' : 'user', message: e.message, detail: e.detail };
  const err = e instanceof Error ? e : new Error(String(e));
  return { kind: 'other', message: err.message, detail: err.stack };
}

function toError(s: SerializedError): Error {
  if (s.kind === 'cancelled') return new CancelledError();
  if (s.kind === 'user') return new UserError(s.message, s.detail);
  if (s.kind === 'model') return new ModelError(s.message, s.detail);
  const e = new Error(s.message);
  if (s.detail) e.stack = s.detail;
  return e;
}

// ---- the worker side ---------------------------------------------------------------------------

/**
 * Tests of the server's stuck-job handling (server-security.test.ts) need a worker blocked in a
 * call that never returns, as a read from a hung network drive is: every FIFO or device a user
 * can name is refused up front now, so `MAJICFLUX_TEST_STALL_MS` blocks this thread that long
 * when a job's text stage starts. Unset, nothing happens.
 */
function stallForTests(): void {
  const ms = Number(process.env.MAJICFLUX_TEST_STALL_MS);
  if (ms > 0) Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
}

async function workerMain(): Promise<void> {
  const port = parentPort!;
  const { model, runtime, cancel } = workerData as { model: ModelSpec; runtime: RuntimeOptions; cancel: Int32Array };
  const post = (m: FromWorker, transfer: ArrayBuffer[] = []) => port.postMessage(m, transfer);
  const log = (level: Level, message: string) => post({ op: 'log', level, message });
  let pipeline: FluxPipeline;
  try {
    pipeline = await FluxPipeline.create(model, runtime, log);
  } catch (e) {
    post({ op: 'failed-to-start', error: serialize(e) });
    return;
  }
  const sendState = () => post({ op: 'state', loaded: pipeline.loaded(), eps: pipeline.eps() });
  post({ op: 'ready', name: pipeline.files.name });
  // Messages are handled one at a time, in order: the server never overlaps calls anyway.
  let chain = Promise.resolve();
  port.on('message', (m: ToWorker) => {
    chain = chain.then(() => handle(m)).catch(() => undefined);
  });

  async function handle(m: ToWorker): Promise<void> {
    try {
      switch (m.op) {
        case 'generate': {
          const ac = new AbortController();
          const poll = () => {
            if (Atomics.load(cancel, 0) === 1 && !ac.signal.aborted) ac.abort();
          };
          const result = await pipeline.generate(m.params, {
            signal: ac.signal,
            wantPreview: m.wantPreview,
            onStage: (stage, state, detail) => {
              poll();
              post({ op: 'stage', id: m.id, stage, state, detail });
              sendState();
              if (stage === 'text' && state === 'start') stallForTests();
            },
            onLoad: (component, phase, fraction) => {
              poll();
              post({ op: 'loading', id: m.id, component, phase, fraction });
            },
            onStep: ({ step, steps, preview }) => {
              poll();
              post({ op: 'step', id: m.id, step, steps, preview });
            },
            // A tiled decode of a large image takes minutes on a CPU: a cancel is read between its tiles.
            onTile: poll,
          });
          post({ op: 'done', id: m.id, result }, [result.image.buffer as ArrayBuffer]);
          break;
        }
        case 'load':
          await pipeline.load(m.components);
          post({ op: 'done', id: m.id });
          break;
        case 'unload':
          await pipeline.unload(m.components);
          post({ op: 'done', id: m.id });
          break;
        case 'release':
          await pipeline.release();
          post({ op: 'done', id: m.id });
          break;
      }
    } catch (e) {
      post({ op: 'error', id: m.id, error: serialize(e) });
    }
    sendState();
  }
}

if (!isMainThread && (workerData as { model?: unknown } | undefined)?.model !== undefined) void workerMain();
