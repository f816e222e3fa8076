// Issue 16 item 13: a DiT tensor of the wrong shape is refused when the checkpoint is opened (and by
// `inspect`), naming the tensor and both shapes — not by onnxruntime's shape inference mid-run.

import * as assert from 'node:assert/strict';
import * as path from 'node:path';
import { openComponent, openComponents } from '../../src/inference/formats/layouts/components';
import { LayoutError } from '../../src/inference/formats/layouts/detect';
import { ditRequiredNames } from '../../src/inference/formats/layouts/required';
import { ditExpectedShapes } from '../../src/inference/formats/ditShapes';
import { SafetensorsFile } from '../../src/inference/formats/safetensors';
import { tempDir, writeSafetensors } from '../helpers/writeSafetensors';

const MODELS = path.resolve(__dirname, '../fixtures/flux-tiny/models');
const BFL_FILE = path.join(MODELS, 'flux-tiny.safetensors');
const DIFFUSERS_FILE = path.join(MODELS, 'transformer/diffusion_pytorch_model.safetensors');

/** Copies a checkpoint, giving some tensors another shape with the same element count (bytes unchanged). */
function reshaped(src: string, dest: string, shapes: Record<string, number[]>): string {
  const f = SafetensorsFile.open(src);
  const out: Record<string, { dtype: string; shape: number[]; data: Uint8Array }> = {};
  for (const n of f.names()) out[n] = { dtype: f.info(n).dtype, shape: shapes[n] ?? f.info(n).shape, data: f.readBytes(n) };
  f.close();
  return writeSafetensors(dest, out);
}

function layoutError(fn: () => unknown): LayoutError {
  try {
    fn();
  } catch (e) {
    assert.ok(e instanceof LayoutError, `expected a LayoutError, got ${String(e)}`);
    return e;
  }
  assert.fail('expected a LayoutError, got none');
}

describe('DiT tensor shapes checked against the architecture (issue 16)', () => {
  let tmp: { dir: string; cleanup: () => void };
  before(() => {
    tmp = tempDir('dit-shapes-');
  });
  after(() => tmp.cleanup());
  const at = (name: string) => path.join(tmp.dir, name);

  it('the golden DiTs, in both layouts, have exactly the expected shapes', () => {
    for (const file of [BFL_FILE, DIFFUSERS_FILE]) {
      const dit = openComponent(file, 'dit');
      const expected = ditExpectedShapes(dit.config);
      assert.deepEqual([...expected.keys()], ditRequiredNames(dit.config));
      for (const [name, shape] of expected) assert.deepEqual(dit.weights.tensor(name).shape, shape, name);
      dit.close();
    }
  });

  it('refuses a weight of the right size but the wrong shape, naming it and both shapes', () => {
    const f = reshaped(BFL_FILE, at('bad-proj.safetensors'), { 'double_blocks.0.img_attn.proj.weight': [32, 128] });
    for (const open of [() => openComponent(f, 'dit'), () => openComponents(f)]) {
      const e = layoutError(open);
      assert.match(e.message, /bad-proj\.safetensors: DiT tensor "double_blocks\.0\.img_attn\.proj\.weight" has shape \[32,128\]; the architecture \(hidden_size 64, .*\) needs \[64,64\]/);
    }
  });

  it('refuses wrong biases and norm scales too, and counts the others', () => {
    const cases: Array<[string, number[], string]> = [
      ['single_blocks.1.linear2.bias', [64, 1], '[64]'],
      ['double_blocks.1.txt_attn.norm.key_norm.scale', [4, 4], '[16]'],
      ['final_layer.adaLN_modulation.1.weight', [64, 128], '[128,64]'],
    ];
    for (const [name, shape, needs] of cases) {
      const f = reshaped(BFL_FILE, at(`bad-${name}.safetensors`), { [name]: shape });
      const e = layoutError(() => openComponent(f, 'dit'));
      assert.ok(e.message.includes(`"${name}" has shape ${JSON.stringify(shape)}; `) && e.message.includes(` needs ${needs}: `), e.message);
    }
    const all = reshaped(BFL_FILE, at('bad-all.safetensors'), Object.fromEntries(cases.map(([n, s]) => [n, s])));
    const e = layoutError(() => openComponent(all, 'dit'));
    assert.match(e.message, /"final_layer\.adaLN_modulation\.1\.weight" has shape \[64,128\].* \(and 2 more tensors with the wrong shape\)/);
  });

  it('names the diffusers tensor when the checkpoint uses diffusers names', () => {
    const f = reshaped(DIFFUSERS_FILE, at('bad-diffusers.safetensors'), { 'transformer_blocks.1.attn.to_add_out.weight': [16, 256] });
    const e = layoutError(() => openComponent(f, 'dit'));
    assert.match(e.message, /DiT tensor "transformer_blocks\.1\.attn\.to_add_out\.weight" \(BFL "double_blocks\.1\.txt_attn\.proj\.weight"\) has shape \[16,256\]; .* needs \[64,64\]/);
  });
});
