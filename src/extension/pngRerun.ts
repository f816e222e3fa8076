// "Re-run with these parameters" for a generated PNG: from the explorer's context menu, the image
// preview's title bar, and a notification when such a PNG is opened.

import * as path from 'node:path';
import * as vscode from 'vscode';
import { Configuration } from './configuration';
import { Generation, GenerateInput, RunResult } from './generation';
import { History } from './history';
import { readImageType } from './imageSize';
import { PngInput, readImageInputOrTool, sniffGenerated, UnusablePrompt } from './pngInput';
import { resolveRecorded } from './recordedInput';
import { refuse } from './refusal';
import { requireTrust } from './trust';
import { LIMITS } from '../shared/params';

const t = vscode.l10n.t;
const IMAGE_PREVIEW = 'imagePreview.previewEditor';

export class PngRerun implements vscode.Disposable {
  private readonly offered = new Set<string>();
  /** The warnings of re-runs refused for want of parameters, oldest first (MajicfluxApi.rerunNotices, for tests). */
  readonly notices: string[] = [];
  private readonly subs: vscode.Disposable[] = [];

  constructor(
    private readonly generation: Generation,
    private readonly history: History,
    private readonly openPanel: (input: GenerateInput) => void,
    private readonly deps: { config: Configuration; log: vscode.LogOutputChannel; dropped: { holds(file: string): boolean } },
  ) {
    this.subs.push(
      vscode.commands.registerCommand('majicflux.rerunFromImage', (uri?: vscode.Uri, mode?: unknown) => this.rerun(uri, mode === 'same' || mode === 'new' ? mode : undefined)),
      vscode.window.tabGroups.onDidChangeTabs((e) => {
        for (const tab of e.opened) void this.maybeOffer(tab);
      }),
    );
  }

  private activeImage(): vscode.Uri | undefined {
    const input = vscode.window.tabGroups.activeTabGroup.activeTab?.input;
    if (input instanceof vscode.TabInputCustom && input.uri.path.toLowerCase().endsWith('.png')) return input.uri;
    return undefined;
  }

  private async maybeOffer(tab: vscode.Tab): Promise<void> {
    const input = tab.input;
    if (!(input instanceof vscode.TabInputCustom) || input.viewType !== IMAGE_PREVIEW || input.uri.scheme !== 'file') return;
    const file = input.uri.fsPath;
    // Untrusted: no offer that could only be refused; the title-bar button stays and says why.
    if (!file.toLowerCase().endsWith('.png') || this.offered.has(file) || !vscode.workspace.isTrusted) return;
    const known = this.history.byFile(file);
    // Just made (opened from "Open" after a run): the user knows; the title-bar button stays.
    if (known && Date.now() - known.created < 120_000) return;
    if (!known && !(await sniffGenerated(file))) return;
    this.offered.add(file);
    const rerun = t('Re-run with These Parameters');
    const choice = await vscode.window.showInformationMessage(t('{0} was made with MajicFLUX.', path.basename(file)), rerun);
    if (choice === rerun) await this.rerun(input.uri);
  }

  /** Resolves with the run, or undefined when the image has no parameters or the user backed out. */
  async rerun(uri?: vscode.Uri, mode?: 'same' | 'new'): Promise<RunResult | undefined> {
    if (!requireTrust()) return undefined;
    const target = uri ?? this.activeImage();
    if (!target || target.scheme !== 'file') {
      void refuse(this.deps.log, t('Select a PNG made with MajicFLUX (or another FLUX tool that writes its parameters).'));
      return undefined;
    }
    let input: PngInput | undefined;
    let tool: string | undefined;
    let unusablePrompt: UnusablePrompt | undefined;
    try {
      ({ input, tool, unusablePrompt } = await readImageInputOrTool(target.fsPath));
    } catch (err) {
      // Another image saved under a .png name: say what it is, not only that its signature is wrong.
      // Vary This Image reads JPEG and WebP (pipeline/inputImage.ts), not the other types.
      const type = await readImageType(target.fsPath);
      const name = path.basename(target.fsPath);
      const text =
        type === 'jpg' || type === 'webp'
          ? t('{0} is a {1} image under a .png name: only PNG files carry the parameters MajicFLUX reads. Vary This Image works with it.', name, type === 'jpg' ? 'JPEG' : 'WebP')
          : type && type !== 'png'
          ? t('{0} is a {1} image under a .png name: only PNG files carry the parameters MajicFLUX reads, and only PNG, JPEG and WebP images can be varied.', name, type.toUpperCase())
          : t('Cannot read {0}: {1}', name, (err as Error).message);
      this.notices.push(text);
      void refuse(this.deps.log, text, { error: true });
      return undefined;
    }
    if (!input) {
      const text = unusablePrompt
        ? t('{0} records generation parameters, but its prompt cannot be used ({1}). Copy the prompt into the panel or a .flux file and fix it there.', path.basename(target.fsPath), unusablePromptReason(unusablePrompt))
        : tool
        ? t('{0} was made with {1}, which records it as its own workflow rather than as parameters MajicFLUX reads: copy the prompt from it into the panel or a .flux file.', path.basename(target.fsPath), tool)
        : t('{0} carries no generation parameters.', path.basename(target.fsPath));
      this.notices.push(text);
      void refuse(this.deps.log, text);
      return undefined;
    }
    if (input.dropped?.length) {
      // Values another tool (or a hand edit) wrote that a run refuses: the defaults take their place.
      const name = path.basename(target.fsPath);
      this.deps.log.warn(`${name}: recorded values left out of the re-run: ${input.dropped.join('; ')}`);
      void vscode.window.showWarningMessage(t('{0}: some recorded values cannot be used and are left out (the defaults apply): {1}', name, input.dropped.join('; ')));
    }
    const same = { label: t('$(debug-rerun) Same parameters'), description: t('seed {0} — the same image again', input.seed ?? '?'), id: 'same' };
    const fresh = { label: t('$(symbol-event) New seed'), description: t('same prompt and settings, another image'), id: 'new' };
    const edit = { label: t('$(edit) Edit in the generation panel'), description: '', id: 'panel' };
    const pick = mode ? { id: mode } : await vscode.window.showQuickPick([same, fresh, edit], { title: t('Re-run {0}', path.basename(target.fsPath)), placeHolder: input.prompt });
    if (!pick) return undefined;
    const prev = this.history.byFile(target.fsPath);
    const found = await resolveRecorded(input, target.fsPath, this.deps, pick.id !== 'panel', prev?.fluxFile);
    if (!found) return undefined;
    if (pick.id === 'panel') {
      this.openPanel(found);
      return undefined;
    }
    const run = pick.id === 'new' ? { ...found, seed: 'random' as const } : found;
    const recordedLoras = (input.loraRefs ?? []).flatMap((l) => (l.hash ? [{ name: l.name, hash: l.hash }] : []));
    return this.generation.run(run, { kind: 'rerun', fluxFile: prev?.fluxFile, blockKey: prev?.blockKey, document: target.fsPath, ...(recordedLoras.length ? { recordedLoras } : {}) }, { notify: true, open: true });
  }

  dispose(): void {
    for (const s of this.subs) s.dispose();
  }
}

function unusablePromptReason(u: UnusablePrompt): string {
  if (u.kind === 'tooLong') return t('the prompt is {0} characters; at most {1} are read', u.chars, LIMITS.prompt.maxChars);
  return u.kind === 'notText' ? t('the prompt must be text') : t('the prompt is empty');
}
