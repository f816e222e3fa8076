// The files a `.flux` block names — `image:` (relative to the .flux file's folder) and `lora:`
// (relative to that folder, else to the LoRA folder setting) — found on disk before a run.

import * as fs from 'node:fs';
import * as path from 'node:path';
import { Lora, splitLoraSpec } from '../../shared/params';
import type { BlockValues, ParamLine } from './parser';

/** The LoRA folder setting (majicflux.loras.folder), read under this key by every user of it. */
export const LORA_FOLDER_SETTING = 'loras.folder';

export interface FileLookup {
  /** The absolute path found, if any. */
  found?: string;
  /** Every path looked at, in order (for the message when none is there). */
  tried: string[];
}

const isFile = (p: string) => {
  try {
    return fs.statSync(p).isFile();
  } catch {
    return false;
  }
};

function lookup(candidates: string[]): FileLookup {
  const tried = [...new Set(candidates)];
  return { found: tried.find(isFile), tried };
}

/** An input image, relative to `dir` (the .flux file's folder). */
export function findImage(file: string, dir: string | undefined): FileLookup {
  return lookup(path.isAbsolute(file) || !dir ? [path.resolve(file)] : [path.resolve(dir, file)]);
}

/**
 * A LoRA as written, relative to each folder in turn; a name without `.safetensors` (A1111's
 * `<lora:name:…>`) is tried with it too.
 */
export function findLora(file: string, dirs: readonly (string | undefined)[]): FileLookup {
  const names = /\.safetensors$/i.test(file) ? [file] : [file, `${file}.safetensors`];
  if (path.isAbsolute(file)) return lookup(names);
  return lookup(dirs.filter((d): d is string => !!d).flatMap((d) => names.map((n) => path.resolve(d, n))));
}

export interface MissingInput {
  key: 'image' | 'lora';
  file: string;
  tried: string[];
}

/** `values` with `image` and each LoRA made absolute, and those not found. */
export function resolveInputs(values: BlockValues, fluxDir: string | undefined, loraFolder: string | undefined): { values: BlockValues; missing: MissingInput[] } {
  const missing: MissingInput[] = [];
  const out: BlockValues = { ...values };
  if (values.image !== undefined) {
    const r = findImage(values.image, fluxDir);
    if (r.found) out.image = r.found;
    else missing.push({ key: 'image', file: values.image, tried: r.tried });
  }
  if (values.loras) {
    out.loras = values.loras.map((l): Lora => {
      const r = findLora(l.path, [fluxDir, loraFolder]);
      if (!r.found) missing.push({ key: 'lora', file: l.path, tried: r.tried });
      return { ...l, path: r.found ?? l.path };
    });
  }
  return { values: out, missing };
}

/** What one `image:` or `lora:` line names, resolved as a run resolves it. */
function resolveLine(p: ParamLine, fluxDir: string | undefined, loraFolder: string | undefined): ReturnType<typeof resolveInputs> | undefined {
  if (p.name === 'image' && p.value) return resolveInputs({ image: p.value }, fluxDir, loraFolder);
  if (p.name !== 'lora') return undefined;
  const loras = p.value.split(',').map((x) => splitLoraSpec(x).path).filter(Boolean).map((path) => ({ path }));
  return resolveInputs({ loras }, fluxDir, loraFolder);
}

/** The files one `image:` or `lora:` line names that are not there (for its diagnostic). */
export function missingOnLine(p: ParamLine, fluxDir: string | undefined, loraFolder: string | undefined): MissingInput[] {
  return resolveLine(p, fluxDir, loraFolder)?.missing ?? [];
}

/** The files one `image:` or `lora:` line names that are there (absolute), for checking what they hold. */
export function foundOnLine(p: ParamLine, fluxDir: string | undefined, loraFolder: string | undefined): { key: 'image' | 'lora'; file: string }[] {
  const r = resolveLine(p, fluxDir, loraFolder);
  if (!r) return [];
  const missing = new Set(r.missing.map((m) => m.file));
  if (p.name === 'image') return r.values.image !== undefined && !missing.has(p.value) ? [{ key: 'image', file: r.values.image }] : [];
  return (r.values.loras ?? []).filter((l) => path.isAbsolute(l.path) && !missing.has(l.path)).map((l) => ({ key: 'lora', file: l.path }));
}
