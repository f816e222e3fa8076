// `majicflux generate` as a user runs it: the bundled CLI (dist/cli.js, built by npm run build /
// test:unit) with the demo model at 64×64, spawned with pipes (stderr is not a terminal).
// Issue 15, items 14–17.

import * as assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { main } from '../../src/inference/cli/main';
import { defaultName } from '../../src/inference/cli/generate';
import { outputPath } from '../../src/extension/output';
import { DEFAULT_TEMPLATE } from '../../src/shared/fileName';
import { describeRange, ImageMetadata, LIMITS } from '../../src/shared/params';
import { encodePng, readPngParameters } from '../../src/inference/formats/png';

const ROOT = path.resolve(__dirname, '../..');
const CLI = path.join(ROOT, 'dist', 'cli.js');
const SMALL = ['--width', '64', '--height', '64', '--steps', '2'];

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

function runCli(args: string[], cwd: string): Promise<Run> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [CLI, ...args], { cwd, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (c: Buffer) => (stdout += c.toString()));
    child.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
    child.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}

/** A usage error: exit 2, the message, a pointer to --help, no stack trace, nothing loaded. */
function assertUsage(r: Run, message: RegExp): void {
  assert.equal(r.code, 2, r.stderr);
  assert.match(r.stderr, message);
  assert.match(r.stderr, /--help/);
  assert.doesNotMatch(r.stderr, /^\s+at /m, 'no stack trace');
  assert.doesNotMatch(r.stderr, /^model |text…|loaded /m, 'nothing was loaded');
}

describe('CLI: majicflux generate (bundled)', function () {
  this.timeout(120_000);
  let tmp: string;
  const run = (...args: string[]) => runCli(['generate', ...args], tmp);

  before(() => {
    assert.ok(fs.existsSync(CLI), 'dist/cli.js is built by npm run build');
    tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'cli-generate-'));
  });
  after(() => fs.rmSync(tmp, { recursive: true, force: true }));

  describe('the prompt and the seed (item 14)', () => {
    it('--seed -1 (space-separated) draws a seed and reports it', async () => {
      const r = await run('--prompt', 'a cat', '--seed', '-1', ...SMALL, '--out', path.join(tmp, 's.png'), '--json');
      assert.equal(r.code, 0, r.stderr);
      const seed = (JSON.parse(r.stdout) as { seed: number }).seed;
      assert.ok(Number.isInteger(seed) && seed >= 0, String(seed));
    });

    it('a negative seed other than -1 is refused, not silently random', async () => {
      assertUsage(await run('--prompt', 'a cat', '--seed', '-5', ...SMALL), /seed must be -1 \(draw one\) or a whole number from 0/);
    });

    it('the prompt may be given without --prompt', async () => {
      const out = path.join(tmp, 'positional.png');
      const r = await run('a cat on a mat', ...SMALL, '--out', out, '--json');
      assert.equal(r.code, 0, r.stderr);
      assert.equal((JSON.parse(r.stdout) as { metadata: { prompt: string } }).metadata.prompt, 'a cat on a mat');
      assert.ok(fs.existsSync(out));
    });

    it('an empty or missing prompt, two prompts, or an unquoted one are refused', async () => {
      assertUsage(await run('--prompt', '  ', ...SMALL), /the prompt is empty/);
      assertUsage(await run(...SMALL), /needs a prompt: majicflux generate "a cat"/);
      assertUsage(await run('a cat', '--prompt', 'a dog'), /give the prompt once/);
      assertUsage(await run('a', 'cat'), /one prompt; put it in quotes/);
    });
  });

  describe('every argument checked before anything loads (item 15)', () => {
    it('bad numbers exit 2 with the pipeline\'s limits, before the model is looked at', async () => {
      // A model folder that does not exist: had it been looked at, the error would name it.
      const m = ['--prompt', 'a cat', '--model', path.join(tmp, 'no-such-model')];
      assertUsage(await run(...m, '--seed', '1.5'), /seed must be -1 \(draw one\) or a whole number/);
      assertUsage(await run(...m, '--steps', '0'), /steps must be a whole number from 1 to 200, got 0/);
      assertUsage(await run(...m, '--width', '1000'), /width 1000 is not a multiple of 16; try 992 or 1008/);
      assertUsage(await run(...m, '--height', '4096'), /height 4096 is out of range/);
      assertUsage(await run(...m, '--guidance', '-1'), /guidance must be a number from 0 to 100, got -1/);
      assertUsage(await run(...m, '--shift', '0'), /shift must be "dynamic" or a number from 0\.1 to 100/);
      assertUsage(await run(...m, '--t5-max-length', '1'), /T5 max length must be a whole number from 2 to 512, got 1/);
      assertUsage(await run(...m, '--t5-max-length', '1024'), /T5 max length must be a whole number from 2 to 512, got 1024/);
      assertUsage(await run(...m, '--threads', '2.5'), /--threads must be a whole number from 0 to 1024/);
      assertUsage(await run(...m, '--cache-max-gb', '-1'), /--cache-max-gb must be a number of GiB ≥ 0/);
      assertUsage(await run(...m, '--latents', path.join(tmp, 'none.safetensors')), /--latents: .*none\.safetensors does not exist/);
      assertUsage(await run('--prompt', 'x'.repeat(20_001), '--model', path.join(tmp, 'no-such-model')), /the prompt is 20001 characters; at most 20000 are read/);
    });

    it('--cache-max-gb keeps the weight caches within the limit, removing the least recently used first (issue 12 item 4)', async () => {
      const cache = path.join(tmp, 'caches');
      const fakeCache = (name: string, bytes: number, daysAgo: number) => {
        const dir = path.join(cache, name);
        fs.mkdirSync(dir, { recursive: true });
        fs.writeFileSync(path.join(dir, 'weights.bin'), Buffer.alloc(bytes));
        fs.writeFileSync(path.join(dir, 'index.json'), '{}');
        const when = new Date(Date.now() - daysAgo * 86_400_000);
        fs.utimesSync(path.join(dir, 'index.json'), when, when);
        return dir;
      };
      const old = fakeCache('old-model-int8', 2 << 20, 2);
      const recent = fakeCache('recent-model-int8', 512 << 10, 1);
      const r = await run('a cat', ...SMALL, '--cache', cache, '--cache-max-gb', String(1 / 1024), '--out', path.join(tmp, 'cached.png'));
      assert.equal(r.code, 0, r.stderr);
      assert.ok(!fs.existsSync(old), 'the least recently used cache, over the 1 MiB limit, was removed');
      assert.ok(fs.existsSync(recent), 'the more recent one fits within the limit and stays');
    });

    it('the help states the limits and defaults params.ts enforces', async () => {
      const r = await run('--help');
      assert.equal(r.code, 0, r.stderr);
      for (const key of ['steps', 'guidance', 't5MaxLength'] as const) assert.ok(r.stdout.includes(describeRange(key)), `${key}: ${describeRange(key)}`);
      const { side, shift } = LIMITS;
      assert.ok(r.stdout.includes(`multiples of ${side.multiple}, ${side.min} to ${side.max} (default 1024×1024)`), r.stdout);
      assert.ok(r.stdout.includes(`(${shift.min} to ${shift.max})`), r.stdout);
      assert.doesNotMatch(r.stdout, /1000/);
    });

    it('--out to an existing file is refused up front; --overwrite replaces it', async () => {
      const out = path.join(tmp, 'exists.png');
      fs.writeFileSync(out, 'not a png');
      assertUsage(await run('--prompt', 'a cat', ...SMALL, '--out', out), /exists\.png already exists; pass --overwrite to replace it/);
      assert.equal(fs.readFileSync(out, 'utf8'), 'not a png');
      const r = await run('--prompt', 'a cat', ...SMALL, '--out', out, '--overwrite');
      assert.equal(r.code, 0, r.stderr);
      assert.ok(fs.readFileSync(out).subarray(1, 4).equals(Buffer.from('PNG')));
    });

    // ComfyUI keeps clip_l.safetensors apart from the DiT: generate had --text-encoder-2 and --vae
    // but no --text-encoder ("unknown option"), though models check took one.
    it('--text-encoder gives the CLIP encoder apart from the model folder, as models check takes it', async () => {
      const tiny = path.join(ROOT, 'test', 'fixtures', 'flux-tiny', 'models');
      const noClip = path.join(tmp, 'no-clip');
      fs.cpSync(tiny, noClip, { recursive: true });
      fs.rmSync(path.join(noClip, 'text_encoder'), { recursive: true });
      const r = await run('a cat', '--model', noClip, '--text-encoder', path.join(tiny, 'text_encoder'), ...SMALL, '--weights', 'fp32', '--out', path.join(tmp, 'clip-apart.png'));
      assert.equal(r.code, 0, r.stderr);
      assert.ok(fs.existsSync(path.join(tmp, 'clip-apart.png')));
      assertUsage(await run('a cat', '--model', noClip, '--text-encoder', ''), /--text-encoder is empty/);
      // Every part apart and no folder: it asked for tokenizers no flag can give ("no CLIP tokenizer given").
      const comfy = path.join(tmp, 'comfy');
      fs.mkdirSync(comfy);
      fs.copyFileSync(path.join(tiny, 'text_encoder', 'model.safetensors'), path.join(comfy, 'clip_l.safetensors'));
      fs.copyFileSync(path.join(tiny, 'text_encoder', 'config.json'), path.join(comfy, 'clip_l.config.json'));
      const parts = ['--transformer', path.join(tiny, 'flux-tiny.safetensors'), '--text-encoder', path.join(comfy, 'clip_l.safetensors'), '--text-encoder-2', path.join(tiny, 'text_encoder_2'), '--vae', path.join(tiny, 'ae.safetensors')];
      const apart = await run('a cat', ...parts, ...SMALL, '--weights', 'fp32', '--out', path.join(tmp, 'all-apart.png'));
      assert.equal(apart.code, 0, apart.stderr);
      assert.ok(fs.existsSync(path.join(tmp, 'all-apart.png')));
      const check = await runCli(['models', 'check', ...parts], tmp);
      assert.equal(check.code, 0, check.stdout + check.stderr);
      assert.match(check.stdout, /^ {2}tokenizer2 ok /m, 'models check agrees');
    });

    it('--out naming a folder, or inside a file, is refused up front', async () => {
      assertUsage(await run('--prompt', 'a cat', ...SMALL, '--out', tmp), /is a folder; --out names the PNG file/);
      const file = path.join(tmp, 'a-file');
      fs.writeFileSync(file, '');
      assertUsage(await run('--prompt', 'a cat', ...SMALL, '--out', path.join(file, 'sub', 'x.png')), /--out: cannot create a folder in .*a-file: it is a file/);
    });
  });

  describe('misspelled options (item 16)', () => {
    it('an unknown option names the closest one, in every command', async () => {
      assertUsage(await run('--promt', 'a cat'), /^majicflux generate: unknown option --promt; did you mean --prompt\?$/m);
      const models = await runCli(['models', 'check', '--jsn'], tmp);
      assert.equal(models.code, 2);
      assert.match(models.stderr, /unknown option --jsn; did you mean --json\?/);
      const serve = await runCli(['serve', '--prot', '0'], tmp);
      assert.equal(serve.code, 2);
      assert.match(serve.stderr, /unknown option --prot; did you mean --port\?/);
      const far = await run('--zzzzzz');
      assert.match(far.stderr, /^majicflux generate: unknown option --zzzzzz$/m);
      // A misspelled command said only "unknown command"; under help it listed the commands, exit 0.
      for (const args of [['genrate', 'a cat'], ['help', 'genrate']]) {
        const r = await runCli(args, tmp);
        assert.equal(r.code, 2, `${args.join(' ')}: ${r.stdout}${r.stderr}`);
        assert.match(r.stderr, /^majicflux: unknown command "genrate"; did you mean generate\?$/m);
      }
    });
  });

  describe('file names', () => {
    const metadata: ImageMetadata = {
      prompt: 'Ｃafé ﬁre — a lighthouse on a windswept cliff at dawn, oil painting', seed: 42, steps: 28, width: 1024, height: 768, guidance: 3.5,
      shift: 'dynamic', t5MaxLength: 512, model: 'flux1-dev', weights: 'fp8', sampler: 'euler', software: 'MajicFLUX 0.1.0',
    };

    it('names an image as the extension does for the same metadata and time (one slug, one date format)', () => {
      const date = new Date(2026, 11, 6, 9, 5, 7);
      const extension = outputPath({ folder: tmp, template: DEFAULT_TEMPLATE, values: { ...metadata, date, index: 1 } });
      assert.equal(defaultName(metadata, date), path.basename(extension));
      // NFKC and a cut at a word: the CLI's own slug (NFKD, cut mid-word, 20261206) differed.
      assert.equal(defaultName(metadata, date), '2026-12-06-42-café-fire-a-lighthouse-on-a-windswept-cliff-at.png');
    });

    it('the --json summary\'s metadata and the PNG\'s majicflux chunk are one shape, field for field (item 20)', async () => {
      const out = path.join(tmp, 'same-shape.png');
      const r = await run('--prompt', 'a cat', '--seed', '3', ...SMALL, '--out', out, '--json');
      assert.equal(r.code, 0, r.stderr);
      const summary = JSON.parse(r.stdout) as { metadata: ImageMetadata };
      const png = await readPngParameters(out);
      assert.deepEqual(png.json, summary.metadata);
      assert.deepEqual(Object.keys(summary.metadata).sort(), ['guidance', 'height', 'model', 'prompt', 'sampler', 'seed', 'shift', 'software', 'steps', 't5MaxLength', 'weights', 'width']);
      assert.equal(summary.metadata.seed, 3);
    });

    it('an input image scaled to the side limits: said as a warning when the job starts, and in the --json summary\'s warnings', async () => {
      const image = path.join(tmp, 'tiny-input.png');
      fs.writeFileSync(image, await encodePng({ width: 40, height: 48, data: new Float32Array(40 * 48 * 3).fill(0.5) }));
      const r = await run('--prompt', 'a cat', '--image', image, '--strength', '0.5', '--steps', '2', '--out', path.join(tmp, 'scaled.png'), '--json');
      assert.equal(r.code, 0, r.stderr);
      assert.match(r.stderr, /^warn: input image 40×48 runs at 64×80: image sides are 64–2048 px/m);
      assert.ok(r.stderr.indexOf('warn: input image') < r.stderr.indexOf('step 1/'), 'before the steps, not after the wait');
      const { warnings } = JSON.parse(r.stdout) as { warnings: string[] };
      assert.deepEqual(warnings.length, 1);
      assert.match(warnings[0], /^input image 40×48 runs at 64×80/);
    });

    it('without --out, writes generated/<date>-<seed>-<slug>.png', async () => {
      const r = await run('a cat', ...SMALL, '--json');
      assert.equal(r.code, 0, r.stderr);
      const { file, seed } = JSON.parse(r.stdout) as { file: string; seed: number };
      assert.equal(path.dirname(file), path.join(fs.realpathSync(tmp), 'generated'));
      assert.match(path.basename(file), new RegExp(`^\\d{4}-\\d{2}-\\d{2}-${seed}-a-cat\\.png$`));
    });
  });

  describe('progress (item 17)', () => {
    it('to a pipe: one line per stage and per step, no carriage returns', async () => {
      const r = await run('--prompt', 'a cat', ...SMALL, '--out', path.join(tmp, 'p.png'));
      assert.equal(r.code, 0, r.stderr);
      assert.doesNotMatch(r.stderr, /\r/);
      assert.match(r.stderr, /^step 1\/2$/m);
      assert.match(r.stderr, /^step 2\/2$/m);
      assert.match(r.stderr, /^decode…$/m);
    });

    it('to a terminal: the bar is redrawn in place', async () => {
      let err = '';
      let out = '';
      const code = await main(['generate', 'a cat', ...SMALL, '--out', path.join(tmp, 't.png')], { out: (t) => (out += t), err: (t) => (err += t), errIsTTY: true });
      assert.equal(code, 0, err);
      assert.match(err, /\r\[#{12}\.{12}\] step 1\/2\r\[#{24}\] step 2\/2\n/);
      assert.match(out, /t\.png\n/);
    });

    it('to a terminal, a hires job: the bar of the first pass is ended before the next stage prints', async () => {
      let err = '';
      const code = await main(['generate', 'a cat', ...SMALL, '--hires-scale', '2', '--hires-strength', '0.5', '--out', path.join(tmp, 'h.png')], { out: () => {}, err: (t) => (err += t), errIsTTY: true });
      assert.equal(code, 0, err);
      // 2 steps, then hires 2 at 0.5: 1 step; 3 in all.
      assert.match(err, /\r\[#{16}\.{8}\] step 2\/3\n(encode|denoise) done/);
      assert.doesNotMatch(err, /step 2\/3(encode|denoise)/);
    });

    it('a tiled decode says each tile rather than sit silent (minutes for a large image on a CPU)', async () => {
      const r = await run('--prompt', 'a cat', '--width', '1088', '--height', '64', '--steps', '1', '--vae-tiling', 'on', '--out', path.join(tmp, 'tiles.png'));
      assert.equal(r.code, 0, r.stderr);
      assert.match(r.stderr, /^decode…\n(.*\n)*decode tile 1\/2\ndecode tile 2\/2\ndecode done/m);
    });

    it('--quiet prints nothing but the result', async () => {
      const r = await run('--prompt', 'a cat', ...SMALL, '--out', path.join(tmp, 'q.png'), '--quiet');
      assert.equal(r.code, 0, r.stderr);
      assert.equal(r.stderr, '');
      assert.match(r.stdout, /q\.png\n/);
    });
  });
});
