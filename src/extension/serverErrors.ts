// The errors the server client rejects with, in a file of their own so that a caller can tell them
// apart (instanceof) without loading the client and its child-process code.

import type { DownloadErrorCode } from '../shared/models';
import type { ErrorCode } from '../shared/protocol';

/** An error reply from the server, or the server not answering. */
export class ServerError extends Error {
  constructor(
    readonly code: ErrorCode | 'timeout' | 'stopped' | 'disposed',
    message: string,
    readonly detail?: string,
    /** A generate request the server stopped before answering: it never queued the job, which can be submitted again (jobs.ts). */
    readonly notStarted = false,
  ) {
    super(message);
    this.name = 'ServerError';
  }
}

export class JobFailedError extends Error {
  constructor(
    readonly jobId: string,
    message: string,
    readonly detail?: string,
    /** The server stopped while the job waited in its queue: nothing of it ran, so it can be submitted again (jobs.ts). */
    readonly notStarted = false,
  ) {
    super(message);
    this.name = 'JobFailedError';
  }
}

/**
 * A download that did not finish: the server's `download-failed` (its code and message, for the
 * user), or `stopped` when the server went away mid-download. Partial files stay on disk either
 * way, and the next download of the same model resumes them.
 */
export class DownloadFailedError extends Error {
  constructor(
    readonly downloadId: string,
    readonly code: DownloadErrorCode | 'stopped',
    message: string,
    readonly detail?: string,
  ) {
    super(message);
    this.name = 'DownloadFailedError';
  }
}
