// One file's transfer: a complete file kept, a `.part` resumed when its sidecar says it belongs
// to the same remote file, the hub's answer checked (range, size, sha256), the bytes received,
// verified and moved into place; transient failures retried with back-off.

import { createHash, Hash } from 'node:crypto';
import * as fsp from 'node:fs/promises';
import * as path from 'node:path';
import { errorText } from '../../shared/api';
import type { Ctx, DownloadedFile, Job } from './download';
import { diskFullError, folderError, isNodeError, keepCorrupt, sizeConflict, toUserError } from './downloadErrors';
import { ChecksumMismatch, sleep, StallGuard, Stopped, TransientFailure } from './downloadFailures';
import { DownloadError, httpError, isRetryableStatus } from './hubErrors';
import { discardBody, hubFetch, HubResponse, isAbortError, safeHost } from './hubFetch';
import { asSha256 } from './hubListing';
import { hashInto, partPath, readSidecar, removeQuietly, sha256File, SIDECAR_VERSION, sidecarPath, statOrUndefined, syncDir, writeSidecar } from './partFiles';

/** Bytes an attempt must receive before its failure no longer counts against the retries. */
const PROGRESS_RESETS_RETRIES = 16 * 1024 * 1024;

/** One file, with its retries: a transient failure resumes after a back-off, a sha256 mismatch starts over once. */
export async function runJob(ctx: Ctx, job: Job): Promise<DownloadedFile> {
  if (ctx.signal.aborted) throw new Stopped();
  const existing = await checkExisting(ctx, job);
  if (existing) return existing;
  await fsp.mkdir(path.dirname(job.item.dest), { recursive: true }).catch((err: unknown) => {
    throw isNodeError(err, 'ENOSPC') ? err : folderError(job, err);
  });

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

