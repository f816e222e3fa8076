// Issue 13 in a real VS Code: a `.flux` block with `image:` and `lora:` generates through its
// CodeLens command with the files resolved beside the .flux file, and a missing LoRA is a
// diagnostic naming the paths tried. Runs after editor.test.ts (same extension host and server).

import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as vscode from 'vscode';
import type { MajicfluxApi } from '../../../src/extension/extension';
import type { RunResult } from '../../../src/extension/generation';
import { blockKey } from '../../../src/extension/history';
import { readPngParameters } from '../../../src/inference/formats/png';

const ws = () => vscode.workspace.workspaceFolders![0].uri.fsPath;

describe('MajicFLUX in a real VS Code: .flux image: and lora: (issue 13)', function () {
  let api: MajicfluxApi;
  let cases: string;

  before(async () => {
    api = await vscode.extensions.getExtension<MajicfluxApi>('majicflux.majicflux')!.activate();
    // The workspace's model is the golden tiny one; its LoRA and image fixtures sit beside it.
    cases = path.join(vscode.workspace.getConfiguration('majicflux').get<string>('model.path')!, '..', 'cases');
  });

  it('a block with image:, strength:, lora: and a negative prompt with cfg: generates from its CodeLens; the request and the PNG carry them', async () => {
    const dir = path.join(ws(), 'img2img');
    fs.mkdirSync(path.join(dir, 'loras'), { recursive: true });
    fs.copyFileSync(path.join(cases, 'pipeline-1.png'), path.join(dir, 'start.png'));
    fs.copyFileSync(path.join(cases, 'lora-kohya-dit.safetensors'), path.join(dir, 'loras', 'style.safetensors'));
    const prompt = 'a lighthouse in the fog';
    const file = path.join(dir, 'vary.flux');
    fs.writeFileSync(file, `${prompt}\nimage: start.png\nstrength: 0.5\nlora: loras/style.safetensors:0.8\nnegative: blurry\ncfg: 2\nwidth: 128\nheight: 192\nsteps: 2\nseed: 5\n`);
    const document = await vscode.workspace.openTextDocument(file);
    await vscode.window.showTextDocument(document);
    const diagnostics = await api.flux.diagnostics.update(document);
    assert.deepEqual(diagnostics.filter((d) => d.severity === vscode.DiagnosticSeverity.Error).map((d) => d.message), []);

    // What the block's CodeLens runs.
    const runs = await vscode.commands.executeCommand<RunResult[]>('majicflux.generateFluxBlock', document.uri.toString(), blockKey(prompt));
    const [job] = await runs[0].finished;
    assert.equal(job.state, 'done', job.error?.message);
    const sent = job.request.params;
    assert.equal(sent.image, path.join(dir, 'start.png'), 'the image, relative to the .flux file');
    assert.equal(sent.strength, 0.5);
    assert.deepEqual(sent.loras, [{ path: path.join(dir, 'loras', 'style.safetensors'), strength: 0.8 }]);
    assert.equal(sent.negativePrompt, 'blurry');
    assert.equal(sent.trueCfgScale, 2);

    const png = await readPngParameters(job.result!.file);
    assert.equal(png.json?.negativePrompt, 'blurry');
    assert.equal(png.json?.trueCfgScale, 2);
    assert.match(png.parameters ?? '', /\nNegative prompt: blurry\n.*CFG scale: 2,/);
  });

  it('a LoRA that is not there is an error on its line naming every path tried, and the block does not run', async () => {
    const dir = path.join(ws(), 'img2img');
    fs.mkdirSync(dir, { recursive: true });
    const file = path.join(dir, 'missing.flux');
    fs.writeFileSync(file, 'a cat\nlora: nowhere.safetensors:0.5\nwidth: 64\nheight: 64\nsteps: 1\n');
    const document = await vscode.workspace.openTextDocument(file);
    const diagnostics = await api.flux.diagnostics.update(document);
    const missing = diagnostics.filter((d) => d.code === 'missingFile');
    assert.equal(missing.length, 1, diagnostics.map((d) => d.message).join('\n'));
    assert.equal(missing[0].range.start.line, 1);
    assert.equal(missing[0].severity, vscode.DiagnosticSeverity.Error);
    assert.ok(missing[0].message.includes(path.join(dir, 'nowhere.safetensors')), missing[0].message);
    const before = api.jobs.active().length;
    const runs = await vscode.commands.executeCommand<RunResult[] | undefined>('majicflux.generateFluxFile', document.uri.toString());
    assert.equal(runs, undefined, 'refused before anything starts');
    assert.equal(api.jobs.active().length, before);
  });
});
