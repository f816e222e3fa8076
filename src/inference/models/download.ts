// Downloads model files from Hugging Face or ModelScope: resumable (HTTP Range, with a sidecar that
// says which remote file a `.part` belongs to), several files at once, sha256-verified (the hubs
// publish it: the LFS oid, ModelScope's Sha256, X-Linked-Etag), disk space checked first, and moved
// into place atomically. Errors are DownloadErrors whose message tells the user what to do; the
// access token never appears in a message, a detail or a log line.
//
// Files on disk, for a destination D:
//   D.part        the bytes fetched so far (resumed with `Range: bytes=<size>-`)
//   D.part.json   the sidecar: {url, size, sha256, etag} of the remote file the part belongs to
//   D.corrupt     a download that failed its sha256 check twice, kept for inspection

import { createHash, Hash } from 'node:crypto';
import * as fs from 'node:fs';
import * as fsp from 'node:fs/promises';
import * as path from 'node:path';
import { formatBytes } from '../../shared/bytes';
import type { DownloadItem, DownloadProgress, DownloadResult, HubName } from '../../shared/models';
import { errorText } from '../../shared/api';
import {
  asSha256,
  discardBody,
  DownloadError,
  endpointFor,
  fileUrl,
  HUB_LABELS,
  hubFetch,
  HubResponse,
  httpError,
  isAbortError,
  isRetryableStatus,
  listRepoFiles,
  NetworkFailure,
  networkError,
  RemoteFile,
  safeHost,
  toNetworkFailure,
} from './hub';

export { DownloadError } from './hub';

export type LogLevel = 'debug' | 'info' | 'warn' | 'error';

export interface DownloadOptions {
  /** Hugging Face access token: sent to the Hugging Face endpoint's origin only, never logged. */
  token?: string;
  /** Base URLs of the hubs (mirrors, tests); default DEFAULT_ENDPOINTS. */
  endpoints?: Partial<Record<HubName, string>>;
  signal?: AbortSignal;
  onProgress?(p: DownloadProgress): void;
  log?(level: LogLevel, message: string): void;
  /** Files fetched at once (default 4). */
  concurrency?: number;
  /** Free bytes in a folder (default: fs.statfs). For tests and unusual file systems. */
  diskSpace?(dir: string): Promise<number>;
  /** Automatic resumes after a transient network failure, per file (default 5). */
  retries?: number;
  /** First back-off delay after a transient failure, doubled each time (default 1000 ms). */
  retryDelayMs?: number;
  /** A transfer that receives nothing for this long is dropped and resumed (default 60000 ms). */
  stallTimeoutMs?: number;
  /** Least interval between two progress events (default 250 ms). */
  progressIntervalMs?: number;
}

export type DownloadedFile = DownloadResult['files'][number];

/** Free space kept on top of what the files need. */
const DISK_MARGIN = 64 * 1024 * 1024;
const SIDECAR_VERSION = 1;
/** Bytes an attempt must receive before its failure no longer counts against the retries. */
const PROGRESS_RESETS_RETRIES = 16 * 1024 * 1024;
const GIB = 1024 ** 3;

interface Sidecar {
  version: number;
  url: string;
  size?: number;
  sha256?: string;
  etag?: string;
  commit?: string;
}

interface Job {
  index: number;
  item: DownloadItem;
  endpoint: string;
  url: string;
  size?: number;
  sha256?: string;
  /** The sha256 the hub advertised when it differs from the expected one (outdated registry). */
  advertisedSha256?: string;
}

interface Ctx {
  opts: DownloadOptions;
  token?: string;
  /** Aborted when the user cancels or another file failed. */
  signal: AbortSignal;
  log(level: LogLevel, message: string): void;
  progress: ProgressTracker;
}

// ─── internal failures ──────────────────────────────────────────────────────────────────────────

/** A transfer that broke off and can be resumed. */
class TransientFailure extends Error {
  constructor(
    readonly reason: string,
    readonly host: string,
    /** No connection was made (refused, DNS…). */
    readonly connect = false,
    readonly status?: number,
    readonly original?: unknown,
  ) {
    super(reason);
  }
}

class ChecksumMismatch extends Error {
  constructor(
    readonly expected: string,
    readonly actual: string,
    readonly bytes: number,
    readonly expectedBytes?: number,
  ) {
    super(`sha256 ${actual} ≠ ${expected}`);
  }
}

/** The download was stopped: by the user, or because another file failed. */
class Stopped extends Error {}

// ─── entry point ────────────────────────────────────────────────────────────────────────────────

/**
 * Downloads `items` (several at once), each to its `dest`, verifying sizes and sha256 sums.
 * Returns one entry per item, in order. Throws a DownloadError (the first failure; the other
 * transfers are stopped and their partial files kept for a later resume).
 */
export async function downloadFiles(items: DownloadItem[], opts: DownloadOptions = {}): Promise<DownloadedFile[]> {
  const token = opts.token?.trim() || undefined;
  const scrub = (s: string): string => (token ? s.split(token).join('<token>') : s);
  const log = (level: LogLevel, message: string): void => {
    try {
      opts.log?.(level, scrub(message));
    } catch {
      // a logger that throws must not break the download
    }
  };
  const inner = new AbortController();
  const onUserAbort = (): void => inner.abort();
  if (opts.signal?.aborted) throw cancelledError();
  opts.signal?.addEventListener('abort', onUserAbort, { once: true });

  const progress = new ProgressTracker(items, opts);
  const ctx: Ctx = { opts, token, signal: inner.signal, log, progress };
  try {
    const jobs = await prepareJobs(ctx, items);
    await checkDiskSpace(ctx, jobs);
    progress.emit(true);

    const results: DownloadedFile[] = new Array(jobs.length);
    let firstError: unknown;
    let next = 0;
    const worker = async (): Promise<void> => {
      while (firstError === undefined && next < jobs.length) {
        const job = jobs[next++];
        try {
          results[job.index] = await runJob(ctx, job);
          progress.fileDone(job.index);
        } catch (err) {
          if (firstError === undefined) {
            firstError = err;
            inner.abort();
          }
        }
      }
    };
    const concurrency = Math.max(1, Math.floor(opts.concurrency ?? 4));
    await Promise.all(Array.from({ length: Math.min(concurrency, jobs.length) }, worker));
    if (firstError !== undefined) throw firstError;
    progress.emit(true);
    return results;
  } catch (err) {
    throw finalError(ctx, err, scrub);
  } finally {
    opts.signal?.removeEventListener('abort', onUserAbort);
  }
}

function cancelledError(): DownloadError {
  return new DownloadError(
    'cancelled',
    'The download was cancelled. What was fetched so far is kept: downloading again resumes where it stopped.',
  );
}

/** The error downloadFiles throws: always a DownloadError, with the token scrubbed out. */
function finalError(ctx: Ctx, err: unknown, scrub: (s: string) => string): DownloadError {
  let e: DownloadError;
  if (ctx.opts.signal?.aborted && !(err instanceof DownloadError && err.code !== 'cancelled')) e = cancelledError();
  else if (err instanceof DownloadError) e = err;
  else if (err instanceof Stopped) e = cancelledError();
  else {
    e = new DownloadError(
      'http',
      `The download failed: ${errorText(err)}`,
      err instanceof Error ? err.stack : undefined,
    );
  }
  const message = scrub(e.message);
  const detail = e.detail !== undefined ? scrub(e.detail) : undefined;
  if (message !== e.message || detail !== e.detail) e = new DownloadError(e.code, message, detail, e.status);
  ctx.log(e.code === 'cancelled' ? 'info' : 'error', `${e.message}${e.detail ? ` [${e.detail}]` : ''}`);
  return e;
}

// ─── preparation: expected sizes and sums, disk space ───────────────────────────────────────────

async function prepareJobs(ctx: Ctx, items: DownloadItem[]): Promise<Job[]> {
  const listings = new Map<string, Promise<Map<string, RemoteFile> | undefined>>();
  const jobs = items.map((item, index): Job => {
    if (!path.isAbsolute(item.dest)) throw new DownloadError('http', `Download destination must be an absolute path: ${item.dest}`);
    const endpoint = endpointFor(item.repo, ctx.opts.endpoints?.[item.repo.hub]);
    return {
      index,
      item,
      endpoint,
      url: fileUrl(item.repo, item.path, endpoint),
      size: item.size,
      sha256: asSha256(item.sha256),
    };
  });
  const dests = new Set<string>();
  for (const job of jobs) {
    const d = path.resolve(job.item.dest);
    if (dests.has(d)) throw new DownloadError('http', `Two downloads go to the same file: ${d}`);
    dests.add(d);
  }
  const needListing = jobs.filter((j) => j.size === undefined || j.sha256 === undefined);
  for (const job of needListing) {
    const r = job.item.repo;
    const key = `${r.hub}\n${job.endpoint}\n${r.repo}\n${r.revision ?? ''}`;
    if (!listings.has(key)) {
      listings.set(
        key,
        listRepoFiles(r, { endpoint: job.endpoint, token: ctx.token, signal: ctx.signal }).then(
          (files) => {
            ctx.log('debug', `${HUB_LABELS[r.hub]} lists ${files.length} files in ${r.repo}`);
            return new Map(files.map((f) => [f.path, f]));
          },
          (err: unknown) => {
            if (ctx.signal.aborted) throw new Stopped();
            // Not fatal: the download itself reports what is wrong (gated, not found, offline).
            ctx.log('warn', `Could not list the files of ${r.repo}: ${err instanceof DownloadError ? `${err.message} [${err.detail}]` : String(err)}`);
            return undefined;
          },
        ),
      );
    }
  }
  await Promise.all(
    needListing.map(async (job) => {
      const r = job.item.repo;
      const listing = await listings.get(`${r.hub}\n${job.endpoint}\n${r.repo}\n${r.revision ?? ''}`);
      const f = listing?.get(job.item.path.replace(/^\/+/, ''));
      if (!f) return;
      if (job.size === undefined) job.size = f.size;
      else if (job.size !== f.size) ctx.log('warn', `${job.item.path}: expected ${job.size} bytes but ${r.repo} lists ${f.size}`);
      if (job.sha256 === undefined) job.sha256 = f.sha256;
      else if (f.sha256 && f.sha256 !== job.sha256) {
        job.advertisedSha256 = f.sha256;
        ctx.log('warn', `${job.item.path}: expected sha256 ${job.sha256} but ${r.repo} lists ${f.sha256}`);
      }
    }),
  );
  for (const job of jobs) ctx.progress.setTotal(job.index, job.size);
  return jobs;
}

async function statOrUndefined(p: string): Promise<fs.Stats | undefined> {
  try {
    return await fsp.stat(p);
  } catch {
    return undefined;
  }
}

async function nearestExistingDir(p: string): Promise<string> {
  let dir = p;
  for (;;) {
    const st = await statOrUndefined(dir);
    if (st?.isDirectory()) return dir;
    const up = path.dirname(dir);
    if (up === dir) return dir;
    dir = up;
  }
}

async function freeBytes(ctx: Ctx, dir: string): Promise<number | undefined> {
  try {
    if (ctx.opts.diskSpace) return await ctx.opts.diskSpace(dir);
    const s = await fsp.statfs(dir);
    return Number(s.bavail) * Number(s.bsize);
  } catch (err) {
    ctx.log('debug', `Could not read the free space of ${dir}: ${String(err)}`);
    return undefined;
  }
}


/** Fails before any transfer when a destination's file system cannot hold what is still to fetch. */
async function checkDiskSpace(ctx: Ctx, jobs: Job[]): Promise<void> {
  const byDevice = new Map<string, { dir: string; need: number }>();
  for (const job of jobs) {
    if (job.size === undefined) continue;
    const dest = job.item.dest;
    const st = await statOrUndefined(dest);
    if (st?.isFile() && st.size === job.size) continue; // most likely complete (verified later)
    const part = await statOrUndefined(`${dest}.part`);
    const have = part?.isFile() && part.size <= job.size ? part.size : 0;
    const need = job.size - have;
    if (need <= 0) continue;
    const dir = await nearestExistingDir(path.dirname(dest));
    const dev = String((await statOrUndefined(dir))?.dev ?? dir);
    const e = byDevice.get(dev) ?? { dir, need: 0 };
    e.need += need;
    byDevice.set(dev, e);
  }
  for (const { dir, need } of byDevice.values()) {
    const free = await freeBytes(ctx, dir);
    if (free === undefined) continue;
    ctx.log('debug', `${dir}: ${formatBytes(need)} to fetch, ${formatBytes(free)} free`);
    if (need + DISK_MARGIN > free) {
      throw new DownloadError(
        'disk-full',
        `Not enough disk space in ${dir}: the download needs ${formatBytes(need)} more but only ${formatBytes(free)} is free. ` +
          `Free some space or choose another models folder, then try again.`,
        `need ${need} bytes + ${DISK_MARGIN} margin, free ${free} bytes`,
      );
    }
  }
}

// ─── one file ───────────────────────────────────────────────────────────────────────────────────

function describe(job: Job): string {
  return `"${job.item.path}" from ${HUB_LABELS[job.item.repo.hub]} repository "${job.item.repo.repo}"`;
}

async function runJob(ctx: Ctx, job: Job): Promise<DownloadedFile> {
  if (ctx.signal.aborted) throw new Stopped();
  const existing = await checkExisting(ctx, job);
  if (existing) return existing;
  await fsp.mkdir(path.dirname(job.item.dest), { recursive: true });

  const retries = Math.max(0, ctx.opts.retries ?? 5);
  const baseDelay = ctx.opts.retryDelayMs ?? 1000;
  let transient = 0;
  let checksumFailures = 0;
  let receivedAny = false;
  for (;;) {
    let received = 0;
    try {
      return await attempt(ctx, job, (n) => {
        receivedAny = true;
        received += n;
      });
    } catch (err) {
      if (err instanceof ChecksumMismatch) {
        checksumFailures++;
        if (checksumFailures === 1) {
          ctx.log('warn', `${job.item.path}: sha256 check failed (${err.message}); downloading it again from the start`);
          await removeQuietly(partPath(job), sidecarPath(job));
          ctx.progress.setBytes(job.index, 0);
          continue;
        }
        throw await keepCorrupt(ctx, job, err);
      }
      const retryable =
        (err instanceof TransientFailure && (!err.connect || receivedAny)) ||
        (err instanceof DownloadError && isRetryableStatus(err.status));
      // A transfer that moved forward by a good amount before breaking gets a fresh retry budget.
      if (received >= PROGRESS_RESETS_RETRIES) transient = 0;
      if (retryable && transient < retries && !ctx.signal.aborted) {
        transient++;
        const delay = baseDelay * 2 ** (transient - 1);
        ctx.log(
          'warn',
          `${job.item.path}: ${errorText(err)}; resuming in ${(delay / 1000).toFixed(1)} s (attempt ${transient + 1} of ${retries + 1})`,
        );
        await sleep(delay, ctx.signal);
        continue;
      }
      throw await toUserError(ctx, job, err, transient);
    }
  }
}

function partPath(job: Job): string {
  return `${job.item.dest}.part`;
}
function sidecarPath(job: Job): string {
  return `${job.item.dest}.part.json`;
}

async function toUserError(ctx: Ctx, job: Job, err: unknown, attempts: number): Promise<unknown> {
  if (err instanceof Stopped || ctx.signal.aborted) return new Stopped();
  if (err instanceof DownloadError) return err;
  if (err instanceof TransientFailure) {
    if (err.connect && err.original instanceof NetworkFailure) return networkError(err.original, describe(job));
    const kept = (await statOrUndefined(partPath(job)))?.size ?? 0;
    return new DownloadError(
      'network',
      `The download of ${describe(job)} from ${err.host} was interrupted (${err.reason})` +
        (attempts > 0 ? `, ${attempts + 1} times` : '') +
        `. ${kept > 0 ? `What was fetched (${formatBytes(kept)}) is kept in ${partPath(job)}. ` : ''}` +
        `Check your network connection and run the download again: it resumes where it stopped.`,
      err.original !== undefined ? `GET ${job.url}: ${describeErr(err.original)}` : `GET ${job.url}: ${err.reason}`,
    );
  }
  if (isNodeError(err, 'ENOSPC')) return diskFullError(ctx, job);
  if (isNodeError(err)) {
    return new DownloadError(
      'http',
      `Could not write ${job.item.dest}: ${(err as Error).message}`,
      (err as Error).stack,
    );
  }
  return err;
}

function describeErr(err: unknown): string {
  if (err instanceof NetworkFailure) return `${err.reason}: ${String((err.original as Error)?.message ?? err.original)}`;
  return errorText(err);
}

function isNodeError(err: unknown, code?: string): boolean {
  return (
    typeof err === 'object' &&
    err !== null &&
    typeof (err as { code?: unknown }).code === 'string' &&
    (code === undefined || (err as { code: string }).code === code)
  );
}

async function diskFullError(ctx: Ctx, job: Job): Promise<DownloadError> {
  const dir = path.dirname(job.item.dest);
  const have = (await statOrUndefined(partPath(job)))?.size ?? 0;
  const left = job.size !== undefined ? Math.max(0, job.size - have) : undefined;
  return new DownloadError(
    'disk-full',
    `The disk is full: ${describe(job)} could not be written to ${dir}` +
      (left !== undefined ? ` (${formatBytes(left)} still to fetch)` : '') +
      `. The partial file ${partPath(job)} is kept: free some space and run the download again to resume.`,
    `ENOSPC writing ${partPath(job)}`,
  );
}

async function keepCorrupt(ctx: Ctx, job: Job, err: ChecksumMismatch): Promise<DownloadError> {
  const corrupt = `${job.item.dest}.corrupt`;
  let kept = true;
  try {
    await fsp.rename(partPath(job), corrupt);
  } catch {
    kept = false;
  }
  await removeQuietly(sidecarPath(job));
  const sizeNote =
    err.expectedBytes !== undefined && err.expectedBytes !== err.bytes ? ` (${err.bytes} bytes instead of ${err.expectedBytes})` : '';
  const outdated = job.advertisedSha256
    ? ` The hub now publishes a different sha256 (${job.advertisedSha256}) than the one expected: the model list may be out of date.`
    : '';
  return new DownloadError(
    'checksum',
    `${describe(job)} failed its sha256 check twice${sizeNote}: the data received is damaged.` +
      (kept ? ` The damaged file was kept as ${corrupt} and ${job.item.dest} was not written.` : ` ${job.item.dest} was not written.`) +
      `${outdated} Try again later (the .corrupt file can be deleted); if it keeps happening, try the other hub or report it.`,
    `expected sha256 ${err.expected}, got ${err.actual} over ${err.bytes} bytes`,
  );
}

/** A destination already in place with the right size (and sha256 when known) is kept. */
async function checkExisting(ctx: Ctx, job: Job): Promise<DownloadedFile | undefined> {
  const dest = job.item.dest;
  const st = await statOrUndefined(dest);
  if (!st) return undefined;
  if (!st.isFile()) {
    throw new DownloadError('http', `Cannot download to ${dest}: a folder or special file is in the way.`);
  }
  if (job.size === undefined) {
    ctx.log('info', `${dest} exists but its expected size is unknown: downloading it again`);
    return undefined;
  }
  if (st.size !== job.size) {
    ctx.log('info', `${dest} exists with ${st.size} bytes instead of ${job.size}: downloading it again`);
    return undefined;
  }
  const sha = await sha256File(dest, ctx.signal);
  if (job.sha256 && sha !== job.sha256) {
    ctx.log('warn', `${dest} has the right size but the wrong sha256 (${sha}, expected ${job.sha256}): downloading it again`);
    return undefined;
  }
  ctx.log('info', `${dest} is already complete${job.sha256 ? ' (sha256 verified)' : ''}`);
  ctx.progress.setBytes(job.index, st.size);
  return { path: dest, bytes: st.size, sha256: sha, skipped: true };
}

async function readSidecar(p: string): Promise<Sidecar | undefined> {
  try {
    const j = JSON.parse(await fsp.readFile(p, 'utf8')) as Sidecar;
    return j && j.version === SIDECAR_VERSION && typeof j.url === 'string' ? j : undefined;
  } catch {
    return undefined;
  }
}

async function writeSidecar(p: string, s: Sidecar): Promise<void> {
  const tmp = `${p}.tmp`;
  await fsp.writeFile(tmp, JSON.stringify(s));
  await fsp.rename(tmp, p);
}

async function removeQuietly(...paths: string[]): Promise<void> {
  for (const p of paths) await fsp.rm(p, { force: true }).catch(() => undefined);
}

function normalizeEtag(e: string | null | undefined): string | undefined {
  if (!e) return undefined;
  return e.replace(/^W\//, '').replace(/^"(.*)"$/, '$1') || undefined;
}

function parseContentRange(h: string | null): { start: number; end: number; total?: number } | { unsatisfied: number } | undefined {
  if (!h) return undefined;
  let m = /^\s*bytes\s+(\d+)-(\d+)\/(\d+|\*)\s*$/i.exec(h);
  if (m) return { start: Number(m[1]), end: Number(m[2]), total: m[3] === '*' ? undefined : Number(m[3]) };
  m = /^\s*bytes\s+\*\/(\d+)\s*$/i.exec(h);
  if (m) return { unsatisfied: Number(m[1]) };
  return undefined;
}

/** What the hub's answers say about the remote file. */
function remoteIdentity(hr: HubResponse): { etag?: string; linkedSha?: string; size?: number; commit?: string } {
  const all = [...hr.redirects.map((r) => r.headers), hr.response.headers];
  const first = (name: string): string | undefined => {
    for (const h of all) {
      const v = h.get(name);
      if (v) return v;
    }
    return undefined;
  };
  const linked = normalizeEtag(first('x-linked-etag'));
  const linkedSize = Number(first('x-linked-size'));
  return {
    etag: linked ?? normalizeEtag(hr.response.headers.get('etag')),
    linkedSha: asSha256(linked),
    size: Number.isSafeInteger(linkedSize) && linkedSize >= 0 && first('x-linked-size') ? linkedSize : undefined,
    commit: first('x-repo-commit'),
  };
}

/**
 * One transfer of one file: resume the `.part` if its sidecar matches, else start from zero;
 * verify; move into place. Throws TransientFailure (resumable), ChecksumMismatch, Stopped,
 * DownloadError, or a file-system error.
 */
async function attempt(ctx: Ctx, job: Job, onData: (bytes: number) => void): Promise<DownloadedFile> {
  const part = partPath(job);
  const side = sidecarPath(job);

  for (let restarts = 0; ; restarts++) {
    if (restarts > 3) throw new TransientFailure('the server keeps answering inconsistent ranges', safeHost(job.url));
    if (ctx.signal.aborted) throw new Stopped();

    // 1. What is on disk already, and does it belong to this remote file?
    const partSt = await statOrUndefined(part);
    const sc = await readSidecar(side);
    let resumeFrom = 0;
    if (partSt?.isFile() && partSt.size > 0) {
      const matches =
        sc !== undefined &&
        sc.url === job.url &&
        (job.size === undefined || sc.size === undefined || sc.size === job.size) &&
        (job.sha256 === undefined || sc.sha256 === undefined || sc.sha256 === job.sha256) &&
        (job.size === undefined || partSt.size <= job.size);
      if (matches) resumeFrom = partSt.size;
      else {
        ctx.log('info', `${part}: the partial file does not belong to this download; starting from zero`);
        await removeQuietly(part, side);
      }
    } else if (partSt || sc) {
      await removeQuietly(part, side);
    }
    if (resumeFrom > 0 && job.size !== undefined && resumeFrom === job.size) {
      ctx.log('info', `${part} is complete; verifying it`);
      ctx.progress.setBytes(job.index, resumeFrom);
      return finish(ctx, job, await sha256File(part, ctx.signal), resumeFrom, resumeFrom);
    }

    // 2. Hash what is there first (minutes for tens of GB: not while a connection waits), then ask for the rest.
    let prefix: Hash | undefined;
    if (resumeFrom > 0) {
      prefix = createHash('sha256');
      await hashInto(prefix, part, resumeFrom, ctx.signal);
    }
    const headers: Record<string, string> = { 'accept-encoding': 'identity' };
    if (resumeFrom > 0) headers.range = `bytes=${resumeFrom}-`;
    const stall = new StallGuard(ctx.signal, ctx.opts.stallTimeoutMs ?? 60_000);
    let hr: HubResponse;
    try {
      hr = await hubFetch(job.url, {
        token: job.item.repo.hub === 'huggingface' ? ctx.token : undefined,
        authOrigin: new URL(job.endpoint).origin,
        headers,
        signal: stall.signal,
      });
    } catch (err) {
      stall.dispose();
      throw stall.translate(err, job.url);
    }
    const res = hr.response;
    const host = safeHost(hr.url);
    ctx.log('debug', `GET ${job.url}${resumeFrom > 0 ? ` (from byte ${resumeFrom})` : ''} → ${res.status}${hr.redirects.length ? ` via ${hr.redirects.length} redirect(s), from ${host}` : ''}`);

    const id = remoteIdentity(hr);
    if (job.sha256 === undefined && id.linkedSha) job.sha256 = id.linkedSha;
    else if (job.sha256 && id.linkedSha && id.linkedSha !== job.sha256 && !job.advertisedSha256) {
      job.advertisedSha256 = id.linkedSha;
      ctx.log('warn', `${job.item.path}: expected sha256 ${job.sha256} but the hub advertises ${id.linkedSha}`);
    }
    if (job.size === undefined && id.size !== undefined) {
      job.size = id.size;
      ctx.progress.setTotal(job.index, job.size);
    }
    if (id.size !== undefined && id.size !== job.size) {
      await discardBody(res);
      stall.dispose();
      throw sizeConflict(job, id.size);
    }

    // 3. Interpret the answer.
    if (res.status === 416) {
      await discardBody(res);
      stall.dispose();
      const cr = parseContentRange(res.headers.get('content-range'));
      const total = cr && 'unsatisfied' in cr ? cr.unsatisfied : job.size;
      if (resumeFrom > 0 && (total === undefined || total === resumeFrom)) {
        ctx.log('info', `${part}: the server has nothing more to send; verifying the ${resumeFrom} bytes there`);
        if (job.size === undefined) {
          job.size = resumeFrom;
          ctx.progress.setTotal(job.index, job.size);
        }
        ctx.progress.setBytes(job.index, resumeFrom);
        return finish(ctx, job, await sha256File(part, ctx.signal), resumeFrom, resumeFrom);
      }
      ctx.log('warn', `${part}: range not satisfiable (${res.headers.get('content-range') ?? 'no Content-Range'}); starting from zero`);
      await removeQuietly(part, side);
      continue;
    }
    if (!res.ok) {
      stall.dispose();
      throw await httpError(res, { repo: job.item.repo, path: job.item.path, endpoint: job.endpoint, hadToken: !!ctx.token, url: hr.url });
    }
    if (res.status === 206) {
      const cr = parseContentRange(res.headers.get('content-range'));
      const ok =
        resumeFrom > 0 &&
        cr !== undefined &&
        !('unsatisfied' in cr) &&
        cr.start === resumeFrom &&
        (job.size === undefined || cr.total === undefined || cr.total === job.size) &&
        (sc?.etag === undefined || id.etag === undefined || sc.etag === id.etag);
      if (!ok) {
        await discardBody(res);
        stall.dispose();
        ctx.log('warn', `${part}: the server answered a different range or file (${res.headers.get('content-range') ?? 'no Content-Range'}, etag ${id.etag ?? '?'}); starting from zero`);
        await removeQuietly(part, side);
        continue;
      }
      if (job.size === undefined && cr.total !== undefined) {
        job.size = cr.total;
        ctx.progress.setTotal(job.index, job.size);
      }
    } else {
      if (resumeFrom > 0) ctx.log('info', `${job.item.path}: the server ignored the range request; starting from zero`);
      resumeFrom = 0;
      const len = Number(res.headers.get('content-length'));
      if (res.headers.get('content-length') && Number.isSafeInteger(len)) {
        if (job.size === undefined) {
          job.size = len;
          ctx.progress.setTotal(job.index, job.size);
        } else if (len !== job.size) {
          await discardBody(res);
          stall.dispose();
          throw sizeConflict(job, len);
        }
      }
    }

    // 4. Receive.
    return await receive(ctx, job, res, hr, resumeFrom, id, stall, onData, prefix);
  }
}

async function receive(
  ctx: Ctx,
  job: Job,
  res: Response,
  hr: HubResponse,
  resumeFrom: number,
  id: ReturnType<typeof remoteIdentity>,
  stall: StallGuard,
  onData: (bytes: number) => void,
  /** sha256 state over the first `resumeFrom` bytes of the part. */
  prefix: Hash | undefined,
): Promise<DownloadedFile> {
  const part = partPath(job);
  const host = safeHost(hr.url);
  let fh: fsp.FileHandle | undefined;
  let written = resumeFrom;
  let complete = false;
  const hasher = resumeFrom > 0 && prefix ? prefix : createHash('sha256');
  try {
    await writeSidecar(sidecarPath(job), {
      version: SIDECAR_VERSION,
      url: job.url,
      size: job.size,
      sha256: job.sha256,
      etag: id.etag,
      commit: id.commit,
    });
    if (resumeFrom > 0) ctx.log('info', `${job.item.path}: resuming at byte ${resumeFrom}${job.size ? ` of ${job.size}` : ''}`);
    fh = await fsp.open(part, resumeFrom > 0 ? 'r+' : 'w');
    ctx.progress.setBytes(job.index, resumeFrom);
    if (!res.body) throw new TransientFailure('empty answer', host);
    const reader = res.body.getReader();
    try {
      for (;;) {
        const { done, value } = await reader.read();
        if (done) break;
        stall.touch();
        if (value.byteLength === 0) continue;
        onData(value.byteLength);
        hasher.update(value);
        let off = 0;
        while (off < value.byteLength) {
          const { bytesWritten } = await fh.write(value, off, value.byteLength - off, written + off);
          off += bytesWritten;
        }
        written += value.byteLength;
        ctx.progress.add(job.index, value.byteLength, job.item.path);
      }
      complete = true;
    } finally {
      if (!complete) await reader.cancel().catch(() => undefined);
    }
  } catch (err) {
    stall.dispose();
    await fh?.close().catch(() => undefined);
    if (err instanceof TransientFailure || err instanceof Stopped) throw err;
    if (isNodeError(err, 'ENOSPC')) throw await diskFullError(ctx, job);
    if (isAbortError(err) || stall.fired || ctx.signal.aborted || (err instanceof TypeError && !isNodeError(err))) {
      throw stall.translate(err, hr.url);
    }
    throw err;
  }
  stall.dispose();
  try {
    await fh.sync();
  } finally {
    await fh.close();
  }
  if (job.size !== undefined && written < job.size) {
    throw new TransientFailure(`connection closed after ${written} of ${job.size} bytes`, host);
  }
  const sha = hasher.digest('hex');
  return finish(ctx, job, sha, written, resumeFrom);
}

/** The hub serves a file of another size than expected: the repository changed, or the model list is out of date. */
function sizeConflict(job: Job, remote: number): DownloadError {
  return new DownloadError(
    'checksum',
    `${describe(job)} has ${remote} bytes on the hub but ${job.size} were expected: the repository has changed ` +
      `or the model list is out of date. Nothing was downloaded for this file.`,
    `GET ${job.url}: remote size ${remote}, expected ${job.size}`,
  );
}

/** Verifies a complete `.part` and moves it into place. */
async function finish(ctx: Ctx, job: Job, sha: string, bytes: number, resumeFrom: number): Promise<DownloadedFile> {
  const part = partPath(job);
  if ((job.sha256 !== undefined && sha !== job.sha256) || (job.size !== undefined && bytes !== job.size)) {
    throw new ChecksumMismatch(job.sha256 ?? '(size)', sha, bytes, job.size);
  }
  await fsp.rename(part, job.item.dest);
  await removeQuietly(sidecarPath(job));
  await syncDir(path.dirname(job.item.dest));
  ctx.log('info', `${job.item.dest}: ${bytes} bytes, sha256 ${sha}${job.sha256 ? ' (verified)' : ' (not published by the hub; recorded)'}`);
  const out: DownloadedFile = { path: job.item.dest, bytes, sha256: sha };
  if (resumeFrom > 0) out.resumedFrom = resumeFrom;
  return out;
}

async function syncDir(dir: string): Promise<void> {
  if (process.platform === 'win32') return;
  try {
    const h = await fsp.open(dir, 'r');
    try {
      await h.sync();
    } finally {
      await h.close();
    }
  } catch {
    // not supported on every file system
  }
}

async function hashInto(hasher: Hash, file: string, length: number, signal: AbortSignal): Promise<void> {
  if (length <= 0) return;
  const stream = fs.createReadStream(file, { start: 0, end: length - 1, highWaterMark: 1 << 20 });
  try {
    for await (const chunk of stream) {
      if (signal.aborted) throw new Stopped();
      hasher.update(chunk as Buffer);
    }
  } finally {
    stream.destroy();
  }
}

/** sha256 of a whole file, read in 1 MiB chunks (also the check's --verify). */
export async function sha256File(file: string, signal: AbortSignal = new AbortController().signal): Promise<string> {
  const h = createHash('sha256');
  const st = await fsp.stat(file);
  await hashInto(h, file, st.size, signal);
  return h.digest('hex');
}

function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal.aborted) return reject(new Stopped());
    const onAbort = (): void => {
      clearTimeout(t);
      reject(new Stopped());
    };
    const t = setTimeout(() => {
      signal.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    signal.addEventListener('abort', onAbort, { once: true });
  });
}

/** Aborts a request when the outer signal aborts or when no data came for `timeoutMs`. */
class StallGuard {
  private readonly ctl = new AbortController();
  private timer: NodeJS.Timeout | undefined;
  fired = false;
  private readonly onOuter = (): void => this.ctl.abort();

  constructor(
    private readonly outer: AbortSignal,
    private readonly timeoutMs: number,
  ) {
    if (outer.aborted) this.ctl.abort();
    else outer.addEventListener('abort', this.onOuter, { once: true });
    this.touch();
  }

  get signal(): AbortSignal {
    return this.ctl.signal;
  }

  touch(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = setTimeout(() => {
      this.fired = true;
      this.ctl.abort();
    }, this.timeoutMs);
  }

  dispose(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    this.outer.removeEventListener('abort', this.onOuter);
  }

  /** The internal failure for an error thrown by fetch or by reading the body. */
  translate(err: unknown, url: string): Error {
    if (this.outer.aborted) return new Stopped();
    if (this.fired) {
      return new TransientFailure(`no data for ${Math.round(this.timeoutMs / 1000)} s`, safeHost(url));
    }
    if (err instanceof DownloadError || err instanceof TransientFailure || err instanceof Stopped) return err;
    const nf = err instanceof NetworkFailure ? err : toNetworkFailure(err, url);
    return new TransientFailure(nf.reason, safeHost(nf.url), nf.connect, undefined, nf);
  }
}

// ─── progress ───────────────────────────────────────────────────────────────────────────────────

class ProgressTracker {
  private readonly totals: (number | undefined)[];
  private readonly bytes: number[];
  private readonly done: boolean[];
  private transferred = 0;
  private samples: { t: number; n: number }[] = [];
  private lastEmit = -Infinity;
  private current: string;
  private readonly interval: number;
  private readonly windowMs = 5000;

  constructor(
    private readonly items: DownloadItem[],
    private readonly opts: DownloadOptions,
  ) {
    this.totals = items.map((i) => i.size);
    this.bytes = items.map(() => 0);
    this.done = items.map(() => false);
    this.current = items[0]?.path ?? '';
    this.interval = opts.progressIntervalMs ?? 250;
  }

  setTotal(i: number, size: number | undefined): void {
    this.totals[i] = size;
  }

  setBytes(i: number, n: number): void {
    this.bytes[i] = n;
  }

  add(i: number, n: number, file: string): void {
    this.bytes[i] += n;
    this.transferred += n;
    this.current = file;
    this.emit(false);
  }

  fileDone(i: number): void {
    this.done[i] = true;
    if (this.totals[i] === undefined) this.totals[i] = this.bytes[i];
    this.emit(false);
  }

  emit(force: boolean): void {
    if (!this.opts.onProgress) return;
    const now = performance.now();
    const last = this.samples[this.samples.length - 1];
    if (!last || now - last.t >= 100) this.samples.push({ t: now, n: this.transferred });
    while (this.samples.length > 2 && now - this.samples[1].t >= this.windowMs) this.samples.shift();
    if (!force && now - this.lastEmit < this.interval) return;
    this.lastEmit = now;
    const bytes = this.bytes.reduce((a, b) => a + b, 0);
    const total = this.totals.reduce<number>((a, t, i) => a + Math.max(t ?? 0, this.bytes[i]), 0);
    const oldest = this.samples[0];
    const dt = (now - oldest.t) / 1000;
    const bytesPerSecond = dt >= 0.2 ? (this.transferred - oldest.n) / dt : 0;
    const p: DownloadProgress = {
      file: this.current,
      files: this.items.length,
      filesDone: this.done.filter(Boolean).length,
      bytes,
      total,
      bytesPerSecond: Math.round(bytesPerSecond),
    };
    const unknown = this.totals.some((t) => t === undefined);
    if (!unknown && bytesPerSecond > 0) p.etaSeconds = Math.max(0, Math.round((total - bytes) / bytesPerSecond));
    else if (!unknown && bytes >= total) p.etaSeconds = 0;
    try {
      this.opts.onProgress(p);
    } catch {
      // a failing listener must not break the download
    }
  }
}
