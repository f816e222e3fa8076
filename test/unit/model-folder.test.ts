import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { isModelFolder } from '../../src/inference/formats/layouts/folder';
import { openComponent } from '../../src/inference/formats/layouts/components';
import { discoverModels } from '../../src/inference/models/discovery';

const FIXTURES = path.resolve(__dirname, '../fixtures');
const entries = (dir: string) => fs.readdirSync(dir);

describe('isModelFolder: the one test of "is this a model folder"', () => {
  it('is true for the diffusers layout (FLUX.1-dev fixture) and the mixed tiny models folder', () => {
    assert.equal(isModelFolder(entries(path.join(FIXTURES, 'FLUX.1-dev'))), true);
    assert.equal(isModelFolder(entries(path.join(FIXTURES, 'flux-tiny/models'))), true);
  });

  it('is false for a component folder, even a vae/ holding ae.safetensors, and for a non-model folder', () => {
    assert.equal(isModelFolder(entries(path.join(FIXTURES, 'FLUX.1-dev/transformer'))), false);
    assert.equal(isModelFolder(['ae.safetensors', 'config.json']), false);
    assert.equal(isModelFolder(entries(path.resolve(__dirname))), false);
    assert.equal(isModelFolder([]), false);
  });

  it('counts a few root checkpoints without an index, but not shards or a collection', () => {
    assert.equal(isModelFolder(['flux1-dev.safetensors', 'ae.safetensors']), true);
    assert.equal(isModelFolder(['model-00001-of-00002.safetensors', 'model-00002-of-00002.safetensors', 'model.safetensors.index.json']), false);
    assert.equal(isModelFolder(Array.from({ length: 9 }, (_, i) => `lora${i}.safetensors`)), false);
    assert.equal(isModelFolder(['model_index.json']), true);
  });

  it('the layout reader and discovery agree on the tiny models folder', () => {
    const models = path.join(FIXTURES, 'flux-tiny/models');
    assert.throws(() => openComponent(models), /is a whole model folder/);
    const found = discoverModels({ searchPaths: [models], env: {}, home: '/nonexistent' });
    assert.ok(found.some((m) => m.root === models), `discovery lists ${models}: ${found.map((m) => m.root).join(', ')}`);
  });
});
