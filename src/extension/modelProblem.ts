// The configured model cannot be used (its folder or file is not there, parts are missing): one
// message wherever it shows (a run refused, a job failed, the status bar), with the ways to fix it;
// and those ways as buttons, the same wherever a model message offers them (Check Models too).

import * as vscode from 'vscode';
import { Configuration } from './configuration';
import { settingProblemMessage } from './messages';
import { SECTION } from './settings';

const t = vscode.l10n.t;

/**
 * A majicflux.model.* path that does not exist on this machine, or is relative with no folder open
 * (refused rather than silently replaced by the demo model). For a remote server the paths are the server's.
 */
export function modelPathProblem(config: Configuration, remote: boolean): string | undefined {
  if (remote) return undefined;
  const p = config.problems.find((x) => (x.code === 'pathMissing' || x.code === 'relativeNoFolder') && x.key.startsWith(`${SECTION}.model.`));
  return p && settingProblemMessage(p);
}

/** The error with [Open Settings] [Check Models] [Find Models] [Show Log]. */
export function showModelProblem(message: string, log: vscode.LogOutputChannel): Promise<void> {
  return offerModelSteps(vscode.window.showErrorMessage, message, ['settings', 'check', 'find', 'log'], { log });
}

/** A way forward a model message offers as a button; each does the same wherever it is offered. */
export type ModelStep = 'settings' | 'check' | 'find' | 'download' | 'log' | 'details';

function stepLabel(step: ModelStep): string {
  const labels: Record<ModelStep, string> = {
    settings: t('Open Settings'),
    check: t('Check Models'),
    find: t('Find Models'),
    download: t('Download Model…'),
    log: t('Show Log'),
    details: t('Details'),
  };
  return labels[step];
}

/** Shows `message` with `steps` as buttons (in that order) and takes the one picked; `details` opens the caller's report. */
export async function offerModelSteps(
  show: (message: string, ...items: string[]) => Thenable<string | undefined>,
  message: string,
  steps: readonly ModelStep[],
  how: { log?: vscode.LogOutputChannel; details?: () => Promise<void> } = {},
): Promise<void> {
  const labels = steps.map(stepLabel);
  const picked = await show(message, ...labels);
  switch (steps[labels.indexOf(picked ?? '')]) {
    case 'settings':
      await vscode.commands.executeCommand('workbench.action.openSettings', `${SECTION}.model`);
      break;
    case 'check':
      await vscode.commands.executeCommand('majicflux.checkModels');
      break;
    case 'find':
      await vscode.commands.executeCommand('majicflux.findModels');
      break;
    case 'download':
      await vscode.commands.executeCommand('majicflux.downloadModel');
      break;
    case 'log':
      how.log?.show();
      break;
    case 'details':
      await how.details?.();
      break;
  }
}
