// Runs inside a real VS Code (code-server's Node extension host) against the real inference server
// and the golden tiny model (scripts/vscode-test.mjs sets majicflux.model.path to it).

import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as vscode from 'vscode';
import type { MajicfluxApi } from '../../../src/extension/extension';
import type { RunResult } from '../../../src/extension/generation';
import { blockKey } from '../../../src/extension/history';
import { insertChunks, iTXtChunk, readPngParameters } from '../../../src/inference/formats/png';
import { waitFor } from './waitFor';

const ws = () => vscode.workspace.workspaceFolders![0].uri.fsPath;
let api: MajicfluxApi;


async function open(rel: string): Promise<vscode.TextEditor> {
  const doc = await vscode.workspace.openTextDocument(path.join(ws(), rel));
  return vscode.window.showTextDocument(doc);
}

async function lensTitles(uri: vscode.Uri): Promise<string[]> {
  const lenses = (await vscode.commands.executeCommand<vscode.CodeLens[]>('vscode.executeCodeLensProvider', uri, 100)) ?? [];
  return lenses.map((l) => l.command?.title ?? '');
}

/** Is `file` open in an editor tab (the image preview is a custom editor)? */
const openInTab = (file: string) => vscode.window.tabGroups.all.some((g) => g.tabs.some((t) => t.input instanceof vscode.TabInputCustom && t.input.uri.fsPath === file));

async function finished(run: RunResult | undefined) {
  assert.ok(run, 'the command started a run');
  const jobs = await run.finished;
  for (const j of jobs) assert.equal(j.state, 'done', `${j.request.params.prompt}: ${j.state} ${j.error?.message ?? ''} ${j.error?.detail ?? ''}`);
  return jobs;
}

describe('MajicFLUX in a real VS Code', function () {
  before(async () => {
    const ext = vscode.extensions.getExtension<MajicfluxApi>('majicflux.majicflux');
    assert.ok(ext, 'the extension is installed');
    api = await ext.activate();
  });

  it('activates, registers its commands and shows a status bar item', async () => {
    const commands = await vscode.commands.getCommands(true);
    for (const c of ['generate', 'generateFromSelection', 'openPanel', 'cancel', 'showQueue', 'restartServer', 'showLog', 'checkModels', 'rerunFromImage', 'generateFluxFile']) {
      assert.ok(commands.includes(`majicflux.${c}`), `majicflux.${c} is registered`);
    }
    assert.match(api.statusBar.text, /MajicFLUX/);
    assert.equal(api.server.state, 'stopped', 'activation starts no server');
  });

  it('checks the configured model without loading it', async () => {
    const report = await vscode.commands.executeCommand<{ ok: boolean; demo: boolean; name?: string }>('majicflux.checkModels', true);
    assert.equal(report.ok, true);
    assert.equal(report.demo, false);
  });

  it('shows diagnostics for a bad block', async () => {
    const editor = await open('bad.flux');
    const uri = editor.document.uri;
    const diags = await waitFor('tokenizer diagnostics', () => {
      const d = vscode.languages.getDiagnostics(uri);
      return d.some((x) => x.code === 'clipTruncated') && d;
    });
    const byCode = (c: string) => diags.find((d) => d.code === c);
    assert.equal(byCode('unknownKey')?.range.start.line, 1);
    assert.match(byCode('unknownKey')!.message, /seed/);
    assert.equal(byCode('notMultipleOf16')?.range.start.line, 2);
    assert.match(byCode('notMultipleOf16')!.message, /1008/);
    assert.equal(byCode('t5Unreadable')?.range.start.line, 4);
    // An A1111 LoRA tag typed into the prompt: underlined on the tag, the message gives the lora: line to write.
    const tag = byCode('loraTagInPrompt');
    assert.ok(tag, diags.map((d) => d.code).join(', '));
    assert.equal(editor.document.getText(tag.range), '<lora:ink:0.7>');
    assert.match(tag.message, /"lora: ink\.safetensors:0\.7"/);
    // strength: in a block with no input image: a warning on the key.
    const strength = byCode('imageOptionWithoutImage');
    assert.ok(strength, diags.map((d) => d.code).join(', '));
    assert.equal(strength.range.start.line, 13);
    assert.equal(strength.severity, vscode.DiagnosticSeverity.Warning);
    assert.match(strength.message, /no input image: add "image: FILE"/);
    const cut = byCode('clipTruncated')!;
    assert.ok(cut.range.start.line >= 6 && cut.range.start.line <= 10, `CLIP cut at line ${cut.range.start.line}`);
    assert.ok(cut.range.end.line === 10, 'underlined to the end of the prompt');
    // Issue 15 item 8: the message says in words where the ignored part starts: the underlined text's first words.
    const underlined = editor.document.getText(cut.range);
    assert.match(underlined, /^word\d/);
    assert.ok(cut.message.includes(`ignores everything from "${underlined.split(/\s+/).slice(0, 4).join(' ')}…" on`), cut.message);
    // The quick fix offers the right key.
    const actions = await vscode.commands.executeCommand<vscode.CodeAction[]>('vscode.executeCodeActionProvider', uri, byCode('unknownKey')!.range);
    assert.ok(actions.some((a) => a.title.includes('"seed"')), actions.map((a) => a.title).join(', '));
  });

  it('shows CodeLens on a .flux file', async () => {
    const editor = await open('prompts.flux');
    const titles = await waitFor('CodeLens', async () => {
      const t = await lensTitles(editor.document.uri);
      return t.length >= 3 && t;
    });
    assert.ok(titles.includes('$(play) Generate all (2 blocks)'), titles.join(' | '));
    assert.ok(titles.includes('$(play) Generate'), titles.join(' | '));
    assert.ok(titles.includes('$(play) Generate 2 images'), titles.join(' | '));
  });

  it('Generate from Selection writes a PNG with its parameters into the workspace', async () => {
    const editor = await open('notes.md');
    const line = editor.document.lineAt(2);
    editor.selection = new vscode.Selection(line.range.start, line.range.end);
    // The status bar's text at every job change (it updates on the same event, first).
    const seen: string[] = [];
    const watch = api.jobs.onDidChange(() => seen.push(api.statusBar.text));
    const run = await vscode.commands.executeCommand<RunResult>('majicflux.generateFromSelection');
    const [job] = await finished(run);
    watch.dispose();
    // Issue 15 item 2: decoding is shown as such, not as the last step; the stages never go back
    // (no "waiting" after "encoding the prompt"); this first job loads the model and says so.
    const decoding = seen.findIndex((s) => /decoding/.test(s));
    assert.ok(decoding >= 0 && !seen.slice(decoding).some((s) => /step \d+\/\d+/.test(s)), JSON.stringify(seen));
    const order = [/waiting for the server|queued|starting/, /encoding the prompt/, /step \d+\/\d+/, /decoding/, /saving/];
    const ranks = seen.map((s) => order.findIndex((r) => r.test(s))).filter((r) => r >= 0);
    assert.deepEqual(ranks, [...ranks].sort((a, b) => a - b), JSON.stringify(seen));
    assert.ok(ranks.includes(1) && ranks.includes(4), JSON.stringify(seen));
    assert.ok(seen.some((s) => /loading .*\((CLIP|T5|DiT|VAE)\)/.test(s)), `no loading stage: ${JSON.stringify(seen)}`);
    const file = job.result!.file;
    assert.equal(path.dirname(file), path.join(ws(), 'generated'));
    assert.match(path.basename(file), new RegExp(`^\\d{4}-\\d{2}-\\d{2}-${job.request.params.seed}-a-watercolor-hummingbird-in-a-garden\\.png$`));
    const png = await readPngParameters(file);
    assert.equal(png.params?.prompt, 'a watercolor hummingbird in a garden');
    assert.equal(png.params?.seed, job.request.params.seed);
    assert.equal(png.params?.steps, 2);
    assert.equal(png.params?.width, 64);
    assert.equal(png.params?.height, 64);
    assert.ok(api.history.byFile(file), 'recorded in the history');
    // Issue 15 item 5: opened like the walkthrough's first image (majicflux.output.openResult: beside).
    await waitFor('the image opened', () => openInTab(file), 30_000);
    await waitFor('idle status', () => api.statusBar.text.includes('flux-tiny') || api.statusBar.text.includes('models'));
  });

  it('Generate from Selection with several cursors reads the selections in the document order', async () => {
    const editor = await open('notes.md');
    const line = (n: number) => new vscode.Selection(editor.document.lineAt(n).range.start, editor.document.lineAt(n).range.end);
    // The lower line selected first (as with Alt+click from the bottom up); was: its words first.
    editor.selections = [line(3), line(2)];
    const run = await vscode.commands.executeCommand<RunResult>('majicflux.generateFromSelection');
    assert.ok(run);
    assert.equal(run.jobs[0].request.params.prompt, 'a watercolor hummingbird in a garden a brutalist library at night');
    await finished(run);
    await vscode.commands.executeCommand('notifications.clearAll');
  });

  it('Generate from Selection in a .flux file checks the selected blocks as CodeLens does and runs each over the file defaults', async () => {
    const file = path.join(ws(), 'selection.flux');
    const lines = ['steps: 3', 'width: 80', 'height: 96', '', 'a quiet harbour at night', 'steps: 0', '', 'a quiet harbour at dawn', 'image: missing-photo.png', '', 'a quiet harbour at noon', 'seed: 5', '', 'a quiet harbour at dusk', 'seed: 6', ''];
    fs.writeFileSync(file, lines.join('\n'));
    try {
      const editor = await open('selection.flux');
      const select = async (from: number, to: number) => {
        editor.selection = new vscode.Selection(from, 0, to, editor.document.lineAt(to).text.length);
        return vscode.commands.executeCommand<RunResult | undefined>('majicflux.generateFromSelection');
      };
      const before = api.jobs.all().length;
      // A bad value and a missing input image: refused before any job (was: run with the default steps / a relative path).
      assert.equal(await select(4, 5), undefined, 'steps: 0 is refused');
      assert.equal(await select(7, 8), undefined, 'a missing image: is refused');
      assert.equal(await select(11, 11), undefined, 'parameters alone are no prompt (was: "seed: 5" generated as the prompt)');
      assert.equal(api.jobs.all().length, before, 'nothing was queued');
      // Two blocks selected: two images (was: the first only), each with the file's defaults (was: the settings' 2 steps, 64²).
      const jobs = await finished(await select(10, 14));
      assert.deepEqual(jobs.map((j) => [j.request.params.seed, j.request.params.steps, j.request.params.width, j.request.params.height, j.request.params.prompt]), [
        [5, 3, 80, 96, 'a quiet harbour at noon'],
        [6, 3, 80, 96, 'a quiet harbour at dusk'],
      ]);
      await vscode.commands.executeCommand('notifications.clearAll');
      await vscode.commands.executeCommand('workbench.action.closeAllEditors');
    } finally {
      fs.rmSync(file, { force: true });
    }
  });

  it('a .flux file finds LoRAs in a majicflux.loras.folder written with ${workspaceFolder}, and a wrong-typed one breaks nothing', async () => {
    const dir = path.join(ws(), 'lora-dir');
    fs.mkdirSync(dir, { recursive: true });
    fs.writeFileSync(path.join(dir, 'ink-style.safetensors'), 'only its name matters here');
    const cfg = vscode.workspace.getConfiguration('majicflux');
    const doc = await vscode.workspace.openTextDocument({ language: 'flux', content: 'a castle in ink\nlora: ink-style:0.5\n' });
    const missing = (d: vscode.Diagnostic[]) => d.filter((x) => x.code === 'missingFile').map((x) => x.message);
    try {
      // Was: looked for <workspace>/${workspaceFolder}/lora-dir/ink-style.safetensors (the panel's picker expanded it, .flux files did not).
      await cfg.update('loras.folder', '${workspaceFolder}/lora-dir', vscode.ConfigurationTarget.Workspace);
      assert.deepEqual(missing(await api.flux.diagnostics.update(doc)), []);
      // Was: "f.trim is not a function" from the diagnostics, completion and every .flux run.
      await cfg.update('loras.folder', 3, vscode.ConfigurationTarget.Workspace);
      assert.equal(missing(await api.flux.diagnostics.update(doc)).length, 1, 'no LoRA folder: the LoRA is not found, and said so');
    } finally {
      await cfg.update('loras.folder', undefined, vscode.ConfigurationTarget.Workspace);
      fs.rmSync(dir, { recursive: true, force: true });
      await vscode.commands.executeCommand('notifications.clearAll');
    }
  });

  it("an untitled .flux document's out: names its image, from the workspace root", async () => {
    const doc = await vscode.workspace.openTextDocument({ language: 'flux', content: 'a tiny untitled boat\nseed: 3\nout: untitled-out/{seed}.png\n' });
    await vscode.window.showTextDocument(doc);
    const runs = await vscode.commands.executeCommand<RunResult[]>('majicflux.generateFluxFile', doc.uri.toString());
    const [job] = await finished(runs[0]);
    // Was: generated/<date>-3-a-tiny-untitled-boat.png, the out: line ignored.
    assert.equal(job.result!.file, path.join(ws(), 'untitled-out', '3.png'));
    await vscode.commands.executeCommand('notifications.clearAll');
    await vscode.commands.executeCommand('workbench.action.revertAndCloseActiveEditor');
  });

  it('an output folder that cannot be written is refused before the image is generated', async () => {
    const blocker = path.join(ws(), 'blocker');
    fs.writeFileSync(blocker, 'a file where the output folder should be');
    const cfg = vscode.workspace.getConfiguration('majicflux');
    await cfg.update('output.folder', 'blocker/images', vscode.ConfigurationTarget.Workspace);
    try {
      const before = api.jobs.all().length;
      // Was: generated, then "could not save the image … a file is in the way" after all the steps.
      assert.equal(await vscode.commands.executeCommand('majicflux.generate', 'a small green boat'), undefined);
      assert.equal(api.jobs.all().length, before, 'nothing was queued');
      await vscode.commands.executeCommand('notifications.clearAll');
    } finally {
      await cfg.update('output.folder', undefined, vscode.ConfigurationTarget.Workspace);
      fs.rmSync(blocker, { force: true });
    }
  });

  it('a .flux file generates its images, then shows them in CodeLens and hover', async () => {
    const editor = await open('prompts.flux');
    const uri = editor.document.uri;
    const runs = await vscode.commands.executeCommand<RunResult[]>('majicflux.generateFluxFile', uri.toString());
    assert.equal(runs.length, 2);
    const jobs = (await Promise.all(runs.map((r) => finished(r)))).flat();
    const files = jobs.map((j) => path.relative(ws(), j.result!.file)).sort();
    assert.equal(files.length, 3);
    assert.deepEqual(files.slice(0, 2), [path.join('foxes', '7-1.png'), path.join('foxes', '8-2.png')]);
    assert.match(files[2], /^generated[\\/]\d{4}-\d{2}-\d{2}-42-a-lighthouse-on-a-cliff-at-dawn-oil-painting\.png$/);
    for (const f of files) assert.ok(fs.existsSync(path.join(ws(), f)));

    const titles = await waitFor('image lenses', async () => {
      const t = await lensTitles(uri);
      return t.includes('$(file-media) 2 images') && t.includes('$(file-media) 1 image') && t;
    });
    assert.ok(titles.length >= 5);
    const hovers = await vscode.commands.executeCommand<vscode.Hover[]>('vscode.executeHoverProvider', uri, new vscode.Position(5, 3));
    const md = hovers.flatMap((h) => h.contents.map((c) => (typeof c === 'string' ? c : c.value))).join('\n');
    // Issue 15 item 12: the parameters first, then a small thumbnail.
    assert.match(md, /width=128/);
    assert.ok(md.indexOf('| seed') >= 0 && md.indexOf('| seed') < md.indexOf('!['), md);
    assert.match(md, /42/);
    assert.equal(api.history.forBlock(uri.fsPath, blockKey('a red fox in fresh snow')).length, 2);
  });

  it('Re-run with these parameters reproduces the image under a new name', async () => {
    const original = api.history.list().find((e) => e.params.seed === 42)!;
    assert.ok(original, 'the lighthouse image is in the history');
    const run = await vscode.commands.executeCommand<RunResult>('majicflux.rerunFromImage', vscode.Uri.file(original.file), 'same');
    const [job] = await finished(run);
    assert.notEqual(job.result!.file, original.file, 'never overwrites');
    assert.equal(path.dirname(job.result!.file), path.dirname(original.file));
    assert.deepEqual(fs.readFileSync(job.result!.file).length > 0, true);
    const a = await readPngParameters(original.file);
    const b = await readPngParameters(job.result!.file);
    assert.deepEqual({ ...b.params, version: undefined }, { ...a.params, version: undefined });
  });

  it('Re-run on a ComfyUI PNG runs its graph\'s prompt, seed, steps and size; one holding only the editor\'s workflow says it was made with ComfyUI and starts nothing', async () => {
    const tiny = Buffer.from('iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAIAAACQd1PeAAAADElEQVR4nGP4//8/AAX+Av4N70a4AAAAAElFTkSuQmCC', 'base64');
    const graph = {
      '6': { class_type: 'CLIPTextEncode', inputs: { text: 'a fox in the snow', clip: ['11', 0] } },
      '26': { class_type: 'FluxGuidance', inputs: { guidance: 3.5, conditioning: ['6', 0] } },
      '27': { class_type: 'EmptySD3LatentImage', inputs: { width: 64, height: 64, batch_size: 1 } },
      '3': { class_type: 'KSampler', inputs: { seed: 77, steps: 2, cfg: 1, sampler_name: 'euler', scheduler: 'simple', positive: ['26', 0], latent_image: ['27', 0] } },
    };
    const graphPng = path.join(ws(), 'comfy-graph.png');
    fs.writeFileSync(graphPng, insertChunks(tiny, [iTXtChunk('prompt', JSON.stringify(graph)), iTXtChunk('workflow', '{"nodes":[]}')]));
    const run = await vscode.commands.executeCommand<RunResult>('majicflux.rerunFromImage', vscode.Uri.file(graphPng), 'same');
    const [job] = await finished(run);
    assert.deepEqual([job.request.params.prompt, job.request.params.seed, job.request.params.steps, job.request.params.width, job.request.params.height], ['a fox in the snow', 77, 2, 64, 64]);
    await vscode.commands.executeCommand('notifications.clearAll');
    fs.rmSync(graphPng, { force: true });
    const file = path.join(ws(), 'from-comfy.png');
    fs.writeFileSync(file, insertChunks(tiny, [iTXtChunk('workflow', '{"nodes":[]}')]));
    try {
      const jobsBefore = api.jobs.all().length;
      const before = api.rerunNotices.length;
      assert.equal(await vscode.commands.executeCommand('majicflux.rerunFromImage', vscode.Uri.file(file), 'same'), undefined);
      assert.match(api.rerunNotices[before] ?? '', /^from-comfy\.png was made with ComfyUI, which records it as its own workflow rather than as parameters MajicFLUX reads: copy the prompt/);
      assert.equal(api.jobs.all().length, jobsBefore, 'nothing starts');
      await vscode.commands.executeCommand('notifications.clearAll');
    } finally {
      fs.rmSync(file, { force: true });
    }
  });

  it('cancel stops a running generation and writes nothing', async () => {
    const doc = await vscode.workspace.openTextDocument({ language: 'flux', content: 'a very slow painting\nsteps: 200\nwidth: 256\nheight: 256\n' });
    const editor = await vscode.window.showTextDocument(doc);
    editor.selection = new vscode.Selection(0, 0, doc.lineCount, 0);
    const run = await vscode.commands.executeCommand<RunResult>('majicflux.generateFromSelection');
    assert.ok(run);
    const job = run.jobs[0];
    await waitFor('the first step', () => job.step !== undefined && job.step >= 1, 120_000);
    assert.match(api.statusBar.text, /step \d+\/200/);
    // Clicking the status bar while it runs shows the queue, where the job can be cancelled (was: the panel, which shows only its own jobs).
    assert.equal(api.statusBar.command, 'majicflux.showQueue');
    assert.match(api.statusBar.tooltip, /Click to see the queue or cancel/);
    assert.equal(await vscode.commands.executeCommand<number>('majicflux.cancel'), 1);
    const [end] = await run.finished;
    assert.equal(api.statusBar.command, 'majicflux.openPanel', 'idle again: the panel');
    assert.equal(end.state, 'cancelled');
    assert.ok(end.step! < 200);
    assert.equal(fs.existsSync(job.target!), false, 'no image written');
    await vscode.commands.executeCommand('workbench.action.revertAndCloseActiveEditor');
  });

  it('Restart Server starts a fresh server that generates', async () => {
    await vscode.commands.executeCommand('majicflux.restartServer');
    assert.equal(api.server.state, 'ready');
    const run = await vscode.commands.executeCommand<RunResult>('majicflux.generate', 'a small red boat');
    const [job] = await finished(run);
    assert.ok(fs.existsSync(job.result!.file));
    await waitFor('the palette image opened', () => openInTab(job.result!.file), 30_000);
  });

  it('with no model configured, the walkthrough generates a first image with the bundled demo model', async () => {
    const cfg = vscode.workspace.getConfiguration('majicflux');
    const golden = cfg.get<string>('model.path');
    await cfg.update('model.path', '', vscode.ConfigurationTarget.Workspace);
    try {
      const report = await vscode.commands.executeCommand<{ ok: boolean; demo: boolean }>('majicflux.checkModels', true);
      assert.equal(report.demo, true);
      const run = await vscode.commands.executeCommand<RunResult>('majicflux.generateFirstImage');
      const [job] = await finished(run);
      const png = await readPngParameters(job.result!.file);
      assert.equal(png.params?.prompt, 'a lighthouse on a cliff at dawn, oil painting');
      assert.equal(png.params?.width, 512);
      assert.match(String(png.params?.model), /demo/);
      await waitFor('the image opened beside', () => openInTab(job.result!.file));
    } finally {
      await cfg.update('model.path', golden, vscode.ConfigurationTarget.Workspace);
    }
  });

  it('a model path that is not there: a warning in the status bar, no job, and Check Models says "folder not found" once (issue 15 item 4)', async () => {
    const cfg = vscode.workspace.getConfiguration('majicflux');
    const golden = cfg.get<string>('model.path');
    const missing = path.join(ws(), 'no-such-model');
    await cfg.update('model.path', missing, vscode.ConfigurationTarget.Workspace);
    try {
      await waitFor('the warning state', () => /model not usable/.test(api.statusBar.text), 30_000);
      assert.ok(!api.statusBar.text.includes('$(pass)'), api.statusBar.text);
      assert.ok(api.statusBar.tooltip.includes(missing), api.statusBar.tooltip);
      const before = api.jobs.all().length;
      assert.equal(await vscode.commands.executeCommand('majicflux.generate', 'a cat'), undefined, 'refused before any work');
      assert.equal(api.jobs.all().length, before);
      const report = await vscode.commands.executeCommand<{ ok: boolean; report?: { model: { parts: { message?: string }[] } } }>('majicflux.checkModels', true);
      assert.equal(report.ok, false);
      assert.deepEqual([...new Set(report.report!.model.parts.map((p) => p.message))], [`model folder not found: ${missing}`]);
    } finally {
      await cfg.update('model.path', golden, vscode.ConfigurationTarget.Workspace);
    }
    await waitFor('the warning to go', () => !/model not usable/.test(api.statusBar.text), 30_000);
  });

  it('opens the generation panel and its script runs under the CSP', async () => {
    await vscode.commands.executeCommand('majicflux.openPanel');
    const panel = await waitFor('the panel', () => api.panel());
    await waitFor('the webview to say ready', () => panel.received.includes('ready'), 30_000);
  });
});
