// Kernel-throughput and API probes for onnxruntime-node's WebGPU provider (benchmark helper, not
// product code). Each probe runs on its own and reports an error instead of stopping the rest:
//   matmul   fp16 MatMul / Gemm(transB) [4096, 3072] × [3072, 3072]: what bounds a DiT step
//   nbits    MatMulNBits 8-bit and 4-bit at the same shape
//   mha      com.microsoft.MultiHeadAttention, 24 heads × 128, 4608 tokens (FLUX.1 at 1024²)
//   io       per-run cost of host inputs/outputs: a 1024² latent, and the T5 states
// Kernel times are the slope between a chain of 1 and of 9 products in one run, so the copies of
// the input and output (and the run's fixed cost) drop out; that fixed cost is reported too.
// (GPU-resident outputs, preferredOutputLocation 'gpu-buffer', abort onnxruntime-node 1.30: not probed.)
//
//   node dist/gpu-probe.js [--out probe.json] [--only matmul,io] [--ep cpu (a smoke test)]

import * as fs from 'node:fs';
import { parseArgs } from 'node:util';
import * as ort from 'onnxruntime-node';
import { float32ToF16Bits } from '../../src/inference/dtypes';
import { bytesOf, Graph, Value } from '../../src/inference/onnx/graph';
import { quantizeNBits } from '../../src/inference/onnx/quant';
import { webgpuProviderOptions } from '../../src/inference/onnx/session';

const M = 4096;
const K = 3072;
const LONG = 9;

function randomF16(n: number, std: number): Uint16Array {
  const x = new Float32Array(n);
  for (let i = 0; i < n; i++) x[i] = (Math.random() * 2 - 1) * std * Math.sqrt(3);
  return float32ToF16Bits(x);
}

let provider: ort.InferenceSession.ExecutionProviderConfig = webgpuProviderOptions();

async function session(g: Graph, extra: Partial<ort.InferenceSession.SessionOptions> = {}): Promise<ort.InferenceSession> {
  return ort.InferenceSession.create(g.toBytes(), { executionProviders: [provider], graphOptimizationLevel: 'all', logSeverityLevel: 3, ...extra });
}

async function timeRuns(s: ort.InferenceSession, feeds: Record<string, ort.Tensor>, reps: number): Promise<number> {
  await s.run(feeds); // warm-up: shader compilation, weight upload
  const t0 = performance.now();
  for (let i = 0; i < reps; i++) await s.run(feeds); // outputs come back to the host: each run waits for the GPU
  return (performance.now() - t0) / reps;
}

/** A chain of `length` products x ← f(x, W_i), fp16, weights as initializers. */
function chain(kind: 'matmul' | 'gemm' | 'nbits8' | 'nbits4', length: number): Graph {
  const g = new Graph(`chain_${kind}`, 21);
  let x: Value = g.input('x', 'float16', [M, K]);
  for (let i = 0; i < length; i++) {
    if (kind === 'matmul') x = g.op('MatMul', [x, g.constant('float16', [K, K], bytesOf(randomF16(K * K, 1 / Math.sqrt(K))), 'w')]);
    else if (kind === 'gemm') x = g.op('Gemm', [x, g.constant('float16', [K, K], bytesOf(randomF16(K * K, 1 / Math.sqrt(K))), 'w')], { transB: 1 });
    else {
      const bits = kind === 'nbits8' ? 8 : 4;
      const w = new Float32Array(K * K).map(() => (Math.random() * 2 - 1) * Math.sqrt(3 / K));
      const q = quantizeNBits(w, K, K, { bits });
      const blocks = K / 128;
      const b = g.constant('uint8', [K, blocks, (128 * bits) / 8], q.data, 'B');
      const s = g.constant('float16', [K * blocks], bytesOf(float32ToF16Bits(q.scales)), 'scales');
      x = g.op('MatMulNBits', [x, b, s], { K, N: K, bits, block_size: 128 }, { domain: 'com.microsoft' });
    }
  }
  g.output(x, 'y', 'float16', [M, K]);
  return g;
}

/** Per-product kernel time (slope over chain lengths 1 and LONG) and the fixed cost of a run. */
async function slope(kind: Parameters<typeof chain>[0]): Promise<{ msPerProduct: number; tflops: number; runOverheadMs: number }> {
  const x = new ort.Tensor('float16', randomF16(M * K, 1), [M, K]);
  const times: number[] = [];
  for (const length of [1, LONG]) {
    const s = await session(chain(kind, length));
    times.push(await timeRuns(s, { x }, 4));
    await s.release();
  }
  const ms = (times[1] - times[0]) / (LONG - 1);
  return { msPerProduct: ms, tflops: (2 * M * K * K) / ms / 1e9, runOverheadMs: times[0] - ms };
}

const probes: Record<string, () => Promise<unknown>> = {
  async matmul() {
    return { matmul: await slope('matmul'), gemmTransB: await slope('gemm') };
  },

  async nbits() {
    return { nbits8: await slope('nbits8'), nbits4: await slope('nbits4') };
  },

  async mha() {
    const L = 4608;
    const H = 24;
    const D = 128;
    const g = new Graph('mha', 21);
    const q = g.input('q', 'float16', [1, L, H * D]);
    const k = g.input('k', 'float16', [1, L, H * D]);
    const v = g.input('v', 'float16', [1, L, H * D]);
    g.output(g.op('MultiHeadAttention', [q, k, v], { num_heads: H }, { domain: 'com.microsoft' }), 'o', 'float16', [1, L, H * D]);
    const s = await session(g);
    const t = () => new ort.Tensor('float16', randomF16(L * H * D, 1), [1, L, H * D]);
    const ms = await timeRuns(s, { q: t(), k: t(), v: t() }, 3);
    return { ms, tflops: (4 * L * L * H * D) / ms / 1e9, note: 'includes the host↔GPU copies of q, k, v and o (3 × 28 MB in, 28 MB out)' };
  },

  async io() {
    // y = x + 1: the run is all copies and fixed cost. [4096, 64]: a 1024² latent (1 MB each way);
    // [512, 4096]: the T5 states fed every step (8 MB in).
    const out: Record<string, number> = {};
    for (const [rows, cols] of [[M, 64], [512, 4096]]) {
      const g = new Graph('io', 21);
      const x = g.input('x', 'float32', [rows, cols]);
      g.output(g.op('Add', [x, g.f32([1], [])]), 'y', 'float32', [rows, cols]);
      const s = await session(g);
      out[`${rows}x${cols}Ms`] = await timeRuns(s, { x: new ort.Tensor('float32', new Float32Array(rows * cols), [rows, cols]) }, 20);
      await s.release();
    }
    return out;
  },
};

async function main() {
  const { values } = parseArgs({ options: { out: { type: 'string' }, only: { type: 'string' }, ep: { type: 'string' } } });
  if (values.ep === 'cpu') provider = 'cpu';
  const names = values.only ? values.only.split(',') : Object.keys(probes);
  const result: Record<string, unknown> = {};
  for (const name of names) {
    const t0 = performance.now();
    try {
      result[name] = await probes[name]();
    } catch (e) {
      result[name] = { error: String((e as Error).message ?? e).slice(0, 2000) };
    }
    console.log(`${name} (${((performance.now() - t0) / 1000).toFixed(1)} s): ${JSON.stringify(result[name])}`);
  }
  if (values.out) fs.writeFileSync(values.out, JSON.stringify(result, null, 1));
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
