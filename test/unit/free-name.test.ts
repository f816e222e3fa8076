import * as assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { firstFreeName, numberedName } from '../../src/inference/system/freeName';
import { uniquePath, writeNewFile } from '../../src/inference/system/atomicWrite';
import { OutputReservations } from '../../src/extension/output';
import { tempDir } from '../helpers/writeSafetensors';

describe('never-overwrite naming (system/freeName.ts)', () => {
  let t: { dir: string; cleanup: () => void };
  beforeEach(() => (t = tempDir('majicflux-freename-')));
  afterEach(() => t.cleanup());

  it('numbers before the extension, and only the file name', () => {
    assert.equal(numberedName('/a/img.png', 0), '/a/img.png');
    assert.equal(numberedName('/a/img.png', 2), '/a/img-2.png');
    assert.equal(numberedName('/a.b/noext', 1), '/a.b/noext-1');
    assert.equal(numberedName('/a/img.final.png', 3), '/a/img.final-3.png');
  });

  it('skips every taken name, also many in a row', () => {
    const taken = new Set(Array.from({ length: 50 }, (_, i) => numberedName('/x/img.png', i)));
    assert.equal(firstFreeName('/x/img.png', (p) => taken.has(p)), '/x/img-50.png');
    assert.equal(firstFreeName('/x/other.png', (p) => taken.has(p)), '/x/other.png');
  });

  it('writeNewFile keeps an existing file and writes beside it', async () => {
    const file = path.join(t.dir, 'img.png');
    fs.writeFileSync(file, 'old');
    assert.equal(await writeNewFile(file, Buffer.from('new')), path.join(t.dir, 'img-1.png'));
    assert.equal(fs.readFileSync(file, 'utf8'), 'old');
    assert.equal(fs.readFileSync(path.join(t.dir, 'img-1.png'), 'utf8'), 'new');
  });

  it('a file created after a name was chosen is not replaced (exclusive create, not check-then-write)', async () => {
    const file = path.join(t.dir, 'img.png');
    fs.writeFileSync(file, 'first');
    const chosen = firstFreeName(file, fs.existsSync);
    assert.equal(chosen, path.join(t.dir, 'img-1.png'));
    fs.writeFileSync(chosen, 'someone else');
    assert.equal(await writeNewFile(file, Buffer.from('mine')), path.join(t.dir, 'img-2.png'));
    assert.equal(fs.readFileSync(chosen, 'utf8'), 'someone else');
  });

  it('concurrent writers of one name each get their own file', async () => {
    const file = path.join(t.dir, 'img.png');
    const written = await Promise.all(Array.from({ length: 12 }, (_, i) => writeNewFile(file, Buffer.from(String(i)))));
    assert.equal(new Set(written).size, 12);
    assert.deepEqual(written.map((p) => fs.readFileSync(p, 'utf8')).sort((a, b) => Number(a) - Number(b)), Array.from({ length: 12 }, (_, i) => String(i)));
  });

  // What a remote server sends back is saved by the extension with writeNewFile: a write that stopped
  // midway (disk full, the editor killed) left a truncated PNG under the name the user opens.
  (process.platform === 'win32' ? it.skip : it)('writeNewFile leaves no partial file under the name when the write fails midway', () => {
    const file = path.join(t.dir, 'remote.png');
    const script = `require(${JSON.stringify(path.join(__dirname, '..', '..', 'src', 'inference', 'system', 'atomicWrite.ts'))}).writeNewFile(${JSON.stringify(file)}, Buffer.alloc(200000, 7)).then(() => process.exit(0), (e) => { console.error(e.code); process.exit(3); })`;
    // A file-size limit of 64 KiB: the write fails with EFBIG after 64 KiB, as on a full disk.
    const r = spawnSync('bash', ['-c', `ulimit -f 64; exec "${process.execPath}" -r tsx/cjs -e '${script}'`], { encoding: 'utf8', cwd: path.join(__dirname, '..', '..') });
    assert.equal(r.status, 3, r.stderr);
    assert.match(r.stderr, /EFBIG/);
    assert.deepEqual(fs.readdirSync(t.dir), [], 'neither a truncated remote.png nor a temp file');
  });

  it('the server (uniquePath) and the extension (OutputReservations) name alike', async () => {
    const file = path.join(t.dir, 'img.png');
    for (let i = 0; i < 3; i++) fs.writeFileSync(numberedName(file, i), 'x');
    assert.equal(await uniquePath(file), path.join(t.dir, 'img-3.png'));
    const r = new OutputReservations();
    assert.equal(r.reserve(file), path.join(t.dir, 'img-3.png'));
    assert.equal(r.reserve(file), path.join(t.dir, 'img-4.png'), 'a reserved name counts as taken');
  });
});
