// A repository's file listing from either hub (paginated on Hugging Face), with sizes and the
// sha256 sums the hubs publish: what download.ts checks each file against.

import type { HubRepo } from '../../shared/models';
import { defaultRevision, endpointFor, HUB_LABELS, ownerAndName, RemoteFile } from './hub';
import { DownloadError, httpError, networkError } from './hubErrors';
import { hubFetch, HubResponse, NetworkFailure } from './hubFetch';

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
