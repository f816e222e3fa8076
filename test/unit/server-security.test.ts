// The server against hostile input (issue 16): what an authenticated TCP client may name, jobs
// stuck in I/O, cancels that race the save, and a protocol-line fuzzer. Runs the real bundle
// dist/server.js with the golden tiny model, over TCP and stdio; no mocks.

import * as assert from 'node:assert/strict';
import { ChildProcess, execFileSync, spawn, spawnSync } from 'node:child_process';
import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import type { Readable, Writable } from 'node:stream';
import { LineSplitter } from '../../src/shared/ndjson';
import { isValidationError, Request, ServerMessage, ServerSettings, validateServerMessage } from '../../src/shared/protocol';
import { ServerClient } from '../../src/extension/serverClient';
import { JobFailedError } from '../../src/extension/serverErrors';
import { mutate, randomValue, rng } from '../helpers/fuzz';
import { GOLDEN_MODELS } from '../helpers/golden';
import { writeSafetensors } from '../helpers/writeSafetensors';
import { MAX_TCP_CONNECTIONS } from '../../src/inference/server/transports';

const ROOT = path.resolve(__dirname, '..', '..');
const SERVER = path.join(ROOT, 'dist', 'server.js');
const posix = process.platform === 'win32' ? it.skip : it;
type Msg = ServerMessage & { id?: number | null; code?: string; message?: string; event?: string; jobId?: string; state?: string; stage?: string };

/** A raw NDJSON peer: every message the server sent, and waits on them. */
class Peer {
  readonly messages: Msg[] = [];
  readonly invalid: string[] = [];
  private waiters: (() => void)[] = [];
  private nextId = 1000;

  constructor(input: Readable, private readonly output: Writable) {
    const splitter = new LineSplitter((line) => {
      const m = validateServerMessage(JSON.parse(line));
      if (isValidationError(m)) this.invalid.push(line);
      else this.messages.push(m as Msg);
      this.waiters.splice(0).forEach((w) => w());
    });
    input.on('data', (c: Buffer) => splitter.push(c));
  }

  /** The TCP socket of a peer made by tcp(). */
  socket!: net.Socket;

  static async tcp(port: number): Promise<Peer> {
    const sock = net.connect(port, '127.0.0.1');
    await new Promise((resolve, reject) => sock.once('connect', resolve).once('error', reject));
    const p = new Peer(sock, sock);
    p.socket = sock;
    return p;
  }

  write(line: string | Buffer): void {
    this.output.write(line);
  }

  get replies(): Msg[] {
    return this.messages.filter((m) => m.type !== 'event');
  }

  async until<T>(find: () => T | undefined, what: string, timeoutMs = 30_000): Promise<T> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const found = find();
      if (found !== undefined) return found;
      if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}; last messages: ${JSON.stringify(this.messages.slice(-5))}`);
      await new Promise<void>((r) => {
        this.waiters.push(r);
        setTimeout(r, 200);
      });
    }
  }

  async request(body: Record<string, unknown> & { type: Request['type'] }): Promise<Msg> {
    const id = this.nextId++;
    this.write(JSON.stringify({ ...body, id }) + '\n');
    return this.until(() => this.replies.find((m) => m.id === id), `the reply to ${body.type} ${id}`);
  }

  final(jobId: string, timeoutMs?: number): Promise<Msg> {
    return this.until(() => this.messages.find((m) => m.jobId === jobId && ['done', 'failed', 'cancelled'].includes(m.event ?? '')), `the end of ${jobId}`, timeoutMs);
  }
}

function deadPid(): number {
  return Number(spawnSync(process.execPath, ['-e', 'process.stdout.write(String(process.pid))'], { encoding: 'utf8' }).stdout);
}

/** Starts `serve`; resolves with its port once it listens. */
async function startServe(args: string[], log: { text: string }, env: Record<string, string> = {}): Promise<{ child: ChildProcess; port: number }> {
  const child = spawn(process.execPath, [SERVER, 'serve', '--port', '0', ...args], { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...env } });
  child.stderr!.on('data', (c: Buffer) => (log.text += c.toString()));
  const port = await new Promise<number>((resolve, reject) => {
    let out = '';
    child.stdout!.on('data', (c: Buffer) => {
      out += c.toString();
      const m = /listening on 127\.0\.0\.1:(\d+)/.exec(out);
      if (m) resolve(Number(m[1]));
    });
    child.on('exit', (code) => reject(new Error(`serve exited with ${code}: ${out}${log.text}`)));
  });
  return { child, port };
}

async function stop(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const closed = new Promise((r) => child.once('close', r));
  child.kill('SIGINT');
  await closed;
}

describe('inference server against hostile clients (issue 16)', function () {
  this.timeout(120_000);
  let tmp: string;

  before(function () {
    this.timeout(300_000);
    execFileSync(process.execPath, ['esbuild.config.mjs'], { cwd: ROOT, stdio: 'inherit' });
    tmp = fs.realpathSync(fs.mkdtempSync(path.join(os.tmpdir(), 'mf-hostile-')));
  });

  after(() => tmp && fs.rmSync(tmp, { recursive: true, force: true }));

  describe('serve without --model: an authenticated client is still not the owner', () => {
    const token = 'hostile-test-token';
    const log = { text: '' };
    let serve: ChildProcess;
    let port: number;
    let out: string, inputs: string, models: string, elsewhere: string, ownerCache: string, ownerStore: string;
    let peer: Peer;
    let staleTemp: string;
    const secret = 'root:$6$saltsalt$SECRETHASH:19000:0:99999:7:::\n';

    before(async function () {
      this.timeout(60_000);
      [out, inputs, models, elsewhere, ownerCache] = ['out', 'inputs', 'models', 'elsewhere', 'owner-cache'].map((d) => path.join(tmp, d));
      for (const d of [out, inputs, elsewhere]) fs.mkdirSync(d);
      fs.cpSync(GOLDEN_MODELS, path.join(models, 'tiny'), { recursive: true });
      // The owner's own models, which this client was not given.
      ownerStore = path.join(elsewhere, 'owner-models');
      fs.cpSync(GOLDEN_MODELS, path.join(ownerStore, 'private-model'), { recursive: true });
      fs.writeFileSync(path.join(elsewhere, 'shadow'), secret);
      fs.copyFileSync(path.join(GOLDEN_MODELS, 'ae.safetensors'), path.join(elsewhere, 'weights.safetensors'));
      // A complete PNG that a writer killed with -9 left behind, and one of a live process.
      staleTemp = path.join(out, `.old.png.${deadPid()}-0123456789ab.tmp`);
      fs.writeFileSync(staleTemp, 'png');
      fs.writeFileSync(path.join(out, `.live.png.${process.pid}-0123456789ab.tmp`), 'png');
      ({ child: serve, port } = await startServe(['--token', token, '--output-dir', out, '--inputs-dir', inputs, '--models-dir', models, '--cache', ownerCache], log, { MAJICFLUX_MODELS_DIR: ownerStore }));
      peer = await Peer.tcp(port);
      const hello = await peer.request({ type: 'hello', protocol: 1, client: 'hostile', token, heartbeatMs: 0, settings: { model: { dir: path.join(models, 'tiny') }, weights: 'fp32', ep: 'cpu', memory: 'sequential' } });
      assert.equal(hello.type, 'hello');
    });

    after(async () => {
      if (serve) await stop(serve);
    });

    afterEach(function () {
      if (this.currentTest?.state === 'failed') process.stderr.write(log.text.slice(-4000));
    });

    it('removed the stale temp file of a dead writer when it started, and kept the live one', () => {
      assert.ok(!fs.existsSync(staleTemp), 'stale temp file removed');
      assert.ok(fs.existsSync(path.join(out, `.live.png.${process.pid}-0123456789ab.tmp`)), 'a live process\'s temp file is kept');
    });

    it('check … verify on a file outside the allowed folders is refused: no sha256, no content', async () => {
      const file = path.join(elsewhere, 'weights.safetensors');
      const sha = crypto.createHash('sha256').update(fs.readFileSync(file)).digest('hex');
      const r = await peer.request({ type: 'check', model: { transformer: file }, verify: true });
      assert.deepEqual([r.type, r.code], ['error', 'failed'], JSON.stringify(r));
      assert.match(r.message!, /model\.transformer .* is outside the folders this server reads models from/);
      assert.ok(!JSON.stringify(r).includes(sha));
    });

    // It listed every model on the owner's disks, with their paths, though using one fails the job.
    it('models lists what the client may use (the models folder\'s), not the owner\'s other models and where they are', async () => {
      const r = (await peer.request({ type: 'models' })) as Msg & { found?: { root: string; spec: { dir?: string } }[] };
      assert.equal(r.type, 'models', JSON.stringify(r).slice(0, 500));
      assert.ok(r.found!.some((m) => m.root === path.join(models, 'tiny')), JSON.stringify(r.found!.map((m) => m.root)));
      assert.ok(!JSON.stringify(r).includes(ownerStore), `lists the owner's models: ${JSON.stringify(r.found!.map((m) => m.root))}`);
      for (const m of r.found!) assert.ok(m.root.startsWith(models + path.sep), m.root);
    });

    it('a latentsFile outside the allowed folders is refused before queueing, and nothing of the file comes back', async () => {
      for (const f of [path.join(elsewhere, 'shadow'), '../elsewhere/shadow', '/etc/hostname']) {
        const r = await peer.request({ type: 'generate', job: { params: { prompt: 'x', steps: 1, width: 64, height: 64, latentsFile: f }, output: 'x.png' } });
        assert.deepEqual([r.type, r.code], ['error', 'bad-request'], `${f}: ${JSON.stringify(r)}`);
        assert.match(r.message!, /outside the folders this server reads from/);
        const headerLength = String(Buffer.from(secret).readBigUInt64LE(0));
        assert.ok(!JSON.stringify(r).includes(headerLength) && !JSON.stringify(r).includes('SECRET'), JSON.stringify(r));
      }
    });

    it('an input image outside the allowed folders is refused before queueing; one inside is read, and the metadata keeps the name the client gave', async () => {
      fs.copyFileSync(path.join(GOLDEN_MODELS, '..', 'cases', 'pipeline-2.png'), path.join(elsewhere, 'photo.png'));
      fs.copyFileSync(path.join(GOLDEN_MODELS, '..', 'cases', 'pipeline-2.png'), path.join(inputs, 'photo.png'));
      for (const f of [path.join(elsewhere, 'photo.png'), '../elsewhere/photo.png', path.join(elsewhere, 'shadow')]) {
        const r = await peer.request({ type: 'generate', job: { params: { prompt: 'x', steps: 1, image: f, strength: 1 }, output: 'img.png' } });
        assert.deepEqual([r.type, r.code], ['error', 'bad-request'], `${f}: ${JSON.stringify(r)}`);
        assert.match(r.message!, /job\.params\.image .* is outside the folders this server reads from/);
        assert.ok(!JSON.stringify(r).includes('SECRET'), JSON.stringify(r));
      }
      const q = await peer.request({ type: 'generate', job: { params: { prompt: 'x', seed: 1, steps: 1, image: 'photo.png', strength: 1 }, output: 'img.png' } });
      assert.equal(q.type, 'queued', JSON.stringify(q));
      const done = await peer.final(q.jobId!, 60_000);
      assert.equal(done.event, 'done', JSON.stringify(done));
      const meta = (done as { metadata?: { image?: string; width?: number } }).metadata;
      assert.deepEqual([meta?.image, meta?.width], ['photo.png', 64], 'as named, not the server\'s path; the size is the image\'s');
      // The server's log lines reach the client as events: where its models, caches and install are is not the client's to learn.
      const logged = peer.messages.filter((m) => m.event === 'log').map((m) => m.message!);
      assert.ok(logged.length > 0, 'the client hears the job\'s log');
      for (const line of logged) {
        for (const hidden of [ROOT, ownerCache, elsewhere]) assert.ok(!line.includes(hidden), `a log line names a server path outside the allowed folders (${hidden}): ${line}`);
        assert.doesNotMatch(line, /\n\s+at /, 'no stack trace');
      }
    });

    // Checked when the request arrived, the file was read by name when the job ran, maybe minutes later.
    posix('an input replaced by a symlink that leads out while its job waits in the queue is not read', async () => {
      const png = path.join(GOLDEN_MODELS, '..', 'cases', 'pipeline-2.png');
      fs.copyFileSync(png, path.join(elsewhere, 'private.png'));
      fs.copyFileSync(png, path.join(inputs, 'swapped.png'));
      // A job in front, long enough for the swap to happen while the next one waits.
      const first = await peer.request({ type: 'generate', job: { params: { prompt: 'in front', seed: 1, steps: 6, width: 1024, height: 1024 }, output: 'front.png' } });
      const q = await peer.request({ type: 'generate', job: { params: { prompt: 'x', seed: 1, steps: 1, image: 'swapped.png', strength: 1 }, output: 'swapped.png' } });
      assert.equal(q.type, 'queued', JSON.stringify(q));
      fs.rmSync(path.join(inputs, 'swapped.png'));
      fs.symlinkSync(path.join(elsewhere, 'private.png'), path.join(inputs, 'swapped.png'));
      assert.ok(!peer.messages.some((m) => m.jobId === q.jobId && m.event === 'started'), 'the swap happened while the job was queued');
      assert.equal((await peer.final(first.jobId!, 60_000)).event, 'done');
      const end = await peer.final(q.jobId!, 60_000);
      assert.equal(end.event, 'failed', JSON.stringify(end));
      assert.match(end.message!, /job\.params\.image now leads outside the folders this server reads from/);
      assert.ok(!end.message!.includes(tmp), end.message);
      assert.ok(!fs.existsSync(path.join(out, 'swapped.png')));
    });

    // A damaged latents file was "Generation failed" with a stack trace, and read only after the text encoders ran.
    it('a latents file that is damaged or of the wrong shape fails as the user\'s file, before the text encoders, without a stack trace', async () => {
      fs.writeFileSync(path.join(inputs, 'damaged.safetensors'), 'garbage, not a safetensors file');
      writeSafetensors(path.join(inputs, 'wrong-shape.safetensors'), { initial_latents: { dtype: 'F32', shape: [1, 4, 64] } });
      for (const [file, why] of [
        ['damaged.safetensors', /^Cannot read the latents file .*damaged\.safetensors: not a safetensors file/],
        ['wrong-shape.safetensors', /wrong-shape\.safetensors: initial_latents has shape \[1,4,64\] but this image size needs \[1, 16, 64\]/],
      ] as const) {
        const q = await peer.request({ type: 'generate', job: { params: { prompt: `never encoded ${file}`, seed: 1, steps: 1, width: 64, height: 64, latentsFile: file }, output: 'latents.png' } });
        const end = await peer.final(q.jobId!, 60_000);
        assert.equal(end.event, 'failed', JSON.stringify(end));
        assert.match(end.message!, why);
        assert.ok(!/\n\s+at /.test((end as { detail?: string }).detail ?? ''), `no stack trace: ${JSON.stringify(end)}`);
        assert.ok(!peer.messages.some((m) => m.jobId === q.jobId && m.event === 'stage' && m.stage === 'text'), 'no prompt encoding for a job that cannot run');
      }
    });

    // The job read each input by its real path and its failure quoted that path: the owner's folder
    // layout (and where a link in the inputs folder leads) went to a client that never sent it.
    posix('a job that fails on an input file names it as the client did, never by the server\'s real path', async () => {
      fs.mkdirSync(path.join(inputs, 'real'));
      fs.symlinkSync(path.join(inputs, 'real'), path.join(inputs, 'named'));
      fs.writeFileSync(path.join(inputs, 'real', 'bad-lora.safetensors'), 'garbage, not a safetensors file');
      fs.writeFileSync(path.join(inputs, 'real', 'latents.safetensors'), 'garbage, not a safetensors file');
      fs.copyFileSync(path.join(GOLDEN_MODELS, '..', 'cases', 'pipeline-2.png'), path.join(inputs, 'real', 'cut.png'));
      fs.truncateSync(path.join(inputs, 'real', 'cut.png'), 200);
      const params = { prompt: 'x', seed: 1, steps: 1, width: 64, height: 64 };
      for (const [extra, named] of [
        [{ loras: [{ path: 'named/bad-lora.safetensors', strength: 1 }] }, 'named/bad-lora.safetensors'],
        [{ latentsFile: 'named/latents.safetensors' }, 'named/latents.safetensors'],
        [{ image: 'named/cut.png', strength: 1 }, 'named/cut.png'],
      ] as const) {
        const q = await peer.request({ type: 'generate', job: { params: { ...params, ...extra }, output: 'never.png' } });
        assert.equal(q.type, 'queued', JSON.stringify(q));
        const end = await peer.final(q.jobId!, 60_000);
        assert.equal(end.event, 'failed', JSON.stringify(end));
        assert.ok(end.message!.includes(named), `names the file as the client did: ${end.message}`);
        assert.ok(!JSON.stringify(end).includes(tmp), `no server path: ${JSON.stringify(end)}`);
        const logged = peer.messages.filter((m) => m.jobId === q.jobId && m.event === 'log');
        assert.ok(logged.length > 0 && logged.every((m) => !JSON.stringify(m).includes(tmp)), `nor in its log lines: ${JSON.stringify(logged)}`);
      }
    });

    it('a LoRA file outside the allowed folders is refused before queueing, and nothing of the file comes back', async () => {
      for (const f of [path.join(elsewhere, 'shadow'), '../elsewhere/shadow']) {
        const r = await peer.request({ type: 'generate', job: { params: { prompt: 'x', steps: 1, width: 64, height: 64, loras: [{ path: f, strength: 1 }] }, output: 'x.png' } });
        assert.deepEqual([r.type, r.code], ['error', 'bad-request'], `${f}: ${JSON.stringify(r)}`);
        assert.match(r.message!, /job\.params\.loras\[0\]\.path .* is outside the folders this server reads from/);
        const headerLength = String(Buffer.from(secret).readBigUInt64LE(0));
        assert.ok(!JSON.stringify(r).includes(headerLength) && !JSON.stringify(r).includes('SECRET'), JSON.stringify(r));
      }
    });

    posix('a FIFO given as latentsFile is refused at once (it used to wedge the server)', async () => {
      execFileSync('mkfifo', [path.join(inputs, 'pipe.safetensors')]);
      const r = await peer.request({ type: 'generate', job: { params: { prompt: 'x', steps: 1, width: 64, height: 64, latentsFile: 'pipe.safetensors' }, output: 'fifo.png' } });
      assert.deepEqual([r.type, r.code], ['error', 'bad-request'], JSON.stringify(r));
      assert.match(r.message!, /is a FIFO \(named pipe\), not a regular file/);
      assert.equal((await peer.request({ type: 'ping' })).type, 'pong');
    });

    it('an input image or a LoRA outside the allowed folders is refused before queueing (issue 13)', async () => {
      const params = { prompt: 'x', steps: 1, width: 64, height: 64 };
      for (const [extra, field] of [
        [{ image: path.join(elsewhere, 'shadow') }, /job\.params\.image ".*shadow" is outside the folders this server reads from/],
        [{ image: '../elsewhere/shadow' }, /job\.params\.image/],
        [{ loras: [{ path: '/etc/hostname', strength: 0.8 }] }, /job\.params\.loras\[0\]\.path "\/etc\/hostname" is outside/],
        [{ loras: [{ path: path.join(elsewhere, 'shadow') }] }, /job\.params\.loras\[0\]\.path/],
      ] as const) {
        const r = await peer.request({ type: 'generate', job: { params: { ...params, ...extra }, output: 'x.png' } });
        assert.deepEqual([r.type, r.code], ['error', 'bad-request'], JSON.stringify(r));
        assert.match(r.message!, field);
        assert.ok(!JSON.stringify(r).includes('SECRET'), JSON.stringify(r));
      }
    });

    it('sets no server path: a cacheDir from the client is ignored, checksums go to the owner\'s cache', async () => {
      const evil = path.join(elsewhere, 'evil-cache');
      assert.equal((await peer.request({ type: 'configure', settings: { model: { dir: path.join(models, 'tiny') }, weights: 'fp32', ep: 'cpu', memory: 'sequential', cacheDir: evil } })).type, 'ok');
      const r = await peer.request({ type: 'check', verify: true, width: 64, height: 64 });
      assert.equal(r.type, 'check', JSON.stringify(r));
      assert.ok(!fs.existsSync(evil), 'nothing written where the client said');
      assert.ok(fs.existsSync(path.join(ownerCache, 'checksums.json')), 'recorded in the owner\'s cache');
    });

    it('a client\'s weight-cache limit is not applied to the owner\'s caches (it could delete them)', async () => {
      const kept = path.join(ownerCache, 'someone-elses-cache');
      fs.mkdirSync(kept, { recursive: true });
      fs.writeFileSync(path.join(kept, 'weights.bin'), Buffer.alloc(4096));
      fs.writeFileSync(path.join(kept, 'index.json'), '{}');
      assert.equal((await peer.request({ type: 'configure', settings: { model: { dir: path.join(models, 'tiny') }, weights: 'fp32', ep: 'cpu', memory: 'sequential', cacheMaxBytes: 1 } })).type, 'ok');
      const q = await peer.request({ type: 'generate', job: { params: { prompt: 'x', steps: 1, width: 64, height: 64 }, output: 'cache-limit.png' } });
      assert.equal((await peer.final(q.jobId!, 60_000)).event, 'done');
      assert.ok(fs.existsSync(path.join(kept, 'weights.bin')), 'the owner\'s cache stays');
    });

    posix('a symlink inside the output folder does not let a job write outside it', async () => {
      fs.symlinkSync(elsewhere, path.join(out, 'link'));
      const r = await peer.request({ type: 'generate', job: { params: { prompt: 'x', steps: 1, width: 64, height: 64 }, output: 'link/x.png' } });
      assert.deepEqual([r.type, r.code], ['error', 'bad-output'], JSON.stringify(r));
      assert.ok(!fs.existsSync(path.join(elsewhere, 'x.png')));
    });

    it('refuses bad output names before any work; "..foo.png" is a legal name and is written', async () => {
      fs.mkdirSync(path.join(out, 'taken.png'));
      for (const [output, why] of [['a\u0000b.png', /NUL/], [`${'n'.repeat(240)}.png`, /at most \d+/], ['taken.png', /existing folder/], ['../up.png', /outside/]] as const) {
        const r = await peer.request({ type: 'generate', job: { params: { prompt: 'x', steps: 1, width: 64, height: 64 }, output } });
        assert.deepEqual([r.type, r.code], ['error', 'bad-output'], JSON.stringify(r));
        assert.match(r.message!, why);
      }
      const q = await peer.request({ type: 'generate', job: { params: { prompt: 'dots', seed: 1, steps: 1, width: 64, height: 64 }, output: '..foo.png' } });
      assert.equal(q.type, 'queued', JSON.stringify(q));
      const done = await peer.final(q.jobId!, 60_000);
      assert.equal(done.event, 'done', JSON.stringify(done));
      assert.ok(fs.existsSync(path.join(out, '..foo.png')));
    });

    it("the next client (one at a time) can neither read an earlier client's prompts in status nor learn how its jobs ended; its own are its own", async () => {
      const helloed = async () => {
        const p = await Peer.tcp(port);
        assert.equal((await p.request({ type: 'hello', protocol: 1, client: 'hostile', token, heartbeatMs: 0, settings: { model: { dir: path.join(models, 'tiny') }, weights: 'fp32', ep: 'cpu', memory: 'sequential' } })).type, 'hello');
        return p;
      };
      const mine = await peer.request({ type: 'generate', job: { params: { prompt: 'my private prompt', seed: 3, steps: 1, width: 64, height: 64 }, output: 'private.png' } });
      assert.equal((await peer.final(mine.jobId!, 60_000)).event, 'done');
      const own = (await peer.request({ type: 'status' })) as Msg & { status: { jobs: Array<{ jobId: string; prompt: string }> } };
      assert.equal(own.status.jobs.find((j) => j.jobId === mine.jobId)?.prompt, 'my private prompt');
      const closed = new Promise((r) => peer.socket.once('close', r));
      peer.socket.end();
      await closed;
      peer = await helloed();
      const seen = (await peer.request({ type: 'status' })) as typeof own;
      const listed = seen.status.jobs.find((j) => j.jobId === mine.jobId);
      assert.ok(listed, 'the ended job is still in the history');
      assert.equal(listed.prompt, '', "the next client's status has no prompt of the earlier client's");
      const c = await peer.request({ type: 'cancel', jobId: mine.jobId! });
      assert.equal(c.code, 'unknown-job');
      assert.doesNotMatch(c.message ?? '', /already ended|done/, 'nor how it ended');
      const next = await peer.request({ type: 'generate', job: { params: { prompt: 'x', seed: 4, steps: 1, width: 64, height: 64 }, output: 'next.png' } });
      assert.equal((await peer.final(next.jobId!, 60_000)).event, 'done');
      assert.match((await peer.request({ type: 'cancel', jobId: next.jobId! })).message ?? '', /already ended \(done\)/, 'its own job: how it ended');
    });

    it(`a flood of idle connections is cut at ${MAX_TCP_CONNECTIONS} (the descriptors the jobs need), and the client already served goes on`, async () => {
      const flood: net.Socket[] = [];
      let refused = 0;
      try {
        for (let i = 0; i < MAX_TCP_CONNECTIONS + 20; i++) {
          const s = net.connect(port, '127.0.0.1');
          s.on('error', () => undefined);
          s.on('close', () => refused++);
          flood.push(s);
        }
        await new Promise((r) => setTimeout(r, 1500));
        // The served client holds one of the slots.
        assert.ok(refused >= 20, `${refused} of ${flood.length} extra connections closed at once`);
        assert.equal((await peer.request({ type: 'ping' })).type, 'pong');
      } finally {
        for (const s of flood) s.destroy();
        // The server frees the slots as it hears the closes (a loaded CI machine took longer than the
        // next test's connect): wait until a new connection is kept open again.
        for (let i = 0; i < 40; i++) {
          const probe = net.connect(port, '127.0.0.1');
          probe.on('error', () => undefined);
          const kept = await new Promise<boolean>((r) => {
            probe.once('close', () => r(false));
            setTimeout(() => r(true), 250);
          });
          probe.destroy();
          if (kept) break;
        }
      }
    });

    // It stayed open after the refusal, and 10 s later the same client heard "no hello within 10 s".
    it('a hello of another protocol version gets one clear error, then the connection is closed', async () => {
      const other = await Peer.tcp(port);
      const closed = new Promise<number>((resolve) => other.socket.once('close', () => resolve(Date.now())));
      const t0 = Date.now();
      const r = await other.request({ type: 'hello', protocol: 999, client: 'old', token, heartbeatMs: 0 });
      assert.deepEqual([r.type, r.code], ['error', 'protocol-mismatch'], JSON.stringify(r));
      assert.match(r.message!, /the client speaks protocol 999 but this server .* speaks protocol 1; use matching versions/);
      const at = await Promise.race([closed, new Promise<number>((res) => setTimeout(() => res(NaN), 12_000))]);
      assert.ok(at - t0 < 5_000, `closed ${(at - t0) / 1000} s after the refusal`);
      assert.deepEqual(other.messages.map((m) => m.code), ['protocol-mismatch'], 'one message, no later "no hello within 10 s"');
      assert.equal((await peer.request({ type: 'ping' })).type, 'pong', 'the connected client goes on');
    });

    it('a model named outside the allowed folders fails the job with a clear message before loading anything', async () => {
      assert.equal((await peer.request({ type: 'configure', settings: { model: { dir: elsewhere }, weights: 'fp32', ep: 'cpu' } })).type, 'ok');
      const q = await peer.request({ type: 'generate', job: { params: { prompt: 'x', steps: 1, width: 64, height: 64 }, output: 'm.png' } });
      const end = await peer.final(q.jobId!);
      assert.equal(end.event, 'failed');
      assert.match(end.message!, /model\.dir .* is outside the folders this server reads models from/);
    });
  });

  it('fuzz: 400 random and mutated protocol lines over TCP each get exactly one answer, and the server stays up', async function () {
    this.timeout(30_000);
    const token = 'fuzz-token-1234';
    const log = { text: '' };
    const { child, port } = await startServe(['--token', token, '--output-dir', path.join(tmp, 'fuzz-out')], log);
    try {
      const peer = await Peer.tcp(port);
      assert.equal((await peer.request({ type: 'hello', protocol: 1, client: 'fuzz', token, heartbeatMs: 0 })).type, 'hello');
      const templates: Record<string, unknown>[] = [
        { id: 1, type: 'ping' },
        { id: 2, type: 'status' },
        { id: 3, type: 'generate', job: { params: { prompt: 'a fox', seed: 1, steps: 1, width: 64, height: 64, shift: 3, latentsFile: 'l.safetensors' }, output: 'f.png', previewEvery: 1 } },
        { id: 11, type: 'generate', job: { params: { prompt: 'a fox', steps: 1, width: 64, height: 64 }, output: 'sub/..f.png' } },
        { id: 12, type: 'generate', job: { params: { prompt: 'x' }, output: '../out.png' } },
        { id: 4, type: 'cancel', jobId: 'job-1' },
        { id: 5, type: 'configure', settings: { model: { dir: '/m', transformer: '/etc/passwd' }, weights: 'fp8', cacheDir: '/tmp/x', stageEp: { vae: 'cpu' } } },
        { id: 6, type: 'check', model: { transformer: '/etc/shadow' }, verify: true },
        { id: 7, type: 'load', components: ['dit'] },
        { id: 8, type: 'models', search: { searchPaths: ['/'] } },
        { id: 9, type: 'download', download: { model: 'flux1-dev', dest: 'd' } },
        { id: 10, type: 'unload' },
      ];
      const r = rng(16);
      const lines: string[] = [];
      while (lines.length < 400) {
        const k = r();
        let line: string;
        if (k < 0.3) line = JSON.stringify(randomValue(r)) ?? 'undefined';
        else if (k < 0.75) line = JSON.stringify(mutate(templates[Math.floor(r() * templates.length)], r));
        else if (k < 0.85) {
          const whole = JSON.stringify(templates[Math.floor(r() * templates.length)]);
          line = whole.slice(0, 1 + Math.floor(r() * (whole.length - 1)));
        } else if (k < 0.95) line = Buffer.from(Array.from({ length: 1 + Math.floor(r() * 200) }, () => { const b = Math.floor(r() * 256); return b === 10 ? 11 : b; })).toString('latin1');
        else line = JSON.stringify(templates[Math.floor(r() * templates.length)]);
        // Skipped: a hello (a wrong token closes the connection, by design), shutdown (ends it), and lines the framing ignores (blank).
        if (/"(hello|shutdown)"/.test(line) || line.replace(/\r$/, '').trim() === '') continue;
        lines.push(line);
      }
      const before = peer.replies.length;
      const bytes = Buffer.concat(lines.map((l) => Buffer.concat([Buffer.from(l, l.startsWith('{') || l.startsWith('[') ? 'utf8' : 'latin1'), Buffer.from('\n')])));
      const t0 = Date.now();
      // Chunk boundaries anywhere, also inside a line.
      for (let at = 0; at < bytes.length; ) {
        const n = 1 + Math.floor(r() * 4096);
        peer.write(bytes.subarray(at, at + n));
        at += n;
      }
      await peer.until(() => (peer.replies.length - before >= lines.length ? true : undefined), `${lines.length} answers (got ${peer.replies.length - before})`, 20_000);
      await new Promise((res) => setTimeout(res, 300));
      assert.equal(peer.replies.length - before, lines.length, 'exactly one answer per line');
      assert.deepEqual(peer.invalid, [], 'every message the server sent is valid');
      assert.equal((await peer.request({ type: 'ping' })).type, 'pong');
      assert.equal(child.exitCode, null, 'still running');
      assert.ok(Date.now() - t0 < 10_000, `took ${Date.now() - t0} ms`);
      const codes = new Set(peer.replies.map((m) => m.code ?? m.type));
      for (const c of ['bad-json', 'bad-request', 'bad-output', 'queued', 'failed', 'pong', 'status']) assert.ok(codes.has(c), `the fuzzer reached ${c}: ${[...codes].join(', ')}`);
    } catch (err) {
      process.stderr.write(log.text.slice(-3000));
      throw err;
    } finally {
      await stop(child);
    }
  });

  // A peer that writes and never reads: every reply used to be buffered in the server (about 1 GB
  // in 8 s from a client that had not even authenticated), and closing it after the hello timeout
  // waited for a flush that never came, so the socket and that memory stayed.
  posix('a client that sends without reading does not grow the server\'s memory, and is disconnected after the hello timeout', async function () {
    this.timeout(60_000);
    const log = { text: '' };
    const { child, port } = await startServe(['--token', 'flood-token-1234', '--output-dir', path.join(tmp, 'flood-out')], log);
    const rssMb = () => Number(/VmRSS:\s+(\d+)/.exec(fs.readFileSync(`/proc/${child.pid}/status`, 'utf8'))?.[1] ?? NaN) / 1024;
    try {
      const sock = net.connect(port, '127.0.0.1');
      await new Promise((resolve, reject) => sock.once('connect', resolve).once('error', reject));
      sock.pause(); // reads nothing
      const closed = new Promise<number>((resolve) => sock.once('close', () => resolve(Date.now())));
      sock.on('error', () => undefined);
      const t0 = Date.now();
      const start = rssMb();
      const lines = Buffer.from('{"id":1,"type":"ping"}\n'.repeat(10_000));
      let peak = start;
      while (Date.now() - t0 < 4000 && !sock.destroyed) {
        // Whether the write is taken or held: measure every 100 ms.
        const wrote = sock.write(lines);
        if (!wrote) {
          await new Promise<void>((resolve) => {
            const go = () => {
              sock.off('drain', go);
              resolve();
            };
            sock.once('drain', go);
            setTimeout(go, 100);
          });
        }
        peak = Math.max(peak, rssMb());
      }
      assert.ok(peak - start < 100, `the server grew by ${Math.round(peak - start)} MiB buffering replies nobody reads`);
      const at = await Promise.race([closed, new Promise<number>((r) => setTimeout(() => r(NaN), 25_000))]);
      assert.ok(at - t0 < 20_000, `disconnected ${(at - t0) / 1000} s after connecting (hello timeout 10 s)`);
      assert.equal(child.exitCode, null, 'still running');
      const peer = await Peer.tcp(port);
      assert.equal((await peer.request({ type: 'hello', protocol: 1, client: 'next', token: 'flood-token-1234', heartbeatMs: 0 })).type, 'hello', 'the next client is served');
    } catch (err) {
      process.stderr.write(log.text.slice(-3000));
      throw err;
    } finally {
      await stop(child);
    }
  });

  describe('stdio server with the golden model', () => {
    function startLocal(args: string[] = [], env: Record<string, string> = {}): { child: ChildProcess; peer: Peer; stderr: { text: string } } {
      const child = spawn(process.execPath, [SERVER, ...args], { stdio: ['pipe', 'pipe', 'pipe'], env: { ...process.env, ...env } });
      const stderr = { text: '' };
      child.stderr!.on('data', (c: Buffer) => (stderr.text += c.toString()));
      return { child, peer: new Peer(child.stdout!, child.stdin!), stderr };
    }
    const settings = (dir: string): ServerSettings => ({ model: { dir }, weights: 'fp32', ep: 'cpu', memory: 'resident', cacheDir: path.join(tmp, 'cache') });

    // A job stuck in a call that never returns (a read from a hung network drive): the worker's
    // test hook blocks its thread at the text stage (pipelineWorker.ts, MAJICFLUX_TEST_STALL_MS).
    it('a job stuck in I/O: cancel ends it after the grace time, the queue moves on, shutdown ends the process', async () => {
      const model = GOLDEN_MODELS;
      const { child, peer, stderr } = startLocal(['--cancel-grace-ms', '1000'], { MAJICFLUX_TEST_STALL_MS: '60000' });
      const exited = new Promise<void>((r) => child.once('close', () => r()));
      try {
        assert.equal((await peer.request({ type: 'hello', protocol: 1, client: 'stuck', heartbeatMs: 100, settings: settings(model) })).type, 'hello');
        const stuck = await peer.request({ type: 'generate', job: { params: { prompt: 'x', steps: 1, width: 64, height: 64 }, output: path.join(tmp, 'stuck.png') } });
        const next = await peer.request({ type: 'generate', job: { params: { prompt: 'y', steps: 1, width: 64, height: 64 }, output: path.join(tmp, 'next.png') } });
        await peer.until(() => peer.messages.find((m) => m.jobId === stuck.jobId && m.event === 'stage' && m.stage === 'text'), 'the text stage');
        await new Promise((r) => setTimeout(r, 500));
        const c = await peer.request({ type: 'cancel', jobId: stuck.jobId! });
        assert.equal(c.state, 'cancelling');
        assert.equal((await peer.final(stuck.jobId!, 10_000)).event, 'cancelled');
        // The queue moves: the next job runs on a fresh pipeline (it stalls the same way, and is cancelled too).
        await peer.until(() => peer.messages.find((m) => m.jobId === next.jobId && m.event === 'started'), 'the next job to start');
        // A heartbeat sent after "started": one already on the wire may predate it (idle between the jobs).
        const startedAt = peer.messages.findIndex((m) => m.jobId === next.jobId && m.event === 'started');
        const hb = await peer.until(() => peer.messages.slice(startedAt + 1).find((m) => m.event === 'heartbeat'), 'a heartbeat after the start');
        assert.equal(hb.state, 'busy');
        assert.equal((await peer.request({ type: 'shutdown' })).type, 'ok');
        assert.equal((await peer.final(next.jobId!, 10_000)).event, 'cancelled');
        await Promise.race([exited, new Promise((_, reject) => setTimeout(() => reject(new Error(`the server did not exit: ${stderr.text}`)), 10_000))]);
        assert.ok(peer.messages.some((m) => m.event === 'log' && /did not stop within 1 s of its cancel \(stuck reading a file\?\)/.test(m.message ?? '')), 'logged as stuck');
        assert.match(stderr.text, /exiting hard: a job is stuck/);
      } finally {
        child.kill('SIGKILL');
      }
    });

    it('the client notices a job that makes no progress (heartbeats keep coming): it cancels it and reports it failed', async () => {
      const model = GOLDEN_MODELS;
      const lines: string[] = [];
      const logger = { debug: () => undefined, info: (m: string) => lines.push(m), warn: (m: string) => lines.push(m), error: (m: string) => lines.push(m) };
      const client = new ServerClient({
        serverPath: SERVER, logger, clientName: 'stall', settings: settings(model), heartbeatMs: 200, jobStallTimeoutMs: 2000, env: { MAJICFLUX_CANCEL_GRACE_MS: '500', MAJICFLUX_TEST_STALL_MS: '60000' },
      });
      try {
        const handle = await client.generate({ params: { prompt: 'x', steps: 1, width: 64, height: 64 }, output: path.join(tmp, 'stalled.png') });
        const t0 = Date.now();
        const err = await handle.done.then(() => undefined, (e: unknown) => e);
        assert.ok(err instanceof JobFailedError, String(err));
        assert.match(err.message, /made no progress for \d+ s \(the server may be stuck reading a file\) and was cancelled/);
        assert.ok(Date.now() - t0 < 15_000);
        assert.equal((await client.status()).state, 'idle', 'the server goes on');
      } finally {
        await client.dispose();
      }
    });

    it('a cancel the server answers "cancelling" always ends the job cancelled with no file, also during the save', async () => {
      const { child, peer, stderr } = startLocal();
      const dir = path.join(tmp, 'save-race');
      fs.mkdirSync(dir);
      // A local server sweeps a folder's stale temp files the first time it writes there.
      const stale = path.join(dir, `.old.png.${deadPid()}-0123456789ab.tmp`);
      fs.writeFileSync(stale, 'png');
      try {
        assert.equal((await peer.request({ type: 'hello', protocol: 1, client: 'race', heartbeatMs: 0, settings: settings(GOLDEN_MODELS) })).type, 'hello');
        let duringSave = 0;
        for (let i = 0; i < 12; i++) {
          const output = path.join(dir, `r${i}.png`);
          const q = await peer.request({ type: 'generate', job: { params: { prompt: 'race', seed: i, steps: 1, width: 256, height: 256 }, output } });
          await peer.until(() => peer.messages.find((m) => m.jobId === q.jobId && m.event === 'stage' && m.stage === (i % 3 === 0 ? 'decode' : 'save') && m.state === (i % 3 === 0 ? 'end' : 'start')), 'the save');
          // Spread the cancels over the save: now, and a little later.
          if (i % 4 > 1) await new Promise((r) => setTimeout(r, i % 4 === 2 ? 1 : 3));
          const c = await peer.request({ type: 'cancel', jobId: q.jobId! });
          const end = await peer.final(q.jobId!);
          const order = peer.messages.indexOf(c) < peer.messages.indexOf(end);
          if (c.type === 'cancel' && order) {
            duringSave++;
            assert.equal(end.event, 'cancelled', `job ${i}: answered "cancelling" but ended ${end.event}`);
            assert.ok(!fs.existsSync(output), `job ${i}: cancelled, yet ${output} exists`);
          } else {
            assert.equal(end.event, 'done', `job ${i}: ${JSON.stringify([c, end])}`);
          }
        }
        assert.ok(duringSave > 0, 'no cancel arrived while the job ran');
        assert.ok(!fs.existsSync(stale), 'the stale temp file was removed');
        assert.deepEqual(fs.readdirSync(dir).filter((f) => f.endsWith('.tmp')), [], 'no temp file left');
        assert.equal((await peer.request({ type: 'shutdown' })).type, 'ok');
      } catch (err) {
        process.stderr.write(stderr.text.slice(-3000));
        throw err;
      } finally {
        child.kill('SIGKILL');
      }
    });
  });
});
