// The two model hubs, Hugging Face and ModelScope: their URL layouts, their file listings, the
// redirects they answer with and what their HTTP errors mean for the user. download.ts does the
// transfers; this file knows the hubs.
//
// Hugging Face
//   file     {endpoint}/{owner}/{name}/resolve/{revision}/{path}      (revision default "main")
//            LFS/Xet files answer 302 to a CDN host with X-Linked-Etag (the sha256), X-Linked-Size,
//            X-Repo-Commit; small files answer 200. Renamed repositories answer a relative 307.
//   listing  {endpoint}/api/models/{owner}/{name}/tree/{revision}?recursive=true
//            → [{type, oid, size, path, lfs?: {oid: sha256, size}}], paginated by `Link: <…>; rel="next"`
//   errors   X-Error-Code (GatedRepo, RepoNotFound, EntryNotFound, RevisionNotFound), X-Error-Message
// ModelScope
//   file     {endpoint}/api/v1/models/{owner}/{name}/repo?Revision={revision}&FilePath={path}
//            (revision default "master"; may redirect to a storage host; Range works)
//   listing  {endpoint}/api/v1/models/{owner}/{name}/repo/files?Revision={revision}&Recursive=True
//            → {Code: 200, Success: true, Data: {Files: [{Name, Path, Size, Sha256, Type: blob|tree, IsLFS}]}}
//   errors   the HTTP status, with a JSON body {Code, Message}
//
// The access token goes only to the hub's own origin: redirects are followed by hand and the
// Authorization header is dropped as soon as a hop leaves that origin (CDN, storage host).

import { UserError } from '../../shared/api';
import type { DownloadErrorCode, HubName, HubRepo } from '../../shared/models';

export const DEFAULT_ENDPOINTS: Record<HubName, string> = {
  huggingface: 'https://huggingface.co',
  modelscope: 'https://modelscope.cn',
};

export const HUB_LABELS: Record<HubName, string> = {
  huggingface: 'Hugging Face',
  modelscope: 'ModelScope',
};

/** How the user sets a Hugging Face token, for messages. */
export const HF_TOKEN_HOWTO =
  'set a Hugging Face access token (in VS Code: "MajicFLUX: Set Hugging Face Token"; on the command line: the HF_TOKEN environment variable)';

/** A file of a repository as the hub lists it. `sha256` only where the hub publishes it. */
export interface RemoteFile {
  path: string;
  size: number;
  sha256?: string;
}

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

/** A network failure (no HTTP answer), with the URL it happened on. */
export class NetworkFailure extends Error {
  constructor(
    readonly url: string,
    readonly original: unknown,
    /** The connection was never made (refused, DNS, unreachable, TLS): retrying at once rarely helps. */
    readonly connect: boolean,
    readonly reason: string,
  ) {
    super(`${reason} (${safeHost(url)})`);
    this.name = 'NetworkFailure';
  }
}

// ─── URLs ───────────────────────────────────────────────────────────────────────────────────────

export function defaultRevision(hub: HubName): string {
  return hub === 'huggingface' ? 'main' : 'master';
}

/** The endpoint for a repository's hub, without a trailing slash. */
export function endpointFor(repo: HubRepo, endpoint?: string): string {
  return (endpoint || DEFAULT_ENDPOINTS[repo.hub]).replace(/\/+$/, '');
}

function encodeSegments(p: string): string {
  return p
    .split('/')
    .filter((s) => s.length > 0)
    .map(encodeURIComponent)
    .join('/');
}

function ownerAndName(repo: HubRepo): string {
  const parts = repo.repo.split('/').filter((s) => s.length > 0);
  if (parts.length !== 2 && !(repo.hub === 'huggingface' && parts.length === 1)) {
    throw new UserError(
      `"${repo.repo}" is not a ${HUB_LABELS[repo.hub]} repository id (expected owner/name).`,
    );
  }
  return parts.map(encodeURIComponent).join('/');
}

/** The URL a file of a repository is downloaded from. */
export function fileUrl(repo: HubRepo, path: string, endpoint?: string): string {
  const ep = endpointFor(repo, endpoint);
  const rev = repo.revision || defaultRevision(repo.hub);
  if (repo.hub === 'huggingface') {
    return `${ep}/${ownerAndName(repo)}/resolve/${encodeURIComponent(rev)}/${encodeSegments(path)}`;
  }
  return (
    `${ep}/api/v1/models/${ownerAndName(repo)}/repo` +
    `?Revision=${encodeURIComponent(rev)}&FilePath=${encodeURIComponent(path.replace(/^\/+/, ''))}`
  );
}

/** Where the user reads and accepts a repository's licence (or asks for access). */
export function licenceUrl(repo: HubRepo, endpoint?: string): string {
  if (repo.licenceUrl) return repo.licenceUrl;
  const ep = endpointFor(repo, endpoint);
  return repo.hub === 'huggingface' ? `${ep}/${repo.repo}` : `${ep}/models/${repo.repo}`;
}

// ─── requests ───────────────────────────────────────────────────────────────────────────────────

export interface HubFetchOptions {
  /** Sent as `Authorization: Bearer …` to `authOrigin` only. */
  token?: string;
  /** The origin the token belongs to (default: the first URL's origin). */
  authOrigin?: string;
  headers?: Record<string, string>;
  signal?: AbortSignal;
  maxRedirects?: number;
}

export interface HubResponse {
  /** The final (non-redirect) response; its body is unread. */
  response: Response;
  /** The URL that answered it. */
  url: string;
  /** The redirects on the way, first hop first (their bodies are discarded). */
  redirects: { status: number; url: string; headers: Headers }[];
}

/**
 * GET a URL, following redirects by hand so the token never leaves `authOrigin`. Throws
 * NetworkFailure when no HTTP answer comes, and lets an AbortError through.
 */
export async function hubFetch(url: string, opts: HubFetchOptions = {}): Promise<HubResponse> {
  const authOrigin = opts.authOrigin ?? new URL(url).origin;
  const maxRedirects = opts.maxRedirects ?? 10;
  const redirects: HubResponse['redirects'] = [];
  let current = url;
  for (;;) {
    const headers: Record<string, string> = { ...opts.headers };
    if (opts.token && new URL(current).origin === authOrigin) headers.authorization = `Bearer ${opts.token}`;
    let response: Response;
    try {
      response = await fetch(current, { headers, redirect: 'manual', signal: opts.signal });
    } catch (err) {
      if (isAbortError(err) || opts.signal?.aborted) throw err;
      throw toNetworkFailure(err, current);
    }
    const location = response.headers.get('location');
    if (response.status >= 300 && response.status < 400 && response.status !== 304 && location) {
      await discardBody(response);
      if (redirects.length >= maxRedirects) {
        throw new NetworkFailure(current, undefined, true, `too many redirects (more than ${maxRedirects})`);
      }
      redirects.push({ status: response.status, url: current, headers: response.headers });
      current = new URL(location, current).toString();
      continue;
    }
    return { response, url: current, redirects };
  }
}

export async function discardBody(response: Response): Promise<void> {
  try {
    await response.body?.cancel();
  } catch {
    // already closed or errored: nothing to free
  }
}

export function isAbortError(err: unknown): boolean {
  return (
    typeof err === 'object' &&
    err !== null &&
    ((err as { name?: string }).name === 'AbortError' || (err as { code?: string }).code === 'ABORT_ERR')
  );
}

export function safeHost(url: string): string {
  try {
    return new URL(url).host;
  } catch {
    return url;
  }
}

const CONNECT_CODES: Record<string, string> = {
  ECONNREFUSED: 'connection refused',
  ENOTFOUND: 'host name not found (DNS)',
  EAI_AGAIN: 'host name lookup failed (DNS)',
  ENETUNREACH: 'network unreachable',
  EHOSTUNREACH: 'host unreachable',
  ENETDOWN: 'network down',
  UND_ERR_CONNECT_TIMEOUT: 'connection timed out',
  CERT_HAS_EXPIRED: 'TLS certificate expired',
  DEPTH_ZERO_SELF_SIGNED_CERT: 'untrusted TLS certificate (a proxy or firewall may intercept HTTPS)',
  SELF_SIGNED_CERT_IN_CHAIN: 'untrusted TLS certificate (a proxy or firewall may intercept HTTPS)',
  UNABLE_TO_VERIFY_LEAF_SIGNATURE: 'untrusted TLS certificate (a proxy or firewall may intercept HTTPS)',
  UNABLE_TO_GET_ISSUER_CERT_LOCALLY: 'untrusted TLS certificate (a proxy or firewall may intercept HTTPS)',
  ERR_TLS_CERT_ALTNAME_INVALID: 'TLS certificate does not match the host',
};

const TRANSFER_CODES: Record<string, string> = {
  ECONNRESET: 'connection reset',
  EPIPE: 'connection broken',
  ETIMEDOUT: 'connection timed out',
  ECONNABORTED: 'connection aborted',
  UND_ERR_SOCKET: 'connection closed by the server',
  UND_ERR_CLOSED: 'connection closed',
  UND_ERR_HEADERS_TIMEOUT: 'no answer from the server',
  UND_ERR_BODY_TIMEOUT: 'the transfer stalled',
};

/** What went wrong in a fetch that got no HTTP answer (or lost the body mid-way). */
export function toNetworkFailure(err: unknown, url: string): NetworkFailure {
  const codes: string[] = [];
  const messages: string[] = [];
  let e: unknown = err;
  for (let depth = 0; e && typeof e === 'object' && depth < 5; depth++) {
    const o = e as { code?: unknown; message?: unknown; cause?: unknown; errors?: unknown };
    if (typeof o.code === 'string') codes.push(o.code);
    if (typeof o.message === 'string' && o.message) messages.push(o.message);
    if (Array.isArray(o.errors) && o.errors.length > 0) e = o.errors[0];
    else e = o.cause;
  }
  for (const c of codes) if (CONNECT_CODES[c]) return new NetworkFailure(url, err, true, CONNECT_CODES[c]);
  for (const c of codes) if (TRANSFER_CODES[c]) return new NetworkFailure(url, err, false, TRANSFER_CODES[c]);
  const text = messages.find((m) => m !== 'fetch failed') ?? messages[0] ?? String(err);
  const reason = /terminated|other side closed|premature/i.test(text) ? 'connection closed before the end' : text;
  return new NetworkFailure(url, err, false, reason);
}

// ─── errors ─────────────────────────────────────────────────────────────────────────────────────

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

// ─── listings ───────────────────────────────────────────────────────────────────────────────────

const SHA256_RE = /^[0-9a-f]{64}$/;

/** A sha256 in lower-case hex, or undefined when `s` is not one. */
export function asSha256(s: unknown): string | undefined {
  if (typeof s !== 'string') return undefined;
  const t = s.trim().toLowerCase();
  return SHA256_RE.test(t) ? t : undefined;
}

/** The URL of `rel="next"` in a Link header, resolved against `base`. */
export function nextLink(link: string | null, base: string): string | undefined {
  if (!link) return undefined;
  for (const part of link.split(/,(?=\s*<)/)) {
    const m = /^\s*<([^>]*)>\s*;(.*)$/.exec(part);
    if (m && /(^|;)\s*rel\s*=\s*"?([^";]*\s)?next(\s[^";]*)?"?\s*(;|$)/i.test(m[2])) {
      return new URL(m[1], base).toString();
    }
  }
  return undefined;
}

export interface ListOptions {
  endpoint?: string;
  token?: string;
  signal?: AbortSignal;
}

/** Every file of a repository (recursively), with its size and, where the hub publishes it, its sha256. */
export async function listRepoFiles(repo: HubRepo, opts: ListOptions = {}): Promise<RemoteFile[]> {
  const endpoint = endpointFor(repo, opts.endpoint);
  const rev = repo.revision || defaultRevision(repo.hub);
  const ctx = { repo, endpoint, hadToken: !!opts.token };
  const get = async (url: string): Promise<{ json: unknown; response: Response; url: string }> => {
    let hr: HubResponse;
    try {
      hr = await hubFetch(url, {
        token: repo.hub === 'huggingface' ? opts.token : undefined,
        authOrigin: new URL(endpoint).origin,
        headers: { accept: 'application/json' },
        signal: opts.signal,
      });
    } catch (err) {
      if (err instanceof NetworkFailure) throw networkError(err, `the file list of "${repo.repo}"`);
      throw err;
    }
    if (!hr.response.ok) throw await httpError(hr.response, { ...ctx, url: hr.url });
    const text = await hr.response.text();
    try {
      return { json: JSON.parse(text), response: hr.response, url: hr.url };
    } catch {
      throw new DownloadError(
        'http',
        `${HUB_LABELS[repo.hub]} sent an unreadable file list for "${repo.repo}".`,
        `GET ${hr.url}: not JSON: ${text.slice(0, 200)}`,
      );
    }
  };

  if (repo.hub === 'huggingface') {
    const files: RemoteFile[] = [];
    let url: string | undefined = `${endpoint}/api/models/${ownerAndName(repo)}/tree/${encodeURIComponent(rev)}?recursive=true`;
    for (let page = 0; url && page < 10000; page++) {
      const { json, response, url: answered } = await get(url);
      if (!Array.isArray(json)) {
        throw new DownloadError('http', `Hugging Face sent an unexpected file list for "${repo.repo}".`, `GET ${answered}: not an array`);
      }
      for (const e of json as { type?: string; path?: string; size?: number; lfs?: { oid?: string; size?: number } }[]) {
        if (e?.type !== 'file' || typeof e.path !== 'string') continue;
        const size = typeof e.lfs?.size === 'number' ? e.lfs.size : typeof e.size === 'number' ? e.size : undefined;
        if (size === undefined) continue;
        const f: RemoteFile = { path: e.path, size };
        const sha = asSha256(e.lfs?.oid);
        if (sha) f.sha256 = sha;
        files.push(f);
      }
      url = nextLink(response.headers.get('link'), answered);
    }
    return files;
  }

  const url =
    `${endpoint}/api/v1/models/${ownerAndName(repo)}/repo/files` +
    `?Revision=${encodeURIComponent(rev)}&Recursive=True`;
  const { json, url: answered } = await get(url);
  const body = json as { Code?: number; Success?: boolean; Message?: string; Data?: { Files?: unknown } };
  if ((body.Code !== undefined && body.Code !== 200) || body.Success === false) {
    const notFound = /not ?exist|not found/i.test(body.Message ?? '');
    throw new DownloadError(
      notFound ? 'not-found' : 'http',
      notFound
        ? `ModelScope repository "${repo.repo}" (revision ${rev}) was not found.`
        : `ModelScope could not list the files of "${repo.repo}": ${body.Message ?? `code ${body.Code}`}.`,
      `GET ${answered}: Code ${body.Code} ${body.Message ?? ''}`,
    );
  }
  const list = Array.isArray(body.Data?.Files) ? (body.Data!.Files as unknown[]) : [];
  const files: RemoteFile[] = [];
  for (const e of list as { Path?: string; Name?: string; Size?: number; Sha256?: string; Type?: string }[]) {
    if (!e || e.Type === 'tree' || typeof e.Size !== 'number') continue;
    const p = typeof e.Path === 'string' ? e.Path : e.Name;
    if (typeof p !== 'string') continue;
    const f: RemoteFile = { path: p, size: e.Size };
    const sha = asSha256(e.Sha256);
    if (sha) f.sha256 = sha;
    files.push(f);
  }
  return files;
}
