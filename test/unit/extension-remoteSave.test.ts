import * as assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { RemoteSaver } from '../../src/extension/remoteSave';

describe('extension: saving what a remote server sent back', () => {
  let dir: string;
  beforeEach(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'majicflux-remote-save-'));
  });
  afterEach(() => fs.rmSync(dir, { recursive: true, force: true }));

  it('a temp file a closed window left mid-save is removed at the next save there; the user\'s files stay', async () => {
    // The window (extension host) that wrote it is gone: its pid is not alive.
    const gone = Number(spawnSync(process.execPath, ['-e', 'process.stdout.write(String(process.pid))'], { encoding: 'utf8' }).stdout);
    const left = `.cat.png.${gone}-0123456789ab.tmp`;
    const users = ['.cat.png.tmp', `.notes.${gone}-0123456789ab.txt`, 'cat.png.12-0123456789ab.tmp', 'photo.png'];
    for (const n of [left, ...users]) fs.writeFileSync(path.join(dir, n), 'x');
    const lines: string[] = [];
    const saver = new RemoteSaver({ info: (m) => lines.push(m) });
    const file = await saver.save(path.join(dir, 'dog.png'), Buffer.from('png'));
    assert.equal(file, path.join(dir, 'dog.png'));
    assert.deepEqual(fs.readdirSync(dir).sort(), [...users, 'dog.png'].sort());
    assert.match(lines.join('\n'), new RegExp(`removed 1 temporary file\\(s\\) an interrupted save left in .*${left.replace(/\./g, '\\.')}`));
    // At start, for a folder the history knows, without a save.
    const other = path.join(dir, 'older');
    fs.mkdirSync(other);
    fs.writeFileSync(path.join(other, left), 'x');
    await saver.sweep(other);
    assert.deepEqual(fs.readdirSync(other), []);
  });

  it('a save cancelled part-way leaves neither the image nor its temp file', async () => {
    const saver = new RemoteSaver();
    const abort = new AbortController();
    const saving = saver.save(path.join(dir, 'big.png'), Buffer.alloc(32 * 2 ** 20, 7), abort.signal);
    abort.abort();
    await assert.rejects(saving, { name: 'AbortError' });
    assert.deepEqual(fs.readdirSync(dir), []);
  });
});
