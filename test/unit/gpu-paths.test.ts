// The GPU paths checked on the CPU provider against the golden float32 references: float16
// compute, and the weight formats of GPUs without a float8 DequantizeLinear (fp16, int8, int4).
// onnxruntime's CPU EP runs ops without float16 kernels in float32 between casts, so this
// measures the rounding of float16 activations and weights at every op boundary — what a GPU
// adds on top is its own accumulation order. The bounds are the measured errors
// rounded up; the golden README expects relative L2 of order 1e-2.
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { buildDit } from '../../src/inference/graphs/dit';
import { DitInputs, FluxTransformer, FluxTransformerOptions } from '../../src/inference/graphs/fluxTransformer';
import { VaeDecoder, VaeEncoder } from '../../src/inference/graphs/vae';
import { openComponent } from '../../src/inference/formats/layouts/components';
import { DitWeights } from '../../src/inference/formats/layouts/ditWeights';
import { openTensors } from '../../src/inference/formats/safetensors';
import { compare, goldenCase, GOLDEN_MODELS } from '../helpers/golden';

const AE = path.join(GOLDEN_MODELS, 'ae.safetensors');

function within(actual: Float32Array, expected: Float32Array, what: string, bounds: { relL2: number; maxAbs: number }) {
  const s = compare(actual, expected);
  assert.ok(s.relL2 <= bounds.relL2, `${what}: relative L2 ${s.relL2} > ${bounds.relL2}`);
  assert.ok(s.maxAbs <= bounds.maxAbs, `${what}: max abs ${s.maxAbs} > ${bounds.maxAbs}`);
  return s;
}

describe('float16 compute vs the golden float32 references (CPU)', function () {
  this.timeout(120_000);

  it('VAE decoder: relative L2 ≤ 1e-3, max abs ≤ 3e-3 (measured 6.7e-4, 2.3e-3)', async () => {
    const golden = goldenCase('vae.safetensors');
    const vae = await VaeDecoder.load(AE, { compute: 'float16' });
    try {
      within(await vae.decode(golden.readF32('z'), 16, 24), golden.readF32('decoded'), 'decoded', { relL2: 1e-3, maxAbs: 3e-3 });
    } finally {
      await vae.release();
    }
  });

  it('VAE encoder: relative L2 ≤ 1e-3, max abs ≤ 3e-3 (measured 7.3e-4, 1.8e-3)', async () => {
    const golden = goldenCase('vae.safetensors');
    const vae = await VaeEncoder.load(AE, { compute: 'float16' });
    try {
      within(await vae.encodeMean(golden.readF32('image'), 64, 96), golden.readF32('encoded_mean'), 'encoded mean', { relL2: 1e-3, maxAbs: 3e-3 });
    } finally {
      await vae.release();
    }
  });
});

describe('DiT in the GPU configurations vs the golden references (CPU)', function () {
  this.timeout(300_000);
  const BF16_FILE = path.join(GOLDEN_MODELS, 'flux-tiny.safetensors');
  const FP8_FILE = path.join(GOLDEN_MODELS, 'flux-tiny-fp8.safetensors');
  const golden = goldenCase('transformer.safetensors');
  const inputs = (k: string): DitInputs => ({
    img: golden.readF32('hidden_states'),
    txt: golden.readF32('encoder_hidden_states'),
    vec: golden.readF32('pooled_projections'),
    timestep: golden.readF32(`${k}.timestep`)[0],
    guidance: golden.readF32(`${k}.guidance`)[0],
    imgIds: golden.readF32('img_ids'),
    txtIds: golden.readF32('txt_ids'),
  });
  let cacheDir: string;
  before(() => (cacheDir = fs.mkdtempSync(path.join(os.tmpdir(), 'majicflux-gpu-dit-'))));
  after(() => fs.rmSync(cacheDir, { recursive: true, force: true }));

  async function errors(file: string, opts: Omit<FluxTransformerOptions, 'cacheDir'>, expected: (k: string) => string, cases = ['a', 'b', 'c']) {
    const t = await FluxTransformer.load(file, { ...opts, cacheDir });
    try {
      const out: number[] = [];
      for (const k of cases) out.push(compare(await t.forward(inputs(k)), golden.readF32(expected(k))).relL2);
      return Math.max(...out);
    } finally {
      await t.release();
    }
  }

  // [file, weights, compute, zero points, int8 activations, bound]: the measured worst relative L2
  // over the cases, rounded up. inlineLimit 0 puts every Linear in the tested format (the tiny
  // model's are all under 1 MiB). The tiny model's K = 64 fills half of each 128-block; FLUX.1's
  // K ≥ 3072. int8 activations (MatMulNBits accuracy_level 4) are the CPU default for int8/int4.
  const cases: Array<[string, FluxTransformerOptions['format'], 'float32' | 'float16', boolean, boolean, number, string]> = [
    ['bf16', 'fp16', 'float16', false, false, 7e-4, 'measured 6.1e-4'],
    ['fp8', 'fp16', 'float16', false, false, 7e-4, 'measured 5.9e-4'],
    ['bf16', 'int8', 'float32', false, false, 1.8e-2, 'measured 1.48e-2'],
    ['bf16', 'int8', 'float16', false, false, 1.8e-2, 'measured 1.48e-2'],
    ['bf16', 'int8', 'float16', true, false, 1.7e-2, 'measured 1.36e-2'],
    ['fp8', 'int8', 'float16', false, false, 1.7e-2, 'measured 1.37e-2'],
    ['bf16', 'int8', 'float32', false, true, 2.4e-2, 'measured 2.13e-2'],
    ['fp8', 'int8', 'float32', false, true, 2.2e-2, 'measured 1.96e-2'],
    ['bf16', 'int4', 'float32', false, false, 0.27, 'measured 0.221'],
    ['bf16', 'int4', 'float32', false, true, 0.27, 'measured 0.221'],
    ['bf16', 'int4', 'float16', true, false, 0.32, 'measured 0.267: zero points don’t help here'],
  ];
  for (const [file, format, compute, zeroPoints, int8Activations, bound, measured] of cases) {
    it(`${file} checkpoint, ${format}${zeroPoints ? ' (zero points)' : ''} weights${int8Activations ? ', int8 activations' : ''}, ${compute} compute: relative L2 ≤ ${bound} (${measured})`, async () => {
      const fp8 = file === 'fp8';
      if (format === 'int8' || format === 'int4') {
        const src = openTensors(fp8 ? FP8_FILE : BF16_FILE);
        const { graph } = buildDit(new DitWeights(src, 'bfl-dit'), openComponent(BF16_FILE, 'dit').config, { format, compute, zeroPoints, int8Activations, inlineLimit: 0, cacheDir });
        src.close();
        const levels = graph.nodeList().filter((n) => n.opType === 'MatMulNBits').map((n) => n.attribute.find((a) => a.name === 'accuracy_level')?.i ?? 0);
        assert.ok(levels.length > 0 && levels.every((l) => l === (int8Activations ? 4 : 0)), `accuracy_level ${[...new Set(levels)]}`);
      }
      const err = await errors(fp8 ? FP8_FILE : BF16_FILE, { format, compute, zeroPoints, int8Activations, inlineLimit: 0 }, (k) => (fp8 ? 'a.output_fp8_weights' : `${k}.output`), fp8 ? ['a'] : ['a', 'b', 'c']);
      assert.ok(err <= bound, `relative L2 ${err} > ${bound}`);
    });
  }
});
