// The generation panel (one per window). Its webview holds the form state (getState/setState, so it
// survives hiding without retainContextWhenHidden); the host owns jobs and history and sends views of
// them. Messages from the webview are validated; history images are referred to by id, the input
// image (which the host owns) and LoRA files by path, checked again before a run (inputs.ts).

import * as path from 'node:path';
import * as vscode from 'vscode';
import { Configuration } from '../configuration';
import { Generation, GenerateInput } from '../generation';
import { History, HistoryEntry } from '../history';
import { isActive, Job, Jobs } from '../jobs';
import { readImageSize, sizeForImage } from '../imageSize';
import { findLoras } from '../loras';
import { jobProgress } from '../progress';
import { promptFacts } from '../promptFacts';
import { progressText } from '../progressText';
import { toInput } from '../pngInput';
import { resolveRecorded } from '../recordedInput';
import { modelName, usesDemoModel } from '../settings';
import type { DroppedCleanup } from './droppedCleanup';
import type { StoreResult } from './droppedImages';
import { panelHtml } from './html';
import { droppedImageFile, inputImageProblem, loraView, pickImageFile, requestProblem } from './inputs';
import { FromWebview, GalleryItem, ImageView, initMessage, JobView, PANEL_DEFAULTS, PANEL_LIMITS, PanelDefaults, PanelForm, PanelParams, ToWebview, validateFromWebview } from './protocol';

export const PANEL_VIEW_TYPE = 'majicflux.panel';
const FORM_KEY = 'majicflux.panelForm';
/** The input image is the host's (a path the user chose), kept apart from the form the webview may rewrite. */
const IMAGE_KEY = 'majicflux.panelImage';
const t = vscode.l10n.t;

/** The panel's input image in this workspace (it survives the panel). */
export const panelInputImage = (state: vscode.Memento) => state.get<string>(IMAGE_KEY);

export interface PanelDeps {
  extensionUri: vscode.Uri;
  /** Where images dropped from the desktop are kept (the global storage's `inputs/`), pruned. */
  dropped: DroppedCleanup;
  /** Keeps the form between panel closes and window reloads. */
  workspaceState: vscode.Memento;
  config: Configuration;
  jobs: Jobs;
  history: History;
  generation: Generation;
  log: vscode.LogOutputChannel;
}

export class GenerationPanel implements vscode.Disposable {
  static current: GenerationPanel | undefined;
  /** The job the panel follows (its latest Generate), kept when the panel is closed and reopened. */
  private static lastJob: Job | undefined;

  private get job(): Job | undefined {
    return GenerationPanel.lastJob;
  }

  private set job(j: Job | undefined) {
    GenerationPanel.lastJob = j;
  }
  private readonly subs: { dispose(): void }[] = [];
  private roots = new Set<string>();
  /** Messages received, for tests (type only). */
  readonly received: string[] = [];
  /** The last message of each type sent to the webview, for tests. */
  readonly sent = new Map<ToWebview['type'], ToWebview>();
  /** The warnings shown about a request or an input image, oldest first, for tests (toasts cannot be read from the API). */
  readonly warnings: string[] = [];

  static show(deps: PanelDeps, prefill?: GenerateInput): GenerationPanel {
    if (GenerationPanel.current) {
      GenerationPanel.current.panel.reveal(undefined, false);
    } else {
      const panel = vscode.window.createWebviewPanel(PANEL_VIEW_TYPE, 'MajicFLUX', vscode.ViewColumn.Beside, GenerationPanel.options(deps));
      GenerationPanel.current = new GenerationPanel(panel, deps);
    }
    if (prefill) GenerationPanel.current.prefill(prefill);
    return GenerationPanel.current;
  }

  /** Brings back a panel VS Code restored after a reload. */
  static revive(panel: vscode.WebviewPanel, deps: PanelDeps): void {
    panel.webview.options = GenerationPanel.options(deps);
    GenerationPanel.current = new GenerationPanel(panel, deps);
  }

  private static options(deps: PanelDeps): vscode.WebviewOptions & vscode.WebviewPanelOptions {
    return { enableScripts: true, retainContextWhenHidden: false, localResourceRoots: GenerationPanel.rootsFor(deps) };
  }

  /** The extension's media, every folder that holds an image of the history, and the input image's. */
  private static rootsFor(deps: PanelDeps): vscode.Uri[] {
    const dirs = new Set<string>(deps.history.list().map((e) => path.dirname(e.file)));
    const image = panelInputImage(deps.workspaceState);
    if (image) dirs.add(path.dirname(image));
    for (const f of vscode.workspace.workspaceFolders ?? []) if (f.uri.scheme === 'file') dirs.add(f.uri.fsPath);
    return [vscode.Uri.joinPath(deps.extensionUri, 'media'), ...[...dirs].map((d) => vscode.Uri.file(d))];
  }

  private constructor(readonly panel: vscode.WebviewPanel, private readonly deps: PanelDeps) {
    this.roots = new Set(GenerationPanel.rootsFor(deps).map((u) => u.toString()));
    panel.iconPath = vscode.Uri.joinPath(deps.extensionUri, 'media', 'icon.png');
    panel.webview.html = panelHtml(panel.webview, deps.extensionUri);
    this.subs.push(
      panel.webview.onDidReceiveMessage((m: unknown) => this.fromWebview(m)),
      panel.onDidDispose(() => this.dispose()),
      deps.jobs.onDidChange((j) => {
        if (j === this.job) void this.post({ type: 'job', job: this.view(j) });
      }),
      deps.history.onDidChange(() => this.sendHistory()),
    );
  }

  /** Shown and logged: a refusal the log does not tell leaves the user's report without its cause. */
  private warn(text: string): void {
    this.deps.log.warn(`panel: ${text}`);
    this.warnings.push(text);
    void vscode.window.showWarningMessage(text);
  }

  private post(m: ToWebview): Thenable<boolean> {
    this.sent.set(m.type, m);
    return this.panel.webview.postMessage(m);
  }

  /** A message from the webview (tests send theirs here too: the same validation and handling). */
  fromWebview(raw: unknown): void {
    const m = validateFromWebview(raw);
    if (!m) {
      this.deps.log.warn(`panel: ignored a message of an undeclared shape: ${JSON.stringify(raw)?.slice(0, 200)}`);
      return;
    }
    this.received.push(m.type);
    void this.handle(m);
  }

  /** The prompt's facts under the prompt box, as the palette and .flux files show them. */
  private async notePrompt(prompt: string): Promise<void> {
    const notes = await promptFacts(prompt, this.deps.config, this.deps.extensionUri.fsPath);
    void this.post({ type: 'promptNotes', prompt, notes });
  }

  private async handle(m: FromWebview): Promise<void> {
    switch (m.type) {
      case 'ready': {
        // The saved input image may be gone since (deleted, or pruned by another window): cleared and said, not shown broken.
        const saved = this.inputImage;
        const gone = saved && (await inputImageProblem(saved, this.deps.dropped));
        if (gone) {
          await this.deps.workspaceState.update(IMAGE_KEY, undefined);
          this.deps.log.info(`panel: input image ${saved} cleared: ${gone}`);
        }
        await this.post(
          initMessage({
            defaults: this.defaults(),
            form: this.deps.workspaceState.get<PanelForm>(FORM_KEY),
            history: this.gallery(),
            job: this.job ? this.view(this.job) : undefined,
            demo: usesDemoModel(this.deps.config.settings),
            trusted: vscode.workspace.isTrusted,
            model: modelName(this.deps.config.settings),
            image: this.imageView(this.inputImage),
          }),
        );
        if (gone) this.warn(t('The input image was cleared: {0}', gone));
        return this.sendLoras();
      }
      case 'saveForm':
        void this.notePrompt(m.form.prompt);
        return void this.deps.workspaceState.update(FORM_KEY, m.form);
      case 'generate':
        return this.generate(m.params);
      case 'cancel':
        if (this.job) await this.deps.jobs.cancel(this.job.id);
        return;
      case 'history':
        return this.historyAction(m.action, m.id);
      case 'pickImage': {
        const file = await pickImageFile(this.inputImage);
        if (file) await this.vary(file);
        return;
      }
      case 'dropImage': {
        const file = droppedImageFile(m.uri);
        if (file) await this.vary(file);
        return;
      }
      case 'dropImageBytes':
        return this.takeDropped(m.name, m.bytes);
      case 'clearImage':
        await this.setInputImage(undefined);
        return;
      case 'listLoras':
        return this.sendLoras();
    }
  }

  private defaults(): PanelDefaults {
    const d = this.deps.config.settings.defaults;
    return { prompt: '', seed: d.seed, steps: d.steps, width: d.width, height: d.height, guidance: d.guidance, negativePrompt: d.negativePrompt, trueCfgScale: d.trueCfgScale, ...PANEL_DEFAULTS };
  }

  /** The LoRA files the picker offers, sent after `init` (listing the workspace takes a moment). */
  private async sendLoras(): Promise<void> {
    const found = await findLoras(this.deps.config.settings, this.deps.log);
    void this.post({ type: 'loras', items: found.map(loraView) });
  }

  get inputImage(): string | undefined {
    return panelInputImage(this.deps.workspaceState);
  }

  private imageView(file: string | undefined): ImageView | undefined {
    if (!file) return undefined;
    this.ensureRoots();
    return { path: file, name: path.basename(file), src: this.panel.webview.asWebviewUri(vscode.Uri.file(file)).toString() };
  }

  /** Makes `file` the input image (undefined: none), after checking it is an image file that is there. */
  async setInputImage(file: string | undefined, vary?: { width?: number; height?: number }): Promise<boolean> {
    if (file) {
      const problem = await inputImageProblem(file, this.deps.dropped);
      if (problem) {
        this.warn(t('MajicFLUX cannot use this image: {0}', problem));
        return false;
      }
    }
    await this.deps.workspaceState.update(IMAGE_KEY, file);
    this.deps.log.info(file ? `panel: input image ${file}` : 'panel: no input image');
    void this.post({ type: 'inputImage', image: this.imageView(file), ...(vary ? { vary: { strength: PANEL_DEFAULTS.strength, ...vary } } : {}) });
    return true;
  }

  /** A file dropped from the desktop: kept under `inputs/` by its content's hash, then the input image as a chosen file is. */
  private async takeDropped(name: string, bytes: Uint8Array): Promise<void> {
    const dir = this.deps.dropped.dir;
    let r: StoreResult;
    try {
      r = await this.deps.dropped.store(bytes);
    } catch (err) {
      this.deps.log.error(`panel: could not keep the dropped image ${name} in ${dir}: ${(err as Error).message}`);
      void vscode.window.showErrorMessage(t('MajicFLUX could not keep the dropped image in {0}: {1}', dir, (err as Error).message));
      return;
    }
    if ('problem' in r) {
      this.deps.log.warn(`panel: dropped file ${name} refused: ${r.problem}`);
      const why = {
        empty: t('the file is empty.'),
        tooLarge: t('it is larger than {0}; use Choose… to pick the file instead.', PANEL_LIMITS.droppedImage.max),
        notImage: t('its content is not a PNG, JPEG or WebP image, whatever its name says.'),
      }[r.problem];
      void vscode.window.showWarningMessage(t('MajicFLUX cannot use {0}: {1}', name, why));
      return;
    }
    this.deps.log.info(`panel: dropped image ${name} ${r.existed ? 'is already kept' : 'kept'} as ${r.file}`);
    await this.vary(r.file);
    // After it became the input image, so the prune sees it in use.
    if (!r.existed) void this.deps.dropped.pruneAndLog('after a drop');
  }

  /** "Vary this image": the image becomes the input, the size follows it, the strength goes back to its default. */
  async vary(file: string): Promise<boolean> {
    const size = await readImageSize(file);
    return this.setInputImage(file, size ? sizeForImage(size.width, size.height) : {});
  }

  private async generate(p: PanelParams): Promise<void> {
    const problem = await requestProblem(p, this.inputImage, this.deps.dropped);
    if (problem) {
      this.warn(t('MajicFLUX cannot generate: {0}', problem));
      void this.post({ type: 'job' });
      return;
    }
    const { seed, ...rest } = p;
    const run = await this.deps.generation.run({ ...rest, seed: seed < 0 ? 'random' : seed }, { kind: 'panel', document: this.inputImage });
    if (!run) {
      // Refused before it started (untrusted workspace, empty prompt, no folder chosen): the
      // refusal says why; the panel goes back to idle rather than report a cancel nobody made.
      void this.post({ type: 'job' });
      return;
    }
    this.job = run.jobs[0];
    void this.post({ type: 'job', job: this.view(this.job) });
  }

  private async historyAction(action: string, id: string): Promise<void> {
    const entry = this.deps.history.get(id);
    if (!entry) return;
    const uri = vscode.Uri.file(entry.file);
    switch (action) {
      case 'open':
        await vscode.commands.executeCommand('vscode.open', uri, { viewColumn: vscode.ViewColumn.Active, preview: true });
        break;
      case 'copyPrompt':
        await vscode.env.clipboard.writeText(entry.params.prompt);
        void vscode.window.setStatusBarMessage(t('Prompt copied'), 2000);
        break;
      case 'reveal':
        await vscode.commands.executeCommand('revealInExplorer', uri);
        break;
      case 'vary':
        await this.setInputImage(entry.file, { width: entry.params.width, height: entry.params.height });
        break;
      case 'rerun': {
        // The entry's whole recipe (LoRAs, input image, hires…), found again as a PNG re-run finds it.
        const recorded = toInput(entry.params);
        const input = recorded && (await resolveRecorded(recorded, entry.file, this.deps, true, entry.fluxFile));
        if (!input) break;
        const run = await this.deps.generation.run(input, { kind: 'rerun', fluxFile: entry.fluxFile, blockKey: entry.blockKey, document: entry.file });
        if (run) {
          this.job = run.jobs[0];
          void this.post({ type: 'job', job: this.view(this.job) });
        }
        break;
      }
    }
  }

  prefill(input: GenerateInput): void {
    const params: Partial<PanelParams> = { prompt: input.prompt };
    if (typeof input.seed === 'number') params.seed = input.seed;
    for (const k of ['steps', 'width', 'height', 'guidance', 'negativePrompt', 'trueCfgScale', 'loras', 'strength', 'imageFit'] as const) {
      if (input[k] !== undefined) (params as Record<string, unknown>)[k] = input[k];
    }
    if (input.hires) {
      const h = input.hires;
      params.hires = { scale: h.scale ?? PANEL_DEFAULTS.hiresScale, strength: h.strength ?? PANEL_DEFAULTS.hiresStrength, upscale: h.upscale ?? PANEL_DEFAULTS.hiresUpscale, ...(h.steps !== undefined ? { steps: h.steps } : {}) };
    }
    void this.post({ type: 'prefill', params });
    if (input.image) void this.setInputImage(input.image);
  }

  private view(j: Job): JobView {
    const v: JobView = { state: j.state, stage: j.stage, step: j.step, steps: j.steps, queued: Math.max(0, this.deps.jobs.active().indexOf(j)) };
    const p = jobProgress(j);
    if (p) {
      v.label = p.phase === 'queued' && v.queued > 0 ? t('Queued ({0} ahead)', v.queued) : progressText(p);
      v.fraction = p.fraction;
    }
    if (j.preview && isActive(j)) v.preview = `data:image/png;base64,${j.preview.pngBase64}`;
    if (j.error) v.error = j.error.message;
    if (j.state === 'done' && j.result) v.resultId = this.deps.history.byFile(j.result.file)?.id;
    return v;
  }

  private item(e: HistoryEntry): GalleryItem {
    const p = e.params;
    return {
      id: e.id,
      src: this.panel.webview.asWebviewUri(vscode.Uri.file(e.file)).toString(),
      name: path.basename(e.file),
      prompt: p.prompt,
      seed: p.seed,
      steps: p.steps,
      width: p.width,
      height: p.height,
      guidance: p.guidance,
      model: p.model,
      created: e.created,
    };
  }

  private gallery(): GalleryItem[] {
    this.ensureRoots();
    return this.deps.history.list().slice(0, 200).map((e) => this.item(e));
  }

  /** A new image folder must be a local resource root before the webview can show its images. */
  private ensureRoots(): void {
    const wanted = GenerationPanel.rootsFor(this.deps);
    if (wanted.every((u) => this.roots.has(u.toString()))) return;
    this.roots = new Set(wanted.map((u) => u.toString()));
    this.panel.webview.options = { ...this.panel.webview.options, localResourceRoots: wanted };
  }

  private sendHistory(): void {
    void this.post({ type: 'history', items: this.gallery() });
    // The followed job may have finished before its history entry existed: resend with the id.
    if (this.job && !isActive(this.job)) void this.post({ type: 'job', job: this.view(this.job) });
  }

  dispose(): void {
    if (GenerationPanel.current === this) GenerationPanel.current = undefined;
    for (const s of this.subs) s.dispose();
    this.panel.dispose();
  }
}
