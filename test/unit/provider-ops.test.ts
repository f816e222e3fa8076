// The per-provider op table (onnx/providerOps.ts) held against what every graph builder emits
// for that provider, and the standard-op compositions the builders use where a provider lacks an
// op, run on the CPU provider against the goldens (CUDA, DirectML and CoreML cannot run here).
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { UserError } from '../../src/shared/api';
import type { ComputeType, WeightFormat } from '../../src/shared/api';
import { buildClip, ClipEncoder, readClipConfig } from '../../src/inference/graphs/clip';
import { buildDit, DitBuildOptions, ditLinearShapes } from '../../src/inference/graphs/dit';
import { DitInputs, FluxTransformer, FluxTransformerOptions } from '../../src/inference/graphs/fluxTransformer';
import { WeightedBranches } from '../../src/inference/graphs/ditLora';
import { buildT5, readT5Config, T5Encoder } from '../../src/inference/graphs/t5';
import { buildVaeDecoder, buildVaeEncoder, readVaeConfig, VaeDecoder, VaeEncoder } from '../../src/inference/graphs/vae';
import { openComponent } from '../../src/inference/formats/layouts/components';
import { DitWeights } from '../../src/inference/formats/layouts/ditWeights';
import { Graph } from '../../src/inference/onnx/graph';
import { missingOps, MissingOp, opChoicesFor, PROVIDER_KERNELS, weightFormatProblem } from '../../src/inference/onnx/providerOps';
import { ExecutionProvider, providerConfig } from '../../src/inference/onnx/session';
import { chooseWeights } from '../../src/inference/onnx/providers';
import { openTensors } from '../../src/inference/formats/safetensors';
import { assertGoldenClose, assertMaxAbs, compare, GOLDEN_MODELS, goldenCase } from '../helpers/golden';

const BF16_FILE = path.join(GOLDEN_MODELS, 'flux-tiny.safetensors');
const FP8_FILE = path.join(GOLDEN_MODELS, 'flux-tiny-fp8.safetensors');
const AE = path.join(GOLDEN_MODELS, 'ae.safetensors');
const CLIP_DIR = path.join(GOLDEN_MODELS, 'text_encoder');
const T5_DIR = path.join(GOLDEN_MODELS, 'text_encoder_2');
const params = openComponent(BF16_FILE, 'dit').config;
const PROVIDERS: ExecutionProvider[] = ['cpu', 'webgpu', 'cuda', 'dml', 'coreml'];
const GiB = 2 ** 30;

/** The DiT weight formats a provider is given: what chooseWeights routes to for any budget, plus cpu/cuda fp8. */
function formatsFor(ep: ExecutionProvider): WeightFormat[] {
  const routed = new Set<WeightFormat>();
  const sizes: Record<string, number> = { fp16: 24 * GiB, int8: 13 * GiB, int4: 7 * GiB, fp8: 12 * GiB, fp32: 48 * GiB };
  for (const budget of [undefined, 100 * GiB, 20 * GiB, 10 * GiB, 1 * GiB]) routed.add(chooseWeights(ep, (f) => sizes[f], budget).format);
  // Formats a user may pick explicitly that load() accepts for this provider.
  for (const f of ['fp8', 'fp16', 'int8', 'int4'] as WeightFormat[]) if (!weightFormatProblem(ep, f)) routed.add(f);
  return [...routed];
}

const computeFor = (ep: ExecutionProvider): ComputeType => (ep === 'cpu' ? 'float32' : 'float16');

function ditGraph(ep: ExecutionProvider, format: WeightFormat, cacheDir: string, opsFor: ExecutionProvider = ep, extra: Partial<DitBuildOptions> = {}): Graph {
  const fp8 = format === 'fp8';
  // As FluxTransformer.load builds it for `ep`: fp8 decode, int8 activations, blocks and attention
  // left to the provider's choices (buildDit defaults them from opsFor).
  const opts = { format, compute: computeFor(ep), cacheDir, inlineLimit: 0, opsFor, textTokens: 8, ...extra };
  return buildDit(new DitWeights(openTensors(fp8 ? FP8_FILE : BF16_FILE), 'bfl-dit'), params, opts).graph;
}

/** A LoRA of rank `rank` on every Linear of the tiny DiT (values do not matter here: only the ops). */
function syntheticLora(rank: number): WeightedBranches {
  const shapes = ditLinearShapes(new DitWeights(openTensors(BF16_FILE), 'bfl-dit'), params);
  const branches = new Map([...shapes].map(([n, [out, inF]]) => [n, { rank, a: new Float32Array(rank * inF), bt: new Float32Array(rank * out), scale: new Float32Array(rank).fill(1) }]));
  return { branches, strength: 1 };
}

const describeMissing = (m: MissingOp[]) => m.map((x) => `${x.domain ? `${x.domain}.` : ''}${x.op}(${x.type}): ${x.reason} ×${x.count}`).sort();

describe('provider op table (onnx/providerOps.ts)', function () {
  this.timeout(300_000);
  let cacheDir: string;
  before(() => (cacheDir = fs.mkdtempSync(path.join(os.tmpdir(), 'majicflux-provider-ops-'))));
  after(() => fs.rmSync(cacheDir, { recursive: true, force: true }));

  it('covers cpu, webgpu, cuda, dml and coreml', () => {
    assert.deepEqual(Object.keys(PROVIDER_KERNELS).sort(), [...PROVIDERS].sort());
  });

  for (const ep of PROVIDERS) {
    it(`${ep}: the DiT (run once per step) uses only ops ${ep} implements, for every weight format routed to it`, () => {
      const formats = formatsFor(ep);
      for (const format of formats) {
        const missing = missingOps(ditGraph(ep, format, cacheDir), ep);
        assert.deepEqual(describeMissing(missing), [], `${ep} DiT with ${format} weights`);
      }
      console.log(`      ${ep}: ${formats.join(', ')}`);
    });

    it(`${ep}: the DiT with two LoRAs' branches (constant factors, a float32 strength input each: MatMul, Cast, Mul, Add; on WebGPU the split down-projection's Gather and ReduceSum and the Gemm) uses only ops ${ep} implements`, () => {
      for (const format of formatsFor(ep)) {
        const graph = ditGraph(ep, format, cacheDir, ep, { loras: [syntheticLora(2), syntheticLora(3)] });
        assert.deepEqual(describeMissing(missingOps(graph, ep)), [], `${ep} DiT with ${format} weights and LoRA branches`);
      }
    });
  }

  it('is consulted: the fused (cpu/cuda) DiT has ops CoreML lacks, fp8 has ops DirectML and WebGPU lack (WebGPU\'s own fp8 decode it has), symmetric int8 needs zero points on DirectML, Transpose-21 has no WebGPU kernel', () => {
    const fused = describeMissing(missingOps(ditGraph('cuda', 'fp16', cacheDir), 'coreml')).join('\n');
    for (const op of ['MultiHeadAttention', 'RotaryEmbedding', 'FastGelu']) assert.match(fused, new RegExp(`com\\.microsoft\\.${op}\\(float16\\): no kernel`));
    assert.match(fused, /SimplifiedLayerNormalization\(float16\): no kernel/);
    assert.match(fused, /Slice\(float16\): input 1 must be constant/, 'the text/image split at a data-dependent length');
    const fp8 = ditGraph('cuda', 'fp8', cacheDir);
    for (const ep of ['dml', 'webgpu'] as const) assert.match(describeMissing(missingOps(fp8, ep)).join('\n'), /DequantizeLinear\(float8e4m3fn\): no float8e4m3fn kernel/, ep);
    assert.deepEqual(describeMissing(missingOps(fp8, 'cuda')), []);
    assert.match(describeMissing(missingOps(ditGraph('webgpu', 'int8', cacheDir), 'dml')).join('\n'), /MatMulNBits\(float16\): input 3 is required/);
    assert.match(describeMissing(missingOps(ditGraph('cpu', 'fp8', cacheDir), 'webgpu')).join('\n'), /Cast\(uint16\)|Gather\(float32\)/, 'the CPU lookup decode reads uint16 codes');
    // WebGPU's fp8 decode: GatherBlockQuantized on the float8 bytes, which its table has (and DirectML's lacks).
    const webgpuFp8 = ditGraph('webgpu', 'fp8', cacheDir);
    assert.ok(webgpuFp8.liveNodeList().some((n) => n.opType === 'GatherBlockQuantized'));
    assert.deepEqual(describeMissing(missingOps(webgpuFp8, 'webgpu')), []);
    assert.match(describeMissing(missingOps(webgpuFp8, 'dml')).join('\n'), /com\.microsoft\.GatherBlockQuantized\(float8e4m3fn\): no kernel/);
    assert.match(describeMissing(missingOps(ditGraph('coreml', 'fp16', cacheDir), 'coreml')).join('\n'), /^$/);
    // The WebGPU DiT's matmul attention transposes heads: fine at its opset 20, not at 21.
    const webgpu = ditGraph('webgpu', 'int8', cacheDir);
    assert.equal(webgpu.opset, 20);
    assert.ok(webgpu.liveNodeList().some((n) => n.opType === 'Transpose'));
    assert.match(describeMissing(missingOps(ditGraph('cuda', 'fp16', cacheDir, 'cuda', { attention: 'matmul' }), 'webgpu')).join('\n'), /Transpose\(float16\): kernel only below opset 21/);
  });

  it('explicit weight formats a provider cannot hold are refused with the reason, not run on the CPU every step', async () => {
    assert.match(weightFormatProblem('dml', 'fp8')!, /no float8 DequantizeLinear/);
    assert.equal(weightFormatProblem('webgpu', 'fp8'), undefined, 'WebGPU decodes fp8 by GatherBlockQuantized');
    assert.match(weightFormatProblem('coreml', 'int4')!, /no MatMulNBits/);
    assert.equal(weightFormatProblem('cuda', 'fp8'), undefined);
    assert.equal(chooseWeights('coreml', () => GiB, undefined).format, 'fp16');
    await assert.rejects(FluxTransformer.load(BF16_FILE, { format: 'fp8', ep: 'cpu', opsFor: 'dml', cacheDir }), (e: Error) => e instanceof UserError && /dml has no float8 DequantizeLinear/.test(e.message));
  });

  // VAE and text encoders run once per image / prompt, not per step: what they still leave to the
  // CPU provider is listed here (docs/PROVIDERS.md), so any change to it is seen.
  for (const ep of PROVIDERS) {
    it(`${ep}: VAE decoder/encoder and CLIP/T5 graphs against the table`, () => {
      const vaeSrc = openTensors(AE);
      const vaeCfg = readVaeConfig(AE, vaeSrc);
      const compute = computeFor(ep);
      const graphs: Record<string, Graph> = {
        'vae decoder': buildVaeDecoder(vaeSrc, vaeCfg, { compute, opsFor: ep, inlineLimit: 0 }).graph,
        'vae encoder': buildVaeEncoder(vaeSrc, vaeCfg, { compute, opsFor: ep, inlineLimit: 0 }).graph,
      };
      const textFormat = ep === 'cpu' ? ('source' as const) : ('fp16' as const);
      const clipSrc = openTensors(CLIP_DIR);
      const t5Src = openTensors(T5_DIR);
      graphs.clip = buildClip(clipSrc, readClipConfig(clipSrc), { format: textFormat, compute, cacheDir, fp16Cache: true, opsFor: ep, inlineLimit: 0 }).graph;
      graphs.t5 = buildT5(t5Src, readT5Config(t5Src), { format: textFormat, compute: 'float32', cacheDir, fp16Cache: true, opsFor: ep, inlineLimit: 0, maxLength: 16 }).graph;
      const got: Record<string, string[]> = {};
      for (const [name, g] of Object.entries(graphs)) got[name] = describeMissing(missingOps(g, ep));
      assert.deepEqual(got, EXPECTED_ONCE[ep], ep);
    });
  }

  describe('compositions run on the CPU provider match the goldens', () => {
    const c = () => goldenCase('transformer.safetensors');
    function inputs(k: string): DitInputs {
      return {
        img: c().readF32('hidden_states'), txt: c().readF32('encoder_hidden_states'), vec: c().readF32('pooled_projections'),
        timestep: c().readF32(`${k}.timestep`)[0], guidance: c().readF32(`${k}.guidance`)[0], imgIds: c().readF32('img_ids'), txtIds: c().readF32('txt_ids'),
      };
    }
    async function dit(opts: FluxTransformerOptions, k = 'a'): Promise<Float32Array> {
      const t = await FluxTransformer.load(BF16_FILE, { ...opts, ep: 'cpu' });
      try {
        return await t.forward(inputs(k));
      } finally {
        await t.release();
      }
    }

    it('DiT built for CoreML (attention, RoPE, RMSNorm, tanh-GELU in standard ops; constant text slices) matches cases a and b', async () => {
      const m = c().readF32('encoder_hidden_states').length / params.context_in_dim;
      for (const k of ['a', 'b']) {
        const s = assertGoldenClose(await dit({ format: 'fp32', opsFor: 'coreml', textTokens: m }, k), c().readF32(`${k}.output`), `coreml-ops DiT case ${k}`);
        console.log(`      coreml-ops DiT ${k}: rel L2 ${s.relL2.toExponential(2)}`);
      }
      await assert.rejects(dit({ format: 'fp32', opsFor: 'coreml', textTokens: m + 1 }), /built for \d+ text tokens/);
    });

    it('DiT built for DirectML (explicit MatMulNBits zero points) equals the default int8 and int4 graphs', async () => {
      for (const format of ['int8', 'int4'] as const) {
        const base = await dit({ format, cacheDir, int8Activations: false });
        const dml = await dit({ format, cacheDir, int8Activations: false, opsFor: 'dml' });
        const s = compare(dml, base);
        assert.ok(s.maxAbs <= 1e-6 * s.maxRef, `${format}: max abs ${s.maxAbs}`);
      }
    });

    it('VAE built for CoreML (attention in standard ops) matches the decode and encode goldens', async () => {
      const g = goldenCase('vae.safetensors');
      const dec = await VaeDecoder.load(AE, { ep: 'cpu', opsFor: 'coreml' });
      try {
        assertMaxAbs(await dec.decode(g.readF32('z'), 16, 24), g.readF32('decoded'), 1e-4, 'coreml-ops decoded');
      } finally {
        await dec.release();
      }
      const enc = await VaeEncoder.load(AE, { ep: 'cpu', opsFor: 'coreml' });
      try {
        assertMaxAbs(await enc.encodeMean(g.readF32('image'), 64, 96), g.readF32('encoded_mean'), 1e-4, 'coreml-ops encoded_mean');
      } finally {
        await enc.release();
      }
    });

    it('CLIP and T5 built for CoreML (attention, erf/tanh GELU, RMSNorm in standard ops) match the goldens', async () => {
      const t = goldenCase('text_encoders.safetensors');
      const ids = (n: number, which: string) => Int32Array.from(t.readF32(`${n}.${which}_ids`));
      const clip = await ClipEncoder.load(CLIP_DIR, { ep: 'cpu', opsFor: 'coreml' });
      try {
        const out = await clip.encode(ids(0, 'clip'));
        assertGoldenClose(out.hidden, t.readF32('0.clip_last_hidden'), 'coreml-ops clip hidden');
        assertGoldenClose(out.pooled, t.readF32('0.clip_pooled'), 'coreml-ops clip pooled');
      } finally {
        await clip.release();
      }
      const t5 = await T5Encoder.load(T5_DIR, { ep: 'cpu', opsFor: 'coreml', maxLength: 512 });
      try {
        assertGoldenClose(await t5.encode(ids(0, 't5')), t.readF32('0.t5_hidden'), 'coreml-ops t5 hidden');
      } finally {
        await t5.release();
      }
    });

    it('opChoicesFor: fused ops everywhere but CoreML, explicit zero points on DirectML only, fp8 by table on the CPU and by GatherBlockQuantized on WebGPU', () => {
      assert.deepEqual(PROVIDERS.filter((ep) => !opChoicesFor(ep).contribOps), ['coreml']);
      assert.deepEqual(PROVIDERS.filter((ep) => opChoicesFor(ep).explicitZeroPoints), ['dml']);
      assert.deepEqual(Object.fromEntries(PROVIDERS.map((ep) => [ep, opChoicesFor(ep).fp8Decode])), { cpu: 'lookup', webgpu: 'gather', cuda: 'dequantize', dml: 'dequantize', coreml: 'dequantize' });
    });
  });
});

/** What the once-per-image/prompt graphs leave to the CPU provider, per provider (see docs/PROVIDERS.md). */
const EXPECTED_ONCE: Partial<Record<ExecutionProvider, Record<string, string[]>>> = {
  'webgpu': {
    // Built at opset 20 for WebGPU (OpChoices.opset): its Transpose kernels stop at 20.
    'vae decoder': [],
    'vae encoder': [],
    'clip': [
      'Cast(bfloat16): no bfloat16 kernel ×2',
      'Gather(bfloat16): no bfloat16 kernel ×1',
      'GatherND(float16): no kernel ×1',
      'Reshape(bfloat16): no bfloat16 kernel ×1'
    ],
    't5': [
      'Cast(bfloat16): no bfloat16 kernel ×2',
      'Gather(bfloat16): no bfloat16 kernel ×1',
      'Reshape(bfloat16): no bfloat16 kernel ×1'
    ]
  },
  'dml': {
    'vae decoder': [],
    'vae encoder': [],
    'clip': [
      'Cast(bfloat16): no bfloat16 kernel ×2',
      'Gather(bfloat16): no bfloat16 kernel ×1',
      'Reshape(bfloat16): no bfloat16 kernel ×1'
    ],
    't5': [
      'Cast(bfloat16): no bfloat16 kernel ×2',
      'Gather(bfloat16): no bfloat16 kernel ×1',
      'Reshape(bfloat16): no bfloat16 kernel ×1'
    ]
  },
  'coreml': {
    'vae decoder': [
      'Reshape(float16): input 1 must be constant ×31'
    ],
    'vae encoder': [
      'Reshape(float16): input 1 must be constant ×23'
    ],
    'clip': [
      'Cast(bfloat16): no bfloat16 kernel ×2',
      'Cast(float16): no float16 → int64 kernel ×1',
      'Concat(int64): no int64 kernel ×1',
      'Gather(bfloat16): no kernel ×1',
      'GatherND(float16): batch_dims must be 0 ×1',
      'Reshape(bfloat16): no bfloat16 kernel ×1'
    ],
    't5': [
      'Cast(bfloat16): no bfloat16 kernel ×2',
      'Cast(float32): no float32 → int64 kernel ×5',
      'Concat(int64): no int64 kernel ×16',
      'Gather(bfloat16): no kernel ×1',
      'Gather(float32): no kernel ×1',
      'Reshape(bfloat16): no bfloat16 kernel ×1',
      'Reshape(float16): input 1 must be constant ×14',
      'Reshape(int32): input 1 must be constant ×1'
    ]
  },
  'cpu': {
    'vae decoder': [],
    'vae encoder': [],
    'clip': [],
    't5': []
  },
  'cuda': {
    'vae decoder': [],
    'vae encoder': [],
    'clip': [],
    't5': []
  }
};

describe('session provider entries (onnx/session.providerConfig)', () => {
  it('CoreML sessions ask for the ML Program format, whose ops the table lists', () => {
    const c = providerConfig('coreml') as { name: string; coreMlFlags?: number };
    assert.equal(c.name, 'coreml');
    assert.equal((c.coreMlFlags ?? 0) & 0x010, 0x010, 'COREML_FLAG_CREATE_MLPROGRAM');
  });
  it('WebGPU keeps its options; the others go by name', () => {
    assert.equal((providerConfig('webgpu') as { name: string }).name, 'webgpu');
    for (const ep of ['cpu', 'cuda', 'dml'] as const) assert.equal(providerConfig(ep), ep);
  });
});
