// A whole model folder (FLUX.1-dev's layout, or root checkpoints side by side): which component
// serves each kind, the tokenizers, and what is missing, without failing on the first problem.

import * as fs from 'node:fs';
import * as path from 'node:path';
import { isGgufFile } from '../gguf';
import { notRegularKind } from '../../system/regularFile';
import { ClipComponent, Component, DitComponent, openComponent, openComponents, T5Component, VaeComponent } from './components';
import { ComponentKind, KIND_NAMES, KIND_ORDER, LayoutError } from './detect';
import { FolderEntry, listFolder, SUBFOLDERS } from './folder';
import { errorText } from '../../../shared/api';

const EXPECTED: Record<ComponentKind, string> = {
  dit: 'no FLUX transformer (DiT) found. Expected transformer/ with diffusion_pytorch_model.safetensors (or its .index.json), or a single-file DiT such as flux1-dev.safetensors',
  vae: 'no VAE found. Expected ae.safetensors, or vae/ with diffusion_pytorch_model.safetensors',
  clip: 'no text encoder found. Expected text_encoder/ (CLIP) with model.safetensors',
  t5: 'no T5 text encoder found. Expected text_encoder_2/ (T5) with model.safetensors or model.safetensors.index.json',
};

export interface ModelScan {
  root: string;
  /** Every component recognised: subfolders first, then root-level checkpoints. */
  components: Component[];
  /** The component used for each kind (a subfolder's over a root file; a root file only when it is the only candidate). */
  chosen: Partial<Record<ComponentKind, Component>>;
  tokenizer?: string;
  tokenizer2?: string;
  scheduler?: string;
  /** One line per piece a complete model needs and the folder lacks. */
  missing: string[];
  /** Files or folders that were there but could not be used, with why. */
  problems: string[];
  /** What the folder holds (folders with a trailing /). */
  entries: string[];
}

function hasAll(dir: string, files: string[]): boolean {
  return files.every((f) => fs.existsSync(path.join(dir, f)));
}

/** Looks through a model folder without failing on what is missing or broken. */
export function scanModelFolder(dir: string): ModelScan {
  const root = path.resolve(dir);
  let listing: FolderEntry[];
  try {
    listing = listFolder(root);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOTDIR') {
      const st = fs.statSync(root, { throwIfNoEntry: false });
      throw new LayoutError(root, `is ${(st && notRegularKind(st)) ?? 'a file'}, not a model folder`);
    }
    throw new LayoutError(root, `cannot read folder: ${(e as NodeJS.ErrnoException).code ?? errorText(e)}`);
  }
  const entries = listing.map((e) => e.label);
  const scan: ModelScan = { root, components: [], chosen: {}, missing: [], problems: [], entries };
  const brokenSubfolder: Partial<Record<ComponentKind, string>> = {};

  for (const kind of KIND_ORDER) {
    const sub = path.join(root, SUBFOLDERS[kind]);
    if (!fs.existsSync(sub)) continue;
    try {
      const c = openComponent(sub, kind);
      scan.components.push(c);
      scan.chosen[kind] = c;
    } catch (e) {
      brokenSubfolder[kind] = errorText(e);
      scan.problems.push(errorText(e));
    }
  }
  const rootFiles = listing.filter((e) => e.isFile && (e.name.endsWith('.safetensors') || isGgufFile(e.name))).map((e) => e.path);
  const rootCandidates: Partial<Record<ComponentKind, Component[]>> = {};
  for (const f of rootFiles) {
    try {
      for (const c of openComponents(f)) {
        scan.components.push(c);
        (rootCandidates[c.kind] ??= []).push(c);
      }
    } catch (e) {
      scan.problems.push(errorText(e));
    }
  }
  for (const kind of KIND_ORDER) {
    if (scan.chosen[kind]) continue;
    const candidates = rootCandidates[kind] ?? [];
    if (candidates.length === 1) scan.chosen[kind] = candidates[0];
    else if (candidates.length > 1) scan.missing.push(`several ${KIND_NAMES[kind]} checkpoints (${candidates.map((c) => path.basename(c.path)).join(', ')}): name the one to use`);
    else scan.missing.push(brokenSubfolder[kind] ? `${SUBFOLDERS[kind]}/ is unusable: ${brokenSubfolder[kind]}` : EXPECTED[kind]);
  }

  const tok = path.join(root, 'tokenizer');
  if (hasAll(tok, ['vocab.json', 'merges.txt']) || hasAll(tok, ['tokenizer.json'])) scan.tokenizer = tok;
  else scan.missing.push('no CLIP tokenizer found. Expected tokenizer/ with vocab.json and merges.txt (or tokenizer.json)');
  const tok2 = path.join(root, 'tokenizer_2');
  if (hasAll(tok2, ['tokenizer.json']) || hasAll(tok2, ['spiece.model'])) scan.tokenizer2 = tok2;
  else scan.missing.push('no T5 tokenizer found. Expected tokenizer_2/ with tokenizer.json (or spiece.model)');
  const sched = path.join(root, 'scheduler');
  if (hasAll(sched, ['scheduler_config.json'])) scan.scheduler = sched;
  return scan;
}

export interface ModelFolder {
  root: string;
  dit: DitComponent;
  vae: VaeComponent;
  clip: ClipComponent;
  t5: T5Component;
  /** tokenizer/ (CLIP BPE) and tokenizer_2/ (T5). */
  tokenizer: string;
  tokenizer2: string;
  /** scheduler/ when present (optional: FLUX.1 defaults apply without it). */
  scheduler?: string;
  /** Other components found in the folder and not chosen (e.g. flux1-dev.safetensors beside transformer/); closed until read. */
  others: Component[];
}

export function missingMessage(scan: ModelScan): string {
  const found = scan.entries.length ? scan.entries.join(', ') : 'nothing (empty folder)';
  return `${scan.missing.join('; ')}. Found: ${found}`;
}

/** A complete FLUX.1 model folder, or a LayoutError that says what is missing and what was found. */
export function openModel(dir: string): ModelFolder {
  const scan = scanModelFolder(dir);
  if (scan.missing.length) throw new LayoutError(scan.root, missingMessage(scan));
  const chosen = new Set(Object.values(scan.chosen));
  const others = scan.components.filter((c) => !chosen.has(c));
  for (const c of others) c.close();
  return {
    root: scan.root,
    dit: scan.chosen.dit as DitComponent,
    vae: scan.chosen.vae as VaeComponent,
    clip: scan.chosen.clip as ClipComponent,
    t5: scan.chosen.t5 as T5Component,
    tokenizer: scan.tokenizer!,
    tokenizer2: scan.tokenizer2!,
    scheduler: scan.scheduler,
    others,
  };
}
