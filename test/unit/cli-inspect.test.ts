import * as assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as esbuild from 'esbuild';
import type { InspectReport } from '../../src/inference/formats/layouts/inspect';
import { tempDir, writeRawSafetensors, writeSafetensors } from '../helpers/writeSafetensors';

const ROOT = path.resolve(__dirname, '../..');
const MODELS = path.join(ROOT, 'test/fixtures/flux-tiny/models');

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

describe('CLI: majicflux inspect (bundled)', function () {
  this.timeout(60000);
  let tmp: { dir: string; cleanup: () => void };
  let cli: string;

  before(() => {
    tmp = tempDir('cli-test-');
    // The CLI entry alone, with esbuild.config.mjs's settings, into dist/ under another name (so
    // the external native packages resolve from the project's node_modules).
    cli = path.join(ROOT, 'dist', 'cli-inspect-test.js');
    esbuild.buildSync({
      entryPoints: [path.join(ROOT, 'src/inference/cli/main.ts')],
      outfile: cli,
      bundle: true,
      platform: 'node',
      target: 'node20',
      format: 'cjs',
      external: ['vscode', 'onnxruntime-node', 'sharp'],
      banner: { js: '#!/usr/bin/env node' },
      logLevel: 'warning',
    });
  });
  after(() => {
    tmp.cleanup();
    fs.rmSync(cli, { force: true });
  });

  const run = (...args: string[]): Run => {
    const r = spawnSync(process.execPath, [cli, ...args], { encoding: 'utf8', timeout: 30000 });
    return { code: r.status, stdout: r.stdout, stderr: r.stderr };
  };
  const json = (r: Run): InspectReport => JSON.parse(r.stdout) as InspectReport;

  it('is an executable node script', () => {
    assert.match(fs.readFileSync(cli, 'utf8'), /^#!\/usr\/bin\/env node\n/);
  });

  describe('help and usage errors', () => {
    it('--help lists the commands (exit 0)', () => {
      const r = run('--help');
      assert.equal(r.code, 0);
      assert.match(r.stdout, /Usage: majicflux <command>/);
      assert.match(r.stdout, /inspect\s+show what a FLUX\.1 model folder or checkpoint holds/);
    });

    it('no command prints usage on stderr (exit 2)', () => {
      const r = run();
      assert.equal(r.code, 2);
      assert.match(r.stderr, /Usage: majicflux <command>/);
    });

    it('an unknown command (exit 2)', () => {
      const r = run('paint');
      assert.equal(r.code, 2);
      assert.match(r.stderr, /unknown command "paint"/);
    });

    it('inspect --help and help inspect (exit 0)', () => {
      for (const r of [run('inspect', '--help'), run('inspect', '-h'), run('help', 'inspect')]) {
        assert.equal(r.code, 0);
        assert.match(r.stdout, /Usage: majicflux inspect <path> \[--json\]/);
        assert.match(r.stdout, /docs\/CLI-inspect\.md/);
      }
    });

    it('inspect without a path, with two, or with an unknown option (exit 2)', () => {
      const none = run('inspect');
      assert.equal(none.code, 2);
      assert.match(none.stderr, /inspect needs a path\nRun "majicflux inspect --help" for usage\./);
      assert.equal(run('inspect', 'a', 'b').code, 2);
      const bogus = run('inspect', '--bogus', MODELS);
      assert.equal(bogus.code, 2);
      assert.match(bogus.stderr, /^majicflux inspect: unknown option --bogus\n/m);
    });
  });

  describe('golden files', () => {
    it('a model folder, as text', () => {
      const r = run('inspect', MODELS);
      assert.equal(r.code, 0, r.stderr);
      assert.equal(r.stderr, '');
      assert.match(r.stdout, /FLUX\.1 model folder\n/);
      assert.match(r.stdout, /DiT \(transformer\) {2}\[used\]\n {2}layout: {2}diffusers-dit/);
      assert.match(r.stdout, /hidden 64, 4 heads × 16, 2 double \+ 2 single blocks/);
      assert.match(r.stdout, /RoPE axes \[4, 6, 6\], theta 10000/);
      assert.match(r.stdout, /ch 32, ch_mult \[1, 2, 2, 2\], 2 res blocks, 16 latent channels/);
      assert.match(r.stdout, /2 layers, width 32, 4 heads × 8/);
      assert.match(r.stdout, /d_model 32, 4 heads × 8, d_ff 40/);
      assert.match(r.stdout, /F8_E4M3 36 tensors/);
      assert.match(r.stdout, /Tokenizers: CLIP tokenizer\/, T5 tokenizer_2\//);
    });

    it('a model folder, as one JSON object', () => {
      const r = run('inspect', MODELS, '--json');
      assert.equal(r.code, 0, r.stderr);
      const report = json(r);
      assert.equal(report.type, 'model');
      assert.equal(report.complete, true);
      assert.deepEqual(report.components.map((c) => [c.kind, c.layout, c.used]), [
        ['dit', 'diffusers-dit', true], ['dit', 'bfl-dit', false], ['dit', 'bfl-dit', false], ['vae', 'ldm-vae', true], ['clip', 'hf-clip', true], ['t5', 'hf-t5', true],
      ]);
      const dit = report.components[0];
      assert.equal(dit.architecture.hidden_size, 64);
      assert.equal(dit.architecture.num_heads, 4);
      assert.deepEqual(dit.architecture.axes_dim, [4, 6, 6]);
      assert.equal(dit.stats.parameters, 489472);
      assert.equal(report.totals.parameters, 489472 + 1753347 + 1597162 + 1044256);
    });

    it('a single fp8 file, the sharded T5 index, a component folder', () => {
      const fp8 = json(run('inspect', '--json', path.join(MODELS, 'flux-tiny-fp8.safetensors')));
      assert.equal(fp8.type, 'checkpoint');
      assert.deepEqual(Object.keys(fp8.components[0].stats.dtypes).sort(), ['BF16', 'F8_E4M3']);
      const t5 = json(run('inspect', '--json', path.join(MODELS, 'text_encoder_2/model.safetensors.index.json')));
      assert.equal(t5.components[0].layout, 'hf-t5');
      assert.equal(t5.components[0].files.length, 2);
      assert.equal(t5.components[0].architecture.num_heads, 4);
      const vae = run('inspect', path.join(MODELS, 'ae.safetensors'));
      assert.equal(vae.code, 0);
      assert.match(vae.stdout, /VAE \(autoencoder\)\n {2}layout: {2}ldm-vae/);
    });
  });

  describe('failures: message on stderr, non-zero exit', () => {
    it('a truncated checkpoint', () => {
      const bad = writeRawSafetensors(path.join(tmp.dir, 'truncated.safetensors'), { 'img_in.weight': { dtype: 'BF16', shape: [64, 64], data_offsets: [0, 8192] } }, 100);
      for (const args of [[bad], [bad, '--json']]) {
        const r = run('inspect', ...args);
        assert.equal(r.code, 1);
        assert.equal(r.stdout, '');
        assert.match(r.stderr, new RegExp(`^majicflux inspect: ${bad.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}: file is truncated`));
        assert.doesNotMatch(r.stderr, /\n\s+at /, 'no stack trace');
      }
    });

    it('a file that is not a FLUX.1 component, and a missing path', () => {
      const other = writeSafetensors(path.join(tmp.dir, 'other.safetensors'), { 'classifier.weight': { dtype: 'F32', shape: [2, 2] } });
      const r = run('inspect', other);
      assert.equal(r.code, 1);
      assert.match(r.stderr, /other\.safetensors: not a FLUX\.1 component/);
      const missing = run('inspect', path.join(tmp.dir, 'nope'));
      assert.equal(missing.code, 1);
      assert.match(missing.stderr, /nope: no such file or folder/);
    });

    it('a FIFO or a character device: one clean line, exit 1, no stack trace (issue 16)', function () {
      if (process.platform === 'win32') this.skip();
      const fifo = path.join(tmp.dir, 'pipe.safetensors');
      spawnSync('mkfifo', [fifo]);
      const cases: Array<[string, string[], RegExp]> = [
        ['inspect', ['inspect', '/dev/zero'], /^majicflux inspect: \/dev\/zero: is a character device, not a regular file or folder\n$/],
        ['inspect', ['inspect', fifo], /^majicflux inspect: .*pipe\.safetensors: is a FIFO \(named pipe\), not a regular file or folder\n$/],
        ['generate', ['generate', '--model', MODELS, '--transformer', '/dev/zero', '--prompt', 'x', '--steps', '1'], /^majicflux generate: \/dev\/zero: is a character device/m],
        ['generate', ['generate', '--model', MODELS, '--transformer', fifo, '--prompt', 'x', '--steps', '1'], /^majicflux generate: .*pipe\.safetensors: is a FIFO/m],
        ['generate', ['generate', '--model', '/dev/zero', '--prompt', 'x', '--steps', '1'], /^majicflux generate: \/dev\/zero: is a character device, not a model folder\n$/],
        ['generate', ['generate', '--model', fifo, '--prompt', 'x', '--steps', '1'], /^majicflux generate: .*pipe\.safetensors: is a FIFO \(named pipe\), not a model folder\n$/],
      ];
      for (const [, args, expected] of cases) {
        const r = run(...args);
        assert.equal(r.code, 1, `${args.join(' ')}: ${r.stderr}`);
        assert.match(r.stderr, expected);
        assert.doesNotMatch(r.stderr, /\n\s+at |ENOTDIR/, 'no stack trace');
      }
    });

    it('a FIFO named config.json beside a checkpoint is refused, not waited on (issue 16)', function () {
      if (process.platform === 'win32') this.skip();
      const dir = path.join(tmp.dir, 'fifo-config');
      fs.mkdirSync(dir);
      fs.copyFileSync(path.join(MODELS, 'transformer/diffusion_pytorch_model.safetensors'), path.join(dir, 'diffusion_pytorch_model.safetensors'));
      spawnSync('mkfifo', [path.join(dir, 'config.json')]);
      const r = run('inspect', dir);
      assert.equal(r.code, 1, `exit ${r.code}: ${r.stderr}`);
      assert.match(r.stderr, /config\.json: is a FIFO \(named pipe\), not a regular file\n$/);
    });

    it('an incomplete model folder prints what it has, and what is missing on stderr', () => {
      const dir = path.join(tmp.dir, 'partial');
      fs.mkdirSync(dir);
      fs.symlinkSync(path.join(MODELS, 'transformer'), path.join(dir, 'transformer'));
      fs.symlinkSync(path.join(MODELS, 'ae.safetensors'), path.join(dir, 'ae.safetensors'));
      const r = run('inspect', dir);
      assert.equal(r.code, 1);
      assert.match(r.stdout, /FLUX\.1 model folder \(incomplete\)/);
      assert.match(r.stdout, /Missing: no text encoder found/);
      assert.match(r.stderr, /incomplete model folder:\n {2}- no text encoder found\. Expected text_encoder\/ \(CLIP\) with model\.safetensors/);
      const j = run('inspect', dir, '--json');
      assert.equal(j.code, 1);
      assert.equal(json(j).complete, false);
      assert.equal(json(j).missing.length, 4);
    });
  });
});
