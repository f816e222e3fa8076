// `majicflux models known|list|check|download`: the bundled CLI (dist/cli.js, built by test:unit)
// run as a user runs it, against the golden model and a local fake hub.

import * as assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { progressLine } from '../../src/inference/cli/models';
import type { DownloadProgress, DownloadResult, ModelCheckReport } from '../../src/shared/models';
import { FakeHub } from '../helpers/fakeHub';
import { GOLDEN_MODELS } from '../helpers/golden';

const ROOT = path.resolve(__dirname, '../..');
const CLI = path.join(ROOT, 'dist', 'cli.js');

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

function runCli(args: string[], env: NodeJS.ProcessEnv = {}): Promise<Run> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [CLI, ...args], { env: { ...process.env, HF_TOKEN: '', ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (c: Buffer) => (stdout += c.toString()));
    child.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
    child.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}

describe('CLI: majicflux models (bundled)', function () {
  this.timeout(60_000);
  let tmp: string;
  let hub: FakeHub;
  // No cache of this machine's may leak into the results: every cache location points into tmp.
  let env: NodeJS.ProcessEnv;

  before(async () => {
    assert.ok(fs.existsSync(CLI), 'dist/cli.js is built by npm run test:unit');
    tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'cli-models-'));
    env = { HF_HUB_CACHE: path.join(tmp, 'hf'), MODELSCOPE_CACHE: path.join(tmp, 'ms'), MAJICFLUX_MODELS_DIR: path.join(tmp, 'dl'), HOME: tmp };
    hub = await FakeHub.start([{ hub: 'modelscope', repo: 'MAILAND/majicflus_v1', files: [{ path: 'majicflus_v134.safetensors', data: fs.readFileSync(path.join(GOLDEN_MODELS, 'flux-tiny.safetensors')) }] }]);
  });
  after(async () => {
    await hub?.close();
    if (tmp) fs.rmSync(tmp, { recursive: true, force: true });
  });

  it('known lists the registry models and their sources', async () => {
    const r = await runCli(['models', 'known'], env);
    assert.equal(r.code, 0, r.stderr);
    for (const id of ['flux1-dev', 'flux1-schnell', 'majicflus-v1']) assert.match(r.stdout, new RegExp(`^${id} `, 'm'));
    assert.match(r.stdout, /huggingface black-forest-labs\/FLUX\.1-dev \(gated: needs a token\)/);
  });

  it('check: a complete model exits 0 with every part present, memory estimates and advice (text and JSON)', async () => {
    const text = await runCli(['models', 'check', GOLDEN_MODELS, '--transformer', path.join(GOLDEN_MODELS, 'flux-tiny-fp8.safetensors'), '--size', '768x512', '--gpu-memory', '12'], env);
    assert.equal(text.code, 0, text.stderr);
    assert.match(text.stdout, /: complete/);
    assert.match(text.stdout, /^ {2}dit +ok +.*flux-tiny-fp8\.safetensors .*F8_E4M3/m);
    assert.match(text.stdout, /fp8 +sequential +768x512/);
    assert.match(text.stdout, /GPU 12\.0 GiB/);
    const json = await runCli(['models', 'check', GOLDEN_MODELS, '--json'], env);
    assert.equal(json.code, 0, json.stderr);
    const report = JSON.parse(json.stdout) as ModelCheckReport;
    assert.ok(report.model.complete);
    assert.equal(report.estimates.length, 5 * 2 * 2, 'five weight formats × two modes × two sizes');
    assert.ok(report.advice.length > 0);
  });

  it('the demo model is usable by name: inspect demo, models check demo, generate --model demo; the bundled folder counts as it (issue 15 item 18)', async function () {
    this.timeout(180_000);
    const demoEnv = { ...env, XDG_CACHE_HOME: path.join(tmp, 'cache') };
    const inspect = await runCli(['inspect', 'demo'], demoEnv);
    assert.equal(inspect.code, 0, inspect.stderr);
    assert.match(inspect.stdout, /demo model \(random weights/);
    assert.match(inspect.stdout, /FLUX\.1 model folder\n/, 'complete, not "(incomplete)"');
    assert.doesNotMatch(inspect.stdout + inspect.stderr, /incomplete/);
    const folder = await runCli(['inspect', path.join(ROOT, 'models', 'demo')], demoEnv);
    assert.equal(folder.code, 0, folder.stderr);
    assert.doesNotMatch(folder.stdout + folder.stderr, /incomplete/);

    const check = await runCli(['models', 'check', 'demo', '--json'], demoEnv);
    assert.equal(check.code, 0, check.stderr);
    const report = JSON.parse(check.stdout) as ModelCheckReport;
    assert.equal(report.model.complete, true);
    assert.ok(report.model.parts.every((p) => p.status === 'present'), JSON.stringify(report.model.parts));

    const out = path.join(tmp, 'demo.png');
    const gen = await runCli(['generate', 'a cat', '--model', 'demo', '--width', '64', '--height', '64', '--steps', '1', '--out', out, '--json'], demoEnv);
    assert.equal(gen.code, 0, gen.stderr);
    assert.match((JSON.parse(gen.stdout) as { metadata: { model: string } }).metadata.model, /demo/);
    assert.ok(fs.existsSync(out));
    // The weights went into the cache named, not next to the bundled tokenizers.
    assert.ok(fs.readdirSync(path.join(tmp, 'cache', 'majicflux')).some((d) => d.startsWith('demo-model-')));
  });

  it('check: a model without its T5 exits 1 and names what is missing', async () => {
    const broken = path.join(tmp, 'broken');
    fs.cpSync(GOLDEN_MODELS, broken, { recursive: true });
    fs.rmSync(path.join(broken, 'text_encoder_2'), { recursive: true });
    const r = await runCli(['models', 'check', broken], env);
    assert.equal(r.code, 1);
    assert.match(r.stdout, /INCOMPLETE/);
    assert.match(r.stdout, /^ {2}t5 +MISSING/m);
  });

  it('check of a folder that is not there says so once, without memory estimates for a model that does not exist', async () => {
    const missing = path.join(tmp, 'no-such-model');
    const r = await runCli(['models', 'check', missing], env);
    assert.equal(r.code, 1, r.stderr);
    assert.equal(r.stdout, `no-such-model: cannot be used: model folder not found: ${missing}\n`);
  });

  it('bad arguments exit 2 with a pointer to --help', async () => {
    for (const args of [['models'], ['models', 'nope'], ['models', 'check'], ['models', 'check', GOLDEN_MODELS, '--size', '100x100'], ['models', 'download', 'flux1-dev', '--hub', 'github']]) {
      const r = await runCli(args, env);
      assert.equal(r.code, 2, `${args.join(' ')}: ${r.stderr}`);
      assert.match(r.stderr, /--help/);
    }
  });

  // A --dest that is a file failed after the hub was asked, with a stack trace; a --search folder
  // that is not there (a typo) was skipped without a word: "No FLUX.1 models found".
  it('a --dest that cannot be made, a --search folder that does not exist: exit 2 before anything is fetched or searched', async () => {
    const file = path.join(tmp, 'a-file');
    fs.writeFileSync(file, 'x');
    for (const [args, why] of [
      [['models', 'download', 'majicflus-v1', '--parts', 'dit', '--dest', path.join(file, 'models')], /--dest: cannot create a folder in .*a-file: it is a file/],
      [['models', 'download', 'majicflus-v1', '--dest', ''], /--dest is empty \(an unset variable\?\)/],
      [['models', 'list', '--search', path.join(tmp, 'no-such-folder')], /--search: .*no-such-folder does not exist/],
      [['models', 'list', '--search', ''], /--search is empty \(an unset variable\?\)/],
    ] as const) {
      const r = await runCli([...args], { ...env, MODELSCOPE_DOMAIN: hub.endpoint });
      assert.equal(r.code, 2, `${args.join(' ')}: ${r.stderr}`);
      assert.match(r.stderr, why);
      assert.doesNotMatch(r.stderr, /^\s+at /m, 'no stack trace');
      assert.doesNotMatch(r.stderr, /^download /m, 'nothing asked of the hub');
    }
  });

  it('download fetches from the hub named by MODELSCOPE_DOMAIN into the models folder; list then finds it', async () => {
    const dest = path.join(tmp, 'dl');
    const r = await runCli(['models', 'download', 'majicflus-v1', '--parts', 'dit', '--json'], { ...env, MODELSCOPE_DOMAIN: hub.endpoint });
    assert.equal(r.code, 0, r.stderr);
    const result = JSON.parse(r.stdout) as DownloadResult;
    const dit = path.join(dest, 'MAILAND', 'majicflus_v1', 'majicflus_v134.safetensors');
    assert.equal(result.files[0].path, dit);
    assert.ok(fs.readFileSync(dit).equals(fs.readFileSync(path.join(GOLDEN_MODELS, 'flux-tiny.safetensors'))));
    const list = await runCli(['models', 'list', '--json'], env);
    assert.equal(list.code, 0, list.stderr);
    const found = (JSON.parse(list.stdout) as { found: { id: string; complete: boolean; parts: { role: string; status: string }[] }[] }).found;
    const m = found.find((f) => f.id === 'majicflus-v1');
    assert.ok(m, list.stdout);
    assert.equal(m.complete, false, 'no FLUX.1-dev base was downloaded');
    assert.ok(m.parts.some((p) => p.role === 't5' && p.status === 'missing'));
  });

  it('download of an unknown model is a bad argument (exit 2, before anything is created); from a hub that is down, exit 1 and a message', async () => {
    const unknown = await runCli(['models', 'download', 'sdxl', '--dest', path.join(tmp, 'unknown')], env);
    assert.equal(unknown.code, 2);
    assert.match(unknown.stderr, /Unknown model "sdxl"\. Known models: flux1-dev/);
    assert.match(unknown.stderr, /--help/);
    assert.equal(fs.existsSync(path.join(tmp, 'unknown')), false);
    const token = await runCli(['models', 'download', 'flux1-dev', '--token-file', path.join(tmp, 'no-token')], env);
    assert.equal(token.code, 2, token.stderr);
    assert.match(token.stderr, /cannot read the token file/);
    // A port nobody listens on: connection refused, which is not worth retrying.
    const port = await new Promise<number>((resolve) => {
      const srv = net.createServer().listen(0, '127.0.0.1', () => {
        const p = (srv.address() as net.AddressInfo).port;
        srv.close(() => resolve(p));
      });
    });
    const t0 = Date.now();
    const down = await runCli(['models', 'download', 'majicflus-v1', '--parts', 'dit', '--dest', path.join(tmp, 'down')], { ...env, MODELSCOPE_DOMAIN: `http://127.0.0.1:${port}` });
    assert.equal(down.code, 1);
    assert.match(down.stderr, new RegExp(`127\\.0\\.0\\.1:${port}`));
    assert.match(down.stderr, /^majicflux models download: Could not reach 127\.0\.0\.1:\d+ .*Check your network connection/m);
    // Nothing fetched: no progress line of unknowns, and no empty folders left behind.
    assert.doesNotMatch(down.stderr, /\?%|0 B of 0 B/);
    assert.equal(fs.existsSync(path.join(tmp, 'down')), false, 'the empty destination folder is removed');
    assert.ok(Date.now() - t0 < 15_000, 'a refused connection fails at once, without retries');
  });
});

describe('models download progress line', () => {
  it('a total size not known yet is said in words, not shown as "?% … of 0.0 MiB"', () => {
    const p: DownloadProgress = { bytes: 3 * 2 ** 20, total: 0, bytesPerSecond: 2 ** 20, files: 1, filesDone: 0, file: 'ae.safetensors' };
    assert.equal(progressLine(p), '3.00 MiB (total size not known yet) · 1.00 MiB/s · file 1/1 ae.safetensors');
    assert.match(progressLine({ ...p, total: 6 * 2 ** 20 }), /^50\.0% 3\.00 MiB of 6\.00 MiB · /);
  });
});
