// GGUF DiTs (issue 17 item 3): the golden tiny DiT written as Q8_0 and Q4_0 GGUF files (the test
// writer follows the GGUF specification) runs as MatMulNBits blocks of 32 with the file's own
// codes and scales, so its output is the output of the same graph fed the dequantized weights,
// within float rounding; and the golden fp32 reference within the format's error.

import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { openTensors } from '../../src/inference/formats/safetensors';
import { writeSafetensors } from '../../src/inference/formats/safetensorsWriter';
import { inspectPath } from '../../src/inference/formats/layouts/inspect';
import { buildDit } from '../../src/inference/graphs/dit';
import { DitInputs, FluxTransformer, FluxTransformerOptions } from '../../src/inference/graphs/fluxTransformer';
import { openComponent } from '../../src/inference/formats/layouts/components';
import { compare, GOLDEN_MODELS, goldenCase } from '../helpers/golden';
import { writeQuantizedDit } from '../helpers/writeGguf';
import { tempDir } from '../helpers/writeSafetensors';

const SIDECAR = path.join(GOLDEN_MODELS, 'flux-tiny.config.json');

function inputs(k: string): DitInputs {
  const c = goldenCase('transformer.safetensors');
  return {
    img: c.readF32('hidden_states'), txt: c.readF32('encoder_hidden_states'), vec: c.readF32('pooled_projections'),
    timestep: c.readF32(`${k}.timestep`)[0], guidance: c.readF32(`${k}.guidance`)[0], imgIds: c.readF32('img_ids'), txtIds: c.readF32('txt_ids'),
  };
}

/** The same tensors as float32 safetensors, decoded from the GGUF: the reference that shares its values. */
function writeDequantized(gguf: string, file: string): void {
  const src = openTensors(gguf);
  writeSafetensors(file, src.names().map((name) => ({ name, dtype: 'F32', shape: src.info(name).shape, bytes: () => new Uint8Array(src.readF32(name).buffer) })));
  fs.copyFileSync(SIDECAR, file.replace(/\.safetensors$/, '.config.json'));
  src.close();
}

async function run(file: string, opts: FluxTransformerOptions): Promise<Float32Array[]> {
  const t = await FluxTransformer.load(file, opts);
  try {
    const outs: Float32Array[] = [];
    for (const k of ['a', 'b']) outs.push(await t.forward(inputs(k)));
    return outs;
  } finally {
    await t.release();
  }
}

describe('GGUF DiT (formats/gguf.ts, Q8_0/Q4_0 → MatMulNBits block 32)', function () {
  this.timeout(300_000);
  let tmp: ReturnType<typeof tempDir>;
  before(() => (tmp = tempDir('gguf-dit-')));
  after(() => tmp.cleanup());

  for (const type of ['Q8_0', 'Q4_0'] as const) {
    it(`${type}: inspect names every tensor's type and how it runs`, () => {
      const file = path.join(tmp.dir, `inspect-${type}.gguf`);
      writeQuantizedDit(file, type);
      const [dit] = inspectPath(file).components;
      assert.equal(dit.kind, 'dit');
      assert.equal(dit.layout, 'bfl-dit');
      assert.deepEqual(Object.keys(dit.stats.dtypes).sort(), ['F32', type].sort());
      assert.equal(dit.stats.dtypes[type]!.tensors, 36);
      assert.ok(dit.notes.some((n) => n.startsWith(`36 GGUF ${type} tensors: run as ${type === 'Q8_0' ? 'int8' : 'int4'} MatMulNBits blocks of 32, bit for bit`)), dit.notes.join('\n'));
    });
  }

  // The golden bounds are format-errors.test's for int8 / int4 blocks of 32 (relative L2 1.5e-2 / 0.25).
  for (const [type, golden] of [['Q8_0', { maxAbsRel: 2.5e-2, relL2: 1.5e-2 }], ['Q4_0', { maxAbsRel: 0.3, relL2: 0.25 }]] as const) {
    it(`${type} on the CPU: its dequantized reference within float rounding, the golden fp32 output within the format's error`, async () => {
      const file = path.join(tmp.dir, `tiny-${type}.gguf`);
      writeQuantizedDit(file, type);
      const ref = path.join(tmp.dir, `tiny-${type}-dequantized.safetensors`);
      writeDequantized(file, ref);
      const cacheDir = path.join(tmp.dir, `cache-${type}`);
      // inlineLimit 0: every Linear is held as blocks (the tiny model's all fit the default limit).
      const opts = { ep: 'cpu', format: 'fp32', inlineLimit: 0, cacheDir, int8Activations: false } as const;
      const outs = await run(file, opts);
      const refs = await run(ref, { ...opts, cacheDir: undefined });
      outs.forEach((o, i) => {
        const own = compare(o, refs[i]);
        const g = compare(o, goldenCase('transformer.safetensors').readF32(`${'ab'[i]}.output`));
        console.log(`      ${type} ${'ab'[i]}: vs dequantized max abs ${own.maxAbs.toExponential(2)} rel L2 ${own.relL2.toExponential(2)}; vs golden fp32 max abs ${g.maxAbs.toExponential(2)} (of ${g.maxRef.toFixed(2)}) rel L2 ${g.relL2.toExponential(2)}`);
        assert.ok(own.maxAbs <= 1e-5 * own.maxRef && own.relL2 <= 1e-6, `${type} vs its dequantized weights: ${JSON.stringify(own)}`);
        assert.ok(g.maxAbs <= golden.maxAbsRel * g.maxRef && g.relL2 <= golden.relL2, `${type} vs golden: ${JSON.stringify(g)}`);
      });
      // Every Linear is a MatMulNBits of the file's bits and blocks, though the format asked was fp32.
      const c = openComponent(file, 'dit');
      const nodes = buildDit(c.weights, c.config, opts).graph.liveNodeList().filter((n) => n.opType === 'MatMulNBits');
      c.close();
      assert.equal(nodes.length, 36);
      const attr = (n: (typeof nodes)[number], a: string) => n.attribute.find((x) => x.name === a)?.i;
      assert.ok(nodes.every((n) => attr(n, 'block_size') === 32 && attr(n, 'bits') === (type === 'Q8_0' ? 8 : 4) && attr(n, 'accuracy_level') === undefined));
    });
  }

  it('Q4_1 (no MatMulNBits equivalent: its minimum is no whole zero point): decoded exactly, re-quantized to int8 blocks of 32, said so', async () => {
    const file = path.join(tmp.dir, 'tiny-Q4_1.gguf');
    writeQuantizedDit(file, 'Q4_1');
    const [dit] = inspectPath(file).components;
    assert.ok(dit.notes.some((n) => n.startsWith('36 GGUF Q4_1 tensors: decoded exactly and re-quantized to int8 MatMulNBits blocks of 32')), dit.notes.join('\n'));
    const ref = path.join(tmp.dir, 'tiny-Q4_1-dequantized.safetensors');
    writeDequantized(file, ref);
    const opts = { ep: 'cpu', format: 'fp32', inlineLimit: 0, cacheDir: path.join(tmp.dir, 'cache-Q4_1'), int8Activations: false } as const;
    const [out] = await run(file, opts);
    const [expected] = await run(ref, { ...opts, cacheDir: undefined });
    const own = compare(out, expected);
    console.log(`      Q4_1 a: vs dequantized (int8 re-quantization) max abs ${own.maxAbs.toExponential(2)} rel L2 ${own.relL2.toExponential(2)}`);
    // int8 blocks of 32 over 4-bit values: format-errors.test's int8 block-32 bound, and not exact.
    assert.ok(own.relL2 <= 1.5e-2 && own.relL2 > 1e-6, JSON.stringify(own));
    const c = openComponent(file, 'dit');
    const nodes = buildDit(c.weights, c.config, opts).graph.liveNodeList().filter((n) => n.opType === 'MatMulNBits');
    c.close();
    assert.ok(nodes.length === 36 && nodes.every((n) => n.attribute.find((a) => a.name === 'bits')?.i === 8 && n.attribute.find((a) => a.name === 'block_size')?.i === 32));
  });
});
