// The Hugging Face access token: asked for in a password box, kept in VS Code's secret storage
// (never in settings or logs), and sent to a mirror endpoint only once the user agreed for that
// host. Downloads and the Set/Clear Hugging Face Token commands use it.

import * as vscode from 'vscode';
import type { ModelsDeps } from './models';
import { HF_TOKENS_URL, hubHost, HubChoice, usesMirror } from './modelDownload';
import { HF_TOKEN_SECRET } from './serverManager';

const t = vscode.l10n.t;

const MIRROR_OK_KEY = 'majicflux.tokenMirrorsAllowed';

export class HfToken {
  constructor(private readonly d: ModelsDeps) {}

  private get settings() {
    return this.d.config.settings;
  }

  /** The token for a download from `hub`: from secret storage, else asked for when the repository is gated; undefined when the user backed out. */
  async forDownload(hub: HubChoice, modelName: string): Promise<{ token?: string } | undefined> {
    if (hub.hub !== 'huggingface') return {};
    let token = await this.d.context.secrets.get(HF_TOKEN_SECRET);
    if (!token && hub.needsLogin) {
      token = await this.ask(hub.licenceUrl, modelName);
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
  ask(licenceUrl?: string, modelName?: string): Promise<string | undefined> {
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
  async set(): Promise<boolean> {
    const token = await this.ask();
    if (token) void vscode.window.showInformationMessage(t('MajicFLUX: the Hugging Face token is stored in VS Code\'s secret storage.'));
    return !!token;
  }

  async clear(): Promise<void> {
    await this.d.context.secrets.delete(HF_TOKEN_SECRET);
    this.d.log.info('the Hugging Face token was removed from secret storage');
    void vscode.window.showInformationMessage(t('MajicFLUX: the Hugging Face token is removed.'));
  }
}
