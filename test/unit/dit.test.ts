import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { bflLinears, buildDit, ropeTables } from '../../src/inference/graphs/dit';
import { DitInputs, FluxTransformer, FluxTransformerOptions } from '../../src/inference/graphs/fluxTransformer';
import { openComponent } from '../../src/inference/formats/layouts/components';
import { DitWeights } from '../../src/inference/formats/layouts/ditWeights';
import { openTensors, TensorInfo, TensorSource } from '../../src/inference/formats/safetensors';
import { writeSafetensors } from '../../src/inference/formats/safetensorsWriter';
import { assertGoldenClose, compare, GOLDEN, GOLDEN_MODELS, goldenCase } from '../helpers/golden';

const BF16_FILE = path.join(GOLDEN_MODELS, 'flux-tiny.safetensors');
const FP8_FILE = path.join(GOLDEN_MODELS, 'flux-tiny-fp8.safetensors');
const DIFFUSERS_DIR = path.join(GOLDEN_MODELS, 'transformer');
const params = openComponent(BF16_FILE, 'dit').config;
const golden = JSON.parse(fs.readFileSync(path.join(GOLDEN, 'generated.json'), 'utf8'));

function inputs(k: string): DitInputs {
  const c = goldenCase('transformer.safetensors');
  return {
    img: c.readF32('hidden_states'),
    txt: c.readF32('encoder_hidden_states'),
    vec: c.readF32('pooled_projections'),
    timestep: c.readF32(`${k}.timestep`)[0],
    guidance: c.readF32(`${k}.guidance`)[0],
    imgIds: c.readF32('img_ids'),
    txtIds: c.readF32('txt_ids'),
  };
}
const expected = (name: string) => goldenCase('transformer.safetensors').readF32(name);

async function run(source: string | DitWeights, opts: FluxTransformerOptions, cases: string[], config = typeof source === 'string' ? undefined : params): Promise<Float32Array[]> {
  const t = await FluxTransformer.load(source, config, opts);
  try {
    const outs: Float32Array[] = [];
    for (const k of cases) outs.push(await t.forward(inputs(k)));
    return outs;
  } finally {
    await t.release();
  }
}

/** A TensorSource that counts reads of 2-D tensors (Linear weights). */
class CountingSource implements TensorSource {
  weightReads = 0;
  constructor(readonly inner: TensorSource) {}
  get path() {
    return this.inner.path;
  }
  names() {
    return this.inner.names();
  }
  has(n: string) {
    return this.inner.has(n);
  }
  info(n: string): TensorInfo {
    return this.inner.info(n);
  }
  private count(n: string) {
    if (this.info(n).shape.length === 2) this.weightReads++;
  }
  readBytes(n: string) {
    this.count(n);
    return this.inner.readBytes(n);
  }
  readF32(n: string) {
    this.count(n);
    return this.inner.readF32(n);
  }
  readF16(n: string) {
    this.count(n);
    return this.inner.readF16(n);
  }
  close() {}
}

describe('Flux DiT (graphs/dit.ts)', function () {
  this.timeout(300_000);

  it('bf16 BFL checkpoint, fp32 weights: cases a, b, c match the golden outputs', async () => {
    const outs = await run(BF16_FILE, { format: 'fp32' }, ['a', 'b', 'c']);
    ['a', 'b', 'c'].forEach((k, i) => {
      const s = assertGoldenClose(outs[i], expected(`${k}.output`), `case ${k}`);
      console.log(`      ${k}: max abs ${s.maxAbs.toExponential(2)} (of ${s.maxRef.toFixed(2)}), rel L2 ${s.relL2.toExponential(2)}`);
    });
  });

  it('attention from MatMul → Softmax → MatMul (the WebGPU form), whole and with the queries in 3 pieces: the golden outputs', async () => {
    for (const attentionChunks of [1, 3]) {
      const t = await FluxTransformer.load(BF16_FILE, { format: 'fp32', attention: 'matmul', attentionChunks });
      try {
        for (const k of ['a', 'b', 'c']) assertGoldenClose(await t.forward(inputs(k)), expected(`${k}.output`), `matmul attention ×${attentionChunks}, case ${k}`);
      } finally {
        await t.release();
      }
    }
    const { graph } = buildDit(new DitWeights(openTensors(BF16_FILE), 'bfl-dit'), params, { format: 'fp32', attention: 'matmul', attentionChunks: 3 });
    const types = graph.liveNodeList().map((n) => n.opType);
    assert.ok(!types.includes('MultiHeadAttention'), 'no MultiHeadAttention node');
    assert.equal(types.filter((t) => t === 'Softmax').length, 3 * (params.depth + params.depth_single_blocks), 'three query pieces per block');
  });

  it('64 query pieces (a 2048² pass on WebGPU) are split and joined in levels of at most 8 — a WebGPU shader binds 16 buffers — and give the golden output', async () => {
    const t = await FluxTransformer.load(BF16_FILE, { format: 'fp32', attention: 'matmul', attentionChunks: 64 });
    try {
      assertGoldenClose(await t.forward(inputs('a')), expected('a.output'), 'matmul attention ×64, case a');
    } finally {
      await t.release();
    }
    const { graph } = buildDit(new DitWeights(openTensors(BF16_FILE), 'bfl-dit'), params, { format: 'fp32', attention: 'matmul', attentionChunks: 64 });
    const nodes = graph.liveNodeList();
    assert.equal(nodes.filter((n) => n.opType === 'Softmax').length, 64 * (params.depth + params.depth_single_blocks), '64 pieces per block');
    const widest = Math.max(...nodes.filter((n) => n.opType === 'Split').map((n) => n.output.length), ...nodes.filter((n) => n.opType === 'Concat').map((n) => n.input.length));
    assert.ok(widest <= 8, `a Split or Concat with ${widest} pieces`);
  });

  it('diffusers transformer/ folder, fp32 weights: cases a, b, c match the same golden outputs', async () => {
    const outs = await run(DIFFUSERS_DIR, { format: 'fp32', inlineLimit: 0 }, ['a', 'b', 'c']);
    ['a', 'b', 'c'].forEach((k, i) => {
      const s = assertGoldenClose(outs[i], expected(`${k}.output`), `diffusers case ${k}`);
      console.log(`      diffusers ${k}: max abs ${s.maxAbs.toExponential(2)}, rel L2 ${s.relL2.toExponential(2)}`);
    });
  });

  it('reads a BFL checkpoint whose names carry a model.diffusion_model. prefix', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'dit-prefix-'));
    try {
      const src = openTensors(BF16_FILE);
      const file = path.join(dir, 'prefixed.safetensors');
      writeSafetensors(file, src.names().map((n) => ({ name: `model.diffusion_model.${n}`, dtype: src.info(n).dtype, shape: src.info(n).shape, bytes: () => src.readBytes(n) })));
      // Without a sidecar the RoPE axes of a non-FLUX.1 head dim would be guessed: give the config.
      const [out] = await run(file, { format: 'fp32', inlineLimit: 0 }, ['b'], params);
      assertGoldenClose(out, expected('b.output'), 'prefixed case b');
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  it('WebGPU graph shape: RoPE is one RotaryEmbedding per q and k, modulation is LayerNormalization\'s scale/bias, attention writes present K/V (flash); still the golden output on the CPU', async () => {
    const { graph } = buildDit(new DitWeights(openTensors(BF16_FILE), 'bfl-dit'), params, { format: 'fp16', compute: 'float16', flashAttention: true, inlineLimit: 0 });
    const nodes = graph.nodeList();
    const of = (t: string) => nodes.filter((n) => n.opType === t);
    const blocks = params.depth + params.depth_single_blocks;
    assert.equal(of('RotaryEmbedding').length, 2 * blocks);
    assert.equal(of('MultiHeadAttention').length, blocks);
    assert.ok(of('MultiHeadAttention').every((n) => n.output.length === 3 && n.output.every((o) => o !== '')), 'present_key/value requested');
    // 4 modulated norms per double block, 1 per single block, 1 in the last layer; none followed by Mul.
    const norms = of('LayerNormalization');
    assert.equal(norms.length, 4 * params.depth + params.depth_single_blocks + 1);
    const consumers = (v: string) => nodes.filter((n) => n.input.includes(v)).map((n) => n.opType);
    assert.ok(norms.every((n) => !consumers(n.output[0]).includes('Mul')), 'no Mul after a modulated LayerNorm');
    // Splits: modulation (2 per double block, 1 per single, 1 last), qkv (2 / 1), linear1 (single): none from RoPE.
    assert.equal(of('Split').length, 4 * params.depth + 3 * params.depth_single_blocks + 1);
    // float16 clips where diffusers has them: the text stream after each double block, the joint stream after each single block.
    assert.equal(of('Clip').length, params.depth + params.depth_single_blocks);

    const [flash] = await run(BF16_FILE, { format: 'fp32', flashAttention: true }, ['a']);
    const s = assertGoldenClose(flash, expected('a.output'), 'flash-attention graph case a');
    console.log(`      present K/V graph a: rel L2 ${s.relL2.toExponential(2)}`);
  });

  it('fp8 checkpoint, fp8 weights: matches a.output_fp8_weights', async () => {
    const [out] = await run(FP8_FILE, { format: 'fp8' }, ['a']);
    const s = assertGoldenClose(out, expected('a.output_fp8_weights'), 'fp8 case a');
    console.log(`      fp8 a: max abs ${s.maxAbs.toExponential(2)}, rel L2 ${s.relL2.toExponential(2)}`);
  });

  it('builds the golden DiT in fp8 with 1 byte per Linear weight, still matching the fp8 golden', async () => {
    const src = openTensors(FP8_FILE);
    const { graph } = buildDit(new DitWeights(src, 'bfl-dit'), params, { format: 'fp8', inlineLimit: 0, fp8Decode: 'dequantize' });
    const inits = graph.initializerSummary();
    const external = inits.filter((i) => i.external);
    const linears = bflLinears(params).map((n) => `${n}.weight`);
    let linearElements = 0;
    for (const name of linears) {
      const t = src.info(name);
      const n = t.shape[0] * t.shape[1];
      linearElements += n;
      const refs = external.filter((i) => i.external!.offset === t.offset && i.external!.location === path.basename(t.file));
      assert.equal(refs.length, 1, `${name} is referenced once`);
      assert.equal(refs[0].type, 'float8e4m3fn', `${name} type`);
      assert.equal(refs[0].external!.length, n, `${name}: 1 byte per weight`);
    }
    // Nothing else is external, and what is inline is small (biases, norm scales, constants).
    assert.equal(external.length, linears.length);
    assert.equal(graph.externalBytes, linearElements);
    const inlineFloats = inits.filter((i) => !i.external && i.type === 'float32');
    assert.ok(inlineFloats.every((i) => i.dims.length <= 1), 'only 1-D float initializers are inline');
    assert.ok(!inits.some((i) => !i.external && i.dims.length === 2 && i.dims[0] * i.dims[1] > 1024), 'no inline matrix');

    const [out] = await run(FP8_FILE, { format: 'fp8', inlineLimit: 0 }, ['a']);
    assertGoldenClose(out, expected('a.output_fp8_weights'), 'external fp8 case a');
  });

  it('decodes fp8 by table lookup (the CPU default) bit-identically to DequantizeLinear, still 1 byte per weight', async () => {
    const src = openTensors(FP8_FILE);
    const { graph } = buildDit(new DitWeights(src, 'bfl-dit'), params, { format: 'fp8', inlineLimit: 0, fp8Decode: 'lookup' });
    const external = graph.initializerSummary().filter((i) => i.external);
    assert.equal(external.length, bflLinears(params).length);
    // Pairs of codes: uint16 [N, K/2] views of the fp8 bytes, still 1 byte per weight.
    assert.ok(external.every((i) => i.type === 'uint16' && i.external!.length === i.dims[0] * i.dims[1] * 2), 'uint16 views of the fp8 bytes');
    assert.equal(graph.initializerSummary().filter((i) => i.dims.length === 2 && i.dims[0] === 65536).length, 1, 'one shared pair table');
    assert.ok(graph.nodeTypes().includes('Gather') && !graph.nodeTypes().includes('DequantizeLinear'));
    const [lookup] = await run(FP8_FILE, { format: 'fp8', inlineLimit: 0, fp8Decode: 'lookup' }, ['a']);
    const [dq] = await run(FP8_FILE, { format: 'fp8', inlineLimit: 0, fp8Decode: 'dequantize' }, ['a']);
    assert.deepEqual(lookup, dq);
    // Per-row scales (bf16 quantized into the cache): the table holds codes, a Mul applies the scales.
    const cacheDir = fs.mkdtempSync(path.join(os.tmpdir(), 'dit-fp8-lookup-'));
    try {
      const [l2] = await run(BF16_FILE, { format: 'fp8', inlineLimit: 0, cacheDir, fp8Decode: 'lookup' }, ['a']);
      const [d2] = await run(BF16_FILE, { format: 'fp8', inlineLimit: 0, cacheDir, fp8Decode: 'dequantize' }, ['a']);
      assert.deepEqual(l2, d2);
    } finally {
      fs.rmSync(cacheDir, { recursive: true, force: true });
    }
  });

  it('decodes fp8 by GatherBlockQuantized (the WebGPU default): the checkpoint\'s float8 bytes zero-copy, one decode per Linear, the fp8 golden', async () => {
    const src = openTensors(FP8_FILE);
    const { graph } = buildDit(new DitWeights(src, 'bfl-dit'), params, { format: 'fp8', inlineLimit: 0, fp8Decode: 'gather' });
    const external = graph.initializerSummary().filter((i) => i.external);
    assert.equal(external.length, bflLinears(params).length);
    assert.ok(external.every((i) => i.type === 'float8e4m3fn' && i.dims[0] * i.dims[1] === i.external!.length && i.external!.location === path.basename(FP8_FILE)), 'the file\'s float8 bytes as they are');
    const types = graph.nodeTypes();
    assert.equal(graph.liveNodeList().filter((n) => n.opType === 'GatherBlockQuantized').length, bflLinears(params).length);
    assert.ok(!types.includes('DequantizeLinear') && !types.includes('Div'), 'no other decode');
    const [gather] = await run(FP8_FILE, { format: 'fp8', inlineLimit: 0, fp8Decode: 'gather' }, ['a']);
    const [dq] = await run(FP8_FILE, { format: 'fp8', inlineLimit: 0, fp8Decode: 'dequantize' }, ['a']);
    assert.ok(compare(gather, dq).relL2 < 1e-6);
    assertGoldenClose(gather, expected('a.output_fp8_weights'), 'fp8 gather case a');
  });

  it('decodes fp8 from int32 words (the WebGPU decode of onnxruntime 1.30): 1 byte per weight, no 8/16-bit integer data, the fp8 golden', async () => {
    const src = openTensors(FP8_FILE);
    const { graph } = buildDit(new DitWeights(src, 'bfl-dit'), params, { format: 'fp8', inlineLimit: 0, fp8Decode: 'words' });
    const external = graph.initializerSummary().filter((i) => i.external);
    assert.equal(external.length, bflLinears(params).length);
    // int32 [N, K/4] views of the checkpoint's own fp8 bytes.
    assert.ok(external.every((i) => i.type === 'int32' && i.dims[1] * 4 * i.dims[0] === i.external!.length && i.external!.location === path.basename(FP8_FILE)), 'int32 views of the fp8 bytes');
    const types = graph.nodeTypes();
    assert.ok(types.includes('Gather') && !types.includes('DequantizeLinear') && !types.includes('BitShift') && !types.includes('BitwiseAnd'));
    assert.ok(!graph.initializerSummary().some((i) => i.type === 'uint8' || i.type === 'uint16'), 'no 8- or 16-bit integer data');
    // The weights decode bit for bit (weights-formats.test.ts); the products run as MatMul on the
    // transpose instead of Gemm, so the output matches to float32 rounding and the fp8 golden.
    const [words] = await run(FP8_FILE, { format: 'fp8', inlineLimit: 0, fp8Decode: 'words' }, ['a']);
    const [dq] = await run(FP8_FILE, { format: 'fp8', inlineLimit: 0, fp8Decode: 'dequantize' }, ['a']);
    assert.ok(compare(words, dq).relL2 < 1e-6);
    assertGoldenClose(words, expected('a.output_fp8_weights'), 'fp8 words case a');
  });

  it('quantizes the bf16 checkpoint to fp8 through a weight cache, then reuses the cache', async () => {
    const cacheDir = fs.mkdtempSync(path.join(os.tmpdir(), 'dit-fp8-cache-'));
    try {
      const opts: FluxTransformerOptions = { format: 'fp8', inlineLimit: 0, cacheDir, fp8Decode: 'dequantize' };
      const first = new DitWeights(openTensors(BF16_FILE), 'bfl-dit');
      const built = buildDit(first, params, opts);
      const linears = new Set(bflLinears(params).map((n) => `${n}.weight`));
      const fp8 = built.graph.initializerSummary().filter((i) => i.external);
      assert.equal(fp8.length, linears.size);
      assert.ok(fp8.every((i) => i.type === 'float8e4m3fn' && /^weights-\d+-[0-9a-f]{12}\.bin$/.test(i.external!.location)), 'in the data file of this writer');

      const [q] = await run(first, opts, ['a']);
      const s = compare(q, expected('a.output'));
      const ref = golden.checks.fp8_vs_bf16_weights_rel_err as number;
      console.log(`      bf16 → fp8 per-channel: rel L2 vs bf16 output ${s.relL2.toFixed(4)} (golden plain-cast fp8: ${ref.toFixed(4)})`);
      assert.ok(s.relL2 > 1e-4 && s.relL2 < 2 * ref, `quantization error ${s.relL2}`);

      const cached = fs.readdirSync(cacheDir);
      assert.equal(cached.length, 1);
      const bin = path.join(cacheDir, cached[0], fp8[0].external!.location);
      const mtime = fs.statSync(bin).mtimeMs;
      const counting = new CountingSource(openTensors(BF16_FILE));
      const [again] = await run(new DitWeights(counting, 'bfl-dit'), opts, ['a']);
      assert.equal(counting.weightReads, 0, 'the second build reads no Linear weight from the checkpoint');
      assert.equal(fs.statSync(bin).mtimeMs, mtime);
      assert.deepEqual(again, q);

      // The diffusers folder quantizes piece by piece (to_q, to_k, to_v…) with the same per-row scales.
      const [diffusers] = await run(DIFFUSERS_DIR, opts, ['a']);
      assert.ok(compare(diffusers, q).relL2 < 1e-6, 'diffusers fp8 = BFL fp8');
    } finally {
      fs.rmSync(cacheDir, { recursive: true, force: true });
    }
  });

  it('RoPE tables: angle = pos · theta^(-2j/dim) per axis, axes concatenated', () => {
    const ids = [0, 0, 0, 7, 2, 5];
    const { cos, sin, length } = ropeTables(ids, [4, 6, 6], 10000);
    assert.equal(length, 2);
    assert.ok(cos.slice(0, 8).every((c) => c === 1) && sin.slice(0, 8).every((s) => s === 0));
    const angles = [7, 7 * 10000 ** -0.5, 2, 2 * 10000 ** (-2 / 6), 2 * 10000 ** (-4 / 6), 5, 5 * 10000 ** (-2 / 6), 5 * 10000 ** (-4 / 6)];
    angles.forEach((a, j) => {
      assert.equal(cos[8 + j], Math.fround(Math.cos(a)));
      assert.equal(sin[8 + j], Math.fround(Math.sin(a)));
    });
  });

  it('asks for guidance when the model is guidance-distilled', async () => {
    const t = await FluxTransformer.load(BF16_FILE, { format: 'fp32' });
    try {
      await assert.rejects(t.forward({ ...inputs('a'), guidance: undefined }), /guidance/);
    } finally {
      await t.release();
    }
  });
});
