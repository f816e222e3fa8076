// Workspace Trust, one rule: every command stays visible and enabled (a disabled command does
// nothing and says nothing, and the palette hides it without a hint); on use in an untrusted
// workspace it refuses before any work, with a message that offers [Manage Workspace Trust].

import * as vscode from 'vscode';

const t = vscode.l10n.t;

/** Messages shown by refusals, oldest first, for tests (the workbench's toasts cannot be read from the API). */
export const trustRefusals: string[] = [];

/** True in a trusted workspace; otherwise says why nothing runs (`message`, localized) and returns false. */
export function requireTrust(message = t('MajicFLUX runs a model only in a trusted workspace.')): boolean {
  if (vscode.workspace.isTrusted) return true;
  trustRefusals.push(message);
  const manage = t('Manage Workspace Trust');
  void vscode.window.showWarningMessage(message, manage).then((c) => {
    if (c === manage) void vscode.commands.executeCommand('workbench.trust.manage');
  });
  return false;
}
