// Kernel-throughput and API probes for onnxruntime-node's WebGPU provider (benchmark helper, not
// product code). Each probe runs on its own and reports an error instead of stopping the rest:
//   matmul   fp16 MatMul / Gemm(transB) [4096, 3072] × [3072, 3072]: what bounds a DiT step
//   nbits    MatMulNBits 8-bit and 4-bit at the same shape, blocks of 128 and 32, float or int8
//            activations (accuracy_level 4)
//   attn     attention at FLUX.1's 1024² shape from MatMul → Softmax → MatMul (layers.attention's
//            `matmul` form: opset 20 and 21, queries whole or in 2 / 4 pieces) against
//            MultiHeadAttention
//   fp8      fp8 weights decoded on the GPU before a MatMul: codes packed four to a uint32, then
//            BitShift/BitwiseAnd/Cast/Gather from a 256-entry table; and each of those ops alone
//   fp8gather fp8 weights decoded by com.microsoft.GatherBlockQuantized (onnxruntime ≥ 1.31), bit-exact
//            check against DequantizeLinear's values and the product, beside the int32-word decode
//   mha      com.microsoft.MultiHeadAttention, 24 heads × 128, 4608 tokens (FLUX.1 at 1024²), with
//            and without the present K/V outputs that select the WebGPU flash-attention kernel
//   eltwise  the per-token ops around the products at FLUX.1's 1024² shape [4608, 3072] fp16: a
//            broadcast Add and Mul, FastGelu, LayerNormalization with per-channel scale/bias,
//            RotaryEmbedding; as GB/s of activations read + written
//   io       per-run cost of host inputs/outputs: a 1024² latent, and the T5 states
// Kernel times are the slope between a chain of 1 and of n ops (9 products, 5 attentions, 33
// elementwise ops) built on a GPU-made input and reduced to one value (chainSlope), so copies and
// the run's fixed cost drop out; that fixed cost is reported too.
// (GPU-resident outputs, preferredOutputLocation 'gpu-buffer', abort onnxruntime-node 1.30: not probed.)
//
//   node dist/gpu-probe.js [--out probe.json] [--only matmul,io] [--ep cpu (a smoke test)]

import * as fs from 'node:fs';
import { parseArgs } from 'node:util';
import * as ort from 'onnxruntime-node';
import { float32ToF16Bits } from '../../src/inference/formats/dtypes';
import { bytesOf, Graph, Value } from '../../src/inference/onnx/graph';
import { quantizeNBits } from '../../src/inference/onnx/quant';
import { attention, AttentionOptions } from '../../src/inference/graphs/layers';
import { toFloat32 } from '../../src/inference/formats/dtypes';
import { webgpuProviderOptions } from '../../src/inference/onnx/session';

const e4m3 = (code: number) => toFloat32(Uint8Array.of(code), 'F8_E4M3')[0];

// PROBE_SMALL=1: toy shapes, to check on the CPU that every probe builds and runs.
const SMALL = process.env.PROBE_SMALL === '1';
const M = SMALL ? 256 : 4096;
const K = SMALL ? 256 : 3072;
const LONG = 9;

function randomF16(n: number, std: number): Uint16Array {
  const x = new Float32Array(n);
  for (let i = 0; i < n; i++) x[i] = (Math.random() * 2 - 1) * std * Math.sqrt(3);
  return float32ToF16Bits(x);
}

let provider: ort.InferenceSession.ExecutionProviderConfig = webgpuProviderOptions();

async function session(g: Graph, extra: Partial<ort.InferenceSession.SessionOptions> = {}): Promise<ort.InferenceSession> {
  // Warnings on: onnxruntime says there when a node was not assigned to the provider (a CPU fallback).
  return ort.InferenceSession.create(g.toBytes(), { executionProviders: [provider], graphOptimizationLevel: 'all', logSeverityLevel: 2, ...extra });
}

/** Median wall time of `reps` runs after a warm-up (shader compilation, weight upload). */
async function timeRuns(s: ort.InferenceSession, feeds: Record<string, ort.Tensor>, reps: number): Promise<number> {
  await s.run(feeds);
  const times: number[] = [];
  for (let i = 0; i < reps; i++) {
    const t0 = performance.now();
    await s.run(feeds); // the output comes back to the host: each run waits for the GPU
    times.push(performance.now() - t0);
  }
  return times.sort((a, b) => a - b)[Math.floor(reps / 2)];
}

type Step = (g: Graph, x: Value, c: Value) => Value;

/** A probe part's result, or its error: one failing variant must not hide the others. */
async function attempt<T>(measure: () => Promise<T>): Promise<T | { error: string }> {
  try {
    return await measure();
  } catch (e) {
    return { error: String((e as Error).message ?? e).slice(0, 500) };
  }
}

/**
 * Per-op kernel time of `step` applied n times to x [rows, cols] fp16: the slope of the run time
 * between n = 1 and n = `long`. x is made on the GPU (Expand of a [1, cols] input) and the chain
 * ends in a ReduceMax to one value, so almost nothing crosses to the host and the slope is kernel
 * time. `c` is a per-channel [cols] input (fed, so no constant folding merges the chain).
 */
async function chainSlope(rows: number, cols: number, step: Step, long: number, opset = 21): Promise<{ ms: number; runOverheadMs: number }> {
  const feeds = { seed: new ort.Tensor('float16', randomF16(cols, 1), [1, cols]), c: new ort.Tensor('float16', randomF16(cols, 1), [cols]) };
  const times: number[] = [];
  for (const length of [1, long]) {
    const g = new Graph('chain', opset);
    const c = g.input('c', 'float16', [cols]);
    let x = g.op('Expand', [g.input('seed', 'float16', [1, cols]), g.i64([rows, cols])]);
    for (let i = 0; i < length; i++) x = step(g, x, c);
    g.output(g.op('ReduceMax', [x], { keepdims: 0 }), 'y', 'float16', []);
    const s = await session(g);
    times.push(await timeRuns(s, Object.fromEntries(Object.entries(feeds).filter(([k]) => s.inputNames.includes(k))), 7));
    await s.release();
  }
  const ms = (times[1] - times[0]) / (long - 1);
  return { ms, runOverheadMs: times[0] - ms };
}

/** x · W for a fresh random [K, K] weight, as MatMul, Gemm(transB) or MatMulNBits (block, accuracy level). */
function product(kind: 'matmul' | 'gemm' | 'nbits8' | 'nbits4', block = 128, accuracy = 0): Step {
  return (g, x) => {
    if (kind === 'matmul') return g.op('MatMul', [x, g.constant('float16', [K, K], bytesOf(randomF16(K * K, 1 / Math.sqrt(K))), 'w')]);
    if (kind === 'gemm') return g.op('Gemm', [x, g.constant('float16', [K, K], bytesOf(randomF16(K * K, 1 / Math.sqrt(K))), 'w')], { transB: 1 });
    const bits = kind === 'nbits8' ? 8 : 4;
    const w = new Float32Array(K * K).map(() => (Math.random() * 2 - 1) * Math.sqrt(3 / K));
    const q = quantizeNBits(w, K, K, { bits, blockSize: block });
    const blocks = K / block;
    const b = g.constant('uint8', [K, blocks, (block * bits) / 8], q.data, 'B');
    const sc = g.constant('float16', [K * blocks], bytesOf(float32ToF16Bits(q.scales)), 'scales');
    return g.op('MatMulNBits', [x, b, sc], { K, N: K, bits, block_size: block, ...(accuracy ? { accuracy_level: accuracy } : {}) }, { domain: 'com.microsoft' });
  };
}

async function productSlope(kind: Parameters<typeof product>[0], block?: number, accuracy?: number) {
  const r = await chainSlope(M, K, product(kind, block, accuracy), LONG);
  return { msPerProduct: r.ms, tflops: (2 * M * K * K) / r.ms / 1e9, runOverheadMs: r.runOverheadMs };
}

const probes: Record<string, () => Promise<unknown>> = {
  async matmul() {
    return { matmul: await productSlope('matmul'), gemmTransB: await productSlope('gemm') };
  },

  async nbits() {
    const out: Record<string, unknown> = {};
    for (const kind of ['nbits8', 'nbits4'] as const) {
      for (const block of [128, 32]) for (const accuracy of [0, 4]) out[`${kind}-b${block}-acc${accuracy}`] = await productSlope(kind, block, accuracy);
    }
    return out;
  },

  async attn() {
    const L = SMALL ? 256 : 4608;
    const H = 24;
    const D = 128;
    const flops = 4 * L * L * H * D;
    const out: Record<string, unknown> = {};
    const variants: Array<[string, number, AttentionOptions]> = [
      ['mha', 21, { form: 'fused' }],
      ['matmul-opset20', 20, { form: 'matmul' }],
      ['matmul-opset21', 21, { form: 'matmul' }],
      ['matmul-opset20-2pieces', 20, { form: 'matmul', chunks: 2 }],
      ['matmul-opset20-4pieces', 20, { form: 'matmul', chunks: 4 }],
    ];
    for (const [name, opset, opts] of variants) {
      out[name] = await attempt(async () => {
        const r = await chainSlope(L, H * D, (g, x) => {
          const b = g.op('Reshape', [x, g.i64([1, L, H * D])]);
          return g.op('Reshape', [attention(g, b, b, b, H, { ...opts, headDim: D, half: true }), g.i64([L, H * D])]);
        }, 5, opset);
        return { ...r, tflops: flops / r.ms / 1e9 };
      });
    }
    return out;
  },

  async fp8() {
    // W [K, K] as fp8 e4m3 codes (no NaN codes), packed little-endian four to a uint32 [K, K/4].
    const codes = Uint8Array.from({ length: K * K }, () => { const c = Math.floor(Math.random() * 254); return c >= 0x7f ? c + 1 : c; });
    const table = float32ToF16Bits(Float32Array.from({ length: 256 }, (_, i) => e4m3(i) / 64));
    const packed = new Uint32Array(codes.buffer.slice(0));
    const gated = (g: Graph, x: Value, w: Value) => {
      const gate = g.op('Cast', [g.op('Slice', [g.op('Reshape', [x, g.i64([-1])]), g.i64([0]), g.i64([0])])], { to: 7 });
      return g.op('Reshape', [w, g.op('Concat', [g.op('Shape', [w]), gate], { axis: 0 })]);
    };
    const unpack = (g: Graph, p: Value) => {
      const bytes = [0, 8, 16, 24].map((s) => g.op('Unsqueeze', [g.op('BitwiseAnd', [g.op('BitShift', [p, g.constant('uint32', [], new Uint8Array(Uint32Array.of(s).buffer), 's')], { direction: 'RIGHT' }), g.constant('uint32', [], new Uint8Array(Uint32Array.of(255).buffer), 'm')]), g.i64([-1])]));
      return g.op('Reshape', [g.op('Cast', [g.op('Concat', bytes, { axis: -1 })], { to: 6 }), g.i64([K, K])]); // int32 codes [K, K]
    };
    // Without bitwise ops: the same words as int32, bytes taken by floor division. `mod`: ONNX Mod
    // (fmod 0: the divisor's sign, so 0..255). `trunc`: Div truncates toward zero, so a negative
    // word's remainder is negative (Gather reads index −r as 256 − r, the right code) and the
    // quotient is corrected by one where it was.
    const words = new Int32Array(codes.buffer.slice(0));
    const i32 = (g: Graph, v: number) => g.constant('int32', [], new Uint8Array(Int32Array.of(v).buffer), 'c');
    const unpackInt = (g: Graph, w: Value, useMod: boolean) => {
      const parts: Value[] = [];
      let rest = w;
      for (let i = 0; i < 4; i++) {
        let r: Value;
        let next: Value;
        if (useMod) {
          r = g.op('Mod', [rest, i32(g, 256)], { fmod: 0 });
          next = g.op('Div', [g.op('Sub', [rest, r]), i32(g, 256)]);
        } else {
          const q = g.op('Div', [rest, i32(g, 256)]);
          r = g.op('Sub', [rest, g.op('Mul', [q, i32(g, 256)])]);
          next = g.op('Sub', [q, g.op('Cast', [g.op('Less', [r, i32(g, 0)])], { to: 6 })]);
        }
        parts.push(g.op('Unsqueeze', [r, g.i64([-1])]));
        rest = next;
      }
      return g.op('Reshape', [g.op('Concat', parts, { axis: -1 }), g.i64([K, K])]);
    };
    const intDecode = (useMod: boolean): Step => (g, x) => {
      const w = g.op('Gather', [g.constant('float16', [256], bytesOf(table), 'table'), unpackInt(g, gated(g, x, g.constant('int32', [K, K / 4], new Uint8Array(words.buffer), 'words')), useMod)], { axis: 0 });
      return g.op('MatMul', [x, w]);
    };
    const steps: Record<string, Step> = {
      decodeModMatmul: intDecode(true),
      decodeTruncMatmul: intDecode(false),
      // the whole decode, then the product
      decodeMatmul: (g, x) => {
        const w = g.op('Gather', [g.constant('float16', [256], bytesOf(table), 'table'), unpack(g, gated(g, x, g.constant('uint32', [K, K / 4], new Uint8Array(packed.buffer), 'packed')))], { axis: 0 });
        return g.op('MatMul', [x, w]);
      },
      // each part alone, ending in the same product on a constant-shaped fp16 weight (Add keeps the data dependency)
      unpackOnly: (g, x) => {
        const c = unpack(g, gated(g, x, g.constant('uint32', [K, K / 4], new Uint8Array(packed.buffer), 'packed')));
        return g.op('Add', [x, g.op('Cast', [g.op('Slice', [g.op('Reshape', [c, g.i64([-1])]), g.i64([0]), g.i64([K])])], { to: 10 })]);
      },
      gatherOnly: (g, x) => {
        const idx = gated(g, x, g.constant('int32', [K, K], new Uint8Array(Int32Array.from(codes).buffer), 'idx'));
        const w = g.op('Gather', [g.constant('float16', [256], bytesOf(table), 'table'), idx], { axis: 0 });
        return g.op('MatMul', [x, w]);
      },
    };
    const out: Record<string, unknown> = {};
    // Bit-exact? Each decode's weight, fetched once, against the table read on the host.
    const decoders: Record<string, (g: Graph, x: Value) => Value> = {
      bitwise: (g, x) => unpack(g, gated(g, x, g.constant('uint32', [K, K / 4], new Uint8Array(packed.buffer), 'packed'))),
      mod: (g, x) => unpackInt(g, gated(g, x, g.constant('int32', [K, K / 4], new Uint8Array(words.buffer), 'words')), true),
      trunc: (g, x) => unpackInt(g, gated(g, x, g.constant('int32', [K, K / 4], new Uint8Array(words.buffer), 'words')), false),
    };
    for (const [name, decode] of Object.entries(decoders)) {
      out[`${name}Exact`] = await attempt(async () => {
        const g = new Graph('exact', 21);
        const x = g.input('x', 'float16', [1, K]);
        g.output(g.op('Gather', [g.constant('float16', [256], bytesOf(table), 'table'), decode(g, x)], { axis: 0 }), 'w', 'float16', [K, K]);
        const s = await session(g);
        const w = (await s.run({ x: new ort.Tensor('float16', randomF16(K, 1), [1, K]) })).w.data as Uint16Array;
        await s.release();
        let wrong = 0;
        for (let i = 0; i < codes.length; i++) if (w[i] !== table[codes[i]]) wrong++;
        return wrong === 0 ? true : `${wrong} of ${codes.length} differ`;
      });
    }
    for (const [name, step] of Object.entries(steps)) out[name] = await attempt(() => chainSlope(M, K, step, 5));
    return out;
  },

  async fp8gather() {
    // onnxruntime ≥ 1.31: com.microsoft.GatherBlockQuantized decodes float8 data on WebGPU. W [K, K]
    // as e4m3 codes, every row gathered (indices through a gate, as Weights.decodeFp8Gather), one
    // scale for the tensor; the product as the DiT takes it: MatMul on the transpose. Same call: the
    // int32-word decode (the 1.30 path) and fp16 MatMul on a resident transposed weight.
    const codes = Uint8Array.from({ length: K * K }, () => { const c = Math.floor(Math.random() * 254); return c >= 0x7f ? c + 1 : c; });
    const words = new Int32Array(codes.buffer.slice(0));
    const table = (scale: number) => float32ToF16Bits(Float32Array.from({ length: 256 }, (_, i) => e4m3(i) * Math.fround(scale)));
    const i32 = (g: Graph, v: number) => g.constant('int32', [], new Uint8Array(Int32Array.of(v).buffer), 'c');
    const gateOf = (g: Graph, x: Value) => g.op('Cast', [g.op('Slice', [g.op('Reshape', [x, g.i64([-1])]), g.i64([0]), g.i64([0])])], { to: 7 });
    const gbq = (g: Graph, x: Value, scale: number) => {
      const ids = g.op('Reshape', [g.constant('int32', [K], new Uint8Array(Int32Array.from({ length: K }, (_, i) => i).buffer), 'rows'), g.op('Concat', [g.i64([-1]), gateOf(g, x)], { axis: 0 })]);
      const w8 = g.constant('float8e4m3fn', [K, K], codes, 'w8');
      return g.op('GatherBlockQuantized', [w8, ids, g.constant('float16', [1, 1], bytesOf(float32ToF16Bits(Float32Array.of(scale))), 's')], { gather_axis: 0, quantize_axis: 1, block_size: 0 }, { domain: 'com.microsoft' });
    };
    const wordsDecode = (g: Graph, x: Value) => {
      const w = g.constant('int32', [K, K / 4], new Uint8Array(words.buffer), 'words');
      let rest = g.op('Reshape', [w, g.op('Concat', [g.op('Shape', [w]), gateOf(g, x)], { axis: 0 })]);
      const parts: Value[] = [];
      for (let i = 0; i < 4; i++) {
        const q = g.op('Div', [rest, i32(g, 256)]);
        const r = g.op('Sub', [rest, g.op('Mul', [q, i32(g, 256)])]);
        parts.push(g.op('Unsqueeze', [r, g.i64([-1])]));
        rest = g.op('Sub', [q, g.op('Cast', [g.op('Less', [r, i32(g, 0)])], { to: 6 })]);
      }
      const idx = g.op('Reshape', [g.op('Concat', parts, { axis: -1 }), g.i64([K, K])]);
      return g.op('Gather', [g.constant('float16', [256], bytesOf(table(1 / 64)), 'table'), idx], { axis: 0 });
    };
    const out: Record<string, unknown> = {};
    for (const scale of [1 / 64, 0.01]) {
      out[`gatherExact@${scale}`] = await attempt(async () => {
        const g = new Graph('exact', 20);
        const x = g.input('x', 'float16', [1, K]);
        g.output(gbq(g, x, scale), 'w', 'float16', [K, K]);
        const s = await session(g);
        const w = (await s.run({ x: new ort.Tensor('float16', randomF16(K, 1), [1, K]) })).w.data as Uint16Array;
        await s.release();
        // DequantizeLinear's value: float(code) · float(scale as f16), rounded once to f16.
        const sf = toFloat32(new Uint8Array(float32ToF16Bits(Float32Array.of(scale)).buffer), 'F16')[0];
        const want = float32ToF16Bits(Float32Array.from({ length: 256 }, (_, i) => Math.fround(e4m3(i) * sf)));
        let wrong = 0;
        for (let i = 0; i < codes.length; i++) if (w[i] !== want[codes[i]]) wrong++;
        return wrong === 0 ? true : `${wrong} of ${codes.length} differ`;
      });
    }
    const steps: Record<string, Step> = {
      gatherTransposeMatmul: (g, x) => g.op('MatMul', [x, g.op('Transpose', [gbq(g, x, 1 / 64)], { perm: [1, 0] })]),
      wordsTransposeMatmul: (g, x) => g.op('MatMul', [x, g.op('Transpose', [wordsDecode(g, x)], { perm: [1, 0] })]),
      fp16Matmul: (g, x) => g.op('MatMul', [x, g.constant('float16', [K, K], bytesOf(randomF16(K * K, 1 / Math.sqrt(K))), 'w')]),
    };
    for (const [name, step] of Object.entries(steps)) out[name] = await attempt(() => chainSlope(M, K, step, 5, 20));
    return out;
  },

  async mha() {
    const L = SMALL ? 256 : 4608;
    const H = 24;
    const D = 128;
    const flops = 4 * L * L * H * D;
    const out: Record<string, unknown> = {};
    for (const flash of [true, false]) {
      // x ← MHA(x, x, x) as [1, L, H·D]; the flash variant also writes present_key/value (unused).
      const r = await chainSlope(L, H * D, (g, x) => {
        const b = g.op('Reshape', [x, g.i64([1, L, H * D])]);
        const o = g.opN('MultiHeadAttention', [b, b, b], { num_heads: H }, { domain: 'com.microsoft', outputs: flash ? 3 : 1 })[0];
        return g.op('Reshape', [o, g.i64([L, H * D])]);
      }, 5);
      out[flash ? 'flash' : 'plain'] = { ...r, tflops: flops / r.ms / 1e9 };
    }
    return out;
  },

  async eltwise() {
    const L = SMALL ? 256 : 4608;
    const C = 3072;
    const steps: Record<string, { passes: number; step: Step }> = {
      add: { passes: 2, step: (g, x, c) => g.op('Add', [x, c]) },
      mul: { passes: 2, step: (g, x, c) => g.op('Mul', [x, c]) },
      addTensor: { passes: 3, step: (g, x) => g.op('Add', [x, x]) },
      fastGelu: { passes: 2, step: (g, x) => g.op('FastGelu', [x], {}, { domain: 'com.microsoft' }) },
      layerNorm: { passes: 2, step: (g, x, c) => g.op('LayerNormalization', [x, c, c], { axis: -1, epsilon: { float: 1e-6 } }) },
      rope: {
        passes: 2,
        step: (g, x) => {
          const table = (fn: (a: number) => number) => g.constant('float16', [L, 64], bytesOf(float32ToF16Bits(Float32Array.from({ length: L * 64 }, (_, i) => fn(i * 1e-3)))), 't');
          const r = g.op('RotaryEmbedding', [g.op('Reshape', [x, g.i64([1, L, C])]), g.i64([0]), table(Math.cos), table(Math.sin)], { interleaved: 1, num_heads: 24 }, { domain: 'com.microsoft' });
          return g.op('Reshape', [r, g.i64([L, C])]);
        },
      },
    };
    const out: Record<string, unknown> = {};
    for (const [name, { passes, step }] of Object.entries(steps)) {
      out[name] = await attempt(async () => {
        const r = await chainSlope(L, C, step, 33);
        return { ...r, gbPerS: (passes * L * C * 2) / r.ms / 1e6 };
      });
    }
    return out;
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
