// Images dropped on the panel from the desktop: kept under the global storage's inputs/ by their
// content's hash, only when their bytes are a PNG, JPEG or WebP, up to the stated size.

import * as assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import sharp from 'sharp';
import { imageKind, MAX_DROPPED_IMAGE_BYTES, storeDroppedImage } from '../../src/extension/panel/droppedImages';
import { tempDir } from '../helpers/writeSafetensors';

const image = (format: 'png' | 'jpeg' | 'webp', colour = '#c04020') =>
  sharp({ create: { width: 24, height: 16, channels: 3, background: colour } }).toFormat(format).toBuffer();

describe('extension: images dropped on the panel', () => {
  let tmp: ReturnType<typeof tempDir>;
  let dir: string;
  beforeEach(() => {
    tmp = tempDir();
    dir = path.join(tmp.dir, 'globalStorage', 'inputs');
  });
  afterEach(() => tmp.cleanup());

  it('keeps a PNG, JPEG or WebP as <sha256>.<its format>, creating the folder, with the bytes unchanged', async () => {
    for (const [format, ext] of [['png', 'png'], ['jpeg', 'jpg'], ['webp', 'webp']] as const) {
      const bytes = await image(format);
      const r = await storeDroppedImage(dir, new Uint8Array(bytes));
      assert.ok('file' in r, format);
      assert.equal(r.file, path.join(dir, `${createHash('sha256').update(bytes).digest('hex')}.${ext}`));
      assert.equal(r.existed, false);
      assert.deepEqual(fs.readFileSync(r.file), bytes);
    }
    assert.equal(fs.readdirSync(dir).length, 3, 'no partial files left');
  });

  it('the same image dropped twice is one file, not written again but marked used; another image is another file', async () => {
    const bytes = await image('png');
    const first = await storeDroppedImage(dir, bytes);
    assert.ok('file' in first);
    const { ino } = fs.statSync(first.file);
    const longAgo = new Date(Date.now() - 40 * 24 * 3600_000);
    fs.utimesSync(first.file, longAgo, longAgo);
    // A view into a larger buffer (as a message's typed array may be) hashes only its bytes.
    const padded = Buffer.concat([Buffer.from('xx'), bytes, Buffer.from('yy')]);
    const second = await storeDroppedImage(dir, new Uint8Array(padded.buffer, padded.byteOffset + 2, bytes.length));
    assert.deepEqual(second, { file: first.file, existed: true });
    assert.equal(fs.statSync(first.file).ino, ino, 'the same file, not a new one');
    assert.ok(Date.now() - fs.statSync(first.file).mtimeMs < 60_000, 'its modification time is its last use (droppedPrune.ts)');
    const other = await storeDroppedImage(dir, await image('png', '#2040c0'));
    assert.ok('file' in other && other.file !== first.file);
    assert.equal(fs.readdirSync(dir).length, 2);
  });

  it('goes by the bytes, not a name: text, a GIF and a truncated signature are refused, and nothing is written', async () => {
    const gif = await sharp({ create: { width: 4, height: 4, channels: 3, background: '#000' } }).gif().toBuffer();
    for (const bytes of [Buffer.from('not an image, just text.png'), gif, Buffer.from([0x89, 0x50, 0x4e, 0x47])]) {
      assert.deepEqual(await storeDroppedImage(dir, bytes), { problem: 'notImage' }, bytes.subarray(0, 8).toString('hex'));
    }
    assert.equal(imageKind(await image('jpeg')), 'jpg');
    assert.deepEqual(await storeDroppedImage(dir, new Uint8Array(0)), { problem: 'empty' });
    assert.equal(fs.existsSync(dir), false);
  });

  it('refuses a file past the stated size before hashing or writing it', async () => {
    const png = await image('png');
    const big = Buffer.alloc(MAX_DROPPED_IMAGE_BYTES + 1);
    png.copy(big);
    assert.deepEqual(await storeDroppedImage(dir, big), { problem: 'tooLarge' });
    assert.equal(fs.existsSync(dir), false);
    const atLimit = Buffer.alloc(MAX_DROPPED_IMAGE_BYTES);
    png.copy(atLimit);
    const r = await storeDroppedImage(dir, atLimit);
    assert.ok('file' in r, 'the limit itself is allowed');
  });
});
