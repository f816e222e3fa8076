// A DiT kernel choice that changes how a Linear is computed, not what (OpChoices.nbitsBias): the
// same output as the default, and the graph built changed.
import * as assert from 'node:assert/strict';
import * as path from 'node:path';
import { buildDit, prefillDit } from '../../src/inference/graphs/dit';
import type { FluxTransformerOptions } from '../../src/inference/graphs/fluxTransformer';
import { openComponent } from '../../src/inference/formats/layouts/components';
import { compare, GOLDEN_MODELS } from '../helpers/golden';
import { goldenDitForward } from '../helpers/ditForward';
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

