// The folder of images dropped on the panel stays bounded: what is in use stays, what the history
// refers to stays past the age limit while the size allows, the rest goes least recently used
// first; a drop at the same time as a prune is never lost. Real files in a temp folder.

import * as assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import sharp from 'sharp';
import { DroppedImages } from '../../src/extension/panel/droppedImages';
import { CLEAR_ALL, DROPPED_LIMITS, filesToPrune, pruneDroppedImages } from '../../src/extension/panel/droppedPrune';
import { tempDir } from '../helpers/writeSafetensors';

const DAY = 24 * 3600_000;
const MiB = 2 ** 20;

describe('extension: pruning the images dropped on the panel', () => {
  let tmp: ReturnType<typeof tempDir>;
  let dir: string;
  beforeEach(() => {
    tmp = tempDir();
    dir = path.join(tmp.dir, 'globalStorage', 'inputs');
    fs.mkdirSync(dir, { recursive: true });
  });
  afterEach(() => tmp.cleanup());

  /** A stored image (by name only: the pruning reads names, sizes and times) of `size` bytes last used `daysAgo`. */
  function stored(tag: string, daysAgo: number, size = 1000, ext = 'png'): string {
    const file = path.join(dir, `${createHash('sha256').update(tag).digest('hex')}.${ext}`);
    fs.writeFileSync(file, Buffer.alloc(size));
    const when = new Date(Date.now() - daysAgo * DAY);
    fs.utimesSync(file, when, when);
    return file;
  }

  const left = () => new Set(fs.readdirSync(dir).map((n) => path.join(dir, n)));

  it('removes unused images past 30 days, oldest first, and keeps the panel\'s input image and those the history refers to', async () => {
    const current = stored('current', 90);
    const inHistory = stored('history', 60);
    const old = stored('old', 45);
    const older = stored('older', 50, 10, 'jpg');
    const recent = stored('recent', 29);
    const r = await pruneDroppedImages(dir, { inUse: [current], referenced: [inHistory] });
    assert.deepEqual(r.removed.map((f) => f.file), [older, old], 'least recently used first');
    assert.deepEqual(r.removed.map((f) => f.size), [10, 1000]);
    assert.deepEqual(left(), new Set([current, inHistory, recent]));
    assert.deepEqual([r.kept, r.keptBytes], [3, 3000]);
  });

  it('over the size limit removes the least recently used, referred to by the history or not, down to the limit', async () => {
    const limits = { ...DROPPED_LIMITS, maxBytes: 5 * MiB };
    const refOld = stored('ref-old', 20, 2 * MiB);
    const a = stored('a', 10, 2 * MiB);
    const b = stored('b', 5, 2 * MiB);
    const c = stored('c', 1, 2 * MiB);
    const current = stored('current', 30 - 1 / 24, 2 * MiB);
    // 10 MiB; the input image stays: the oldest three bring it to 4 MiB.
    const r = await pruneDroppedImages(dir, { inUse: [current], referenced: [refOld] }, limits);
    assert.deepEqual(r.removed.map((f) => f.file), [refOld, a, b]);
    assert.deepEqual(left(), new Set([c, current]));
    assert.equal(r.keptBytes, 4 * MiB);
  });

  it('never removes an image in use or used in the last minutes, even past every limit', async () => {
    const current = stored('current', 400, 3 * MiB);
    const fresh = stored('fresh', 1 / 24 / 60, 3 * MiB);
    const r = await pruneDroppedImages(dir, { inUse: [current], referenced: [] }, { ...DROPPED_LIMITS, maxBytes: 0, maxAgeMs: 0 });
    assert.deepEqual(r.removed, []);
    assert.deepEqual(left(), new Set([current, fresh]));
  });

  it('leaves files it did not write, and removes only writes that never finished a day ago', async () => {
    const mine = stored('x', 0.5);
    const other = path.join(dir, 'notes.txt');
    fs.writeFileSync(other, 'mine');
    const when = new Date(Date.now() - 90 * DAY);
    fs.utimesSync(other, when, when);
    const stalePart = `${mine}.0a1b2c3d.part`;
    const livePart = `${mine}.4e5f6a7b.part`;
    fs.writeFileSync(stalePart, 'half');
    fs.utimesSync(stalePart, when, when);
    fs.writeFileSync(livePart, 'half');
    const r = await pruneDroppedImages(dir, { inUse: [], referenced: [] }, CLEAR_ALL);
    assert.deepEqual(r.removed.map((f) => f.file).sort(), [mine, stalePart].sort());
    assert.deepEqual(left(), new Set([other, livePart]));
  });

  it('a folder not made yet is an empty one', async () => {
    assert.deepEqual(await pruneDroppedImages(path.join(dir, 'none'), { inUse: [], referenced: [] }), { removed: [], kept: 0, keptBytes: 0 });
  });

  it('matches references by path whatever their spelling (a trailing ./ or ..)', () => {
    const file = path.join(dir, `${'a'.repeat(64)}.png`);
    const spelled = [dir, '..', 'inputs', '.', path.basename(file)].join(path.sep);
    const now = Date.now();
    const plan = filesToPrune([{ file, size: 1, lastUsed: now - 100 * DAY }], { inUse: [spelled], referenced: [] }, now, CLEAR_ALL);
    assert.deepEqual(plan, []);
  });

  it('a drop at the same time as a prune is never deleted, whichever starts first: a drop marks its image used', async () => {
    const bytes = new Uint8Array(await sharp({ create: { width: 8, height: 8, channels: 3, background: '#208040' } }).png().toBuffer());
    const again = new Uint8Array(await sharp({ create: { width: 8, height: 8, channels: 3, background: '#802040' } }).png().toBuffer());
    const unused = stored('unused', 40);
    const clearing = new DroppedImages(dir, () => ({ inUse: [], referenced: [] }));
    // An image dropped long ago and dropped again now: its old time would make it the first to go.
    const first = await clearing.store(again);
    assert.ok('file' in first);
    const longAgo = new Date(Date.now() - 60 * DAY);
    const limits = { ...CLEAR_ALL, freshMs: DROPPED_LIMITS.freshMs };
    for (const order of ['drop first', 'prune first']) {
      for (const f of left()) fs.utimesSync(f, longAgo, longAgo);
      const [a, b] =
        order === 'drop first'
          ? await Promise.all([clearing.store(bytes), clearing.store(again), clearing.prune(limits)])
          : await Promise.all([clearing.prune(limits), clearing.store(bytes), clearing.store(again)]).then(([, x, y]) => [x, y]);
      for (const r of [a, b]) {
        assert.ok('file' in r && !('problem' in r), order);
        assert.ok(fs.existsSync(r.file), `${order}: ${path.basename(r.file)} is there`);
        assert.ok(Date.now() - fs.statSync(r.file).mtimeMs < DROPPED_LIMITS.freshMs, `${order}: marked used now`);
      }
    }
    assert.ok(!fs.existsSync(unused), 'the unused image went');
  });

  it('touch marks an image of the folder used now and leaves other files alone', async () => {
    const old = stored('old', 40);
    const outside = path.join(tmp.dir, 'elsewhere.png');
    fs.writeFileSync(outside, 'x');
    const longAgo = new Date(Date.now() - 40 * DAY);
    fs.utimesSync(outside, longAgo, longAgo);
    const images = new DroppedImages(dir, () => ({ inUse: [], referenced: [] }));
    await images.touch(old);
    await images.touch(outside);
    assert.ok(Date.now() - fs.statSync(old).mtimeMs < 60_000);
    assert.ok(Date.now() - fs.statSync(outside).mtimeMs > 30 * DAY);
    assert.equal(images.holds(old), true);
    assert.equal(images.holds(outside), false);
    assert.equal(images.holds(path.basename(old)), false, 'a relative name is nobody\'s');
    assert.deepEqual((await images.prune()).removed, [], 'used now: kept');
  });
});
