// Runs in a workspace that is NOT trusted: .flux files are highlighted and checked, nothing runs.

import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as vscode from 'vscode';
import type { MajicfluxApi } from '../../../src/extension/extension';
import { waitFor } from './waitFor';

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

  it('keeps every command enabled, so a key or the palette reaches it and it can say why it refuses (issue 15 item 6)', () => {
    const pkg = vscode.extensions.getExtension('majicflux.majicflux')!.packageJSON as { contributes: { commands: { command: string; enablement?: string }[]; keybindings: { command: string; when?: string }[] } };
    const gated = pkg.contributes.commands.filter((c) => c.enablement?.includes('isWorkspaceTrusted')).map((c) => c.command);
    assert.deepEqual(gated, []);
    assert.ok(pkg.contributes.keybindings.some((k) => k.command === 'majicflux.generateFromSelection' && !k.when?.includes('isWorkspaceTrusted')));
  });

  it('Generate from Selection (Ctrl+Alt+G), Generate Image and Re-run each say why, offering Manage Workspace Trust (issue 15 item 6)', async () => {
    const editor = await vscode.window.showTextDocument(await vscode.workspace.openTextDocument(path.join(ws(), 'notes.md')));
    editor.selection = new vscode.Selection(2, 0, 2, 20);
    const before = api.trustRefusals.length;
    assert.equal(await vscode.commands.executeCommand('majicflux.generateFromSelection'), undefined);
    assert.equal(await vscode.commands.executeCommand('majicflux.generate', 'a cat'), undefined);
    assert.equal(await vscode.commands.executeCommand('majicflux.rerunFromImage', vscode.Uri.file(path.join(ws(), 'any.png')), 'same'), undefined);
    const said = api.trustRefusals.slice(before);
    assert.equal(said.length, 3, JSON.stringify(said));
    for (const m of said) assert.match(m, /trusted workspace/);
  });

  it('Generate All on a .flux file of several blocks says why once, before any block, and queues none', async () => {
    const doc = await vscode.workspace.openTextDocument(path.join(ws(), 'prompts.flux'));
    await vscode.window.showTextDocument(doc);
    const before = api.trustRefusals.length;
    assert.equal(await vscode.commands.executeCommand('majicflux.generateFluxFile', doc.uri.toString()), undefined);
    const said = api.trustRefusals.slice(before);
    assert.equal(said.length, 1, JSON.stringify(said));
    assert.match(said[0], /trusted workspace/);
    assert.equal(api.jobs.all().length, 0);
  });

  it('the panel works in restricted mode: it lists LoRAs and takes an input image; Generate is refused (issue 13)', async () => {
    await vscode.commands.executeCommand('majicflux.openPanel');
    const panel = (await waitFor('the panel', () => api.panel()))!;
    await waitFor('the webview to say ready', () => panel.received.includes('ready'));
    await waitFor('the LoRA list', () => panel.sent.has('loras'));
    const image = path.join(ws(), 'input.png');
    // A 64×64 PNG (a 1×1 one is refused: an input image needs 16 px a side).
    fs.copyFileSync(path.join(ws(), 'forge-size-1000.png'), image);
    try {
      assert.equal(await panel.vary(image), true);
      assert.equal(panel.inputImage, image);
    } finally {
      fs.rmSync(image);
    }
    const before = api.trustRefusals.length;
    panel.fromWebview({ type: 'generate', params: { prompt: 'a cat', seed: 1, steps: 2, width: 64, height: 64, guidance: 3.5, trueCfgScale: 2, negativePrompt: 'dogs' } });
    await waitFor('the refusal', () => api.trustRefusals.length > before);
    assert.match(api.trustRefusals.at(-1)!, /trusted workspace/);
    panel.dispose();
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
