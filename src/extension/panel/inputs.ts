// The files a panel request names (the input image, LoRAs): choosing them, and checking them on
// the host before anything starts, since the webview is untrusted and a file may have gone since it
// was listed. The server checks the contents; here only what the name and a stat can tell.

import * as fs from 'node:fs';
import * as path from 'node:path';
import * as vscode from 'vscode';
import { UserError } from '../../shared/api';
import { formatBytes } from '../../shared/bytes';
import { LIMITS, resolveParams } from '../../shared/params';
import { readImageSize } from '../imageSize';
import { isSafetensors, LoraFile, MAX_LORA_BYTES } from '../loraFiles';
import { droppedImageGone } from './droppedCleanup';
import type { LoraView, PanelParams } from './protocol';

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

/** Why `file` cannot be the input image, or undefined. `dropped`: the folder of images dropped from the desktop, whose copies may have been pruned. */
export async function inputImageProblem(file: string, dropped?: { holds(file: string): boolean }): Promise<string | undefined> {
  if (!path.isAbsolute(file) || !isImageFile(file)) return t('{0} is not a PNG, JPEG or WebP image; choose one of those.', path.basename(file));
  const size = await fileSize(file);
  if (size === 'missing') return dropped?.holds(file) ? droppedImageGone(file) : t('the input image {0} is not there any more; choose it again.', file);
  if (size === 'notFile') return t('the input image {0} is not a file.', file);
  // What the header tells, before the server starts: the server would refuse it only once it runs.
  const px = await readImageSize(file);
  if (!px) return t('{0} is not a PNG, JPEG or WebP image MajicFLUX can read (damaged, or another kind of file under that name).', path.basename(file));
  const { minSide, maxPixels } = LIMITS.inputImage;
  if (px.width * px.height > maxPixels) return t('{0} is {1}×{2} pixels; at most {3} pixels are read: scale it down first.', path.basename(file), px.width, px.height, maxPixels.toLocaleString('en'));
  if (Math.min(px.width, px.height) < minSide) return t('{0} is {1}×{2} pixels; an input image needs at least {3} pixels per side.', path.basename(file), px.width, px.height, minSide);
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

/** What is wrong with the panel's request before anything starts (not the image the host set, a missing file, a strength that leaves no step), or undefined. */
export function requestProblem(p: PanelParams, inputImage: string | undefined, dropped?: { holds(file: string): boolean }): Promise<string | undefined> {
  if (p.image !== undefined && p.image !== inputImage) return Promise.resolve(t('The input image changed; choose it again.'));
  return paramsProblem(p, dropped);
}

/**
 * Why a request cannot run, from what this host can tell before a server starts (every entry point:
 * generation.ts): its input image and LoRA files, its values together (params.ts resolveParams, as
 * the server will); undefined when it can run.
 */
export async function paramsProblem(p: { image?: string; loras?: readonly { path: string }[] }, dropped?: { holds(file: string): boolean }): Promise<string | undefined> {
  if (p.image) {
    const problem = await inputImageProblem(p.image, dropped);
    if (problem) return problem;
  }
  for (const l of p.loras ?? []) {
    const problem = await loraProblem(l.path);
    if (problem) return problem;
  }
  try {
    resolveParams(p);
  } catch (err) {
    if (err instanceof UserError) return err.message;
    throw err;
  }
  return undefined;
}

/** The file dialog for the input image, opened where the current one is (else the workspace). */
export async function pickImageFile(current: string | undefined): Promise<string | undefined> {
  const near = current ? vscode.Uri.file(path.dirname(current)) : vscode.workspace.workspaceFolders?.[0]?.uri;
  const picked = await vscode.window.showOpenDialog({
    title: t('Choose an input image'),
    canSelectFiles: true,
    canSelectFolders: false,
    canSelectMany: false,
    filters: { [t('Images')]: IMAGE_EXTENSIONS },
    ...(near ? { defaultUri: near } : {}),
  });
  return picked?.[0]?.fsPath;
}

/** The local file a drop's URI names; undefined (and a word on how to drop) for anything else. */
export function droppedImageFile(raw: string): string | undefined {
  let uri: vscode.Uri | undefined;
  try {
    uri = vscode.Uri.parse(raw.trim(), true);
  } catch {
    uri = undefined;
  }
  if (uri?.scheme === 'file') return uri.fsPath;
  void vscode.window.showWarningMessage(t('Drop an image file from the Explorer (hold Shift while dropping into the panel) or use Choose….'));
  return undefined;
}

/** A LoRA as the picker shows it: the folder relative to the workspace where it is in one. */
export function loraView(l: LoraFile): LoraView {
  return { path: l.path, name: l.name, size: formatBytes(l.size), where: vscode.workspace.asRelativePath(path.dirname(l.path), false) };
}
