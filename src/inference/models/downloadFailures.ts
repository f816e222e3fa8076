// The failures a transfer can recover from, kept apart from the user's errors: a connection that
// broke off (resumed after a back-off), a sha256 mismatch (fetched again once), a stop (the user
// cancelled or another file failed), and the guard that turns a stalled transfer into the first.

import { DownloadError } from './hubErrors';
import { NetworkFailure, safeHost, toNetworkFailure } from './hubFetch';

/** A transfer that broke off and can be resumed. */
export class TransientFailure extends Error {
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

export class ChecksumMismatch extends Error {
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
export class Stopped extends Error {}

export function sleep(ms: number, signal: AbortSignal): Promise<void> {
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
export class StallGuard {
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
