// The DiT's kernel choices that only change how a Linear is computed, not what (OpChoices.nbitsBias,
// OpChoices.disabledOptimizers): the same output as the default, and the graph onnxruntime runs changed.
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { buildDit, prefillDit } from '../../src/inference/graphs/dit';
import { splitOf } from '../../src/inference/graphs/ditLora';
import { FluxTransformer, FluxTransformerOptions } from '../../src/inference/graphs/fluxTransformer';
import { openComponent } from '../../src/inference/formats/layouts/components';
import { readLora } from '../../src/inference/formats/lora';
import { ditLora } from '../../src/inference/formats/loraDit';
import { ModelProto } from '../../src/inference/onnx/proto';
import { compare, GOLDEN_CASES, GOLDEN_MODELS, goldenCase } from '../helpers/golden';
import { tempDir } from '../helpers/writeSafetensors';

const BF16_FILE = path.join(GOLDEN_MODELS, 'flux-tiny.safetensors');

/** The DiT's output on the golden inputs, and the op types of the graph onnxruntime optimized (name → count). */
async function run(opts: FluxTransformerOptions, dir: string, lora?: string): Promise<{ out: Float32Array; ops: Map<string, number> }> {
  const c = goldenCase('transformer.safetensors');
  const optimizedModelPath = path.join(dir, `opt-${Math.random().toString(36).slice(2)}.onnx`);
  const t = await FluxTransformer.load(BF16_FILE, { ...opts, optimizedModelPath });
  try {
    // The rebuild with the LoRA's branches writes its optimized graph over the first one's.
    if (lora) await t.setLoras([{ branches: ditLora(readLora(path.join(GOLDEN_CASES, lora)), t.config, t.linearShapes).branches, strength: 0.7 }]);
    const out = await t.forward({
      img: c.readF32('hidden_states'), txt: c.readF32('encoder_hidden_states'), vec: c.readF32('pooled_projections'),
      timestep: c.readF32('a.timestep')[0], guidance: c.readF32('a.guidance')[0], imgIds: c.readF32('img_ids'), txtIds: c.readF32('txt_ids'),
    });
    const model = ModelProto.decode(fs.readFileSync(optimizedModelPath)) as unknown as { graph: { node: Array<{ opType: string; input: string[] }> } };
    const ops = new Map<string, number>();
    for (const n of model.graph.node) {
      const key = n.opType === 'MatMulNBits' && n.input.length > 5 && n.input[5] ? 'MatMulNBits+bias' : n.opType;
      ops.set(key, (ops.get(key) ?? 0) + 1);
    }
    return { out, ops };
  } finally {
    await t.release();
  }
}

describe('DiT kernel choices that keep the math (nbitsBias, disabledOptimizers)', function () {
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
    const added = await run({ ...common, nbitsBias: false }, tmp.dir);
    const inside = await run({ ...common, nbitsBias: true }, tmp.dir);
    const s = compare(inside.out, added.out);
    assert.ok(s.relL2 < 1e-5, `relative L2 to the Add form ${s.relL2}`);
  });

  it('MatMulAddFusion disabled: a LoRA branch keeps its MatMul + Add, which onnxruntime otherwise makes one Gemm; same output', async () => {
    const common: FluxTransformerOptions = { format: 'fp32', inlineLimit: 0, cacheDir: tmp.dir };
    const fused = await run(common, tmp.dir, 'lora-peft.safetensors');
    const kept = await run({ ...common, disabledOptimizers: ['MatMulAddFusion'] }, tmp.dir, 'lora-peft.safetensors');
    assert.ok((fused.ops.get('Gemm') ?? 0) > (kept.ops.get('Gemm') ?? 0), `Gemm nodes: ${fused.ops.get('Gemm')} fused, ${kept.ops.get('Gemm')} with the fusion off`);
    assert.ok((kept.ops.get('MatMul') ?? 0) > (fused.ops.get('MatMul') ?? 0));
    const s = compare(kept.out, fused.out);
    assert.ok(s.relL2 < 1e-5, `relative L2 to the fused form ${s.relL2}`);
  });
});

describe('LoRA down-projection split along its inner dimension (ditLora.ts splitOf)', () => {
  it('the largest power of two leaving pieces of at least the width asked, dividing the dimension exactly', () => {
    assert.equal(splitOf(3072, 512), 4);
    assert.equal(splitOf(12288, 512), 16);
    assert.equal(splitOf(15360, 512), 16, '15,360 = 16 × 960');
    assert.equal(splitOf(64, 512), 1);
    assert.equal(splitOf(320, 16), 16);
    assert.equal(splitOf(96, 16), 4, '96 / 8 = 12 is narrower than 16');
    assert.equal(splitOf(1000, 16), 8, '1000 / 16 is wide enough but not whole');
  });
});
