// DiT kernel choices that change how a Linear or a LoRA branch is computed (OpChoices.nbitsBias,
// OpChoices.loraNbits): the graph built changed, the output the same or within the format's error.
import * as assert from 'node:assert/strict';
import * as path from 'node:path';
import { buildDit, ditLinearShapes, prefillDit } from '../../src/inference/graphs/dit';
import type { FluxTransformerOptions } from '../../src/inference/graphs/fluxTransformer';
import { DitComponent, openComponent } from '../../src/inference/formats/layouts/components';
import { compare, GOLDEN_MODELS } from '../helpers/golden';
import { goldenDitForward, goldenDitInputsForward } from '../helpers/ditForward';
import { FluxTransformer } from '../../src/inference/graphs/fluxTransformer';
import { tempDir } from '../helpers/writeSafetensors';
import type { DitTuning } from '../../src/shared/api';
import type { WeightedBranches } from '../../src/inference/graphs/ditLora';

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

describe('LoRA branches as 8-bit MatMulNBits (loraNbits)', function () {
  this.timeout(300_000);
  let component: DitComponent;
  let loras: WeightedBranches[];
  let base: Float32Array;
  let floatForm: { withLora: Float32Array; zero: Float32Array };
  before(async () => {
    component = openComponent(BF16_FILE, 'dit');
    const shapes = ditLinearShapes(component.weights, component.config);
    // A rank-2 branch on every Linear, seeded values.
    let seed = 7;
    const rand = () => ((seed = (Math.imul(seed, 1664525) + 1013904223) >>> 0) / 2 ** 32 - 0.5) * 0.2;
    const branches = new Map([...shapes].map(([name, [out, inF]]) => [name, { rank: 2, a: Float32Array.from({ length: 2 * inF }, rand), bt: Float32Array.from({ length: 2 * out }, rand), scale: Float32Array.of(0.5, 0.5) }]));
    loras = [{ branches, strength: 0.8, id: 'seeded' }];
    base = await goldenDitForward(BF16_FILE, { format: 'fp32' });
    floatForm = await outputs({});
  });
  after(() => component.weights.tensors.close());

  const ops = (tuning: DitTuning) => {
    const nodes = buildDit(component.weights, component.config, { format: 'fp32', loras, ...tuning }).graph.liveNodeList();
    const count = (op: string) => nodes.filter((n) => n.opType === op).length;
    return { matmuls: count('MatMul'), nbits: count('MatMulNBits') };
  };
  // The output with the LoRA at 0.8, and with its strength fed 0 (same session).
  async function outputs(tuning: DitTuning) {
    const t = await FluxTransformer.load(BF16_FILE, { format: 'fp32', loras, ...tuning });
    try {
      const withLora = await goldenDitInputsForward(t);
      await t.setLoras([{ ...loras[0], strength: 0 }]);
      return { withLora, zero: await goldenDitInputsForward(t) };
    } finally {
      await t.release();
    }
  }
  const assertBaseExactly = (zero: Float32Array) => {
    for (let i = 0; i < base.length; i++) if (zero[i] !== base[i]) assert.fail(`strength 0: element ${i} is ${zero[i]}, the base gave ${base[i]}`);
  };

  it('loraNbits: both products of each branch are MatMulNBits (no float MatMul left for them), within the int8 error of the float form, strength 0 the base bit for bit', async () => {
    const n = loras[0].branches.size;
    const float = ops({});
    const q = ops({ loraNbits: true });
    assert.equal(q.nbits - float.nbits, 2 * n, 'two MatMulNBits per branch');
    assert.equal(float.matmuls - q.matmuls, 2 * n, 'no float MatMul for the branches');
    assert.ok(compare(floatForm.withLora, base).relL2 > 1e-3, 'the LoRA changes the output');
    const b = await outputs({ loraNbits: true });
    const delta = compare(floatForm.withLora, base).relL2;
    const s = compare(b.withLora, floatForm.withLora);
    // The branch's own error, relative to what the LoRA changes: int8 blocks with int8 activations (the CPU's choice) hold ≈ 1 %.
    console.log(`      loraNbits: relative L2 to the float form ${s.relL2.toExponential(2)}; the LoRA's change ${delta.toExponential(2)}`);
    assert.ok(s.relL2 < 0.03 * delta, `relative L2 to the float form ${s.relL2}, the LoRA changed the output by ${delta}`);
    assertBaseExactly(b.zero);
  });
});
