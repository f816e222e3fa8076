// Converts many weights at once on worker threads: building an int8/int4 (or float16) cache for
// the 11.9 B-parameter FLUX.1 DiT is ~12·10⁹ elements, minutes on one core.

import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { Worker } from 'node:worker_threads';
import { NBitsWeight, QuantJob, runQuantJob } from './quant';
import type { QuantReply, QuantRequest } from './quantWorker';

/**
 * dist/quantWorker.js: beside this code once bundled (dist/server.js, pipelineWorker.js, cli.js);
 * when this runs as TypeScript (the unit tests, after the build), the repository's dist/.
 */
export function quantWorkerFile(): string {
  const beside = path.join(__dirname, 'quantWorker.js');
  return fs.existsSync(beside) ? beside : path.resolve(__dirname, '../../../dist/quantWorker.js');
}

/** Default worker count: the cores but one, and about 1 GB of memory per worker in flight. */
export function defaultQuantThreads(): number {
  const byMemory = Math.floor(os.freemem() / 2 ** 30);
  return Math.max(1, Math.min(os.availableParallelism() - 1, byMemory, 16));
}

export class QuantPool {
  private readonly workers: Worker[] = [];
  private readonly idle: Worker[] = [];
  private readonly waiting: Array<() => void> = [];
  private readonly pending = new Map<number, { resolve: (q: NBitsWeight | Uint16Array) => void; reject: (e: Error) => void }>();
  private nextId = 0;

  constructor(readonly threads = defaultQuantThreads(), workerFile = quantWorkerFile()) {
    if (threads > 1 && !fs.existsSync(workerFile)) throw new Error(`${workerFile} is missing: run npm run build`);
    for (let i = 0; i < (threads > 1 ? threads : 0); i++) {
      const w = new Worker(workerFile);
      w.on('message', (m: QuantReply) => {
        const p = this.pending.get(m.id);
        this.pending.delete(m.id);
        this.release(w);
        if (m.error) p?.reject(new Error(m.error));
        else p?.resolve(m.q!);
      });
      w.on('error', (e) => {
        for (const p of this.pending.values()) p.reject(e);
        this.pending.clear();
      });
      this.workers.push(w);
      this.idle.push(w);
    }
  }

  /** Quantize on the next free worker (with one thread, on this one). */
  run(job: QuantJob & { target?: 'nbits' }): Promise<NBitsWeight>;
  /** Convert to float16 bits on the next free worker. */
  run(job: QuantJob & { target: 'f16' }): Promise<Uint16Array>;
  run(job: QuantJob): Promise<NBitsWeight | Uint16Array>;
  async run(job: QuantJob): Promise<NBitsWeight | Uint16Array> {
    if (this.threads <= 1) return runQuantJob(job);
    const w = await this.acquire();
    const id = this.nextId++;
    const own = job.bytes.byteOffset === 0 && job.bytes.byteLength === job.bytes.buffer.byteLength ? job.bytes : job.bytes.slice();
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve, reject });
      w.postMessage({ id, target: job.target, bytes: own, dtype: job.dtype, n: job.n, k: job.k, opts: job.opts, scale: job.scale } satisfies QuantRequest, [own.buffer as ArrayBuffer]);
    });
  }

  async close(): Promise<void> {
    await Promise.all(this.workers.map((w) => w.terminate()));
  }

  private acquire(): Promise<Worker> {
    const w = this.idle.pop();
    if (w) return Promise.resolve(w);
    return new Promise((resolve) => this.waiting.push(() => resolve(this.idle.pop()!)));
  }

  private release(w: Worker): void {
    this.idle.push(w);
    this.waiting.shift()?.();
  }
}
