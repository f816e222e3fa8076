// The synchronous whole-file writes of system/atomicWrite.ts that the weight cache commits with.
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { replaceFileSync, writeFileOnceSync } from '../../src/inference/system/atomicWrite';

describe('atomicWrite: replaceFileSync and writeFileOnceSync', () => {
  let dir: string;
  beforeEach(() => (dir = fs.mkdtempSync(path.join(os.tmpdir(), 'mf-atomic-sync-'))));
  afterEach(() => fs.rmSync(dir, { recursive: true, force: true }));

  it('writeFileOnceSync writes a file that is not there, and leaves one that is (the first writer\'s stays); no temp file either way', () => {
    const f = path.join(dir, 'cache.json');
    assert.equal(writeFileOnceSync(f, 'first'), true);
    assert.equal(fs.readFileSync(f, 'utf8'), 'first');
    assert.equal(writeFileOnceSync(f, 'second'), false);
    assert.equal(fs.readFileSync(f, 'utf8'), 'first');
    assert.deepEqual(fs.readdirSync(dir), ['cache.json']);
  });

  it('replaceFileSync replaces a file whole; no temp file left, also when the folder is gone', () => {
    const f = path.join(dir, 'source.json');
    fs.writeFileSync(f, 'old');
    replaceFileSync(f, 'new');
    assert.equal(fs.readFileSync(f, 'utf8'), 'new');
    assert.deepEqual(fs.readdirSync(dir), ['source.json']);
    assert.throws(() => replaceFileSync(path.join(dir, 'gone', 'x.json'), 'x'), /ENOENT/);
    assert.deepEqual(fs.readdirSync(dir), ['source.json']);
  });
});
