// The errors a download ends with, for the user: what happened to which file, what was kept on
// disk and what to do next (resume, free space, try the other hub); the token scrubbed out.

import * as fsp from 'node:fs/promises';
import * as path from 'node:path';
import { errorText } from '../../shared/api';
import { formatBytes } from '../../shared/bytes';
import { writeFailureReason } from '../system/fsErrors';
import type { Ctx, Job } from './download';
import { ChecksumMismatch, Stopped, TransientFailure } from './downloadFailures';
import { HUB_LABELS } from './hub';
import { DownloadError, networkError } from './hubErrors';
import { NetworkFailure } from './hubFetch';
import { partPath, removeQuietly, sidecarPath, statOrUndefined } from './partFiles';

export function cancelledError(): DownloadError {
  return new DownloadError(
    'cancelled',
    'The download was cancelled. What was fetched so far is kept: downloading again resumes where it stopped.',
  );
}

/** The error downloadFiles throws: always a DownloadError, with the token scrubbed out. */
export function finalError(ctx: Ctx, err: unknown, scrub: (s: string) => string): DownloadError {
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

export function describe(job: Job): string {
  return `"${job.item.path}" from ${HUB_LABELS[job.item.repo.hub]} repository "${job.item.repo.repo}"`;
}

export async function toUserError(ctx: Ctx, job: Job, err: unknown, attempts: number): Promise<unknown> {
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

export function isNodeError(err: unknown, code?: string): boolean {
  return (
    typeof err === 'object' &&
    err !== null &&
    typeof (err as { code?: unknown }).code === 'string' &&
    (code === undefined || (err as { code: string }).code === code)
  );
}

/** The folder a file goes into could not be made (a file in the way, no permission, a read-only disk): before any transfer. */
export function folderError(job: Job, err: unknown): DownloadError {
  const dir = path.dirname(job.item.dest);
  return new DownloadError('http', `Could not create the folder ${dir} for ${describe(job)}: ${writeFailureReason(err)}. Download into another folder, or fix that one.`, errorText(err));
}

export async function diskFullError(ctx: Ctx, job: Job): Promise<DownloadError> {
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

export async function keepCorrupt(ctx: Ctx, job: Job, err: ChecksumMismatch): Promise<DownloadError> {
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

/** The hub serves a file of another size than expected: the repository changed, or the model list is out of date. */
export function sizeConflict(job: Job, remote: number): DownloadError {
  return new DownloadError(
    'checksum',
    `${describe(job)} has ${remote} bytes on the hub but ${job.size} were expected: the repository has changed ` +
      `or the model list is out of date. Nothing was downloaded for this file.`,
    `GET ${job.url}: remote size ${remote}, expected ${job.size}`,
  );
}

