// The two model hubs, Hugging Face and ModelScope: their URL layouts and what their listings hold.
// The requests are hubFetch.ts's, the listings hubListing.ts's, what an HTTP error means for the
// user hubErrors.ts's; download.ts does the transfers.
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

import { UserError } from '../../shared/api';
import type { HubName, HubRepo } from '../../shared/models';

export const DEFAULT_ENDPOINTS: Record<HubName, string> = {
  huggingface: 'https://huggingface.co',
  modelscope: 'https://modelscope.cn',
};

export const HUB_LABELS: Record<HubName, string> = {
  huggingface: 'Hugging Face',
  modelscope: 'ModelScope',
};

/** A file of a repository as the hub lists it. `sha256` only where the hub publishes it. */
export interface RemoteFile {
  path: string;
  size: number;
  sha256?: string;
}

// ─── URLs ───────────────────────────────────────────────────────────────────────────────────────

export function defaultRevision(hub: HubName): string {
  return hub === 'huggingface' ? 'main' : 'master';
}

/** The endpoint for a repository's hub, without a trailing slash. */
export function endpointFor(repo: Pick<HubRepo, 'hub'>, endpoint?: string): string {
  return (endpoint || DEFAULT_ENDPOINTS[repo.hub]).replace(/\/+$/, '');
}

/** The mirrors this process was started with: HF_ENDPOINT, MODELSCOPE_DOMAIN (a bare domain, as ModelScope's SDK takes it). */
export function mirrorsFromEnv(env: NodeJS.ProcessEnv = process.env): Partial<Record<HubName, string>> | undefined {
  const e: Partial<Record<HubName, string>> = {};
  if (env.HF_ENDPOINT) e.huggingface = env.HF_ENDPOINT;
  const ms = env.MODELSCOPE_DOMAIN;
  if (ms) e.modelscope = /^https?:\/\//.test(ms) ? ms : `https://${ms}`;
  return Object.keys(e).length ? e : undefined;
}

function encodeSegments(p: string): string {
  return p
    .split('/')
    .filter((s) => s.length > 0)
    .map(encodeURIComponent)
    .join('/');
}

export function ownerAndName(repo: HubRepo): string {
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
