// Models in VS Code: Check Models / Show Memory Needs / Verify (the server's `check`), Find Models
// (the server's `models`), Use This Model (the majicflux.model.* settings), and the registration of
// every model command. The extension host reads no model file itself: every look at the weights
// goes through the inference server. Beside it: modelsView.ts (the Models view),
// modelDownloadCommand.ts (Download Model…), hfToken.ts (the Hugging Face token),
// modelReportDocs.ts (reports as read-only documents); the pure parts (text, tree nodes, requests)
// are modelReport.ts, modelTree.ts and modelDownload.ts.

import * as fs from 'node:fs';
import * as os from 'node:os';
import * as vscode from 'vscode';
import type { ModelSpec } from '../shared/api';
import { formatBytes } from '../shared/bytes';
import type { FoundModel, MachineInfo, ModelCheckReport } from '../shared/models';
import { Configuration } from './configuration';
import { HfToken } from './hfToken';
import { errorMessage } from './jobs';
import { DownloadArgs, ModelActions, ModelDownloads, registryDefaults } from './modelDownloadCommand';
import { ModelStep, offerModelSteps } from './modelProblem';
import { commonProblem } from '../shared/models';
import { demoMarkdown, demoSummary, reportMarkdown, reportSummary, variantOf, whereLabel } from './modelReport';
import { registerReports, showMarkdown } from './modelReportDocs';
import { ModelNode, ModelsView, MODELS_VIEW } from './modelsView';
import { isInUse, settingsUpdates, SettingsTarget, sortModels, unsettableParts } from './modelTree';
import { ServerManager } from './serverManager';
import { modelSpec, SECTION, usesDemoModel, withSearchPaths } from './settings';
import { requireTrust } from './trust';

const t = vscode.l10n.t;

export interface ModelsDeps {
  context: vscode.ExtensionContext;
  config: Configuration;
  server: ServerManager;
  log: vscode.LogOutputChannel;
}

/** What Check Models returns (tests and the walkthrough read `ok` and `demo`). */
export interface CheckResult {
  demo: boolean;
  /** The model is complete (every part present and usable); true for the demo model. */
  ok: boolean;
  name?: string;
  /** Why the check could not be made (no server, bad path, untrusted workspace). */
  error?: string;
  report?: ModelCheckReport;
}

/** What Check Models is asked: quietly (no message), for another model than the configured one, reading every byte, or as a report. */
export interface ModelCheckOptions {
  quiet?: boolean;
  spec?: ModelSpec;
  verify?: boolean;
  report?: boolean;
}

export interface ModelsApi {
  view: ModelsView;
  check(opts?: ModelCheckOptions): Promise<CheckResult>;
  find(quiet?: boolean): Promise<FoundModel[] | undefined>;
}

export function registerModels(d: ModelsDeps): ModelsApi {
  registerReports(d.context);
  const view = new ModelsView(d.config);
  d.context.subscriptions.push(view);
  const m = new ModelCommands(d, view);
  const token = new HfToken(d);
  const downloads = new ModelDownloads(d, view, token, m);
  const reg = (id: string, fn: (...args: never[]) => unknown) => d.context.subscriptions.push(vscode.commands.registerCommand(id, fn));
  reg('majicflux.checkModels', (quiet?: boolean) => m.check({ quiet: quiet === true }));
  reg('majicflux.showMemoryNeeds', () => m.check({ report: true }));
  reg('majicflux.verifyModel', (node?: ModelNode) => m.check({ spec: node?.model.spec, verify: true }));
  reg('majicflux.checkFoundModel', (node?: ModelNode) => (node ? m.check({ spec: node.model.spec }) : m.check({})));
  reg('majicflux.findModels', (quiet?: boolean) => m.find(quiet === true));
  reg('majicflux.refreshModels', () => m.find(true));
  reg('majicflux.downloadModel', (args?: DownloadArgs) => downloads.download(typeof args === 'object' && args ? args : {}));
  reg('majicflux.useModel', (arg?: ModelNode | FoundModel, target?: SettingsTarget) => m.use(arg, target));
  reg('majicflux.revealModel', (node?: ModelNode) => m.reveal(node));
  reg('majicflux.addModelSearchPath', () => m.addSearchPath());
  reg('majicflux.setHuggingFaceToken', () => token.set());
  reg('majicflux.clearHuggingFaceToken', () => token.clear());
  return { view, check: (o = {}) => m.check(o), find: (q = true) => m.find(q) };
}

class ModelCommands implements ModelActions {
  constructor(
    private readonly d: ModelsDeps,
    private readonly view: ModelsView,
  ) {}

  private get settings() {
    return this.d.config.settings;
  }

  /** Restricted mode: nothing reads models or starts the server. */
  trusted(): boolean {
    return requireTrust(t('MajicFLUX looks at, checks and downloads models only in a trusted workspace.'));
  }

  // ---- check ----------------------------------------------------------------------------------

  async check(opts: ModelCheckOptions): Promise<CheckResult> {
    const s = this.settings;
    if (!opts.spec && usesDemoModel(s)) {
      const r: CheckResult = { demo: true, ok: true, name: 'demo' };
      this.d.log.info(`check models: ${demoSummary(t)}`);
      const md = () => demoMarkdown({ platform: os.platform(), arch: os.arch(), cpus: os.cpus().length, totalMemory: os.totalmem(), freeMemory: os.freemem() }, t);
      if (opts.report) await showMarkdown('demo', md());
      else if (!opts.quiet) void offerModelSteps(vscode.window.showInformationMessage, `MajicFLUX: ${demoSummary(t)}`, ['details', 'download', 'find'], { details: () => showMarkdown('demo', md()) });
      return r;
    }
    if (!this.trusted()) return { demo: false, ok: false, error: t('The workspace is not trusted.') };
    const spec = opts.spec ?? modelSpec(s);
    let report: ModelCheckReport;
    try {
      const title = opts.verify ? t('MajicFLUX: verifying the model files (reading every byte; minutes for FLUX.1-dev)…') : t('MajicFLUX: checking the model…');
      report = await this.d.server.hold(() =>
        vscode.window.withProgress({ location: opts.quiet ? vscode.ProgressLocation.Window : vscode.ProgressLocation.Notification, title }, async () => {
          const client = await this.d.server.serverClient();
          return client.check({ model: spec, verify: opts.verify, width: s.defaults.width, height: s.defaults.height });
        }),
      );
    } catch (err) {
      const message = errorMessage(err);
      this.d.log.error(`check models: ${message}`);
      if (!opts.quiet) void offerModelSteps(vscode.window.showErrorMessage, t('MajicFLUX could not check the model: {0}', message), ['settings', 'log'], { log: this.d.log });
      return { demo: false, ok: false, error: message };
    }
    const summary = reportSummary(report, t);
    this.d.log.info(`check models: ${summary}`);
    for (const a of report.advice.slice(1)) this.d.log.info(`check models: ${a}`);
    if (opts.report || opts.verify) await showMarkdown(report.model.name, reportMarkdown(report, t));
    if (!opts.quiet && !opts.report) {
      // Nothing there at all (a folder not found): the setting is what to fix first.
      const steps: ModelStep[] = report.model.complete ? ['details'] : commonProblem(report.model) ? ['settings', 'find', 'details'] : ['details', 'download', 'find'];
      const show = report.model.complete ? vscode.window.showInformationMessage : vscode.window.showWarningMessage;
      void offerModelSteps(show, `MajicFLUX: ${summary}`, steps, { details: () => showMarkdown(report.model.name, reportMarkdown(report, t)) });
    }
    return { demo: false, ok: report.model.complete, name: report.model.name, report };
  }

  // ---- find ------------------------------------------------------------------------------------

  async find(quiet: boolean): Promise<FoundModel[] | undefined> {
    if (!this.trusted()) return undefined;
    const s = this.settings;
    if (!quiet) await vscode.commands.executeCommand(`${MODELS_VIEW}.focus`).then(undefined, () => undefined);
    let found: FoundModel[];
    let machine: MachineInfo;
    try {
      const search = {
        searchPaths: s.models.searchPaths,
        workspaceFolders: (vscode.workspace.workspaceFolders ?? []).filter((f) => f.uri.scheme === 'file').map((f) => f.uri.fsPath),
        globalStorage: this.d.context.globalStorageUri.fsPath,
      };
      ({ found, machine } = await this.d.server.hold(() =>
        vscode.window.withProgress({ location: { viewId: MODELS_VIEW }, title: t('Looking for models…') }, async () => (await this.d.server.serverClient()).models(search)),
      ));
    } catch (err) {
      const message = errorMessage(err);
      this.d.log.error(`find models: ${message}`);
      void vscode.window.showErrorMessage(t('MajicFLUX could not look for models: {0}', message));
      return undefined;
    }
    // With no model configured the server's own is the demo model: not one to list.
    if (usesDemoModel(s)) found = found.filter((m) => m.where !== 'configured');
    this.view.set(found, machine);
    this.d.log.info(`find models: ${found.length} found${found.length ? `: ${found.map((m) => `${m.name} (${m.where}, ${m.complete ? 'complete' : 'incomplete'}) at ${m.root}`).join('; ')}` : ''}`);
    if (!quiet) void this.pickFound(found);
    return found;
  }

  private async pickFound(found: FoundModel[]): Promise<void> {
    if (!found.length) {
      const download = t('Download Model…');
      const add = t('Add Search Folder…');
      const c = await vscode.window.showInformationMessage(t('MajicFLUX found no FLUX.1 model on this machine (workspace models/ folders, the search folders, its downloads, the Hugging Face and ModelScope caches).'), download, add);
      if (c === download) await vscode.commands.executeCommand('majicflux.downloadModel');
      if (c === add) await this.addSearchPath();
      return;
    }
    const current = modelSpec(this.settings);
    const items = sortModels(found, current).map((m) => {
      const bytes = m.parts.reduce((a, p) => a + (p.bytes ?? 0), 0);
      return {
        label: `$(${m.complete ? 'pass-filled' : 'warning'}) ${m.name}`,
        description: [m.complete ? '' : t('incomplete'), isInUse(m, current) ? t('in use') : '', whereLabel(m.where, t), variantOf(m.spec), bytes ? formatBytes(bytes) : ''].filter(Boolean).join(' · '),
        detail: m.root,
        model: m,
      };
    });
    const pick = await vscode.window.showQuickPick(items, { title: t('MajicFLUX: models on this machine'), placeHolder: t('Pick a model to use, check or reveal'), matchOnDetail: true });
    if (!pick) return;
    const use = { label: `$(check) ${t('Use This Model')}`, action: 'use' as const };
    const check = { label: `$(checklist) ${t('Check')}`, action: 'check' as const };
    const reveal = { label: `$(folder-opened) ${t('Reveal in OS')}`, action: 'reveal' as const };
    const what = await vscode.window.showQuickPick([use, check, reveal], { title: pick.model.name });
    if (what?.action === 'use') await this.use(pick.model);
    if (what?.action === 'check') await this.check({ spec: pick.model.spec });
    if (what?.action === 'reveal') await this.reveal({ kind: 'model', model: pick.model });
  }

  async addSearchPath(): Promise<string[] | undefined> {
    const picked = await vscode.window.showOpenDialog({ canSelectFolders: true, canSelectFiles: false, canSelectMany: true, title: t('Folders to look for models in'), openLabel: t('Add') });
    if (!picked?.length) return undefined;
    const cfg = vscode.workspace.getConfiguration(SECTION);
    const next = withSearchPaths(cfg.inspect<unknown>('models.searchPaths')?.globalValue, picked.map((u) => u.fsPath));
    await cfg.update('models.searchPaths', next, vscode.ConfigurationTarget.Global);
    if (vscode.workspace.isTrusted) await this.find(true);
    return next;
  }

  // ---- use, reveal -------------------------------------------------------------------------------

  async use(arg: ModelNode | FoundModel | undefined, target?: SettingsTarget, name?: string): Promise<boolean> {
    const model = arg && 'kind' in arg ? arg.model : arg;
    if (!model) {
      void vscode.window.showInformationMessage(t('Pick a model in the MajicFLUX Models view, or run MajicFLUX: Find Models.'));
      return false;
    }
    if (!this.trusted()) return false;
    const label = name ?? model.name;
    if (!model.complete) {
      const yes = t('Use It Anyway');
      const c = await vscode.window.showWarningMessage(t('{0} is incomplete: images cannot be generated until its missing parts are there. Use it anyway?', label), { modal: true }, yes);
      if (c !== yes) return false;
    }
    return this.applySpec(model.spec, label, target, model.id);
  }

  async applySpec(spec: ModelSpec, label: string, target: SettingsTarget | undefined, registryId?: string): Promise<boolean> {
    const hasWorkspace = !!vscode.workspace.workspaceFolders?.length;
    let where = target ?? (hasWorkspace ? undefined : 'global');
    if (!where) {
      const ws = { label: t('This workspace'), description: t('workspace settings'), target: 'workspace' as const };
      const user = { label: t('All workspaces'), description: t('user settings'), target: 'global' as const };
      where = (await vscode.window.showQuickPick([ws, user], { title: t('Use {0} where?', label) }))?.target;
      if (!where) return false;
    }
    const cfg = vscode.workspace.getConfiguration(SECTION);
    const scope = (w: SettingsTarget) => (w === 'workspace' ? vscode.ConfigurationTarget.Workspace : vscode.ConfigurationTarget.Global);
    for (const u of settingsUpdates(spec, where, (k) => cfg.inspect(k))) await cfg.update(u.key, u.value, scope(u.target));
    this.d.log.info(`use model ${label}: ${JSON.stringify(spec)} (${where} settings)`);
    const lost = unsettableParts(spec);
    if (lost.length) {
      this.d.log.warn(`use model ${label}: no setting holds ${lost.join(', ')}; the model folder's tokenizers are used`);
      void vscode.window.showWarningMessage(t('{0}: its tokenizers ({1}) are outside the model folder and no setting can hold them; the model folder\'s tokenizers are used.', label, lost.join(', ')));
    }
    const defaults = registryId ? registryDefaults(registryId) : undefined;
    const s = this.settings.defaults;
    const apply = defaults && ((defaults.steps !== undefined && defaults.steps !== s.steps) || (defaults.guidance !== undefined && defaults.guidance !== s.guidance));
    if (apply) {
      const yes = t('Use These Defaults');
      const parts = [defaults.steps !== undefined ? t('{0} steps', defaults.steps) : '', defaults.guidance !== undefined ? t('guidance {0}', defaults.guidance) : ''].filter(Boolean).join(', ');
      void vscode.window.showInformationMessage(t('MajicFLUX uses {0} from the next image. It works best with {1}.', label, parts), yes).then(async (c) => {
        if (c !== yes) return;
        if (defaults.steps !== undefined) await cfg.update('defaults.steps', defaults.steps, scope(where!));
        if (defaults.guidance !== undefined) await cfg.update('defaults.guidance', defaults.guidance, scope(where!));
      });
    } else {
      void vscode.window.showInformationMessage(t('MajicFLUX uses {0} from the next image.', label));
    }
    return true;
  }

  async reveal(node: ModelNode | undefined): Promise<void> {
    const p = node?.kind === 'part' ? node.part.path : node?.model.root;
    if (!p) return;
    if (!fs.existsSync(p)) {
      void vscode.window.showWarningMessage(t('{0} is not on this machine (a remote server\'s path?).', p));
      return;
    }
    try {
      await vscode.commands.executeCommand('revealFileInOS', vscode.Uri.file(p));
    } catch {
      const copy = t('Copy Path');
      if ((await vscode.window.showInformationMessage(p, copy)) === copy) await vscode.env.clipboard.writeText(p);
    }
  }
}
