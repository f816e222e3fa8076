// What a weight part's files are, as its two readers see them: the header check (checkWeightPart:
// what it reports missing, and the bytes it counts) and verification (partFiles: what it hashes).
// Pinned at the edges where they used to be two copies: config.json, an index that cannot be read,
// a shard an index lists that is not there, two indexes in a folder, GGUF, a path that is not there.

import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { partFiles } from '../../src/inference/models/check';
import { checkWeightPart } from '../../src/inference/models/partChecks';
import type { PartCheck } from '../../src/shared/models';
import { tempDir, writeIndex } from '../helpers/writeSafetensors';

describe('models: the files of a weight part', () => {
  let t: ReturnType<typeof tempDir>;
  let dir: string;
  beforeEach(() => {
    t = tempDir();
    dir = path.join(t.dir, 'text_encoder_2');
    fs.mkdirSync(dir);
  });
  afterEach(() => t.cleanup());

  /** A file of `size` bytes (garbage: the readers' verdict on it is not what these tests are about). */
  const file = (name: string, size = 10) => {
    const f = path.join(dir, name);
    fs.writeFileSync(f, Buffer.alloc(size, 7));
    return f;
  };
  const files = (p: string) => partFiles({ role: 't5', path: p } as PartCheck);

  it('an index: its shards as listed, config.json beside it; a listed shard not there is missing for the check and not hashed', () => {
    const a = file('model-00001-of-00002.safetensors', 100);
    const config = file('config.json', 3);
    const idx = writeIndex(path.join(dir, 'model.safetensors.index.json'), { 'a.weight': path.basename(a), 'b.weight': 'model-00002-of-00002.safetensors' });
    for (const p of [idx, dir]) {
      const c = checkWeightPart(p, 't5');
      assert.equal(c.status, 'missing', p);
      assert.equal(c.message, `model-00002-of-00002.safetensors not found in ${dir} (listed in model.safetensors.index.json)`);
      assert.equal(c.bytes, 100, 'the shards\' bytes only, not the index or config.json');
      assert.deepEqual(files(p), [config, a, idx]);
    }
  });

  it('an index that cannot be read stands for itself alone: corrupt with the reader\'s word; only it is hashed', () => {
    file('model-00001-of-00001.safetensors');
    file('config.json');
    const idx = path.join(dir, 'model.safetensors.index.json');
    fs.writeFileSync(idx, '{ not json');
    for (const p of [idx, dir]) {
      const c = checkWeightPart(p, 't5');
      assert.equal(c.status, 'corrupt', p);
      assert.match(c.message!, /index is not valid JSON/);
      assert.equal(c.bytes, 0);
      assert.deepEqual(files(p), [idx]);
    }
  });

  it('a folder without an index: its .safetensors files (and config.json for the hash); other files are not the part\'s', () => {
    const a = file('a.safetensors', 40);
    const b = file('b.safetensors', 2);
    const config = file('config.json', 5);
    file('README.md');
    file('weights.gguf', 1000);
    const c = checkWeightPart(dir, 't5');
    assert.equal(c.status, 'corrupt');
    assert.equal(c.bytes, 42);
    assert.deepEqual(files(dir), [a, b, config]);
  });

  it('a folder with two indexes is a folder without one', () => {
    const a = file('a.safetensors', 40);
    writeIndex(path.join(dir, 'one.safetensors.index.json'), { x: 'gone.safetensors' });
    writeIndex(path.join(dir, 'two.safetensors.index.json'), { x: 'gone.safetensors' });
    const c = checkWeightPart(dir, 't5');
    assert.notEqual(c.status, 'missing', 'no shard of either index is asked for');
    assert.equal(c.bytes, 40);
    assert.deepEqual(files(dir), [a]);
  });

  it('a folder with no checkpoint (config.json, a GGUF) holds nothing for the check; the hash takes config.json', () => {
    const config = file('config.json');
    file('model.gguf', 1000);
    const c = checkWeightPart(dir, 't5');
    assert.equal(c.status, 'missing');
    assert.equal(c.message, `${dir} holds no .safetensors file`);
    assert.deepEqual(files(dir), [config]);
  });

  it('a single file (safetensors or GGUF) is itself, with no config.json beside it', () => {
    file('config.json');
    for (const name of ['model.safetensors', 'model.gguf']) {
      const f = file(name, 30);
      const c = checkWeightPart(f, 't5');
      assert.equal(c.status, 'corrupt', name);
      assert.equal(c.bytes, 30, name);
      assert.deepEqual(files(f), [f], name);
    }
  });

  it('a path that is not there: missing for the check, nothing to hash', () => {
    const gone = path.join(dir, 'gone.safetensors');
    assert.deepEqual(checkWeightPart(gone, 't5'), { role: 't5', status: 'missing', path: gone, message: `${gone} does not exist` });
    assert.deepEqual(files(gone), []);
    assert.deepEqual(files(path.join(t.dir, 'nowhere')), []);
  });

  it('a .safetensors entry that is a folder is no checkpoint: its size is not counted, nor is it hashed', () => {
    fs.mkdirSync(path.join(dir, 'odd.safetensors'));
    const a = file('a.safetensors', 8);
    const c = checkWeightPart(dir, 't5');
    assert.equal(c.status, 'corrupt');
    assert.equal(c.bytes, 8, 'the file\'s bytes, not the folder entry\'s size');
    assert.deepEqual(files(dir), [a]);
  });

  it('a dangling link named like a checkpoint is a file missing for the check', () => {
    file('a.safetensors', 8);
    fs.symlinkSync(path.join(t.dir, 'gone.bin'), path.join(dir, 'b.safetensors'));
    const c = checkWeightPart(dir, 't5');
    assert.equal(c.status, 'missing');
    assert.match(c.message!, /^b\.safetensors not found in /);
    assert.deepEqual(files(dir).map((f) => path.basename(f)), ['a.safetensors']);
  });
});
