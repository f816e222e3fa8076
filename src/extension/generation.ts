// From "generate this" (a prompt and some parameters, from any entry point) to jobs on the server:
// fills in the defaults, draws seeds, picks the output files (asking where to save when no folder
// is open), submits, and optionally shows a cancellable progress notification.

import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as vscode from 'vscode';
import { DEFAULTS, RANDOM_SEED, type GenerateParams } from '../shared/params';
import { formatBytes } from '../shared/bytes';
import { folderProblem } from '../inference/system/writableFolder';
import type { JobRequest } from '../shared/protocol';
import { Configuration } from './configuration';
import { renderTemplate, withPngExtension } from '../shared/fileName';
import type { BlockValues } from './fluxFile/parser';
import { History } from './history';
import { isActive, Job, JobOrigin, Jobs } from './jobs';
import { jobProgress } from './progress';
import { progressText } from './progressText';
import { OutputReservations, outputPath, resolveOutputFolder, seedsFor, workspaceFolderFor } from './output';
import { modelPathProblem, showModelProblem } from './modelProblem';
import { ServerManager } from './serverManager';
import { refuse } from './refusal';
import { requireTrust } from './trust';
import { modelName, usesDemoModel } from './settings';
import { otherLoraFiles } from './loraFiles';
import { paramsProblem } from './panel/inputs';

/** Issue 13's parameters (negative prompt, LoRAs, input image, hires pass…), sent as given: params.ts checks them, absent is off or the default. */
export const EXTRA_PARAMS = ['negativePrompt', 'trueCfgScale', 'loras', 'image', 'strength', 'imageFit', 'hires', 'vaeTiling'] as const;
export type ExtraParams = Pick<GenerateParams, (typeof EXTRA_PARAMS)[number]>;

export interface GenerateInput extends BlockValues, ExtraParams {
  prompt: string;
}

/** The extra parameters `input` sets (undefined ones left out, so the request stays as small as the user's choice). */
export function extraParams(input: ExtraParams): ExtraParams {
  return Object.fromEntries(EXTRA_PARAMS.filter((k) => input[k] !== undefined).map((k) => [k, input[k]]));
}

export interface RunOptions {
  /** Show a cancellable notification with per-step progress (palette, selection, .flux runs). */
  notify?: boolean;
  /** Open each image once saved, where majicflux.output.openResult says (palette, selection, re-run, walkthrough). */
  open?: boolean;
}

export interface RunResult {
  jobs: Job[];
  /** Resolves when every job has finished. */
  finished: Promise<Job[]>;
}

const t = vscode.l10n.t;

export class Generation {
  private readonly reservations = new OutputReservations();
  /** Where to save when no folder is open, chosen once per session. */
  private chosenFolder: string | undefined;

  constructor(
    private readonly config: Configuration,
    private readonly jobs: Jobs,
    private readonly history: History,
    private readonly server: ServerManager,
    private readonly log: vscode.LogOutputChannel,
  ) {
    jobs.onDidChange((job) => this.onJob(job));
  }

  /** Submits the images `input` asks for; undefined when the user cancelled a question. */
  async run(input: GenerateInput, origin: JobOrigin, opts: RunOptions = {}): Promise<RunResult | undefined> {
    if (!requireTrust()) return undefined;
    const prompt = input.prompt.trim();
    if (!prompt) {
      void refuse(this.log, t('The prompt is empty.'));
      return undefined;
    }
    if (this.modelMissing()) return undefined;
    const s = this.config.settings;
    const d = s.defaults;
    const count = input.count ?? DEFAULTS.count;
    const seeds = seedsFor(input.seed ?? (d.seed === RANDOM_SEED ? 'random' : d.seed), count);
    const base = this.baseParams(input, prompt);
    // What the server would refuse (an input image that is no image, a LoRA that is a checkpoint, a
    // hires pass past the size limit…), said now and once: before a server starts, a name is
    // reserved, or each of `count` fails.
    const first: GenerateParams = { ...base, seed: seeds[0] };
    const problem = await paramsProblem(first);
    if (problem) {
      this.refuseParams(problem);
      return undefined;
    }
    const targets = await this.targets(base, seeds, origin, input.out);
    if (!targets) return undefined;
    if (this.refuseUnwritable(targets)) return undefined;

    const remote = this.server.isRemote;
    const jobs = seeds.map((seed, i) => {
      const target = targets[i];
      const request: JobRequest = {
        params: { ...base, seed },
        // A remote server writes into its own output folder; the bytes come back with the result.
        output: remote ? path.basename(target) : target,
        previewEvery: s.previewEverySteps,
        ...(remote ? { returnImage: true } : {}),
      };
      return this.jobs.submit(request, origin, target);
    });
    this.log.info(`queued ${jobs.length} image(s): ${JSON.stringify(base)} seeds ${seeds.join(', ')} → ${targets.join(', ')}`);
    const finished = Promise.all(jobs.map((j) => this.jobs.whenFinished(j)));
    if (opts.notify) this.showProgress(jobs, finished);
    // The panel shows progress, results and failures itself; what did not apply as asked still gets said.
    else void finished.then((done) => this.announce(done, { warningsOnly: true }));
    if (opts.open) void finished.then((done) => this.openResults(done));
    return { jobs, finished };
  }

  /**
   * run's check of `input` alone, without running it: for a run of several blocks, so that a later
   * block the server would refuse is said before the first one starts. True when refused (and said).
   */
  async refuses(input: GenerateInput): Promise<boolean> {
    // What run asks first (trust, the model) is what the user hears first here too.
    if (!requireTrust() || this.modelMissing()) return true;
    const params: GenerateParams = { ...this.baseParams(input, input.prompt.trim()), seed: 0 };
    const problem = await paramsProblem(params);
    if (problem) this.refuseParams(problem);
    return !!problem;
  }

  /** A model path that is not there: said now (true), before starting a server that would fail the job. */
  private modelMissing(): boolean {
    const missing = modelPathProblem(this.config, this.server.isRemote);
    if (!missing) return false;
    this.log.error(`not generating: ${missing}`);
    void showModelProblem(t('MajicFLUX cannot generate: {0}', missing), this.log);
    return true;
  }

  private refuseParams(problem: string): void {
    void refuse(this.log, t('MajicFLUX cannot generate: {0}', problem));
  }

  /** `input` over the default parameters, as a request sends it (the seed apart: drawn per image). */
  private baseParams(input: GenerateInput, prompt: string): Omit<GenerateParams, 'seed'> {
    const d = this.config.settings.defaults;
    return {
      prompt,
      steps: input.steps ?? d.steps,
      width: input.width ?? d.width,
      height: input.height ?? d.height,
      guidance: input.guidance ?? d.guidance,
      ...extraParams(input),
    };
  }

  private async targets(base: Omit<GenerateParams, 'seed'>, seeds: number[], origin: JobOrigin, outTemplate: string | undefined): Promise<string[] | undefined> {
    const fluxFile = origin.fluxFile && fs.existsSync(origin.fluxFile) ? origin.fluxFile : undefined;
    // The output settings of the run's folder (multi-root: each folder may set its own).
    const s = this.config.settingsFor(fluxFile ?? origin.document);
    const date = new Date();
    const values = (seed: number, index: number) => ({
      date,
      seed,
      prompt: base.prompt,
      steps: base.steps!,
      width: base.width!,
      height: base.height!,
      guidance: base.guidance!,
      index,
      model: modelName(s),
    });
    let folder = resolveOutputFolder({ setting: s.output.folder, fluxFile, workspaceRoot: workspaceRootFor(fluxFile ?? origin.document) });
    if (!folder && !this.chosenFolder && seeds.length === 1) {
      // No folder open: ask for the file itself.
      const name = renderTemplate(s.output.fileName, values(seeds[0], 1)).split('/').pop()!;
      const uri = await vscode.window.showSaveDialog({
        title: t('Save the generated image as'),
        defaultUri: vscode.Uri.file(path.join(os.homedir(), name)),
        filters: { PNG: ['png'] },
      });
      if (!uri) return undefined;
      this.chosenFolder = path.dirname(uri.fsPath);
      // A name typed as X.PNG keeps its case rather than becoming X.PNG.png.
      return [this.reservations.reserve(withPngExtension(uri.fsPath))];
    }
    if (!folder) folder = this.chosenFolder ?? (await this.askFolder());
    if (!folder) return undefined;
    const dir = folder;
    // An untitled .flux document's out: starts where its image: does (fluxFile/documents.ts fluxFolder), else in the chosen folder.
    const outBase = workspaceRootFor(undefined) ?? dir;
    return seeds.map((seed, i) =>
      this.reservations.reserve(outputPath({ folder: dir, template: s.output.fileName, values: values(seed, i + 1), fluxFile, outTemplate, outBase })),
    );
  }

  /** A target folder that cannot be written is said now, not after minutes of generation; its names are released. */
  private refuseUnwritable(targets: string[]): boolean {
    for (const dir of new Set(targets.map((f) => path.dirname(f)))) {
      const problem = folderProblem(dir);
      if (!problem) continue;
      for (const f of targets) this.reservations.release(f);
      const msg =
        problem.code === 'fileInTheWay'
          ? t('MajicFLUX cannot save images in {0}: {1} is a file, not a folder. Move it, or choose another output folder.', dir, problem.path)
          : problem.readOnly
            ? t('MajicFLUX cannot save images in {0}: {1} is read-only. Make it writable, or choose another output folder.', dir, problem.path)
            : t('MajicFLUX cannot save images in {0}: you have no permission to write in {1}. Choose another output folder, or ask for write access.', dir, problem.path);
      this.log.error(`not generating: ${msg}`);
      const open = t('Open Settings');
      void vscode.window.showErrorMessage(msg, open).then((c) => {
        if (c === open) void vscode.commands.executeCommand('workbench.action.openSettings', 'majicflux.output.folder');
      });
      return true;
    }
    return false;
  }

  private async askFolder(): Promise<string | undefined> {
    const picked = await vscode.window.showOpenDialog({
      title: t('Choose a folder for the generated images'),
      canSelectFiles: false,
      canSelectFolders: true,
      canSelectMany: false,
      openLabel: t('Save Images Here'),
    });
    this.chosenFolder = picked?.[0]?.fsPath;
    return this.chosenFolder;
  }

  private onJob(job: Job): void {
    if (isActive(job)) return;
    if (job.target) this.reservations.release(job.target);
    if (job.state === 'done' && job.result) {
      const r = job.result;
      this.history.add({ file: r.file, params: r.metadata, seconds: r.seconds, fluxFile: job.origin.fluxFile, blockKey: job.origin.blockKey });
      for (const n of r.notes) this.log.info(`${job.id}: ${n}`);
      this.log.info(`${job.id} done in ${r.seconds?.toFixed(1) ?? '?'} s: ${r.file} (${r.stages.map((st) => `${st.stage} ${st.seconds.toFixed(2)} s, peak ${formatBytes(st.peakRss)}${st.ep ? ` on ${st.ep}` : ''}`).join('; ')})`);
    }
  }

  private showProgress(jobs: Job[], finished: Promise<Job[]>): void {
    const total = jobs.length;
    void vscode.window.withProgress(
      { location: vscode.ProgressLocation.Notification, title: 'MajicFLUX', cancellable: true },
      async (progress, token) => {
        token.onCancellationRequested(() => {
          for (const j of jobs) void this.jobs.cancel(j.id);
        });
        let reported = 0;
        const update = () => {
          const done = jobs.filter((j) => !isActive(j)).length;
          const cur = jobs.find((j) => isActive(j) && j.state === 'running') ?? jobs.find(isActive);
          const p = cur && jobProgress(cur);
          const frac = done + (p?.fraction ?? 0);
          let message = p ? progressText(p) : t('Waiting for the server…');
          if (total > 1) message = t('Image {0} of {1}: {2}', Math.min(done + 1, total), total, message);
          const pct = (100 * frac) / total;
          progress.report({ message, increment: Math.max(0, pct - reported) });
          reported = Math.max(reported, pct);
        };
        const sub = this.jobs.onDidChange((j) => {
          if (jobs.includes(j)) update();
        });
        update();
        try {
          await finished;
        } finally {
          sub.dispose();
        }
      },
    );
    void finished.then((done) => this.announce(done));
  }

  private async openResults(done: Job[]): Promise<void> {
    const where = this.config.settings.output.openResult;
    if (where === 'none') return;
    const files = done.filter((j) => j.state === 'done' && j.result).map((j) => j.result!.file);
    const viewColumn = where === 'beside' ? vscode.ViewColumn.Beside : vscode.ViewColumn.Active;
    for (const f of files) {
      await vscode.commands.executeCommand('vscode.open', vscode.Uri.file(f), { viewColumn, preserveFocus: where === 'beside', preview: files.length === 1 });
    }
  }

  private async announce(done: Job[], opts: { warningsOnly?: boolean } = {}): Promise<void> {
    const ok = done.filter((j) => j.state === 'done' && j.result);
    const failed = done.filter((j) => j.state === 'failed');
    if (failed.length && !opts.warningsOnly) {
      const showLog = t('Show Log');
      const msg = failed[0].error?.message ?? t('unknown error');
      if (failed[0].error?.code === 'model') await showModelProblem(t('MajicFLUX: generation failed: {0}', msg), this.log);
      else if ((await vscode.window.showErrorMessage(t('MajicFLUX: generation failed: {0}', msg), showLog)) === showLog) this.log.show();
    }
    if (!ok.length) return;
    const open = t('Open');
    const reveal = t('Reveal in Explorer');
    const showLog = t('Show Log');
    const files = ok.map((j) => j.result!.file);
    const saved = files.length === 1 ? t('MajicFLUX: saved {0}', path.basename(files[0])) : t('MajicFLUX: saved {0} images', files.length);
    // What did not apply as asked (a LoRA's layers, a negative prompt, the input image's size) is said with the image, not only in the log.
    const warnings = [...new Set(ok.flatMap((j) => [...(j.result!.warnings ?? []), ...otherLoraWarnings(j)]))];
    let c: string | undefined;
    if (warnings.length) {
      const text = t('{0}. Not as asked: {1}', saved, warnings.join(' · '));
      this.announcedWarnings.push(text);
      c = await vscode.window.showWarningMessage(text, open, reveal, showLog);
    } else if (!opts.warningsOnly) {
      c = await vscode.window.showInformationMessage(saved, open, reveal);
    }
    if (c === showLog) this.log.show();
    if (c === open) for (const f of files) await vscode.commands.executeCommand('vscode.open', vscode.Uri.file(f), { preview: files.length === 1 });
    if (c === reveal) await vscode.commands.executeCommand('revealInExplorer', vscode.Uri.file(files[0]));
  }

  /** Completion messages that carried warnings, oldest first (for tests: MajicfluxApi.announcedWarnings). */
  readonly announcedWarnings: string[] = [];

  /** Is the demo (random-weight) model in use? Shown in results so nobody mistakes noise for a bug. */
  get usingDemo(): boolean {
    return usesDemoModel(this.config.settings);
  }
}

function workspaceRootFor(file: string | undefined): string | undefined {
  const folders = (vscode.workspace.workspaceFolders ?? []).filter((f) => f.uri.scheme === 'file').map((f) => f.uri.fsPath);
  return workspaceFolderFor(file, folders);
}

/** The file-system document of the active text editor, where a command run from the palette comes from. */
export function activeDocument(): string | undefined {
  const uri = vscode.window.activeTextEditor?.document.uri;
  return uri?.scheme === 'file' ? uri.fsPath : undefined;
}

/** A re-run's LoRAs whose file is not the one the image was made with (loraFiles.otherLoraFiles), worded. */
function otherLoraWarnings(job: Job): string[] {
  return otherLoraFiles(job.origin.recordedLoras ?? [], job.result?.metadata.loras ?? []).map((d) => t('LoRA "{0}" is another file than the image was made with (hash {1} recorded, {2} now): the image may differ', d.name, d.recorded, d.now));
}
