// Hover over a .flux block: its last image as a thumbnail and the parameters it was made with, or
// the parameters a run would use when it has none yet.

import * as path from 'node:path';
import * as vscode from 'vscode';
import { Configuration } from '../configuration';
import { blockKey, History } from '../history';
import { modelName } from '../settings';
import { DEFAULTS, RANDOM_SEED } from '../../shared/params';
import { fluxFileKey, parsed } from './documents';
import { blockAtLine, effectiveValues } from './parser';

const t = vscode.l10n.t;

export class FluxHover implements vscode.HoverProvider {
  constructor(private readonly history: History, private readonly config: Configuration) {}

  provideHover(document: vscode.TextDocument, position: vscode.Position): vscode.Hover | undefined {
    const doc = parsed(document);
    const block = blockAtLine(doc, position.line);
    if (!block) return undefined;
    const images = this.history.forBlock(fluxFileKey(document), blockKey(block.prompt));
    const md = new vscode.MarkdownString(undefined, true);
    md.supportHtml = false;
    const last = images[0];
    if (last) {
      const uri = vscode.Uri.file(last.file);
      md.appendMarkdown(`![${escape(path.basename(last.file))}](${uri.toString()}|width=256)\n\n`);
      const p = last.params;
      md.appendMarkdown(`**${escape(path.basename(last.file))}**`);
      if (images.length > 1) md.appendMarkdown(` · ${t('{0} images', images.length)}`);
      md.appendMarkdown('\n\n');
      md.appendMarkdown(
        table([
          [t('seed'), String(p.seed)],
          [t('steps'), String(p.steps)],
          [t('size'), `${p.width} × ${p.height}`],
          [t('guidance'), String(p.guidance)],
          [t('model'), `${p.model} (${p.weights})`],
          [t('made'), new Date(last.created).toLocaleString()],
        ]),
      );
    } else {
      const d = this.config.settings.defaults;
      const v = effectiveValues(doc, block, { steps: d.steps, width: d.width, height: d.height, guidance: d.guidance, seed: d.seed === RANDOM_SEED ? ('random' as const) : d.seed, count: DEFAULTS.count });
      md.appendMarkdown(`${t('No image yet. A run would use:')}\n\n`);
      md.appendMarkdown(
        table([
          [t('seed'), String(v.seed)],
          [t('steps'), String(v.steps)],
          [t('size'), `${v.width} × ${v.height}`],
          [t('guidance'), String(v.guidance)],
          [t('count'), String(v.count)],
          [t('model'), modelName(this.config.settings)],
        ]),
      );
    }
    return new vscode.Hover(md, new vscode.Range(block.span.start.line, 0, block.span.end.line, Number.MAX_SAFE_INTEGER));
  }
}

function escape(s: string): string {
  return s.replace(/[\\`*_{}[\]()#+\-.!|<>]/g, (c) => `\\${c}`);
}

function table(rows: [string, string][]): string {
  return `| | |\n|---|---|\n${rows.map(([k, v]) => `| ${escape(k)} | ${escape(v)} |`).join('\n')}\n`;
}
