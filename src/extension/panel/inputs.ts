// The files a panel request names (the input image, LoRAs), checked on the host before anything
// starts: the webview is untrusted and a file may have gone since it was listed. The server checks
// the contents; here only what the name and a stat can tell.

import * as fs from 'node:fs';
import * as path from 'node:path';
import * as vscode from 'vscode';
import { formatBytes } from '../../shared/bytes';
import { isSafetensors, MAX_LORA_BYTES } from '../loraFiles';

const t = vscode.l10n.t;

/** What the server reads as an input image (sharp: PNG, JPEG, WebP). */
export const IMAGE_EXTENSIONS = ['png', 'jpg', 'jpeg', 'webp'];

export const isImageFile = (file: string) => IMAGE_EXTENSIONS.includes(path.extname(file).slice(1).toLowerCase());

async function fileSize(file: string): Promise<number | 'missing' | 'notFile'> {
  try {
    const st = await fs.promises.stat(file);
    return st.isFile() ? st.size : 'notFile';
  } catch {
    return 'missing';
  }
}

/** Why `file` cannot be the input image, or undefined. */
export async function inputImageProblem(file: string): Promise<string | undefined> {
  if (!path.isAbsolute(file) || !isImageFile(file)) return t('{0} is not a PNG, JPEG or WebP image; choose one of those.', path.basename(file));
  const size = await fileSize(file);
  if (size === 'missing') return t('the input image {0} is not there any more; choose it again.', file);
  if (size === 'notFile') return t('the input image {0} is not a file.', file);
  return undefined;
}

/** Why `file` cannot be a LoRA, or undefined. */
export async function loraProblem(file: string): Promise<string | undefined> {
  if (!path.isAbsolute(file) || !isSafetensors(file)) return t('the LoRA {0} is not a .safetensors file', path.basename(file));
  const size = await fileSize(file);
  if (size === 'missing') return t('the LoRA {0} is not there any more; remove it from the list.', file);
  if (size === 'notFile') return t('the LoRA {0} is not a file.', file);
  if (size >= MAX_LORA_BYTES) return t('{0} is {1}: too large for a LoRA (a model checkpoint?)', path.basename(file), formatBytes(size));
  return undefined;
}
