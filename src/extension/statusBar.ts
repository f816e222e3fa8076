// One status bar item: server stopped / starting / loading the model / step k of n / idle with the
// model's name. Clicking it opens the generation panel.

import * as vscode from 'vscode';
import { Configuration } from './configuration';
import { Jobs } from './jobs';
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
    // The step count while denoising only: decoding and saving say so instead of the last step.
    if (cur && cur.stage === 'denoise' && cur.step !== undefined && cur.steps) {
      text = `$(sync~spin) MajicFLUX ${t('step {0}/{1}', cur.step, cur.steps)}${queued}`;
      tooltip = t('Generating "{0}"', cur.request.params.prompt);
    } else if (cur && (cur.stage === 'load' || cur.stage === 'denoise' || this.server.state === 'starting')) {
      // Before its first step a stage is loading its model part (sequential mode loads per stage).
      text = `$(loading~spin) MajicFLUX ${t('loading {0}', model)}${queued}`;
      tooltip = t('Loading the model');
    } else if (cur) {
      const what = cur.stage === 'text' ? t('encoding the prompt') : cur.stage === 'decode' ? t('decoding') : cur.stage === 'save' ? t('saving') : cur.state === 'queued' ? t('queued') : t('working');
      text = `$(loading~spin) MajicFLUX ${what}${queued}`;
      tooltip = t('Preparing "{0}"', cur.request.params.prompt);
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
