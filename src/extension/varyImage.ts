// "MajicFLUX: Vary This Image": an image from the Explorer (or the image preview) becomes the
// generation panel's input image. Nothing runs until Generate; an untrusted workspace may set it up.

import * as path from 'node:path';
import * as vscode from 'vscode';
import { GenerationPanel, PanelDeps } from './panel/panel';
import { isImageFile } from './panel/inputs';
import { refuse } from './refusal';

const t = vscode.l10n.t;

function activeImage(): vscode.Uri | undefined {
  const input = vscode.window.tabGroups.activeTabGroup.activeTab?.input;
  return input instanceof vscode.TabInputCustom && isImageFile(input.uri.path) ? input.uri : undefined;
}

/** True when the panel took the image. */
export async function varyImage(deps: PanelDeps, uri?: vscode.Uri): Promise<boolean> {
  const target = uri ?? activeImage();
  if (!target || target.scheme !== 'file' || !isImageFile(target.fsPath)) {
    void refuse(deps.log, target ? t('{0} is not a PNG, JPEG or WebP image.', path.basename(target.path)) : t('Select a PNG, JPEG or WebP image to vary.'));
    return false;
  }
  deps.log.info(`vary ${target.fsPath}`);
  return GenerationPanel.show(deps).vary(target.fsPath);
}
