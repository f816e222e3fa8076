// The hover's text for a block that has images: pure (no vscode), so its layout is unit-tested.
// The parameter table comes first and the thumbnail is small: a hover is a few hundred pixels high,
// and a 256-px image above the table pushed the parameters out of view.

import * as path from 'node:path';
import { pathToFileURL } from 'node:url';
import type { ImageMetadata } from '../../shared/params';

export const THUMBNAIL_WIDTH = 128;

type Translate = (message: string, ...args: (string | number)[]) => string;

export interface HoverImage {
  file: string;
  params: ImageMetadata;
  created: number;
}

/** Markdown for the newest of `count` images of a block. `t` is vscode.l10n.t (a parameter to keep this pure). */
export function imageHoverMarkdown(last: HoverImage, count: number, t: Translate): string {
  const p = last.params;
  const name = escapeMarkdown(path.basename(last.file));
  let md = `**${name}**`;
  if (count > 1) md += ` · ${t('{0} images', count)}`;
  md += '\n\n';
  md += markdownTable([
    [t('seed'), String(p.seed)],
    [t('steps'), String(p.steps)],
    [t('size'), `${p.width} × ${p.height}`],
    [t('guidance'), String(p.guidance)],
    ...extraRows({ ...p, loras: p.loras?.map((l) => ({ label: l.name, strength: l.strength })) }, t),
    [t('model'), `${p.model} (${p.weights})`],
    [t('made'), new Date(last.created).toLocaleString()],
  ]);
  md += `\n![${name}](${pathToFileURL(last.file).toString()}|width=${THUMBNAIL_WIDTH})\n`;
  return md;
}

/** What an image or a block sets beyond text-to-image, as table rows; nothing when it sets none. */
export interface ExtraValues {
  negativePrompt?: string;
  trueCfgScale?: number;
  loras?: { label: string; strength?: number }[];
  image?: string;
  strength?: number;
  hires?: { scale?: number; strength?: number; steps?: number };
}

export function extraRows(p: ExtraValues, t: Translate): [string, string][] {
  const rows: [string, string][] = [];
  if (p.trueCfgScale !== undefined && p.trueCfgScale > 1) rows.push([t('true CFG'), String(p.trueCfgScale)], [t('negative prompt'), p.negativePrompt ?? '']);
  if (p.loras?.length) rows.push([t('LoRAs'), p.loras.map((l) => `${l.label} ${l.strength ?? 1}`).join(', ')]);
  if (p.image !== undefined) rows.push([t('input image'), p.strength === undefined ? p.image : t('{0} at strength {1}', p.image, p.strength)]);
  if (p.hires) rows.push([t('hires pass'), t('×{0}, strength {1}, {2} steps', p.hires.scale ?? '', p.hires.strength ?? '', p.hires.steps ?? '')]);
  return rows;
}

export function escapeMarkdown(s: string): string {
  return s.replace(/[\\`*_{}[\]()#+\-.!|<>]/g, (c) => `\\${c}`);
}

export function markdownTable(rows: [string, string][]): string {
  return `| | |\n|---|---|\n${rows.map(([k, v]) => `| ${escapeMarkdown(k)} | ${escapeMarkdown(v)} |`).join('\n')}\n`;
}
