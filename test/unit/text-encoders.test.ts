// CLIP-L and T5 encoder graphs against the flux-tiny goldens (transformers 5.17, float32).
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as ort from 'onnxruntime-node';
import { BuiltEncoder, buildClip, ClipEncoder, EncoderWeightFormat, readClipConfig } from '../../src/inference/graphs/clip';
import { buildT5, readT5Config, relativePositionBucket, relativePositionBuckets, T5Encoder } from '../../src/inference/graphs/t5';
import { ModelProto } from '../../src/inference/onnx/proto';
import { createSession } from '../../src/inference/onnx/session';
import { openTensors, TensorSource } from '../../src/inference/formats/safetensors';
import { assertGoldenClose, ErrorStats, FIXTURES, GOLDEN_MODELS, goldenCase } from '../helpers/golden';

const CLIP_DIR = path.join(GOLDEN_MODELS, 'text_encoder');
const T5_DIR = path.join(GOLDEN_MODELS, 'text_encoder_2');
const PROMPTS = [0, 5, 13];
const ids = (n: number, which: 'clip' | 't5') => Int32Array.from(goldenCase('text_encoders.safetensors').readF32(`${n}.${which}_ids`));
const expected = (key: string) => goldenCase('text_encoders.safetensors').readF32(key);

const measured: string[] = [];
function check(actual: Float32Array, key: string, what: string, bounds?: { maxAbsRel: number; relL2: number }): ErrorStats {
  const s = assertGoldenClose(actual, expected(key), what, bounds);
  measured.push(`${what.padEnd(34)} max abs ${s.maxAbs.toExponential(2)} (${(s.maxAbs / s.maxRef).toExponential(2)} of max)  rel L2 ${s.relL2.toExponential(2)}`);
  return s;
}
after(() => console.log(`      measured:\n${measured.map((m) => `        ${m}`).join('\n')}`));

describe('CLIP text encoder (flux-tiny golden)', () => {
  let clip: ClipEncoder;
  before(async () => (clip = await ClipEncoder.load(CLIP_DIR)));
  after(() => clip?.release());

  for (const n of PROMPTS) {
    it(`prompt ${n}: last_hidden_state and pooled`, async () => {
      const out = await clip.encode(ids(n, 'clip'));
      check(out.hidden, `${n}.clip_last_hidden`, `clip ${n} last_hidden`);
      check(out.pooled, `${n}.clip_pooled`, `clip ${n} pooled`);
    });
  }

  it('encodes a batch of two prompts like two single ones', async () => {
    const out = await clip.encode(Int32Array.from([...ids(0, 'clip'), ...ids(13, 'clip')]));
    const D = clip.cfg.hiddenSize;
    assertGoldenClose(out.pooled.subarray(0, D), expected('0.clip_pooled'), 'batch[0] pooled');
    assertGoldenClose(out.pooled.subarray(D), expected('13.clip_pooled'), 'batch[1] pooled');
    assertGoldenClose(out.hidden.subarray(77 * D), expected('13.clip_last_hidden'), 'batch[1] hidden');
  });

  it('pools at the first eos_token_id when the config does not use the legacy id 2', async () => {
    const src = openTensors(CLIP_DIR);
    try {
      const b = buildClip(src, { ...readClipConfig(src), eosTokenId: 49407 });
      const s = await createSession(b.graph, { weightsFolder: b.weightsFolder });
      const out = await s.run({ input_ids: new ort.Tensor('int32', ids(13, 'clip'), [1, 77]) });
      await s.release();
      assertGoldenClose(out.pooled.data as Float32Array, expected('13.clip_pooled'), 'pooled');
    } finally {
      src.close();
    }
  });

  // On CPU onnxruntime runs the fp16 graph with casts around ops that lack fp16 kernels: this checks
  // the graph's typing and fp16 storage of activations, not GPU numerics.
  it('float16 compute stays within relative L2 1e-2', async () => {
    const c16 = await ClipEncoder.load(CLIP_DIR, { compute: 'float16' });
    try {
      const out = await c16.encode(ids(5, 'clip'));
      check(out.hidden, '5.clip_last_hidden', 'clip 5 last_hidden fp16 compute', { maxAbsRel: 1e-1, relL2: 1e-2 });
      check(out.pooled, '5.clip_pooled', 'clip 5 pooled fp16 compute', { maxAbsRel: 1e-1, relL2: 1e-2 });
    } finally {
      await c16.release();
    }
  });
});

describe('T5 encoder (flux-tiny golden)', () => {
  let t5: T5Encoder;
  before(async () => (t5 = await T5Encoder.load(T5_DIR, { maxLength: 512 })));
  after(() => t5?.release());

  for (const n of PROMPTS) {
    it(`prompt ${n}: last_hidden_state`, async () => {
      check(await t5.encode(ids(n, 't5')), `${n}.t5_hidden`, `t5 ${n} hidden`);
    });
  }

  it('encodes a batch of two prompts like two single ones', async () => {
    const out = await t5.encode(Int32Array.from([...ids(5, 't5'), ...ids(13, 't5')]));
    const half = out.length / 2;
    assertGoldenClose(out.subarray(0, half), expected('5.t5_hidden'), 'batch[0]');
    assertGoldenClose(out.subarray(half), expected('13.t5_hidden'), 'batch[1]');
  });

  it('float16 compute stays within relative L2 1e-2', async () => {
    const t16 = await T5Encoder.load(T5_DIR, { compute: 'float16' });
    try {
      check(await t16.encode(ids(0, 't5')), '0.t5_hidden', 't5 0 hidden fp16 compute', { maxAbsRel: 1e-1, relL2: 1e-2 });
    } finally {
      await t16.release();
    }
  });

  it('builds for 256 tokens (FLUX.1-schnell)', async () => {
    const t = await T5Encoder.load(T5_DIR, { maxLength: 256 });
    try {
      const x = new Int32Array(256);
      x.set(ids(0, 't5').subarray(0, 255));
      x[255] = 1;
      const out = await t.encode(x);
      assert.equal(out.length, 256 * t.cfg.dModel);
      assert.ok(out.every(Number.isFinite));
      await assert.rejects(t.encode(new Int32Array(300)), /built for 256/);
    } finally {
      await t.release();
    }
  });
});

describe('T5 relative position buckets', () => {
  it('match transformers _relative_position_bucket (bidirectional, 32 buckets, max distance 128)', () => {
    // key - query → bucket; keys after the query use the upper 16.
    const cases: Array<[number, number]> = [[0, 0], [-1, 1], [1, 17], [-7, 7], [-8, 8], [-15, 9], [-16, 10], [16, 26], [-31, 11], [-32, 12], [-64, 14], [-127, 15], [-128, 15], [500, 31]];
    for (const [rel, bucket] of cases) assert.equal(relativePositionBucket(rel, 32, 128), bucket, `relative position ${rel}`);
  });

  it('the 256-token table is the top-left block of the 512-token one', () => {
    const a = relativePositionBuckets(256, 32, 128);
    const b = relativePositionBuckets(512, 32, 128);
    for (let q = 0; q < 256; q++) assert.deepEqual(a.subarray(q * 256, (q + 1) * 256), b.subarray(q * 512, q * 512 + 256));
  });
});

describe('text encoder weights', () => {
  /** Bytes of every external initializer, and element counts of float initializers (inline or folded). */
  function initializers(bytes: Uint8Array) {
    const m = ModelProto.decode(bytes) as unknown as { graph: { initializer: Array<{ dims: number[]; dataType: number; dataLocation?: number; externalData?: Array<{ key: string; value: string }> }> } };
    let externalBf16 = 0, float = 0, bf16Elems = 0;
    for (const t of m.graph.initializer) {
      const n = t.dims.reduce((a, d) => a * Number(d), 1);
      if (t.dataLocation === 1 && t.dataType === 16) externalBf16 += Number(t.externalData!.find((e) => e.key === 'length')!.value);
      if (t.dataType === 16) bf16Elems += n;
      if (t.dataType === 1 || t.dataType === 10) float += n;
    }
    return { externalBf16, float, bf16Elems };
  }
  const matrixBytes = (src: TensorSource) => src.names().filter((n) => src.info(n).shape.length === 2).reduce((a, n) => a + src.info(n).byteLength, 0);

  async function runAndOptimize(built: BuiltEncoder, feeds: Record<string, Int32Array>, L: number) {
    const file = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'te-')), 'opt.onnx');
    const s = await createSession(built.graph, { weightsFolder: built.weightsFolder, optimizedModelPath: file });
    const out = await s.run(Object.fromEntries(Object.entries(feeds).map(([k, v]) => [k, new ort.Tensor('int32', v, [1, L])])));
    await s.release();
    const optimized = initializers(fs.readFileSync(file));
    fs.rmSync(path.dirname(file), { recursive: true });
    return { out, optimized };
  }

  for (const [format, folds] of [['source', false], ['fp16', true], ['fp32', true]] as Array<[EncoderWeightFormat, boolean]>) {
    it(`inlineLimit 0, format ${format}: weights are the file's bf16 bytes${folds ? '' : ', and stay bf16 after onnxruntime optimizes'}; outputs match`, async () => {
      const clipSrc = openTensors(CLIP_DIR);
      const t5Src = openTensors(T5_DIR);
      try {
        const clip = buildClip(clipSrc, readClipConfig(clipSrc), { format, inlineLimit: 0 });
        const t5 = buildT5(t5Src, readT5Config(t5Src), { format, inlineLimit: 0 });
        for (const [b, src] of [[clip, clipSrc], [t5, t5Src]] as const) {
          assert.equal(b.graph.externalBytes, matrixBytes(src), 'external bytes = every 2-D tensor of the checkpoint');
          assert.equal(initializers(b.graph.toBytes()).externalBf16, b.graph.externalBytes, 'all external data is bf16');
        }
        const c = await runAndOptimize(clip, { input_ids: ids(5, 'clip') }, 77);
        check(c.out.last_hidden_state.data as Float32Array, '5.clip_last_hidden', `clip 5 last_hidden (${format}, ext)`);
        check(c.out.pooled.data as Float32Array, '5.clip_pooled', `clip 5 pooled (${format}, ext)`);
        const t = await runAndOptimize(t5, { input_ids: ids(13, 't5') }, 512);
        check(t.out.last_hidden_state.data as Float32Array, '13.t5_hidden', `t5 13 hidden (${format}, ext)`);
        // With 'source' nothing is folded: the optimized model holds no more float elements than
        // the inline constants (norms, mask) and the matrices are still bf16.
        for (const [r, b, src] of [[c, clip, clipSrc], [t, t5, t5Src]] as const) {
          const before = initializers(b.graph.toBytes());
          assert.equal(r.optimized.float > before.float, folds, `resident float copies ${folds ? 'expected' : 'unexpected'} for ${format}`);
          if (!folds) assert.equal(r.optimized.bf16Elems * 2, matrixBytes(src));
        }
      } finally {
        clipSrc.close();
        t5Src.close();
      }
    });
  }
});

describe('text encoders with the fp16 weight cache (the GPU configuration)', () => {
  it('format fp16 + fp16Cache: the first load fills the cache (prefill), Linears are float16 from it with nothing large inlined, outputs match; a second load writes nothing', async () => {
    const cases = [
      { dir: T5_DIR, load: (o: object) => T5Encoder.load(T5_DIR, { maxLength: 512, ...o }), key: '13.t5_hidden', input: () => ids(13, 't5') },
      { dir: CLIP_DIR, load: (o: object) => ClipEncoder.load(CLIP_DIR, o), key: '5.clip_last_hidden', input: () => ids(5, 'clip') },
    ];
    for (const c of cases) {
      const cacheDir = fs.mkdtempSync(path.join(os.tmpdir(), 'te-f16-'));
      try {
        const opts = { format: 'fp16' as const, fp16Cache: true, cacheDir, inlineLimit: 0 };
        // Files and their contents' times; the index's time is the cache's last use (pruning), so its bytes count instead.
        const list = () => (fs.readdirSync(cacheDir, { recursive: true }) as string[]).map(String).sort().filter((f) => !fs.statSync(path.join(cacheDir, f)).isDirectory())
          .map((f) => (f.endsWith('cache.json') ? `${f}=${fs.readFileSync(path.join(cacheDir, f), 'utf8').length}` : `${f}@${fs.statSync(path.join(cacheDir, f)).mtimeMs}`));
        const enc = await c.load(opts);
        try {
          const out = await (enc as { encode(i: Int32Array): Promise<Float32Array | { hidden: Float32Array }> }).encode(c.input());
          check(out instanceof Float32Array ? out : out.hidden, c.key, `${c.key} (fp16 cache)`);
        } finally {
          await enc.release();
        }
        const first = list();
        assert.equal(first.filter((f) => /weights-\d+-[0-9a-f]{12}\.bin@/.test(f)).length, 1, `one cache file: ${first.join(', ')}`);
        // The graph the load built, rebuilt from the filled cache: Linears are float16 external data from it.
        const src = openTensors(c.dir);
        const built = c.dir === T5_DIR ? buildT5(src, readT5Config(src), opts) : buildClip(src, readClipConfig(src), opts);
        src.close();
        const inits = built.graph.initializerSummary();
        assert.ok(inits.some((i) => /^weights-\d+-[0-9a-f]{12}\.bin$/.test(i.external?.location ?? '') && i.type === 'float16'), 'Linear weights come from the cache as float16');
        assert.deepEqual(inits.filter((i) => !i.external && (i.type === 'float32' || i.type === 'float16') && i.bytes > 1 << 16), [], 'no large inline float constant');
        const again = await c.load(opts);
        await again.release();
        assert.deepEqual(list(), first, 'the second load writes nothing (it marks the cache used)');
      } finally {
        fs.rmSync(cacheDir, { recursive: true, force: true });
      }
    }
  });
});

describe('text encoder configs', () => {
  it('reads FLUX.1-dev CLIP-L and T5-XXL config.json', () => {
    assert.deepEqual(readClipConfig(path.join(FIXTURES, 'FLUX.1-dev', 'text_encoder')), {
      hiddenSize: 768, intermediateSize: 3072, layers: 12, heads: 12, maxPositions: 77, eps: 1e-5, act: 'quick_gelu', eosTokenId: 2,
    });
    assert.deepEqual(readT5Config(path.join(FIXTURES, 'FLUX.1-dev', 'text_encoder_2')), {
      dModel: 4096, dKv: 64, dFf: 10240, layers: 24, heads: 64, numBuckets: 32, maxDistance: 128, eps: 1e-6, gated: true, act: 'gelu_tanh',
    });
  });

  it('falls back to tensor shapes without config.json', () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'te-cfg-'));
    try {
      fs.symlinkSync(path.join(CLIP_DIR, 'model.safetensors'), path.join(dir, 'clip.safetensors'));
      const fromShapes = readClipConfig(path.join(dir, 'clip.safetensors'));
      // Heads come from CLIP-L's head width 64; the tiny model has 4 heads of 8.
      assert.deepEqual({ ...fromShapes, heads: 4 }, readClipConfig(CLIP_DIR));
      fs.unlinkSync(path.join(dir, 'clip.safetensors'));
      for (const f of fs.readdirSync(T5_DIR)) if (f !== 'config.json') fs.symlinkSync(path.join(T5_DIR, f), path.join(dir, f));
      assert.deepEqual(readT5Config(dir), readT5Config(T5_DIR));
    } finally {
      fs.rmSync(dir, { recursive: true });
    }
  });
});
