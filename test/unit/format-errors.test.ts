// The int8/int4 kernel choices each provider defaults to (OpChoices), measured on every golden
// case of the tiny model with every Linear quantized. The bounds are the product's promise for
// those formats: docs/BENCHMARKS.md ("Errors of the weight formats") has the full table, on the
// CPU and on WebGPU (scripts/gpu/golden-check.ts runs the same study there).
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { opChoicesFor } from '../../src/inference/onnx/providerOps';
import { FormatConfig, FormatErrors, measureFormatErrors } from '../helpers/formatErrors';

interface Bound { dit: number; latents: number; imageLevels: number; imageMeanLevels: number }

const webgpu = opChoicesFor('webgpu');
const cpu = opChoicesFor('cpu');
const cases: Array<FormatConfig & { bound: Bound }> = [
  // Reference points: fp16 weights, and int8 as it was before block 32 (block 128, float activations).
  // Measured on 2 cores (2026-12-06): fp16 8.9e-6 / 3.4e-6 / 0.00 levels; int8 block 128 float
  // activations 1.48e-2 / 9.7e-3 / 4.1 (mean 0.55); block 32 1.36e-2 / 9.9e-3 / 3.6 (0.49); block 32
  // int8 activations 2.14e-2 / 1.33e-2 / 4.5 (0.74); block 128 int8 activations 2.13e-2 / 1.44e-2 /
  // 5.2 (0.80); int4 block 32 0.21 / 0.17 / 67 (9.4). Random tiny weights: K = 64 leaves one or two
  // blocks per row, so these are larger than FLUX.1's (docs/BENCHMARKS.md).
  { name: 'fp16', format: 'fp16', bound: { dit: 1e-4, latents: 1e-4, imageLevels: 0.5, imageMeanLevels: 0.05 } },
  { name: 'int8, block 128, float activations', format: 'int8', tuning: { nbitsBlock: 128, int8Activations: false }, bound: { dit: 1.6e-2, latents: 1.2e-2, imageLevels: 5, imageMeanLevels: 0.7 } },
  // WebGPU's int8 choices (its float16 compute and matmul attention are measured on WebGPU: scripts/gpu/golden-check.ts).
  { name: `int8, WebGPU's blocks and activations (block ${webgpu.nbitsBlock}, int8 activations ${webgpu.int8Activations ? 'on' : 'off'})`, format: 'int8', tuning: { nbitsBlock: webgpu.nbitsBlock, int8Activations: webgpu.int8Activations }, bound: { dit: 1.5e-2, latents: 1.2e-2, imageLevels: 4.5, imageMeanLevels: 0.6 } },
  { name: `int8, block ${webgpu.nbitsBlock}, int8 activations`, format: 'int8', tuning: { nbitsBlock: webgpu.nbitsBlock, int8Activations: true }, bound: { dit: 2.5e-2, latents: 1.7e-2, imageLevels: 6, imageMeanLevels: 1 } },
  // What the CPU runs by default.
  { name: `int8, the CPU's choices (block ${cpu.nbitsBlock}, int8 activations ${cpu.int8Activations ? 'on' : 'off'})`, format: 'int8', tuning: { nbitsBlock: cpu.nbitsBlock, int8Activations: cpu.int8Activations }, bound: { dit: 2.5e-2, latents: 1.8e-2, imageLevels: 6.5, imageMeanLevels: 1 } },
  { name: `int4, block ${webgpu.nbitsBlock}`, format: 'int4', tuning: { nbitsBlock: webgpu.nbitsBlock, int8Activations: webgpu.int8Activations }, bound: { dit: 0.25, latents: 0.21, imageLevels: 80, imageMeanLevels: 12 } },
];

describe('weight formats: error on every golden case, every Linear quantized (CPU)', function () {
  this.timeout(300_000);
  const cacheDir = fs.mkdtempSync(path.join(os.tmpdir(), 'mf-format-errors-'));
  const measured = new Map<string, FormatErrors>();
  after(() => {
    fs.rmSync(cacheDir, { recursive: true, force: true });
    for (const m of measured.values()) console.log(`      ${m.config}: DiT ${m.dit.toExponential(2)}, latents ${m.latents.toExponential(2)}, image ≤ ${m.imageLevels.toFixed(2)} levels (mean ${m.imageMeanLevels.toFixed(3)})`);
  });

  for (const c of cases) {
    it(`${c.name}: DiT ≤ ${c.bound.dit}, latents ≤ ${c.bound.latents}, image within ${c.bound.imageLevels} levels (mean ${c.bound.imageMeanLevels})`, async () => {
      const m = await measureFormatErrors(c, 'cpu', cacheDir);
      measured.set(c.name, m);
      assert.ok(m.dit > (c.format === 'fp16' ? 0 : 1e-3), 'every Linear is in the format: its error shows');
      assert.ok(m.dit <= c.bound.dit, `DiT relative L2 ${m.dit}`);
      assert.ok(m.latents <= c.bound.latents, `latents relative L2 ${m.latents}`);
      assert.ok(m.imageLevels <= c.bound.imageLevels, `image differs by ${m.imageLevels} levels`);
      assert.ok(m.imageMeanLevels <= c.bound.imageMeanLevels, `image differs by ${m.imageMeanLevels} levels on average`);
    });
  }

  it('WebGPU\'s int8 blocks and activations are no less accurate than the int8 they replaced (block 128, float activations)', async () => {
    const before = await measureFormatErrors({ name: 'block 128', format: 'int8', tuning: { nbitsBlock: 128, int8Activations: false } }, 'cpu', cacheDir);
    const now = await measureFormatErrors({ name: 'WebGPU', format: 'int8', tuning: { nbitsBlock: webgpu.nbitsBlock, int8Activations: webgpu.int8Activations } }, 'cpu', cacheDir);
    assert.ok(now.dit <= before.dit && now.imageMeanLevels <= before.imageMeanLevels, `WebGPU's: DiT ${now.dit}, image ${now.imageMeanLevels} levels; block 128: ${before.dit}, ${before.imageMeanLevels}`);
  });
});
