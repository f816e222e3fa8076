// Requests to a hub: GET with redirects followed by hand, and a failure with no HTTP answer told
// apart from one worth retrying. The access token goes only to the hub's own origin: the
// Authorization header is dropped as soon as a hop leaves that origin (CDN, storage host).

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
