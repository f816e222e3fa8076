// A recorded image's parameters (a PNG's metadata, a history entry) back into run input: its LoRAs
// found by name in the LoRA folder and the workspace, its input image where it was. What cannot be
// found is named in a warning (a dropped image that was pruned, as such); a run goes on without it
// only when the user says so.

import * as fs from 'node:fs';
import * as path from 'node:path';
import * as vscode from 'vscode';
import { Configuration } from './configuration';
import type { GenerateInput } from './generation';
import { resolveLoraRefs } from './loraFiles';
import { findLoras } from './loras';
import { droppedImageGone } from './panel/droppedCleanup';
import type { PngInput } from './pngInput';

const t = vscode.l10n.t;

/** The warnings shown, oldest first, for tests (the workbench's toasts cannot be read from the API). */
export const missingNotices: string[] = [];

/** Where a relative input-image path may be from: the image's folder, the `.flux` file's (`image:` is relative to it), the workspace. */
function imageCandidates(image: string, png: string, fluxFile: string | undefined): string[] {
  if (path.isAbsolute(image)) return [image];
  const bases = [path.dirname(png), ...(fluxFile ? [path.dirname(fluxFile)] : []), ...(vscode.workspace.workspaceFolders ?? []).filter((f) => f.uri.scheme === 'file').map((f) => f.uri.fsPath)];
  return bases.map((b) => path.resolve(b, image));
}

/**
 * `input` with its LoRAs and image as files here. `png` is the image the parameters came from,
 * `fluxFile` the prompt file that made it, if known. `run`: the user is about to generate, so a
 * missing file asks whether to go on without it (undefined: no); otherwise a warning is enough.
 */
export async function resolveRecorded(
  input: PngInput,
  png: string,
  deps: { config: Configuration; log: vscode.LogOutputChannel; dropped?: { holds(file: string): boolean } },
  run: boolean,
  fluxFile?: string,
): Promise<GenerateInput | undefined> {
  const { loraRefs, dropped: _, ...rest } = input;
  const out: GenerateInput = { ...rest };
  const missing: string[] = [];
  let loraMissing = false;
  if (loraRefs?.length) {
    const list = await findLoras(deps.config.settings, deps.log);
    const r = resolveLoraRefs(loraRefs, list, fs.existsSync);
    if (r.loras.length) out.loras = r.loras;
    missing.push(...r.missing.map((n) => t('LoRA "{0}"', n)));
    loraMissing = r.missing.length > 0;
  }
  if (out.image) {
    const file = imageCandidates(out.image, png, fluxFile).find((f) => fs.existsSync(f));
    if (file) out.image = file;
    else {
      missing.push(deps.dropped?.holds(out.image) ? droppedImageGone(out.image) : t('input image {0}', out.image));
      delete out.image;
      delete out.strength;
      delete out.imageFit;
    }
  }
  if (!missing.length) return out;
  const name = path.basename(png);
  deps.log.warn(`${name}: not found: ${missing.join(', ')}`);
  // The LoRA folder setting is the way out only for a LoRA.
  const text = loraMissing
    ? t('{0} was made with files not found here: {1}. LoRAs are looked up by name in majicflux.loras.folder and the workspace.', name, missing.join(', '))
    : t('{0} was made with files not found here: {1}.', name, missing.join(', '));
  missingNotices.push(text);
  const settings = loraMissing ? [t('Open Settings')] : [];
  if (!run) {
    void vscode.window.showWarningMessage(text, ...settings).then((c) => c !== undefined && c === settings[0] && vscode.commands.executeCommand('workbench.action.openSettings', 'majicflux.loras.folder'));
    return out;
  }
  const without = t('Generate Without Them');
  const choice = await vscode.window.showWarningMessage(text, without, ...settings);
  if (choice !== undefined && choice === settings[0]) void vscode.commands.executeCommand('workbench.action.openSettings', 'majicflux.loras.folder');
  return choice === without ? out : undefined;
}
