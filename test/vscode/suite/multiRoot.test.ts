// A multi-root workspace (scripts/vscode-test.mjs makeMultiRoot): `workspace/` first, `second/`
// with its own majicflux.output.folder (art). Images go with the folder of the document a run
// comes from, under that folder's settings.

import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as vscode from 'vscode';
import type { MajicfluxApi } from '../../../src/extension/extension';
import type { RunResult } from '../../../src/extension/generation';

const folder = (i: number) => vscode.workspace.workspaceFolders![i].uri.fsPath;

async function finished(run: RunResult | undefined) {
  assert.ok(run, 'a run started');
  const jobs = await run.finished;
  for (const j of jobs) assert.equal(j.state, 'done', j.error?.message);
  return jobs;
}

describe('MajicFLUX in a multi-root workspace', function () {
  before(async () => {
    await vscode.extensions.getExtension<MajicfluxApi>('majicflux.majicflux')!.activate();
  });

  it('is one', () => {
    assert.equal(vscode.workspace.workspaceFolders?.length, 2);
    assert.equal(path.basename(folder(1)), 'second');
  });

  it('Generate from Selection in the second folder writes there, under that folder\'s output folder (was: the first folder\'s generated/)', async () => {
    const editor = await vscode.window.showTextDocument(await vscode.workspace.openTextDocument(path.join(folder(1), 'notes.md')));
    editor.selection = new vscode.Selection(2, 0, 2, 30);
    const [job] = await finished(await vscode.commands.executeCommand<RunResult>('majicflux.generateFromSelection'));
    assert.equal(path.dirname(job.result!.file), path.join(folder(1), 'art'));
    assert.equal(fs.existsSync(path.join(folder(0), 'generated')), false, 'nothing in the first folder');
    await vscode.commands.executeCommand('workbench.action.closeAllEditors');
  });

  it('Generate from Selection in the first folder writes into the first folder\'s generated/', async () => {
    const editor = await vscode.window.showTextDocument(await vscode.workspace.openTextDocument(path.join(folder(0), 'notes.md')));
    editor.selection = new vscode.Selection(2, 0, 2, 20);
    const [job] = await finished(await vscode.commands.executeCommand<RunResult>('majicflux.generateFromSelection'));
    assert.equal(path.dirname(job.result!.file), path.join(folder(0), 'generated'));
    await vscode.commands.executeCommand('workbench.action.closeAllEditors');
  });

  it('a .flux CodeLens run in the second folder writes beside the .flux file, under that folder\'s output folder', async () => {
    const file = path.join(folder(1), 'ideas.flux');
    fs.writeFileSync(file, 'a tin robot watering plants\n');
    const document = await vscode.workspace.openTextDocument(file);
    const runs = await vscode.commands.executeCommand<RunResult[]>('majicflux.generateFluxFile', document.uri.toString());
    const [job] = await finished(runs[0]);
    assert.equal(path.dirname(job.result!.file), path.join(folder(1), 'art'));
  });

  it('a re-run of a PNG of the second folder, from the first folder\'s document, writes into the second folder', async () => {
    await vscode.window.showTextDocument(await vscode.workspace.openTextDocument(path.join(folder(0), 'notes.md')));
    const png = fs.readdirSync(path.join(folder(1), 'art')).find((f) => f.endsWith('.png'))!;
    const run = await vscode.commands.executeCommand<RunResult>('majicflux.rerunFromImage', vscode.Uri.file(path.join(folder(1), 'art', png)), 'new');
    const [job] = await finished(run);
    assert.equal(path.dirname(job.result!.file), path.join(folder(1), 'art'));
    await vscode.commands.executeCommand('workbench.action.closeAllEditors');
  });

  it('Generate Image from the palette, a document of the second folder open, writes into the second folder', async () => {
    await vscode.window.showTextDocument(await vscode.workspace.openTextDocument(path.join(folder(1), 'notes.md')));
    const [job] = await finished(await vscode.commands.executeCommand<RunResult>('majicflux.generate', 'a paper crane on a desk'));
    assert.equal(path.dirname(job.result!.file), path.join(folder(1), 'art'));
    await vscode.commands.executeCommand('workbench.action.closeAllEditors');
  });
});
