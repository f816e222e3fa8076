// What makes a folder a model folder (the one test discovery and the layout reader share), the
// diffusers subfolder of each component, and a listing that follows the Hugging Face cache's symlinks.

import * as fs from 'node:fs';
import * as path from 'node:path';
import { ComponentKind } from './detect';

/** More root checkpoints than this is a collection (a ComfyUI models/ folder, an LLM's dozens of shards), not one model's parts. */
export const MAX_ROOT_FILES = 8;

const MODEL_MARKERS = ['model_index.json', 'transformer', 'vae', 'text_encoder', 'text_encoder_2', 'tokenizer', 'tokenizer_2'];

/**
 * A folder (given by its entry names) laid out like FLUX.1-dev (component subfolders or
 * model_index.json), or holding a few root checkpoints and no index (flux1-dev.safetensors beside
 * ae.safetensors). A lone ae.safetensors is not a marker: vae/ folders hold one as their component.
 * Discovery and the layout reader share this test so that inspect and the model list agree.
 */
export function isModelFolder(entries: readonly string[]): boolean {
  if (MODEL_MARKERS.some((m) => entries.includes(m))) return true;
  const files = entries.filter((e) => e.endsWith('.safetensors'));
  return files.length > 1 && files.length <= MAX_ROOT_FILES && !entries.some((e) => e.endsWith('.safetensors.index.json'));
}

export const SUBFOLDERS: Record<ComponentKind, string> = { dit: 'transformer', vae: 'vae', clip: 'text_encoder', t5: 'text_encoder_2' };

export interface FolderEntry {
  name: string;
  path: string;
  isFile: boolean;
  isDirectory: boolean;
  /** The name, with a trailing / for folders. */
  label: string;
}

/** A folder's entries sorted by name, following symlinks (the Hugging Face cache links every file into blobs/). */
export function listFolder(dir: string): FolderEntry[] {
  return fs.readdirSync(dir).sort().map((name) => {
    const p = path.join(dir, name);
    let st: fs.Stats | undefined;
    try {
      st = fs.statSync(p);
    } catch {
      st = undefined; // dangling link
    }
    const isDirectory = st?.isDirectory() ?? false;
    return { name, path: p, isFile: st?.isFile() ?? false, isDirectory, label: isDirectory ? `${name}/` : name };
  });
}
