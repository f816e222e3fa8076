// "Download Model…" without vscode: the registry (models/registry.json, shipped with the
// extension) as choices, the settings as a DownloadRequest, what to offer after each kind of
// failure, and log text that never holds the token.

import * as path from 'node:path';
import * as v from 'valibot';
import type { DownloadErrorCode, DownloadRequest, HubName, Registry, RegistryModel } from '../shared/models';
import { RegistrySchema } from '../shared/models';
import type { Translate } from './modelReport';
import type { Settings } from './settings';

export const HF_TOKENS_URL = 'https://huggingface.co/settings/tokens';
const OFFICIAL: Record<HubName, string> = { huggingface: 'https://huggingface.co', modelscope: 'https://modelscope.cn' };

export function hubLabel(hub: HubName, t: Translate): string {
  return hub === 'huggingface' ? t('Hugging Face') : t('ModelScope');
}

// ---- registry ------------------------------------------------------------------------------

/**
 * The bundled registry, checked with the schema the server checks it with (shared/models.ts's
 * RegistrySchema); throws naming the field. The relations between entries are the server's to check.
 */
export function parseRegistry(json: unknown): Registry {
  const r = v.safeParse(RegistrySchema, json);
  if (r.success) return r.output;
  const issue = r.issues[0];
  throw new Error(`models/registry.json: ${v.getDotPath(issue) ?? 'top level'}: ${issue.message}`);
}

export interface HubChoice {
  hub: HubName;
  /** The model's own repository on this hub. */
  repo: string;
  /** Every repository a download from this hub reads (parts may come from another model's). */
  repos: string[];
  /** A gated repository is among them: a Hugging Face login (token) and an accepted licence are needed. */
  needsLogin: boolean;
  /** Where to accept the licence of the (first) gated repository. */
  licenceUrl?: string;
}

export interface ModelChoice {
  id: string;
  name: string;
  description: string;
  /** Sum of the sizes the registry knows. */
  bytes: number;
  /** Every file's size is known. */
  sizeKnown: boolean;
  hubs: HubChoice[];
  defaults?: RegistryModel['defaults'];
}

function repoPage(hub: HubName, repo: string): string {
  return hub === 'huggingface' ? `https://huggingface.co/${repo}` : `https://modelscope.cn/models/${repo}`;
}

export function modelChoices(reg: Registry): ModelChoice[] {
  const byId = new Map(reg.models.map((m) => [m.id, m]));
  return reg.models.map((m) => {
    const files = m.parts.flatMap((p) => p.files);
    const hubs = m.sources.map((src): HubChoice => {
      // The part's repository on the same hub (else its first source), as the planner picks it.
      const involved = [src, ...m.parts.filter((p) => p.from && p.from !== m.id).map((p) => {
        const other = byId.get(p.from!);
        return other?.sources.find((s) => s.hub === src.hub) ?? other?.sources[0];
      })].filter((s): s is NonNullable<typeof s> => !!s);
      const unique = [...new Map(involved.map((s) => [`${s.hub}:${s.repo}`, s])).values()];
      const gated = unique.filter((s) => s.gated);
      return {
        hub: src.hub,
        repo: src.repo,
        repos: unique.map((s) => s.repo),
        needsLogin: gated.length > 0,
        ...(gated.length ? { licenceUrl: gated[0].licenceUrl ?? repoPage(gated[0].hub, gated[0].repo) } : {}),
      };
    });
    return {
      id: m.id,
      name: m.name,
      description: m.description,
      bytes: files.reduce((a, f) => a + (f.size ?? 0), 0),
      sizeKnown: files.length > 0 && files.every((f) => f.size !== undefined),
      hubs,
      ...(m.defaults ? { defaults: m.defaults } : {}),
    };
  });
}

// ---- request --------------------------------------------------------------------------------

/** Where downloads go by default: majicflux.models.downloadFolder, else `<globalStorage>/models`. */
export function defaultDownloadFolder(settings: Settings, globalStorage: string): string {
  return settings.models.downloadFolder || path.join(globalStorage, 'models');
}

/** The hub mirrors set (majicflux.models.*Endpoint), for DownloadRequest.endpoints. */
export function endpointsOf(settings: Settings): DownloadRequest['endpoints'] | undefined {
  const e: Partial<Record<HubName, string>> = {};
  if (settings.models.huggingfaceEndpoint) e.huggingface = settings.models.huggingfaceEndpoint;
  if (settings.models.modelscopeEndpoint) e.modelscope = settings.models.modelscopeEndpoint;
  return Object.keys(e).length ? e : undefined;
}

/** The host a hub's requests (and, for Hugging Face, the token) go to. */
export function hubHost(hub: HubName, settings: Settings): string {
  const base = (hub === 'huggingface' ? settings.models.huggingfaceEndpoint : settings.models.modelscopeEndpoint) || OFFICIAL[hub];
  try {
    return new URL(base).host;
  } catch {
    return base;
  }
}

/** A mirror stands in for the official hub: the token would go to someone else. */
export function usesMirror(hub: HubName, settings: Settings): boolean {
  return hubHost(hub, settings) !== new URL(OFFICIAL[hub]).host;
}

export interface DownloadChoice {
  model: string;
  hub: HubName;
  /** Absolute folder (local server); default defaultDownloadFolder(). */
  dest?: string;
  token?: string;
  /** A `majicflux serve` server: dest is relative to its --models-dir. */
  remote?: boolean;
}

export function downloadRequest(c: DownloadChoice, settings: Settings, globalStorage: string): DownloadRequest {
  const endpoints = endpointsOf(settings);
  return {
    model: c.model,
    hub: c.hub,
    dest: c.remote ? '.' : c.dest || defaultDownloadFolder(settings, globalStorage),
    ...(c.token && c.hub === 'huggingface' ? { token: c.token } : {}),
    ...(endpoints ? { endpoints } : {}),
  };
}

/** The request for the log: everything but the token (only whether there is one). */
export function describeRequest(r: DownloadRequest): string {
  const ends = r.endpoints ? Object.entries(r.endpoints).map(([h, u]) => `${h}=${u}`).join(', ') : '';
  return `download ${r.model} from ${r.hub ?? 'its default hub'} into ${r.dest}${r.parts ? ` (parts ${r.parts.join(', ')})` : ''}${ends ? ` via ${ends}` : ''}; token: ${r.token ? 'yes' : 'no'}`;
}

/** Removes secrets from text that came back from elsewhere (server messages, error details) before it is logged or shown. */
export function redact(text: string, secrets: readonly (string | undefined)[]): string {
  let out = text;
  for (const s of secrets) if (s && s.length >= 4) out = out.split(s).join('***');
  // A Hugging Face token anywhere (hf_ followed by its 30+ characters), whoever put it there.
  return out.replace(/\bhf_[A-Za-z0-9]{20,}\b/g, 'hf_***');
}

// ---- failures -------------------------------------------------------------------------------

export type DownloadAction = 'setToken' | 'openLicence' | 'retry' | 'chooseFolder' | 'showLog';

/** What to offer after a failed download. */
export function actionsFor(code: DownloadErrorCode | 'stopped'): DownloadAction[] {
  switch (code) {
    case 'auth-required':
    case 'forbidden':
      return ['setToken', 'openLicence'];
    case 'network':
    case 'stopped':
      return ['retry', 'showLog'];
    case 'http':
    case 'not-found':
      return ['retry', 'showLog'];
    case 'checksum':
      return ['showLog', 'retry'];
    case 'disk-full':
      return ['chooseFolder'];
    case 'cancelled':
      return [];
  }
}

export function actionLabel(a: DownloadAction, t: Translate): string {
  switch (a) {
    case 'setToken': return t('Set Token');
    case 'openLicence': return t('Open Licence Page');
    case 'retry': return t('Retry');
    case 'chooseFolder': return t('Choose Another Folder');
    case 'showLog': return t('Show Log');
  }
}

/** The sentence shown for a failure; the server's message says what to do, this adds resuming where it applies. */
export function failureMessage(code: DownloadErrorCode | 'stopped', message: string, t: Translate): string {
  if (code === 'cancelled') return t('Download cancelled. The partial files are kept: download again to resume.');
  if (code === 'stopped') return t('Download interrupted: {0}', message);
  if (code === 'network') return t('Download interrupted: {0} Retry resumes where it stopped.', message);
  return t('Download failed: {0}', message);
}
