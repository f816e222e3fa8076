import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { compare } from '../helpers/golden';
import * as ort from 'onnxruntime-node';
import { f32ToBf16, f32ToE4M3, f32ToF16, toFloat32 } from '../../src/inference/formats/dtypes';
import { bytesOf, Graph } from '../../src/inference/onnx/graph';
import { dequantizeNBits, FloatDType, NBits, QuantJob, quantizeNBits, runQuantJob } from '../../src/inference/onnx/quant';
import { QuantPool, quantWorkerFile } from '../../src/inference/onnx/quantPool';

/** Deterministic N(0, std²) values. */
function gaussian(n: number, std: number, seed = 1): Float32Array {
  let s = seed >>> 0;
  const u = () => ((s = (Math.imul(s, 1664525) + 1013904223) >>> 0) + 1) / 4294967297;
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) out[i] = std * Math.sqrt(-2 * Math.log(u())) * Math.cos(2 * Math.PI * u());
  return out;
}

const relL2 = (a: ArrayLike<number>, b: ArrayLike<number>) => compare(a, b).relL2;

/** y = x · dequant(W)ᵀ through com.microsoft.MatMulNBits on the CPU provider. */
async function matMulNBits(x: Float32Array, m: number, q: ReturnType<typeof quantizeNBits>): Promise<Float32Array> {
  const g = new Graph('nbits');
  const a = g.input('a', 'float32', [m, q.k]);
  const blocks = Math.ceil(q.k / q.blockSize);
  const b = g.constant('uint8', [q.n, blocks, (q.blockSize * q.bits) / 8], q.data, 'B');
  const s = g.constant('float32', [q.n * blocks], bytesOf(q.scales), 'scales');
  const zp = q.zeroPoints ? g.constant('uint8', [q.zeroPoints.length], q.zeroPoints, 'zp') : undefined;
  g.output(g.op('MatMulNBits', [a, b, s, zp], { K: q.k, N: q.n, bits: q.bits, block_size: q.blockSize }, { domain: 'com.microsoft' }), 'y', 'float32', [m, q.n]);
  const session = await ort.InferenceSession.create(g.toBytes());
  try {
    return (await session.run({ a: new ort.Tensor('float32', x, [m, q.k]) })).y.data as Float32Array;
  } finally {
    await session.release();
  }
}

describe('MatMulNBits weight quantization (onnx/quant.ts)', () => {
  // Gaussian weights [256, 1000]: K not a multiple of the block, so the last block is padded.
  const n = 256;
  const k = 1000;
  const w = gaussian(n * k, 1 / Math.sqrt(k));
  // Measured relative L2 errors of the dequantized weight: 6.4e-3, 5.9e-3, 0.103, 0.100 (bounds ~10 % above).
  const bounds: Array<[NBits, boolean, number]> = [[8, false, 7.0e-3], [8, true, 6.5e-3], [4, false, 0.113], [4, true, 0.11]];
  for (const [bits, zeroPoints, bound] of bounds) {
    it(`${bits}-bit ${zeroPoints ? 'with zero points' : 'symmetric'}: weight error ≤ ${bound}, and MatMulNBits computes x·dequant(W)ᵀ`, async () => {
      const q = quantizeNBits(w, n, k, { bits, zeroPoints });
      assert.equal(q.data.byteLength, n * 8 * ((128 * bits) / 8));
      assert.equal(q.zeroPoints !== undefined, zeroPoints);
      const d = dequantizeNBits(q);
      const err = relL2(d, w);
      assert.ok(err <= bound, `relative L2 ${err} > ${bound}`);
      assert.ok(err >= bound / 3, `relative L2 ${err} is far below the bound ${bound}: tighten it`);

      const m = 3;
      const x = gaussian(m * k, 1, 9);
      const ref = new Float32Array(m * n);
      for (let i = 0; i < m; i++) {
        for (let o = 0; o < n; o++) {
          let acc = 0;
          for (let j = 0; j < k; j++) acc += x[i * k + j] * d[o * k + j];
          ref[i * n + o] = acc;
        }
      }
      assert.ok(relL2(await matMulNBits(x, m, q), ref) < 1e-6, 'layout or zero-point convention differs from MatMulNBits');
    });
  }

  it('symmetric mode represents each block’s largest-magnitude value exactly', () => {
    const x = Float32Array.from({ length: 256 }, (_, i) => (i === 5 ? -0.75 : i === 200 ? 0.5 : 0.01 * Math.sin(i)));
    for (const bits of [4, 8] as const) {
      const d = dequantizeNBits(quantizeNBits(x, 1, 256, { bits }));
      assert.equal(d[5], -0.75);
      assert.equal(d[200], 0.5);
    }
  });

  it('an all-zero block stays zero (no division by zero)', () => {
    for (const zeroPoints of [false, true]) {
      const d = dequantizeNBits(quantizeNBits(new Float32Array(256), 2, 128, { bits: 4, zeroPoints }));
      assert.ok(d.every((v) => v === 0));
    }
  });

  it('QuantPool on worker threads gives the same bytes as quantizing inline', async () => {
    const bytes = new Uint8Array(new Uint16Array(Array.from(w.subarray(0, 64 * 1000), (v) => new Uint32Array(Float32Array.of(v).buffer)[0] >>> 16)).buffer);
    const pool = new QuantPool(2);
    try {
      const jobs = [4, 8].flatMap((bits) => [false, true].map((zeroPoints) => ({ bytes: bytes.slice(), dtype: 'BF16' as const, n: 64, k: 1000, opts: { bits: bits as NBits, zeroPoints } })));
      const got = await Promise.all(jobs.map((j) => pool.run(j)));
      jobs.forEach((j, i) => {
        const want = quantizeNBits(toFloat32(bytes, 'BF16'), 64, 1000, j.opts);
        assert.deepEqual(got[i].data, want.data);
        assert.deepEqual(got[i].scales, want.scales);
        assert.deepEqual(got[i].zeroPoints, want.zeroPoints);
      });
    } finally {
      await pool.close();
    }
  });

  it('the bundled worker (dist/quantWorker.js) gives bit-identical results to the in-thread path, for every target and source dtype', async () => {
    const file = quantWorkerFile();
    assert.equal(path.relative(path.resolve(__dirname, '../..'), file), path.join('dist', 'quantWorker.js'));
    assert.ok(fs.existsSync(file), `${file} is missing: run npm run build`);
    const f32 = w.subarray(0, 32 * 256);
    const sources: Array<[FloatDType, Uint8Array]> = [
      ['F32', new Uint8Array(f32.slice().buffer)],
      ['BF16', new Uint8Array(Uint16Array.from(f32, (v) => f32ToBf16(v)).buffer)],
      ['F16', new Uint8Array(Uint16Array.from(f32, (v) => f32ToF16(v)).buffer)],
      ['F8_E4M3', Uint8Array.from(f32, (v) => f32ToE4M3(v * 100))],
    ];
    const jobs: QuantJob[] = sources.flatMap(([dtype, bytes]) => [
      { target: 'nbits' as const, bytes, dtype, n: 32, k: 256, opts: { bits: 4 as NBits, zeroPoints: true, blockSize: 64 } },
      { target: 'f16' as const, bytes, dtype, n: 32, k: 256, opts: { bits: 8 as NBits }, ...(dtype === 'F8_E4M3' ? { scale: Float32Array.of(0.01) } : {}) },
    ]);
    const pool = new QuantPool(2, file);
    try {
      const got = await Promise.all(jobs.map((j) => pool.run({ ...j, bytes: j.bytes.slice() })));
      jobs.forEach((j, i) => assert.deepEqual(got[i], runQuantJob(j), `${j.dtype} → ${j.target}`));
    } finally {
      await pool.close();
    }
  });
});
