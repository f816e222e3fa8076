import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { ditParams, FLUX_DEV, t5Params } from '../../src/inference/models/architecture';

const SRC = path.resolve(__dirname, '../../src');
const DEV = path.resolve(__dirname, '../fixtures/FLUX.1-dev');

function sourceFiles(dir: string): string[] {
  return fs.readdirSync(dir, { withFileTypes: true }).flatMap((e) => (e.isDirectory() ? sourceFiles(path.join(dir, e.name)) : e.name.endsWith('.ts') ? [path.join(dir, e.name)] : []));
}

describe('models/architecture: the parameter tables', () => {
  it('no production module but the demo writer imports the random-weight generator', () => {
    const importers = sourceFiles(SRC).filter((f) => /from '[./]*(models\/)?synthetic'/.test(fs.readFileSync(f, 'utf8')));
    assert.deepEqual(importers.map((f) => path.relative(SRC, f)), [path.join('inference', 'models', 'demo.ts')]);
  });

  it("FLUX_DEV's DiT and T5 tables hold exactly the parameters of FLUX.1-dev's bf16 checkpoints", () => {
    const indexTotal = (f: string) => JSON.parse(fs.readFileSync(path.join(DEV, f), 'utf8')).metadata.total_size as number;
    const bf16Bytes = (params: { shape: number[] }[]) => 2 * params.reduce((a, p) => a + p.shape.reduce((x, y) => x * y, 1), 0);
    assert.equal(bf16Bytes(ditParams(FLUX_DEV.dit)), indexTotal('transformer/diffusion_pytorch_model.safetensors.index.json'));
    assert.equal(bf16Bytes(t5Params(FLUX_DEV.t5)), indexTotal('text_encoder_2/model.safetensors.index.json'));
    const t5Names = Object.keys(JSON.parse(fs.readFileSync(path.join(DEV, 'text_encoder_2/model.safetensors.index.json'), 'utf8')).weight_map).sort();
    assert.deepEqual(t5Params(FLUX_DEV.t5).map((p) => p.name).sort(), t5Names);
  });
});
