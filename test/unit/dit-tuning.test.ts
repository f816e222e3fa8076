// DiT kernel choices that change how a Linear is computed, not what (OpChoices.nbitsBias,
// OpChoices.loraGemm): the same output as the default, and the graph built changed.
import * as assert from 'node:assert/strict';
import * as path from 'node:path';
import { buildDit, ditLinearShapes, prefillDit } from '../../src/inference/graphs/dit';
import type { FluxTransformerOptions } from '../../src/inference/graphs/fluxTransformer';
import { openComponent } from '../../src/inference/formats/layouts/components';
import { compare, GOLDEN_MODELS } from '../helpers/golden';
import { goldenDitForward, goldenDitInputsForward } from '../helpers/ditForward';
import { FluxTransformer } from '../../src/inference/graphs/fluxTransformer';
import { tempDir } from '../helpers/writeSafetensors';

const BF16_FILE = path.join(GOLDEN_MODELS, 'flux-tiny.safetensors');


describe('int8 DiT: the bias inside MatMulNBits (nbitsBias)', function () {
  this.timeout(300_000);
  let tmp: ReturnType<typeof tempDir>;
  before(() => (tmp = tempDir('mf-dit-tuning-')));
  after(() => tmp.cleanup());

  it('int8 with the bias inside MatMulNBits: the graph has no Add after it, the same output as the Add form', async () => {
    const common: FluxTransformerOptions = { format: 'int8', inlineLimit: 0, cacheDir: tmp.dir };
    // The graph as built (onnxruntime's CPU optimizer moves such an Add into MatMulNBits itself; WebGPU's does not).
    const component = openComponent(BF16_FILE, 'dit');
    const ops = (nbitsBias: boolean) => {
      const { graph } = buildDit(component.weights, component.config, { ...common, nbitsBias });
      const nodes = graph.liveNodeList();
      return { biased: nodes.filter((n) => n.opType === 'MatMulNBits' && n.input[5]).length, nbits: nodes.filter((n) => n.opType === 'MatMulNBits').length, adds: nodes.filter((n) => n.opType === 'Add').length };
    };
    try {
      await prefillDit(component.weights, component.config, common);
      const before = ops(false);
      const after = ops(true);
      assert.equal(before.biased, 0);
      assert.ok(after.biased > 0, 'some MatMulNBits carry their bias');
      assert.equal(after.nbits, before.nbits, 'the same Linears are MatMulNBits');
      assert.equal(before.adds - after.adds, after.biased, 'one Add fewer per biased Linear');
    } finally {
      component.weights.tensors.close();
    }
    const s = compare(await goldenDitForward(BF16_FILE, { ...common, nbitsBias: true }), await goldenDitForward(BF16_FILE, { ...common, nbitsBias: false }));
    assert.ok(s.relL2 < 1e-5, `relative L2 to the Add form ${s.relL2}`);
  });
});

describe('LoRA branches ending in one Gemm (loraGemm)', function () {
  this.timeout(300_000);

  it('each branch is MatMul → Mul → Gemm (no MatMul + Add), the same output as the Add form, strength 0 the base bit for bit', async () => {
    const component = openComponent(BF16_FILE, 'dit');
    try {
      const { config, weights } = component;
      const shapes = ditLinearShapes(weights, config);
      // A rank-2 branch on every Linear, seeded values.
      let seed = 7;
      const rand = () => ((seed = (Math.imul(seed, 1664525) + 1013904223) >>> 0) / 2 ** 32 - 0.5) * 0.2;
      const branches = new Map([...shapes].map(([name, [out, inF]]) => [name, { rank: 2, a: Float32Array.from({ length: 2 * inF }, rand), bt: Float32Array.from({ length: 2 * out }, rand), scale: Float32Array.of(0.5, 0.5) }]));
      const loras = [{ branches, strength: 0.8, id: 'seeded' }];
      const ops = (loraGemm: boolean) => {
        const nodes = buildDit(weights, config, { format: 'fp32', loras, loraGemm }).graph.liveNodeList();
        return { gemm: nodes.filter((n) => n.opType === 'Gemm').length, adds: nodes.filter((n) => n.opType === 'Add').length, matmuls: nodes.filter((n) => n.opType === 'MatMul').length };
      };
      const add = ops(false);
      const gemm = ops(true);
      assert.equal(gemm.gemm - add.gemm, branches.size, 'one Gemm more per branch');
      assert.equal(add.adds - gemm.adds, branches.size, 'one Add fewer per branch');
      assert.equal(add.matmuls - gemm.matmuls, branches.size, 'one MatMul fewer per branch');
      const outputs = async (loraGemm: boolean) => {
        const t = await FluxTransformer.load(BF16_FILE, { format: 'fp32', loras, loraGemm });
        try {
          const withLora = await goldenDitInputsForward(t);
          await t.setLoras([{ ...loras[0], strength: 0 }]);
          return { withLora, zero: await goldenDitInputsForward(t) };
        } finally {
          await t.release();
        }
      };
      const a = await outputs(false);
      const b = await outputs(true);
      const base = await goldenDitForward(BF16_FILE, { format: 'fp32' });
      const s = compare(b.withLora, a.withLora);
      assert.ok(s.relL2 < 1e-6, `relative L2 to the Add form ${s.relL2}`);
      assert.ok(compare(a.withLora, base).relL2 > 1e-3, 'the LoRA changes the output');
      for (let i = 0; i < base.length; i++) if (b.zero[i] !== base[i]) assert.fail(`strength 0: element ${i} is ${b.zero[i]}, the base gave ${base[i]}`);
    } finally {
      component.weights.tensors.close();
    }
  });
});
