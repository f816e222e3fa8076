// CodeLens above each .flux block: "Generate", "Generate all" above the first, "N images" once
// it has results, and the progress of a running block (click to cancel).

import * as vscode from 'vscode';
import { blockKey, History } from '../history';
import { isActive, Jobs } from '../jobs';
import { fluxFileKey, parsed } from './documents';
import { effectiveValues } from './parser';

const t = vscode.l10n.t;
const REFRESH_MS = 300;

export class FluxCodeLens implements vscode.CodeLensProvider, vscode.Disposable {
  private readonly changed = new vscode.EventEmitter<void>();
  readonly onDidChangeCodeLenses = this.changed.event;
  private readonly subs: { dispose(): void }[] = [];
  private timer: NodeJS.Timeout | undefined;
  private pending = false;
  /** Each active job's state and whether it is being cancelled, as last drawn. */
  private readonly shapes = new Map<string, string>();

  constructor(private readonly jobs: Jobs, private readonly history: History) {
    this.subs.push(
      // A job that starts, ends or is being cancelled changes the lenses' kind: redraw now. A step
      // changes a number: throttled.
      jobs.onDidChange((j) => {
        const shape = `${j.state}|${jobs.cancelling(j)}`;
        const changed = this.shapes.get(j.id) !== shape;
        if (isActive(j)) this.shapes.set(j.id, shape);
        else this.shapes.delete(j.id);
        this.refresh(changed);
      }),
      history.onDidChange(() => this.refresh(true)),
      vscode.workspace.onDidGrantWorkspaceTrust(() => this.refresh(true)),
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
    // A job being cancelled no longer holds its block: the server may need a step to confirm.
    const active = this.jobs.active().filter((j) => j.origin.fluxFile === file && !this.jobs.cancelling(j));
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

  /**
   * Redraws now, then at most every 300 ms while changes keep coming (step events come faster);
   * `now` redraws at once whatever came just before.
   * Leading edge: VS Code adds its own debounce (≥ 250 ms) before it asks again, so a change must
   * not wait for ours too — a finished image's "1 image" or a cancel shows at once.
   */
  refresh(now = false): void {
    if (this.timer && !now) {
      this.pending = true;
      return;
    }
    this.pending = false;
    this.changed.fire();
    if (this.timer) return;
    this.timer = setTimeout(() => {
      this.timer = undefined;
      if (this.pending) {
        this.pending = false;
        this.refresh();
      }
    }, REFRESH_MS);
  }

  dispose(): void {
    if (this.timer) clearTimeout(this.timer);
    for (const s of this.subs) s.dispose();
    this.changed.dispose();
  }
}
