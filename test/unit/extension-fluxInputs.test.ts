// `.flux` keys of issue 13 (negative, cfg, lora, image, strength, hires…, vae_tiling) and the files a
// block names, resolved as a run would.

import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { effectiveValues, parseFlux } from '../../src/extension/fluxFile/parser';
import { missingOnLine, resolveInputs } from '../../src/extension/fluxFile/inputs';

describe('extension: .flux keys for negative prompt, LoRA, image-to-image, hires, VAE tiling', () => {
  let tmp: string;
  let loraDir: string;
  before(() => {
    tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'flux-inputs-'));
    loraDir = path.join(tmp, 'loras');
    fs.mkdirSync(loraDir);
    fs.writeFileSync(path.join(tmp, 'local.safetensors'), 'x');
    fs.writeFileSync(path.join(loraDir, 'film-grain.safetensors'), 'x');
    fs.writeFileSync(path.join(tmp, 'in.png'), 'x');
  });
  after(() => fs.rmSync(tmp, { recursive: true, force: true }));

  it('reads every new key into the block values under the generate request\'s names (aliases, repeated and comma-separated LoRAs)', () => {
    const doc = parseFlux(
      'cfg: 2\nvae_tiling: on\nhires: 1.5\n\na fox in the snow\nnegative_prompt: blurry, low quality\nlora: local.safetensors:0.8, film-grain\nlora: C:\\loras\\x.safetensors:-0.5\nimage: in.png\nstrength: 0.4\nimage_fit: stretch\nhires_strength: 0.3\nhires_steps: 8\nhires_upscale: latent\n',
    );
    assert.deepEqual(doc.problems, []);
    const { steps: _s, ...values } = effectiveValues(doc, doc.blocks[0], { steps: 4 });
    assert.deepEqual(values, {
      negativePrompt: 'blurry, low quality',
      trueCfgScale: 2,
      loras: [{ path: 'local.safetensors', strength: 0.8 }, { path: 'film-grain' }, { path: 'C:\\loras\\x.safetensors', strength: -0.5 }],
      image: 'in.png',
      strength: 0.4,
      imageFit: 'stretch',
      hires: { scale: 1.5, strength: 0.3, steps: 8, upscale: 'latent' },
      vaeTiling: 'on',
    });
    assert.deepEqual(parseFlux('a cat\nhires_steps: 10\n').blocks[0].values, { hires: { steps: 10 } }, 'any hires key turns the pass on');
    assert.deepEqual(parseFlux('a cat\nhires: 2\nhires: 3\n').blocks[0].values, { hires: { scale: 3 } }, 'the last one wins');
  });

  it('marks A1111\'s "Negative prompt:" line as an error offering `negative` (was: its words joined the prompt silently, the opposite of what was asked)', () => {
    const doc = parseFlux('cfg: 3\n\na cat on a wall\nNegative prompt: blurry, extra fingers\nlowres\n\na dog\nnegative   PROMPT:ugly\n');
    assert.deepEqual(doc.problems.map((p) => [p.code, p.severity, p.span.start.line, p.args.suggestion]), [
      ['unknownKey', 'error', 3, 'negative'],
      ['unknownKey', 'error', 7, 'negative'],
    ]);
    // Neither line's words are in the prompt; A1111's second negative line stays prompt text for the user to move.
    assert.deepEqual(doc.blocks.map((b) => b.prompt), ['a cat on a wall lowres', 'a dog']);
    // Kept as prompt text when escaped, as every parameter line can be.
    assert.equal(parseFlux('a poster\n\\negative prompt: the title\n').blocks[0].prompt, 'a poster negative prompt: the title');
  });

  it('warns when a negative prompt has no true CFG to work through (cfg: from the block or the file defaults)', () => {
    const doc = parseFlux('a cat\nnegative: blurry\n\na dog\nnegative: blurry\ncfg: 3\n\na bird\ncfg: 1\nneg: x\n');
    assert.deepEqual(doc.problems.filter((p) => p.code !== 'unknownKey').map((p) => [p.code, p.severity, p.span.start.line]), [['negativeWithoutCfg', 'warning', 1]]);
    assert.deepEqual(parseFlux('cfg: 2\n\na cat\nnegative: blurry\n').problems, [], 'cfg from the file defaults counts');
    assert.deepEqual(parseFlux('negative: blurry\n\na cat\ncfg: 2\n').problems, []);
    assert.equal(parseFlux('negative: blurry\n\na cat\n').problems[0].code, 'negativeWithoutCfg');
  });

  it('warns when a block sets strength or image_fit without an input image (they would change nothing; the CLI refuses them)', () => {
    const doc = parseFlux('a cat\nstrength: 0.4\n\na dog\nimage: in.png\nstrength: 0.4\n\na bird\nimage_fit: stretch\n');
    assert.deepEqual(doc.problems.map((p) => [p.code, p.severity, p.span.start.line, p.args.key]), [['imageOptionWithoutImage', 'warning', 1, 'strength'], ['imageOptionWithoutImage', 'warning', 8, 'image_fit']]);
    assert.deepEqual(parseFlux('image: in.png\n\na cat\nstrength: 0.3\n').problems, [], 'an image from the file defaults counts');
    assert.deepEqual(parseFlux('strength: 0.3\n\na cat\n').problems, [], 'file defaults are for the blocks that have an image');
  });

  it('refuses bad values with what would be accepted', () => {
    const doc = parseFlux('a cat\ncfg: 0.5\nstrength: 2\nhires: 9\nhires_upscale: nearest\nvae_tiling: yes\nlora: a.safetensors:11\nhires_steps: 2.5\nimage:\n');
    const got = doc.problems.map((p) => [p.code, p.args.key, p.args.value]);
    assert.deepEqual(got, [
      ['outOfRange', 'cfg', '0.5'],
      ['outOfRange', 'strength', '2'],
      ['outOfRange', 'hires', '9'],
      ['notOneOf', 'hires_upscale', 'nearest'],
      ['notOneOf', 'vae_tiling', 'yes'],
      ['outOfRange', 'LoRA strength', '11'],
      ['notInteger', 'hires_steps', '2.5'],
      ['emptyValue', 'image', undefined],
    ]);
    assert.equal(doc.problems[3].args.allowed, 'image, latent');
    // A strength that is not a number, and a strength with no file, are said as such (not as a missing file named "a.safetensors:abc").
    const spec = parseFlux('a cat\nlora: a.safetensors:abc, film-grain:strong, :0.8\n');
    assert.deepEqual(spec.problems.map((p) => [p.code, p.args.key, p.args.value]), [
      ['notNumber', 'LoRA strength', 'abc'],
      ['notNumber', 'LoRA strength', 'strong'],
      ['loraWithoutFile', 'lora', ':0.8'],
    ]);
    assert.equal(spec.blocks[0].values.loras, undefined);
    // An A1111 tag typed into the prompt: marked where it is, with the lora: line to write instead.
    const tagged = parseFlux('a cat\n  in the snow <lora:film grain:0.7>, watercolor\n');
    assert.deepEqual(tagged.problems.map((p) => [p.code, p.args.value, p.args.suggestion, p.span]), [
      ['loraTagInPrompt', '<lora:film grain:0.7>', 'film grain.safetensors:0.7', { start: { line: 1, character: 14 }, end: { line: 1, character: 35 } }],
    ]);
    const many = parseFlux(`a cat\nlora: ${Array.from({ length: 17 }, (_, i) => `l${i}.safetensors`).join(', ')}\n`);
    assert.deepEqual(many.problems.map((p) => p.code), ['tooManyLoras']);
  });

  it('values each fine alone that a run refuses together are an error while typing, on the line to change (a hires pass past 2048 sides, or one too small to add a patch)', () => {
    const big = parseFlux('a cat\nwidth: 1536\nheight: 1024\nhires: 2\n');
    assert.deepEqual(big.problems.map((p) => [p.code, p.span.start.line]), [['refusedTogether', 3]]);
    assert.match(String(big.problems[0].args.value), /makes 3072×2048; sides stop at 2048: use a smaller scale \(at most ×1\.33\)/);
    const fromDefaults = parseFlux('width: 2048\nhires: 1.5\n\na cat\n\na dog\nwidth: 1024\n');
    // On the block that cannot run, not on the defaults' line: an error there would refuse every block, "a dog" too.
    assert.deepEqual(fromDefaults.problems.map((p) => [p.code, p.span.start.line]), [['refusedTogether', 3]], 'the first block takes the file\'s 2048; the second its own 1024');
    assert.ok(!fromDefaults.defaults.spans.some((d) => d.start.line <= fromDefaults.problems[0].span.start.line && fromDefaults.problems[0].span.start.line <= d.end.line));
    const noLarger = parseFlux('a cat\nwidth: 64\nheight: 64\nhires_steps: 4\nhires: 1.05\n');
    assert.deepEqual(noLarger.problems.map((p) => [p.code, p.span.start.line]), [['refusedTogether', 4]]);
    assert.match(String(noLarger.problems[0].args.value), /makes 64×64 \(sides are whole multiples of 16\), no larger: use a scale of at least ×1\.13/);
    for (const fine of ['a cat\nhires: 1.5\n', 'a cat\nimage: in.png\nstrength: 0.1\nsteps: 4\n', 'a cat\nseed: random\ncount: 3\nout: {seed}.png\nhires: 2\n']) {
      assert.deepEqual(parseFlux(fine).problems, [], `${JSON.stringify(fine)}: runs (an image's own size is not known while typing)`);
    }
  });

  it('finds image: beside the .flux file and lora: there or in the LoRA folder (name without extension too); says every path it tried', () => {
    const ok = resolveInputs({ image: 'in.png', loras: [{ path: 'local.safetensors', strength: 0.8 }, { path: 'film-grain' }] }, tmp, loraDir);
    assert.deepEqual(ok.missing, []);
    assert.equal(ok.values.image, path.join(tmp, 'in.png'));
    assert.deepEqual(ok.values.loras, [{ path: path.join(tmp, 'local.safetensors'), strength: 0.8 }, { path: path.join(loraDir, 'film-grain.safetensors') }]);
    const bad = resolveInputs({ image: 'nope.png', loras: [{ path: 'gone.safetensors' }] }, tmp, loraDir);
    assert.deepEqual(bad.missing, [
      { key: 'image', file: 'nope.png', tried: [path.join(tmp, 'nope.png')] },
      { key: 'lora', file: 'gone.safetensors', tried: [path.join(tmp, 'gone.safetensors'), path.join(loraDir, 'gone.safetensors')] },
    ]);
    const line = parseFlux('a cat\nlora: local.safetensors, gone:0.5\n').blocks[0].params[0];
    assert.deepEqual(missingOnLine(line, tmp, undefined).map((m) => m.file), ['gone']);
  });
});
