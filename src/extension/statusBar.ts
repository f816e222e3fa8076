// One status bar item: server stopped / starting / a job's stage (progress.ts) / idle with the
// model's name, or a warning naming the problem when the model cannot be used. Clicking it opens
// the generation panel (Check Models in the warning state, Show Queue while a job runs).

import * as vscode from 'vscode';
import { Configuration } from './configuration';
import { Jobs } from './jobs';
import { modelPathProblem } from './modelProblem';
import { jobProgress } from './progress';
import { statusText } from './progressText';
import { ServerManager } from './serverManager';
import { modelName } from './settings';

const t = vscode.l10n.t;

export class StatusBar implements vscode.Disposable {
  private readonly item = vscode.window.createStatusBarItem('majicflux.status', vscode.StatusBarAlignment.Left, 10);
  private readonly subs: { dispose(): void }[] = [];
  /** The last job's failure when it was the model's (the server's code "model"); cleared by a success or a settings change. */
  private modelError: string | undefined;

  constructor(private readonly server: ServerManager, private readonly jobs: Jobs, private readonly config: Configuration) {
    this.item.name = 'MajicFLUX';
    this.subs.push(
      server.onDidChangeState(() => this.update()),
      jobs.onDidChange((j) => {
        if (j.state === 'failed' && j.error?.code === 'model') this.modelError = j.error.message;
        else if (j.state === 'done') this.modelError = undefined;
        this.update();
      }),
      config.onDidChange(() => {
        this.modelError = undefined;
        this.update();
      }),
    );
    this.update();
    this.item.show();
  }

  /** The text shown, for tests. */
  get text(): string {
    return this.item.text;
  }

  /** The command a click runs, for tests. */
  get command(): string | undefined {
    return typeof this.item.command === 'string' ? this.item.command : this.item.command?.command;
  }

  /** The tooltip shown, for tests. */
  get tooltip(): string {
    return typeof this.item.tooltip === 'string' ? this.item.tooltip : (this.item.tooltip?.value ?? '');
  }

  update(): void {
    const active = this.jobs.active();
    const cur = this.jobs.running();
    const model = modelName(this.config.settings);
    const queued = active.length > 1 ? ` (+${active.length - 1})` : '';
    let text: string;
    let tooltip: string;
    let problem: string | undefined;
    const p = cur && jobProgress(cur);
    if (cur && p) {
      // progress.ts: the same stages as the notification and the panel, in short.
      const stepping = p.phase === 'denoise' && !p.loading;
      text = `${stepping ? '$(sync~spin)' : '$(loading~spin)'} MajicFLUX ${statusText(p, model)}${queued}`;
      tooltip = p.loading ? t('Loading the model. Click to see the queue or cancel.') : t('Generating "{0}". Click to see the queue or cancel.', cur.request.params.prompt);
    } else if ((problem = modelPathProblem(this.config, this.server.isRemote) ?? this.modelError)) {
      text = `$(warning) MajicFLUX ${t('model not usable')}`;
      tooltip = t('{0} Click to check the model.', problem);
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
    // While images are being made, a click is the way to stop one: the panel shows only its own jobs.
    this.item.command = problem ? 'majicflux.checkModels' : cur && p ? 'majicflux.showQueue' : 'majicflux.openPanel';
    this.item.backgroundColor = problem ? new vscode.ThemeColor('statusBarItem.warningBackground') : undefined;
  }

  dispose(): void {
    for (const s of this.subs) s.dispose();
    this.item.dispose();
  }
}
