// Where generated images go and what they are called. Never overwrites: a taken name gets `-1`,
// `-2`, … and names handed out to queued jobs are reserved until the job ends.

import { randomInt } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { firstFreeName } from '../inference/system/freeName';
import { renderTemplate, TemplateValues } from '../shared/fileName';
import { expandPath } from './settings';

export interface FolderInput {
  /** `majicflux.output.folder`: relative (to the .flux file's folder, else the workspace root) or absolute. */
  setting: string;
  /** The .flux file the run comes from, if any. */
  fluxFile?: string;
  workspaceRoot?: string;
  home?: string;
}

/** The output folder, or undefined when there is nothing to put a relative folder under (ask the user). */
export function resolveOutputFolder(input: FolderInput): string | undefined {
  const setting = input.setting.trim() || 'generated';
  const absolute = expandPath(setting, { home: input.home, workspaceFolder: input.workspaceRoot });
  if (path.isAbsolute(setting) || setting.startsWith('~') || setting.includes('${')) return path.isAbsolute(absolute) ? absolute : undefined;
  const base = input.fluxFile ? path.dirname(input.fluxFile) : input.workspaceRoot;
  return base ? path.join(base, setting) : undefined;
}

/**
 * The target of one image. `outTemplate` (a .flux block's `out:`) is relative to the .flux file's
 * folder, or to `outBase` for a .flux document not saved yet (where its other relative paths start:
 * the workspace root), and replaces folder + file-name template.
 */
export function outputPath(opts: { folder: string; template: string; values: TemplateValues; fluxFile?: string; outTemplate?: string; outBase?: string }): string {
  const base = opts.fluxFile ? path.dirname(opts.fluxFile) : opts.outBase;
  if (opts.outTemplate && base) return path.join(base, ...renderTemplate(opts.outTemplate, opts.values).split('/'));
  return path.join(opts.folder, ...renderTemplate(opts.template, opts.values).split('/'));
}

/** Hands out file names that neither exist nor are promised to another queued job. */
export class OutputReservations {
  private readonly reserved = new Set<string>();

  constructor(private readonly exists: (p: string) => boolean = fs.existsSync) {}

  reserve(target: string): string {
    const free = firstFreeName(target, (candidate) => this.reserved.has(candidate) || this.exists(candidate));
    this.reserved.add(free);
    return free;
  }

  release(p: string): void {
    this.reserved.delete(p);
  }
}

/** A seed for "random": drawn here, not by the server, so the file name can carry it. */
export function randomSeed(): number {
  return randomInt(0, 2 ** 32);
}

/** Seeds for `count` images: a fixed seed counts up (42, 43, …); random draws each. */
export function seedsFor(seed: number | 'random' | undefined, count: number, draw: () => number = randomSeed): number[] {
  const n = Math.max(1, Math.floor(count));
  if (seed === undefined || seed === 'random' || seed < 0) return Array.from({ length: n }, draw);
  return Array.from({ length: n }, (_, i) => seed + i);
}

/**
 * The workspace folder a run's relative output folder (and `${workspaceFolder}`) starts from: the
 * innermost one holding the document the run came from, so that in a multi-root workspace the image
 * lands in that document's folder; with no document, or one outside every folder, the first.
 */
export function workspaceFolderFor(document: string | undefined, folders: readonly string[]): string | undefined {
  const holding = document ? folders.filter((f) => isInside(f, document)) : [];
  return holding.sort((a, b) => b.length - a.length)[0] ?? folders[0];
}

/** Is `p` inside `folder` (or equal)? For keeping `out:` inside the workspace. */
export function isInside(folder: string, p: string): boolean {
  const rel = path.relative(folder, p);
  return rel === '' || (!rel.startsWith('..') && !path.isAbsolute(rel));
}
