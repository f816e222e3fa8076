// A run refused before it starts is said to the user AND written to the log, so the log tells the
// whole story of what was asked and why nothing ran: one line, no stack (it is the user's to fix).

import * as vscode from 'vscode';

export interface Refusal {
  /** An error toast (something to fix in a file); a warning otherwise. */
  error?: boolean;
  buttons?: string[];
}

/** Logs `message` as one line and shows it; resolves with the button picked. */
export function refuse(log: vscode.LogOutputChannel, message: string, opts: Refusal = {}): Thenable<string | undefined> {
  log.warn(`not generating: ${message.replace(/\s*\n\s*/g, ' ')}`);
  const show = opts.error ? vscode.window.showErrorMessage : vscode.window.showWarningMessage;
  return show(message, ...(opts.buttons ?? []));
}
