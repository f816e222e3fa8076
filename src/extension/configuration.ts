// Feeds settings.ts from the workspace configuration, re-validates on change, and tells the user
// (once per distinct problem) what is wrong and where to fix it.

import * as fs from 'node:fs';
import * as vscode from 'vscode';
import { settingProblemMessage } from './messages';
import { SECTION, SettingProblem, Settings, validateSettings } from './settings';

export class Configuration implements vscode.Disposable {
  private current: { settings: Settings; problems: SettingProblem[] };
  private readonly shown = new Set<string>();
  private readonly emitter = new vscode.EventEmitter<Settings>();
  readonly onDidChange = this.emitter.event;
  private readonly subscription: vscode.Disposable;

  constructor(private readonly log: vscode.LogOutputChannel) {
    this.current = this.read();
    this.subscription = vscode.workspace.onDidChangeConfiguration((e) => {
      if (!e.affectsConfiguration(SECTION)) return;
      this.current = this.read();
      this.report();
      this.emitter.fire(this.current.settings);
    });
  }

  get settings(): Settings {
    return this.current.settings;
  }

  get problems(): SettingProblem[] {
    return this.current.problems;
  }

  /**
   * The settings as they apply to `file`: in a multi-root workspace its folder's own
   * resource-scoped values (majicflux.output.folder, .fileName) over the window's. A value there that
   * is wrong falls back to the default, logged.
   */
  settingsFor(file: string | undefined): Settings {
    const folder = file && vscode.workspace.workspaceFolders && vscode.workspace.workspaceFolders.length > 1 ? vscode.workspace.getWorkspaceFolder(vscode.Uri.file(file)) : undefined;
    if (!folder) return this.settings;
    const cfg = vscode.workspace.getConfiguration(SECTION, folder.uri);
    const scoped = validateSettings((key) => cfg.get(key), { workspaceFolder: folder.uri.fsPath, exists: fs.existsSync, isFile });
    const known = new Set(this.current.problems.map(settingProblemMessage));
    for (const p of scoped.problems) if (!known.has(settingProblemMessage(p))) this.log.warn(`${folder.name}: ${settingProblemMessage(p)}`);
    return scoped.settings;
  }

  private read() {
    const cfg = vscode.workspace.getConfiguration(SECTION);
    const workspaceFolder = vscode.workspace.workspaceFolders?.[0]?.uri.fsPath;
    return validateSettings((key) => cfg.get(key), { workspaceFolder, exists: fs.existsSync, isFile });
  }

  /** Logs every problem and shows new ones (not the same message twice in a session). */
  report(): void {
    const fresh = this.current.problems.filter((p) => !this.shown.has(settingProblemMessage(p)));
    for (const p of this.current.problems) this.log.warn(settingProblemMessage(p));
    if (!fresh.length) return;
    for (const p of fresh) this.shown.add(settingProblemMessage(p));
    const open = vscode.l10n.t('Open Settings');
    const first = settingProblemMessage(fresh[0]);
    const more = fresh.length > 1 ? ' ' + vscode.l10n.t('(and {0} more; see the log)', fresh.length - 1) : '';
    void vscode.window.showWarningMessage(`MajicFLUX: ${first}${more}`, open).then((choice) => {
      if (choice === open) void vscode.commands.executeCommand('workbench.action.openSettings', fresh[0].key);
    });
  }

  dispose(): void {
    this.subscription.dispose();
    this.emitter.dispose();
  }
}

function isFile(p: string): boolean {
  try {
    return !fs.statSync(p).isDirectory();
  } catch {
    return false;
  }
}
