// DiT files in the other formats people download (issue 17): ComfyUI's scaled fp8, fp8 e5m2,
// fp16/fp32, and names under the prefixes other tools save them with — each against the golden
// fp32 output and against the exact values its weights decode to.
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { FluxTransformerOptions } from '../../src/inference/graphs/fluxTransformer';
import { openComponent } from '../../src/inference/formats/layouts/components';
import { inspectPath } from '../../src/inference/formats/layouts/inspect';
import { openTensors } from '../../src/inference/formats/safetensors';
import { TensorSpec, writeSafetensors } from '../../src/inference/formats/safetensorsWriter';
import { recastSpecs, scaledFp8Specs, specsOf } from '../helpers/checkpoints';
import { assertGoldenClose, compare, GOLDEN_MODELS, goldenCase } from '../helpers/golden';
import { goldenDitForward } from '../helpers/ditForward';
import { tempDir } from '../helpers/writeSafetensors';

const BF16_FILE = path.join(GOLDEN_MODELS, 'flux-tiny.safetensors');
const DIFFUSERS_FILE = path.join(GOLDEN_MODELS, 'transformer', 'diffusion_pytorch_model.safetensors');
const expected = (name: string) => goldenCase('transformer.safetensors').readF32(name);


describe('DiT file formats: scaled fp8, e5m2, fp16/fp32, prefixes (issue 17)', function () {
  this.timeout(300_000);
  let tmp: ReturnType<typeof tempDir>;
  /** A DiT file with the tiny model's sidecar (its head dim is not FLUX.1's 128). */
  const write = (name: string, specs: TensorSpec[]) => {
    const file = path.join(tmp.dir, `${name}.safetensors`);
    writeSafetensors(file, specs);
    fs.copyFileSync(path.join(GOLDEN_MODELS, 'flux-tiny.config.json'), path.join(tmp.dir, `${name}.config.json`));
    return file;
  };
  before(() => (tmp = tempDir('mf-dit-formats-')));
  after(() => tmp.cleanup());

  describe('ComfyUI scaled fp8 (scale_weight beside each fp8 weight, scaled_fp8 marker)', () => {
    let scaledFile: string;
    let referenceFile: string;
    let reference: Float32Array;
    before(async () => {
      const src = openTensors(BF16_FILE);
      const { specs, dequantized } = scaledFp8Specs(src);
      scaledFile = write('scaled', specs);
      // The same model with each weight as the float32 values its codes × scale give.
      referenceFile = write('scaled-reference', specs.filter((s) => !s.name.endsWith('.scale_weight') && s.name !== 'scaled_fp8').map((s) =>
        dequantized.has(s.name) ? { ...s, dtype: 'F32', bytes: () => new Uint8Array(dequantized.get(s.name)!.buffer) } : s));
      reference = await goldenDitForward(referenceFile, { format: 'fp32' });
    });

    it('inspect: the weights are F8_E4M3 and the scales are read, not counted as unused', () => {
      const [dit] = inspectPath(scaledFile).components;
      assert.ok(dit.stats.dtypes.F8_E4M3!.tensors > 10);
      assert.ok(!dit.notes.some((n) => /not used/.test(n)), dit.notes.join('; '));
      assert.ok(dit.notes.some((n) => /^scaled fp8: \d+ weights carry a scale/.test(n)), dit.notes.join('; '));
      const c = openComponent(scaledFile, 'dit');
      assert.ok(c.tensors.has('double_blocks.0.img_attn.qkv.weight_scale') && !c.tensors.has('scaled_fp8'));
      c.close();
    });

    for (const [label, opts] of [
      ['fp8, lookup decode (CPU), weights in the file', { format: 'fp8', fp8Decode: 'lookup', inlineLimit: 0 }],
      ['fp8, DequantizeLinear, weights in the file', { format: 'fp8', fp8Decode: 'dequantize', inlineLimit: 0 }],
      ['fp8, int32 words, weights in the file', { format: 'fp8', fp8Decode: 'words', inlineLimit: 0 }],
      ['fp8, GatherBlockQuantized (WebGPU), weights in the file', { format: 'fp8', fp8Decode: 'gather', inlineLimit: 0 }],
      ['fp8, small weights inlined', { format: 'fp8' }],
      ['fp32', { format: 'fp32', inlineLimit: 0 }],
    ] as Array<[string, FluxTransformerOptions]>) {
      it(`${label}: the output of the decoded weights, and the golden fp32 output within the fp8 bound`, async () => {
        const out = await goldenDitForward(scaledFile, opts);
        assertGoldenClose(out, reference, `${label} vs its decoded weights`);
        const s = compare(out, expected('a.output'));
        console.log(`      ${label}: rel L2 vs golden fp32 ${s.relL2.toExponential(2)}`);
        assert.ok(s.relL2 < 0.08, `rel L2 ${s.relL2} vs the golden fp32 output`);
      });
    }

    it('int8 and fp16 through the weight cache: the same as from the decoded weights', async () => {
      for (const format of ['int8', 'fp16'] as const) {
        const opts: FluxTransformerOptions = { format, inlineLimit: 0, cacheDir: path.join(tmp.dir, `cache-${format}`), ...(format === 'fp16' ? { fp16Cache: true } : {}) } as FluxTransformerOptions;
        const out = await goldenDitForward(scaledFile, opts);
        const ref = await goldenDitForward(referenceFile, opts);
        assertGoldenClose(out, ref, `${format} from scaled fp8 vs from its decoded weights`);
      }
    });

    it('refuses input scales (scale_input) with a message saying what to use instead', () => {
      const src = openTensors(scaledFile);
      const file = write('scaled-input', [...specsOf(src), { name: 'double_blocks.0.img_attn.qkv.scale_input', dtype: 'F32', shape: [], bytes: () => new Uint8Array(Float32Array.of(0.5).buffer) }]);
      assert.throws(() => openComponent(file, 'dit'), (e: Error) => /input scale/.test(e.message) && /scale_input/.test(e.message) && /bf16 original/.test(e.message) && !/\n\s+at /.test(e.message));
    });

    it('refuses scales in a diffusers-layout DiT rather than ignoring them', () => {
      const { specs } = scaledFp8Specs(openTensors(DIFFUSERS_FILE));
      const file = write('scaled-diffusers', specs);
      assert.throws(() => openComponent(file, 'dit'), /fp8 weight scales \("[^"]+\.weight_scale"…\) in a diffusers-layout DiT/);
    });

    it('refuses a scale_weight beside a weight that is not fp8', () => {
      const src = openTensors(BF16_FILE);
      const file = write('scaled-bf16', [...specsOf(src), { name: 'img_in.scale_weight', dtype: 'F32', shape: [], bytes: () => new Uint8Array(Float32Array.of(2).buffer) }]);
      assert.throws(() => openComponent(file, 'dit'), /"img_in.scale_weight" scales a BF16 weight/);
    });
  });

  it('fp8 e5m2 weights are decoded in place (1 byte each) on every fp8 path: the output of the decoded weights', async () => {
    const { specs, reference } = recastSpecs(openTensors(BF16_FILE), 'F8_E5M2');
    const file = write('e5m2', specs);
    const ref = await goldenDitForward(write('e5m2-reference', reference), { format: 'fp32' });
    assert.deepEqual(Object.keys(inspectPath(file).components[0].stats.dtypes).sort(), ['BF16', 'F8_E5M2']);
    for (const fp8Decode of ['lookup', 'dequantize', 'words', 'gather'] as const) {
      assertGoldenClose(await goldenDitForward(file, { format: 'fp8', fp8Decode, inlineLimit: 0 }), ref, `e5m2 ${fp8Decode}`);
    }
    const s = compare(ref, expected('a.output'));
    console.log(`      e5m2: rel L2 vs golden fp32 ${s.relL2.toExponential(2)}`);
    assert.ok(s.relL2 < 0.2, `e5m2 rel L2 ${s.relL2}`);
  });

  for (const dtype of ['F16', 'F32'] as const) {
    it(`${dtype} DiT file: the golden fp32 output`, async () => {
      const file = write(dtype.toLowerCase(), recastSpecs(openTensors(BF16_FILE), dtype).specs);
      assert.ok(inspectPath(file).components[0].stats.dtypes[dtype]);
      assertGoldenClose(await goldenDitForward(file, { format: 'fp32', inlineLimit: 0 }), expected('a.output'), `${dtype} file`);
    });
  }

  for (const prefix of ['model.', 'diffusion_model.', 'transformer.', 'model.diffusion_model.']) {
    for (const [layout, source] of [['bfl-dit', BF16_FILE], ['diffusers-dit', DIFFUSERS_FILE]]) {
      it(`${layout} names under "${prefix}": recognised, prefix shown by inspect, the golden output`, async () => {
        const file = write(`prefixed-${layout}-${prefix.replace(/\W/g, '_')}`, specsOf(openTensors(source), (n) => prefix + n));
        const [dit] = inspectPath(file).components;
        assert.deepEqual([dit.kind, dit.layout, dit.prefix], ['dit', layout, prefix]);
        assertGoldenClose(await goldenDitForward(file, { format: 'fp32', inlineLimit: 0 }), expected('a.output'), `${layout} under ${prefix}`);
      });
    }
  }
});
