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
import { balanced, loraFactorBytes, loraGraphOptions, WeightedBranches } from '../../src/inference/graphs/ditLora';
import { opChoicesFor } from '../../src/inference/onnx/providerOps';

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

describe('the bias inside MatMulNBits by provider (OpChoices.nbitsBias)', () => {
  it('a WebGPU graph carries each quantized Linear\'s bias inside MatMulNBits (measured faster there); a CPU graph keeps the Add for its optimizer', async function () {
    this.timeout(120_000);
    const tmp = tempDir('mf-dit-bias-');
    const component = openComponent(BF16_FILE, 'dit');
    try {
      const biased = async (opsFor: 'webgpu' | 'cpu') => {
        const opts = { format: 'int8' as const, inlineLimit: 0, opsFor, cacheDir: tmp.dir };
        await prefillDit(component.weights, component.config, opts);
        return buildDit(component.weights, component.config, opts).graph.liveNodeList().filter((n) => n.opType === 'MatMulNBits' && n.input[5]).length;
      };
      assert.equal(opChoicesFor('webgpu').nbitsBias, true);
      assert.ok((await biased('webgpu')) > 0);
      assert.equal(await biased('cpu'), 0);
    } finally {
      component.weights.tensors.close();
      tmp.cleanup();
    }
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
    const branches = new Map([...shapes].map(([name, [out, inF]]) => [name, { rank: 2, a: Float32Array.from({ length: 2 * inF }, rand), bt: Float32Array.from({ length: 2 * out }, rand), scale: Float32Array.of(0.5, 0.25) }]));
    loras = [{ branches, strength: 0.8, id: 'seeded' }];
    base = await goldenDitForward(BF16_FILE, { format: 'fp32' });
    floatForm = await outputs({ loraNbits: false });
  });
  after(() => component.weights.tensors.close());

  const ops = (tuning: DitTuning) => {
    const nodes = buildDit(component.weights, component.config, { format: 'fp32', loras, ...tuning }).graph.liveNodeList();
    const count = (op: string) => nodes.filter((n) => n.opType === op).length;
    // Named lora_* so that a GPU profile can sum them (scripts/gpu/profile-summary.mjs).
    return { matmuls: count('MatMul'), nbits: count('MatMulNBits'), named: nodes.filter((x) => /(?:^|\/)lora_[a-z]+/.test(x.name)).length };
  };
  // The output with the LoRA at 0.8, and with its strength fed 0 (same session).
  async function outputs(tuning: DitTuning & { compute?: 'float16' }) {
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

  it('loraNbits both / down: MatMulNBits for both products or the down-projection alone (its output padded to 128 columns, sliced back), within the int8 error of the float form, strength 0 the base bit for bit', async () => {
    const n = loras[0].branches.size;
    const float = ops({ loraNbits: false });
    const both = ops({ loraNbits: 'both' });
    const down = ops({ loraNbits: 'down' });
    assert.equal(both.nbits - float.nbits, 2 * n, 'two MatMulNBits per branch');
    assert.equal(float.matmuls - both.matmuls, 2 * n, 'no float MatMul for the branches');
    assert.equal(down.nbits - float.nbits, n, 'one MatMulNBits per branch');
    assert.equal(float.matmuls - down.matmuls, n, 'the up-projection stays a float MatMul');
    assert.equal(float.named, 4 * n, 'the float form\'s four nodes per branch are named lora_*');
    assert.equal(both.named, 5 * n, "so are the 8-bit forms', with the slice of the padded down-projection");
    assert.equal(down.named, 5 * n);
    assert.ok(compare(floatForm.withLora, base).relL2 > 1e-3, 'the LoRA changes the output');
    const delta = compare(floatForm.withLora, base).relL2;
    for (const products of ['both', 'down'] as const) {
      const b = await outputs({ loraNbits: products });
      const s = compare(b.withLora, floatForm.withLora);
      // The branch's own error, relative to what the LoRA changes: int8 blocks with int8 activations (the CPU's choice) hold ≈ 1 %.
      console.log(`      loraNbits ${products}: relative L2 to the float form ${s.relL2.toExponential(2)}; the LoRA's change ${delta.toExponential(2)}`);
      assert.ok(s.relL2 < 0.03 * delta, `${products}: relative L2 to the float form ${s.relL2}, the LoRA changed the output by ${delta}`);
      assert.ok(s.relL2 > 0, `${products}: the 8-bit factors differ from the float ones`);
      assertBaseExactly(b.zero);
    }
  });

  it('loraSplit 2 and 4: the down-projection as one product with S pieces side by side, its diagonal gathered and summed — the float form\'s output (float32 and float16), strength 0 the base bit for bit', async () => {
    const n = loras[0].branches.size;
    const split = ops({ loraSplit: 4 });
    const float = ops({ loraNbits: false });
    assert.equal(split.matmuls, float.matmuls, 'still one MatMul per product');
    assert.equal(split.named - float.named, 2 * n, 'a Gather and a ReduceSum more per branch (every Linear of the tiny DiT divides by 4)');
    for (const s of [2, 4]) {
      const b = await outputs({ loraSplit: s });
      const d = compare(b.withLora, floatForm.withLora);
      assert.ok(d.relL2 < 1e-6, `float32, split ${s}: relative L2 to one MatMul ${d.relL2}`);
      assertBaseExactly(b.zero);
    }
    const f16 = await outputs({ loraNbits: false, compute: 'float16' });
    const s16 = await outputs({ loraSplit: 4, compute: 'float16' });
    const d16 = compare(s16.withLora, f16.withLora);
    assert.ok(d16.relL2 < 2e-3, `float16, split 4: relative L2 to one MatMul ${d16.relL2} (float16 sums in another order)`);
  });

  it('loraGemm: the up-projection and its Add as one Gemm onto the base output — the float form\'s output (float32 and float16, alone and with the split), strength 0 the base bit for bit', async () => {
    const n = loras[0].branches.size;
    const count = (tuning: DitTuning, op: string) => buildDit(component.weights, component.config, { format: 'fp32', loras, ...tuning }).graph.liveNodeList().filter((x) => x.opType === op && /(?:^|\/)lora_[a-z]+/.test(x.name)).length;
    assert.equal(count({ loraGemm: true }, 'Gemm'), n, 'one Gemm per branch');
    assert.equal(count({ loraGemm: true }, 'Add'), 0, 'no Add of its own');
    assert.equal(count({ loraGemm: false }, 'Gemm'), 0);
    for (const tuning of [{ loraGemm: true }, { loraGemm: true, loraSplit: 2 }]) {
      const b = await outputs(tuning);
      const d = compare(b.withLora, floatForm.withLora);
      assert.ok(d.relL2 < 1e-6, `float32, ${JSON.stringify(tuning)}: relative L2 to MatMul + Add ${d.relL2}`);
      assertBaseExactly(b.zero);
    }
    const f16 = await outputs({ loraNbits: false, compute: 'float16' });
    const g16 = await outputs({ loraGemm: true, compute: 'float16' });
    const d16 = compare(g16.withLora, f16.withLora);
    assert.ok(d16.relL2 < 2e-3, `float16: relative L2 to MatMul + Add ${d16.relL2}`);
  });

  it('loraFactorBytes: the bytes of the factor initializers a DiT graph gets for its LoRAs, in every branch form (the GPU plan counts them beside the weights)', () => {
    // The same LoRA twice is one slot; another file with the same shapes a second.
    const set = [...loras, { ...loras[0], strength: 0.3 }, { ...loras[0], id: 'another' }];
    const forms: Array<DitTuning & { compute?: 'float32' | 'float16'; opsFor?: 'dml' }> = [
      { loraNbits: false }, { loraNbits: false, compute: 'float16' }, { loraNbits: false, loraSplit: 4, compute: 'float16' },
      { loraNbits: 'down' }, { loraNbits: 'both', compute: 'float16' }, { loraNbits: 'both', opsFor: 'dml' /* explicit zero points */ },
    ];
    for (const t of forms) {
      const g = buildDit(component.weights, component.config, { format: 'fp32', loras: set, ...t }).graph;
      const built = g.initializerSummary().filter((i) => /(?:^|\/)lora\d+\./.test(i.name)).reduce((a, i) => a + i.bytes, 0);
      const slots = new Set(g.initializerSummary().flatMap((i) => /(?:^|\/)lora(\d+)\./.exec(i.name)?.[1] ?? [])).size;
      assert.equal(slots, 2, JSON.stringify(t));
      assert.equal(loraFactorBytes(set, loraGraphOptions(t, opChoicesFor(t.opsFor), t.compute ?? 'float32', 'fp32')), built, JSON.stringify(t));
    }
    assert.equal(loraFactorBytes([], loraGraphOptions({}, opChoicesFor('webgpu'), 'float16', 'int8')), 0);
  });

  it('a loaded DiT says the bytes of the LoRA factors its session holds, also for a LoRA left at strength 0 (no rebuild), and the new set\'s once rebuilt', async () => {
    const t = await FluxTransformer.load(BF16_FILE, { format: 'fp32', loras, loraNbits: false });
    try {
      const bytes = loraFactorBytes(loras, loraGraphOptions({ loraNbits: false }, opChoicesFor('cpu'), 'float32', 'fp32'));
      assert.ok(bytes > 0);
      assert.equal(t.loraBytes, bytes);
      await t.setLoras([]);
      assert.equal(t.sessionBuilds, 1, 'removed by a strength, not a rebuild');
      assert.equal(t.loraBytes, bytes, 'its factors still in the session');
      await t.setLoras([{ ...loras[0], id: 'another' }]);
      assert.equal(t.sessionBuilds, 2);
      assert.equal(t.loraBytes, bytes, 'one slot again: the other LoRA alone');
    } finally {
      await t.release();
    }
  });

  it('loraNbits with float16 compute (scales in float16): within the int8 error of the float16 float form, strength 0 the float16 base bit for bit', async () => {
    const f16 = await outputs({ loraNbits: false, compute: 'float16' });
    const q = await outputs({ loraNbits: 'both', compute: 'float16' });
    const base16 = await goldenDitForward(BF16_FILE, { format: 'fp32', compute: 'float16' });
    const delta = compare(f16.withLora, base16).relL2;
    const s = compare(q.withLora, f16.withLora);
    assert.ok(delta > 1e-3, 'the LoRA changes the output');
    assert.ok(s.relL2 < 0.05 * delta, `relative L2 to the float16 float form ${s.relL2}, the LoRA changed the output by ${delta}`);
    for (let i = 0; i < base16.length; i++) if (q.zero[i] !== base16[i]) assert.fail(`strength 0: element ${i} is ${q.zero[i]}, the base gave ${base16[i]}`);
  });
});

describe('LoRA factors shared out by a power of two (ditLora balanced)', () => {
  it('A·2^e and Bᵀ·2^-e: the same product in float32, the rows\' largest magnitudes within 2× of each other, small (α/r)·B lifted out of float16\'s subnormals', () => {
    const r = 3;
    const inF = 5;
    const out = 4;
    let seed = 11;
    const rand = () => ((seed = (Math.imul(seed, 1664525) + 1013904223) >>> 0) / 2 ** 32 - 0.5);
    // α/r folded into B makes it tiny (2^-20 ≈ 1e-6: a float16 subnormal); one rank row is all zeros.
    const b = { rank: r, a: Float32Array.from({ length: r * inF }, (_, i) => (i >= 2 * inF ? 0 : rand())), bt: Float32Array.from({ length: r * out }, rand), scale: Float32Array.of(2 ** -20, 1, 2 ** -20) };
    const { a, bt } = balanced(b, inF, out);
    for (let i = 0; i < inF; i++) {
      for (let o = 0; o < out; o++) {
        let before = 0;
        let after = 0;
        for (let j = 0; j < r; j++) {
          before += b.a[j * inF + i] * Math.fround(b.bt[j * out + o] * b.scale[j]);
          after += a[j * inF + i] * bt[j * out + o];
        }
        assert.equal(after, before, `product [${i}, ${o}]`);
      }
    }
    for (let j = 0; j < 2; j++) {
      const maxA = Math.max(...Array.from(a.subarray(j * inF, (j + 1) * inF), Math.abs));
      const maxB = Math.max(...Array.from(bt.subarray(j * out, (j + 1) * out), Math.abs));
      assert.ok(maxA / maxB < 2 && maxB / maxA < 2, `row ${j}: |A| ${maxA}, |B| ${maxB}`);
      assert.ok(maxB > 2 ** -14, `row ${j}: B's largest value ${maxB} is a normal float16`);
    }
    assert.deepEqual(Array.from(a.subarray(2 * inF)), new Array(inF).fill(0), 'a zero row stays as it is');
  });
});

describe('which LoRA branch form a DiT gets (loraGraphOptions)', () => {
  it('a provider that chooses 8-bit branches gets them beside an int8/int4 base only; an fp8/fp16 base keeps float branches unless asked', () => {
    const choices = { ...opChoicesFor('webgpu'), loraNbits: 'down' as const };
    assert.equal(loraGraphOptions({}, choices, 'float16', 'int8').nbits?.products, 'down');
    assert.ok(loraGraphOptions({}, choices, 'float16', 'int4').nbits);
    assert.equal(loraGraphOptions({}, choices, 'float16', 'fp8').nbits, undefined);
    assert.equal(loraGraphOptions({}, choices, 'float16', 'fp16').nbits, undefined);
    assert.equal(loraGraphOptions({ loraNbits: 'both' }, opChoicesFor('webgpu'), 'float16', 'fp8').nbits?.products, 'both', 'asked for');
    assert.equal(loraGraphOptions({ loraNbits: false }, choices, 'float16', 'int8').nbits, undefined, 'refused');
    assert.deepEqual(loraGraphOptions({}, choices, 'float16', 'int8').nbits, { products: 'down', block: 32, int8Activations: false, explicitZeroPoints: false }, "the base's block and activations");
  });

  it('WebGPU: float branches with the down-projection split 4 ways and the up-projection + Add as one Gemm (measured +7.7 % a step against +11.5 %); the CPU: one MatMul and an Add (its optimizer fuses them, and the split is 4× the multiply-adds)', () => {
    for (const format of ['int8', 'int4', 'fp8', 'fp16'] as const) {
      const webgpu = loraGraphOptions({}, opChoicesFor('webgpu'), 'float16', format);
      assert.equal(webgpu.nbits, undefined, `${format}: float branches`);
      assert.equal(webgpu.split, 4, format);
      assert.equal(webgpu.gemm, true, format);
      const cpu = loraGraphOptions({}, opChoicesFor('cpu'), 'float32', format);
      assert.equal(cpu.split, 1, format);
      assert.equal(cpu.gemm, false, format);
    }
    const asked = loraGraphOptions({ loraSplit: 1, loraGemm: false }, opChoicesFor('webgpu'), 'float16', 'int8');
    assert.deepEqual([asked.split, asked.gemm], [1, false], 'a benchmark may ask for the other form');
  });
});
