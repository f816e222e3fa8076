// Models in VS Code: Check Models / Show Memory Needs / Verify (the server's `check`), Find Models
// and the Models view (the server's `models`), Download Model… (the server's `download`, with the
// Hugging Face token from secret storage), Use This Model (the majicflux.model.* settings).
// The extension host reads no model file itself: every look at the weights goes through the
// inference server. The pure parts (text, tree nodes, requests) are modelReport.ts, modelTree.ts
// and modelDownload.ts.

import * as fs from 'node:fs';
import * as os from 'node:os';
import * as vscode from 'vscode';
import bundledRegistry from '../../models/registry.json';
import type { ModelSpec } from '../shared/api';
import { formatBytes } from '../shared/bytes';
import type { DownloadResult, FoundModel, HubName, MachineInfo, ModelCheckReport, PartCheck } from '../shared/models';
import { Configuration } from './configuration';
import { errorMessage } from './jobs';
import {
  actionLabel,
  actionsFor,
  describeRequest,
  DownloadAction,
  downloadRequest,
  defaultDownloadFolder,
  failureMessage,
  HF_TOKENS_URL,
  hubHost,
  HubChoice,
  hubLabel,
  ModelChoice,
  modelChoices,
  parseRegistry,
  redact,
  usesMirror,
} from './modelDownload';
import { commonProblem, demoMarkdown, demoSummary, progressText, reportMarkdown, reportSummary, variantOf, whereLabel } from './modelReport';
import { hasModel, isInUse, modelNode, partNode, settingsUpdates, SettingsTarget, sortModels, TreeNodeData, unsettableParts, viewDescription } from './modelTree';
import { DownloadFailedError } from './serverErrors';
import { HF_TOKEN_SECRET, ServerManager } from './serverManager';
import { modelSpec, SECTION, usesDemoModel } from './settings';
import { requireTrust } from './trust';

const t = vscode.l10n.t;

export const MODELS_VIEW = 'majicflux.models';
const SEARCHED_CONTEXT = 'majicflux.models.searched';
/** Completes the walkthrough's "Get a model" step: only a model that is there does (not a search that found none). */
const HAS_MODEL_CONTEXT = 'majicflux.models.hasModel';
const MIRROR_OK_KEY = 'majicflux.tokenMirrorsAllowed';

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

// =============================================================================================
// The Models view

type Node = { kind: 'model'; model: FoundModel } | { kind: 'part'; model: FoundModel; part: PartCheck };

export class ModelsView implements vscode.TreeDataProvider<Node>, vscode.Disposable {
  private foundValue: FoundModel[] | undefined;
  private machine: MachineInfo | undefined;
  private downloaded = false;
  private readonly emitter = new vscode.EventEmitter<Node | undefined>();
  readonly onDidChangeTreeData = this.emitter.event;
  readonly view: vscode.TreeView<Node>;
  private readonly subs: vscode.Disposable[] = [];

  constructor(private readonly config: Configuration) {
    this.view = vscode.window.createTreeView(MODELS_VIEW, { treeDataProvider: this, showCollapseAll: true });
    // The "in use" mark follows the settings.
    this.subs.push(
      this.view,
      this.emitter,
      config.onDidChange(() => {
        this.emitter.fire(undefined);
        this.updateHeader();
      }),
    );
    void vscode.commands.executeCommand('setContext', SEARCHED_CONTEXT, false);
    this.updateHeader();
  }

  /** A real model is configured, found complete, or was just downloaded. */
  get hasModel(): boolean {
    return this.downloaded || hasModel(this.foundValue, usesDemoModel(this.config.settings));
  }

  /** A download finished and verified: the walkthrough's "Get a model" is done. */
  markDownloaded(): void {
    this.downloaded = true;
    this.updateHeader();
  }

  private updateHeader(): void {
    this.view.description = viewDescription(this.machine, usesDemoModel(this.config.settings), t);
    void vscode.commands.executeCommand('setContext', HAS_MODEL_CONTEXT, this.hasModel);
  }

  /** The last search's models (undefined before the first search). */
  get found(): FoundModel[] | undefined {
    return this.foundValue;
  }

  set(found: FoundModel[], machine: MachineInfo): void {
    this.foundValue = found;
    this.machine = machine;
    this.updateHeader();
    void vscode.commands.executeCommand('setContext', SEARCHED_CONTEXT, true);
    this.emitter.fire(undefined);
  }

  getChildren(node?: Node): Node[] {
    if (!node) return sortModels(this.foundValue ?? [], modelSpec(this.config.settings)).map((model) => ({ kind: 'model', model }));
    if (node.kind === 'model') return node.model.parts.map((part) => ({ kind: 'part', model: node.model, part }));
    return [];
  }

  getTreeItem(node: Node): vscode.TreeItem {
    return toTreeItem(node.kind === 'model' ? modelNode(node.model, modelSpec(this.config.settings), t) : partNode(node.model, node.part, t));
  }

  getParent(node: Node): Node | undefined {
    return node.kind === 'part' ? { kind: 'model', model: node.model } : undefined;
  }

  /** For tests: the nodes as shown. */
  snapshot(): { model: TreeNodeData; parts: TreeNodeData[] }[] {
    const current = modelSpec(this.config.settings);
    return sortModels(this.foundValue ?? [], current).map((m) => ({ model: modelNode(m, current, t), parts: m.parts.map((p) => partNode(m, p, t)) }));
  }

  dispose(): void {
    for (const s of this.subs) s.dispose();
  }
}

function toTreeItem(n: TreeNodeData): vscode.TreeItem {
  const item = new vscode.TreeItem(n.label, n.collapsible ? vscode.TreeItemCollapsibleState.Collapsed : vscode.TreeItemCollapsibleState.None);
  item.id = n.id;
  item.description = n.description;
  const tip = new vscode.MarkdownString(n.tooltip);
  tip.supportThemeIcons = false;
  item.tooltip = tip;
  item.iconPath = new vscode.ThemeIcon(n.icon, n.color ? new vscode.ThemeColor(n.color) : undefined);
  item.contextValue = n.contextValue;
  return item;
}

// =============================================================================================
// Commands

export interface ModelsApi {
  view: ModelsView;
  check(opts?: { quiet?: boolean; spec?: ModelSpec; verify?: boolean; report?: boolean }): Promise<CheckResult>;
  find(quiet?: boolean): Promise<FoundModel[] | undefined>;
}

export function registerModels(d: ModelsDeps): ModelsApi {
  registerReports(d.context);
  const view = new ModelsView(d.config);
  d.context.subscriptions.push(view);
  const m = new ModelCommands(d, view);
  const reg = (id: string, fn: (...args: never[]) => unknown) => d.context.subscriptions.push(vscode.commands.registerCommand(id, fn));
  reg('majicflux.checkModels', (quiet?: boolean) => m.check({ quiet: quiet === true }));
  reg('majicflux.showMemoryNeeds', () => m.check({ report: true }));
  reg('majicflux.verifyModel', (node?: Node) => m.check({ spec: node?.model.spec, verify: true }));
  reg('majicflux.checkFoundModel', (node?: Node) => (node ? m.check({ spec: node.model.spec }) : m.check({})));
  reg('majicflux.findModels', (quiet?: boolean) => m.find(quiet === true));
  reg('majicflux.refreshModels', () => m.find(true));
  reg('majicflux.downloadModel', (args?: DownloadArgs) => m.download(typeof args === 'object' && args ? args : {}));
  reg('majicflux.useModel', (arg?: Node | FoundModel, target?: SettingsTarget) => m.use(arg, target));
  reg('majicflux.revealModel', (node?: Node) => m.reveal(node));
  reg('majicflux.addModelSearchPath', () => m.addSearchPath());
  reg('majicflux.setHuggingFaceToken', () => m.setToken());
  reg('majicflux.clearHuggingFaceToken', () => m.clearToken());
  return { view, check: (o = {}) => m.check(o), find: (q = true) => m.find(q) };
}

export interface DownloadArgs {
  /** Registry id (flux1-dev, flux1-schnell, majicflus-v1); asked when absent. */
  model?: string;
  hub?: HubName;
  /** Folder; asked when absent (default majicflux.models.downloadFolder, else global storage). */
  dest?: string;
}

interface Planned {
  choice: ModelChoice;
  hub: HubChoice;
  dest?: string;
}

class ModelCommands {
  constructor(
    private readonly d: ModelsDeps,
    private readonly view: ModelsView,
  ) {}

  private get settings() {
    return this.d.config.settings;
  }

  /** Restricted mode: nothing reads models or starts the server. */
  private trusted(): boolean {
    return requireTrust(t('MajicFLUX looks at, checks and downloads models only in a trusted workspace.'));
  }

  // ---- check ----------------------------------------------------------------------------------

  async check(opts: { quiet?: boolean; spec?: ModelSpec; verify?: boolean; report?: boolean }): Promise<CheckResult> {
    const s = this.settings;
    if (!opts.spec && usesDemoModel(s)) {
      const r: CheckResult = { demo: true, ok: true, name: 'demo' };
      this.d.log.info(`check models: ${demoSummary(t)}`);
      const md = () => demoMarkdown({ platform: os.platform(), arch: os.arch(), cpus: os.cpus().length, totalMemory: os.totalmem(), freeMemory: os.freemem() }, t);
      if (opts.report) await showMarkdown('demo', md());
      else if (!opts.quiet) {
        const details = t('Details');
        const download = t('Download Model…');
        const find = t('Find Models');
        void vscode.window.showInformationMessage(`MajicFLUX: ${demoSummary(t)}`, details, download, find).then(async (c) => {
          if (c === details) await showMarkdown('demo', md());
          if (c === download) await vscode.commands.executeCommand('majicflux.downloadModel');
          if (c === find) await vscode.commands.executeCommand('majicflux.findModels');
        });
      }
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
      if (!opts.quiet) {
        const settings = t('Open Settings');
        const log = t('Show Log');
        void vscode.window.showErrorMessage(t('MajicFLUX could not check the model: {0}', message), settings, log).then((c) => {
          if (c === settings) void vscode.commands.executeCommand('workbench.action.openSettings', 'majicflux.model');
          if (c === log) this.d.log.show();
        });
      }
      return { demo: false, ok: false, error: message };
    }
    const summary = reportSummary(report, t);
    this.d.log.info(`check models: ${summary}`);
    for (const a of report.advice.slice(1)) this.d.log.info(`check models: ${a}`);
    if (opts.report || opts.verify) await showMarkdown(report.model.name, reportMarkdown(report, t));
    if (!opts.quiet && !opts.report) {
      const details = t('Details');
      const download = t('Download Model…');
      const find = t('Find Models');
      const settings = t('Open Settings');
      // Nothing there at all (a folder not found): the setting is what to fix first.
      const buttons = report.model.complete ? [details] : commonProblem(report.model) ? [settings, find, details] : [details, download, find];
      const show = report.model.complete ? vscode.window.showInformationMessage : vscode.window.showWarningMessage;
      void show(`MajicFLUX: ${summary}`, ...buttons).then(async (c) => {
        if (c === settings) await vscode.commands.executeCommand('workbench.action.openSettings', 'majicflux.model');
        if (c === details) await showMarkdown(report.model.name, reportMarkdown(report, t));
        if (c === download) await vscode.commands.executeCommand('majicflux.downloadModel');
        if (c === find) await vscode.commands.executeCommand('majicflux.findModels');
      });
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
    const existing = cfg.inspect<string[]>('models.searchPaths')?.globalValue ?? [];
    const next = [...existing, ...picked.map((u) => u.fsPath).filter((p) => !existing.includes(p))];
    await cfg.update('models.searchPaths', next, vscode.ConfigurationTarget.Global);
    if (vscode.workspace.isTrusted) await this.find(true);
    return next;
  }

  // ---- use, reveal -------------------------------------------------------------------------------

  async use(arg: Node | FoundModel | undefined, target?: SettingsTarget, name?: string): Promise<boolean> {
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

  private async applySpec(spec: ModelSpec, label: string, target: SettingsTarget | undefined, registryId?: string): Promise<boolean> {
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
    const defaults = registryId ? this.registryDefaults(registryId) : undefined;
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

  async reveal(node: Node | undefined): Promise<void> {
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

  // ---- download ----------------------------------------------------------------------------------

  /** The models MajicFLUX can download: models/registry.json, bundled (the server plans downloads from the same data). */
  private registry(): ModelChoice[] {
    try {
      return modelChoices(parseRegistry(bundledRegistry));
    } catch (err) {
      throw new Error(t('The list of known models ({0}) cannot be read: {1}', 'models/registry.json', errorMessage(err)));
    }
  }

  private registryDefaults(id: string): ModelChoice['defaults'] {
    try {
      return this.registry().find((c) => c.id === id)?.defaults;
    } catch {
      return undefined;
    }
  }

  async download(args: DownloadArgs): Promise<DownloadResult | undefined> {
    if (!this.trusted()) return undefined;
    let choices: ModelChoice[];
    try {
      choices = this.registry();
    } catch (err) {
      void vscode.window.showErrorMessage(`MajicFLUX: ${errorMessage(err)}`);
      return undefined;
    }
    const choice = args.model ? choices.find((c) => c.id === args.model) : await this.pickModel(choices);
    if (!choice) {
      if (args.model) void vscode.window.showErrorMessage(t('MajicFLUX knows no model "{0}"; known: {1}.', args.model, choices.map((c) => c.id).join(', ')));
      return undefined;
    }
    const hub = args.hub ? choice.hubs.find((h) => h.hub === args.hub) : choice.hubs.length === 1 ? choice.hubs[0] : await this.pickHub(choice);
    if (!hub) {
      if (args.hub) void vscode.window.showErrorMessage(t('{0} is not on {1}.', choice.name, args.hub));
      return undefined;
    }
    let dest: string | undefined;
    if (!this.d.server.isRemote) {
      dest = args.dest ?? (await this.pickFolder(choice));
      if (!dest) return undefined;
    }
    return this.runDownload({ choice, hub, dest });
  }

  private async pickModel(choices: ModelChoice[]): Promise<ModelChoice | undefined> {
    const items = choices.map((c) => ({
      label: c.name,
      description: [c.id, c.bytes ? (c.sizeKnown ? `≈ ${formatBytes(c.bytes)}` : `≥ ${formatBytes(c.bytes)}`) : '', c.hubs.every((h) => h.needsLogin) ? t('needs a Hugging Face login') : ''].filter(Boolean).join(' · '),
      detail: c.description,
      choice: c,
    }));
    return (await vscode.window.showQuickPick(items, { title: t('MajicFLUX: Download Model'), placeHolder: t('Which model? Parts already on disk and verified are not fetched again.'), matchOnDetail: true }))?.choice;
  }

  private async pickHub(choice: ModelChoice): Promise<HubChoice | undefined> {
    const items = choice.hubs.map((h) => ({
      label: hubLabel(h.hub, t),
      description: h.repos.join(', '),
      detail: h.needsLogin
        ? t('Needs a Hugging Face account: accept the licence of {0} and give MajicFLUX an access token.', h.repos.join(', '))
        : t('No login needed.'),
      hub: h,
    }));
    return (await vscode.window.showQuickPick(items, { title: t('Download {0} from', choice.name), placeHolder: t('ModelScope is usually faster from mainland China') }))?.hub;
  }

  private async pickFolder(choice: ModelChoice): Promise<string | undefined> {
    const def = defaultDownloadFolder(this.settings, this.d.context.globalStorageUri.fsPath);
    const standard = { label: t('$(folder) Default folder'), description: def, detail: this.settings.models.downloadFolder ? 'majicflux.models.downloadFolder' : t('MajicFLUX\'s storage; Find Models always looks here'), folder: def as string | undefined };
    const other = { label: t('$(folder-opened) Choose a folder…'), description: '', detail: t('Files land in <folder>/<owner>/<repository>/'), folder: undefined as string | undefined };
    const pick = await vscode.window.showQuickPick([standard, other], { title: t('Download {0} into', choice.name) });
    if (!pick) return undefined;
    return pick.folder ?? this.chooseFolder();
  }

  private async chooseFolder(): Promise<string | undefined> {
    const picked = await vscode.window.showOpenDialog({ canSelectFolders: true, canSelectFiles: false, canSelectMany: false, title: t('Download the model into'), openLabel: t('Download Here') });
    return picked?.[0]?.fsPath;
  }

  /** The Hugging Face token for this download: from secret storage, else asked for when the repository is gated. */
  private async tokenFor(p: Planned): Promise<{ token?: string } | undefined> {
    if (p.hub.hub !== 'huggingface') return {};
    let token = await this.d.context.secrets.get(HF_TOKEN_SECRET);
    if (!token && p.hub.needsLogin) {
      token = await this.askToken(p.hub.licenceUrl, p.choice.name);
      if (!token) return undefined;
    }
    if (token && usesMirror('huggingface', this.settings)) {
      const host = hubHost('huggingface', this.settings);
      const allowed = this.d.context.globalState.get<string[]>(MIRROR_OK_KEY, []);
      if (!allowed.includes(host)) {
        const send = t('Send It');
        const without = t('Download Without It');
        const c = await vscode.window.showWarningMessage(
          t('majicflux.models.huggingfaceEndpoint points at {0}, not huggingface.co. Send your Hugging Face token to {0}?', host),
          { modal: true, detail: t('A mirror needs the token only for gated repositories. Send it only to a mirror you trust.') },
          send,
          without,
        );
        if (c === undefined) return undefined;
        if (c === without) return {};
        await this.d.context.globalState.update(MIRROR_OK_KEY, [...allowed, host]);
      }
    }
    return token ? { token } : {};
  }

  /** Asks for a token (password box, buttons for the licence and the tokens page) and keeps it in secret storage. */
  private askToken(licenceUrl?: string, modelName?: string): Promise<string | undefined> {
    return new Promise((resolve) => {
      const box = vscode.window.createInputBox();
      box.title = t('Hugging Face access token');
      box.prompt = modelName
        ? t('{0} is gated: accept its licence on huggingface.co (logged in), then create a read token and paste it here. It is kept in VS Code\'s secret storage, never in settings or logs.', modelName)
        : t('A read token from huggingface.co/settings/tokens. It is kept in VS Code\'s secret storage, never in settings or logs.');
      box.password = true;
      box.ignoreFocusOut = true;
      box.placeholder = 'hf_…';
      const licence: vscode.QuickInputButton = { iconPath: new vscode.ThemeIcon('law'), tooltip: t('Open the licence page') };
      const tokens: vscode.QuickInputButton = { iconPath: new vscode.ThemeIcon('key'), tooltip: t('Create a token (huggingface.co/settings/tokens)') };
      box.buttons = licenceUrl ? [licence, tokens] : [tokens];
      let done = false;
      box.onDidTriggerButton((b) => void vscode.env.openExternal(vscode.Uri.parse(b === licence && licenceUrl ? licenceUrl : HF_TOKENS_URL)));
      box.onDidChangeValue(() => (box.validationMessage = undefined));
      box.onDidAccept(async () => {
        const v = box.value.trim();
        if (!v) {
          box.validationMessage = t('Paste the token, or press Escape to cancel.');
          return;
        }
        if (/\s/.test(v)) {
          box.validationMessage = t('A token has no spaces.');
          return;
        }
        done = true;
        box.hide();
        await this.d.context.secrets.store(HF_TOKEN_SECRET, v);
        this.d.log.info('the Hugging Face token was stored in secret storage');
        resolve(v);
      });
      box.onDidHide(() => {
        if (!done) resolve(undefined);
        box.dispose();
      });
      box.show();
    });
  }

  /** Asks for the token (never taken as a command argument: a command link could plant one). */
  async setToken(): Promise<boolean> {
    const token = await this.askToken();
    if (token) void vscode.window.showInformationMessage(t('MajicFLUX: the Hugging Face token is stored in VS Code\'s secret storage.'));
    return !!token;
  }

  async clearToken(): Promise<void> {
    await this.d.context.secrets.delete(HF_TOKEN_SECRET);
    this.d.log.info('the Hugging Face token was removed from secret storage');
    void vscode.window.showInformationMessage(t('MajicFLUX: the Hugging Face token is removed.'));
  }

  private async runDownload(p: Planned): Promise<DownloadResult | undefined> {
    const auth = await this.tokenFor(p);
    if (!auth) return undefined;
    const remote = this.d.server.isRemote;
    const req = downloadRequest({ model: p.choice.id, hub: p.hub.hub, dest: p.dest, token: auth.token, remote }, this.settings, this.d.context.globalStorageUri.fsPath);
    this.d.log.info(describeRequest(req));
    if (!remote) {
      try {
        fs.mkdirSync(req.dest, { recursive: true });
      } catch (err) {
        this.d.log.warn(`cannot create ${req.dest}: ${errorMessage(err)}`);
      }
    }
    const started = Date.now();
    let result: DownloadResult;
    try {
      result = await this.d.server.hold(() =>
        vscode.window.withProgress(
          { location: vscode.ProgressLocation.Notification, title: t('Downloading {0} from {1}', p.choice.name, hubLabel(p.hub.hub, t)), cancellable: true },
          async (progress, cancel) => {
            const client = await this.d.server.serverClient();
            let shown = 0;
            let lastLog = 0;
            const h = await client.download(req, (e) => {
              if (e.event !== 'download-progress') return;
              const { message, percent } = progressText(e.progress, t);
              const increment = percent !== undefined && percent > shown ? percent - shown : undefined;
              if (percent !== undefined) shown = Math.max(shown, percent);
              progress.report({ message, increment });
              if (Date.now() - lastLog > 30_000) {
                lastLog = Date.now();
                this.d.log.info(`download ${p.choice.id}: ${message}`);
              }
            });
            const stop = () => void client.cancel(h.downloadId).catch((err: unknown) => this.d.log.warn(`cancel ${h.downloadId}: ${errorMessage(err)}`));
            if (cancel.isCancellationRequested) stop();
            cancel.onCancellationRequested(stop);
            return h.done;
          },
        ),
      );
    } catch (err) {
      this.downloadFailed(p, err, auth.token);
      return undefined;
    }
    const bytes = result.files.reduce((a, f) => a + f.bytes, 0);
    this.d.log.info(`download ${p.choice.id}: done in ${Math.round((Date.now() - started) / 1000)} s, ${result.files.length} files (${formatBytes(bytes)}, ${result.files.filter((f) => f.skipped).length} already there), model ${JSON.stringify(result.spec)}`);
    this.view.markDownloaded();
    if (this.view.found !== undefined || !remote) void this.find(true);
    const use = t('Use This Model');
    const check = t('Check');
    void vscode.window.showInformationMessage(t('MajicFLUX: {0} is downloaded and verified.', p.choice.name), use, check).then(async (c) => {
      if (c === use) await this.applySpec(result.spec, p.choice.name, undefined, p.choice.id);
      if (c === check) await this.check({ spec: result.spec });
    });
    return result;
  }

  private downloadFailed(p: Planned, err: unknown, token: string | undefined): void {
    const code = err instanceof DownloadFailedError ? err.code : undefined;
    const message = redact(errorMessage(err), [token]);
    const detail = err instanceof DownloadFailedError && err.detail ? redact(err.detail, [token]) : undefined;
    if (code === 'cancelled') {
      this.d.log.info(`download ${p.choice.id}: cancelled`);
      void vscode.window.showInformationMessage(`MajicFLUX: ${failureMessage('cancelled', message, t)}`);
      return;
    }
    this.d.log.error(`download ${p.choice.id}: ${code ?? 'error'}: ${message}${detail ? `\n${detail}` : ''}`);
    // Not a download failure: the server refused the request or could not start.
    const actions: DownloadAction[] = code ? actionsFor(code) : ['showLog'];
    const text = code ? failureMessage(code, message, t) : t('Download failed: {0}', message);
    const labels = actions.map((a) => actionLabel(a, t));
    void vscode.window.showErrorMessage(`MajicFLUX: ${text}`, ...labels).then(async (c) => {
      const a = actions[labels.indexOf(c ?? '')];
      switch (a) {
        case 'setToken':
          if (await this.askToken(p.hub.licenceUrl, p.choice.name)) await this.runDownload(p);
          break;
        case 'openLicence':
          await vscode.env.openExternal(vscode.Uri.parse(p.hub.licenceUrl ?? (p.hub.hub === 'huggingface' ? `https://huggingface.co/${p.hub.repo}` : `https://modelscope.cn/models/${p.hub.repo}`)));
          break;
        case 'retry':
          await this.runDownload(p);
          break;
        case 'chooseFolder': {
          const dest = await this.chooseFolder();
          if (dest) await this.runDownload({ ...p, dest });
          break;
        }
        case 'showLog':
          this.d.log.show();
          break;
      }
    });
  }
}

// ---- reports: read-only virtual documents, so closing a preview never asks to save anything ----

const REPORT_SCHEME = 'majicflux-report';

class Reports implements vscode.TextDocumentContentProvider {
  private readonly docs = new Map<string, string>();
  private readonly emitter = new vscode.EventEmitter<vscode.Uri>();
  readonly onDidChange = this.emitter.event;

  provideTextDocumentContent(uri: vscode.Uri): string {
    return this.docs.get(uri.path) ?? '';
  }

  set(name: string, content: string): vscode.Uri {
    const uri = vscode.Uri.from({ scheme: REPORT_SCHEME, path: `/${name.replace(/[\\/:*?"<>|#%]+/g, '_')} - model check.md` });
    this.docs.set(uri.path, content);
    this.emitter.fire(uri);
    return uri;
  }
}

let reports: Reports | undefined;

function registerReports(context: vscode.ExtensionContext): void {
  reports = new Reports();
  context.subscriptions.push(vscode.workspace.registerTextDocumentContentProvider(REPORT_SCHEME, reports));
}

async function showMarkdown(name: string, content: string): Promise<void> {
  const uri = reports!.set(name, content);
  const doc = await vscode.workspace.openTextDocument(uri);
  await vscode.commands.executeCommand('markdown.showPreview', doc.uri).then(undefined, () => vscode.window.showTextDocument(doc));
}
