// Entry point: wires the parts together and registers them. Nothing here loads a model; the server
// starts with the first image.

import * as path from 'node:path';
import * as vscode from 'vscode';
import { promptPick, registerCommands } from './commands';
import { Configuration } from './configuration';
import { registerFluxFile } from './fluxFile';
import { Generation, GenerateInput } from './generation';
import { History } from './history';
import { Jobs } from './jobs';
import { ModelsApi, registerModels } from './models';
import { DroppedCleanup } from './panel/droppedCleanup';
import { GenerationPanel, PANEL_VIEW_TYPE, PanelDeps, panelInputImage } from './panel/panel';
import { PngRerun } from './pngRerun';
import { RemoteSaver } from './remoteSave';
import { missingNotices } from './recordedInput';
import { ServerManager } from './serverManager';
import { StatusBar } from './statusBar';
import { trustRefusals } from './trust';
import { varyImage } from './varyImage';

/** What activate returns: for integration tests and other extensions. */
export interface MajicfluxApi {
  jobs: Jobs;
  history: History;
  server: ServerManager;
  statusBar: StatusBar;
  flux: ReturnType<typeof registerFluxFile>;
  models: ModelsApi;
  panel(): GenerationPanel | undefined;
  /** Refusals shown in an untrusted workspace (trust.ts). */
  trustRefusals: readonly string[];
  /** The palette's prompt box while it is open. */
  promptPick(): vscode.QuickPick<vscode.QuickPickItem> | undefined;
  /** The images dropped on the panel, kept and pruned. */
  dropped: DroppedCleanup;
  /** Warnings about a recorded image's files not found (recordedInput.ts), oldest first. */
  missingNotices: readonly string[];
  /** "Saved …" messages that carried a job's warnings (generation.ts), oldest first. */
  announcedWarnings: readonly string[];
  /** Re-runs refused for want of parameters (pngRerun.ts), oldest first. */
  rerunNotices: readonly string[];
  /** The folder of the LogOutputChannel's file (for tests: what was logged). */
  logUri: vscode.Uri;
}

let running: ServerManager | undefined;

export function activate(context: vscode.ExtensionContext): MajicfluxApi {
  const log = vscode.window.createOutputChannel('MajicFLUX', { log: true });
  const config = new Configuration(log);
  const server = new ServerManager(context, config, log);
  running = server;
  const saver = new RemoteSaver(log);
  const jobs = new Jobs({ client: () => server.get(), log, saveImage: (job, png, signal) => saver.save(job.target ?? job.request.output, png, signal) });
  server.attach(jobs);
  const history = new History(context.workspaceState);
  // Temp files of a save the last window was closed in the middle of (remote server images).
  for (const dir of new Set(history.list().map((e) => path.dirname(e.file)))) void saver.sweep(dir);
  const generation = new Generation(config, jobs, history, server, log);
  const statusBar = new StatusBar(server, jobs, config);
  const dropped = new DroppedCleanup({ context, history, jobs, log, inputImage: () => panelInputImage(context.workspaceState) });
  const panelDeps: PanelDeps = { extensionUri: context.extensionUri, dropped, workspaceState: context.workspaceState, config, jobs, history, generation, log };
  const openPanel = (prefill?: GenerateInput) => void GenerationPanel.show(panelDeps, prefill);

  context.subscriptions.push(log, config, server, statusBar, { dispose: () => jobs.dispose() }, { dispose: () => history.dispose() });
  registerCommands({ context, config, jobs, server, generation, log, openPanel });
  const models = registerModels({ context, config, server, log });
  const flux = registerFluxFile(context, { config, jobs, history, generation, log });
  const pngRerun = new PngRerun(generation, history, openPanel, { config, log, dropped });
  context.subscriptions.push(
    pngRerun,
    vscode.commands.registerCommand('majicflux.varyImage', (uri?: vscode.Uri) => varyImage(panelDeps, uri)),
    vscode.window.registerWebviewPanelSerializer(PANEL_VIEW_TYPE, {
      async deserializeWebviewPanel(panel) {
        GenerationPanel.revive(panel, panelDeps);
      },
    }),
    { dispose: () => GenerationPanel.current?.dispose() },
  );
  config.report();
  log.info(`MajicFLUX activated (workspace ${vscode.workspace.isTrusted ? 'trusted' : 'not trusted: nothing runs until it is'})`);
  return { jobs, history, server, statusBar, flux, models, panel: () => GenerationPanel.current, trustRefusals, promptPick, dropped, missingNotices, announcedWarnings: generation.announcedWarnings, rerunNotices: pngRerun.notices, logUri: context.logUri };
}

/** Shuts the server down gracefully (VS Code waits for this before ending the extension host). */
export function deactivate(): Promise<void> | undefined {
  const s = running;
  running = undefined;
  return s?.stop();
}
