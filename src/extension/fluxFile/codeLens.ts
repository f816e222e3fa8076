// CodeLens above each .flux block: "Generate", "Generate all" above the first, "N images" once
// it has results, and the progress of a running block (click to cancel).

import * as vscode from 'vscode';
import { blockKey, History } from '../history';
import { Jobs } from '../jobs';
import { fluxFileKey, parsed } from './documents';
import { effectiveValues } from './parser';

const t = vscode.l10n.t;

export class FluxCodeLens implements vscode.CodeLensProvider, vscode.Disposable {
  private readonly changed = new vscode.EventEmitter<void>();
  readonly onDidChangeCodeLenses = this.changed.event;
  private readonly subs: { dispose(): void }[] = [];
  private timer: NodeJS.Timeout | undefined;

  constructor(private readonly jobs: Jobs, private readonly history: History) {
    this.subs.push(
      jobs.onDidChange(() => this.refresh()),
      history.onDidChange(() => this.refresh()),
      vscode.workspace.onDidGrantWorkspaceTrust(() => this.refresh()),
    );
  }

  provideCodeLenses(document: vscode.TextDocument): vscode.CodeLens[] {
    const doc = parsed(document);
    const lenses: vscode.CodeLens[] = [];
    const file = fluxFileKey(document);
    const uri = document.uri.toString();
    if (!vscode.workspace.isTrusted) {
      if (doc.blocks.length) {
        const at = new vscode.Range(doc.blocks[0].span.start.line, 0, doc.blocks[0].span.start.line, 0);
        lenses.push(new vscode.CodeLens(at, { title: t('$(shield) Trust this workspace to generate'), command: 'workbench.trust.manage' }));
      }
      return lenses;
    }
    const active = this.jobs.active().filter((j) => j.origin.fluxFile === file);
    doc.blocks.forEach((block, i) => {
      const at = new vscode.Range(block.span.start.line, 0, block.span.start.line, 0);
      const key = blockKey(block.prompt);
      const running = active.filter((j) => j.origin.blockKey === key);
      if (i === 0 && doc.blocks.length > 1) {
        lenses.push(new vscode.CodeLens(at, { title: t('$(play) Generate all ({0} blocks)', doc.blocks.length), command: 'majicflux.generateFluxFile', arguments: [uri] }));
      }
      if (running.length) {
        const cur = running.find((j) => j.state === 'running' && j.steps) ?? running[0];
        const progress = cur.step !== undefined && cur.steps ? t('step {0}/{1}', cur.step, cur.steps) : t('waiting');
        lenses.push(
          new vscode.CodeLens(at, {
            title: `$(sync~spin) ${running.length > 1 ? t('{0} images left', running.length) : t('generating')} · ${progress} · ${t('Cancel')}`,
            command: 'majicflux.cancelFluxBlock',
            arguments: [uri, key],
          }),
        );
      } else {
        const count = effectiveValues(doc, block, {}).count ?? 1;
        lenses.push(
          new vscode.CodeLens(at, {
            title: count > 1 ? t('$(play) Generate {0} images', count) : t('$(play) Generate'),
            command: 'majicflux.generateFluxBlock',
            arguments: [uri, key],
          }),
        );
      }
      const images = this.history.forBlock(file, key);
      if (images.length) {
        lenses.push(
          new vscode.CodeLens(at, {
            title: images.length === 1 ? t('$(file-media) 1 image') : t('$(file-media) {0} images', images.length),
            command: 'majicflux.openFluxImages',
            arguments: [uri, key],
          }),
        );
      }
    });
    return lenses;
  }

  /** Redraws, at most every 300 ms (step events come faster than that). */
  refresh(): void {
    if (this.timer) return;
    this.timer = setTimeout(() => {
      this.timer = undefined;
      this.changed.fire();
    }, 300);
  }

  dispose(): void {
    if (this.timer) clearTimeout(this.timer);
    for (const s of this.subs) s.dispose();
    this.changed.dispose();
  }
}
