// One status bar item: server stopped / starting / loading the model / step k of n / idle with the
// model's name. Clicking it opens the generation panel.

import * as vscode from 'vscode';
import { Configuration } from './configuration';
import { Jobs } from './jobs';
import { jobProgress } from './progress';
import { statusText } from './progressText';
import { ServerManager } from './serverManager';
import { modelName } from './settings';

const t = vscode.l10n.t;

export class StatusBar implements vscode.Disposable {
  private readonly item = vscode.window.createStatusBarItem('majicflux.status', vscode.StatusBarAlignment.Left, 10);
  private readonly subs: { dispose(): void }[] = [];

  constructor(private readonly server: ServerManager, private readonly jobs: Jobs, private readonly config: Configuration) {
    this.item.name = 'MajicFLUX';
    this.item.command = 'majicflux.openPanel';
    this.subs.push(server.onDidChangeState(() => this.update()), jobs.onDidChange(() => this.update()), config.onDidChange(() => this.update()));
    this.update();
    this.item.show();
  }

  /** The text shown, for tests. */
  get text(): string {
    return this.item.text;
  }

  update(): void {
    const active = this.jobs.active();
    const cur = this.jobs.running();
    const model = modelName(this.config.settings);
    const queued = active.length > 1 ? ` (+${active.length - 1})` : '';
    let text: string;
    let tooltip: string;
    const p = cur && jobProgress(cur);
    if (cur && p) {
      // progress.ts: the same stages as the notification and the panel, in short.
      const stepping = p.phase === 'denoise' && !p.loading;
      text = `${stepping ? '$(sync~spin)' : '$(loading~spin)'} MajicFLUX ${statusText(p, model)}${queued}`;
      tooltip = p.loading ? t('Loading the model') : t('Generating "{0}"', cur.request.params.prompt);
    } else if (this.server.state === 'ready') {
      text = `$(pass) MajicFLUX ${model}`;
      tooltip = t('Server idle, model {0}. Click to open the generation panel.', model);
    } else if (this.server.state === 'starting') {
      text = `$(loading~spin) MajicFLUX ${t('starting')}`;
      tooltip = t('Starting the server');
    } else {
      text = `$(circle-large-outline) MajicFLUX`;
      tooltip = t('Server stopped (it starts with the first image). Click to open the generation panel.');
    }
    this.item.text = text;
    this.item.tooltip = tooltip;
  }

  dispose(): void {
    for (const s of this.subs) s.dispose();
    this.item.dispose();
  }
}
