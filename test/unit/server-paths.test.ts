// What a client may name (serverPaths.ts) and the atomic writer's cancel and crash cleanup
// (atomicWrite.ts), on real files, FIFOs and symlinks in a temp folder.

import * as assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { cleanStaleTemps, writePngAtomic } from '../../src/inference/system/atomicWrite';
import { forRemoteClient, isInside, MAX_OUTPUT_NAME_BYTES, PathPolicy, remoteRoots } from '../../src/inference/server/paths';
import { ServerDownloads } from '../../src/inference/server/downloads';
import type { Session } from '../../src/inference/server/connection';
import { UserError } from '../../src/shared/api';
import { windowsNameProblem } from '../../src/shared/fileName';

const posix = process.platform === 'win32' ? it.skip : it;

describe('server paths: what a client may name (serverPaths.ts)', () => {
  let tmp: string;
  let out: string;
  let inputs: string;
  let models: string;
  let elsewhere: string;
  let remote: PathPolicy;
  const local = new PathPolicy();

  before(() => {
    tmp = fs.realpathSync(fs.mkdtempSync(path.join(os.tmpdir(), 'mf-paths-')));
    [out, inputs, models, elsewhere] = ['out', 'inputs', 'models', 'elsewhere'].map((d) => path.join(tmp, d));
    for (const d of [out, inputs, models, elsewhere]) fs.mkdirSync(d);
    fs.writeFileSync(path.join(inputs, 'latents.safetensors'), 'x');
    fs.writeFileSync(path.join(elsewhere, 'secret.safetensors'), 'secret');
    fs.mkdirSync(path.join(models, 'FLUX.1-dev'));
    remote = new PathPolicy(remoteRoots({ outputDir: out, inputsDir: inputs, model: { dir: path.join(models, 'FLUX.1-dev') } }));
  });

  after(() => fs.rmSync(tmp, { recursive: true, force: true }));

  it('a remote client cannot have the server write the demo model (a folder it names); the owner\'s client can', () => {
    assert.throws(() => remote.modelSpec({ demo: out }), /model\.demo: a remote client cannot have this server write the demo model/);
    assert.doesNotThrow(() => local.modelSpec({ demo: elsewhere }));
  });

  it('only a real ".." component leaves a folder: "..foo.png" is an ordinary name', () => {
    assert.ok(isInside('/o', '/o/..foo.png'));
    assert.ok(isInside('/o', '/o/a/..b/c.png'));
    assert.ok(!isInside('/o', '/o'));
    assert.ok(!isInside('/o', '/x.png'));
    assert.ok(!isInside('/o', '/o/../x.png'));
    assert.equal(remote.output('..foo.png'), path.join(out, '..foo.png'));
    assert.match((remote.output('../x.png') as { error: string }).error, /outside the server's output folder/);
  });

  it('refuses output names that would fail only after a whole generation: NUL, too long for the temp name, an existing folder', () => {
    assert.match((local.output(path.join(out, 'a\0b.png')) as { error: string }).error, /NUL/);
    const long = 'x'.repeat(MAX_OUTPUT_NAME_BYTES - 3) + '.png';
    assert.match((local.output(path.join(out, long)) as { error: string }).error, /at most \d+ are allowed/);
    assert.match((remote.output(long) as { error: string }).error, /at most \d+ are allowed/);
    const fits = 'y'.repeat(MAX_OUTPUT_NAME_BYTES - 4) + '.png';
    assert.equal(local.output(path.join(out, fits)), path.join(out, fits));
    // The longest accepted name, plus a -N suffix and the temp file's additions, is still a legal file name.
    const tempLike = `.${fits.replace('.png', '-99999.png')}.4194304-0123456789ab.tmp`;
    fs.writeFileSync(path.join(out, tempLike), '');
    fs.mkdirSync(path.join(out, 'folder.png'));
    assert.match((local.output(path.join(out, 'folder.png')) as { error: string }).error, /existing folder/);
    assert.match((remote.output('folder.png') as { error: string }).error, /existing folder/);
    assert.match((local.output('relative.png') as { error: string }).error, /absolute/);
  });

  posix('a symlink inside the output folder does not lead out of it (real paths are compared)', () => {
    fs.symlinkSync(elsewhere, path.join(out, 'link'));
    assert.match((remote.output('link/x.png') as { error: string }).error, /outside the server's output folder/);
    assert.match((remote.output('link/deeper/x.png') as { error: string }).error, /outside/);
    fs.symlinkSync(path.join(out, 'sub-real'), path.join(out, 'inner-link'));
    fs.mkdirSync(path.join(out, 'sub-real'));
    assert.equal(remote.output('inner-link/x.png'), path.join(out, 'inner-link', 'x.png'), 'a link that stays inside is fine');
    // Made after the job was accepted: caught just before writing.
    const accepted = remote.output('later/x.png') as string;
    fs.symlinkSync(elsewhere, path.join(out, 'later'));
    assert.throws(() => remote.assertWritable(accepted), /now leads outside/);
    assert.doesNotThrow(() => local.assertWritable(accepted), 'the owner may write anywhere');
  });

  posix('a remote client reads only inside the folders the owner allowed; the owner reads anything', () => {
    assert.equal(remote.inputFile('latents.safetensors', 'latentsFile'), path.join(inputs, 'latents.safetensors'));
    assert.equal(remote.inputFile(path.join(inputs, 'latents.safetensors'), 'latentsFile'), path.join(inputs, 'latents.safetensors'));
    for (const bad of ['/etc/hostname', path.join(elsewhere, 'secret.safetensors'), '../elsewhere/secret.safetensors']) {
      assert.throws(() => remote.inputFile(bad, 'latentsFile'), /outside the folders this server reads from/, bad);
    }
    fs.symlinkSync(path.join(elsewhere, 'secret.safetensors'), path.join(inputs, 'sneaky.safetensors'));
    assert.throws(() => remote.inputFile('sneaky.safetensors', 'latentsFile'), /outside/);
    assert.equal(local.inputFile(path.join(elsewhere, 'secret.safetensors'), 'latentsFile'), path.join(elsewhere, 'secret.safetensors'));
    assert.throws(() => remote.modelSpec({ transformer: '/etc/shadow' }), /model\.transformer "\/etc\/shadow" is outside/);
    assert.throws(() => remote.modelSpec({ dir: models }), /model\.dir/, 'the parent of the allowed model folder is not allowed');
    assert.doesNotThrow(() => remote.modelSpec({ dir: path.join(models, 'FLUX.1-dev'), transformer: path.join(models, 'FLUX.1-dev', 'x.safetensors') }));
    assert.doesNotThrow(() => local.modelSpec({ transformer: '/etc/shadow' }));
    // A single file given at start allows that file, not the folder it sits in (say, the owner's home).
    const single = new PathPolicy(remoteRoots({ outputDir: out, model: { transformer: path.join(elsewhere, 'secret.safetensors') } }));
    assert.doesNotThrow(() => single.modelSpec({ transformer: path.join(elsewhere, 'secret.safetensors') }));
    fs.writeFileSync(path.join(elsewhere, 'other.safetensors'), 'x');
    assert.throws(() => single.inputFile(path.join(elsewhere, 'other.safetensors'), 'latentsFile'), /outside/);
  });

  posix('an input must be a regular file: a FIFO, a device or a folder is refused without opening it', () => {
    const fifo = path.join(inputs, 'fifo.safetensors');
    execFileSync('mkfifo', [fifo]);
    assert.throws(() => local.inputFile(fifo, 'latentsFile'), /is a FIFO \(named pipe\), not a regular file/);
    assert.throws(() => remote.inputFile('fifo.safetensors', 'latentsFile'), /is a FIFO \(named pipe\), not a regular file/);
    assert.throws(() => local.inputFile('/dev/zero', 'latentsFile'), /is a character device, not a regular file/);
    assert.throws(() => local.inputFile(inputs, 'latentsFile'), /is a folder/);
    assert.throws(() => local.inputFile(path.join(inputs, 'missing.safetensors'), 'latentsFile'), /cannot be read \(ENOENT\)/);
  });

  it('an output path the OS would refuse is refused up front (bad-output\'s message), not thrown as a Node error or met after a whole generation', () => {
    fs.writeFileSync(path.join(out, 'plain.txt'), 'x');
    const long = 'd'.repeat(300);
    const cases: [PathPolicy, string, RegExp][] = [
      // A remote name: realpath threw ENAMETOOLONG, which reached the client as "failed" with a stack trace.
      [remote, `${long}/x.png`, /folder or file name of 300 (bytes|characters); at most 255/],
      // Accepted, and failed only when the finished image was saved.
      [local, path.join(out, long, 'x.png'), /folder or file name of 300 (bytes|characters); at most 255/],
      [local, path.join(out, 'plain.txt', 'x.png'), /goes through "(.*\/)?plain\.txt", which is a file, not a folder/],
      [remote, 'plain.txt/sub/x.png', /goes through "(.*\/)?plain\.txt", which is a file, not a folder/],
      // Written as a file named "sub" (no .png) where the client meant a folder.
      [remote, 'sub/', /names a folder, not a file/],
      [remote, 'sub/.', /names a folder, not a file/],
      [local, path.join(out, 'new-folder') + '/', /names a folder, not a file/],
    ];
    for (const [policy, name, why] of cases) {
      let r: ReturnType<PathPolicy['output']> | Error;
      try {
        r = policy.output(name);
      } catch (e) {
        r = e as Error;
      }
      assert.ok(typeof r === 'object' && !(r instanceof Error), `${name.slice(-40)}: ${String(r)}`);
      assert.match(r.error, why, name.slice(-40));
      if (policy === remote) assert.ok(!r.error.includes(tmp), `a remote client does not learn the server's folders: ${r.error}`);
    }
    assert.equal(remote.output('sub/x.png'), path.join(out, 'sub', 'x.png'), 'a folder that does not exist yet is still fine');
  });

  // On a Windows server "x.png:hidden" went to an alternate data stream, "CON.png" to the console
  // device, "x.png." lost its dot: each failed (or went astray) only when the image was saved. The
  // rule is pure, so it is checked here on every platform; the server applies it on Windows.
  it('names Windows refuses or reads as a device are caught by windowsNameProblem, and ordinary ones pass', () => {
    for (const [name, why] of [
      ['x.png:hidden', /holds ":", which Windows does not allow/],
      ['a?b.png', /holds "\?"/],
      ['CON.png', /is a device name on Windows/],
      ['nul', /is a device name on Windows/],
      ['com1.tar.gz', /is a device name on Windows/],
      ['LPT9.png', /is a device name on Windows/],
      ['x.png.', /ends with a dot or a space/],
      ['folder ', /ends with a dot or a space/],
    ] as const) {
      assert.match(windowsNameProblem(name) ?? '(accepted)', why, name);
    }
    for (const name of ['image.png', 'console.png', 'com10.png', 'nul-1.png', '灯塔.png', '..foo.png', 'a b.png']) assert.equal(windowsNameProblem(name), undefined, name);
  });

  it('a NUL in an input or model path gets a plain message naming the field, not Node\'s with the server\'s path; a remote client\'s refusals name the file as it sent it', () => {
    for (const policy of [remote, local]) {
      assert.throws(() => policy.inputFile('a\0b.safetensors', 'job.params.latentsFile'), (e: Error) => e instanceof UserError && /^job\.params\.latentsFile contains a NUL character/.test(e.message) && !e.message.includes(tmp));
    }
    assert.throws(() => remote.modelSpec({ dir: 'a\0b' }), (e: Error) => e instanceof UserError && /^model\.dir contains a NUL character/.test(e.message));
    assert.throws(() => remote.inputFile(`${'d'.repeat(300)}/x.safetensors`, 'job.params.image'), (e: Error) => e instanceof UserError && /folder or file name of 300 (bytes|characters)/.test(e.message));
    // Was: job.params.latentsFile "/…/inputs/missing.safetensors" cannot be read — the inputs folder's place on the server.
    assert.throws(() => remote.inputFile('missing.safetensors', 'job.params.latentsFile'), (e: Error) => /"missing\.safetensors" cannot be read \(ENOENT\)/.test(e.message) && !e.message.includes(tmp));
    fs.mkdirSync(path.join(out, 'shown.png'));
    assert.ok(!(remote.output('shown.png') as { error: string }).error.includes(tmp));
    assert.match((local.output(path.join(out, 'shown.png')) as { error: string }).error, /existing folder/, 'the owner sees the whole path');
  });

  posix('a download goes only into the models folder: NUL refused, a symlink in it that leads out refused (real paths are compared)', () => {
    const sent: unknown[] = [];
    const session = { send: (m: unknown) => sent.push(m) } as unknown as Session;
    const downloads = new ServerDownloads(() => undefined);
    fs.symlinkSync(elsewhere, path.join(models, 'link-out'));
    const place = { remote: true, modelsDir: models };
    try {
      for (const [dest, why] of [
        ['link-out', /outside the server's models folder/],
        ['link-out/deeper', /outside the server's models folder/],
        ['a\0b', /contains a NUL character/],
      ] as const) {
        const r = downloads.start(session, 1, { model: 'flux1-dev', dest }, place);
        assert.equal(r?.code, 'bad-output', `${dest}: ${JSON.stringify(r)}`);
        assert.match(r.message, why);
      }
      assert.match(downloads.start(session, 1, { model: 'flux1-dev', dest: '/tmp/a\0b' }, { remote: false })?.message ?? '', /contains a NUL character/);
      assert.deepEqual(sent, [], 'nothing started');
    } finally {
      downloads.cancelOf();
    }
  });

  it("a remote client cannot name the address a download fetches from: another mirror is refused before anything starts; the server's own (or the hub's) is not", () => {
    const sent: unknown[] = [];
    const session = { send: (m: unknown) => sent.push(m) } as unknown as Session;
    const downloads = new ServerDownloads(() => undefined);
    const place = { remote: true, modelsDir: models };
    const saved = process.env.HF_ENDPOINT;
    process.env.HF_ENDPOINT = 'https://hf-mirror.example/';
    try {
      for (const url of ['http://169.254.169.254/latest', 'https://huggingface.co', 'http://localhost:8080']) {
        const r = downloads.start(session, 1, { model: 'flux1-dev', dest: 'm', endpoints: { huggingface: url } }, place);
        assert.equal(r?.code, 'bad-request', url);
        assert.match(r.message, new RegExp(`downloads from Hugging Face at https://hf-mirror\\.example, not ${url.replace(/[.]/g, '\\.')}: a remote client cannot choose`));
      }
      assert.deepEqual(sent, [], 'nothing started');
      // The server's own address passes this check: what refuses it next is the plan (an unknown model; nothing is fetched).
      const same = downloads.start(session, 1, { model: 'no-such-model', dest: 'm', endpoints: { huggingface: 'https://hf-mirror.example' } }, place);
      assert.equal(same?.code, 'failed', JSON.stringify(same));
      assert.match(same.message, /no-such-model/);
      assert.deepEqual(sent, [], 'still nothing started');
    } finally {
      if (saved === undefined) delete process.env.HF_ENDPOINT;
      else process.env.HF_ENDPOINT = saved;
      downloads.cancelOf();
    }
  });
});

describe('the server\'s own text as a remote client reads it (paths.forRemoteClient)', () => {
  const root = path.resolve(os.tmpdir(), 'mf-allowed');
  const roots = remoteRoots({ outputDir: path.join(root, 'out'), modelsDir: path.join(root, 'models') });
  const install = path.resolve(os.tmpdir(), 'opt', 'majicflux', 'dist', 'server.js');

  it('drops stack frames (they name the install) and hides paths outside the allowed folders; paths inside them, URLs and ratios stay', () => {
    const model = path.join(root, 'models', 'tiny', 'transformer');
    const cache = path.resolve(os.tmpdir(), 'owner', '.cache', 'majicflux', 'dit.bin');
    const text = `Error: cannot map ${cache}: ENOSPC.\n    at mapFile (${install}:10:5)\n    at process.processTicksAndRejections (node:internal/process/task_queues:95:5)\nmodel tiny: DiT ${model}, from https://huggingface.co/black-forest-labs/FLUX.1-dev at 1/2 size`;
    const shown = forRemoteClient(text, roots);
    assert.equal(shown, `Error: cannot map <server path>: ENOSPC.\nmodel tiny: DiT ${model}, from https://huggingface.co/black-forest-labs/FLUX.1-dev at 1/2 size`);
    assert.equal(forRemoteClient("ENOENT: no such file or directory, open '/etc/shadow'", roots), "ENOENT: no such file or directory, open '<server path>'");
    assert.equal(forRemoteClient('C:\\Users\\owner\\models\\flux.safetensors is locked', roots), '<server path> is locked');
  });

  it('a path with spaces is hidden whole, quoted or not (no tail of it left), one inside an allowed folder is kept whole; file:// URLs and line:column suffixes too', () => {
    const spaced = remoteRoots({ outputDir: path.join(root, 'out'), modelsDir: path.join(root, 'Application Support', 'mf models') });
    const model = path.join(root, 'Application Support', 'mf models', 'flux dev');
    assert.equal(forRemoteClient("open '/Users/j/Library/Application Support/Code/cache/dit.bin' failed", spaced), "open '<server path>' failed");
    assert.equal(forRemoteClient('C:\\Users\\John Smith\\AppData\\majicflux\\dit.bin is locked', spaced), '<server path> is locked');
    assert.equal(forRemoteClient(`DiT ${model}, weights fp32`, spaced), `DiT ${model}, weights fp32`);
    assert.equal(forRemoteClient(`"${model}"`, spaced), `"${model}"`);
    assert.equal(forRemoteClient('see file:///home/owner/.cache/x.log now', spaced), 'see <server path> now');
    assert.equal(forRemoteClient(`in ${install}:10:5 and ${path.join(root, 'out', 'a.png')}:3:4`, spaced), `in <server path> and ${path.join(root, 'out', 'a.png')}:3:4`);
  });

  it('the owner\'s client (no allowed folders: it may name any path) reads the text whole; a TCP client through its PathPolicy does not', () => {
    const text = `Error: boom\n    at f (${install}:1:2)`;
    assert.equal(new PathPolicy().forClient(text), text);
    assert.equal(new PathPolicy(roots).forClient(text), 'Error: boom');
  });
});

describe('atomic writes: cancel and crash leftovers (atomicWrite.ts)', () => {
  let dir: string;
  beforeEach(() => (dir = fs.mkdtempSync(path.join(os.tmpdir(), 'mf-atomic-'))));
  afterEach(() => fs.rmSync(dir, { recursive: true, force: true }));

  it('an abort before the write resolves leaves no file and no temp file, also one that comes while the file is linked into place', async () => {
    // Abort when the folder first shows `seen` (polled every turn of the event loop).
    const writeAbortingAt = async (name: string, seen: (files: string[]) => boolean) => {
      const ac = new AbortController();
      const write = writePngAtomic(path.join(dir, name), Buffer.alloc(100_000, 7), { unique: true, signal: ac.signal });
      let settled = false;
      void (async () => {
        while (!settled && !seen(fs.readdirSync(dir))) await new Promise((r) => setImmediate(r));
        ac.abort();
      })();
      return write.then((file) => file, (e: Error) => e).finally(() => (settled = true));
    };
    for (const [name, when] of [
      ['at-once.png', () => true],
      ['temp-written.png', (f: string[]) => f.some((n) => n.startsWith('.temp-written.png.'))],
      ['linked.png', (f: string[]) => f.includes('linked.png')],
    ] as const) {
      const r = await writeAbortingAt(name, when);
      assert.ok(r instanceof Error && r.name === 'AbortError', `${name}: ${String(r)}`);
      assert.deepEqual(fs.readdirSync(dir), [], `${name}: nothing left`);
    }
    assert.equal(await writePngAtomic(path.join(dir, 'kept.png'), Buffer.from('x'), { signal: new AbortController().signal }), path.join(dir, 'kept.png'));
  });

  it('removes temp files of dead writers only: our name pattern, a pid that is not alive', async () => {
    const dead = spawnSync(process.execPath, ['-e', 'process.stdout.write(String(process.pid))'], { encoding: 'utf8' });
    const deadPid = Number(dead.stdout);
    const names = {
      dead: `.x.png.${deadPid}-0123456789ab.tmp`,
      mine: `.y.png.${process.pid}-0123456789ab.tmp`,
      parent: `.z.png.${process.ppid}-abcdefabcdef.tmp`,
      otherPattern: `.x.png.${deadPid}.tmp`,
      png: 'x.png',
    };
    for (const n of Object.values(names)) fs.writeFileSync(path.join(dir, n), 'x');
    assert.deepEqual(await cleanStaleTemps(dir), [names.dead]);
    assert.deepEqual(fs.readdirSync(dir).sort(), [names.mine, names.parent, names.otherPattern, names.png].sort());
    assert.deepEqual(await cleanStaleTemps(path.join(dir, 'missing')), []);
  });
});
