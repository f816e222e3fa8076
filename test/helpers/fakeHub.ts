// A local stand-in for Hugging Face and ModelScope, for the downloader's tests: one HTTP listener
// for both hubs' URL layouts (on 127.0.0.1, port 0) and a second one, another origin, playing the
// CDN / storage host that large (LFS) files are redirected to. It serves real files (the golden
// tiny model) and can misbehave on demand: drop or stall a connection after N bytes, ignore a
// Range, serve bytes that do not match the advertised sha256, throttle, add latency. Every request
// is logged with its headers so tests can assert on ranges and on where the token went.
//
// Hugging Face, as huggingface.co answers (see src/inference/models/hub.ts):
//   GET /{owner}/{name}/resolve/{rev}/{path}   LFS: 302 → CDN with X-Linked-Etag/-Size, X-Repo-Commit;
//                                              small files: 200; renamed repos: relative 307
//   GET /api/models/{owner}/{name}/tree/{rev}?recursive=true[&cursor=N]   paginated with Link
//   gated repos: no token 401 GatedRepo, unknown token 401 "Invalid credentials", TOKEN_NO_ACCESS 403
// ModelScope:
//   GET /api/v1/models/{owner}/{name}/repo/files?Revision=&Recursive=   {Code, Success, Data: {Files}}
//   GET /api/v1/models/{owner}/{name}/repo?Revision=&FilePath=          LFS: 302 → storage; else 200

import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as http from 'node:http';
import type { AddressInfo } from 'node:net';
import * as path from 'node:path';

export const FIXTURE_MODELS = path.resolve(__dirname, '..', 'fixtures', 'flux-tiny', 'models');

/** Tokens the fake Hugging Face knows: full access, and valid but without access to gated repos. */
export const TOKEN_GOOD = 'hf_good';
export const TOKEN_NO_ACCESS = 'hf_noaccess';

export const FAKE_COMMIT = '0123456789abcdef0123456789abcdef01234567';

export type FakeHubName = 'huggingface' | 'modelscope';

export interface FakeFileSpec {
  /** Path inside the repository. */
  path: string;
  /** The payload (default: the file at `path` under FIXTURE_MODELS). */
  data?: Buffer;
  /** Served through the CDN with X-Linked-* headers (default: .safetensors files and files ≥ 1 MiB). */
  lfs?: boolean;
}

export interface FakeRepoSpec {
  hub: FakeHubName;
  repo: string;
  /** Paths under FIXTURE_MODELS, or full specs. */
  files: (string | FakeFileSpec)[];
  gated?: boolean;
  /** Old names that answer a relative 307 to this repository (Hugging Face). */
  formerNames?: string[];
}

export interface FakeFile {
  hub: FakeHubName;
  repo: string;
  path: string;
  data: Buffer;
  size: number;
  sha256: string;
  /** git blob sha1, as Hugging Face's `oid` for non-LFS files and ETag of small files. */
  gitOid: string;
  lfs: boolean;
  id: number;
}

export interface RequestLogEntry {
  server: 'hub' | 'cdn';
  method: string;
  url: string;
  headers: http.IncomingHttpHeaders;
  status?: number;
  /** The file whose bytes this request served, as "repo:path". */
  file?: string;
  range?: string;
}

interface Fault {
  kind: 'drop' | 'stall' | 'corrupt' | 'ignore-range';
  afterBytes: number;
  remaining: number;
}

function gitBlobSha1(data: Buffer): string {
  return createHash('sha1').update(`blob ${data.length}\0`).update(data).digest('hex');
}

/** Every file under FIXTURE_MODELS, as repository paths ("text_encoder/config.json"). */
export function fixtureFiles(dir = FIXTURE_MODELS): string[] {
  const out: string[] = [];
  const walk = (d: string, prefix: string): void => {
    for (const e of fs.readdirSync(d, { withFileTypes: true }).sort((a, b) => a.name.localeCompare(b.name))) {
      if (e.isDirectory()) walk(path.join(d, e.name), `${prefix}${e.name}/`);
      else if (e.isFile()) out.push(`${prefix}${e.name}`);
    }
  };
  walk(dir, '');
  return out;
}

function key(hub: FakeHubName, repo: string): string {
  return `${hub}:${repo}`;
}

function fileKey(f: { repo: string; path: string }): string {
  return `${f.repo}:${f.path}`;
}

export class FakeHub {
  /** Base URL of both hubs (http://127.0.0.1:PORT). */
  endpoint = '';
  /** Base URL of the CDN / storage host: same host, another port, so another origin. */
  cdnEndpoint = '';
  readonly requests: RequestLogEntry[] = [];
  /** Tree entries per page of a Hugging Face listing. */
  pageSize = 5;
  /** Delay before answering a content request, ms. */
  latencyMs = 0;
  /** Bytes per second of content responses (0: unlimited). */
  bytesPerSecond = 0;
  /** Content responses in flight now, and the most at once since the last reset(). */
  activeTransfers = 0;
  maxActiveTransfers = 0;

  private readonly repos = new Map<string, { spec: FakeRepoSpec; files: Map<string, FakeFile> }>();
  private readonly renamed = new Map<string, string>();
  private readonly byId = new Map<number, FakeFile>();
  private readonly faults = new Map<string, Fault[]>();
  private failListings = 0;
  private hubServer?: http.Server;
  private cdnServer?: http.Server;

  private constructor() {}

  static async start(repos: FakeRepoSpec[]): Promise<FakeHub> {
    const hub = new FakeHub();
    let id = 0;
    for (const spec of repos) {
      const files = new Map<string, FakeFile>();
      for (const f of spec.files) {
        const fs0: FakeFileSpec = typeof f === 'string' ? { path: f } : f;
        const data = fs0.data ?? fs.readFileSync(path.join(FIXTURE_MODELS, fs0.path));
        const file: FakeFile = {
          hub: spec.hub,
          repo: spec.repo,
          path: fs0.path,
          data,
          size: data.length,
          sha256: createHash('sha256').update(data).digest('hex'),
          gitOid: gitBlobSha1(data),
          lfs: fs0.lfs ?? (fs0.path.endsWith('.safetensors') || data.length >= 1 << 20),
          id: ++id,
        };
        files.set(file.path, file);
        hub.byId.set(file.id, file);
      }
      hub.repos.set(key(spec.hub, spec.repo), { spec, files });
      for (const old of spec.formerNames ?? []) hub.renamed.set(old, spec.repo);
    }
    hub.hubServer = http.createServer((req, res) => hub.handle('hub', req, res));
    hub.cdnServer = http.createServer((req, res) => hub.handle('cdn', req, res));
    hub.endpoint = await listen(hub.hubServer);
    hub.cdnEndpoint = await listen(hub.cdnServer);
    return hub;
  }

  async close(): Promise<void> {
    for (const s of [this.hubServer, this.cdnServer]) {
      if (!s) continue;
      s.closeAllConnections();
      await new Promise<void>((resolve) => s.close(() => resolve()));
    }
  }

  /** Forget faults, throttling, latency and the request log. */
  reset(): void {
    this.faults.clear();
    this.requests.length = 0;
    this.latencyMs = 0;
    this.bytesPerSecond = 0;
    this.maxActiveTransfers = this.activeTransfers;
    this.failListings = 0;
    this.pageSize = 5;
  }

  file(hub: FakeHubName, repo: string, p: string): FakeFile {
    const f = this.repos.get(key(hub, repo))?.files.get(p);
    if (!f) throw new Error(`fake hub: no ${hub} file ${repo}:${p}`);
    return f;
  }

  /** The next `times` responses with this file's bytes break off after `afterBytes` bytes (connection dropped). */
  dropAfter(repo: string, p: string, afterBytes: number, times = 1): void {
    this.addFault(repo, p, { kind: 'drop', afterBytes, remaining: times });
  }

  /** The next `times` responses with this file's bytes stop sending after `afterBytes` bytes, connection left open. */
  stallAfter(repo: string, p: string, afterBytes: number, times = 1): void {
    this.addFault(repo, p, { kind: 'stall', afterBytes, remaining: times });
  }

  /** The next `times` responses with this file's bytes carry a flipped byte (sha256 no longer matches). */
  corrupt(repo: string, p: string, times = Infinity): void {
    this.addFault(repo, p, { kind: 'corrupt', afterBytes: 0, remaining: times });
  }

  /** The next `times` Range requests for this file are answered 200 with the whole file. */
  ignoreRange(repo: string, p: string, times = 1): void {
    this.addFault(repo, p, { kind: 'ignore-range', afterBytes: 0, remaining: times });
  }

  /** The next `times` listings (both hubs) answer 500. */
  failListing(times = 1): void {
    this.failListings = times;
  }

  /** Logged requests that served (or were to serve) a file's bytes; repo names are unique across both hubs here. */
  contentRequests(repo?: string, p?: string): RequestLogEntry[] {
    return this.requests.filter(
      (r) => r.file !== undefined && (repo === undefined || r.file.startsWith(`${repo}:`)) && (p === undefined || r.file === `${repo}:${p}`),
    );
  }

  private addFault(repo: string, p: string, f: Fault): void {
    const k = `${repo}:${p}`;
    const list = this.faults.get(k) ?? [];
    list.push(f);
    this.faults.set(k, list);
  }

  private takeFault(file: FakeFile, kind: Fault['kind']): Fault | undefined {
    const list = this.faults.get(fileKey(file));
    const f = list?.find((x) => x.kind === kind && x.remaining > 0);
    if (f) f.remaining--;
    return f;
  }

  // ─── routing ────────────────────────────────────────────────────────────────────────────────

  private handle(server: 'hub' | 'cdn', req: http.IncomingMessage, res: http.ServerResponse): void {
    const entry: RequestLogEntry = { server, method: req.method ?? 'GET', url: req.url ?? '/', headers: { ...req.headers } };
    this.requests.push(entry);
    res.on('finish', () => (entry.status = res.statusCode));
    res.on('error', () => undefined);
    const url = new URL(req.url ?? '/', server === 'hub' ? this.endpoint : this.cdnEndpoint);
    try {
      if (server === 'cdn') return this.handleCdn(url, req, res, entry);
      const segs = url.pathname.split('/').filter(Boolean).map(decodeURIComponent);
      if (segs[0] === 'api' && segs[1] === 'v1' && segs[2] === 'models' && segs[5] === 'repo') {
        return this.handleModelScope(segs.slice(3, 5).join('/'), segs[6], url, req, res, entry);
      }
      if (segs[0] === 'api' && segs[1] === 'models' && segs[4] === 'tree') {
        return this.handleHfTree(segs.slice(2, 4).join('/'), segs[5], url, req, res);
      }
      if (segs[2] === 'resolve' && segs.length >= 5) {
        return this.handleHfResolve(segs.slice(0, 2).join('/'), segs[3], segs.slice(4).join('/'), url, req, res, entry);
      }
      sendJson(res, 404, { error: 'Not Found' });
    } catch (err) {
      sendJson(res, 500, { error: String(err) });
    }
  }

  /** Hugging Face's token check: undefined when the request may go on (a response was sent otherwise). */
  private hfToken(req: http.IncomingMessage, res: http.ServerResponse): { token?: string } | undefined {
    const auth = req.headers.authorization;
    if (auth === undefined) return {};
    const token = /^Bearer (.+)$/.exec(auth)?.[1];
    if (token === TOKEN_GOOD || token === TOKEN_NO_ACCESS) return { token };
    res.setHeader('X-Error-Message', 'Invalid credentials in Authorization header');
    sendJson(res, 401, { error: 'Invalid credentials in Authorization header' });
    return undefined;
  }

  private hfRepoNotFound(res: http.ServerResponse, authed: boolean): void {
    res.setHeader('X-Error-Code', 'RepoNotFound');
    res.setHeader('X-Error-Message', 'Repository not found');
    sendJson(res, authed ? 404 : 401, { error: 'Repository not found' });
  }

  private handleHfTree(repo: string, rev: string, url: URL, req: http.IncomingMessage, res: http.ServerResponse): void {
    const auth = this.hfToken(req, res);
    if (!auth) return;
    if (this.failListings > 0) {
      this.failListings--;
      return sendJson(res, 500, { error: 'Internal Error' });
    }
    const r = this.repos.get(key('huggingface', repo));
    if (!r) return this.hfRepoNotFound(res, auth.token !== undefined);
    const entries: unknown[] = [];
    const dirs = new Set<string>();
    for (const f of [...r.files.values()].sort((a, b) => a.path.localeCompare(b.path))) {
      const parts = f.path.split('/');
      for (let i = 1; i < parts.length; i++) {
        const d = parts.slice(0, i).join('/');
        if (!dirs.has(d)) {
          dirs.add(d);
          entries.push({ type: 'directory', oid: gitBlobSha1(Buffer.from(d)), size: 0, path: d });
        }
      }
      entries.push({
        type: 'file',
        oid: f.gitOid,
        size: f.size,
        path: f.path,
        ...(f.lfs ? { lfs: { oid: f.sha256, size: f.size, pointerSize: 134 } } : {}),
      });
    }
    const cursor = Number(url.searchParams.get('cursor') ?? 0);
    const page = entries.slice(cursor, cursor + this.pageSize);
    if (cursor + this.pageSize < entries.length) {
      const next = new URL(url.toString());
      next.searchParams.set('cursor', String(cursor + this.pageSize));
      res.setHeader('Link', `<${next.toString()}>; rel="next"`);
    }
    void rev;
    sendJson(res, 200, page);
  }

  private handleHfResolve(
    repo: string,
    rev: string,
    p: string,
    url: URL,
    req: http.IncomingMessage,
    res: http.ServerResponse,
    entry: RequestLogEntry,
  ): void {
    const auth = this.hfToken(req, res);
    if (!auth) return;
    const renamedTo = this.renamed.get(repo);
    if (renamedTo) {
      const rest = url.pathname.split('/').slice(3).join('/');
      res.setHeader('Location', `/${renamedTo}/${rest}${url.search}`);
      res.statusCode = 307;
      return void res.end();
    }
    const r = this.repos.get(key('huggingface', repo));
    if (!r) return this.hfRepoNotFound(res, auth.token !== undefined);
    if (r.spec.gated && auth.token !== TOKEN_GOOD) {
      res.setHeader('X-Error-Code', 'GatedRepo');
      if (auth.token === undefined) {
        const msg = `Access to model ${repo} is restricted. You must have access to it and be authenticated to access it. Please log in.`;
        res.setHeader('X-Error-Message', msg);
        return sendJson(res, 401, { error: msg });
      }
      const msg = `Access to model ${repo} is restricted and you are not in the authorized list. Visit ${this.endpoint}/${repo} to ask for access.`;
      res.setHeader('X-Error-Message', msg);
      return sendJson(res, 403, { error: msg });
    }
    const f = r.files.get(p);
    if (!f) {
      res.setHeader('X-Error-Code', 'EntryNotFound');
      res.setHeader('X-Error-Message', 'Entry not found');
      return sendJson(res, 404, { error: 'Entry not found' });
    }
    res.setHeader('X-Repo-Commit', FAKE_COMMIT);
    if (f.lfs) {
      res.setHeader('X-Linked-Etag', `"${f.sha256}"`);
      res.setHeader('X-Linked-Size', String(f.size));
      res.setHeader('ETag', `"${f.sha256}"`);
      res.setHeader('Location', `${this.cdnEndpoint}/repos/${f.id}/${encodeURIComponent(path.basename(f.path))}?X-Amz-Signature=fake${Date.now()}`);
      res.statusCode = 302;
      return void res.end(`Found. Redirecting to ${this.cdnEndpoint}`);
    }
    void rev;
    res.setHeader('ETag', `"${f.gitOid}"`);
    this.serveContent(f, req, res, entry);
  }

  private handleModelScope(
    repo: string,
    sub: string | undefined,
    url: URL,
    req: http.IncomingMessage,
    res: http.ServerResponse,
    entry: RequestLogEntry,
  ): void {
    const r = this.repos.get(key('modelscope', repo));
    if (sub === 'files') {
      if (this.failListings > 0) {
        this.failListings--;
        return sendJson(res, 500, { Code: 500, Success: false, Message: 'internal error' });
      }
      if (!r) return sendJson(res, 404, { Code: 10010205001, Success: false, Message: `model ${repo} not exist` });
      const files: unknown[] = [];
      const dirs = new Set<string>();
      for (const f of r.files.values()) {
        const parts = f.path.split('/');
        for (let i = 1; i < parts.length; i++) {
          const d = parts.slice(0, i).join('/');
          if (!dirs.has(d)) {
            dirs.add(d);
            files.push({ Name: parts[i - 1], Path: d, Type: 'tree', Size: 0, Sha256: '', IsLFS: false });
          }
        }
        files.push({
          Name: path.basename(f.path),
          Path: f.path,
          Type: 'blob',
          Size: f.size,
          Sha256: f.sha256,
          IsLFS: f.lfs,
          Revision: url.searchParams.get('Revision') ?? 'master',
          CommitId: FAKE_COMMIT,
          Mode: '33188',
        });
      }
      return sendJson(res, 200, { Code: 200, Success: true, Message: 'success', Data: { Files: files } });
    }
    if (sub !== undefined) return sendJson(res, 404, { Code: 404, Success: false, Message: 'not found' });
    if (!r) return sendJson(res, 404, { Code: 10010205001, Success: false, Message: `model ${repo} not exist` });
    const p = url.searchParams.get('FilePath') ?? '';
    const f = r.files.get(p);
    if (!f) return sendJson(res, 404, { Code: 10010205004, Success: false, Message: `file ${p} not found` });
    if (f.lfs) {
      res.setHeader('Location', `${this.cdnEndpoint}/repos/${f.id}/${encodeURIComponent(path.basename(f.path))}?Expires=9999999999&Signature=fake`);
      res.statusCode = 302;
      return void res.end();
    }
    this.serveContent(f, req, res, entry);
  }

  private handleCdn(url: URL, req: http.IncomingMessage, res: http.ServerResponse, entry: RequestLogEntry): void {
    const m = /^\/repos\/(\d+)\//.exec(url.pathname);
    const f = m ? this.byId.get(Number(m[1])) : undefined;
    if (!f) {
      res.statusCode = 404;
      return void res.end('NoSuchKey');
    }
    if (req.headers.authorization !== undefined) {
      // What S3 answers to a presigned URL that also carries an Authorization header.
      entry.file = fileKey(f);
      res.statusCode = 400;
      return void res.end('InvalidArgument: Only one auth mechanism allowed');
    }
    res.setHeader('ETag', `"${f.sha256}"`);
    this.serveContent(f, req, res, entry);
  }

  // ─── content ────────────────────────────────────────────────────────────────────────────────

  private serveContent(f: FakeFile, req: http.IncomingMessage, res: http.ServerResponse, entry: RequestLogEntry): void {
    entry.file = fileKey(f);
    entry.range = req.headers.range;
    this.activeTransfers++;
    this.maxActiveTransfers = Math.max(this.maxActiveTransfers, this.activeTransfers);
    let ended = false;
    const end = (): void => {
      if (!ended) {
        ended = true;
        this.activeTransfers--;
      }
    };
    res.on('close', end);
    const go = (): void => {
      let data = f.data;
      if (this.takeFault(f, 'corrupt')) {
        data = Buffer.from(f.data);
        data[Math.floor(data.length / 2)] ^= 0xff;
      }
      let start = 0;
      let last = data.length - 1;
      const range = req.headers.range;
      const m = range ? /^bytes=(\d+)-(\d*)$/.exec(range) : null;
      res.setHeader('Accept-Ranges', 'bytes');
      res.setHeader('Content-Type', 'application/octet-stream');
      if (m && !this.takeFault(f, 'ignore-range')) {
        start = Number(m[1]);
        if (m[2]) last = Math.min(last, Number(m[2]));
        if (start >= data.length || start > last) {
          res.setHeader('Content-Range', `bytes */${data.length}`);
          res.statusCode = 416;
          return void res.end();
        }
        res.statusCode = 206;
        res.setHeader('Content-Range', `bytes ${start}-${last}/${data.length}`);
      } else {
        res.statusCode = 200;
      }
      res.setHeader('Content-Length', String(last - start + 1));
      const drop = this.takeFault(f, 'drop');
      const stall = drop ? undefined : this.takeFault(f, 'stall');
      void this.stream(res, data.subarray(start, last + 1), drop, stall);
    };
    if (this.latencyMs > 0) setTimeout(go, this.latencyMs);
    else go();
  }

  private async stream(res: http.ServerResponse, body: Buffer, drop?: Fault, stall?: Fault): Promise<void> {
    const cut = drop?.afterBytes ?? stall?.afterBytes;
    const limit = cut !== undefined ? Math.min(cut, body.length) : body.length;
    const chunk = this.bytesPerSecond > 0 ? Math.max(1024, Math.floor(this.bytesPerSecond / 50)) : 64 * 1024;
    let sent = 0;
    while (sent < limit) {
      if (res.destroyed) return;
      const n = Math.min(chunk, limit - sent);
      const ok = res.write(body.subarray(sent, sent + n));
      sent += n;
      if (!ok) {
        await new Promise<void>((resolve) => {
          const done = (): void => {
            res.off('drain', done);
            res.off('close', done);
            resolve();
          };
          res.on('drain', done);
          res.on('close', done);
        });
      }
      if (this.bytesPerSecond > 0) await delay((n / this.bytesPerSecond) * 1000);
    }
    if (drop) {
      // Let the client read what was sent, then cut the connection mid-body.
      await delay(100);
      res.socket?.destroy();
      return;
    }
    if (stall) return; // hold the connection open, sending nothing, until the client gives up
    res.end();
  }
}

function delay(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

function sendJson(res: http.ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body);
  res.statusCode = status;
  res.setHeader('Content-Type', 'application/json; charset=utf-8');
  res.setHeader('Content-Length', String(Buffer.byteLength(text)));
  res.end(text);
}

function listen(server: http.Server): Promise<string> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as AddressInfo;
      resolve(`http://127.0.0.1:${port}`);
    });
  });
}
