// Download Model…: pick a registry model, a hub and a folder, ask for a token where the repository
// is gated, then let the server download it with progress and cancel in a notification; each kind
// of failure offers its fix. The pure parts (choices, the request, messages) are modelDownload.ts.

import * as fs from 'node:fs';
import * as vscode from 'vscode';
import bundledRegistry from '../../models/registry.json';
import type { ModelSpec } from '../shared/api';
import { formatBytes } from '../shared/bytes';
import type { DownloadResult, FoundModel, HubName } from '../shared/models';
import type { HfToken } from './hfToken';
import { errorMessage } from './jobs';
import type { CheckResult, ModelCheckOptions, ModelsDeps } from './models';
import type { ModelsView } from './modelsView';
import {
  actionLabel,
  actionsFor,
  describeRequest,
  DownloadAction,
  downloadRequest,
  defaultDownloadFolder,
  failureMessage,
  HubChoice,
  hubLabel,
  ModelChoice,
  modelChoices,
  parseRegistry,
  redact,
} from './modelDownload';
import { progressText } from './modelReport';
import type { SettingsTarget } from './modelTree';
import { DownloadFailedError } from './serverErrors';

const t = vscode.l10n.t;

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

/** What a download goes on with once the files are there (models.ts's commands). */
export interface ModelActions {
  trusted(): boolean;
  find(quiet: boolean): Promise<FoundModel[] | undefined>;
  check(opts: ModelCheckOptions): Promise<CheckResult>;
  applySpec(spec: ModelSpec, label: string, target: SettingsTarget | undefined, registryId?: string): Promise<boolean>;
}

/** The models MajicFLUX can download: models/registry.json, bundled (the server plans downloads from the same data). */
function bundledModels(): ModelChoice[] {
  try {
    return modelChoices(parseRegistry(bundledRegistry));
  } catch (err) {
    throw new Error(t('The list of known models ({0}) cannot be read: {1}', 'models/registry.json', errorMessage(err)), { cause: err });
  }
}

/** The steps and guidance a registry model works best with (none when the registry cannot be read). */
export function registryDefaults(id: string): ModelChoice['defaults'] {
  try {
    return bundledModels().find((c) => c.id === id)?.defaults;
  } catch {
    return undefined;
  }
}

export class ModelDownloads {
  constructor(
    private readonly d: ModelsDeps,
    private readonly view: ModelsView,
    private readonly token: HfToken,
    private readonly models: ModelActions,
  ) {}

  private get settings() {
    return this.d.config.settings;
  }

  async download(args: DownloadArgs): Promise<DownloadResult | undefined> {
    if (!this.models.trusted()) return undefined;
    let choices: ModelChoice[];
    try {
      choices = bundledModels();
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

  private async runDownload(p: Planned): Promise<DownloadResult | undefined> {
    const auth = await this.token.forDownload(p.hub, p.choice.name);
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
    if (this.view.found !== undefined || !remote) void this.models.find(true);
    const use = t('Use This Model');
    const check = t('Check');
    void vscode.window.showInformationMessage(t('MajicFLUX: {0} is downloaded and verified.', p.choice.name), use, check).then(async (c) => {
      if (c === use) await this.models.applySpec(result.spec, p.choice.name, undefined, p.choice.id);
      if (c === check) await this.models.check({ spec: result.spec });
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
          if (await this.token.ask(p.hub.licenceUrl, p.choice.name)) await this.runDownload(p);
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
