// The model downloader (src/inference/models/download.ts, hub.ts) against a local fake of Hugging
// Face and ModelScope (test/helpers/fakeHub.ts) serving the golden tiny model's real files: both
// URL layouts, listings, sha256 verification, resume, restarts, checksum failures, cancel, gated
// repositories and tokens, errors, disk space, skipping and parallel transfers.

import * as assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { DownloadOptions, downloadFiles } from '../../src/inference/models/download';
import { fileUrl } from '../../src/inference/models/hub';
import { DownloadError } from '../../src/inference/models/hubErrors';
import { listRepoFiles, nextLink } from '../../src/inference/models/hubListing';
import type { DownloadItem, DownloadProgress, HubRepo } from '../../src/shared/models';
import { FakeHub, FIXTURE_MODELS, fixtureFiles, TOKEN_GOOD, TOKEN_NO_ACCESS } from '../helpers/fakeHub';

const HF: HubRepo = { hub: 'huggingface', repo: 'majic/flux-tiny' };
const HF_RENAMED: HubRepo = { hub: 'huggingface', repo: 'old-owner/flux-tiny' };
const GATED: HubRepo = { hub: 'huggingface', repo: 'black-forest-labs/flux-tiny-gated', gated: true };
const MS: HubRepo = { hub: 'modelscope', repo: 'MAILAND/majicflus-tiny' };
const MS_FILES = [
  'flux-tiny.safetensors',
  'flux-tiny.config.json',
  'text_encoder_2/model-00001-of-00002.safetensors',
  'text_encoder_2/model-00002-of-00002.safetensors',
  'text_encoder_2/model.safetensors.index.json',
  'tokenizer/vocab.json',
];
const GATED_FILES = ['ae.config.json', 'flux-tiny-fp8.safetensors'];
/** 987 184 bytes, served through the CDN (LFS). */
const DIT = 'flux-tiny.safetensors';

function fixture(p: string): Buffer {
  return fs.readFileSync(path.join(FIXTURE_MODELS, p));
}

function sha256(b: Buffer): string {
  return createHash('sha256').update(b).digest('hex');
}

async function expectDownloadError(p: Promise<unknown>): Promise<DownloadError> {
  try {
    await p;
  } catch (err) {
    assert.ok(err instanceof DownloadError, `expected a DownloadError, got ${String(err)}`);
    return err;
  }
  assert.fail('expected the download to fail');
}

/** A closed port on 127.0.0.1 (connections are refused). */
async function closedPort(): Promise<number> {
  const s = net.createServer();
  await new Promise<void>((resolve) => s.listen(0, '127.0.0.1', resolve));
  const port = (s.address() as net.AddressInfo).port;
  await new Promise<void>((resolve) => s.close(() => resolve()));
  return port;
}

describe('model download', function () {
  this.timeout(20_000);
  let hub: FakeHub;
  let tmp: string;
  let logs: string[];

  before(async () => {
    hub = await FakeHub.start([
      { hub: 'huggingface', repo: HF.repo, files: fixtureFiles(), formerNames: [HF_RENAMED.repo] },
      { hub: 'huggingface', repo: GATED.repo, files: GATED_FILES, gated: true },
      { hub: 'modelscope', repo: MS.repo, files: MS_FILES },
    ]);
  });

  after(async () => {
    await hub?.close();
  });

  beforeEach(() => {
    hub.reset();
    logs = [];
    tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'majicflux-download-'));
  });

  afterEach(() => {
    fs.rmSync(tmp, { recursive: true, force: true });
  });

  function item(repo: HubRepo, p: string, extra: Partial<DownloadItem> = {}): DownloadItem {
    return { repo, path: p, dest: path.join(tmp, repo.repo, ...p.split('/')), ...extra };
  }

  function opts(extra: DownloadOptions = {}): DownloadOptions {
    return {
      endpoints: { huggingface: hub.endpoint, modelscope: hub.endpoint },
      retryDelayMs: 10,
      log: (level, message) => logs.push(`${level}: ${message}`),
      ...extra,
    };
  }

  function assertSameAsFixture(dest: string, p: string): void {
    const got = fs.readFileSync(dest);
    const want = fixture(p);
    assert.equal(got.length, want.length, `${p}: size`);
    assert.ok(got.equals(want), `${p}: bytes differ`);
  }

  function leftovers(dir = tmp): string[] {
    const out: string[] = [];
    const walk = (d: string): void => {
      for (const e of fs.readdirSync(d, { withFileTypes: true })) {
        const p = path.join(d, e.name);
        if (e.isDirectory()) walk(p);
        else if (/\.(part|part\.json|corrupt|tmp)$/.test(e.name)) out.push(p);
      }
    };
    walk(dir);
    return out;
  }

  // ─── hub layouts ──────────────────────────────────────────────────────────────────────────────

  describe('hub URLs and listings', () => {
    it('builds both hubs’ file URLs, encoding path segments and revisions', () => {
      assert.equal(
        fileUrl({ hub: 'huggingface', repo: 'black-forest-labs/FLUX.1-dev' }, 'text_encoder_2/model-00001-of-00002.safetensors'),
        'https://huggingface.co/black-forest-labs/FLUX.1-dev/resolve/main/text_encoder_2/model-00001-of-00002.safetensors',
      );
      assert.equal(
        fileUrl({ hub: 'huggingface', repo: 'a/b', revision: 'refs/pr/1' }, 'dir/my file#1.json', 'https://hf-mirror.com/'),
        'https://hf-mirror.com/a/b/resolve/refs%2Fpr%2F1/dir/my%20file%231.json',
      );
      assert.equal(
        fileUrl({ hub: 'modelscope', repo: 'MAILAND/majicflus_v1' }, 'text_encoder_2/model.safetensors.index.json'),
        'https://modelscope.cn/api/v1/models/MAILAND/majicflus_v1/repo?Revision=master&FilePath=text_encoder_2%2Fmodel.safetensors.index.json',
      );
      assert.equal(nextLink('<https://h/api/x?cursor=abc>; rel="next"', 'https://h/'), 'https://h/api/x?cursor=abc');
      assert.equal(nextLink('</p2>; rel="prev", </p3>; rel="next"', 'https://h/a'), 'https://h/p3');
      assert.equal(nextLink('</p1>; rel="prev"', 'https://h/a'), undefined);
    });

    it('lists a Hugging Face repository across pages, with the LFS sha256', async () => {
      hub.pageSize = 4;
      const files = await listRepoFiles(HF, { endpoint: hub.endpoint });
      const want = fixtureFiles();
      assert.deepEqual(files.map((f) => f.path).sort(), [...want].sort());
      for (const f of files) {
        const data = fixture(f.path);
        assert.equal(f.size, data.length, f.path);
        const fake = hub.file('huggingface', HF.repo, f.path);
        if (fake.lfs) assert.equal(f.sha256, sha256(data), f.path);
        else assert.equal(f.sha256, undefined, `${f.path}: a git oid is not a sha256`);
      }
      const pages = hub.requests.filter((r) => r.url.includes('/tree/'));
      assert.ok(pages.length > 3, `expected several pages, got ${pages.length}`);
      assert.ok(pages.slice(1).every((r) => r.url.includes('cursor=')));
    });

    it('lists a ModelScope repository with every file’s sha256', async () => {
      const files = await listRepoFiles(MS, { endpoint: hub.endpoint });
      assert.deepEqual(files.map((f) => f.path).sort(), [...MS_FILES].sort());
      for (const f of files) assert.equal(f.sha256, sha256(fixture(f.path)), f.path);
      assert.match(hub.requests[0].url, /^\/api\/v1\/models\/MAILAND\/majicflus-tiny\/repo\/files\?Revision=master&Recursive=True$/);
    });
  });

  // ─── full downloads ───────────────────────────────────────────────────────────────────────────

  describe('full downloads', () => {
    it('fetches a whole Hugging Face model (LFS via the CDN, small files direct), sha256-verified', async () => {
      const paths = fixtureFiles();
      const result = await downloadFiles(paths.map((p) => item(HF, p)), opts());
      assert.equal(result.length, paths.length);
      result.forEach((r, i) => {
        const p = paths[i];
        assert.equal(r.path, path.join(tmp, HF.repo, ...p.split('/')));
        assert.equal(r.bytes, fixture(p).length);
        assert.equal(r.sha256, sha256(fixture(p)), p);
        assert.equal(r.skipped, undefined);
        assert.equal(r.resumedFrom, undefined);
        assertSameAsFixture(r.path, p);
      });
      assert.deepEqual(leftovers(), []);
      // The big files came from the CDN origin, the small ones straight from the hub.
      const dit = hub.contentRequests(HF.repo, DIT);
      assert.deepEqual(dit.map((r) => r.server), ['cdn']);
      const cfg = hub.contentRequests(HF.repo, 'scheduler/scheduler_config.json');
      assert.deepEqual(cfg.map((r) => r.server), ['hub']);
      // One listing (paginated) for the whole repository, not one per file.
      const firstPages = hub.requests.filter((r) => r.url.includes('/tree/') && !r.url.includes('cursor='));
      assert.equal(firstPages.length, 1);
      assert.ok(logs.some((l) => l.includes('(verified)')));
    });

    it('fetches from ModelScope’s layout, sha256-verified', async () => {
      const result = await downloadFiles(MS_FILES.map((p) => item(MS, p)), opts());
      result.forEach((r, i) => {
        assert.equal(r.sha256, sha256(fixture(MS_FILES[i])));
        assertSameAsFixture(r.path, MS_FILES[i]);
      });
      const dit = hub.contentRequests(MS.repo, DIT);
      assert.deepEqual(dit.map((r) => r.server), ['cdn'], 'large files are redirected to the storage host');
      const hubGets = hub.requests.filter((r) => r.server === 'hub' && r.url.startsWith('/api/v1/models/MAILAND/majicflus-tiny/repo?'));
      assert.equal(hubGets.length, MS_FILES.length);
      assert.ok(hubGets.some((r) => r.url.includes('FilePath=text_encoder_2%2Fmodel-00001-of-00002.safetensors')));
    });

    it('follows a renamed repository’s relative redirect and computes a sha256 nobody published', async () => {
      // No listing (it fails) and a small file: no sha256 anywhere, so it is computed and returned.
      hub.failListing(1);
      const p = 'ae.config.json';
      const [r] = await downloadFiles([item(HF_RENAMED, p)], opts());
      assert.equal(r.sha256, sha256(fixture(p)));
      assertSameAsFixture(r.path, p);
      const resolves = hub.requests.filter((x) => x.url.includes('/resolve/'));
      assert.deepEqual(resolves.map((x) => x.status), [307, 200]);
      assert.ok(logs.some((l) => l.includes('not published by the hub')));
    });

    it('creates missing parent folders of the destination', async () => {
      const dest = path.join(tmp, 'a', 'b', 'c', 'vocab.json');
      const [r] = await downloadFiles([{ repo: HF, path: 'tokenizer/vocab.json', dest }], opts());
      assert.equal(r.path, dest);
      assertSameAsFixture(dest, 'tokenizer/vocab.json');
    });
  });

  // ─── resume ───────────────────────────────────────────────────────────────────────────────────

  describe('resume', () => {
    it('resumes an interrupted transfer with a Range request, byte-identical', async () => {
      hub.dropAfter(HF.repo, DIT, 300_000);
      const [r] = await downloadFiles([item(HF, DIT)], opts());
      const reqs = hub.contentRequests(HF.repo, DIT);
      assert.equal(reqs.length, 2);
      assert.equal(reqs[0].range, undefined);
      assert.equal(reqs[1].range, 'bytes=300000-');
      assert.equal(reqs[1].status, 206);
      assert.equal(r.resumedFrom, 300_000);
      assert.equal(r.sha256, sha256(fixture(DIT)));
      assertSameAsFixture(r.path, DIT);
      assert.deepEqual(leftovers(), []);
      assert.ok(logs.some((l) => l.startsWith('warn:') && l.includes('resuming in')));
    });

    it('resumes a transfer that stalled (no data) after the stall timeout', async () => {
      hub.stallAfter(MS.repo, DIT, 200_000);
      const [r] = await downloadFiles([item(MS, DIT)], opts({ stallTimeoutMs: 300 }));
      const reqs = hub.contentRequests(MS.repo, DIT);
      assert.equal(reqs.length, 2);
      assert.equal(reqs[1].range, 'bytes=200000-');
      assert.equal(r.resumedFrom, 200_000);
      assertSameAsFixture(r.path, DIT);
      assert.ok(logs.some((l) => l.includes('no data for')));
    });

    it('restarts cleanly from zero when a Range request is answered 200', async () => {
      hub.dropAfter(HF.repo, DIT, 250_000);
      hub.ignoreRange(HF.repo, DIT);
      const [r] = await downloadFiles([item(HF, DIT)], opts());
      const reqs = hub.contentRequests(HF.repo, DIT);
      assert.equal(reqs.length, 2);
      assert.equal(reqs[1].range, 'bytes=250000-');
      assert.equal(reqs[1].status, 200);
      assert.equal(r.resumedFrom, undefined);
      assert.equal(r.bytes, fixture(DIT).length);
      assertSameAsFixture(r.path, DIT);
      assert.ok(logs.some((l) => l.includes('ignored the range')));
    });

    it('gives up after the retries with a network error that says re-running resumes, keeping the partial file', async () => {
      hub.dropAfter(HF.repo, DIT, 100_000, 3);
      const it0 = item(HF, DIT);
      const err = await expectDownloadError(downloadFiles([it0], opts({ retries: 2 })));
      assert.equal(err.code, 'network');
      assert.match(err.message, /flux-tiny\.safetensors/);
      assert.match(err.message, /run the download again: it resumes/);
      assert.ok(err.message.includes(`${it0.dest}.part`));
      assert.equal(fs.statSync(`${it0.dest}.part`).size, 300_000);
      assert.ok(fs.existsSync(`${it0.dest}.part.json`));
      // … and it does.
      const [r] = await downloadFiles([it0], opts());
      assert.equal(r.resumedFrom, 300_000);
      assertSameAsFixture(r.path, DIT);
    });

    it('cancel stops promptly, keeps .part and sidecar, and a later call resumes', async () => {
      hub.bytesPerSecond = 400_000; // ≈ 2.5 s for the whole file
      const ac = new AbortController();
      const it0 = item(HF, DIT);
      const t0 = Date.now();
      const err = await expectDownloadError(
        downloadFiles(
          [it0],
          opts({
            signal: ac.signal,
            onProgress: (p) => {
              if (p.bytes >= 50_000) ac.abort();
            },
            progressIntervalMs: 0,
          }),
        ),
      );
      assert.equal(err.code, 'cancelled');
      assert.match(err.message, /resumes/);
      assert.ok(Date.now() - t0 < 1500, 'cancel is prompt');
      const partSize = fs.statSync(`${it0.dest}.part`).size;
      assert.ok(partSize >= 50_000 && partSize < fixture(DIT).length, `part has ${partSize} bytes`);
      const side = JSON.parse(fs.readFileSync(`${it0.dest}.part.json`, 'utf8'));
      assert.equal(side.sha256, sha256(fixture(DIT)));
      assert.equal(side.size, fixture(DIT).length);
      assert.ok(!fs.existsSync(it0.dest));

      hub.bytesPerSecond = 0;
      const [r] = await downloadFiles([it0], opts());
      const reqs = hub.contentRequests(HF.repo, DIT);
      assert.equal(reqs[reqs.length - 1].range, `bytes=${partSize}-`);
      assert.equal(r.resumedFrom, partSize);
      assertSameAsFixture(r.path, DIT);
      assert.deepEqual(leftovers(), []);
    });

    it('an already aborted signal fails at once with cancelled', async () => {
      const ac = new AbortController();
      ac.abort();
      const err = await expectDownloadError(downloadFiles([item(HF, DIT)], opts({ signal: ac.signal })));
      assert.equal(err.code, 'cancelled');
      assert.equal(hub.requests.length, 0);
    });

    it('verifies a complete part when the server answers 416 to the resume', async () => {
      // A first run cancelled mid-way leaves a .part and its sidecar…
      hub.bytesPerSecond = 400_000;
      const ac = new AbortController();
      const it0 = item(HF, DIT);
      await expectDownloadError(
        downloadFiles([it0], opts({ signal: ac.signal, progressIntervalMs: 0, onProgress: (p) => p.bytes > 0 && ac.abort() })),
      );
      hub.bytesPerSecond = 0;
      // … which then got all its bytes (as if the process died between the last byte and the rename).
      const data = fixture(DIT);
      const have = fs.statSync(`${it0.dest}.part`).size;
      fs.appendFileSync(`${it0.dest}.part`, data.subarray(have));
      // Without a listing the expected size is unknown, so the downloader asks for the rest.
      hub.failListing(1);
      hub.requests.length = 0;
      const [r] = await downloadFiles([{ repo: HF, path: DIT, dest: it0.dest }], opts());
      const reqs = hub.contentRequests(HF.repo, DIT);
      assert.deepEqual(reqs.map((x) => [x.range, x.status]), [[`bytes=${data.length}-`, 416]]);
      assert.equal(r.sha256, sha256(data), 'verified against X-Linked-Etag');
      assert.equal(r.resumedFrom, data.length);
      assertSameAsFixture(r.path, DIT);
    });

    it('discards a partial file whose sidecar belongs to another remote file', async () => {
      const it0 = item(HF, DIT);
      fs.mkdirSync(path.dirname(it0.dest), { recursive: true });
      fs.writeFileSync(`${it0.dest}.part`, Buffer.alloc(1000, 7));
      fs.writeFileSync(`${it0.dest}.part.json`, JSON.stringify({ version: 1, url: 'https://elsewhere/x', size: 5 }));
      const [r] = await downloadFiles([it0], opts());
      assert.equal(r.resumedFrom, undefined);
      assert.equal(hub.contentRequests(HF.repo, DIT)[0].range, undefined);
      assertSameAsFixture(r.path, DIT);
    });
  });

  // ─── checksums ────────────────────────────────────────────────────────────────────────────────

  describe('checksums', () => {
    it('a checksum failure is retried once from zero and then succeeds', async () => {
      hub.corrupt(HF.repo, DIT, 1);
      const [r] = await downloadFiles([item(HF, DIT)], opts());
      const reqs = hub.contentRequests(HF.repo, DIT);
      assert.equal(reqs.length, 2);
      assert.equal(reqs[1].range, undefined, 'the retry starts from zero');
      assert.equal(r.sha256, sha256(fixture(DIT)));
      assertSameAsFixture(r.path, DIT);
      assert.deepEqual(leftovers(), []);
      assert.ok(logs.some((l) => l.startsWith('warn:') && l.includes('sha256 check failed')));
    });

    it('a second checksum failure keeps the data as .corrupt and fails with code checksum', async () => {
      hub.corrupt(MS.repo, DIT);
      const it0 = item(MS, DIT);
      const err = await expectDownloadError(downloadFiles([it0], opts()));
      assert.equal(err.code, 'checksum');
      assert.ok(err.message.includes(`${it0.dest}.corrupt`), err.message);
      assert.ok(err.message.includes(it0.dest));
      assert.match(err.message, /twice/);
      assert.equal(fs.statSync(`${it0.dest}.corrupt`).size, fixture(DIT).length);
      assert.ok(!fs.existsSync(it0.dest));
      assert.ok(!fs.existsSync(`${it0.dest}.part`));
      assert.ok(!fs.existsSync(`${it0.dest}.part.json`));
      assert.equal(hub.contentRequests(MS.repo, DIT).length, 2);
    });

    it('a registry size the hub contradicts fails at once as checksum, downloading nothing', async () => {
      const it0 = item(HF, DIT, { size: 1234, sha256: 'ab'.repeat(32) });
      const err = await expectDownloadError(downloadFiles([it0], opts()));
      assert.equal(err.code, 'checksum');
      assert.match(err.message, /987184 bytes on the hub but 1234 were expected/);
      assert.ok(!fs.existsSync(`${it0.dest}.part`));
      // Small files (no X-Linked-Size): the Content-Length tells.
      const err2 = await expectDownloadError(downloadFiles([item(MS, 'flux-tiny.config.json', { size: 5 })], opts()));
      assert.equal(err2.code, 'checksum');
    });

    it('a registry sha256 that does not match fails as checksum, naming the hub’s', async () => {
      const wrong = 'ab'.repeat(32);
      const err = await expectDownloadError(downloadFiles([item(MS, 'flux-tiny.config.json', { sha256: wrong })], opts()));
      assert.equal(err.code, 'checksum');
      assert.match(err.message, /different sha256/);
    });
  });

  // ─── access ───────────────────────────────────────────────────────────────────────────────────

  describe('gated repositories and tokens', () => {
    const gatedItems = (): DownloadItem[] => GATED_FILES.map((p) => item(GATED, p));

    function assertNoToken(err: DownloadError, token: string): void {
      assert.ok(!err.message.includes(token), 'token in message');
      assert.ok(!(err.detail ?? '').includes(token), 'token in detail');
      assert.ok(!JSON.stringify(err).includes(token), 'token in the serialized error');
      assert.ok(!String(err.stack).includes(token), 'token in the stack');
      for (const l of logs) assert.ok(!l.includes(token), `token in log line: ${l}`);
    }

    it('no token: auth-required, with the licence URL and how to set a token', async () => {
      const err = await expectDownloadError(downloadFiles(gatedItems(), opts()));
      assert.equal(err.code, 'auth-required');
      assert.equal(err.status, 401);
      assert.ok(err.message.includes(`${hub.endpoint}/${GATED.repo}`), err.message);
      assert.match(err.message, /gated/);
      assert.match(err.message, /MajicFLUX: Set Hugging Face Token/);
      assert.match(err.message, /HF_TOKEN/);
      assert.ok(hub.requests.every((r) => r.headers.authorization === undefined));
    });

    it('a rejected token: auth-required, pointing at the token settings; the token appears nowhere', async () => {
      const token = 'hf_bad_Zq9SECRETtoken';
      const err = await expectDownloadError(downloadFiles(gatedItems(), opts({ token })));
      assert.equal(err.code, 'auth-required');
      assert.match(err.message, /invalid or expired/);
      assert.ok(err.message.includes(`${hub.endpoint}/settings/tokens`), err.message);
      assertNoToken(err, token);
    });

    it('a token without access: forbidden, with the licence URL; the token appears nowhere', async () => {
      const err = await expectDownloadError(downloadFiles(gatedItems(), opts({ token: TOKEN_NO_ACCESS })));
      assert.equal(err.code, 'forbidden');
      assert.equal(err.status, 403);
      assert.ok(err.message.includes(`${hub.endpoint}/${GATED.repo}`), err.message);
      assert.match(err.message, /licence/);
      assertNoToken(err, TOKEN_NO_ACCESS);
    });

    it('a good token is sent to the hub only, never to the CDN origin', async () => {
      const result = await downloadFiles(gatedItems(), opts({ token: TOKEN_GOOD }));
      result.forEach((r, i) => assertSameAsFixture(r.path, GATED_FILES[i]));
      const hubReqs = hub.requests.filter((r) => r.server === 'hub');
      const cdnReqs = hub.requests.filter((r) => r.server === 'cdn');
      assert.ok(hubReqs.length > 0 && cdnReqs.length > 0);
      assert.ok(hubReqs.every((r) => r.headers.authorization === `Bearer ${TOKEN_GOOD}`));
      assert.ok(cdnReqs.every((r) => r.headers.authorization === undefined));
      for (const l of logs) assert.ok(!l.includes(TOKEN_GOOD), `token in log line: ${l}`);
    });

    it('the token is not sent to ModelScope', async () => {
      await downloadFiles([item(MS, 'flux-tiny.config.json')], opts({ token: TOKEN_GOOD }));
      assert.ok(hub.requests.every((r) => r.headers.authorization === undefined));
    });
  });

  describe('errors', () => {
    it('a missing file: not-found, naming the file and the repository', async () => {
      const err = await expectDownloadError(downloadFiles([item(HF, 'transformer/nope.safetensors')], opts()));
      assert.equal(err.code, 'not-found');
      assert.match(err.message, /"transformer\/nope\.safetensors"/);
      assert.ok(err.message.includes(HF.repo));
      assert.match(err.detail ?? '', /EntryNotFound/);
    });

    it('a missing ModelScope file or repository: not-found', async () => {
      let err = await expectDownloadError(downloadFiles([item(MS, 'nope.json')], opts()));
      assert.equal(err.code, 'not-found');
      assert.match(err.message, /"nope\.json" was not found in ModelScope repository "MAILAND\/majicflus-tiny"/);
      err = await expectDownloadError(downloadFiles([item({ hub: 'modelscope', repo: 'nobody/nothing' }, 'a.json')], opts()));
      assert.equal(err.code, 'not-found');
    });

    it('an unknown Hugging Face repository: 401 without a token, not-found with one', async () => {
      const repo: HubRepo = { hub: 'huggingface', repo: 'nobody/nothing' };
      let err = await expectDownloadError(downloadFiles([item(repo, 'a.json')], opts()));
      assert.equal(err.code, 'auth-required');
      assert.match(err.message, /gated or private, or does not exist/);
      err = await expectDownloadError(downloadFiles([item(repo, 'a.json')], opts({ token: TOKEN_GOOD })));
      assert.equal(err.code, 'not-found');
      assert.ok(err.message.includes('nobody/nothing'));
    });

    it('connection refused: network, naming the host, without retries', async () => {
      const port = await closedPort();
      const t0 = Date.now();
      const err = await expectDownloadError(
        downloadFiles([item(HF, DIT, { size: 10, sha256: 'ab'.repeat(32) })], opts({ endpoints: { huggingface: `http://127.0.0.1:${port}` }, retryDelayMs: 2000 })),
      );
      assert.equal(err.code, 'network');
      assert.ok(err.message.includes(`127.0.0.1:${port}`), err.message);
      assert.match(err.message, /connection refused/);
      assert.ok(Date.now() - t0 < 1500, 'no back-off for a refused connection');
    });

    it('not enough disk space: disk-full before any transfer, in GiB', async () => {
      const seen: string[] = [];
      const err = await expectDownloadError(
        downloadFiles(
          fixtureFiles().map((p) => item(HF, p)),
          opts({
            diskSpace: async (dir) => {
              seen.push(dir);
              return 5 * 1024 ** 2;
            },
          }),
        ),
      );
      assert.equal(err.code, 'disk-full');
      assert.match(err.message, /needs 18\.0 MiB more but only 5\.00 MiB is free/);
      assert.ok(seen.length === 1 && seen[0] === tmp, `free space asked for ${seen.join(', ')}`);
      assert.equal(hub.contentRequests().length, 0);
    });

    it('a folder that cannot be made (a file where it should be) fails before any transfer, naming the folder and why, not with Node\'s error and its stack', async () => {
      const blocked = path.join(tmp, HF.repo, 'transformer');
      fs.mkdirSync(path.dirname(blocked), { recursive: true });
      fs.writeFileSync(blocked, 'a file where the folder goes');
      const err = await expectDownloadError(downloadFiles([item(HF, 'transformer/config.json')], opts()));
      assert.ok(err.message.startsWith(`Could not create the folder ${blocked} for `), err.message);
      assert.match(err.message, /a file is in the way \(where a folder should be\) \((ENOTDIR|EEXIST)\)\. Download into another folder, or fix that one\.$/);
      assert.equal(hub.contentRequests().length, 0);
    });

    it('the real statfs is used by default and passes for small files', async () => {
      const [r] = await downloadFiles([item(HF, 'ae.config.json')], opts());
      assertSameAsFixture(r.path, 'ae.config.json');
      assert.ok(logs.some((l) => l.startsWith('debug:') && l.includes('free')));
    });
  });

  // ─── skip, progress, parallel ─────────────────────────────────────────────────────────────────

  describe('skip, progress and parallel transfers', () => {
    it('skips a complete file (sha256 checked) and re-fetches a damaged one', async () => {
      const items = [item(HF, DIT), item(MS, 'tokenizer/vocab.json')];
      await downloadFiles(items, opts());
      hub.reset();
      const again = await downloadFiles(items, opts());
      assert.deepEqual(again.map((r) => r.skipped), [true, true]);
      assert.equal(again[0].sha256, sha256(fixture(DIT)));
      assert.equal(again[1].sha256, sha256(fixture('tokenizer/vocab.json')));
      assert.equal(hub.contentRequests().length, 0);

      // Same size, different bytes: downloaded again.
      const damaged = fixture(DIT);
      damaged[10] ^= 1;
      fs.writeFileSync(items[0].dest, damaged);
      hub.reset();
      const third = await downloadFiles(items, opts());
      assert.deepEqual(third.map((r) => r.skipped), [undefined, true]);
      assertSameAsFixture(items[0].dest, DIT);
      assert.equal(hub.contentRequests().length, 1);
    });

    it('reports progress: increasing bytes, speed, ETA, and a final event with the total', async () => {
      hub.bytesPerSecond = 8_000_000;
      const events: DownloadProgress[] = [];
      const paths = ['ae.safetensors', DIT, 'tokenizer/merges.txt'];
      const total = paths.reduce((a, p) => a + fixture(p).length, 0);
      await downloadFiles(paths.map((p) => item(HF, p)), opts({ onProgress: (p) => events.push({ ...p }), progressIntervalMs: 100 }));
      assert.ok(events.length >= 5, `${events.length} events`);
      for (let i = 1; i < events.length; i++) {
        assert.ok(events[i].bytes >= events[i - 1].bytes, 'bytes never go back');
        assert.ok(events[i].filesDone >= events[i - 1].filesDone);
      }
      for (const e of events) {
        assert.equal(e.total, total);
        assert.equal(e.files, 3);
        assert.ok(e.bytes <= e.total);
        assert.ok(paths.includes(e.file));
      }
      const last = events[events.length - 1];
      assert.equal(last.bytes, total);
      assert.equal(last.filesDone, 3);
      assert.ok(events.some((e) => e.bytesPerSecond > 1_000_000 && e.etaSeconds !== undefined), 'speed and ETA');
    });

    it('counts resumed bytes in the progress', async () => {
      hub.dropAfter(HF.repo, DIT, 400_000);
      const events: DownloadProgress[] = [];
      await downloadFiles([item(HF, DIT)], opts({ onProgress: (p) => events.push({ ...p }), progressIntervalMs: 0 }));
      assert.equal(events[events.length - 1].bytes, fixture(DIT).length);
      for (let i = 1; i < events.length; i++) assert.ok(events[i].bytes >= events[i - 1].bytes);
    });

    it('downloads several files at once, up to the concurrency', async () => {
      hub.latencyMs = 150;
      const paths = fixtureFiles().filter((p) => p.endsWith('.json'));
      assert.ok(paths.length >= 6);
      const result = await downloadFiles(paths.map((p) => item(HF, p)), opts({ concurrency: 3 }));
      result.forEach((r, i) => assertSameAsFixture(r.path, paths[i]));
      assert.equal(hub.maxActiveTransfers, 3);
    });

    it('stops the other transfers when one file fails', async () => {
      hub.bytesPerSecond = 500_000; // ae.safetensors alone would take 14 s
      const items = [item(HF, 'ae.safetensors'), item(HF, 'does/not/exist.json')];
      const t0 = Date.now();
      const err = await expectDownloadError(downloadFiles(items, opts({ concurrency: 2 })));
      assert.equal(err.code, 'not-found');
      assert.ok(Date.now() - t0 < 3000, `took ${Date.now() - t0} ms`);
      assert.ok(!fs.existsSync(items[0].dest));
    });

    it('rejects two items with the same destination', async () => {
      const err = await expectDownloadError(downloadFiles([item(HF, DIT), item(MS, DIT, { dest: item(HF, DIT).dest })], opts()));
      assert.match(err.message, /same file/);
    });
  });
});
