import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { FluxPipeline } from '../../src/inference/pipeline/pipeline';
import { inspectPath } from '../../src/inference/formats/layouts/inspect';
import { allInOneSidecar, COMFY_PREFIXES, writeAllInOne } from '../helpers/checkpoints';
import { GOLDEN_MODELS } from '../helpers/golden';
import { tempDir } from '../helpers/writeSafetensors';

describe('all-in-one checkpoints (ComfyUI / Forge: DiT, text encoders and VAE in one file)', function () {
  this.timeout(300_000);
  let tmp: ReturnType<typeof tempDir>;
  let file: string;
  before(() => {
    tmp = tempDir('mf-aio-');
    file = writeAllInOne(path.join(tmp.dir, 'flux-tiny-aio.safetensors'));
    allInOneSidecar(file);
  });
  after(() => tmp.cleanup());

  it('inspect names every component with its prefix, layout and dtypes', () => {
    const r = inspectPath(file);
    assert.equal(r.type, 'checkpoint');
    const got = r.components.map((c) => [c.kind, c.prefix, c.layout, Object.keys(c.stats.dtypes).sort().join('+')]);
    assert.deepEqual(got, [
      ['dit', COMFY_PREFIXES.dit, 'bfl-dit', 'BF16+F8_E4M3'],
      ['vae', COMFY_PREFIXES.vae, 'ldm-vae', 'F32'],
      ['clip', COMFY_PREFIXES.clip, 'hf-clip', 'BF16'],
      ['t5', COMFY_PREFIXES.t5, 'hf-t5', 'BF16'],
    ]);
    const dit = r.components[0];
    assert.equal(dit.architecture.num_heads, 4);
    assert.equal(r.components[2].architecture.num_attention_heads, 4);
  });

  it('generates from the single file the same pixels as the folder with the same DiT, same seed', async () => {
    const params = { prompt: 'a red fox in the snow', width: 64, height: 64, steps: 2, seed: 7 };
    const runtime = { weights: 'fp8', ep: 'cpu', memory: 'resident', cacheDir: path.join(tmp.dir, 'cache') } as const;
    const images: Float32Array[] = [];
    for (const spec of [{ dir: file }, { dir: GOLDEN_MODELS, transformer: path.join(GOLDEN_MODELS, 'flux-tiny-fp8.safetensors') }]) {
      const p = await FluxPipeline.create(spec, runtime);
      try {
        images.push((await p.generate(params)).image);
      } finally {
        await p.release();
      }
    }
    assert.equal(images[0].length, 64 * 64 * 3);
    assert.deepEqual(images[0], images[1]);
  });
});
