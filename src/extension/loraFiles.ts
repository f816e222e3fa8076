// Which .safetensors files the panel offers as LoRAs, and finding a LoRA by the name a PNG records.
// The host lists names and sizes only: whether a file really holds LoRA weights (lora_ keys) is the
// server's to say, since it reads the header. Pure: no vscode import (unit-tested in plain Node).

import * as path from 'node:path';

/** A FLUX LoRA is tens to hundreds of MB (rank 128 in fp32 is about 1.3 GB); a DiT is 6 GB or more. */
export const MAX_LORA_BYTES = 2 * 2 ** 30;
/** A diffusers model folder's component folders: their .safetensors are model weights, not LoRAs. */
const COMPONENT_DIRS = new Set(['transformer', 'vae', 'text_encoder', 'text_encoder_2']);

export interface LoraFile {
  path: string;
  /** The file's name without `.safetensors`, as A1111's `<lora:name:strength>` and our metadata name it. */
  name: string;
  size: number;
}

/** What is a model's, never a LoRA: the configured model files and the model folder, and any folder that holds a model. */
export interface ModelPaths {
  files: string[];
  folders: string[];
  /** Does `dir` hold a model (a diffusers layout: model_index.json, transformer/ or scheduler/ beside the files)? */
  isModelFolder?: (dir: string) => boolean;
}

/** Names that mark a folder as a model's: diffusers' index and component folders. */
export const MODEL_FOLDER_MARKS = ['model_index.json', 'transformer', 'scheduler'];

export const isSafetensors = (file: string) => /\.safetensors$/i.test(file);

export function loraName(file: string): string {
  return path.basename(file).replace(/\.safetensors$/i, '');
}

const inside = (file: string, folder: string) => {
  const rel = path.relative(folder, file);
  return !!rel && !rel.startsWith('..') && !path.isAbsolute(rel);
};

export function isLoraCandidate(file: string, size: number, model: ModelPaths): boolean {
  if (!isSafetensors(file) || size <= 0 || size >= MAX_LORA_BYTES) return false;
  if (COMPONENT_DIRS.has(path.basename(path.dirname(file)))) return false;
  if (model.isModelFolder?.(path.dirname(file))) return false;
  const f = path.resolve(file);
  return !model.files.some((m) => m && path.resolve(m) === f) && !model.folders.some((d) => d && inside(f, path.resolve(d)));
}

/** The candidates as the picker lists them: one per path, by name. */
export function loraList(found: { path: string; size: number }[], model: ModelPaths): LoraFile[] {
  const byPath = new Map<string, LoraFile>();
  for (const f of found) if (isLoraCandidate(f.path, f.size, model)) byPath.set(path.resolve(f.path), { path: path.resolve(f.path), name: loraName(f.path), size: f.size });
  return [...byPath.values()].sort((a, b) => a.name.localeCompare(b.name) || a.path.localeCompare(b.path));
}

/** The file a recorded LoRA name means: the same name, else the same name in another case; the first listed wins. */
export function findLora(name: string, list: readonly LoraFile[]): LoraFile | undefined {
  return list.find((l) => l.name === name) ?? list.find((l) => l.name.toLowerCase() === name.toLowerCase());
}

/** A LoRA as an image records it: its name (the file's, without extension), strength, and the path where the metadata has one. */
export interface LoraRef {
  name: string;
  strength: number;
  path?: string;
  /** The A1111 hash an image recorded for it (a re-run tells the user when the file found is another). */
  hash?: string;
}

/**
 * The files for recorded LoRAs: the recorded path where that file is still there, else the listed
 * file of that name. `missing` names the ones found nowhere, for the warning.
 */
export function resolveLoraRefs(refs: readonly LoraRef[], list: readonly LoraFile[], exists: (file: string) => boolean): { loras: { path: string; strength: number }[]; missing: string[] } {
  const loras: { path: string; strength: number }[] = [];
  const missing: string[] = [];
  for (const r of refs) {
    const file = r.path && path.isAbsolute(r.path) && exists(r.path) ? r.path : findLora(r.name, list)?.path;
    if (file) loras.push({ path: file, strength: r.strength });
    else missing.push(r.name);
  }
  return { loras, missing };
}

/**
 * The LoRAs an image recorded (name, A1111 hash) that a re-run found by name but as another file
 * (its hash differs; compared over the shorter of the two): the image may come out otherwise, and
 * nothing else would say why. Hashes shown to 12 digits, as A1111 writes them.
 */
export function otherLoraFiles(recorded: readonly { name: string; hash: string }[], used: readonly { name: string; hash?: string }[]): { name: string; recorded: string; now: string }[] {
  return recorded.flatMap((r) => {
    const now = used.find((u) => u.name === r.name)?.hash?.toLowerCase();
    if (!now) return [];
    const n = Math.min(now.length, r.hash.length);
    return now.slice(0, n) === r.hash.slice(0, n).toLowerCase() ? [] : [{ name: r.name, recorded: r.hash.slice(0, 12), now: now.slice(0, 12) }];
  });
}
