// Owns the inference server's client: started on the first job (never at activation), stopped after
// `majicflux.server.idleShutdownMinutes` without work, restarted when server settings change.

import * as path from 'node:path';
import * as vscode from 'vscode';
import type { ServerSettings } from '../shared/protocol';
import { Configuration } from './configuration';
import { Emitter, errorMessage, InferenceClient, Jobs } from './jobs';
import { ServerClient } from './serverClient';
import { serverKey, serverSettings, Settings, usesDemoModel } from './settings';

export type ServerState = 'stopped' | 'starting' | 'ready';

export const TOKEN_SECRET = 'majicflux.remoteToken';
/** The Hugging Face access token (gated repositories such as FLUX.1-dev), in secret storage. */
export const HF_TOKEN_SECRET = 'majicflux.huggingface.token';

export class ServerManager implements vscode.Disposable {
  private client: ServerClient | undefined;
  private starting: Promise<ServerClient> | undefined;
  private key: string | undefined;
  private idleTimer: NodeJS.Timeout | undefined;
  private stateValue: ServerState = 'stopped';
  private readonly stateEmitter = new Emitter<ServerState>();
  readonly onDidChangeState = this.stateEmitter.event;
  private jobs: Jobs | undefined;
  /** Model checks and downloads in progress: the server is not stopped under them. */
  private holds = 0;
  private readonly disposables: vscode.Disposable[] = [];

  constructor(
    private readonly context: vscode.ExtensionContext,
    private readonly config: Configuration,
    private readonly log: vscode.LogOutputChannel,
  ) {
    this.disposables.push(config.onDidChange((s) => this.settingsChanged(s)));
  }

  /** The Jobs to watch for idleness (set once both exist). */
  attach(jobs: Jobs): void {
    this.jobs = jobs;
    this.disposables.push(jobs.onDidChange(() => this.armIdleTimer()));
  }

  get state(): ServerState {
    return this.stateValue;
  }

  get isRemote(): boolean {
    return !!this.config.settings.server.remoteHost;
  }

  private setState(s: ServerState): void {
    if (s === this.stateValue) return;
    this.stateValue = s;
    this.stateEmitter.fire(s);
  }

  /** The client, starting the server if needed. */
  get(): Promise<InferenceClient> {
    return this.client_();
  }

  /** The whole client (model search, check, download), starting the server if needed. */
  serverClient(): Promise<ServerClient> {
    return this.client_();
  }

  /** Model work (a check, a download) in progress: keeps the server from idle shutdown and settings restarts until it ends. */
  async hold<T>(work: () => PromiseLike<T>): Promise<T> {
    this.holds++;
    if (this.idleTimer) clearTimeout(this.idleTimer);
    this.idleTimer = undefined;
    try {
      return await work();
    } finally {
      this.holds--;
      this.armIdleTimer();
    }
  }

  /** How many checks or downloads hold the server. */
  get held(): number {
    return this.holds;
  }

  private client_(): Promise<ServerClient> {
    if (this.client && this.stateValue === 'ready') return Promise.resolve(this.client);
    if (this.client && !this.starting) {
      // The server stopped on its own (crash, killed): the client starts a new one; show it.
      const c = this.client;
      this.setState('starting');
      this.starting = c.start().then(
        () => {
          this.starting = undefined;
          if (this.client === c) this.setState('ready');
          return c;
        },
        (err: unknown) => {
          this.starting = undefined;
          this.setState('stopped');
          throw err;
        },
      );
    }
    if (!this.starting) {
      this.setState('starting');
      this.starting = this.create().then(
        (c) => {
          this.client = c;
          this.starting = undefined;
          this.setState('ready');
          return c;
        },
        (err: unknown) => {
          this.starting = undefined;
          this.setState('stopped');
          throw err;
        },
      );
    }
    return this.starting;
  }

  private async create(): Promise<ServerClient> {
    const s = this.config.settings;
    const settings = await this.resolveServerSettings(s);
    this.key = serverKey(s);
    const remote = s.server.remoteHost ? { host: s.server.remoteHost, port: s.server.remotePort, token: await this.remoteToken() } : undefined;
    this.log.info(remote ? `connecting to the MajicFLUX server at ${remote.host}:${remote.port}` : `starting the MajicFLUX server (${JSON.stringify(settings.model)})`);
    const client: ServerClient = new ServerClient({
      logger: this.log,
      serverPath: this.context.asAbsolutePath(path.join('dist', 'server.js')),
      remote,
      settings,
      clientName: `vscode-majicflux ${this.context.extension.packageJSON.version ?? ''}`.trim(),
      onDidStop: ({ unexpected, reason }) => {
        if (this.client !== client) return;
        if (unexpected) this.log.error(`the server stopped: ${reason}`);
        this.setState('stopped');
      },
    });
    try {
      await client.start();
    } catch (err) {
      await client.dispose().catch(() => undefined);
      throw err;
    }
    return client;
  }

  /** The demo model's weights are written by the server, on first use, into the extension's storage. */
  private async resolveServerSettings(s: Settings): Promise<ServerSettings> {
    const out = serverSettings(s);
    if (usesDemoModel(s)) out.model = { demo: this.context.globalStorageUri.fsPath };
    return out;
  }

  private async remoteToken(): Promise<string> {
    const token = await this.context.secrets.get(TOKEN_SECRET);
    if (token) return token;
    const entered = await vscode.window.showInputBox({
      title: vscode.l10n.t('MajicFLUX remote server token'),
      prompt: vscode.l10n.t('The token printed by `majicflux serve` on the GPU machine. It is kept in VS Code\'s secret storage.'),
      password: true,
      ignoreFocusOut: true,
    });
    if (!entered) throw new Error(vscode.l10n.t('A token is needed to use the remote server (majicflux.server.remoteHost).'));
    await this.context.secrets.store(TOKEN_SECRET, entered);
    return entered;
  }

  private settingsChanged(s: Settings): void {
    if (!this.client || serverKey(s) === this.key) {
      this.armIdleTimer();
      return;
    }
    if (this.jobs?.active().length || this.holds) {
      this.log.info('server settings changed; the server restarts when the queue is empty and no download or check runs');
      return; // armIdleTimer → stop when idle, the next job starts a fresh one
    }
    this.log.info('server settings changed; stopping the server (it restarts on the next job)');
    void this.stop();
  }

  private armIdleTimer(): void {
    if (this.idleTimer) clearTimeout(this.idleTimer);
    this.idleTimer = undefined;
    if (!this.client || this.jobs?.active().length || this.holds) return;
    if (this.key !== undefined && serverKey(this.config.settings) !== this.key) {
      void this.stop();
      return;
    }
    const minutes = this.config.settings.server.idleShutdownMinutes;
    if (minutes <= 0) return;
    this.idleTimer = setTimeout(() => {
      this.log.info(`no work for ${minutes} min; stopping the server to free its memory`);
      void this.stop();
    }, minutes * 60_000);
  }

  async restart(): Promise<void> {
    await this.stop();
    await this.get();
  }

  async stop(): Promise<void> {
    if (this.idleTimer) clearTimeout(this.idleTimer);
    this.idleTimer = undefined;
    const c = this.client ?? (await this.starting?.catch(() => undefined));
    this.client = undefined;
    this.starting = undefined;
    if (c) {
      try {
        await c.dispose();
      } catch (err) {
        this.log.warn(`stopping the server: ${errorMessage(err)}`);
      }
    }
    this.setState('stopped');
  }

  dispose(): void {
    void this.stop();
    this.stateEmitter.dispose();
    for (const d of this.disposables) d.dispose();
  }
}
