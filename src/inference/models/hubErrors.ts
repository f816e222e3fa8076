// What a hub's failures mean for the user: HTTP errors (gated, refused, not found, rate-limited)
// and unreachable hosts as DownloadErrors whose message says what to do.

import { UserError } from '../../shared/api';
import type { DownloadErrorCode, HubRepo } from '../../shared/models';
import { HUB_LABELS, licenceUrl } from './hub';
import { NetworkFailure, safeHost } from './hubFetch';

/** How the user sets a Hugging Face token, for messages. */
export const HF_TOKEN_HOWTO =
  'set a Hugging Face access token (in VS Code: "MajicFLUX: Set Hugging Face Token"; on the command line: the HF_TOKEN environment variable)';

/** A download failure, for the user: `message` says what happened and what to do, `detail` is for the log. */
export class DownloadError extends UserError {
  constructor(
    readonly code: DownloadErrorCode,
    message: string,
    detail?: string,
    /** The HTTP status, for `http`, `auth-required`, `forbidden` and `not-found`. */
    readonly status?: number,
  ) {
    super(message, detail);
    this.name = 'DownloadError';
  }
}

export interface ErrorContext {
  repo: HubRepo;
  /** The file, when the request was for one. */
  path?: string;
  endpoint: string;
  /** Whether a token was sent (the token itself never is given here). */
  hadToken: boolean;
  url: string;
}

/** Transient statuses: retried with back-off before they become an error. */
export function isRetryableStatus(status: number | undefined): boolean {
  return status === 429 || status === 408 || (status !== undefined && status >= 500 && status <= 599);
}

/** Turns an HTTP error answer of a hub into a DownloadError the user can act on. Consumes the body. */
export async function httpError(response: Response, ctx: ErrorContext): Promise<DownloadError> {
  let body = '';
  try {
    body = (await response.text()).slice(0, 2000);
  } catch {
    // no body
  }
  const status = response.status;
  const errorCode = response.headers.get('x-error-code') ?? undefined;
  let errorMessage = response.headers.get('x-error-message') ?? undefined;
  if (!errorMessage && body) {
    try {
      const j = JSON.parse(body) as { error?: unknown; Message?: unknown; message?: unknown };
      const m = j.error ?? j.Message ?? j.message;
      if (typeof m === 'string') errorMessage = m;
    } catch {
      // not JSON
    }
  }
  const detail =
    `GET ${ctx.url} → HTTP ${status}` +
    (errorCode ? ` X-Error-Code: ${errorCode}` : '') +
    (errorMessage ? ` — ${errorMessage}` : '') +
    (body && !errorMessage ? ` — ${body.replace(/\s+/g, ' ').slice(0, 300)}` : '');
  return errorForStatus(status, ctx, errorCode, errorMessage, detail);
}

export function errorForStatus(
  status: number,
  ctx: ErrorContext,
  errorCode: string | undefined,
  errorMessage: string | undefined,
  detail: string,
): DownloadError {
  const { repo } = ctx;
  const hub = HUB_LABELS[repo.hub];
  const what = ctx.path ? `"${ctx.path}" from ${hub} repository "${repo.repo}"` : `the file list of ${hub} repository "${repo.repo}"`;
  const licence = licenceUrl(repo, ctx.endpoint);
  const settings = `${ctx.endpoint}/settings/tokens`;

  if (repo.hub === 'huggingface') {
    if (status === 401) {
      if (ctx.hadToken) {
        return new DownloadError(
          'auth-required',
          `Hugging Face rejected your access token (invalid or expired) while fetching ${what}. ` +
            `Create a new token at ${settings} and set it (in VS Code: "MajicFLUX: Set Hugging Face Token"; ` +
            `on the command line: the HF_TOKEN environment variable), then try again.`,
          detail,
          status,
        );
      }
      if (errorCode === 'GatedRepo' || repo.gated) {
        return new DownloadError(
          'auth-required',
          `"${repo.repo}" on Hugging Face is gated: a login is needed to download ${ctx.path ? `"${ctx.path}"` : 'its files'}. ` +
            `Accept its licence at ${licence} (signed in to Hugging Face), then ${HF_TOKEN_HOWTO} and try again.`,
          detail,
          status,
        );
      }
      return new DownloadError(
        'auth-required',
        `Hugging Face refused ${what} without a login: the repository is gated or private, or does not exist. ` +
          `If it is gated, accept its licence at ${licence}, then ${HF_TOKEN_HOWTO} and try again.`,
        detail,
        status,
      );
    }
    if (status === 403) {
      return new DownloadError(
        'forbidden',
        ctx.hadToken
          ? `Your Hugging Face token has no access to "${repo.repo}". Accept its licence at ${licence} with the account the token belongs to ` +
              `(some repositories need the access request to be approved first), then try again. ` +
              `A fine-grained token also needs read access to public gated repositories.`
          : `Hugging Face refused access to "${repo.repo}". Accept its licence at ${licence}, then ${HF_TOKEN_HOWTO} and try again.`,
        detail,
        status,
      );
    }
    if (status === 404) {
      if (errorCode === 'EntryNotFound' && ctx.path) {
        return new DownloadError(
          'not-found',
          `"${ctx.path}" was not found in Hugging Face repository "${repo.repo}" (revision ${repo.revision || 'main'}). ` +
            `The repository may have been reorganised: check the model's files at ${ctx.endpoint}/${repo.repo}.`,
          detail,
          status,
        );
      }
      if (errorCode === 'RevisionNotFound') {
        return new DownloadError(
          'not-found',
          `Revision "${repo.revision || 'main'}" of Hugging Face repository "${repo.repo}" was not found.`,
          detail,
          status,
        );
      }
      return new DownloadError(
        'not-found',
        `Hugging Face repository "${repo.repo}"${ctx.path ? ` (file "${ctx.path}")` : ''} was not found. ` +
          `Check the repository name and the Hugging Face endpoint setting (${ctx.endpoint}).`,
        detail,
        status,
      );
    }
  } else {
    if (status === 401 || status === 403) {
      return new DownloadError(
        status === 401 ? 'auth-required' : 'forbidden',
        `ModelScope refused access to ${what} (HTTP ${status}${errorMessage ? `: ${errorMessage}` : ''}). ` +
          `The repository may be private or need its terms accepted at ${licence}.`,
        detail,
        status,
      );
    }
    if (status === 404) {
      return new DownloadError(
        'not-found',
        `${ctx.path ? `"${ctx.path}" was not found in ModelScope repository "${repo.repo}"` : `ModelScope repository "${repo.repo}" was not found`}` +
          ` (revision ${repo.revision || 'master'}). Check the model's files at ${licence}.`,
        detail,
        status,
      );
    }
  }
  if (status === 429) {
    return new DownloadError(
      'http',
      `${hub} is limiting the request rate (HTTP 429) while fetching ${what}. Wait a few minutes and run the download again: it resumes where it stopped.`,
      detail,
      status,
    );
  }
  if (status >= 500) {
    return new DownloadError(
      'http',
      `${hub} answered HTTP ${status} while fetching ${what}: the service may be down or overloaded. Try again later: the download resumes where it stopped.`,
      detail,
      status,
    );
  }
  return new DownloadError(
    'http',
    `${hub} answered HTTP ${status} while fetching ${what}${errorMessage ? `: ${errorMessage}` : ''}.`,
    detail,
    status,
  );
}

/** A DownloadError for a request that got no HTTP answer. */
export function networkError(f: NetworkFailure, what: string): DownloadError {
  const host = safeHost(f.url);
  return new DownloadError(
    'network',
    `Could not reach ${host} to fetch ${what}: ${f.reason}. Check your network connection ` +
      `(and proxy or firewall, or the hub endpoint setting), then try again.`,
    `GET ${f.url}: ${describeCause(f.original)}`,
  );
}

export function describeCause(err: unknown): string {
  const parts: string[] = [];
  let e: unknown = err;
  for (let depth = 0; e && depth < 5; depth++) {
    if (typeof e === 'object') {
      const o = e as { code?: unknown; message?: unknown; cause?: unknown };
      parts.push([o.code, o.message].filter((x) => typeof x === 'string' && x).join(' '));
      e = o.cause;
    } else {
      parts.push(String(e));
      break;
    }
  }
  return parts.filter(Boolean).join(' ← ') || 'unknown error';
}
