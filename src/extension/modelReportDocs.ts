// Model check reports as read-only virtual documents (majicflux-report:), shown as Markdown
// previews: closing one never asks to save anything, and nothing is written to disk.

import * as vscode from 'vscode';

const REPORT_SCHEME = 'majicflux-report';

class Reports implements vscode.TextDocumentContentProvider {
  private readonly docs = new Map<string, string>();
  private readonly emitter = new vscode.EventEmitter<vscode.Uri>();
  readonly onDidChange = this.emitter.event;

  provideTextDocumentContent(uri: vscode.Uri): string {
    return this.docs.get(uri.path) ?? '';
  }

  set(name: string, content: string): vscode.Uri {
    const uri = vscode.Uri.from({ scheme: REPORT_SCHEME, path: `/${name.replace(/[\\/:*?"<>|#%]+/g, '_')} - model check.md` });
    this.docs.set(uri.path, content);
    this.emitter.fire(uri);
    return uri;
  }
}

let reports: Reports | undefined;

export function registerReports(context: vscode.ExtensionContext): void {
  reports = new Reports();
  context.subscriptions.push(vscode.workspace.registerTextDocumentContentProvider(REPORT_SCHEME, reports));
}

export async function showMarkdown(name: string, content: string): Promise<void> {
  const uri = reports!.set(name, content);
  const doc = await vscode.workspace.openTextDocument(uri);
  await vscode.commands.executeCommand('markdown.showPreview', doc.uri).then(undefined, () => vscode.window.showTextDocument(doc));
}
