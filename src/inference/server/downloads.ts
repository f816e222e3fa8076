// Model downloads a client starts through the server: the destination checked (a TCP client
// downloads only into the server's models folder), progress and the outcome sent as events, and
// each download cancellable by its id or with its session.

import * as path from 'node:path';
import { UserError } from '../../shared/api';
import { DownloadRequest, HUB_NAMES } from '../../shared/models';
import type { ErrorCode, LogLevel } from '../../shared/protocol';
import { DownloadError } from '../models/hubErrors';
import { endpointFor, HUB_LABELS, mirrorsFromEnv } from '../models/hub';
import { downloadModel, planModelDownload } from '../models/service';
import type { Session } from './connection';
import { atOrInsideReal, pathNameProblem } from './paths';

export interface DownloadPlace {
  /** A TCP server: downloads go only inside `modelsDir`, named relative to it. */
  remote: boolean;
  modelsDir?: string;
  cacheDir?: string;
  /** The server's own text as the client may read it (PathPolicy.forClient; whole when absent). */
  forClient?: (text: string) => string;
}

export class ServerDownloads {
  private readonly active = new Map<string, { controller: AbortController; owner: Session }>();
  private counter = 0;

  constructor(private readonly log: (level: LogLevel, message: string) => void) {}

  /** Starts a download for `session` (its reply and events go there); or says why not. */
  start(session: Session, id: number, request: DownloadRequest, place: DownloadPlace): { code: ErrorCode; message: string } | undefined {
    let dest = request.dest;
    const named = pathNameProblem(dest, 'download folder');
    if (named) return { code: 'bad-output', message: named };
    if (place.remote) {
      const root = place.modelsDir;
      if (!root) return { code: 'failed', message: 'This server does not accept downloads: start it with --models-dir DIR to allow them.' };
      dest = path.resolve(root, request.dest);
      if (!atOrInsideReal(root, dest)) return { code: 'bad-output', message: `download folder ${JSON.stringify(request.dest)} is outside the server's models folder` };
    } else if (!path.isAbsolute(dest)) {
      return { code: 'bad-output', message: `download folder must be an absolute path, got ${JSON.stringify(dest)}` };
    }
    // A TCP client downloads through the hubs the owner started the server with: a URL of its
    // choosing would have the server fetch whatever that address answers, from the server's network.
    const own = place.remote ? mirrorsFromEnv() : request.endpoints;
    if (place.remote) {
      const other = HUB_NAMES.find((hub) => request.endpoints?.[hub] && endpointFor({ hub }, request.endpoints[hub]) !== endpointFor({ hub }, own?.[hub]));
      if (other) {
        return {
          code: 'bad-request',
          message: `this server downloads from ${HUB_LABELS[other]} at ${endpointFor({ hub: other }, own?.[other])}, not ${request.endpoints![other]}: a remote client cannot choose where the server connects (its owner sets a mirror where it runs: HF_ENDPOINT, MODELSCOPE_DOMAIN). Clear the mirror setting to download through this server.`,
        };
      }
    }
    const req = { ...request, dest, endpoints: own };
    let plan: ReturnType<typeof planModelDownload>;
    try {
      plan = planModelDownload(req);
    } catch (err) {
      return { code: 'failed', message: (err as Error).message };
    }
    const downloadId = `download-${++this.counter}`;
    const controller = new AbortController();
    this.active.set(downloadId, { controller, owner: session });
    session.send({ id, type: 'download', downloadId });
    const log = (level: LogLevel, message: string) => this.log(level, `${downloadId}: ${message}`);
    downloadModel(
      req,
      {
        signal: controller.signal,
        cacheDir: place.cacheDir,
        log,
        // The downloader sends a few progress reports a second.
        onProgress: (progress) => session.send({ type: 'event', event: 'download-progress', downloadId, progress }),
      },
      plan,
    )
      .then((result) => {
        log('info', `done: ${result.files.length} files`);
        session.send({ type: 'event', event: 'download-done', downloadId, result });
      })
      .catch((err: unknown) => {
        const e = err instanceof Error ? err : new Error(String(err));
        const code = err instanceof DownloadError ? err.code : controller.signal.aborted ? 'cancelled' : 'http';
        const shown = place.forClient ?? ((text: string) => text);
        const raw = err instanceof UserError ? err.detail : e.stack;
        const detail = raw && shown(raw).trim();
        log(code === 'cancelled' ? 'info' : 'error', `${code}: ${e.message}`);
        session.send({ type: 'event', event: 'download-failed', downloadId, code, message: shown(e.message), ...(detail ? { detail } : {}) });
      })
      .finally(() => this.active.delete(downloadId));
    return undefined;
  }

  /** Stops a download of `by`'s by its id; false when it has none such. */
  cancel(downloadId: string, by: Session): boolean {
    const download = this.active.get(downloadId);
    if (download?.owner !== by) return false;
    download.controller.abort();
    return true;
  }

  /** Stops the session's downloads (all of them without one). */
  cancelOf(session?: Session): void {
    for (const d of this.active.values()) if (!session || d.owner === session) d.controller.abort();
  }
}
