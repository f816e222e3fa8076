// The command palette commands (category "MajicFLUX"). Each returns what it did, so tests and other
// extensions can await it.

import * as vscode from 'vscode';
import { Configuration } from './configuration';
import { activeDocument, Generation, GenerateInput, RunResult } from './generation';
import { FLUX_LANGUAGE } from './fluxFile/documents';
import { fluxSelectionInputs } from './fluxFile';
import { promptFacts } from './promptFacts';
import { isActive, Job, Jobs } from './jobs';
import { jobProgress } from './progress';
import { progressText } from './progressText';
import { ServerManager, TOKEN_SECRET } from './serverManager';
import { refuse } from './refusal';
import { requireTrust } from './trust';

const t = vscode.l10n.t;
const RECENT_KEY = 'majicflux.recentPrompts';
const MAX_RECENT = 20;
/** Typing pauses this long before the prompt is tokenized (well under a millisecond, but not per key). */
const PROMPT_CHECK_DELAY_MS = 150;
const NEW_PROMPT = () => t('new prompt');
export const FIRST_PROMPT = 'a lighthouse on a cliff at dawn, oil painting';

export interface CommandDeps {
  context: vscode.ExtensionContext;
  config: Configuration;
  jobs: Jobs;
  server: ServerManager;
  generation: Generation;
  log: vscode.LogOutputChannel;
  openPanel: (prefill?: GenerateInput) => void;
}

export function registerCommands(d: CommandDeps): void {
  const reg = (id: string, fn: (...args: never[]) => unknown) => d.context.subscriptions.push(vscode.commands.registerCommand(id, fn));
  reg('majicflux.generate', (prompt?: string) => generateImage(d, prompt));
  reg('majicflux.generateFromSelection', () => generateFromSelection(d));
  // The editor's context menu shows no category: this twin's title names MajicFLUX.
  reg('majicflux.generateFromSelectionMenu', () => generateFromSelection(d));
  reg('majicflux.openPanel', () => d.openPanel());
  reg('majicflux.cancel', () => cancel(d.jobs));
  reg('majicflux.showQueue', () => showQueue(d.jobs));
  reg('majicflux.restartServer', () => restartServer(d));
  reg('majicflux.showLog', () => d.log.show());
  reg('majicflux.generateFirstImage', () => generateFirstImage(d));
  reg('majicflux.newFluxFile', () => newFluxFile());
  reg('majicflux.setRemoteToken', () => setRemoteToken(d));
}

function remember(context: vscode.ExtensionContext, prompt: string): void {
  const recent = context.globalState.get<string[]>(RECENT_KEY, []).filter((p) => p !== prompt);
  void context.globalState.update(RECENT_KEY, [prompt, ...recent].slice(0, MAX_RECENT));
}

let openPromptPick: vscode.QuickPick<vscode.QuickPickItem> | undefined;

/** The prompt box while it is open (for tests: what it shows under a typed prompt). */
export function promptPick(): vscode.QuickPick<vscode.QuickPickItem> | undefined {
  return openPromptPick;
}

/**
 * Asks for a prompt: type a new one or pick one of the recent ones. A typed prompt the text
 * encoders will cut or cannot read says so under it, before anything is generated.
 */
function askPrompt(d: CommandDeps): Promise<string | undefined> {
  const context = d.context;
  const recent = context.globalState.get<string[]>(RECENT_KEY, []);
  return new Promise((resolve) => {
    const qp = vscode.window.createQuickPick();
    openPromptPick = qp;
    qp.title = t('MajicFLUX: Generate Image');
    qp.placeholder = recent.length ? t('Describe the image, or pick a recent prompt') : t('Describe the image, e.g. {0}', FIRST_PROMPT);
    qp.ignoreFocusOut = true;
    // Rows stay in our order: the typed text first, then the recent prompts newest first. Sorted by
    // label, a recent prompt the typed text equals but for a trailing space went first. (sortByLabel
    // is in the proposed API's typings only; the extension host has applied it, unchecked, for years.)
    (qp as typeof qp & { sortByLabel: boolean }).sortByLabel = false;
    const recentItems = recent.map((p) => ({ label: p, description: t('recent') }));
    qp.items = recentItems;
    let checking: NodeJS.Timeout | undefined;
    // The workbench filters the list and moves the highlight itself on every key, before this host
    // has put the typed text first: typed fast, Enter would take the recent prompt the filter left
    // highlighted. Until the typed text's own row has become the highlight, a move is the filter's;
    // after it, a move (arrows, a click) is the user's.
    let moved = false;
    let shown = true;
    qp.onDidChangeActive((active) => {
      if (shown) moved = true;
      else shown = active[0]?.description === NEW_PROMPT() && active[0].label === qp.value;
    });
    qp.onDidChangeValue((v) => {
      moved = false;
      shown = !v.trim();
      const rest = recentItems.filter((i) => i.label !== v);
      qp.items = v.trim() ? [{ label: v, description: NEW_PROMPT(), alwaysShow: true }, ...rest] : recentItems;
      clearTimeout(checking);
      if (!v.trim()) return;
      checking = setTimeout(() => {
        void promptFacts(v, d.config, context.extensionPath).then((facts) => {
          if (!facts.length || qp.value !== v) return;
          // New items move the highlight to the first: a recent prompt the user moved to stays highlighted.
          const chosen = moved ? qp.activeItems[0]?.label : undefined;
          const items = [{ label: v, description: NEW_PROMPT(), detail: facts.map((f) => `$(warning) ${f}`).join(' '), alwaysShow: true }, ...rest];
          qp.items = items;
          const again = items.find((i) => i.label === chosen);
          if (again) qp.activeItems = [again];
        });
      }, PROMPT_CHECK_DELAY_MS);
    });
    let done = false;
    qp.onDidAccept(() => {
      done = true;
      const typed = qp.value.trim();
      const picked = qp.selectedItems[0]?.label;
      resolve((typed && !moved ? typed : (picked ?? typed)) || undefined);
      qp.hide();
    });
    qp.onDidHide(() => {
      if (!done) resolve(undefined);
      if (openPromptPick === qp) openPromptPick = undefined;
      qp.dispose();
    });
    qp.show();
  });
}

async function generateImage(d: CommandDeps, given?: string): Promise<RunResult | undefined> {
  const document = activeDocument();
  const prompt = typeof given === 'string' && given.trim() ? given : await askPrompt(d);
  if (!prompt) return undefined;
  remember(d.context, prompt);
  return d.generation.run({ prompt }, { kind: 'palette', document }, { notify: true, open: true });
}

async function generateFromSelection(d: CommandDeps): Promise<RunResult | undefined> {
  const editor = vscode.window.activeTextEditor;
  // Selections come in the order the cursors were added: the prompt reads in the document's order.
  const selections = editor ? [...editor.selections].filter((s) => !s.isEmpty).sort((a, b) => a.start.compareTo(b.start)) : [];
  const text = editor ? selections.map((s) => editor.document.getText(s)).join('\n').trim() : '';
  if (!editor || !text) {
    void refuse(d.log, t('Select the text to use as the prompt first.'));
    return undefined;
  }
  // In a .flux file the selection may hold whole blocks, parameters included: each is one run.
  const isFlux = editor.document.languageId === FLUX_LANGUAGE;
  const blocks = isFlux ? fluxSelectionInputs(d.log, editor.document, text, selections[0].start.line) : [];
  if (!blocks) return undefined;
  const inputs: GenerateInput[] = blocks.length ? blocks : [{ prompt: text.replace(/\s+/g, ' ') }];
  const document = editor.document.uri.scheme === 'file' ? editor.document.uri.fsPath : undefined;
  const fluxFile = isFlux ? document : undefined;
  const runs: RunResult[] = [];
  for (const input of inputs) {
    remember(d.context, input.prompt);
    const run = await d.generation.run(input, { kind: 'selection', fluxFile, document }, { notify: true, open: true });
    if (!run) break;
    runs.push(run);
  }
  if (runs.length <= 1) return runs[0];
  return { jobs: runs.flatMap((r) => r.jobs), finished: Promise.all(runs.map((r) => r.finished)).then((done) => done.flat()) };
}

async function cancel(jobs: Jobs): Promise<number> {
  const active = jobs.active();
  if (!active.length) {
    void vscode.window.showInformationMessage(t('MajicFLUX: nothing is running.'));
    return 0;
  }
  if (active.length === 1) {
    await jobs.cancel(active[0].id);
    return 1;
  }
  const all = { label: t('$(close-all) Cancel all {0}', active.length), job: undefined as Job | undefined };
  const pick = await vscode.window.showQuickPick([all, ...active.map((j) => ({ label: jobLabel(j), description: jobState(j), job: j as Job | undefined }))], {
    title: t('Cancel which generation?'),
  });
  if (!pick) return 0;
  if (pick.job) {
    await jobs.cancel(pick.job.id);
    return 1;
  }
  await jobs.cancelAll();
  return active.length;
}

function jobLabel(j: Job): string {
  const p = j.request.params.prompt;
  return `${p.length > 60 ? `${p.slice(0, 59)}…` : p}`;
}

function jobState(j: Job): string {
  switch (j.state) {
    case 'pending': return t('waiting for the server');
    case 'queued': return t('queued');
    case 'running': return progressText(jobProgress(j)!);
    case 'done': return t('done');
    case 'failed': return t('failed: {0}', j.error?.message ?? '');
    case 'cancelled': return t('cancelled');
  }
}

async function showQueue(jobs: Jobs): Promise<void> {
  const list = [...jobs.active(), ...jobs.all().filter((j) => !isActive(j)).reverse().slice(0, 20)];
  if (!list.length) {
    void vscode.window.showInformationMessage(t('MajicFLUX: the queue is empty.'));
    return;
  }
  const icon = (j: Job) => (j.state === 'running' ? '$(sync~spin)' : isActive(j) ? '$(clock)' : j.state === 'done' ? '$(pass)' : j.state === 'failed' ? '$(error)' : '$(circle-slash)');
  const pick = await vscode.window.showQuickPick(
    list.map((j) => ({
      label: `${icon(j)} ${jobLabel(j)}`,
      description: jobState(j),
      detail: t('seed {0} · {1} steps · {2}×{3}', j.request.params.seed ?? '?', j.request.params.steps ?? '?', j.request.params.width ?? '?', j.request.params.height ?? '?'),
      job: j,
    })),
    { title: t('MajicFLUX queue'), placeHolder: t('Pick a job: cancel it if it is waiting or running, open it if it is done') },
  );
  if (!pick) return;
  const j = pick.job;
  if (isActive(j)) {
    const yes = t('Cancel It');
    if ((await vscode.window.showWarningMessage(t('Cancel "{0}"?', jobLabel(j)), yes)) === yes) await jobs.cancel(j.id);
  } else if (j.state === 'done' && j.result) {
    await vscode.commands.executeCommand('vscode.open', vscode.Uri.file(j.result.file));
  }
}

async function restartServer(d: CommandDeps): Promise<void> {
  if (!requireTrust()) return;
  const n = d.jobs.active().length;
  if (n) {
    const yes = t('Restart');
    if ((await vscode.window.showWarningMessage(t('{0} generation(s) are queued or running; restarting cancels them.', n), { modal: true }, yes)) !== yes) return;
    await d.jobs.cancelAll();
  } else if (d.server.held) {
    const yes = t('Restart');
    const msg = t('A model download or check is running; restarting stops it (a download resumes when started again).');
    if ((await vscode.window.showWarningMessage(msg, { modal: true }, yes)) !== yes) return;
  }
  await vscode.window.withProgress({ location: vscode.ProgressLocation.Notification, title: t('Restarting the MajicFLUX server…') }, () => d.server.restart());
}

async function generateFirstImage(d: CommandDeps): Promise<RunResult | undefined> {
  // The demo model's images are noise at any size: keep its first run short (≈ 8 s on 2 CPU cores).
  const input: GenerateInput = d.generation.usingDemo ? { prompt: FIRST_PROMPT, width: 512, height: 512, steps: 8 } : { prompt: FIRST_PROMPT };
  return d.generation.run(input, { kind: 'walkthrough' }, { notify: true, open: true });
}

const SAMPLE_FLUX = `# A MajicFLUX prompt file: one block per image idea, separated by blank lines.
# Parameters before the first prompt are defaults for the whole file.
steps: 28
width: 1024
height: 768

a lighthouse on a cliff at dawn,
oil painting, dramatic clouds, warm light
seed: 42

a red fox in fresh snow, telephoto, shallow depth of field
seed: random
count: 2
`;

async function newFluxFile(): Promise<vscode.TextEditor> {
  const doc = await vscode.workspace.openTextDocument({ language: FLUX_LANGUAGE, content: SAMPLE_FLUX });
  return vscode.window.showTextDocument(doc);
}

async function setRemoteToken(d: CommandDeps): Promise<void> {
  const token = await vscode.window.showInputBox({
    title: t('MajicFLUX remote server token'),
    prompt: t('The token printed by `majicflux serve` on the GPU machine. Empty clears it.'),
    password: true,
    ignoreFocusOut: true,
  });
  if (token === undefined) return;
  if (token) await d.context.secrets.store(TOKEN_SECRET, token);
  else await d.context.secrets.delete(TOKEN_SECRET);
  if (d.server.isRemote) await d.server.stop();
}
