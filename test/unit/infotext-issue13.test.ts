// A PNG's parameters for issue 13: negative prompt + true CFG scale, LoRAs (A1111 tags and hashes),
// image-to-image strength, the hires pass — written A1111-style and in our JSON chunk, read back.

import * as assert from 'node:assert/strict';
import { checkParameters, formatA1111Parameters, imageParameters, parseA1111Parameters } from '../../src/inference/formats/infotext';
import { encodeImagePng } from '../../src/inference/formats/png';
import { readPngParameters } from '../../src/inference/formats/pngText';
import { ImageMetadata } from '../../src/shared/params';

const META: ImageMetadata = {
  prompt: 'a red fox in the snow', seed: 42, steps: 20, width: 512, height: 768, guidance: 3.5, shift: 'dynamic', t5MaxLength: 512, model: 'flux1-dev', weights: 'fp8', sampler: 'euler', software: 'MajicFLUX 0.1.0',
  negativePrompt: 'blurry, low quality', trueCfgScale: 4,
  loras: [{ name: 'film-grain', strength: 0.8, path: '/loras/film-grain.safetensors', hash: 'a1b2c3d4e5f6' }, { name: 'ink', strength: -0.5, path: '/loras/ink.safetensors', hash: '0123456789ab' }],
  image: 'in/photo.png', strength: 0.6, imageFit: 'crop',
  hires: { scale: 2, strength: 0.45, steps: 10, upscale: 'latent', width: 1024, height: 1536 },
};
const image = { width: 8, height: 8, data: new Float32Array(8 * 8 * 3).fill(0.5) };

describe('PNG parameters: negative prompt, true CFG, LoRAs, image-to-image, hires (issue 13)', () => {
  it('writes the A1111 infotext: LoRA tags after the prompt, Negative prompt line, CFG scale, Denoising strength, Hires fields, Lora hashes', () => {
    const text = formatA1111Parameters(imageParameters(META));
    const [prompt, negative, fields] = text.split('\n');
    assert.equal(prompt, 'a red fox in the snow <lora:film-grain:0.8> <lora:ink:-0.5>');
    assert.equal(negative, 'Negative prompt: blurry, low quality');
    assert.match(fields, /CFG scale: 4, Distilled CFG Scale: 3\.5,/);
    assert.match(fields, /Denoising strength: 0\.45, Hires upscale: 2, Hires steps: 10, Hires upscaler: Latent, /, 'the hires strength, as A1111 writes it when hires ran');
    assert.match(fields, /Lora hashes: "film-grain: a1b2c3d4e5f6, ink: 0123456789ab"/);
  });

  it('CFG off writes CFG scale 1 and no Negative prompt line; image-to-image alone writes its strength', () => {
    const { negativePrompt: _n, trueCfgScale: _c, hires: _h, loras: _l, ...plain } = META;
    const text = formatA1111Parameters(imageParameters(plain));
    assert.doesNotMatch(text, /Negative prompt|Hires|Lora hashes|<lora:/);
    assert.match(text, /CFG scale: 1,/);
    assert.match(text, /Denoising strength: 0\.6/);
  });

  it('round trip through a PNG: the JSON chunk gives back every field (LoRA paths included); the infotext alone gives back names, strengths, hashes', async () => {
    const png = await encodeImagePng(image, META);
    const read = await readPngParameters(png);
    const p = read.params!;
    assert.equal(read.dropped, undefined);
    assert.equal(p.prompt, META.prompt);
    assert.equal(p.negativePrompt, META.negativePrompt);
    assert.equal(p.cfgScale, 4);
    assert.deepEqual(p.loras, META.loras);
    assert.equal(p.image, 'in/photo.png');
    assert.equal(p.strength, 0.6);
    assert.equal(p.imageFit, 'crop');
    assert.deepEqual(p.hires, { scale: 2, strength: 0.45, steps: 10, upscale: 'latent' });

    const fromText = checkParameters(parseA1111Parameters(read.parameters!));
    assert.deepEqual(fromText.dropped, []);
    assert.equal(fromText.params.prompt, META.prompt, 'the LoRA tags are taken out of the prompt');
    assert.equal(fromText.params.negativePrompt, META.negativePrompt);
    assert.equal(fromText.params.cfgScale, 4);
    assert.deepEqual(fromText.params.loras, META.loras!.map(({ name, strength, hash }) => ({ name, strength, hash })));
    assert.deepEqual(fromText.params.hires, { scale: 2, strength: 0.45, steps: 10, upscale: 'latent' });
  });

  it('parses an infotext A1111/Forge wrote (hires fix with a latent upscaler, LoRA tags inside the prompt, img2img strength)', () => {
    const hires = parseA1111Parameters(
      'masterpiece, <lora:add_detail:0.6>, a castle <lora:styleX>\nNegative prompt: lowres, bad hands\nSteps: 25, Sampler: DPM++ 2M, CFG scale: 7, Seed: 123, Size: 512x768, Model: sd15, Denoising strength: 0.5, Hires upscale: 1.5, Hires steps: 12, Hires upscaler: Latent (nearest-exact), Lora hashes: "add_detail: 7c6bad76eb54, styleX: 0011aabbccdd", Version: v1.9.4',
    );
    const { params, dropped } = checkParameters(hires);
    assert.deepEqual(dropped, []);
    assert.equal(params.prompt, 'masterpiece, a castle');
    assert.equal(params.negativePrompt, 'lowres, bad hands');
    assert.equal(params.cfgScale, 7);
    assert.deepEqual(params.loras, [{ name: 'add_detail', strength: 0.6, hash: '7c6bad76eb54' }, { name: 'styleX', strength: 1, hash: '0011aabbccdd' }]);
    assert.deepEqual(params.hires, { scale: 1.5, strength: 0.5, steps: 12, upscale: 'latent' });
    assert.equal(params.strength, undefined, 'with hires, Denoising strength is the hires pass\'s');

    const img2img = checkParameters(parseA1111Parameters('a cat\nSteps: 20, Sampler: Euler, CFG scale: 1, Seed: 1, Size: 512x512, Denoising strength: 0.35, Hires upscaler: ESRGAN_4x, Hires upscale: 2'));
    assert.deepEqual(img2img.params.hires, { scale: 2, strength: 0.35, upscale: 'image' }, 'a non-latent upscaler is an image upscale');
    // A1111/Forge write "Hires resize: WxH" instead of "Hires upscale" when the user set the second pass's size.
    const resize = checkParameters(parseA1111Parameters('a cat\nSteps: 20, Sampler: Euler, CFG scale: 1, Distilled CFG Scale: 3.5, Seed: 123, Size: 896x1152, Denoising strength: 0.4, Hires resize: 1344x1728, Hires steps: 10, Hires upscaler: Latent'));
    assert.deepEqual(resize.dropped, []);
    assert.deepEqual(resize.params.hires, { scale: 1.5, strength: 0.4, steps: 10, upscale: 'latent' });
    assert.equal(resize.params.extra, undefined, 'read, not kept as an unknown field');
    const plain = checkParameters(parseA1111Parameters('a cat\nSteps: 20, Sampler: Euler, Seed: 1, Size: 512x512, Denoising strength: 0.35'));
    assert.equal(plain.params.strength, 0.35);
    assert.equal(plain.params.hires, undefined);
  });

  it('drops bad values with the reason and keeps the rest', () => {
    const { params, dropped } = checkParameters({
      prompt: 'a cat', cfgScale: 40, strength: 0, imageFit: 'fill', image: '',
      loras: [{ name: 'ok', strength: 0.5 }, { name: 'huge', strength: 50 }, { strength: 1 }, { name: 'nan', strength: 'x' }],
      hires: { scale: 9, strength: 0.4 },
    });
    assert.equal(params.prompt, 'a cat');
    assert.deepEqual(params.loras, [{ name: 'ok', strength: 0.5 }]);
    for (const k of ['cfgScale', 'strength', 'imageFit', 'image', 'hires'] as const) assert.equal(params[k], undefined, k);
    assert.deepEqual(dropped, [
      'true CFG scale must be a number from 1 to 30, got 40',
      'strength must be a number from 0.01 to 1, got 0',
      'image fit must be one of crop, stretch, got "fill"',
      'image: not a file path of at most 4096 characters',
      'LoRA huge: LoRA strength must be a number from -10 to 10, got 50',
      'loras: a LoRA without a name',
      'LoRA nan: LoRA strength must be a number from -10 to 10, got "x"',
      'hires scale must be a number from 1.05 to 4, got 9',
    ]);
    const tag = checkParameters(parseA1111Parameters('a cat <lora:weird:abc>\nSteps: 20, Seed: 1, Size: 512x512'));
    assert.equal(tag.params.prompt, 'a cat');
    assert.deepEqual(tag.dropped, ['LoRA weird: LoRA strength must be a number from -10 to 10, got "abc"']);
  });
});
