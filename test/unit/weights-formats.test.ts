// Weights (onnx/weights.ts) for the formats of GPUs without a float8 DequantizeLinear: int8/int4
// Linear weights as MatMulNBits blocks in the weight cache, and fp16 resident from an fp8 file.
import * as assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { compare } from '../helpers/golden';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as ort from 'onnxruntime-node';
import { f32ToBf16, f32ToE4M3, toFloat32 } from '../../src/inference/formats/dtypes';
import { Graph } from '../../src/inference/onnx/graph';
import { pruneWeightCaches, WeightCache } from '../../src/inference/onnx/weightCache';
import { WeightOptions } from '../../src/inference/onnx/weightOptions';
import { WeightFormat, Weights } from '../../src/inference/onnx/weights';
import { openTensors, TensorSource } from '../../src/inference/formats/safetensors';
import { writeSafetensors } from '../../src/inference/formats/safetensorsWriter';

const N = 384;
const K = 320;

function gaussian(n: number, std: number, seed: number): Float32Array {
  let s = seed >>> 0;
  const u = () => ((s = (Math.imul(s, 1664525) + 1013904223) >>> 0) + 1) / 4294967297;
  return Float32Array.from({ length: n }, () => std * Math.sqrt(-2 * Math.log(u())) * Math.cos(2 * Math.PI * u()));
}

/** A bf16 Linear `lin` [N, K] with bias, and the same weight as F8_E4M3 with a per-tensor scale. */
function writeCheckpoints(dir: string): { bf16: string; fp8: string } {
  const w = gaussian(N * K, 1 / Math.sqrt(K), 1);
  const bias = gaussian(N, 0.02, 2);
  const bf = (x: Float32Array) => new Uint8Array(Uint16Array.from(x, (v) => f32ToBf16(v)).buffer);
  const bf16 = path.join(dir, 'lin.safetensors');
  writeSafetensors(bf16, [
    { name: 'lin.weight', dtype: 'BF16', shape: [N, K], bytes: () => bf(w) },
    { name: 'lin.bias', dtype: 'BF16', shape: [N], bytes: () => bf(bias) },
  ]);
  const scale = 0.01;
  const fp8 = path.join(dir, 'lin-fp8.safetensors');
  writeSafetensors(fp8, [
    { name: 'lin.weight', dtype: 'F8_E4M3', shape: [N, K], bytes: () => Uint8Array.from(w, (v) => f32ToE4M3(v / scale)) },
    { name: 'lin.weight_scale', dtype: 'F32', shape: [], bytes: () => new Uint8Array(Float32Array.of(scale).buffer) },
    { name: 'lin.bias', dtype: 'BF16', shape: [N], bytes: () => bf(bias) },
  ]);
  return { bf16, fp8 };
}

/** The pid of a process that has ended. */
function deadPid(): number {
  return Number(spawnSync(process.execPath, ['-e', 'process.stdout.write(String(process.pid))'], { encoding: 'utf8' }).stdout);
}

/** x [M, K] → Linear through Weights.dense (2-D) and Weights.linear (3-D) on the CPU provider. */
async function run(src: TensorSource, opts: WeightOptions, x: Float32Array, m: number): Promise<{ dense: Float32Array; linear: Float32Array; graph: Graph }> {
  const g = new Graph('lin');
  const w = new Weights(g, src, { inlineLimit: 64, ...opts }, ['lin.weight']);
  const x2 = g.input('x', 'float32', [m, K]);
  const x3 = g.op('Unsqueeze', [x2, g.i64([0])]);
  g.output(w.dense(x2, 'lin', w.gate(x2)), 'dense', 'float32', [m, N]);
  g.output(w.linear(x3, 'lin', w.gate(x3)), 'linear', 'float32', [1, m, N]);
  const session = await ort.InferenceSession.create(g.toBytes(), { extra: { session: { model_external_initializers_file_folder_path: w.folder() } } });
  try {
    const out = await session.run({ x: new ort.Tensor('float32', x, [m, K]) });
    return { dense: out.dense.data as Float32Array, linear: out.linear.data as Float32Array, graph: g };
  } finally {
    await session.release();
  }
}

function reference(src: TensorSource, x: Float32Array, m: number): Float32Array {
  const w = src.readF32('lin.weight');
  const scale = src.has('lin.weight_scale') ? src.readF32('lin.weight_scale')[0] : 1;
  const b = toFloat32(src.readBytes('lin.bias'), 'BF16');
  const y = new Float32Array(m * N);
  for (let i = 0; i < m; i++) {
    for (let o = 0; o < N; o++) {
      let acc = b[o];
      for (let j = 0; j < K; j++) acc += x[i * K + j] * w[o * K + j] * scale;
      y[i * N + o] = acc;
    }
  }
  return y;
}

const relL2 = (a: ArrayLike<number>, b: ArrayLike<number>) => compare(a, b).relL2;

describe('Weights: int8/int4 (MatMulNBits) and fp16 formats', function () {
  this.timeout(120_000);
  let dir: string;
  let files: { bf16: string; fp8: string };
  const m = 5;
  const x = gaussian(m * K, 1, 3);

  before(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'majicflux-wfmt-'));
    files = writeCheckpoints(dir);
  });
  after(() => fs.rmSync(dir, { recursive: true, force: true }));

  // Output error vs the float64 product with the source weights: the measured value, rounded up.
  const cases: Array<[WeightFormat, 'bf16' | 'fp8', boolean, number]> = [
    ['int8', 'bf16', false, 7e-3], // measured 6.2e-3
    ['int8', 'bf16', true, 6.5e-3], // 5.8e-3
    ['int4', 'bf16', false, 0.112], // 0.102
    ['int4', 'bf16', true, 0.107], // 0.097
    ['int8', 'fp8', false, 6.5e-3], // 5.7e-3 (the file's scale applied before quantizing)
    ['fp16', 'fp8', false, 3e-4], // 2.6e-4: the scale multiplies in float16
    ['fp16', 'bf16', false, 1e-6], // 2.1e-7: bf16 → fp16 is exact in range
  ];
  const viaCache = new Set<WeightFormat>(['fp16']);
  for (const [format, file, zeroPoints, bound] of cases) {
    it(`${format}${zeroPoints ? ' with zero points' : ''} from a ${file} file: relative L2 ≤ ${bound}`, async () => {
      const src = openTensors(files[file]);
      try {
        const cacheDir = path.join(dir, 'cache');
        const opts: WeightOptions = { format, zeroPoints, cacheDir };
        if (format.startsWith('int')) await Weights.prefill(src, { inlineLimit: 64, ...opts }, ['lin.weight'], 2);
        const ref = reference(src, x, m);
        if (viaCache.has(format)) {
          // The same values converted into the cache (on workers) instead of by a folded Cast.
          const cached: WeightOptions = { ...opts, fp16Cache: true, cacheDir: path.join(dir, `f16-${file}`) };
          await Weights.prefill(src, { inlineLimit: 64, ...cached }, ['lin.weight'], 2);
          const c = await run(src, cached, x, m);
          assert.ok(c.graph.initializerSummary().some((i) => i.type === 'float16' && /^weights-\d+-[0-9a-f]{12}\.bin$/.test(i.external?.location ?? '')), 'fp16 weight from the cache');
          assert.ok(relL2(c.dense, ref) <= bound, `fp16 from the cache: relative L2 ${relL2(c.dense, ref)} > ${bound}`);
        }
        const { dense, linear, graph } = await run(src, opts, x, m);
        assert.ok(relL2(dense, ref) <= bound, `dense: relative L2 ${relL2(dense, ref)} > ${bound}`);
        assert.ok(relL2(linear, dense) < 1e-6, 'linear (3-D) and dense (2-D) differ');
        if (format.startsWith('int')) {
          const inits = graph.initializerSummary();
          const packed = inits.find((i) => i.name.startsWith('lin.weight.q'))!;
          assert.equal(packed.type, 'uint8');
          assert.equal(packed.bytes, N * Math.ceil(K / 128) * 128 * (format === 'int8' ? 1 : 0.5), 'packed size');
          assert.ok(!inits.some((i) => i.type === 'float32' && i.bytes >= N * K), 'no float copy of the weight');
        }
      } finally {
        src.close();
      }
    });
  }

  it('fp8 by table lookup equals DequantizeLinear bit for bit: a scaled fp8 file, a bf16 file quantized per row, and an odd row length', async () => {
    const cache = path.join(dir, 'lookup-cache');
    // One scale ≠ 1 is folded into a 256-entry table of single codes; per-row scales multiply pairs of codes.
    for (const [file, label, stored] of [[files.fp8, 'fp8 file, per-tensor scale 0.01', 'uint8'], [files.bf16, 'bf16 file, per-row scales', 'uint16']] as const) {
      const opts: WeightOptions = { format: 'fp8', cacheDir: cache };
      const lookup = await run(openTensors(file), { ...opts, fp8Decode: 'lookup' }, x, m);
      const dq = await run(openTensors(file), { ...opts, fp8Decode: 'dequantize' }, x, m);
      assert.deepEqual(lookup.dense, dq.dense, label);
      assert.deepEqual(lookup.linear, dq.linear, label);
      const types = new Set(lookup.graph.initializerSummary().filter((i) => i.external).map((i) => i.type));
      assert.deepEqual([...types], [stored], label);
    }
    // K = 7: no pairs; single codes from the 256-entry table.
    const odd = path.join(dir, 'odd.safetensors');
    const w = gaussian(3 * 7, 0.5, 9);
    writeSafetensors(odd, [{ name: 'o.weight', dtype: 'F8_E4M3', shape: [3, 7], bytes: () => Uint8Array.from(w, (v) => f32ToE4M3(v)) }]);
    const outOf = async (fp8Decode: WeightOptions['fp8Decode']) => {
      const g = new Graph('odd');
      const wt = new Weights(g, openTensors(odd), { format: 'fp8', inlineLimit: 0, fp8Decode }, ['o.weight']);
      const xi = g.input('x', 'float32', [2, 7]);
      g.output(wt.linear(xi, 'o', wt.gate(xi), false), 'y', 'float32', [2, 3]);
      const session = await ort.InferenceSession.create(g.toBytes(), { extra: { session: { model_external_initializers_file_folder_path: wt.folder() } } });
      try {
        return { y: (await session.run({ x: new ort.Tensor('float32', gaussian(14, 1, 4), [2, 7]) })).y.data as Float32Array, types: g.initializerSummary().filter((i) => i.external).map((i) => i.type) };
      } finally {
        await session.release();
      }
    };
    const a = await outOf('lookup');
    const b = await outOf('dequantize');
    assert.deepEqual(a.types, ['uint8']);
    assert.deepEqual(a.y, b.y);
  });

  it('fp8 from int32 words and by GatherBlockQuantized (WebGPU) equal DequantizeLinear bit for bit: the decoded weights of a scaled fp8 file and of a bf16 file quantized per row', async () => {
    const cache = path.join(dir, 'words-cache');
    /** The weight [N, K] as Weights.matrix decodes it (float32 compute). */
    const decoded = async (file: string, fp8Decode: WeightOptions['fp8Decode']) => {
      const g = new Graph('w');
      const wt = new Weights(g, openTensors(file), { format: 'fp8', cacheDir: cache, inlineLimit: 64, fp8Decode }, ['lin.weight']);
      const xi = g.input('x', 'float32', [1, K]);
      g.output(wt.matrix('lin.weight', wt.gate(xi)), 'w', 'float32', [N, K]);
      const session = await ort.InferenceSession.create(g.toBytes(), { extra: { session: { model_external_initializers_file_folder_path: wt.folder() } } });
      try {
        return { w: (await session.run({ x: new ort.Tensor('float32', new Float32Array(K), [1, K]) })).w.data as Float32Array, types: g.initializerSummary().filter((i) => i.external).map((i) => i.type) };
      } finally {
        await session.release();
      }
    };
    // The file's own codes as the int32 words the decode reads: negative words (top code ≥ 0x80),
    // among them some whose low byte is 0 (remainder 0, no correction), must be there.
    const fp8File = openTensors(files.fp8);
    const codes = fp8File.readBytes('lin.weight');
    const asWords = new Int32Array(codes.slice().buffer);
    assert.ok(asWords.some((v) => v < 0) && asWords.some((v) => v < 0 && (v & 0xff) === 0), 'negative words, some with a zero low byte');
    for (const [file, label] of [[files.fp8, 'fp8 file, per-tensor scale 0.01'], [files.bf16, 'bf16 file, per-row scales']] as const) {
      const words = await decoded(file, 'words');
      const gather = await decoded(file, 'gather');
      const dq = await decoded(file, 'dequantize');
      assert.deepEqual(words.types, ['int32'], label);
      assert.deepEqual(gather.types, ['float8e4m3fn'], `${label}: gather reads the float8 bytes as they are`);
      assert.ok(words.w.some((v) => v < 0) && words.w.some((v) => v > 0), `${label}: codes of both signs`);
      assert.deepEqual(words.w, dq.w, label);
      assert.deepEqual(gather.w, dq.w, `${label}, gather`);
    }
    // The product on top (MatMul on the transpose, not Gemm): the same to float32 rounding.
    const dq = await run(openTensors(files.fp8), { format: 'fp8', cacheDir: cache, fp8Decode: 'dequantize' }, x, m);
    for (const fp8Decode of ['words', 'gather'] as const) {
      const r = await run(openTensors(files.fp8), { format: 'fp8', cacheDir: cache, fp8Decode }, x, m);
      assert.ok(relL2(r.dense, dq.dense) < 1e-6 && relL2(r.linear, dq.linear) < 1e-6, fp8Decode);
    }
  });

  it('pruneWeightCaches removes the least recently used complete caches past the limit, never one in use nor one being written', () => {
    const root = path.join(dir, 'prune');
    const make = (name: string, bytes: number, usedSecondsAgo: number, complete = true) => {
      const d = path.join(root, name);
      fs.mkdirSync(d, { recursive: true });
      fs.writeFileSync(path.join(d, complete ? 'weights.bin' : 'weights.bin.partial'), Buffer.alloc(bytes));
      if (complete) {
        fs.writeFileSync(path.join(d, 'index.json'), '{}');
        const t = new Date(Date.now() - usedSecondsAgo * 1000);
        fs.utimesSync(path.join(d, 'index.json'), t, t);
      }
      return d;
    };
    const oldest = make('oldest', 3000, 300);
    const inUse = make('in-use', 3000, 200);
    const older = make('older', 3000, 100);
    const newest = make('newest', 3000, 10);
    const writing = make('writing', 3000, 0, false);
    // Marked in use by another running process (another window's server), and by one that is gone.
    const elsewhere = make('elsewhere', 3000, 250);
    fs.writeFileSync(path.join(elsewhere, `inuse-${process.ppid}`), '');
    fs.writeFileSync(path.join(oldest, `inuse-${deadPid()}`), '');
    const r = pruneWeightCaches(root, 10_000, new Set([inUse]));
    assert.deepEqual(r.removed, [oldest, older], 'oldest first, skipping the ones in use here and in a running process, until ≤ 10,000 bytes');
    assert.ok(fs.existsSync(elsewhere));
    assert.equal(r.bytes, 2 * (3000 + '{}'.length), 'their folders\' bytes');
    for (const d of [inUse, newest, writing]) assert.ok(fs.existsSync(d), d);
    fs.rmSync(elsewhere, { recursive: true });
    assert.deepEqual(pruneWeightCaches(root, 7000, new Set([inUse])).removed, [], 'within the limit: nothing more');
    assert.deepEqual(pruneWeightCaches(path.join(dir, 'no-such-folder'), 1).removed, []);
  });

  it('opening a complete cache marks it used (its index time), which pruning goes by', async () => {
    const src = openTensors(files.bf16);
    const cacheDir = path.join(dir, 'touch');
    const opts: WeightOptions = { format: 'int8', cacheDir, inlineLimit: 64 };
    await Weights.prefill(src, opts, ['lin.weight'], 1);
    new Weights(new Graph('g'), src, opts, ['lin.weight']).folder();
    const index = path.join(cacheDir, WeightCache.keyFor(src, opts), 'cache.json');
    const long = new Date(Date.now() - 3600_000);
    fs.utimesSync(index, long, long);
    WeightCache.open(cacheDir, src, opts);
    assert.ok(Date.now() - fs.statSync(index).mtimeMs < 60_000, 'touched on open');
  });

  it('a weights.bin cut short under an intact index (a failed copy or disk) is built again, not refused by every load', async () => {
    const src = openTensors(files.bf16);
    const cacheDir = path.join(dir, 'truncated');
    try {
      const opts: WeightOptions = { format: 'int8', cacheDir, inlineLimit: 64 };
      await Weights.prefill(src, opts, ['lin.weight'], 1);
      const good = await run(src, opts, x, m);
      const bin = path.join(cacheDir, WeightCache.keyFor(src, opts), WeightCache.open(cacheDir, src, opts).file);
      fs.truncateSync(bin, Math.floor(fs.statSync(bin).size / 2));
      assert.equal(WeightCache.open(cacheDir, src, opts).complete, false, 'not taken as complete');
      const again = await run(src, opts, x, m);
      assert.deepEqual(again.dense, good.dense, 'the same result from the rebuilt cache');
      assert.equal(WeightCache.open(cacheDir, src, opts).complete, true);
    } finally {
      src.close();
    }
  });

  it('two processes converting one model at once (two windows, the CLI beside the extension) each load from their own data file; the first to commit names the cache\'s, which stays', async () => {
    const src = openTensors(files.bf16);
    const cacheDir = path.join(dir, 'two-writers');
    const opts: WeightOptions = { format: 'int8', cacheDir, inlineLimit: 64 };
    try {
      // This process converts first and has not committed when another process converts and commits the same cache.
      await Weights.prefill(src, opts, ['lin.weight'], 1);
      const folder = path.join(cacheDir, WeightCache.keyFor(src, opts));
      const root = path.resolve(__dirname, '../..');
      const other = [
        `const { Weights } = require(${JSON.stringify(path.join(root, 'src/inference/onnx/weights'))});`,
        `const { Graph } = require(${JSON.stringify(path.join(root, 'src/inference/onnx/graph'))});`,
        `const { openTensors } = require(${JSON.stringify(path.join(root, 'src/inference/formats/safetensors'))});`,
        `const opts = ${JSON.stringify(opts)};`,
        `const src = openTensors(${JSON.stringify(files.bf16)});`,
        `Weights.prefill(src, opts, ['lin.weight'], 1).then(() => {`,
        `  const g = new Graph('lin'); const w = new Weights(g, src, opts, ['lin.weight']);`,
        `  const x = g.input('x', 'float32', [1, ${K}]); g.output(w.dense(x, 'lin', w.gate(x)), 'y', 'float32', [1, ${N}]);`,
        `  w.folder(); process.stdout.write(String(process.pid));`,
        `});`,
      ].join('\n');
      const child = spawnSync(process.execPath, ['-r', 'tsx/cjs', '-e', other], { cwd: root, encoding: 'utf8' });
      assert.equal(child.status, 0, child.stderr);
      const readIndex = () => JSON.parse(fs.readFileSync(path.join(folder, 'cache.json'), 'utf8')) as { file: string };
      const theirs = readIndex().file;
      assert.match(theirs, new RegExp(`^weights-${child.stdout}-[0-9a-f]{12}\\.bin$`), 'the other process\'s cache is complete');
      // Ours commits after theirs: its graph reads its own file; the index, and the file it names, stay theirs (a reader may be loading from it).
      const ours = await run(src, opts, x, m);
      const own = ours.graph.initializerSummary().find((i) => i.external)!.external!.location;
      assert.match(own, new RegExp(`^weights-${process.pid}-[0-9a-f]{12}\\.bin$`));
      assert.equal(readIndex().file, theirs);
      assert.deepEqual(fs.readdirSync(folder).sort(), ['cache.json', `inuse-${child.stdout}`, `inuse-${process.pid}`, own, theirs, 'source.json'].sort(), 'no partial or temp file left; each process marked the folder in use');
      assert.ok(relL2(ours.dense, reference(src, x, m)) < 0.01, 'this process\'s result from its own data');
      const reopened = WeightCache.open(cacheDir, src, opts);
      assert.equal(reopened.complete, true);
      assert.equal(reopened.file, theirs);
      assert.deepEqual((await run(src, opts, x, m)).dense, ours.dense, 'the same from the cache the other process wrote');
      assert.ok(fs.existsSync(path.join(folder, own)), 'this process\'s own file stays while it runs');

      // A damaged index is no index: the next writer's replaces it.
      fs.writeFileSync(path.join(folder, 'cache.json'), '{');
      assert.equal(WeightCache.open(cacheDir, src, opts).complete, false);
      const rebuilt = await run(src, opts, x, m);
      assert.deepEqual(rebuilt.dense, ours.dense);
      assert.equal(readIndex().file, rebuilt.graph.initializerSummary().find((i) => i.external)!.external!.location, 'the new index names the new file');

      // A running process's data file stays (it may still load from it), and an older version's
      // weights.bin; a gone writer's data, partial and temp files go.
      const live = `weights-${process.ppid}-0123456789ab.bin`;
      const dead = [`weights-${child.stdout}-ba9876543210.bin.partial`, `weights-${child.stdout}-aaaaaaaaaaaa.bin`, `.cache.json.${child.stdout}-0123456789ab.tmp`, `inuse-${child.stdout}`];
      for (const f of [live, 'weights.bin', ...dead]) fs.writeFileSync(path.join(folder, f), 'x');
      WeightCache.open(cacheDir, src, opts);
      assert.ok(fs.existsSync(path.join(folder, live)), 'a running process\'s file stays');
      assert.ok(fs.existsSync(path.join(folder, 'weights.bin')), 'an older version\'s file stays');
      assert.deepEqual(dead.filter((f) => fs.existsSync(path.join(folder, f))), [], 'a gone process\'s files are removed');
    } finally {
      src.close();
    }
  });

  it('a cache written before each writer named its data file (index.json the entry map, the data in weights.bin) still loads, unconverted', async () => {
    const src = openTensors(files.bf16);
    const cacheDir = path.join(dir, 'legacy');
    const opts: WeightOptions = { format: 'int8', cacheDir, inlineLimit: 64 };
    try {
      await Weights.prefill(src, opts, ['lin.weight'], 1);
      const now = await run(src, opts, x, m);
      const folder = path.join(cacheDir, WeightCache.keyFor(src, opts));
      const index = JSON.parse(fs.readFileSync(path.join(folder, 'cache.json'), 'utf8')) as { file: string; entries: object };
      fs.renameSync(path.join(folder, index.file), path.join(folder, 'weights.bin'));
      fs.rmSync(path.join(folder, 'cache.json'));
      fs.writeFileSync(path.join(folder, 'index.json'), JSON.stringify(index.entries));
      const reads: string[] = [];
      const spy: TensorSource = Object.assign(Object.create(src), { readBytes: (n: string) => (reads.push(n), src.readBytes(n)), readF32: (n: string) => (reads.push(n), src.readF32(n)) });
      const before = await run(spy, opts, x, m);
      assert.deepEqual(before.dense, now.dense);
      assert.deepEqual(reads.filter((n) => n === 'lin.weight'), [], 'not converted again');
      assert.ok(before.graph.initializerSummary().some((i) => i.external?.location === 'weights.bin'));
    } finally {
      src.close();
    }
  });

  it('a write that fails while converting (a full disk) removes the partial file at once; the next build starts afresh', async () => {
    const src = openTensors(files.bf16);
    const cacheDir = path.join(dir, 'disk-full');
    const opts: WeightOptions = { format: 'int8', cacheDir, inlineLimit: 64 };
    // The module object itself (the imports read through to it): every write fails as on a full disk.
    const nodeFs = require('node:fs') as { writeSync: unknown };
    const writeSync = nodeFs.writeSync;
    nodeFs.writeSync = () => {
      throw Object.assign(new Error('ENOSPC: no space left on device, write'), { code: 'ENOSPC' });
    };
    try {
      await assert.rejects(run(src, opts, x, m), /ENOSPC/);
    } finally {
      nodeFs.writeSync = writeSync;
    }
    const folder = path.join(cacheDir, WeightCache.keyFor(src, opts));
    assert.deepEqual(fs.readdirSync(folder), [`inuse-${process.pid}`], 'no partial file left taking the space (only the in-use mark)');
    const ok = await run(src, opts, x, m);
    assert.ok(ok.dense.length > 0);
    assert.equal(WeightCache.open(cacheDir, src, opts).complete, true);
    src.close();
  });

  it('a second build reuses the complete cache (prefilled on workers) without reading the checkpoint', async () => {
    const src = openTensors(files.bf16);
    const cacheDir = path.join(dir, 'cache2');
    try {
      await Weights.prefill(src, { format: 'int4', cacheDir, inlineLimit: 64 }, ['lin.weight'], 2);
      const first = await run(src, { format: 'int4', cacheDir }, x, m);
      const reads: string[] = [];
      const spy: TensorSource = Object.assign(Object.create(src), { readBytes: (n: string) => (reads.push(n), src.readBytes(n)), readF32: (n: string) => (reads.push(n), src.readF32(n)) });
      const second = await run(spy, { format: 'int4', cacheDir }, x, m);
      assert.deepEqual(second.dense, first.dense);
      assert.deepEqual(reads.filter((n) => n === 'lin.weight'), []);
      assert.equal(fs.readdirSync(cacheDir).length, 1);
    } finally {
      src.close();
    }
  });
});
