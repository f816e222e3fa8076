import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { completionContext, fileChoices, keyChoices, keyRange } from '../../src/extension/fluxFile/completionItems';
import { LIMITS } from '../../src/shared/params';

describe('extension: .flux completion (keys, choices, image and LoRA files)', () => {
  it('knows a key being typed from a value after key: and from prompt text', () => {
    assert.deepEqual(completionContext(''), { kind: 'key', typed: '' });
    assert.deepEqual(completionContext('hir'), { kind: 'key', typed: 'hir' });
    assert.deepEqual(completionContext('hires_upscale: la'), { kind: 'value', key: 'hires_upscale', typed: 'la' });
    assert.deepEqual(completionContext('negative_prompt: '), { kind: 'value', key: 'negative', typed: '' });
    assert.equal(completionContext('a red fox '), undefined);
    assert.equal(completionContext('style: x'), undefined, 'not a key');
  });

  it("offers a key's choices and states its range from params.ts", () => {
    assert.deepEqual(keyChoices('vae_tiling'), ['auto', 'on', 'off']);
    assert.deepEqual(keyChoices('image_fit'), ['crop', 'stretch']);
    assert.equal(keyChoices('cfg'), undefined);
    assert.deepEqual(keyRange('cfg'), [LIMITS.trueCfgScale.min, LIMITS.trueCfgScale.max, 1]);
    assert.deepEqual(keyRange('hires'), [LIMITS.hiresScale.min, LIMITS.hiresScale.max, 2]);
  });

  it('lists images beside the .flux file for image:, and LoRAs there and in the LoRA folder for lora:', () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'flux-complete-'));
    const loras = path.join(dir, 'loras');
    fs.mkdirSync(loras);
    for (const f of ['a.png', 'b.JPG', 'notes.txt', 'local.safetensors']) fs.writeFileSync(path.join(dir, f), 'x');
    fs.writeFileSync(path.join(loras, 'film-grain.safetensors'), 'x');
    try {
      assert.deepEqual(fileChoices('image', dir, loras).sort(), ['a.png', 'b.JPG']);
      assert.deepEqual(fileChoices('lora', dir, loras).sort(), ['film-grain.safetensors', 'local.safetensors']);
      assert.deepEqual(fileChoices('lora', path.join(dir, 'nope'), undefined), []);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});
