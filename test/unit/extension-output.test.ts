import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { isInside, OutputReservations, outputPath, resolveOutputFolder, seedsFor, workspaceFolderFor } from '../../src/extension/output';
import { folderProblem, refusalKind } from '../../src/inference/system/writableFolder';

const values = { date: new Date(2026, 0, 2, 3, 4, 5), seed: 9, prompt: 'a cat', steps: 4, width: 64, height: 64, guidance: 3.5, index: 1, model: 'demo' };

describe('extension: output folder and names', () => {
  it('puts images in generated/ next to the .flux file, else at the workspace root', () => {
    assert.equal(resolveOutputFolder({ setting: 'generated', fluxFile: '/ws/prompts/a.flux', workspaceRoot: '/ws' }), path.normalize('/ws/prompts/generated'));
    assert.equal(resolveOutputFolder({ setting: 'generated', workspaceRoot: '/ws' }), path.normalize('/ws/generated'));
    assert.equal(resolveOutputFolder({ setting: '', workspaceRoot: '/ws' }), path.normalize('/ws/generated'));
    assert.equal(resolveOutputFolder({ setting: '${workspaceFolder}/images', fluxFile: '/ws/p/a.flux', workspaceRoot: '/ws' }), path.normalize('/ws/images'));
    assert.equal(resolveOutputFolder({ setting: '/data/out', workspaceRoot: '/ws' }), path.normalize('/data/out'));
    assert.equal(resolveOutputFolder({ setting: '~/Pictures', home: '/h' }), path.normalize('/h/Pictures'));
    assert.equal(resolveOutputFolder({ setting: 'generated' }), undefined, 'no folder open: ask');
    assert.equal(resolveOutputFolder({ setting: '${workspaceFolder}/x' }), undefined);
  });

  it('multi-root: the workspace folder is the one holding the document the run came from, else the first', () => {
    const folders = [path.normalize('/ws/a'), path.normalize('/ws/b'), path.normalize('/ws/b/nested')];
    // Generate from Selection in b/notes.md (was: a/generated, the first folder's).
    const root = workspaceFolderFor(path.normalize('/ws/b/notes.md'), folders);
    assert.equal(root, path.normalize('/ws/b'));
    assert.equal(resolveOutputFolder({ setting: 'generated', workspaceRoot: root }), path.normalize('/ws/b/generated'));
    assert.equal(resolveOutputFolder({ setting: '${workspaceFolder}/images', workspaceRoot: root }), path.normalize('/ws/b/images'));
    assert.equal(workspaceFolderFor(path.normalize('/ws/b/nested/x/in.png'), folders), path.normalize('/ws/b/nested'), 'the innermost folder');
    assert.equal(workspaceFolderFor(path.normalize('/ws/a'), folders), path.normalize('/ws/a'));
    // A sibling whose name starts like a folder's is not inside it.
    assert.equal(workspaceFolderFor(path.normalize('/ws/bb/x.md'), folders), path.normalize('/ws/a'));
    assert.equal(workspaceFolderFor(path.normalize('/elsewhere/x.md'), folders), path.normalize('/ws/a'), 'outside every folder: the first (documented)');
    assert.equal(workspaceFolderFor(undefined, folders), path.normalize('/ws/a'), 'no document (the walkthrough): the first');
    assert.equal(workspaceFolderFor(path.normalize('/ws/b/x.md'), []), undefined, 'no folder open: ask');
  });

  it('names files from the template, or from a block out: relative to the .flux file', () => {
    assert.equal(outputPath({ folder: '/ws/generated', template: '{date}-{seed}-{slug}.png', values }), path.normalize('/ws/generated/2026-01-02-9-a-cat.png'));
    assert.equal(
      outputPath({ folder: '/ws/generated', template: 'x.png', values, fluxFile: '/ws/p/a.flux', outTemplate: 'cats/{seed}-{index}.png' }),
      path.normalize('/ws/p/cats/9-1.png'),
    );
    // An untitled .flux document's out: (was: ignored, the image named by the file-name template instead).
    assert.equal(
      outputPath({ folder: '/ws/generated', template: 'x.png', values, outTemplate: 'cats/{seed}-{index}.png', outBase: '/ws' }),
      path.normalize('/ws/cats/9-1.png'),
    );
  });

  it('never hands out an existing or reserved name', () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'mf-out-'));
    try {
      fs.writeFileSync(path.join(dir, 'a.png'), '');
      fs.writeFileSync(path.join(dir, 'a-1.png'), '');
      const r = new OutputReservations();
      const first = r.reserve(path.join(dir, 'a.png'));
      const second = r.reserve(path.join(dir, 'a.png'));
      assert.equal(first, path.join(dir, 'a-2.png'));
      assert.equal(second, path.join(dir, 'a-3.png'));
      r.release(first);
      assert.equal(r.reserve(path.join(dir, 'a.png')), first);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  it('finds an output folder that cannot be written before a run: a file in the way, a read-only folder above it', () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'mf-out-'));
    try {
      fs.writeFileSync(path.join(dir, 'generated'), 'not a folder');
      assert.deepEqual(folderProblem(path.join(dir, 'generated')), { code: 'fileInTheWay', path: path.join(dir, 'generated') });
      assert.deepEqual(folderProblem(path.join(dir, 'generated', 'foxes')), { code: 'fileInTheWay', path: path.join(dir, 'generated') });
      // Folders yet to be made are fine (the server makes them); what decides is the nearest one that exists.
      assert.equal(folderProblem(path.join(dir, 'new', 'deeper')), undefined);
      const asked: string[] = [];
      const readOnly = (d: string) => (asked.push(d), false);
      assert.deepEqual(folderProblem(path.join(dir, 'new', 'deeper'), readOnly), { code: 'notWritable', path: dir });
      assert.deepEqual(asked, [dir]);
      fs.mkdirSync(path.join(dir, 'ro'));
      fs.chmodSync(path.join(dir, 'ro'), 0o555);
      // The real check (root may write anyway, so only where the process cannot).
      if (process.getuid?.() !== 0) assert.deepEqual(folderProblem(path.join(dir, 'ro')), { code: 'notWritable', path: path.join(dir, 'ro') });
    } finally {
      if (fs.existsSync(path.join(dir, 'ro'))) fs.chmodSync(path.join(dir, 'ro'), 0o755);
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  it('says read-only for a read-only disk or the user\'s own folder with its write bits off, and no permission for someone else\'s folder, even a read-only one', () => {
    const own = 1000;
    assert.equal(refusalKind('EROFS', { uid: 0, mode: 0o40755 }, own), 'readOnly');
    assert.equal(refusalKind('EACCES', { uid: own, mode: 0o40555 }, own), 'readOnly');
    // Was: 'read-only. Make it writable' for root's 0555 folder, which this user cannot change.
    assert.equal(refusalKind('EACCES', { uid: 0, mode: 0o40555 }, own), false);
    assert.equal(refusalKind('EACCES', { uid: 0, mode: 0o40755 }, own), false);
    assert.equal(refusalKind('EACCES', { uid: own, mode: 0o40755 }, own), false, 'writable bits on: an ACL or a mount option, not the mode');
    assert.equal(refusalKind('EACCES', undefined, own), false);
    // Windows has no uid: never read-only by mode.
    assert.equal(refusalKind('EPERM', { uid: 0, mode: 0o40555 }, undefined), false);
  });

  it('seeds: fixed counts up, random draws', () => {
    assert.deepEqual(seedsFor(42, 3), [42, 43, 44]);
    let n = 100;
    assert.deepEqual(seedsFor('random', 2, () => n++), [100, 101]);
    assert.deepEqual(seedsFor(-1, 1, () => 5), [5]);
    assert.equal(seedsFor(undefined, 0).length, 1);
  });

  it('isInside', () => {
    assert.ok(isInside('/ws', '/ws/a/b.png'));
    assert.ok(!isInside('/ws', '/wsx/a.png'));
    assert.ok(!isInside('/ws', '/a.png'));
  });
});
