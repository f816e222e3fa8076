// Hover over a .flux block: the parameters its last image was made with and a thumbnail, or
// the parameters a run would use when it has none yet.

import * as vscode from 'vscode';
import { Configuration } from '../configuration';
import { blockKey, History } from '../history';
import { modelName } from '../settings';
import { DEFAULTS, RANDOM_SEED } from '../../shared/params';
import { fluxFileKey, parsed } from './documents';
import { extraRows, imageHoverMarkdown, markdownTable } from './hoverMarkdown';
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
      md.appendMarkdown(imageHoverMarkdown(last, images.length, t));
    } else {
      const d = this.config.settings.defaults;
      const v = effectiveValues(doc, block, { steps: d.steps, width: d.width, height: d.height, guidance: d.guidance, seed: d.seed === RANDOM_SEED ? ('random' as const) : d.seed, count: DEFAULTS.count });
      md.appendMarkdown(`${t('No image yet. A run would use:')}\n\n`);
      md.appendMarkdown(
        markdownTable([
          [t('seed'), String(v.seed)],
          [t('steps'), String(v.steps)],
          [t('size'), `${v.width} × ${v.height}`],
          [t('guidance'), String(v.guidance)],
          [t('count'), String(v.count)],
          ...extraRows(
            {
              ...v,
              loras: v.loras?.map((l) => ({ label: l.path, strength: l.strength })),
              hires: v.hires && { scale: v.hires.scale ?? DEFAULTS.hiresScale, strength: v.hires.strength ?? DEFAULTS.hiresStrength, steps: v.hires.steps ?? v.steps },
            },
            t,
          ),
          [t('model'), modelName(this.config.settings)],
        ]),
      );
    }
    return new vscode.Hover(md, new vscode.Range(block.span.start.line, 0, block.span.end.line, Number.MAX_SAFE_INTEGER));
  }
}
