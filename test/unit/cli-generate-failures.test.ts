// `majicflux generate` when something goes wrong around the generation itself, as a first-time user
// meets it: Ctrl+C mid-step, the output name taken or its folder gone while generating, a cache
// folder that cannot be written. Each must say what happened and what to do, without a stack
// trace, and leave no partial file (issue 15, QA of the everyday path).

import * as assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { main } from '../../src/inference/cli/main';
import { TINY as TINY_ARCH } from '../../src/inference/models/architecture';
import { demoAssetsDir } from '../../src/inference/models/demo';
import { writeSyntheticModel } from '../../src/inference/models/synthetic';
import { removeStaleWeightCaches } from '../../src/inference/onnx/weightCache';
import { CliRun, CLI, runCli } from '../helpers/cli';
import { writeSafetensors } from '../helpers/writeSafetensors';

const ROOT = path.resolve(__dirname, '../..');
const TINY = path.join(ROOT, 'test', 'fixtures', 'flux-tiny', 'models');
const SMALL = ['--model', TINY, '--width', '64', '--height', '64', '--steps', '2'];

function assertNoStack(r: { stderr: string }): void {
  assert.doesNotMatch(r.stderr, /^\s+at /m, `no stack trace:\n${r.stderr}`);
}

/** main() in this process, with a hook on each stderr write (to change the disk mid-run). */
async function runInProcess(args: string[], onErr: (text: string) => void = () => {}): Promise<CliRun> {
  let stdout = '';
  let stderr = '';
  const code = await main(args, {
    out: (t) => (stdout += t),
    err: (t) => {
      stderr += t;
      onErr(t);
    },
  });
  return { code, signal: null, stdout, stderr };
}

describe('CLI: majicflux generate, failures around the generation', function () {
  this.timeout(120_000);
  let tmp: string;

  before(() => {
    assert.ok(fs.existsSync(CLI), 'dist/cli.js is built by npm run build');
    tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'cli-failures-'));
  });
  after(() => fs.rmSync(tmp, { recursive: true, force: true }));

  it('Ctrl+C mid-step says it was cancelled (no stack trace), exits 130 and writes nothing', async () => {
    const dir = fs.mkdtempSync(path.join(tmp, 'sigint-'));
    let sent = false;
    const r = await runCli(['generate', 'a cat', '--model', TINY, '--width', '1024', '--height', '1024', '--steps', '200', '--out', path.join(dir, 'a.png')], dir, {
      onStderr: (text, child) => {
        if (sent || !/^step 1\/200$/m.test(text)) return;
        sent = true;
        child.kill('SIGINT');
      },
    });
    assert.ok(sent, r.stderr);
    assert.equal(r.code, 130, r.stderr);
    assert.match(r.stderr, /^cancelling at the next step… \(Ctrl\+C again to quit now\)$/m);
    assert.match(r.stderr, /^cancelled; no image was written$/m);
    assertNoStack(r);
    assert.deepEqual(fs.readdirSync(dir), [], 'no PNG and no temp file left');
  });

  // The decode holds the event loop (seconds, minutes for a large image on a CPU): a Ctrl+C then was
  // heard after it, its listener already gone, and the image was saved with exit status 0.
  it('Ctrl+C during the decode also writes nothing and exits 130', async () => {
    const dir = fs.mkdtempSync(path.join(tmp, 'sigint-decode-'));
    let sent = false;
    const r = await runCli(['generate', 'a cat', '--model', TINY, '--width', '768', '--height', '768', '--steps', '1', '--vae-tiling', 'off', '--out', path.join(dir, 'a.png')], dir, {
      onStderr: (text, child) => {
        if (sent || !/^decode…$/m.test(text)) return;
        sent = true;
        child.kill('SIGINT');
      },
    });
    assert.ok(sent, r.stderr);
    assert.equal(r.code, 130, r.stderr);
    assert.match(r.stderr, /^cancelled; no image was written$/m);
    assertNoStack(r);
    assert.deepEqual(fs.readdirSync(dir), [], 'no PNG and no temp file left');
  });

  // A run killed while saving left its .<name>.<pid>-<hex>.tmp beside the images for good.
  it('a temporary file that a killed run left in the output folder is removed at the next save; a live one is kept', async () => {
    const dir = fs.mkdtempSync(path.join(tmp, 'stale-'));
    const dead = spawnSync(process.execPath, ['-e', 'process.stdout.write(String(process.pid))'], { encoding: 'utf8' }).stdout;
    const stale = path.join(dir, `.old.png.${dead}-0123456789ab.tmp`);
    const live = path.join(dir, `.live.png.${process.pid}-0123456789ab.tmp`);
    fs.writeFileSync(stale, 'half a png');
    fs.writeFileSync(live, 'being written');
    const r = await runCli(['generate', 'a cat', ...SMALL, '--out', path.join(dir, 'a.png')], dir);
    assert.equal(r.code, 0, r.stderr);
    assert.ok(!fs.existsSync(stale), 'the dead run\'s temporary file is gone');
    assert.ok(fs.existsSync(live), 'a running writer\'s is kept');
    assert.match(r.stderr, /removed 1 temporary file left in .* by a run that was killed while saving/);
  });

  it('a second Ctrl+C quits at once (the way out of a long first-use conversion), leaving no PNG', async () => {
    const dir = fs.mkdtempSync(path.join(tmp, 'sigint2-'));
    let sent = 0;
    // 1536²: a step takes seconds here, so the second Ctrl+C surely lands before the first one's step ends.
    const r = await runCli(['generate', 'a cat', '--model', TINY, '--width', '1536', '--height', '1536', '--steps', '200', '--out', path.join(dir, 'a.png')], dir, {
      onStderr: (text, child) => {
        if (sent === 0 && /^loaded dit /m.test(text)) {
          sent = 1;
          child.kill('SIGINT');
        } else if (sent === 1 && /Ctrl\+C again to quit now/.test(text)) {
          sent = 2;
          child.kill('SIGINT');
        }
      },
    });
    assert.equal(sent, 2, r.stderr);
    assert.equal(r.signal, 'SIGINT', `killed by the second Ctrl+C, not at a step: code ${r.code}\n${r.stderr}`);
    assert.doesNotMatch(r.stderr, /^cancelled; no image was written$/m);
    assert.deepEqual(fs.readdirSync(dir), []);
  });

  it('an --out file that another run wrote meanwhile is kept, and this image goes to the next free name', async () => {
    const dir = fs.mkdtempSync(path.join(tmp, 'race-'));
    const out = path.join(dir, 'a.png');
    const r = await runInProcess(['generate', 'a cat', ...SMALL, '--out', out], (t) => {
      if (/^step 1\/2$/m.test(t)) fs.writeFileSync(out, 'the other run');
    });
    assert.equal(r.code, 0, r.stderr);
    assert.equal(fs.readFileSync(out, 'utf8'), 'the other run');
    const other = path.join(dir, 'a-1.png');
    assert.ok(fs.readFileSync(other).subarray(1, 4).equals(Buffer.from('PNG')), 'this run\'s image is saved');
    assert.match(r.stderr, /a\.png appeared while generating \(another run\?\); saved as .*a-1\.png instead/);
    assert.match(r.stdout, /a-1\.png\n/);
  });

  it('an output folder that became unwritable while generating: a clear message with the seed to get the image again', async () => {
    const dir = fs.mkdtempSync(path.join(tmp, 'gone-'));
    const sub = path.join(dir, 'sub');
    fs.mkdirSync(sub);
    const r = await runInProcess(['generate', 'a cat', ...SMALL, '--seed', '5', '--out', path.join(sub, 'a.png')], (t) => {
      if (!/^step 1\/2$/m.test(t)) return;
      fs.rmSync(sub, { recursive: true });
      fs.writeFileSync(sub, 'a file where the folder was');
    });
    assert.equal(r.code, 1, r.stderr);
    assert.match(r.stderr, /could not save the image to .*a\.png: a file is in the way/);
    assert.match(r.stderr, /--seed 5/);
    assertNoStack(r);
  });

  it('--out with an extension other than .png is refused up front (the file is a PNG)', async () => {
    const r = await runCli(['generate', 'a cat', ...SMALL, '--out', path.join(tmp, 'a.jpg')], tmp);
    assert.equal(r.code, 2, r.stderr);
    assert.match(r.stderr, /--out: the image is written as PNG; name it .*a\.png/);
    assert.doesNotMatch(r.stderr, /^text…/m, 'refused before anything loads');
    assert.ok(!fs.existsSync(path.join(tmp, 'a.jpg')));
  });

  it('an --out name too long for the temporary file beside it is refused up front, not after generating', async () => {
    for (const n of [240, 260]) {
      const r = await runCli(['generate', 'a cat', ...SMALL, '--out', path.join(tmp, `${'a'.repeat(n)}.png`)], tmp);
      assert.equal(r.code, 2, r.stderr);
      assert.match(r.stderr, new RegExp(`--out: the file name is ${n + 4} bytes long; at most \\d+ \\(room is kept for the temporary file's name\\): choose a shorter one`));
      assert.doesNotMatch(r.stderr, /^text…/m, 'refused before anything loads');
    }
  });

  it('a path given as "" (an unset variable) is refused, not read as the demo model or the current folder', async () => {
    // --image "" said "--image: <the current folder> does not exist".
    for (const flag of ['--model', '--transformer', '--vae', '--text-encoder-2', '--cache', '--out', '--image', '--latents']) {
      const r = await runCli(['generate', 'a cat', '--width', '64', '--height', '64', '--steps', '1', flag, ''], tmp);
      assert.equal(r.code, 2, `${flag}: ${r.stderr}`);
      assert.match(r.stderr, new RegExp(`${flag} is empty \\(an unset variable\\?\\); give a path, or leave it out`));
      assert.doesNotMatch(r.stderr, /^model demo|^text…/m, 'nothing loaded');
    }
    // serve --output-dir "" served the current folder: written into, and readable by every client.
    for (const flag of ['--output-dir', '--inputs-dir', '--models-dir', '--model', '--transformer', '--vae', '--cache']) {
      const r = await runCli(['serve', '--port', '0', flag, ''], tmp, { killAfterMs: 10_000 });
      assert.equal(r.code, 2, `${flag}: ${r.stdout}${r.stderr}`);
      assert.match(r.stderr, new RegExp(`${flag} is empty \\(an unset variable\\?\\); give a path, or leave it out`));
      assert.doesNotMatch(r.stdout, /listening/);
    }
    // serve --vae with no model listened with no model, the VAE unused; beside the demo model likewise.
    for (const args of [['--vae', 'ae.safetensors'], ['--model', 'demo', '--vae', 'ae.safetensors']]) {
      const r = await runCli(['serve', '--port', '0', ...args], tmp, { killAfterMs: 10_000 });
      assert.equal(r.code, 2, `${args.join(' ')}: ${r.stdout}${r.stderr}`);
      assert.match(r.stderr, args[0] === '--vae' ? /--vae replaces a part of a model: add --model DIR/ : /the demo model \(random weights\) has its own parts and takes no --vae/);
      assert.doesNotMatch(r.stdout, /listening/);
    }
    // It listened on every interface ([::]).
    const host = await runCli(['serve', '--port', '0', '--host', ''], tmp, { killAfterMs: 10_000 });
    assert.equal(host.code, 2, host.stdout + host.stderr);
    assert.match(host.stderr, /--host is empty \(an unset variable\?\); give an address, or leave it out for 127\.0\.0\.1/);
    assert.doesNotMatch(host.stdout, /listening/);
    const check = await runCli(['models', 'check', ''], tmp);
    assert.equal(check.code, 2, check.stderr);
    assert.match(check.stderr, /the model folder is empty \(an unset variable\?\)/);
    const inspect = await runCli(['inspect', ' '], tmp);
    assert.equal(inspect.code, 2, inspect.stderr);
    assert.match(inspect.stderr, /the path is empty \(an unset variable\?\)/);
  });

  it('a --transformer or --vae that is not that part (an SDXL checkpoint, the VAE as the DiT) is refused before the text encoders run', async () => {
    const sdxl = path.join(tmp, 'sdxl.safetensors');
    const f16 = (shape: number[]) => ({ dtype: 'F16', shape, data: new Uint8Array(shape.reduce((a, b) => a * b, 1) * 2) });
    writeSafetensors(sdxl, { 'model.diffusion_model.input_blocks.0.0.weight': f16([8, 4, 3, 3]), 'first_stage_model.decoder.conv_in.weight': f16([8, 4, 3, 3]) });
    const cases: Array<[string[], RegExp]> = [
      [['--transformer', sdxl], /^majicflux generate: .*sdxl\.safetensors: not a FLUX\.1 component/m],
      [['--transformer', path.join(TINY, 'ae.safetensors')], /^majicflux generate: .*ae\.safetensors: holds no DiT \(transformer\); found: VAE \(autoencoder\)$/m],
      [['--vae', path.join(TINY, 'flux-tiny.safetensors')], /^majicflux generate: .*flux-tiny\.safetensors: holds no VAE \(autoencoder\); found: DiT \(transformer\)$/m],
    ];
    for (const [flags, message] of cases) {
      const r = await runCli(['generate', 'a cat', ...SMALL, ...flags, '--out', path.join(tmp, 'wrong-part.png')], tmp);
      assert.equal(r.code, 1, r.stderr);
      assert.match(r.stderr, message);
      assert.doesNotMatch(r.stderr, /^text…/m, 'refused before the text encoders ran');
      assertNoStack(r);
    }
  });

  it('a cache folder that cannot be written, on first use of the demo model: says where and what to do', async () => {
    const file = path.join(tmp, 'cache-is-a-file');
    fs.writeFileSync(file, '');
    const r = await runCli(['generate', 'a cat', '--width', '64', '--height', '64', '--steps', '1', '--out', path.join(tmp, 'demo.png')], tmp, { env: { ...process.env, XDG_CACHE_HOME: file } });
    assert.equal(r.code, 1, r.stderr);
    assert.match(r.stderr, /cannot write the demo model into .*cache-is-a-file.*: a file is in the way/);
    assert.match(r.stderr, /XDG_CACHE_HOME/);
    assertNoStack(r);
  });

  it('--cache-max-gb below one model\'s cache does not remove the cache this run is about to use (it would be rebuilt every run)', async () => {
    // A DiT whose Linear weights pass the 1 MiB inline limit, so int8 converts them into the cache.
    const model = path.join(tmp, 'wide-dit');
    writeSyntheticModel(model, { ...TINY_ARCH, dit: { ...TINY_ARCH.dit, hidden: 384, heads: 3, depth: 1, depthSingle: 1, axes: [16, 56, 56] } }, { seed: 3, tokenizers: demoAssetsDir() });
    const cache = path.join(tmp, 'limited-cache');
    const args = ['generate', 'a cat', '--model', model, '--weights', 'int8', '--width', '64', '--height', '64', '--steps', '1', '--cache', cache, '--cache-max-gb', String(1 / 1024), '--out', path.join(tmp, 'limited.png'), '--overwrite'];
    const first = await runCli(args, tmp);
    assert.equal(first.code, 0, first.stderr);
    assert.match(first.stderr, /dit: preparing its weights in the cache/);
    // The limit is passed, kept by design: said once, with what to do, not silently.
    assert.match(first.stderr, /the weight caches this model uses take [\d.]+ [KM]i?B in .*limited-cache, more than the 1(\.0+)? MiB limit: they stay while used .*raise the limit \(--cache-max-gb/);
    assert.equal(first.stderr.match(/more than the .* limit/g)?.length, 1, 'once per run');
    const second = await runCli(args, tmp);
    assert.equal(second.code, 0, second.stderr);
    assert.doesNotMatch(second.stderr, /preparing its weights|removed the/, 'the DiT\'s cache was kept and reused');
    assert.equal(fs.readdirSync(cache).length, 1);
  });

  it('a checkpoint changed since its weights were cached: converted again, and the old cache removed and said so (it could never be used again)', async () => {
    const model = path.join(tmp, 'changed-dit');
    writeSyntheticModel(model, { ...TINY_ARCH, dit: { ...TINY_ARCH.dit, hidden: 384, heads: 3, depth: 1, depthSingle: 1, axes: [16, 56, 56] } }, { seed: 4, tokenizers: demoAssetsDir() });
    const cache = path.join(tmp, 'changed-cache');
    const args = ['generate', 'a cat', '--model', model, '--weights', 'int8', '--width', '64', '--height', '64', '--steps', '1', '--cache', cache, '--out', path.join(tmp, 'changed.png'), '--overwrite'];
    assert.equal((await runCli(args, tmp)).code, 0);
    const [before] = fs.readdirSync(cache);
    const dit = path.join(model, 'flux.safetensors');
    const later = new Date(Date.now() + 60_000);
    fs.utimesSync(dit, later, later);
    const second = await runCli(args, tmp);
    assert.equal(second.code, 0, second.stderr);
    assert.match(second.stderr, /dit: preparing its weights in the cache/);
    assert.match(second.stderr, new RegExp(`removed 1 weight cache\\(s\\) \\([\\d.]+ [KM]i?B\\) converted from a file that has changed since: .*flux\\.safetensors`));
    const after = fs.readdirSync(cache);
    assert.equal(after.length, 1, after.join(', '));
    assert.notEqual(after[0], before);
    // A source that is gone (an unplugged drive) may come back: its cache stays.
    fs.renameSync(dit, `${dit}.away`);
    assert.deepEqual(removeStaleWeightCaches(cache, new Set()).removed, []);
    fs.renameSync(`${dit}.away`, dit);
  });

  it('--cache naming a file is refused up front', async () => {
    const file = path.join(tmp, 'not-a-folder');
    fs.writeFileSync(file, '');
    const r = await runCli(['generate', 'a cat', ...SMALL, '--cache', file], tmp);
    assert.equal(r.code, 2, r.stderr);
    assert.match(r.stderr, /--cache: .*not-a-folder is a file; --cache names the folder/);
  });
});
