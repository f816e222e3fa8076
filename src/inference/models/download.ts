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
//
// This file plans a download (sizes and sums, disk space) and runs the files several at once;
// downloadFile.ts transfers one file, partFiles.ts keeps what is on disk, downloadFailures.ts and
// downloadErrors.ts tell retryable failures from the user's errors, downloadProgress.ts reports.

import * as fsp from 'node:fs/promises';
import * as path from 'node:path';
import { formatBytes } from '../../shared/bytes';
import type { DownloadItem, DownloadProgress, DownloadResult, HubName } from '../../shared/models';
import { endpointFor, fileUrl, HUB_LABELS, RemoteFile } from './hub';
import { DownloadError } from './hubErrors';
import { asSha256, listRepoFiles } from './hubListing';
import { cancelledError, finalError } from './downloadErrors';
import { runJob } from './downloadFile';
import { Stopped } from './downloadFailures';
import { ProgressTracker } from './downloadProgress';
import { statOrUndefined } from './partFiles';

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

export interface Job {
  index: number;
  item: DownloadItem;
  endpoint: string;
  url: string;
  size?: number;
  sha256?: string;
  /** The sha256 the hub advertised when it differs from the expected one (outdated registry). */
  advertisedSha256?: string;
}

export interface Ctx {
  opts: DownloadOptions;
  token?: string;
  /** Aborted when the user cancels or another file failed. */
  signal: AbortSignal;
  log(level: LogLevel, message: string): void;
  progress: ProgressTracker;
}

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
