// Quantizes many weights at once on worker threads: building an int8/int4 cache for the
// 11.9 B-parameter FLUX.1 DiT is ~12·10⁹ elements, minutes on one core.

import * as os from 'node:os';
import { Worker } from 'node:worker_threads';
import { decodeToF32, FloatDType, NBitsOptions, NBitsWeight, quantizeNBits } from './quant';

export interface QuantJob {
  bytes: Uint8Array;
  dtype: FloatDType;
  n: number;
  k: number;
  opts: NBitsOptions;
}

// The two functions are self-contained, so their source runs as is in a worker (no bundle path needed).
const WORKER_SOURCE = `
const { parentPort } = require('node:worker_threads');
const decodeToF32 = (${decodeToF32.toString()});
const quantizeNBits = (${quantizeNBits.toString()});
parentPort.on('message', ({ id, bytes, dtype, n, k, opts }) => {
  try {
    const q = quantizeNBits(decodeToF32(bytes, dtype), n, k, opts);
    const transfer = [q.data.buffer, q.scales.buffer];
    if (q.zeroPoints) transfer.push(q.zeroPoints.buffer);
    parentPort.postMessage({ id, q }, transfer);
  } catch (e) {
    parentPort.postMessage({ id, error: String((e && e.stack) || e) });
  }
});
`;

/** Default worker count: the cores but one, and about 1 GB of memory per worker in flight. */
export function defaultQuantThreads(): number {
  const byMemory = Math.floor(os.freemem() / 2 ** 30);
  return Math.max(1, Math.min(os.availableParallelism() - 1, byMemory, 16));
}

export class QuantPool {
  private readonly workers: Worker[] = [];
  private readonly idle: Worker[] = [];
  private readonly waiting: Array<() => void> = [];
  private readonly pending = new Map<number, { resolve: (q: NBitsWeight) => void; reject: (e: Error) => void }>();
  private nextId = 0;

  constructor(readonly threads = defaultQuantThreads()) {
    for (let i = 0; i < threads; i++) {
      const w = new Worker(WORKER_SOURCE, { eval: true });
      w.on('message', (m: { id: number; q?: NBitsWeight; error?: string }) => {
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

  /** Quantize on the next free worker; `threads` == 0 would be pointless, so 1 runs inline. */
  async run(job: QuantJob): Promise<NBitsWeight> {
    if (this.threads <= 1) return quantizeNBits(decodeToF32(job.bytes, job.dtype), job.n, job.k, job.opts);
    const w = await this.acquire();
    const id = this.nextId++;
    const own = job.bytes.byteOffset === 0 && job.bytes.byteLength === job.bytes.buffer.byteLength ? job.bytes : job.bytes.slice();
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve, reject });
      w.postMessage({ id, bytes: own, dtype: job.dtype, n: job.n, k: job.k, opts: job.opts }, [own.buffer as ArrayBuffer]);
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
