// The three model operations as the server and the CLI offer them (the same code behind
// "MajicFLUX: Find/Check/Download Models" and `majicflux models list|check|download`):
// discovery, check and download, plus where the recorded checksums live.

import * as fs from 'node:fs';
import * as os from 'node:os';
import { cacheRoot } from '../system/userDirs';
import * as path from 'node:path';
import type { ModelSpec } from '../../shared/api';
import { checkModel, DownloadCommand, machineInfo, recordChecksums } from './check';
import { discoverModels } from './discovery';
import { downloadFiles } from './download';
import { DownloadPlan, loadRegistry, planDownload } from './registry';
import type { DownloadProgress, DownloadRequest, DownloadResult, FoundModel, MachineInfo, ModelCheckReport } from '../../shared/models';

export interface ModelSearchOptions {
  configured?: ModelSpec;
  searchPaths?: string[];
  workspaceFolders?: string[];
  globalStorage?: string;
  /** GPU memory from the user's settings, bytes (wins over nvidia-smi). */
  gpuMemory?: number;
}

/** Where `majicflux models download` puts models unless told otherwise ($MAJICFLUX_MODELS_DIR). */
export function defaultModelsDir(): string {
  return process.env.MAJICFLUX_MODELS_DIR || path.join(cacheRoot(), 'models');
}

/** Where downloads went before the cache moved to the platform's own folder (macOS, Windows): still searched. */
function legacyModelsDirs(): string[] {
  const old = path.join(os.homedir(), '.cache', 'majicflux', 'models');
  return old === path.join(cacheRoot(), 'models') || old === defaultModelsDir() ? [] : [old];
}

/** Where verified checksums are recorded (keyed by file identity), beside the converted-weight caches. */
export function checksumStorePath(cacheDir?: string): string {
  return path.join(cacheDir ?? cacheRoot(), 'checksums.json');
}

export async function findModels(opts: ModelSearchOptions): Promise<{ found: FoundModel[]; machine: MachineInfo }> {
  const machine = await machineInfo({ gpuMemory: opts.gpuMemory });
  const found = discoverModels({ configured: opts.configured, searchPaths: [...(opts.searchPaths ?? []), defaultModelsDir(), ...legacyModelsDirs()], workspaceFolders: opts.workspaceFolders, globalStorage: opts.globalStorage });
  return { found, machine };
}

export async function checkModels(
  spec: ModelSpec,
  opts: { verify?: boolean; cacheDir?: string; gpuMemory?: number; width?: number; height?: number; downloadCommand?: DownloadCommand } = {},
): Promise<ModelCheckReport> {
  const machine = await machineInfo({ gpuMemory: opts.gpuMemory });
  return checkModel(spec, { verify: opts.verify, checksumStore: checksumStorePath(opts.cacheDir), machine, width: opts.width, height: opts.height, downloadCommand: opts.downloadCommand });
}

export interface DownloadHooks {
  signal?: AbortSignal;
  onProgress?(p: DownloadProgress): void;
  log?(level: 'debug' | 'info' | 'warn' | 'error', message: string): void;
  cacheDir?: string;
}

/** What a download will fetch; throws a RegistryError (unknown model, hub or part) before anything starts. */
export function planModelDownload(req: DownloadRequest): DownloadPlan {
  return planDownload(req, loadRegistry());
}

/** Fetches (hub, resumable, verified) what planModelDownload planned and records the checksums. */
export async function downloadModel(req: DownloadRequest, hooks: DownloadHooks = {}, plan: DownloadPlan = planModelDownload(req)): Promise<DownloadResult> {
  hooks.log?.('info', `download ${req.model} from ${req.hub ?? plan.repos[0]?.hub}: ${plan.items.length} files into ${req.dest}`);
  const created = missingFolders(plan.items.map((i) => path.dirname(i.dest)));
  let files;
  try {
    files = await downloadFiles(plan.items, {
      token: req.token,
      endpoints: req.endpoints,
      signal: hooks.signal,
      onProgress: hooks.onProgress,
      log: hooks.log,
    });
  } catch (err) {
    removeEmptyFolders(created);
    throw err;
  }
  recordChecksums(checksumStorePath(hooks.cacheDir), files.map((f) => ({ path: f.path, sha256: f.sha256 })));
  return { spec: plan.spec, files };
}

/** The folders (and their ancestors) that do not exist yet, deepest first. */
function missingFolders(dirs: string[]): string[] {
  const missing = new Set<string>();
  for (let dir of dirs) {
    while (!missing.has(dir) && !fs.existsSync(dir)) {
      missing.add(dir);
      dir = path.dirname(dir);
    }
  }
  return [...missing].sort((a, b) => b.length - a.length);
}

/**
 * A download that failed before writing anything (no network) would otherwise leave a tree of
 * empty folders; a folder holding a partial file stays, so that running it again resumes.
 */
function removeEmptyFolders(dirs: string[]): void {
  for (const dir of dirs) {
    try {
      fs.rmdirSync(dir);
    } catch {
      // not empty, or already gone
    }
  }
}
