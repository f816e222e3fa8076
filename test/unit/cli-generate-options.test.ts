// `majicflux generate`'s issue-13 flags: negative prompt + true CFG, LoRAs, image-to-image, hires
// pass, VAE tiling — parsed and checked before anything loads.

import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { parseGenerateParams } from '../../src/inference/cli/generate';
import { loraFlag } from '../../src/inference/cli/generateOptions';
import { UsageError } from '../../src/inference/cli/common';
import { main } from '../../src/inference/cli/main';
import { readPngParameters } from '../../src/inference/formats/png';
import { UserError } from '../../src/shared/api';
import { resolveParams } from '../../src/shared/params';

describe('CLI: generate flags for negative prompt, LoRA, image-to-image, hires, VAE tiling', () => {
  let tmp: string;
  let lora: string;
  let image: string;
  before(() => {
    tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'cli-opts-'));
    lora = path.join(tmp, 'style.safetensors');
    image = path.join(tmp, 'in.png');
    fs.writeFileSync(lora, 'x');
    fs.writeFileSync(image, 'x');
  });
  after(() => fs.rmSync(tmp, { recursive: true, force: true }));
  const parse = (...args: string[]) => parseGenerateParams(['a fox', ...args]);

  it('reads every new flag into the generate parameters', () => {
    const p = parse('--negative-prompt', 'blurry', '--true-cfg', '4', '--lora', `${lora}:0.8`, '--lora', lora, '--image', image, '--strength', '0.5', '--image-fit', 'stretch',
      '--hires-scale', '1.5', '--hires-strength', '0.3', '--hires-steps', '10', '--hires-upscale', 'latent', '--vae-tiling', 'on', '--width', '512', '--height', '512');
    assert.equal(p.negativePrompt, 'blurry');
    assert.equal(p.trueCfgScale, 4);
    assert.deepEqual(p.loras, [{ path: lora, strength: 0.8 }, { path: lora }]);
    assert.equal(p.image, image);
    assert.equal(p.strength, 0.5);
    assert.equal(p.imageFit, 'stretch');
    assert.deepEqual(p.hires, { scale: 1.5, strength: 0.3, steps: 10, upscale: 'latent' });
    assert.equal(p.vaeTiling, 'on');
  });

  it('leaves them out when not given (text-to-image as before)', () => {
    const p = parse();
    for (const k of ['negativePrompt', 'trueCfgScale', 'loras', 'image', 'strength', 'imageFit', 'hires', 'vaeTiling']) assert.ok(!(k in p), k);
  });

  it('--lora: the strength is the text after the last colon only when it is a number (Windows paths work)', () => {
    assert.deepEqual(loraFlag('C:\\loras\\x.safetensors'), { path: 'C:\\loras\\x.safetensors' });
    assert.deepEqual(loraFlag('C:\\loras\\x.safetensors:0.8'), { path: 'C:\\loras\\x.safetensors', strength: 0.8 });
    assert.deepEqual(loraFlag('a.safetensors:-0.5'), { path: 'a.safetensors', strength: -0.5 });
    assert.deepEqual(loraFlag('weird:name.safetensors'), { path: 'weird:name.safetensors' });
    assert.throws(() => parse('--lora', `${lora}:11`), (e: Error) => e.message === `--lora ${lora}:11: LoRA strength must be a number from -10 to 10, got 11`);
    // What follows a LoRA file (or a bare name) after the colon can only be a strength: said as such, not as a missing file.
    assert.throws(() => parse('--lora', `${lora}:abc`), (e: Error) => e instanceof UsageError && e.message === `--lora ${lora}:abc: the strength after the colon must be a number from -10 to 10, got "abc"`);
    assert.throws(() => loraFlag('style:strong'), /--lora style:strong: the strength after the colon must be a number/);
    assert.throws(() => loraFlag(':0.8'), (e: Error) => e instanceof UsageError && /--lora :0.8: name the LoRA file before the strength: --lora style.safetensors:0.8/.test(e.message));
  });

  it('refuses bad values and missing files with what would be accepted, before anything loads', () => {
    const cases: [string[], RegExp][] = [
      [['--true-cfg', '0.5'], /true CFG scale must be a number from 1 to 30, got 0.5/],
      [['--true-cfg', 'lots'], /--true-cfg must be a number, got "lots"/],
      // Number() reads these as 16, 3, 8 and 0: a typo would run with a value nobody wrote.
      [['--steps', '0x10'], /--steps must be a number, got "0x10"/],
      [['--steps', '0b11'], /--steps must be a number, got "0b11"/],
      [['--hires-steps', '0o10'], /--hires-steps must be a number, got "0o10"/],
      [['--guidance', ' '], /--guidance must be a number, got " "/],
      [['--lora', path.join(tmp, 'nope.safetensors')], /--lora: .*nope\.safetensors does not exist/],
      [['--image', path.join(tmp, 'nope.png')], /--image: .*nope\.png does not exist/],
      [['--image', tmp], /--image: .* is not a file/],
      [['--image', image, '--strength', '0'], /strength must be a number from 0.01 to 1, got 0/],
      [['--strength', '0.5'], /--strength applies to an input image: add --image FILE/],
      [['--image-fit', 'crop'], /--image-fit applies to an input image/],
      [['--negative-prompt', 'blurry'], /--negative-prompt works through true CFG: add --true-cfg N with N > 1/],
      [['--negative-prompt', 'blurry', '--true-cfg', '1'], /add --true-cfg N with N > 1/],
      [['--image', image, '--image-fit', 'fill'], /--image-fit must be one of crop, stretch; got "fill"/],
      [['--hires-upscale', 'nearest'], /--hires-upscale must be one of image, latent/],
      [['--hires-scale', '3', '--width', '1024'], /hires pass ×3 on 1024×1024 makes 3072×3072/],
      [['--vae-tiling', 'yes'], /--vae-tiling must be one of auto, on, off/],
      // Sides round to multiples of 16: ×1.05 on 64² stays 64², a second pass that enlarges nothing.
      [['--hires-scale', '1.05', '--width', '64', '--height', '64'], /^a hires pass ×1.05 on 64×64 makes 64×64 \(sides are whole multiples of 16\), no larger: use a scale of at least ×1.13$/],
      // A first pass already at the side limit: no scale can help (the smallest is ×1.05), a smaller first pass can.
      [['--hires-scale', '1.5', '--width', '2048', '--height', '1024'], /^a hires pass ×1.5 on 2048×1024 makes 3072×1536; sides stop at 2048: a first pass that large leaves no room for one \(×1.05 at least\): use a first pass whose sides are at most 1936$/],
      [Array.from({ length: 17 }, () => ['--lora', lora]).flat(), /at most 16 LoRAs/],
    ];
    for (const [args, message] of cases) assert.throws(() => parse(...args), (e: Error) => e instanceof UsageError && message.test(e.message), args.join(' '));
    // Decimal forms still read as written.
    assert.deepEqual([parse('--steps', '12').steps, parse('--guidance', '.5').guidance, parse('--guidance', '+3.5').guidance, parse('--steps', '2e1').steps], [12, 0.5, 3.5, 20]);
  });

  it('an A1111 LoRA tag typed into the prompt is refused, not drawn as words (every entry point checks through resolveParams)', () => {
    const message = /^the prompt holds the LoRA tag <lora:film grain:0.7>, which MajicFLUX does not read \(the model would get it as words\): remove it and give the LoRA file with its strength: --lora "film grain.safetensors:0.7", a .flux "lora:" line or the panel's LoRAs$/;
    assert.throws(() => parseGenerateParams(['a fox <lora:film grain:0.7> in the snow']), (e: Error) => e instanceof UsageError && message.test(e.message));
    assert.throws(() => resolveParams({ prompt: 'a fox, <lora:film grain:0.7>' }), (e: Error) => e instanceof UserError && message.test(e.message));
    assert.throws(() => resolveParams({ prompt: '<lora:x>' }), /LoRA tag <lora:x>.*--lora "x.safetensors:1"/);
    assert.equal(resolveParams({ prompt: 'a sign that reads <lorax> and lora: 3' }).prompt, 'a sign that reads <lorax> and lora: 3');
  });

  it('an image made with --negative-prompt --true-cfg records both in its PNG parameters', async function () {
    this.timeout(120_000);
    const out = path.join(tmp, 'cfg.png');
    const io = { out: () => {}, err: () => {} };
    const code = await main(['generate', 'a fox', '--negative-prompt', 'blurry', '--true-cfg', '3', '--width', '64', '--height', '64', '--steps', '1', '--seed', '1', '--out', out, '--quiet'], io);
    assert.equal(code, 0);
    const read = await readPngParameters(out);
    assert.equal(read.json?.negativePrompt, 'blurry');
    assert.equal(read.json?.trueCfgScale, 3);
    assert.match(read.parameters ?? '', /\nNegative prompt: blurry\n.*CFG scale: 3,/);
  });
});

describe('CLI: part flags (--transformer, --vae, …) beside the demo model or no model', () => {
  async function cli(...argv: string[]) {
    let err = '';
    const code = await main(argv, { out: () => {}, err: (t) => (err += t) });
    return { code, err };
  }

  it('generate --model demo --vae FILE and --vae FILE alone are refused (the VAE was silently unused: the demo ran)', async () => {
    const demoVae = await cli('generate', 'a fox', '--model', 'demo', '--vae', 'ae.safetensors', '--width', '64', '--height', '64', '--steps', '1', '--quiet');
    assert.equal(demoVae.code, 2);
    assert.match(demoVae.err, /the demo model \(random weights\) has its own parts and takes no --vae: name a FLUX\.1 model folder instead of demo, or leave --vae out/);
    const alone = await cli('generate', 'a fox', '--vae', 'ae.safetensors', '--text-encoder', 'clip.safetensors', '--width', '64', '--height', '64', '--steps', '1', '--quiet');
    assert.equal(alone.code, 2);
    assert.match(alone.err, /--vae, --text-encoder replace a part of a model: add --model DIR .*or --transformer FILE with the other parts, or leave them out/);
  });

  it('--model demo --transformer FILE names the demo, not "Model folder not found: <cwd>/demo"; models check demo --vae too', async () => {
    const r = await cli('generate', 'a fox', '--model', 'demo', '--transformer', 'dit.safetensors');
    assert.equal(r.code, 2);
    assert.match(r.err, /takes no --transformer/);
    assert.doesNotMatch(r.err, /not found/);
    const check = await cli('models', 'check', 'demo', '--vae', 'ae.safetensors');
    assert.equal(check.code, 2);
    assert.match(check.err, /takes no --vae/);
  });
});
