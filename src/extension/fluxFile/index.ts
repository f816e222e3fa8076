// The .flux language features and the commands their CodeLens run.

import * as path from 'node:path';
import * as vscode from 'vscode';
import { Configuration } from '../configuration';
import { Generation, GenerateInput, RunResult } from '../generation';
import { blockKey, History } from '../history';
import { Jobs } from '../jobs';
import { fluxProblemMessage, missingInputMessage } from '../messages';
import { refuse } from '../refusal';
import { FluxCodeActions } from './codeActions';
import { FluxCodeLens } from './codeLens';
import { FluxCompletion } from './completion';
import { FluxDiagnostics } from './diagnostics';
import { FLUX_LANGUAGE, fluxFileKey, fluxFolder, loraFolder, parsed } from './documents';
import { resolveInputs } from './inputs';
import { FluxHover } from './hover';
import { effectiveValues, FluxBlock, FluxDocument, parseFlux } from './parser';

const t = vscode.l10n.t;

export interface FluxFeatures {
  diagnostics: FluxDiagnostics;
  codeLens: FluxCodeLens;
}

export function registerFluxFile(
  context: vscode.ExtensionContext,
  deps: { config: Configuration; jobs: Jobs; history: History; generation: Generation; log: vscode.LogOutputChannel },
): FluxFeatures {
  const selector: vscode.DocumentSelector = { language: FLUX_LANGUAGE };
  const diagnostics = new FluxDiagnostics(context.extensionPath, deps.config, deps.log);
  const codeLens = new FluxCodeLens(deps.jobs, deps.history);
  context.subscriptions.push(
    diagnostics,
    codeLens,
    vscode.languages.registerCodeLensProvider(selector, codeLens),
    vscode.languages.registerHoverProvider(selector, new FluxHover(deps.history, deps.config)),
    vscode.languages.registerCompletionItemProvider(selector, new FluxCompletion(), ...FluxCompletion.triggers),
    vscode.languages.registerCodeActionsProvider(selector, new FluxCodeActions(), { providedCodeActionKinds: FluxCodeActions.kinds }),
    vscode.commands.registerCommand('majicflux.generateFluxBlock', (uri?: string, key?: string) => generateBlocks(deps, uri, key)),
    vscode.commands.registerCommand('majicflux.generateFluxFile', (uri?: string | vscode.Uri) => generateBlocks(deps, uri ? String(uri) : undefined)),
    vscode.commands.registerCommand('majicflux.openFluxImages', (uri: string, key: string) => openImages(deps.history, uri, key)),
    vscode.commands.registerCommand('majicflux.cancelFluxBlock', async (uri: string, key: string) => {
      const document = await findDocument(uri);
      if (!document) return;
      const file = fluxFileKey(document);
      for (const j of deps.jobs.active()) if (j.origin.fluxFile === file && j.origin.blockKey === key) await deps.jobs.cancel(j.id);
    }),
  );
  return { diagnostics, codeLens };
}

async function findDocument(uri: string | undefined): Promise<vscode.TextDocument | undefined> {
  if (!uri) {
    const doc = vscode.window.activeTextEditor?.document;
    return doc?.languageId === FLUX_LANGUAGE ? doc : undefined;
  }
  return vscode.workspace.textDocuments.find((d) => d.uri.toString() === uri) ?? vscode.workspace.openTextDocument(vscode.Uri.parse(uri));
}

/** `firstLine`: where `doc`'s text starts in the document (a selection's first line), for the line numbers. */
function blockErrors(doc: FluxDocument, block: FluxBlock | undefined, firstLine = 0): string[] {
  const inDefaults = (line: number) => doc.defaults.spans.some((s) => s.start.line <= line && line <= s.end.line);
  return doc.problems
    .filter((p) => p.severity === 'error')
    .filter((p) => (block && block.span.start.line <= p.span.start.line && p.span.start.line <= block.span.end.line) || inDefaults(p.span.start.line))
    .map((p) => `${t('line {0}', firstLine + p.span.start.line + 1)}: ${fluxProblemMessage(p)}`);
}

function refuseBlock(log: vscode.LogOutputChannel, document: vscode.TextDocument, problem: string, showProblems: boolean): undefined {
  const show = t('Show Problems');
  const buttons = showProblems ? [show] : [];
  void refuse(log, t('Fix the problems in {0} first: {1}', path.basename(document.fileName), problem), { error: true, buttons }).then((c) => {
    if (c) void vscode.commands.executeCommand('workbench.actions.view.problems');
  });
  return undefined;
}

/**
 * Generate from Selection in a .flux document: each prompt block the selected text holds, over the
 * file's defaults, checked and with its `image:`/`lora:` files found as a CodeLens run is — a bad
 * value refuses rather than silently running with the default in its place. [] when the text holds
 * no prompt block (nor parameters); undefined when refused (the user was told why).
 */
export function fluxSelectionInputs(log: vscode.LogOutputChannel, document: vscode.TextDocument, text: string, firstLine: number): GenerateInput[] | undefined {
  const selection = parseFlux(text);
  if (!selection.blocks.length && selection.defaults.params.length) {
    // Only parameter lines: they would otherwise become the prompt's words ("seed: 5").
    void refuse(log, t('The selection holds parameters but no prompt: select the prompt lines too.'));
    return undefined;
  }
  if (!selection.blocks.length) return [];
  const file = parsed(document);
  const errors = [...blockErrors(file, undefined), ...selection.blocks.flatMap((b) => blockErrors(selection, b, firstLine))];
  if (errors.length) return refuseBlock(log, document, errors[0], true);
  const own = selection.blocks.map((b) => ({ ...b, values: effectiveValues(selection, b, {}) }));
  const resolved = own.map((b) => resolveInputs(effectiveValues(file, b, {}), fluxFolder(document), loraFolder()));
  const missing = resolved.flatMap((r) => r.missing);
  if (missing.length) return refuseBlock(log, document, missingInputMessage(missing[0]), false);
  return resolved.map((r, i) => ({ ...r.values, prompt: own[i].prompt }));
}

/** Generates one block (by key) or every block of a .flux document; resolves with the runs. */
async function generateBlocks(
  deps: { jobs: Jobs; generation: Generation; log: vscode.LogOutputChannel },
  uri: string | undefined,
  key?: string,
): Promise<RunResult[] | undefined> {
  const document = await findDocument(uri);
  if (!document) {
    void refuse(deps.log, t('Open a .flux file to generate from it.'));
    return undefined;
  }
  const doc = parsed(document);
  const blocks = key === undefined ? doc.blocks : doc.blocks.filter((b) => blockKey(b.prompt) === key);
  if (!blocks.length) {
    void refuse(deps.log, key === undefined ? t('This file has no prompt blocks.') : t('That block has changed; run it again from its CodeLens.'));
    return undefined;
  }
  const errors = blocks.flatMap((b) => blockErrors(doc, b));
  if (errors.length) return refuseBlock(deps.log, document, errors[0], true);
  // image: and lora: files, resolved now: a missing one is said before anything starts.
  const dir = fluxFolder(document);
  const loras = loraFolder();
  const resolved = blocks.map((b) => resolveInputs(effectiveValues(doc, b, {}), dir, loras));
  const missing = resolved.flatMap((r) => r.missing);
  if (missing.length) return refuseBlock(deps.log, document, missingInputMessage(missing[0]), false);
  // What the server would refuse (an image: that is no image, a LoRA that is a checkpoint) in any
  // block, said before the first one starts rather than after it has taken minutes.
  for (const [i, block] of blocks.entries()) if (await deps.generation.refuses({ ...resolved[i].values, prompt: block.prompt })) return undefined;
  const runs: RunResult[] = [];
  for (const [i, block] of blocks.entries()) {
    const values = resolved[i].values;
    const run = await deps.generation.run(
      { ...values, prompt: block.prompt },
      { kind: 'flux', fluxFile: fluxFileKey(document), blockKey: blockKey(block.prompt) },
      { notify: true },
    );
    if (!run) break;
    runs.push(run);
  }
  return runs;
}

async function openImages(history: History, uri: string, key: string): Promise<void> {
  const document = await findDocument(uri);
  if (!document) return;
  const images = history.forBlock(fluxFileKey(document), key);
  if (!images.length) return;
  if (images.length === 1) {
    await vscode.commands.executeCommand('vscode.open', vscode.Uri.file(images[0].file));
    return;
  }
  const all = { label: t('$(files) Open all {0}', images.length), file: undefined as string | undefined };
  const items = [
    all,
    ...images.map((e) => ({
      label: `$(file-media) ${path.basename(e.file)}`,
      description: t('seed {0} · {1} steps · {2}×{3}', e.params.seed, e.params.steps, e.params.width, e.params.height),
      detail: new Date(e.created).toLocaleString(),
      file: e.file as string | undefined,
    })),
  ];
  const pick = await vscode.window.showQuickPick(items, { title: t('Images of this block'), matchOnDescription: true });
  if (!pick) return;
  const files = pick.file ? [pick.file] : images.map((e) => e.file);
  for (const f of files) await vscode.commands.executeCommand('vscode.open', vscode.Uri.file(f), { preview: files.length === 1 });
}
