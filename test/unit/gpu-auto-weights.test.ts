import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import { WeightFormat } from '../../src/inference/api';
import { chooseEp, chooseWeights, cudaInstalled } from '../../src/inference/providers';

// FLUX.1-dev's DiT: 11.9 B Linear weights.
const GIB = 2 ** 30;
const bytes: Record<WeightFormat, number> = { fp8: 11.1 * GIB, fp16: 22.2 * GIB, fp32: 44.4 * GIB, int8: 11.3 * GIB, int4: 5.7 * GIB };
const bytesFor = (f: WeightFormat) => bytes[f];

describe('weights: auto (providers.chooseWeights)', () => {
  it('CPU and CUDA keep fp8, whatever the budget', () => {
    for (const ep of ['cpu', 'cuda'] as const) assert.equal(chooseWeights(ep, bytesFor, 1 * GIB).format, 'fp8');
  });

  it('GPUs without a float8 DequantizeLinear: fp16 if it fits, else int8, else int4, and say why', () => {
    for (const ep of ['webgpu', 'dml', 'coreml'] as const) {
      assert.equal(chooseWeights(ep, bytesFor, 70 * GIB).format, 'fp16');
      const int8 = chooseWeights(ep, bytesFor, 16 * GIB);
      assert.equal(int8.format, 'int8');
      assert.match(int8.reason, /fp16 needs 22\.20 GiB/);
      assert.equal(chooseWeights(ep, bytesFor, 8 * GIB).format, 'int4');
      assert.match(chooseWeights(ep, bytesFor, 4 * GIB).reason, /exceeds/);
    }
  });

  it('an unknown GPU budget gives int8, with the way to allow fp16', () => {
    const d = chooseWeights('webgpu', bytesFor, undefined);
    assert.equal(d.format, 'int8');
    assert.match(d.reason, /gpuMemoryBudget/);
  });
});

describe('CUDA requested where its provider is missing (providers.chooseEp)', () => {
  it('falls back to the CPU with the install command for this copy of onnxruntime-node, a script that exists', async function () {
    if (cudaInstalled()) this.skip(); // a machine with the CUDA provider has nothing to fall back from
    const d = await chooseEp('dit', 'cuda', 'fp8');
    assert.equal(d.ep, 'cpu');
    const m = /node "([^"]+)" --onnxruntime-node-install=cuda12/.exec(d.note ?? '');
    assert.ok(m, `the note gives the command: ${d.note}`);
    assert.ok(fs.existsSync(m[1]), `${m[1]} exists`);
    assert.match(d.note!, /CUDA 12 runtime and cuDNN 9/);
  });
});
