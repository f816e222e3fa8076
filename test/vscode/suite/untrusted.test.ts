// Runs in a workspace that is NOT trusted: .flux files are highlighted and checked, nothing runs.

import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as vscode from 'vscode';
import type { MajicfluxApi } from '../../../src/extension/extension';

const ws = () => vscode.workspace.workspaceFolders![0].uri.fsPath;

describe('MajicFLUX in an untrusted workspace', () => {
  let api: MajicfluxApi;
  before(async () => {
    api = await vscode.extensions.getExtension<MajicfluxApi>('majicflux.majicflux')!.activate();
  });

  it('is in restricted mode', () => {
    assert.equal(vscode.workspace.isTrusted, false);
  });

  it('still checks .flux files, and its CodeLens asks for trust instead of generating', async () => {
    const doc = await vscode.workspace.openTextDocument(path.join(ws(), 'bad.flux'));
    await vscode.window.showTextDocument(doc);
    const diags = await api.flux.diagnostics.update(doc);
    assert.ok(diags.some((d) => d.code === 'unknownKey'));
    const lenses = (await vscode.commands.executeCommand<vscode.CodeLens[]>('vscode.executeCodeLensProvider', doc.uri)) ?? [];
    assert.deepEqual(lenses.map((l) => l.command?.command), ['workbench.trust.manage']);
  });

  it('runs nothing: no server, no image', async () => {
    const editor = await vscode.window.showTextDocument(await vscode.workspace.openTextDocument(path.join(ws(), 'notes.md')));
    editor.selection = new vscode.Selection(2, 0, 2, 20);
    assert.equal(await vscode.commands.executeCommand('majicflux.generateFromSelection'), undefined);
    assert.equal(await vscode.commands.executeCommand('majicflux.generate', 'a cat'), undefined);
    assert.equal(api.jobs.all().length, 0);
    assert.equal(api.server.state, 'stopped');
    assert.equal(fs.existsSync(path.join(ws(), 'generated')), false);
  });
});
