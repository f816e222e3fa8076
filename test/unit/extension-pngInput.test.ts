// The re-run reader as the extension host uses it (issue 16 item 6): bounded prompts, and never
// blocked by a FIFO that merely has a .png name.

import * as assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { LIMITS } from '../../src/shared/params';
import { looksGenerated, readImageInput, readImageInputOrTool, toInput, UnusablePrompt } from '../../src/extension/pngInput';
import { embedParameters, insertChunks, iTXtChunk, PARAMETERS_KEYWORD } from '../../src/inference/formats/png';
import { tempDir } from '../helpers/writeSafetensors';
import { TINY_PNG } from '../helpers/tinyPng';


/** A PNG with only an A1111 `parameters` text, as another tool writes it. */
const embedParametersText = (png: Uint8Array, text: string) => insertChunks(png, [iTXtChunk(PARAMETERS_KEYWORD, text)]);

describe('extension: PNG parameters as generation input', () => {
  let tmp: { dir: string; cleanup: () => void };
  before(() => {
    tmp = tempDir('png-input-');
  });
  after(() => tmp.cleanup());

  it('reads a generated PNG into run input', async () => {
    const file = path.join(tmp.dir, 'ok.png');
    const png = embedParameters(TINY_PNG, { prompt: 'a lighthouse', steps: 20, seed: 5, width: 512, height: 768, guidance: 3.5 });
    fs.writeFileSync(file, png);
    assert.equal(looksGenerated(png), true);
    assert.deepEqual(await readImageInput(file), { prompt: 'a lighthouse', seed: 5, steps: 20, width: 512, height: 768, guidance: 3.5 });
  });

  it('a PNG from ComfyUI or InvokeAI whose record we cannot read names the tool; a readable one gives its input; a bare PNG names none', async () => {
    const comfy = path.join(tmp.dir, 'comfy.png');
    fs.writeFileSync(comfy, insertChunks(TINY_PNG, [iTXtChunk('prompt', '{"3":{"class_type":"KSampler","inputs":{"seed":5}}}'), iTXtChunk('workflow', '{"nodes":[]}')]));
    assert.deepEqual(await readImageInputOrTool(comfy), { tool: 'ComfyUI' });
    assert.equal(await readImageInput(comfy), undefined);
    const invoke = path.join(tmp.dir, 'invoke.png');
    // Its graph alone (no invokeai_metadata, which is read: infotext-comfy-invoke.test.ts).
    fs.writeFileSync(invoke, insertChunks(TINY_PNG, [iTXtChunk('invokeai_graph', '{"nodes":{}}')]));
    assert.deepEqual(await readImageInputOrTool(invoke), { tool: 'InvokeAI' });
    const readable = path.join(tmp.dir, 'invoke-meta.png');
    fs.writeFileSync(readable, insertChunks(TINY_PNG, [iTXtChunk('invokeai_metadata', '{"positive_prompt":"a fox","seed":3}')]));
    assert.deepEqual(await readImageInputOrTool(readable), { input: { prompt: 'a fox', seed: 3 } });
    const bare = path.join(tmp.dir, 'bare.png');
    fs.writeFileSync(bare, TINY_PNG);
    assert.deepEqual(await readImageInputOrTool(bare), {});
    // Parameters we read win over another tool's record in the same file.
    const both = path.join(tmp.dir, 'both.png');
    fs.writeFileSync(both, insertChunks(embedParameters(TINY_PNG, { prompt: 'a boat', steps: 4, seed: 1, width: 64, height: 64, guidance: 3.5 }), [iTXtChunk('workflow', '{}')]));
    assert.equal((await readImageInputOrTool(both)).input?.prompt, 'a boat');
  });

  it("reads issue 13's parameters back from a PNG the server wrote: LoRAs by name (and hash, not path), negative prompt, true CFG, input image", async () => {
    const file = path.join(tmp.dir, 'issue13.png');
    // As the server writes it (infotext.imageParameters: true CFG under A1111's "CFG scale").
    const meta = { prompt: 'a fox', steps: 2, seed: 11, width: 64, height: 64, guidance: 3.5, negativePrompt: 'blurry', cfgScale: 2, loras: [{ name: 'ink', strength: 0.8, hash: '0123456789ab' }], image: '/pics/start.png', strength: 0.6, imageFit: 'crop' as const };
    fs.writeFileSync(file, embedParameters(TINY_PNG, meta as never));
    const input = await readImageInput(file);
    assert.deepEqual(
      { negativePrompt: input?.negativePrompt, trueCfgScale: input?.trueCfgScale, loraRefs: input?.loraRefs, image: input?.image, strength: input?.strength, imageFit: input?.imageFit },
      { negativePrompt: 'blurry', trueCfgScale: 2, loraRefs: [{ name: 'ink', strength: 0.8, hash: '0123456789ab' }], image: '/pics/start.png', strength: 0.6, imageFit: 'crop' },
    );
  });

  it('says which recorded values it left out and why (another tool\'s size that is not a multiple of 16, steps past the limit), rather than dropping them silently', async () => {
    const file = path.join(tmp.dir, 'other-tool.png');
    fs.writeFileSync(file, Buffer.from(embedParametersText(TINY_PNG, 'a castle\nSteps: 500, Sampler: Euler, CFG scale: 1, Seed: 7, Size: 1000x1000, Model: flux1-dev')));
    const input = await readImageInput(file);
    assert.equal(input?.prompt, 'a castle');
    assert.equal(input?.seed, 7);
    assert.equal(input?.width, undefined);
    assert.deepEqual(input?.dropped, [
      'steps must be a whole number from 1 to 200, got 500',
      'width 1000 is not a multiple of 16; try 992 or 1008',
      'height 1000 is not a multiple of 16; try 992 or 1008',
    ]);
  });

  it('a PNG whose recorded prompt cannot be used (over the limit, not text, blank: a hand edit) says why, rather than "no parameters"', async () => {
    // Told as kinds (the message is localized where it is shown: pngRerun).
    const cases: [unknown, UnusablePrompt][] = [
      ['x'.repeat(LIMITS.prompt.maxChars + 5), { kind: 'tooLong', chars: LIMITS.prompt.maxChars + 5 }],
      [42, { kind: 'notText' }],
      ['   ', { kind: 'empty' }],
    ];
    for (const [prompt, why] of cases) {
      const file = path.join(tmp.dir, 'edited.png');
      fs.writeFileSync(file, insertChunks(TINY_PNG, [iTXtChunk('majicflux', JSON.stringify({ prompt, seed: 5, steps: 4 }))]));
      assert.deepEqual(await readImageInputOrTool(file), { unusablePrompt: why }, String(prompt).slice(0, 20));
    }
    // A bare PNG still has nothing to say.
    const bare = path.join(tmp.dir, 'bare2.png');
    fs.writeFileSync(bare, TINY_PNG);
    assert.deepEqual(await readImageInputOrTool(bare), {});
  });

  it('refuses a prompt longer than the panel accepts', () => {
    assert.equal(toInput({ prompt: 'x'.repeat(LIMITS.prompt.maxChars + 1) }), undefined);
    assert.deepEqual(toInput({ prompt: 'x'.repeat(LIMITS.prompt.maxChars) }), { prompt: 'x'.repeat(LIMITS.prompt.maxChars) });
  });

  it("passes issue 13's recorded parameters through, each only when params.ts accepts it (LoRAs by name, for the host to find)", () => {
    const recorded = {
      prompt: 'a lighthouse',
      negativePrompt: 'fog',
      trueCfgScale: 3,
      loras: [{ name: 'ink', strength: 0.8, path: '/l/ink.safetensors', hash: 'abcdef012345' }, { name: 'oil', hash: 'not hex' }, { name: '', strength: 1 }, { name: 'x', strength: 99 }],
      image: 'photo.jpg',
      strength: 0.35,
      imageFit: 'stretch',
      hires: { scale: 2, strength: 0.45, steps: 10, upscale: 'latent', width: 1024, height: 1024 },
    };
    assert.deepEqual(toInput(recorded as never), {
      prompt: 'a lighthouse',
      negativePrompt: 'fog',
      trueCfgScale: 3,
      // The hash kept to compare with the file a re-run finds (otherLoraFiles); one that is no hash dropped.
      loraRefs: [{ name: 'ink', strength: 0.8, path: '/l/ink.safetensors', hash: 'abcdef012345' }, { name: 'oil', strength: 1 }],
      image: 'photo.jpg',
      strength: 0.35,
      imageFit: 'stretch',
      hires: { scale: 2, strength: 0.45, steps: 10, upscale: 'latent' },
    });
    const bad = { prompt: 'a', negativePrompt: 7, trueCfgScale: 0.5, loras: 'ink', image: '', strength: 2, imageFit: 'fill', hires: { scale: 9 } };
    assert.deepEqual(toInput(bad as never), { prompt: 'a' });
  });

  it('sniffs a FIFO named .png as "not generated" without blocking, and reading it fails cleanly', function () {
    if (process.platform === 'win32') this.skip();
    const fifo = path.join(tmp.dir, 'pipe.png');
    spawnSync('mkfifo', [fifo]);
    const mod = JSON.stringify(path.resolve(__dirname, '../../src/extension/pngInput'));
    const r = spawnSync(process.execPath, ['-r', 'tsx/cjs', '-e', `
      const m = require(${mod});
      (async () => {
        console.log(await m.sniffGenerated(${JSON.stringify(fifo)}));
        try { await m.readImageInput(${JSON.stringify(fifo)}); } catch (e) { console.log(e.name); }
      })();`], { encoding: 'utf8', timeout: 15000 });
    assert.equal(r.error, undefined, 'blocked on the FIFO');
    assert.deepEqual(r.stdout.trim().split('\n'), ['false', 'PngReadError'], r.stderr);
  });
});
