// The configured model cannot be used (its folder or file is not there, parts are missing): one
// message wherever it shows (a run refused, a job failed, the status bar), with the ways to fix it.

import * as vscode from 'vscode';
import { Configuration } from './configuration';
import { settingProblemMessage } from './messages';
import { SECTION } from './settings';

const t = vscode.l10n.t;

/** A majicflux.model.* path that does not exist on this machine (for a remote server the paths are the server's). */
export function modelPathProblem(config: Configuration, remote: boolean): string | undefined {
  if (remote) return undefined;
  const p = config.problems.find((x) => x.code === 'pathMissing' && x.key.startsWith(`${SECTION}.model.`));
  return p && settingProblemMessage(p);
}

/** The error with [Open Settings] [Check Models] [Find Models] [Show Log]. */
export async function showModelProblem(message: string, log: vscode.LogOutputChannel): Promise<void> {
  const settings = t('Open Settings');
  const check = t('Check Models');
  const find = t('Find Models');
  const showLog = t('Show Log');
  const c = await vscode.window.showErrorMessage(message, settings, check, find, showLog);
  if (c === settings) await vscode.commands.executeCommand('workbench.action.openSettings', `${SECTION}.model`);
  if (c === check) await vscode.commands.executeCommand('majicflux.checkModels');
  if (c === find) await vscode.commands.executeCommand('majicflux.findModels');
  if (c === showLog) log.show();
}
