// QuantPool's worker thread, bundled on its own as dist/quantWorker.js: it runs the same
// runQuantJob (and so the same dtypes codecs) as the calling thread, so results are bit-identical.

import { parentPort } from 'node:worker_threads';
import { NBitsWeight, QuantJob, runQuantJob } from './quant';

export type QuantRequest = QuantJob & { id: number };
export type QuantReply = { id: number; q?: NBitsWeight | Uint16Array; error?: string };

const port = parentPort;
port?.on('message', (job: QuantRequest) => {
  try {
    const q = runQuantJob(job);
    const transfer = q instanceof Uint16Array ? [q.buffer] : [q.data.buffer, q.scales.buffer, ...(q.zeroPoints ? [q.zeroPoints.buffer] : [])];
    port.postMessage({ id: job.id, q } satisfies QuantReply, transfer as ArrayBuffer[]);
  } catch (e) {
    port.postMessage({ id: job.id, error: String((e as Error)?.stack ?? e) } satisfies QuantReply);
  }
});
