// The inference server: NDJSON framing and message validation (pure), then the real bundle
// dist/server.js driven through serverClient.ts (and raw, for malformed input) with the golden
// tiny model. No mocks: every job runs the real pipeline.

import * as assert from 'node:assert/strict';
import { ChildProcess, execFileSync, spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import sharp from 'sharp';
import { CancelledError } from '../../src/shared/api';
import { readPngParameters } from '../../src/inference/formats/png';
import { oneLine } from '../../src/inference/server/server';
import { BackOff } from '../../src/inference/server/tokenCheck';
import { encodeMessage, LineSplitter } from '../../src/shared/ndjson';
import {
  isValidationError,
  JobEvent,
  JobRequest,
  parseRequest,
  Request,
  ServerMessage,
  ServerSettings,
  validateRequest,
  validateServerMessage,
} from '../../src/shared/protocol';
import { ServerClient, ServerClientOptions } from '../../src/extension/serverClient';
import { DownloadFailedError, JobFailedError, ServerError } from '../../src/extension/serverErrors';
import type { Logger } from '../../src/extension/serverLink';
import { FakeHub, TOKEN_GOOD } from '../helpers/fakeHub';
import { mutate, randomValue, rng } from '../helpers/fuzz';
import { GOLDEN_MODELS } from '../helpers/golden';

const ROOT = path.resolve(__dirname, '..', '..');
const SERVER = path.join(ROOT, 'dist', 'server.js');

// ---------------------------------------------------------------------------------------------
// Helpers

function collectLines(maxLineBytes?: number): { splitter: LineSplitter; lines: string[]; overflows: number[] } {
  const lines: string[] = [];
  const overflows: number[] = [];
  return { splitter: new LineSplitter((l) => lines.push(l), (n) => overflows.push(n), maxLineBytes), lines, overflows };
}

class TestLogger implements Logger {
  readonly lines: string[] = [];
  debug(m: string) { this.lines.push(`debug ${m}`); }
  info(m: string) { this.lines.push(`info ${m}`); }
  warn(m: string) { this.lines.push(`warn ${m}`); }
  error(m: string) { this.lines.push(`error ${m}`); }
}

const VALID_REQUESTS: Request[] = [
  { id: 1, type: 'hello', protocol: 1, client: 'test', token: 'abc', settings: { model: { dir: '/m' }, weights: 'fp8', memory: 'auto', stageEp: { vae: 'cpu' } }, heartbeatMs: 1000 },
  { id: 2, type: 'configure', settings: { model: { dir: '/m', transformer: '/t.safetensors' }, ep: 'cuda', memoryBudget: 8e9, gpuMemory: 12e9, threads: 4, cacheDir: '/c' } },
  { id: 3, type: 'generate', job: { params: { prompt: 'a fox', seed: -1, steps: 4, width: 64, height: 64, guidance: 3.5, shift: 'dynamic', t5MaxLength: 512 }, output: '/o/a.png', previewEvery: 1 } },
  { id: 4, type: 'generate', job: { params: { prompt: '', shift: 3 }, output: 'a.png', returnImage: true } },
  { id: 5, type: 'cancel', jobId: 'job-1' },
  { id: 6, type: 'status' },
  { id: 7, type: 'load', components: ['dit', 'vae'] },
  { id: 8, type: 'unload' },
  { id: 9, type: 'ping' },
  { id: 10, type: 'shutdown' },
  { id: 11, type: 'models', search: { searchPaths: ['/models'], workspaceFolders: ['/ws'], globalStorage: '/gs' } },
  { id: 12, type: 'models' },
  { id: 13, type: 'check', model: { dir: '/m', transformer: '/m/majicflus_v134.safetensors' }, verify: true, width: 1024, height: 768 },
  { id: 14, type: 'check' },
  { id: 15, type: 'download', download: { model: 'majicflus-v1', hub: 'modelscope', dest: '/models', parts: ['dit', 'vae'], endpoints: { modelscope: 'http://127.0.0.1:1' } } },
  { id: 16, type: 'download', download: { model: 'flux1-dev', dest: '/models', token: 'hf_x' } },
];

const METADATA = { prompt: 'p', seed: 3, steps: 1, width: 64, height: 64, guidance: 3.5, shift: 'dynamic' as const, t5MaxLength: 512, model: 'm', weights: 'fp8' as const, sampler: 'euler' as const, software: 'MajicFLUX 0.1.0' };
const MACHINE = { platform: 'linux', arch: 'x64', cpus: 16, totalMemory: 3.3e10, freeMemory: 2e10, gpuMemory: 1.2e10, gpuName: 'NVIDIA GeForce RTX 3060' };
const FOUND = {
  id: 'majicflus-v1', name: 'majicflus v1', where: 'workspace' as const, root: '/ws/models', complete: false,
  parts: [
    { role: 'dit' as const, status: 'present' as const, path: '/ws/models/MAILAND/majicflus_v1/majicflus_v134.safetensors', layout: 'bfl-dit', dtypes: { F8_E4M3: 500, F32: 280 }, params: 1.19e10, bytes: 1.19e10, sha256: 'ef'.repeat(32), verified: 'recorded' as const },
    { role: 't5' as const, status: 'missing' as const, message: 'text_encoder_2/ not found' },
  ],
  spec: { dir: '/ws/models/black-forest-labs/FLUX.1-dev', transformer: '/ws/models/MAILAND/majicflus_v1/majicflus_v134.safetensors' },
};
const VALID_SERVER_MESSAGES: ServerMessage[] = [
  { id: 1, type: 'hello', protocol: 1, version: '0.1.0', pid: 5, platform: 'linux-x64', heartbeatMs: 5000 },
  { id: 2, type: 'ok' },
  { id: 3, type: 'queued', jobId: 'job-1', position: 0 },
  { id: 5, type: 'cancel', jobId: 'job-1', state: 'cancelling' },
  { id: 6, type: 'status', status: { version: '0.1.0', pid: 5, state: 'busy', loaded: ['dit'], jobs: [{ jobId: 'job-1', state: 'running', prompt: 'p', position: 0 }], rss: 1e8, eps: [{ component: 'dit', ep: 'cpu' }], model: 'm', memory: 'auto', memoryBudget: 1e9, uptime: 3 } },
  { id: 7, type: 'loaded', components: ['dit', 'vae'] },
  { id: 9, type: 'pong', time: 1700000000000 },
  { id: null, type: 'error', code: 'bad-json', message: 'not JSON' },
  { id: 3, type: 'error', code: 'failed', message: 'x', detail: 'stack' },
  { type: 'event', event: 'started', jobId: 'job-1' },
  { type: 'event', event: 'stage', jobId: 'job-1', stage: 'text', state: 'start' },
  { type: 'event', event: 'loading', jobId: 'job-1', component: 'dit', phase: 'prepare', fraction: 0.3 },
  { type: 'event', event: 'loading', jobId: 'job-1', component: 'dit', phase: 'loaded' },
  { type: 'event', event: 'step', jobId: 'job-1', step: 1, steps: 4, preview: { width: 8, height: 8, pngBase64: 'iVBORw0KGgo=' } },
  { type: 'event', event: 'done', jobId: 'job-1', file: '/o/a.png', metadata: METADATA, stages: [{ stage: 'denoise', seconds: 0.1, peakRss: 1e8, ep: 'cpu' }], notes: ['prompt embeddings from cache'], seconds: 0.5 },
  { type: 'event', event: 'failed', jobId: 'job-1', message: 'Not enough memory', detail: 'bad_alloc' },
  { type: 'event', event: 'failed', jobId: 'job-1', message: 'Model folder not found: /m', code: 'model' },
  { type: 'event', event: 'cancelled', jobId: 'job-1' },
  { type: 'event', event: 'log', level: 'warn', message: 'hm', jobId: 'job-1' },
  { type: 'event', event: 'heartbeat', time: 1700000000000, rss: 1e8, state: 'idle', queued: 0 },
  { id: 11, type: 'models', found: [FOUND], machine: MACHINE },
  { id: 13, type: 'check', report: { model: FOUND, machine: MACHINE, estimates: [{ weights: 'fp8', mode: 'sequential', width: 1024, height: 1024, components: { clip: 2.4e8, t5: 9.5e9, dit: 1.2e10, vae: 1.6e8 }, peak: 1.3e10, fitsRam: true, fitsGpu: false }], advice: ['fp8 + sequential: peak ≈ 12.1 GiB — fits your 31 GiB of RAM'] } },
  { id: 15, type: 'download', downloadId: 'download-1' },
  { type: 'event', event: 'download-progress', downloadId: 'download-1', progress: { file: 'ae.safetensors', files: 3, filesDone: 1, bytes: 1e9, total: 3e9, bytesPerSecond: 5e7, etaSeconds: 40 } },
  { type: 'event', event: 'download-done', downloadId: 'download-1', result: { spec: { dir: '/models/black-forest-labs/FLUX.1-dev' }, files: [{ path: '/models/x/ae.safetensors', bytes: 335304388, sha256: 'ab'.repeat(32), resumedFrom: 1000 }, { path: '/models/x/y', bytes: 1, sha256: 'cd'.repeat(32), skipped: true }] } },
  { type: 'event', event: 'download-failed', downloadId: 'download-1', code: 'auth-required', message: 'black-forest-labs/FLUX.1-dev is gated', detail: 'HTTP 401' },
];

// ---------------------------------------------------------------------------------------------

describe('protocol: NDJSON framing', () => {
  it('reassembles lines from chunks split anywhere, also inside multi-byte characters', () => {
    const messages = ['{"a":"赛博朋克 🦊 café"}', '{"b":1}', '{"c":"\\n escaped"}', '{"d":"ä"}'];
    const bytes = Buffer.from(messages.join('\n') + '\n', 'utf8');
    const r = rng(1);
    for (let trial = 0; trial < 200; trial++) {
      const { splitter, lines } = collectLines();
      let at = 0;
      while (at < bytes.length) {
        const n = 1 + Math.floor(r() * 7);
        splitter.push(bytes.subarray(at, at + n));
        at += n;
      }
      splitter.end();
      assert.deepEqual(lines, messages);
    }
  });

  it('handles CRLF, blank lines, string chunks and a last line without a newline', () => {
    const { splitter, lines } = collectLines();
    splitter.push('{"a":1}\r\n\n  \n{"b"');
    splitter.push(':2}\n{"c":3}');
    assert.deepEqual(lines, ['{"a":1}', '{"b":2}']);
    splitter.end();
    assert.deepEqual(lines, ['{"a":1}', '{"b":2}', '{"c":3}']);
  });

  it('drops a line over the limit, reports it once, and reads on after its newline', () => {
    const { splitter, lines, overflows } = collectLines(16);
    splitter.push('{"ok":1}\n' + 'x'.repeat(10));
    splitter.push('y'.repeat(10));
    splitter.push('z'.repeat(100));
    splitter.push('\n{"ok":2}\n');
    assert.deepEqual(lines, ['{"ok":1}', '{"ok":2}']);
    assert.equal(overflows.length, 1);
    assert.ok(overflows[0] > 16);
  });

  it('an encoded message is exactly one line, whatever its strings hold', () => {
    const line = encodeMessage({ type: 'event', event: 'log', level: 'info', message: 'a\nb\r\u2028c"\\' });
    assert.equal(line.indexOf('\n'), line.length - 1);
    const { splitter, lines } = collectLines();
    splitter.push(line);
    assert.deepEqual(validateServerMessage(JSON.parse(lines[0])), { type: 'event', event: 'log', level: 'info', message: 'a\nb\r\u2028c"\\' });
  });

  it('never throws on random bytes', () => {
    const r = rng(2);
    for (let trial = 0; trial < 300; trial++) {
      const { splitter, lines } = collectLines(64);
      const junk = Uint8Array.from({ length: Math.floor(r() * 300) }, () => (r() < 0.1 ? 10 : Math.floor(r() * 256)));
      splitter.push(junk);
      splitter.end();
      for (const l of lines) {
        const req = parseRequest(l);
        assert.ok('error' in req || 'type' in req);
      }
    }
  });
});

describe('protocol: validation', () => {
  it('accepts every request kind and returns it unchanged', () => {
    for (const req of VALID_REQUESTS) assert.deepEqual(validateRequest(JSON.parse(JSON.stringify(req))), req);
  });

  it('accepts every server message kind and returns it unchanged', () => {
    for (const msg of VALID_SERVER_MESSAGES) assert.deepEqual(validateServerMessage(JSON.parse(JSON.stringify(msg))), msg);
  });

  it('drops unknown fields (a newer peer may add some) and ignores inherited names', () => {
    const r = validateRequest({ id: 1, type: 'ping', extra: true });
    assert.deepEqual(r, { id: 1, type: 'ping' });
    const proto = validateRequest(JSON.parse('{"id":2,"type":"cancel","jobId":"j","__proto__":{"polluted":1}}'));
    assert.deepEqual(proto, { id: 2, type: 'cancel', jobId: 'j' });
    assert.equal(({} as Record<string, unknown>).polluted, undefined);
    assert.ok(isValidationError(validateRequest({ type: 'toString', id: 1 })));
  });

  it('says which field is wrong and keeps the id for the error reply', () => {
    const r = validateRequest({ id: 7, type: 'generate', job: { params: { prompt: 'p', steps: 1.5 }, output: '/a.png' } });
    assert.ok(isValidationError(r));
    assert.equal(r.id, 7);
    assert.match(r.error, /job\.params\.steps: steps must be a whole number from 1 to 200, got 1\.5/);
    const s = validateRequest({ id: 8, type: 'hello', protocol: 1, client: 'c', settings: { model: {}, stageEp: { unet: 'cpu' } } });
    assert.ok(isValidationError(s));
    assert.match(s.error, /settings\.stageEp: unknown key "unet"/);
    const t = validateRequest({ id: -3, type: 'nope' });
    assert.ok(isValidationError(t));
    assert.equal(t.id, null);
    assert.match(t.error, /unknown request type "nope"/);
    const u = validateServerMessage({ type: 'event', event: 'step', jobId: 'j', step: 'one', steps: 2 });
    assert.ok(isValidationError(u));
    assert.match(u.error, /^step: /);
  });

  it('refuses a shift outside 0.1–100 (5e-324 gave an all-black image reported done)', () => {
    const gen = (shift: unknown) => validateRequest({ id: 1, type: 'generate', job: { params: { prompt: 'p', shift }, output: '/o.png' } });
    for (const bad of [5e-324, 0.01, 0, -3, 1000]) {
      const r = gen(bad);
      assert.ok(isValidationError(r), String(bad));
      assert.match(r.error, /job\.params\.shift: shift must be "dynamic" or a number from 0\.1 to 100/);
    }
    for (const good of [0.1, 1, 3, 100, 'dynamic']) assert.ok(!isValidationError(gen(good)), String(good));
  });

  it('a generate request is checked against params.ts: what the pipeline cannot make is refused up front, with its message', () => {
    const gen = (params: Record<string, unknown>) => validateRequest({ id: 4, type: 'generate', job: { params: { prompt: 'p', ...params }, output: '/o.png' } });
    // Each was accepted here before (width 16–16384, steps ≤ 1000, prompt ≤ 100 000, T5 ≥ 1) and failed later in the pipeline.
    const refused: [Record<string, unknown>, string][] = [
      [{ width: 16 }, 'job.params.width: width 16 is out of range; FLUX.1 sizes go from 64 to 2048 pixels per side'],
      [{ height: 16384 }, 'job.params.height: height 16384 is out of range; FLUX.1 sizes go from 64 to 2048 pixels per side'],
      [{ width: 1000 }, 'job.params.width: width 1000 is not a multiple of 16; try 992 or 1008'],
      [{ steps: 1000 }, 'job.params.steps: steps must be a whole number from 1 to 200, got 1000'],
      [{ t5MaxLength: 1 }, 'job.params.t5MaxLength: T5 max length must be a whole number from 2 to 512, got 1'],
      [{ seed: -2 }, 'job.params.seed: seed must be -1 (draw one) or a whole number from 0 to 9007199254740991, got -2'],
      [{ prompt: 'x'.repeat(20_001) }, 'job.params.prompt: the prompt is 20001 characters; at most 20000 are read'],
    ];
    for (const [params, error] of refused) assert.deepEqual(gen(params), { error, id: 4 });
    assert.deepEqual(validateRequest({ id: 5, type: 'cancel' }), { error: 'jobId: required but missing', id: 5 });
    assert.deepEqual(validateRequest({ id: 6, type: 'configure', settings: { model: [] } }), { error: 'settings.model: expected an object, got an array', id: 6 });
    const done = VALID_SERVER_MESSAGES.find((m) => m.type === 'event' && m.event === 'done')!;
    const bad = validateServerMessage({ ...done, metadata: { ...METADATA, width: 16 } });
    assert.ok(isValidationError(bad));
    assert.equal(bad.error, 'metadata.width: width 16 is out of range; FLUX.1 sizes go from 64 to 2048 pixels per side');
  });

  it('sizes are checked before contents: an over-long array or record is refused without walking it', () => {
    const load = validateRequest({ id: 1, type: 'load', components: ['dit', 'vae', 'clip', 't5', 'dit'] });
    assert.ok(isValidationError(load));
    assert.equal(load.error, 'components: expected an array of at most 4 items, got an array');
    const many = Array.from({ length: 100_001 }, () => ({ jobId: 1 }));
    const status = validateServerMessage({ id: 2, type: 'status', status: { ...(VALID_SERVER_MESSAGES[4] as { status: object }).status, jobs: many } });
    assert.ok(isValidationError(status));
    assert.equal(status.error, 'status.jobs: expected an array of at most 100000 items, got an array');
  });

  it('fuzz: random values and mutated valid messages never make validation throw', () => {
    const r = rng(3);
    let rejected = 0;
    for (let i = 0; i < 400; i++) {
      const inputs = [randomValue(r), mutate(VALID_REQUESTS[i % VALID_REQUESTS.length], r), mutate(VALID_SERVER_MESSAGES[i % VALID_SERVER_MESSAGES.length], r)];
      for (const v of inputs) {
        for (const validate of [validateRequest, validateServerMessage]) {
          const out = validate(v);
          if (isValidationError(out)) {
            rejected++;
            assert.equal(typeof out.error, 'string');
          } else {
            // Whatever passes is well-formed: it survives its own validation unchanged.
            const json = JSON.parse(JSON.stringify(out)) as unknown;
            assert.deepEqual(validate(json), json);
          }
        }
      }
      const text = JSON.stringify(inputs[1]) ?? '';
      assert.doesNotThrow(() => parseRequest(text.slice(0, Math.floor(r() * text.length))));
    }
    assert.ok(rejected > 400, `only ${rejected} rejections: the fuzzer is too tame`);
  });
});

// ---------------------------------------------------------------------------------------------

describe('inference server (dist/server.js)', function () {
  this.timeout(120_000);
  let tmp: string;
  let settings: ServerSettings;

  before(function () {
    this.timeout(300_000);
    execFileSync(process.execPath, ['esbuild.config.mjs'], { cwd: ROOT, stdio: 'inherit' });
    assert.ok(fs.existsSync(SERVER), 'dist/server.js was not built');
    tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'majicflux-server-'));
    fs.mkdirSync(path.join(tmp, 'out'));
    settings = { model: { dir: GOLDEN_MODELS }, weights: 'fp32', memory: 'resident', ep: 'cpu', cacheDir: path.join(tmp, 'cache') };
  });

  after(() => tmp && fs.rmSync(tmp, { recursive: true, force: true }));

  const job = (name: string, params: Partial<JobRequest['params']> = {}, extra: Partial<JobRequest> = {}): JobRequest => ({
    params: { prompt: 'a lighthouse on a cliff at dawn', seed: 1, steps: 1, width: 64, height: 64, ...params },
    output: path.join(tmp, 'out', name),
    ...extra,
  });

  function newClient(opts: Partial<ServerClientOptions> = {}): { client: ServerClient; logger: TestLogger } {
    const logger = new TestLogger();
    return { client: new ServerClient({ serverPath: SERVER, settings, logger, clientName: 'server.test', ...opts }), logger };
  }

  async function pixels(file: string): Promise<Buffer> {
    return sharp(file).raw().toBuffer();
  }

  describe('one server for a series of jobs', () => {
    let client: ServerClient;
    let logger: TestLogger;
    before(() => ({ client, logger } = newClient()));
    after(() => client.dispose());
    afterEach(function () {
      if (this.currentTest?.state === 'failed') process.stderr.write(logger.lines.slice(-40).join('\n') + '\n');
    });

    it('generates end to end: started, stage and step events with previews, done with a PNG that carries its parameters', async () => {
      const events: JobEvent[] = [];
      const handle = await client.generate(job('e2e.png', { seed: 7, steps: 3 }, { previewEvery: 1 }), (e) => events.push(e));
      assert.equal(handle.position, 0);
      const done = await handle.done;
      const names = events.map((e) => (e.event === 'stage' ? `${e.stage}:${e.state}` : e.event === 'step' ? `step ${e.step}/${e.steps}` : e.event === 'loading' ? `${e.component} ${e.phase}` : e.event));
      // Each part is loaded inside the stage that first needs it, and says so (issue 15 item 2).
      assert.deepEqual(names, [
        'started',
        'text:start', 'clip load', 'clip loaded', 't5 load', 't5 loaded', 'text:end',
        'denoise:start', 'dit load', 'dit loaded', 'step 1/3', 'step 2/3', 'step 3/3', 'denoise:end',
        'decode:start', 'vae load', 'vae loaded', 'decode:end',
        'save:start', 'save:end', 'done',
      ]);
      for (const e of events) if (e.event === 'step') {
        assert.ok(e.preview, 'preview with every step');
        const png = Buffer.from(e.preview.pngBase64, 'base64');
        const meta = await sharp(png).metadata();
        assert.deepEqual([meta.format, meta.width, meta.height], ['png', e.preview.width, e.preview.height]);
      }
      assert.equal(done.file, path.join(tmp, 'out', 'e2e.png'));
      assert.deepEqual(done.stages.map((s) => s.stage), ['text', 'denoise', 'decode', 'save']);
      for (const s of done.stages) assert.ok(s.peakRss > 0 && s.seconds >= 0);
      const params = await readPngParameters(done.file);
      assert.equal(params.params?.prompt, 'a lighthouse on a cliff at dawn');
      assert.equal(params.params?.seed, 7);
      assert.equal(params.params?.steps, 3);
      assert.match(params.parameters ?? '', /Seed: 7, Size: 64x64/);
      assert.deepEqual(done.metadata, { ...done.metadata, seed: 7, width: 64, height: 64, steps: 3 });
    });

    it('skips text encoding for a prompt it has already encoded (one pipeline lives across jobs)', async () => {
      const events: JobEvent[] = [];
      const done = await (await client.generate(job('cached.png', { seed: 8 }), (e) => events.push(e))).done;
      assert.deepEqual(done.stages.map((s) => s.stage), ['denoise', 'decode', 'save']);
      assert.deepEqual(events.filter((e) => e.event === 'loading'), [], 'resident: nothing is loaded again');
      assert.ok(done.notes.includes('prompt embeddings from cache'), done.notes.join('; '));
      assert.ok(!events.some((e) => e.event === 'stage' && e.stage === 'text'));
    });

    it('a job listener that throws is logged, and the job still finishes', async () => {
      const handle = await client.generate(job('throwing-listener.png'), () => {
        throw new Error('listener broke');
      });
      const done = await handle.done;
      assert.ok(fs.existsSync(done.file), done.file);
      assert.ok(logger.lines.includes('error job listener: listener broke'), logger.lines.slice(-10).join('\n'));
    });

    it('never overwrites: a taken output name gets a -1 suffix', async () => {
      const first = await (await client.generate(job('same.png'))).done;
      const second = await (await client.generate(job('same.png'))).done;
      assert.equal(first.file, path.join(tmp, 'out', 'same.png'));
      assert.equal(second.file, path.join(tmp, 'out', 'same-1.png'));
      assert.deepEqual(await pixels(first.file), await pixels(second.file), 'same seed, same image');
    });

    it('cancels a running job at the next step boundary; the server stays usable', async () => {
      const events: JobEvent[] = [];
      let cancel: Promise<string> | undefined;
      const handle = await client.generate(job('cancelled.png', { steps: 200 }), (e) => {
        events.push(e);
        if (e.event === 'step' && e.step === 2) cancel = client.cancel(handle.jobId);
      });
      await assert.rejects(handle.done, CancelledError);
      assert.equal(await cancel, 'cancelling');
      const steps = events.filter((e) => e.event === 'step').length;
      assert.ok(steps >= 2 && steps < 200, `${steps} steps ran`);
      assert.equal(events.at(-1)?.event, 'cancelled');
      assert.ok(!fs.existsSync(path.join(tmp, 'out', 'cancelled.png')));
      const status = await client.status();
      assert.equal(status.state, 'idle');
      assert.deepEqual(status.jobs.find((j) => j.jobId === handle.jobId)?.state, 'cancelled');
      assert.equal(await client.cancel(handle.jobId), 'gone');
    });

    it('runs 20 queued jobs in order; two cancelled while queued report cancelled and write nothing', async () => {
      const finished: string[] = [];
      // The first job takes a while, so the others are surely still queued when two are cancelled.
      const handles = await Promise.all(
        Array.from({ length: 20 }, (_, i) => client.generate(job(`q${i}.png`, { seed: 100 + i, steps: i === 0 ? 60 : 1 }), (e) => e.event === 'done' && finished.push(e.jobId))),
      );
      assert.deepEqual(handles.map((h) => h.position), handles.map((_, i) => i), 'positions count the jobs ahead');
      const status = await client.status();
      assert.ok(status.jobs.filter((j) => j.state === 'queued').length >= 15, 'still queued');
      assert.equal(await client.cancel(handles[5].jobId), 'cancelled');
      assert.equal(await client.cancel(handles[12].jobId), 'cancelled');
      const results = await Promise.allSettled(handles.map((h) => h.done));
      for (const [i, r] of results.entries()) {
        const file = path.join(tmp, 'out', `q${i}.png`);
        if (i === 5 || i === 12) {
          assert.equal(r.status, 'rejected');
          assert.ok((r as PromiseRejectedResult).reason instanceof CancelledError);
          assert.ok(!fs.existsSync(file), `no PNG for cancelled job ${i}`);
        } else {
          assert.equal(r.status, 'fulfilled', `job ${i}: ${(r as PromiseRejectedResult).reason}`);
          assert.equal((r as PromiseFulfilledResult<{ file: string }>).value.file, file);
          assert.ok(fs.existsSync(file));
        }
      }
      assert.deepEqual(finished, handles.filter((_, i) => i !== 5 && i !== 12).map((h) => h.jobId), 'completed in submission order');
    });

    it('sequential and resident memory modes give pixel-identical images', async () => {
      await client.configure({ ...settings, memory: 'sequential' });
      const seq = await (await client.generate(job('sequential.png', { seed: 42, steps: 2 }))).done;
      const afterSeq = await client.status();
      await client.configure({ ...settings, memory: 'resident' });
      const res = await (await client.generate(job('resident.png', { seed: 42, steps: 2 }))).done;
      const afterRes = await client.status();
      assert.equal(afterSeq.memory, 'sequential');
      assert.deepEqual(afterSeq.loaded, [], 'sequential mode keeps nothing loaded between jobs');
      assert.equal(afterRes.memory, 'resident');
      assert.deepEqual([...afterRes.loaded].sort(), ['clip', 'dit', 't5', 'vae']);
      assert.ok(seq.stages.some((s) => s.stage === 'text') && res.stages.some((s) => s.stage === 'text'), `a new pipeline encodes the prompt afresh: ${JSON.stringify([seq, res])}`);
      assert.deepEqual(await pixels(seq.file), await pixels(res.file));
    });

    it('reports a pipeline error as failed with a user-facing message, and goes on', async () => {
      const latents = path.join(tmp, 'no-latents.safetensors');
      fs.writeFileSync(latents, 'not a safetensors file');
      const handle = await client.generate(job('bad.png', { latentsFile: latents }));
      const err = await handle.done.then(() => undefined, (e: unknown) => e);
      assert.ok(err instanceof JobFailedError, String(err));
      assert.match(err.message, /no-latents\.safetensors/);
      await (await client.generate(job('after-bad.png'))).done;
    });

    it('rejects an invalid job before queueing it', async () => {
      await assert.rejects(client.generate(job('x.png', { steps: 0 })), (e: unknown) => e instanceof ServerError && e.code === 'bad-request' && /steps/.test(e.message));
      // Sizes the pipeline can't make were queued before (the protocol took 16–16384), then failed.
      const refused = (params: Partial<JobRequest['params']>, message: RegExp) =>
        assert.rejects(client.generate(job('x.png', params)), (e: unknown) => e instanceof ServerError && e.code === 'bad-request' && message.test(e.message));
      await refused({ width: 72 }, /^job\.params\.width: width 72 is not a multiple of 16; try 64 or 80$/);
      await refused({ height: 4096 }, /^job\.params\.height: height 4096 is out of range; FLUX\.1 sizes go from 64 to 2048 pixels per side$/);
      await refused({ steps: 1000 }, /^job\.params\.steps: steps must be a whole number from 1 to 200, got 1000$/);
      await refused({ prompt: 'x'.repeat(20_001) }, /^job\.params\.prompt: the prompt is 20001 characters; at most 20000 are read$/);
      await assert.rejects(client.generate({ ...job('x.png'), output: 'relative.png' }), (e: unknown) => e instanceof ServerError && e.code === 'bad-output');
    });
  });

  it('writes the demo model itself, on first use, where model.demo says (the extension host writes nothing)', async () => {
    const root = path.join(tmp, 'demo-storage');
    const { client } = newClient({ settings: { model: { demo: root }, weights: 'fp32', memory: 'sequential', ep: 'cpu', cacheDir: path.join(tmp, 'cache') } });
    try {
      await client.start();
      assert.ok(!fs.existsSync(root), 'nothing is written before a job needs the model');
      const done = await (await client.generate(job('demo.png'))).done;
      assert.equal(done.metadata.model, 'demo (random weights)');
      assert.ok(fs.existsSync(path.join(root, 'demo-model-v1', '.complete')), 'the demo weights were written under model.demo');
      assert.ok(fs.existsSync(done.file));
    } finally {
      await client.dispose();
    }
  });

  it('a model folder that does not exist fails the job with code "model", so the editor can offer the model settings (issue 15 item 4)', async () => {
    const missing = path.join(tmp, 'no-such-model');
    const { client } = newClient({ settings: { model: { dir: missing }, weights: 'fp32', memory: 'sequential', ep: 'cpu', cacheDir: path.join(tmp, 'cache') } });
    try {
      const events: JobEvent[] = [];
      const handle = await client.generate(job('none.png'), (e) => events.push(e));
      await assert.rejects(handle.done);
      const failed = events.find((e) => e.event === 'failed');
      assert.ok(failed && failed.event === 'failed', JSON.stringify(events));
      assert.equal(failed.code, 'model');
      assert.equal(failed.message, `Model folder not found: ${missing}`);
    } finally {
      await client.dispose();
    }
  });

  it('answers malformed input with error replies and keeps working (raw NDJSON on stdio)', async () => {
    const child = spawn(process.execPath, [SERVER], { stdio: ['pipe', 'pipe', 'pipe'] });
    const replies: ServerMessage[] = [];
    const waiters: (() => void)[] = [];
    const splitter = new LineSplitter((line) => {
      const m = validateServerMessage(JSON.parse(line));
      assert.ok(!isValidationError(m), `server sent an invalid message: ${line}`);
      if (m.type !== 'event') replies.push(m);
      waiters.splice(0).forEach((w) => w());
    });
    child.stdout.on('data', (c: Buffer) => splitter.push(c));
    let stderr = '';
    child.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
    const exited = new Promise<number | null>((r) => child.on('close', (code) => r(code)));
    const send = (line: string) => child.stdin.write(line + '\n');
    const reply = async (count: number) => {
      while (replies.length < count) await new Promise<void>((r) => waiters.push(r));
      return replies[count - 1];
    };

    send('this is not json');
    assert.deepEqual(pick(await reply(1)), { id: null, type: 'error', code: 'bad-json' });
    send('{"id":1,"type":"ping"}');
    assert.deepEqual(pick(await reply(2)), { id: 1, type: 'error', code: 'handshake-required' });
    send(JSON.stringify({ id: 2, type: 'hello', protocol: 1, client: 'raw', settings, heartbeatMs: 0 }));
    assert.equal((await reply(3)).type, 'hello');
    send('{"id":3,"type":"generate","job":{"params":{"prompt":42},"output":"/tmp/x.png"}}');
    const bad = await reply(4);
    assert.deepEqual(pick(bad), { id: 3, type: 'error', code: 'bad-request' });
    assert.match((bad as { message: string }).message, /job\.params\.prompt/);
    send('[1,2,3]');
    assert.deepEqual(pick(await reply(5)), { id: null, type: 'error', code: 'bad-request' });
    send('{"id":4,"type":"launch-missiles"}');
    assert.deepEqual(pick(await reply(6)), { id: 4, type: 'error', code: 'bad-request' });
    send(JSON.stringify({ id: 5, type: 'hello', protocol: 999, client: 'raw' }));
    assert.deepEqual(pick(await reply(7)), { id: 5, type: 'error', code: 'protocol-mismatch' });
    send('{"id":6,"type":"cancel","jobId":"job-404"}');
    assert.deepEqual(pick(await reply(8)), { id: 6, type: 'error', code: 'unknown-job' });
    child.stdin.write('{"id":7,"type":"ping","pad":"' + 'x'.repeat(65 * 1024 * 1024) + '"}\n');
    assert.deepEqual(pick(await reply(9)), { id: null, type: 'error', code: 'line-too-long' });
    send('{"id":8,"type":"ping"}');
    assert.deepEqual(pick(await reply(10)), { id: 8, type: 'pong' });
    send('{"id":9,"type":"status"}');
    assert.equal((await reply(11)).type, 'status');
    send('{"id":10,"type":"shutdown"}');
    assert.deepEqual(pick(await reply(12)), { id: 10, type: 'ok' });
    assert.equal(await exited, 0, stderr);
  });

  it('reports a server killed mid-step as failed, then restarts it for the next job', async () => {
    const { client, logger } = newClient({ backoff: { initialMs: 200 } });
    const stops: { unexpected: boolean }[] = [];
    try {
      const firstPid = (await client.start()).pid;
      const events: JobEvent[] = [];
      const running = await client.generate(job('killed.png', { steps: 200 }), (e) => {
        events.push(e);
        if (e.event === 'step' && e.step === 2) process.kill(firstPid, 'SIGKILL');
      });
      // Named as its caller knows it (the extension's job-N), so the message matches the caller's log (issue 15 item 10).
      const queued = await client.generate(job('killed-queued.png'), undefined, 'job-16');
      const err = await running.done.then(() => undefined, (e: unknown) => e);
      assert.ok(err instanceof JobFailedError, String(err));
      assert.equal(err.message, `The MajicFLUX server stopped unexpectedly (signal SIGKILL) while running job ${running.jobId}; it will restart on the next request.`);
      assert.equal(events.at(-1)?.event, 'failed');
      await assert.rejects(queued.done, /stopped unexpectedly \(signal SIGKILL\) while job job-16 was waiting in the queue/);
      // The queued one is marked as never started, so that its owner may submit it again (extension/jobs.ts); the running one is not.
      assert.equal(((await queued.done.catch((e: unknown) => e)) as JobFailedError).notStarted, true);
      assert.equal(err.notStarted, false);
      assert.ok(!fs.existsSync(path.join(tmp, 'out', 'killed.png')));
      assert.ok(!fs.readdirSync(path.join(tmp, 'out')).some((f) => f.startsWith('.killed')), 'no temp file left');

      const t0 = Date.now();
      const next = await (await client.generate(job('after-kill.png'))).done;
      assert.ok(fs.existsSync(next.file));
      assert.ok(Date.now() - t0 >= 150, 'restarted after the back-off');
      assert.notEqual(client.pid, firstPid);
    } catch (err) {
      process.stderr.write(logger.lines.slice(-40).join('\n') + '\n');
      throw err;
    } finally {
      await client.dispose();
    }
    void stops;
  });

  it('a server killed while the running job is still loading (no step yet): the queued job fails too, with a failed event, not marked for submitting again (such a crash would come again)', async () => {
    const { client, logger } = newClient({ backoff: { initialMs: 100 } });
    try {
      const pid = (await client.start()).pid;
      // Killed once it has started and the queued job is in, before its first step.
      let started = false;
      let armed = false;
      let stepped = false;
      const kill = () => {
        if (started && armed) process.kill(pid, 'SIGKILL');
      };
      const running = await client.generate(job('killed-loading.png', { steps: 200 }), (e) => {
        if (e.event === 'step') stepped = true;
        if (e.event === 'started') {
          started = true;
          kill();
        }
      });
      const queuedEvents: JobEvent[] = [];
      const queued = await client.generate(job('killed-loading-queued.png'), (e) => queuedEvents.push(e), 'job-17');
      armed = true;
      kill();
      const err = (await running.done.catch((e: unknown) => e)) as JobFailedError;
      assert.ok(err instanceof JobFailedError, String(err));
      const qerr = (await queued.done.catch((e: unknown) => e)) as JobFailedError;
      assert.match(qerr.message, /while job job-17 was waiting in the queue/);
      assert.equal(stepped, false, 'killed before its first step');
      assert.equal(qerr.notStarted, false);
      assert.equal(queuedEvents.at(-1)?.event, 'failed');
    } catch (err) {
      process.stderr.write(logger.lines.slice(-40).join('\n') + '\n');
      throw err;
    } finally {
      await client.dispose();
    }
  });

  it('a server killed while the running job loads the VAE after its steps: the queued job is not marked for submitting again either', async () => {
    const { client } = newClient({ backoff: { initialMs: 100 } });
    try {
      const pid = (await client.start()).pid;
      let armed = false;
      let vaeLoading = false;
      const running = await client.generate(job('killed-vae.png', { steps: 2 }), (e) => {
        if (e.event === 'loading' && e.component === 'vae' && e.phase !== 'loaded') vaeLoading = true;
        if (vaeLoading && armed) process.kill(pid, 'SIGKILL');
      });
      const queued = await client.generate(job('killed-vae-queued.png'), undefined, 'job-18');
      armed = true;
      if (vaeLoading) process.kill(pid, 'SIGKILL');
      await running.done.catch(() => undefined);
      const qerr = (await queued.done.catch((e: unknown) => e)) as JobFailedError;
      if (!vaeLoading) return assert.fail('no VAE loading event came: the job loaded its VAE before the steps');
      assert.equal(qerr.notStarted, false, qerr.message);
    } finally {
      await client.dispose();
    }
  });

  it('a generate request the server stopped before answering (no job running) is marked notStarted: nothing was queued, it can be submitted again', async () => {
    const { client } = newClient({ backoff: { initialMs: 100 } });
    try {
      const pid = (await client.start()).pid;
      const sent = client.generate(job('in-flight.png'));
      process.kill(pid, 'SIGKILL');
      const err = (await Promise.resolve(sent).then((h) => h.done).catch((e: unknown) => e)) as { notStarted?: boolean; message: string };
      assert.equal(err.notStarted, true, err.message);
      assert.ok(!fs.existsSync(path.join(tmp, 'out', 'in-flight.png')));
    } finally {
      await client.dispose();
    }
  });

  (process.platform === 'win32' ? it.skip : it)('kills a hung server (no heartbeat) and reports it', async () => {
    // The timeout must outlast the longest stretch a cold start blocks the server's event loop
    // (reading tokenizers and weights: about a second here, more on a loaded 2-core CI machine).
    const { client } = newClient({ heartbeatMs: 100, heartbeatTimeoutMs: 5000, backoff: { initialMs: 100 } });
    try {
      const pid = (await client.start()).pid;
      const handle = await client.generate(job('hung.png', { steps: 200 }), (e) => {
        if (e.event === 'step' && e.step === 1) process.kill(pid, 'SIGSTOP');
      });
      await assert.rejects(handle.done, /The MajicFLUX server stopped responding \(nothing heard for \d+ s\) and was stopped while running job job-1; it will restart on the next request\./);
      await (await client.generate(job('after-hang.png'))).done;
    } finally {
      await client.dispose();
    }
  });

  it('dispose cancels what is queued and stops the server with exit code 0', async () => {
    const { client } = newClient();
    const a = await client.generate(job('d1.png', { steps: 200 }));
    const b = await client.generate(job('d2.png'));
    const pid = client.pid!;
    await client.dispose();
    await assert.rejects(a.done, CancelledError);
    await assert.rejects(b.done, CancelledError);
    assert.throws(() => process.kill(pid, 0), /ESRCH/);
    await assert.rejects(client.status(), (e: unknown) => e instanceof ServerError && e.code === 'disposed');
  });

  describe('serve mode (TCP with a token)', () => {
    let serve: ChildProcess;
    let port: number;
    const token = 'correct-horse-battery';
    let outDir: string;
    let serveLog = '';

    before(async function () {
      this.timeout(60_000);
      outDir = path.join(tmp, 'remote-out');
      serve = spawn(process.execPath, [SERVER, 'serve', '--port', '0', '--token', token, '--output-dir', outDir, '--model', GOLDEN_MODELS, '--weights', 'fp32', '--ep', 'cpu', '--cache', path.join(tmp, 'cache')], { stdio: ['ignore', 'pipe', 'pipe'] });
      serve.stderr!.on('data', (c: Buffer) => { serveLog += c.toString(); });
      port = await new Promise<number>((resolve, reject) => {
        let out = '';
        serve.stdout!.on('data', (c: Buffer) => {
          out += c.toString();
          const m = /listening on 127\.0\.0\.1:(\d+)/.exec(out);
          if (m) resolve(Number(m[1]));
        });
        serve.on('exit', (code) => reject(new Error(`serve exited with ${code}: ${out}`)));
      });
    });

    after(async () => {
      const exited = new Promise<number | null>((r) => serve.on('close', (code) => r(code)));
      serve.kill('SIGINT');
      assert.equal(await exited, 0);
    });

    it('rejects a wrong token', async () => {
      const { client } = newClient({ remote: { host: '127.0.0.1', port, token: 'wrong-token' } });
      await assert.rejects(client.start(), (e: unknown) => e instanceof ServerError && e.code === 'unauthorized' && /rejected this client/.test(e.message));
      await client.dispose();
    });

    it('logs nothing an unauthenticated client sent: a forged log line in its name stays out of the log', async () => {
      const forged = 'evil\n[2099-01-01T00:00:00.000Z] info: FAKE LOG LINE';
      const reply = await new Promise<string>((resolve, reject) => {
        const sock = net.connect(port, '127.0.0.1', () => sock.write(JSON.stringify({ id: 1, type: 'hello', protocol: 1, client: forged, token: 'nope' }) + '\n'));
        let got = '';
        sock.on('data', (c) => { got += c.toString(); });
        sock.on('close', () => resolve(got));
        sock.on('error', reject);
      });
      assert.match(reply, /"unauthorized"/);
      // The same address again: the answer waits for the back-off (≥ 0.5 s for a second failure).
      const t0 = Date.now();
      await new Promise<void>((resolve, reject) => {
        const sock = net.connect(port, '127.0.0.1', () => sock.write(JSON.stringify({ id: 1, type: 'hello', protocol: 1, client: 'x', token: 'nope' }) + '\n'));
        sock.resume(); // read to the end, or 'close' never comes
        sock.on('close', () => resolve());
        sock.on('error', reject);
      });
      assert.ok(Date.now() - t0 >= 450, `answered after ${Date.now() - t0} ms`);
      assert.match(serveLog, /rejected a client: wrong or missing token \(\d+ so far\)/);
      assert.ok(!serveLog.includes('FAKE LOG LINE'), serveLog);
      assert.ok(!serveLog.split('\n').some((l) => l.startsWith('[2099')), serveLog);
    });

    it('a connection turned away for its token is heard no more: a right token after a wrong one on it gets no hello', async () => {
      const reply = await new Promise<string>((resolve, reject) => {
        const hello = (id: number, tok: string) => JSON.stringify({ id, type: 'hello', protocol: 1, client: 'guesser', token: tok }) + '\n';
        const sock = net.connect(port, '127.0.0.1', () => sock.write(hello(1, 'guess-one') + hello(2, token)));
        let got = '';
        sock.on('data', (c) => { got += c.toString(); });
        sock.on('close', () => resolve(got));
        sock.on('error', reject);
      });
      const lines = reply.trim().split('\n').map((l) => JSON.parse(l) as { id: number; type: string; code?: string });
      assert.deepEqual(lines.map((l) => [l.id, l.code]), [[1, 'unauthorized']], reply);
    });

    it('with the right token: generates into its output folder, returns the bytes, refuses paths outside it, one client at a time', async () => {
      // The client's model path is ignored: serve --model decides.
      const { client } = newClient({ remote: { host: '127.0.0.1', port, token }, settings: { ...settings, model: { dir: '/nowhere' } } });
      try {
        const done = await (await client.generate({ params: { prompt: 'remote', seed: 3, steps: 1, width: 64, height: 64 }, output: 'sub/r.png', returnImage: true })).done;
        assert.equal(done.file, path.join(outDir, 'sub', 'r.png'));
        assert.deepEqual(Buffer.from(done.pngBase64!, 'base64'), fs.readFileSync(done.file));
        await assert.rejects(client.generate({ params: { prompt: 'x' }, output: '../escape.png' }), (e: unknown) => e instanceof ServerError && e.code === 'bad-output');

        const { client: second } = newClient({ remote: { host: '127.0.0.1', port, token } });
        await assert.rejects(second.start(), (e: unknown) => e instanceof ServerError && e.code === 'busy');
        await second.dispose();
      } finally {
        await client.dispose();
      }
      // The first client left (shutdown closes only its connection): the next one gets in.
      const { client: third } = newClient({ remote: { host: '127.0.0.1', port, token } });
      assert.ok((await third.ping()) >= 0);
      await third.dispose();
    });
  });
});

function pick(m: ServerMessage): Record<string, unknown> {
  const { id, type } = m as { id?: unknown; type: string };
  return m.type === 'error' ? { id, type, code: m.code } : { id, type };
}

// ---------------------------------------------------------------------------------------------

describe('models through the server: download from a hub, find, check, generate', function () {
  this.timeout(120_000);
  const FLUX_DEV_PARTS = ['ae.safetensors', 'text_encoder/config.json', 'text_encoder/model.safetensors', 'text_encoder_2/config.json', 'text_encoder_2/model.safetensors.index.json',
    'text_encoder_2/model-00001-of-00002.safetensors', 'text_encoder_2/model-00002-of-00002.safetensors', 'tokenizer/vocab.json', 'tokenizer/merges.txt',
    'tokenizer/special_tokens_map.json', 'tokenizer/tokenizer_config.json', 'tokenizer_2/tokenizer.json', 'tokenizer_2/special_tokens_map.json', 'tokenizer_2/tokenizer_config.json'];
  let hub: FakeHub;
  let tmp: string;
  let client: ServerClient;
  const logger = new TestLogger();

  before(async () => {
    assert.ok(fs.existsSync(SERVER), 'dist/server.js was not built');
    tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'majicflux-server-models-'));
    // majicflus on ModelScope (the golden tiny DiT under the real file name), FLUX.1-dev's other
    // parts on the ModelScope mirror, and the gated Hugging Face original.
    const dit = fs.readFileSync(path.join(GOLDEN_MODELS, 'flux-tiny.safetensors'));
    hub = await FakeHub.start([
      { hub: 'modelscope', repo: 'MAILAND/majicflus_v1', files: [{ path: 'majicflus_v134.safetensors', data: dit }] },
      { hub: 'modelscope', repo: 'black-forest-labs/FLUX.1-dev', files: [...FLUX_DEV_PARTS, { path: 'flux1-dev.safetensors', data: dit }, 'scheduler/scheduler_config.json'] },
      { hub: 'huggingface', repo: 'black-forest-labs/FLUX.1-dev', gated: true, files: [...FLUX_DEV_PARTS, { path: 'flux1-dev.safetensors', data: dit }, 'scheduler/scheduler_config.json'] },
    ]);
    client = new ServerClient({
      serverPath: SERVER, logger, clientName: 'server.test models',
      settings: { model: { dir: GOLDEN_MODELS }, weights: 'fp32', memory: 'sequential', ep: 'cpu', cacheDir: path.join(tmp, 'cache') },
    });
  });

  after(async () => {
    await client?.dispose();
    await hub?.close();
    if (tmp) fs.rmSync(tmp, { recursive: true, force: true });
  });

  afterEach(function () {
    if (this.currentTest?.state === 'failed') process.stderr.write(logger.lines.slice(-40).join('\n') + '\n');
  });

  it('downloads majicflus v1 with FLUX.1-dev\'s other parts (verified, progress events), then generates with it', async () => {
    const dest = path.join(tmp, 'models');
    const events: string[] = [];
    let lastBytes = 0;
    const { downloadId, done } = await client.download({ model: 'majicflus-v1', hub: 'modelscope', dest, endpoints: { modelscope: hub.endpoint } }, (e) => {
      events.push(e.event);
      if (e.event === 'download-progress') lastBytes = e.progress.bytes;
    });
    assert.match(downloadId, /^download-\d+$/);
    const result = await done;
    const ditPath = path.join(dest, 'MAILAND', 'majicflus_v1', 'majicflus_v134.safetensors');
    const base = path.join(dest, 'black-forest-labs', 'FLUX.1-dev');
    assert.deepEqual(result.spec, { dir: base, transformer: ditPath, name: 'majicflus v1' });
    assert.equal(result.files.length, 1 + FLUX_DEV_PARTS.length, 'the DiT and FLUX.1-dev\'s parts: no flux1-dev.safetensors, no scheduler');
    assert.ok(!fs.existsSync(path.join(base, 'flux1-dev.safetensors')));
    for (const f of result.files) {
      const rel = path.relative(base, f.path);
      const fixture = f.path === ditPath ? path.join(GOLDEN_MODELS, 'flux-tiny.safetensors') : path.join(GOLDEN_MODELS, rel);
      assert.ok(fs.readFileSync(f.path).equals(fs.readFileSync(fixture)), `${rel} is byte-identical`);
    }
    assert.ok(events.includes('download-progress') && events.at(-1) === 'download-done', events.join(','));
    assert.equal(lastBytes, result.files.reduce((a, f) => a + f.bytes, 0));
    assert.deepEqual(fs.readdirSync(path.join(dest, 'MAILAND', 'majicflus_v1')), ['majicflus_v134.safetensors'], 'no .part or sidecar left');

    // The golden DiT is tiny, not FLUX.1-sized: its sidecar config (as the golden model has one) tells the loader its shape.
    fs.copyFileSync(path.join(GOLDEN_MODELS, 'flux-tiny.config.json'), ditPath.replace(/\.safetensors$/, '.config.json'));
    await client.configure({ model: result.spec, weights: 'fp32', memory: 'sequential', ep: 'cpu', cacheDir: path.join(tmp, 'cache') });
    const out = path.join(tmp, 'out.png');
    const image = await (await client.generate({ params: { prompt: 'a paper boat', seed: 5, steps: 1, width: 64, height: 64 }, output: out })).done;
    assert.equal(image.metadata.model, 'majicflus v1');
    assert.ok(fs.statSync(image.file).size > 0);
  });

  it('finds the downloaded model and checks it: every part present, memory per format and mode, advice', async () => {
    const dest = path.join(tmp, 'models');
    const { found, machine } = await client.models({ searchPaths: [dest] });
    assert.ok(machine.totalMemory > 0 && machine.cpus > 0);
    const majicflus = found.find((m) => m.id === 'majicflus-v1');
    assert.ok(majicflus, `found: ${found.map((m) => `${m.id} ${m.root}`).join('; ')}`);
    assert.ok(majicflus.complete, JSON.stringify(majicflus.parts));
    assert.equal(majicflus.spec.transformer, path.join(dest, 'MAILAND', 'majicflus_v1', 'majicflus_v134.safetensors'));

    const report = await client.check();
    assert.equal(report.model.name, 'majicflus v1');
    assert.deepEqual(report.model.parts.map((p) => `${p.role}:${p.status}`).sort(), ['clip', 'dit', 't5', 'tokenizer', 'tokenizer2', 'vae'].map((r) => `${r}:present`).sort());
    assert.ok(report.estimates.some((e) => e.weights === 'fp8' && e.mode === 'sequential' && e.width === 1024 && e.fitsRam));
    assert.ok(report.advice.length > 0 && /fits|does not fit/.test(report.advice.join(' ')));
  });

  it('cancels a download mid-transfer, keeping the partial file; a second download resumes it', async () => {
    const dest = path.join(tmp, 'models-cancel');
    hub.bytesPerSecond = 200_000;
    try {
      let cancelled = false;
      const { downloadId, done } = await client.download({ model: 'flux1-dev', hub: 'modelscope', dest, parts: ['vae'], endpoints: { modelscope: hub.endpoint } }, (e) => {
        if (e.event === 'download-progress' && e.progress.bytes > 100_000 && !cancelled) {
          cancelled = true;
          void client.cancel(downloadId);
        }
      });
      await assert.rejects(done, (e: unknown) => e instanceof DownloadFailedError && e.code === 'cancelled');
      const part = path.join(dest, 'black-forest-labs', 'FLUX.1-dev', 'ae.safetensors.part');
      const kept = fs.statSync(part).size;
      assert.ok(kept > 0, 'the partial file is kept');
      hub.bytesPerSecond = 0;
      hub.reset();
      const result = await (await client.download({ model: 'flux1-dev', hub: 'modelscope', dest, parts: ['vae'], endpoints: { modelscope: hub.endpoint } })).done;
      assert.equal(result.files[0].resumedFrom, kept);
      assert.ok(hub.contentRequests().some((r) => r.range === `bytes=${kept}-`), 'resumed with a range request');
      assert.ok(fs.readFileSync(result.files[0].path).equals(fs.readFileSync(path.join(GOLDEN_MODELS, 'ae.safetensors'))));
    } finally {
      hub.bytesPerSecond = 0;
    }
  });

  it('refuses a download it cannot plan (unknown model, hub not offered) before starting it', async () => {
    const dest = path.join(tmp, 'models-refused');
    await assert.rejects(client.download({ model: 'sdxl', dest }), (e: unknown) => e instanceof ServerError && e.code === 'failed' && /sdxl/.test(e.message));
    await assert.rejects(client.download({ model: 'majicflus-v1', hub: 'huggingface', dest }), (e: unknown) => e instanceof ServerError && e.code === 'failed' && /Hugging Face|huggingface/i.test(e.message));
    assert.ok(!fs.existsSync(dest));
  });

  it('a gated Hugging Face model without a token fails with auth-required, the licence link and nothing downloaded', async () => {
    const dest = path.join(tmp, 'models-gated');
    const { done } = await client.download({ model: 'flux1-dev', hub: 'huggingface', dest, endpoints: { huggingface: hub.endpoint } });
    await assert.rejects(done, (e: unknown) => e instanceof DownloadFailedError && e.code === 'auth-required' && e.message.includes('https://huggingface.co/black-forest-labs/FLUX.1-dev') && /token/i.test(e.message));
    const left = fs.existsSync(dest) ? fs.readdirSync(dest, { recursive: true }).filter((f) => String(f).endsWith('.safetensors')) : [];
    assert.deepEqual(left, []);
    const withToken = await (await client.download({ model: 'flux1-dev', hub: 'huggingface', dest, token: TOKEN_GOOD, parts: ['clip'], endpoints: { huggingface: hub.endpoint } })).done;
    assert.equal(withToken.files.length, 2);
    assert.ok(!logger.lines.some((l) => l.includes(TOKEN_GOOD)), 'the token is never logged');
  });
});

describe('server log lines (server.oneLine)', () => {
  it('escapes line breaks and other control characters from the network; keeps tabs and text', () => {
    assert.equal(oneLine('a\nb\r\u2028c\u0000'), 'a\\u000ab\\u000d\\u2028c\\u0000');
    assert.equal(oneLine('tab\there, 中文'), 'tab\there, 中文');
  });
});

describe('wrong tokens are answered ever more slowly (tokenCheck.BackOff)', () => {
  it('doubles from 0.25 s to at most 8 s per address, forgets after a right token or 10 quiet minutes, remembers at most 1,000 addresses', () => {
    let t = 0;
    const b = new BackOff(250, 8_000, 600_000, 3, () => t);
    assert.deepEqual([1, 2, 3, 4, 5, 6, 7].map(() => b.fail('10.0.0.1')), [250, 500, 1000, 2000, 4000, 8000, 8000]);
    assert.equal(b.fail('10.0.0.2'), 250, 'another address starts afresh');
    b.forgive('10.0.0.1');
    assert.equal(b.fail('10.0.0.1'), 250, 'a right token clears the address');
    b.fail('10.0.0.1');
    t += 600_001;
    assert.equal(b.fail('10.0.0.1'), 250, 'forgotten after 10 quiet minutes');
    b.fail('a');
    b.fail('b');
    b.fail('c');
    assert.equal(b.fail('10.0.0.2'), 250, 'the oldest address was dropped to keep the table bounded');
  });
});
