// Converts many weights at once on worker threads: building an int8/int4 (or float16) cache for
// the 11.9 B-parameter FLUX.1 DiT is ~12·10⁹ elements, minutes on one core.

import * as os from 'node:os';
import { Worker } from 'node:worker_threads';
import { decodeToF32, f32ToF16Bits, FloatDType, NBitsOptions, NBitsWeight, quantizeNBits, scaled, transposed } from './quant';

export interface QuantJob {
  /** MatMulNBits blocks (default), or the float16 bits of the transpose [k, n]. */
  target?: 'nbits' | 'f16';
  bytes: Uint8Array;
  dtype: FloatDType;
  n: number;
  k: number;
  opts: NBitsOptions;
  /** Dequantization scale of an fp8 source, per tensor (1 value) or per row. */
  scale?: Float32Array;
}

// The two functions are self-contained, so their source runs as is in a worker (no bundle path needed).
const WORKER_SOURCE = `
const { parentPort } = require('node:worker_threads');
const decodeToF32 = (${decodeToF32.toString()});
const quantizeNBits = (${quantizeNBits.toString()});
const scaled = (${scaled.toString()});
const f32ToF16Bits = (${f32ToF16Bits.toString()});
const transposed = (${transposed.toString()});
parentPort.on('message', ({ id, target, bytes, dtype, n, k, opts, scale }) => {
  try {
    const x = scaled(decodeToF32(bytes, dtype), scale, n);
    if (target === 'f16') {
      const h = f32ToF16Bits(transposed(x, n, k));
      parentPort.postMessage({ id, q: h }, [h.buffer]);
      return;
    }
    const q = quantizeNBits(x, n, k, opts);
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
  private readonly pending = new Map<number, { resolve: (q: NBitsWeight | Uint16Array) => void; reject: (e: Error) => void }>();
  private nextId = 0;

  constructor(readonly threads = defaultQuantThreads()) {
    for (let i = 0; i < threads; i++) {
      const w = new Worker(WORKER_SOURCE, { eval: true });
      w.on('message', (m: { id: number; q?: NBitsWeight | Uint16Array; error?: string }) => {
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
  async run(job: QuantJob): Promise<NBitsWeight | Uint16Array> {
    if (this.threads <= 1) {
      const x = scaled(decodeToF32(job.bytes, job.dtype), job.scale, job.n);
      return job.target === 'f16' ? f32ToF16Bits(transposed(x, job.n, job.k)) : quantizeNBits(x, job.n, job.k, job.opts);
    }
    const w = await this.acquire();
    const id = this.nextId++;
    const own = job.bytes.byteOffset === 0 && job.bytes.byteLength === job.bytes.buffer.byteLength ? job.bytes : job.bytes.slice();
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve, reject });
      w.postMessage({ id, target: job.target, bytes: own, dtype: job.dtype, n: job.n, k: job.k, opts: job.opts, scale: job.scale }, [own.buffer as ArrayBuffer]);
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
