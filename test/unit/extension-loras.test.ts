// The host side of issue 13's panel inputs: which files the LoRA picker offers, how a recorded
// LoRA name is found again, and the size a varied image gets.

import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import sharp from 'sharp';
import { findLora, isLoraCandidate, loraList, MAX_LORA_BYTES, otherLoraFiles, resolveLoraRefs } from '../../src/extension/loraFiles';
import { readImageSize, sizeForImage } from '../../src/extension/imageSize';
import { LIMITS } from '../../src/shared/params';
import { tempDir } from '../helpers/writeSafetensors';

const MB = 2 ** 20;
const none = { files: [], folders: [] };

describe('extension: the LoRA files the panel offers', () => {
  it('lists small .safetensors files, not model weights, one per path, by name', () => {
    const model = { files: ['/m/flux1-dev.safetensors', '/m/ae.safetensors'], folders: ['/models/flux'] };
    const found = [
      { path: '/ws/loras/ink.safetensors', size: 150 * MB },
      { path: '/ws/loras/Anime.SAFETENSORS', size: 20 * MB },
      { path: '/ws/loras/../loras/ink.safetensors', size: 150 * MB },
      { path: '/ws/big.safetensors', size: MAX_LORA_BYTES },
      { path: '/ws/empty.safetensors', size: 0 },
      { path: '/ws/notes.txt', size: 1 },
      { path: '/m/ae.safetensors', size: 300 * MB },
      { path: '/models/flux/lora-inside-model-folder.safetensors', size: MB },
      { path: '/ws/sd/vae/diffusion_pytorch_model.safetensors', size: 160 * MB },
      { path: '/ws/sd/transformer/part.safetensors', size: 100 * MB },
    ];
    assert.deepEqual(loraList(found, model), [
      { path: path.resolve('/ws/loras/Anime.SAFETENSORS'), name: 'Anime', size: 20 * MB },
      { path: path.resolve('/ws/loras/ink.safetensors'), name: 'ink', size: 150 * MB },
    ]);
    assert.equal(isLoraCandidate('/ws/x.safetensors', MAX_LORA_BYTES - 1, none), true);
    assert.equal(isLoraCandidate('/models/flux/x.safetensors', MB, { files: [], folders: [''] }), true, "an empty model path excludes nothing");
    // A workspace copy of a diffusers-layout model: its single-file parts sit beside transformer/.
    const modelDir = (d: string) => d === path.resolve('/ws/models/flux-tiny');
    assert.equal(isLoraCandidate('/ws/models/flux-tiny/ae.safetensors', MB, { ...none, isModelFolder: modelDir }), false);
    assert.equal(isLoraCandidate('/ws/models/loras/ink.safetensors', MB, { ...none, isModelFolder: modelDir }), true);
  });

  it('finds a recorded name: the same name first, then another case; a recorded path that is there wins', () => {
    const list = [
      { path: '/a/Ink.safetensors', name: 'Ink', size: 1 },
      { path: '/b/ink.safetensors', name: 'ink', size: 1 },
      { path: '/b/watercolor.safetensors', name: 'watercolor', size: 1 },
    ];
    assert.equal(findLora('ink', list)?.path, '/b/ink.safetensors');
    assert.equal(findLora('WATERCOLOR', list)?.path, '/b/watercolor.safetensors');
    assert.equal(findLora('oil', list), undefined);
    const there = new Set(['/elsewhere/ink.safetensors']);
    assert.deepEqual(
      resolveLoraRefs(
        [
          { name: 'ink', strength: 0.8, path: '/elsewhere/ink.safetensors' },
          { name: 'watercolor', strength: -0.5, path: '/gone/watercolor.safetensors' },
          { name: 'oil', strength: 1 },
        ],
        list,
        (f) => there.has(f),
      ),
      { loras: [{ path: '/elsewhere/ink.safetensors', strength: 0.8 }, { path: '/b/watercolor.safetensors', strength: -0.5 }], missing: ['oil'] },
    );
  });
});

describe('extension: a re-run\'s LoRA found by name but as another file (otherLoraFiles)', () => {
  it('names each LoRA whose hash differs from the recorded one, over the shorter hash, case aside; a match, or one not used or not hashed, says nothing', () => {
    const recorded = [{ name: 'ink', hash: '0123456789ab' }, { name: 'film', hash: 'ABCDEF012345' }, { name: 'gone', hash: '111111111111' }];
    const used = [{ name: 'ink', hash: '0123456789abffff' }, { name: 'film', hash: 'abcdef999999' }];
    assert.deepEqual(otherLoraFiles(recorded, used), [{ name: 'film', recorded: 'ABCDEF012345', now: 'abcdef999999' }]);
    assert.deepEqual(otherLoraFiles(recorded, [{ name: 'ink' }]), [], 'no hash now: nothing to compare');
    assert.deepEqual(otherLoraFiles([], used), []);
  });
});

describe("extension: a varied image's size", () => {
  let tmp: { dir: string; cleanup: () => void };
  before(() => {
    tmp = tempDir('vary-size-');
  });
  after(() => tmp.cleanup());

  it('keeps the aspect within the side limits, each side a multiple of 16', () => {
    assert.deepEqual(sizeForImage(1024, 768), { width: 1024, height: 768 });
    assert.deepEqual(sizeForImage(1000, 750), { width: 1008, height: 752 });
    assert.deepEqual(sizeForImage(4000, 3000), { width: LIMITS.side.max, height: 1536 });
    assert.deepEqual(sizeForImage(20, 3000), { width: LIMITS.side.min, height: LIMITS.side.max });
  });

  it("reads the size from a PNG's and a JPEG's header, turned by the EXIF orientation", async () => {
    const png = path.join(tmp.dir, 'a.png');
    await sharp({ create: { width: 300, height: 200, channels: 3, background: '#808080' } }).png().toFile(png);
    assert.deepEqual(await readImageSize(png), { width: 300, height: 200 });
    const jpg = path.join(tmp.dir, 'turned.jpg');
    await sharp({ create: { width: 300, height: 200, channels: 3, background: '#808080' } }).jpeg().withMetadata({ orientation: 6 }).toFile(jpg);
    assert.deepEqual(await readImageSize(jpg), { width: 200, height: 300 });
    const notImage = path.join(tmp.dir, 'x.png');
    fs.writeFileSync(notImage, 'not an image');
    assert.equal(await readImageSize(notImage), undefined);
  });
});
