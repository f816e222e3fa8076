// The bundled demo model: tokenizers ship in models/demo/, random weights are written on first use.

import * as fs from 'node:fs';
import { cacheRoot } from '../system/userDirs';
import * as path from 'node:path';
import { ModelSpec, UserError } from '../../shared/api';
import { isFsError, writeFailureReason } from '../system/fsErrors';
import { processRunning } from '../system/pids';
import { TINY } from './architecture';
import { writeSyntheticModel } from './synthetic';

const DEMO_VERSION = 1;

/** models/demo in the package: dist/ sits one level below the root, src/inference/models/ three. */
export function demoAssetsDir(): string {
  for (const up of ['..', path.join('..', '..', '..')]) {
    const p = path.resolve(__dirname, up, 'models', 'demo');
    if (fs.existsSync(path.join(p, 'tokenizer'))) return p;
  }
  throw new Error('the demo model assets (models/demo) are missing from this installation');
}

export function demoModelDir(root = cacheRoot()): string {
  return path.join(root, `demo-model-v${DEMO_VERSION}`);
}

/** Make sure the demo model exists (writes ~15 MB the first time) and return its spec. */
export function ensureDemoModel(root?: string): ModelSpec {
  const dir = demoModelDir(root);
  const done = path.join(dir, '.complete');
  if (!fs.existsSync(done)) {
    const tmp = `${dir}.partial-${process.pid}`;
    removeAbandoned(dir);
    try {
      fs.rmSync(tmp, { recursive: true, force: true });
      writeSyntheticModel(tmp, TINY, { seed: 2024, tokenizers: demoAssetsDir() });
      fs.writeFileSync(path.join(tmp, '.complete'), '');
    } catch (e) {
      removeQuietly(tmp);
      if (!isFsError(e)) throw e;
      // The first thing a new user runs: say where it writes and how to move it, not Node's errno and stack.
      throw new UserError(
        `cannot write the demo model into ${path.dirname(dir)}: ${writeFailureReason(e)}. Its random weights (about 15 MB) are written there on first use: free some space, or set XDG_CACHE_HOME to a writable folder.`,
        (e as Error).stack,
      );
    }
    try {
      fs.rmSync(dir, { recursive: true, force: true });
      fs.renameSync(tmp, dir);
    } catch (e) {
      // Another process finished first: keep its copy.
      fs.rmSync(tmp, { recursive: true, force: true });
      if (!fs.existsSync(done)) throw e;
    }
  }
  return { dir, transformer: path.join(dir, 'flux.safetensors'), name: 'demo (random weights)' };
}

/** Partial copies that processes killed while writing them left (their pid no longer runs). */
function removeAbandoned(dir: string): void {
  let names: string[];
  try {
    names = fs.readdirSync(path.dirname(dir));
  } catch {
    return;
  }
  const prefix = `${path.basename(dir)}.partial-`;
  for (const name of names) {
    const pid = Number(name.slice(prefix.length));
    if (!name.startsWith(prefix) || !Number.isInteger(pid) || processRunning(pid)) continue;
    removeQuietly(path.join(path.dirname(dir), name));
  }
}

function removeQuietly(p: string): void {
  try {
    fs.rmSync(p, { recursive: true, force: true });
  } catch {
    // Nothing was written where nothing can be removed (a file in the way of the cache folder).
  }
}

/** What the CLI's model arguments (`--model`, `inspect`, `models check`) call the demo model. */
export const DEMO_MODEL_NAME = 'demo';

/**
 * The demo model when `arg` names it: "demo", or the bundled models/demo folder, which holds only
 * its tokenizers and configs (the weights are written into the cache) and would otherwise be
 * reported as an incomplete model. Writes the weights on first use.
 */
export function demoModelNamed(arg: string | undefined): ModelSpec | undefined {
  if (arg === undefined) return undefined;
  if (arg !== DEMO_MODEL_NAME && !isDemoAssetsDir(arg)) return undefined;
  return ensureDemoModel();
}

function isDemoAssetsDir(p: string): boolean {
  try {
    return fs.realpathSync(p) === fs.realpathSync(demoAssetsDir());
  } catch {
    return false;
  }
}
