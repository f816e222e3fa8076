// Keeps the folder of images dropped from the desktop bounded: pruned a little after activation and
// after each new drop (droppedPrune.ts says what goes), each removal logged; a run with a dropped
// image marks it used; "MajicFLUX: Clear Dropped Images" empties it now, after asking.

import * as path from 'node:path';
import * as vscode from 'vscode';
import { formatBytes } from '../../shared/bytes';
import type { History } from '../history';
import { isActive, Jobs } from '../jobs';
import { DroppedImages } from './droppedImages';
import { CLEAR_ALL, DroppedRefs, DROPPED_LIMITS, PruneLimits } from './droppedPrune';

const t = vscode.l10n.t;
/** Activation is busy enough: the first prune waits this long (it is asynchronous I/O in any case). */
const FIRST_PRUNE_DELAY_MS = 15_000;
const DAY_MS = 24 * 3600_000;

export interface DroppedDeps {
  context: vscode.ExtensionContext;
  history: History;
  jobs: Jobs;
  log: vscode.LogOutputChannel;
  /** The panel's input image in this workspace. */
  inputImage(): string | undefined;
}

/** The images this window still needs: the panel's, the unfinished jobs', the history's. */
function refsOf(d: DroppedDeps): DroppedRefs {
  const current = d.inputImage();
  const jobs = d.jobs.active().map((j) => j.request.params.image);
  const history = d.history.inputImages();
  const paths = (xs: (string | undefined)[]) => xs.filter((x): x is string => typeof x === 'string' && path.isAbsolute(x));
  return { inUse: paths([current, ...jobs]), referenced: paths(history) };
}

export class DroppedCleanup extends DroppedImages {
  constructor(private readonly d: DroppedDeps) {
    super(path.join(d.context.globalStorageUri.fsPath, 'inputs'), () => refsOf(d));
    const touched = new WeakSet<object>();
    const timer = setTimeout(() => void this.pruneAndLog('at start'), FIRST_PRUNE_DELAY_MS);
    d.context.subscriptions.push(
      { dispose: () => clearTimeout(timer) },
      d.jobs.onDidChange((j) => {
        const image = j.request.params.image;
        if (!image || !isActive(j) || touched.has(j)) return;
        touched.add(j);
        void this.touch(image).catch((err: Error) => d.log.warn(`dropped images: could not mark ${image} used: ${err.message}`));
      }),
      vscode.commands.registerCommand('majicflux.clearDroppedImages', () => this.clearCommand()),
    );
  }

  /** Prunes, logging each removal; never throws (a prune that fails costs only disk space). */
  async pruneAndLog(why: string, limits: PruneLimits = DROPPED_LIMITS): Promise<number> {
    try {
      const r = await this.prune(limits);
      for (const f of r.removed) this.d.log.info(`dropped images: removed ${path.basename(f.file)} (${formatBytes(f.size)}, last used ${new Date(f.lastUsed).toISOString()})`);
      if (r.removed.length) this.d.log.info(`dropped images (${why}): removed ${r.removed.length}; ${r.kept} kept (${formatBytes(r.keptBytes)}) in ${this.dir}`);
      return r.removed.length;
    } catch (err) {
      this.d.log.warn(`dropped images: could not prune ${this.dir}: ${(err as Error).message}`);
      return 0;
    }
  }

  private async clearCommand(): Promise<void> {
    const clear = t('Delete');
    const choice = await vscode.window.showWarningMessage(
      t('Delete the copies of images dropped on the panel from the desktop, kept in {0}? Your original files are not touched; the panel\'s current input image stays.', this.dir),
      { modal: true },
      clear,
    );
    if (choice !== clear) return;
    const n = await this.pruneAndLog('cleared', CLEAR_ALL);
    void vscode.window.showInformationMessage(n ? t('Deleted {0} dropped image(s).', n) : t('There were no dropped images to delete.'));
  }
}

/** The sentence a re-run shows for a dropped image that is gone: what it was and what to do. */
export function droppedImageGone(file: string): string {
  return t('input image {0} (a copy of an image dropped on the panel, deleted after {1} days unused or by Clear Dropped Images): drop the image on the panel again to use it', path.basename(file), DROPPED_LIMITS.maxAgeMs / DAY_MS);
}
