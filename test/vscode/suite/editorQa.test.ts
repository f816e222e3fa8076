// The editor as a demanding user meets it: refusals that reach the log. Runs after the other host suites (same extension host, server and workspace).

import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as vscode from 'vscode';
import type { MajicfluxApi } from '../../../src/extension/extension';
import type { RunResult } from '../../../src/extension/generation';
import { TINY_PNG } from '../../helpers/tinyPng';
import { insertChunks, iTXtChunk } from '../../../src/inference/formats/png';
import { waitFor } from './waitFor';

const ws = () => vscode.workspace.workspaceFolders![0].uri.fsPath;

describe('MajicFLUX in a real VS Code: the editor, as a demanding user', function () {
  let api: MajicfluxApi;

  before(async () => {
    api = await vscode.extensions.getExtension<MajicfluxApi>('majicflux.majicflux')!.activate();
  });

  /** Every line of the extension's LogOutputChannel so far. */
  function logLines(): string[] {
    const dir = api.logUri.fsPath;
    const files = fs.existsSync(dir) ? fs.readdirSync(dir).filter((f) => f.endsWith('.log')) : [];
    return files.flatMap((f) => fs.readFileSync(path.join(dir, f), 'utf8').split('\n'));
  }

  it('a .flux hires pass past the size limit is marked on its line while typing, and a run is refused before the server sees it, once for its count, and logged', async () => {
    const file = path.join(ws(), 'hires-too-large.flux');
    fs.writeFileSync(file, 'a cat on a wall\nwidth: 1536\nheight: 1536\nhires: 2\ncount: 3\n');
    const document = await vscode.workspace.openTextDocument(file);
    await vscode.window.showTextDocument(document);
    const marked = await waitFor('the diagnostic on the hires line', () => vscode.languages.getDiagnostics(document.uri).find((d) => d.range.start.line === 3 && d.severity === vscode.DiagnosticSeverity.Error), 10_000);
    assert.match(marked.message, /makes 3072×3072; sides stop at 2048: use a smaller scale \(at most ×1\.33\)/);
    const before = api.jobs.all().length;
    const runs = await vscode.commands.executeCommand<RunResult[] | undefined>('majicflux.generateFluxFile', document.uri.toString());
    assert.ok(!runs?.length, `nothing ran: ${JSON.stringify(runs)}`);
    assert.equal(api.jobs.all().length, before, 'no job submitted (was: three, each failing on the server)');
    await waitFor('the refusal in the log', () => logLines().find((l) => /not generating: Fix the problems in hires-too-large\.flux first: line 4: .*a hires pass ×2 on 1536×1536 makes 3072×3072; sides stop at 2048: use a smaller scale \(at most ×1\.33\)/.test(l)), 5_000);
  });

  it('Vary This Image refuses, at once and logged, a .png that is no image and one too large to read', async () => {
    const dir = path.join(ws(), 'vary-qa');
    fs.mkdirSync(dir, { recursive: true });
    const fake = path.join(dir, 'notes-renamed.png');
    fs.writeFileSync(fake, 'these are my notes, not an image\n');
    // A PNG header that says 20000×20000 (what image-size and the server read first).
    const huge = Buffer.from(TINY_PNG);
    huge.writeUInt32BE(20000, 16);
    huge.writeUInt32BE(20000, 20);
    fs.writeFileSync(path.join(dir, 'huge.png'), huge);
    const wide = Buffer.from(TINY_PNG);
    wide.writeUInt32BE(20000, 16);
    wide.writeUInt32BE(600, 20);
    fs.writeFileSync(path.join(dir, 'panorama.png'), wide);
    // Was: both became the panel's input image, and the server refused them only after Generate.
    assert.equal(await vscode.commands.executeCommand('majicflux.varyImage', vscode.Uri.file(fake)), false, 'not an image');
    assert.equal(await vscode.commands.executeCommand('majicflux.varyImage', vscode.Uri.file(path.join(dir, 'huge.png'))), false, 'too many pixels');
    const panel = api.panel()!;
    assert.match(panel.warnings.join('\n'), /notes-renamed\.png is not a PNG, JPEG or WebP image MajicFLUX can read/);
    assert.match(panel.warnings.join('\n'), /huge\.png is 20000×20000 pixels; at most 268,435,456 pixels are read: scale it down first/);
    await waitFor('both in the log', () => logLines().filter((l) => /\[warning\] panel: MajicFLUX cannot use this image: (notes-renamed|huge)\.png/.test(l)).length === 2, 5_000);
    // A wide panorama under the limit is taken (the run size fits it within the side limit).
    assert.equal(await vscode.commands.executeCommand('majicflux.varyImage', vscode.Uri.file(path.join(dir, 'panorama.png'))), true, 'a panorama under the limit');
    assert.equal(panel.inputImage, path.join(dir, 'panorama.png'));
    await vscode.commands.executeCommand('workbench.action.closeActiveEditor');
  });

  it('a .flux image: that is no image is refused before the server starts, once for its count, and logged', async () => {
    const dir = path.join(ws(), 'img-qa');
    fs.mkdirSync(dir, { recursive: true });
    fs.writeFileSync(path.join(dir, 'scan.png'), 'not a picture at all\n');
    const file = path.join(dir, 'vary.flux');
    fs.writeFileSync(file, 'a watercolour of this scan\nimage: scan.png\nstrength: 0.6\ncount: 2\n');
    const document = await vscode.workspace.openTextDocument(file);
    // Said on its line as soon as the file is open.
    const unusable = (await api.flux.diagnostics.update(document)).filter((d) => d.code === 'unusableFile');
    assert.equal(unusable.length, 1, unusable.map((d) => d.message).join('\n'));
    assert.equal(unusable[0].range.start.line, 1);
    assert.equal(unusable[0].severity, vscode.DiagnosticSeverity.Error);
    assert.match(unusable[0].message, /scan\.png is not a PNG, JPEG or WebP image MajicFLUX can read/);
    const before = api.jobs.all().length;
    const runs = await vscode.commands.executeCommand<RunResult[] | undefined>('majicflux.generateFluxFile', document.uri.toString());
    assert.equal(runs, undefined, 'nothing ran');
    assert.equal(api.jobs.all().length, before, 'no job submitted (was: two, each failing on the server)');
    await waitFor('the refusal in the log', () => logLines().find((l) => /not generating: MajicFLUX cannot generate: scan\.png is not a PNG, JPEG or WebP image MajicFLUX can read/.test(l)), 5_000);
  });

  it('a .flux lora: that names a file other than a .safetensors is refused before the server starts, and logged', async () => {
    const dir = path.join(ws(), 'img-qa');
    fs.mkdirSync(dir, { recursive: true });
    fs.writeFileSync(path.join(dir, 'style.ckpt'), 'a pickled checkpoint');
    const file = path.join(dir, 'lora.flux');
    fs.writeFileSync(file, 'a castle in ink\nlora: style.ckpt:0.8\n');
    const document = await vscode.workspace.openTextDocument(file);
    const unusable = (await api.flux.diagnostics.update(document)).filter((d) => d.code === 'unusableFile');
    assert.deepEqual(unusable.map((d) => [d.range.start.line, d.message]), [[1, 'the LoRA style.ckpt is not a .safetensors file']]);
    const before = api.jobs.all().length;
    const runs = await vscode.commands.executeCommand<RunResult[] | undefined>('majicflux.generateFluxFile', document.uri.toString());
    assert.equal(runs, undefined, 'nothing ran');
    assert.equal(api.jobs.all().length, before, 'no job submitted (was: one, failing on the server)');
    await waitFor('the refusal in the log', () => logLines().find((l) => /not generating: MajicFLUX cannot generate: the LoRA style\.ckpt is not a \.safetensors file/.test(l)), 5_000);
  });

  it('a generation cancelled in its hires pass ends cancelled and writes nothing', async () => {
    const file = path.join(ws(), 'hires-cancel.flux');
    fs.writeFileSync(file, 'a harbour at night, slowly sharpened\nwidth: 64\nheight: 64\nsteps: 2\nhires: 2\nhires_steps: 200\nhires_strength: 1\n');
    const document = await vscode.workspace.openTextDocument(file);
    const runs = await vscode.commands.executeCommand<RunResult[]>('majicflux.generateFluxFile', document.uri.toString());
    const job = runs[0].jobs[0];
    assert.equal(job.steps ?? 202, 202);
    // Past the first pass's 2 steps: in the hires pass.
    await waitFor('a hires step', () => job.step !== undefined && job.step >= 4 && job, 120_000);
    assert.equal(await vscode.commands.executeCommand<number>('majicflux.cancel'), 1);
    const [end] = await runs[0].finished;
    assert.equal(end.state, 'cancelled');
    assert.ok(end.step! < 202, `stopped at ${end.step}`);
    assert.equal(fs.existsSync(job.target!), false, 'no image written');
    const dir = path.dirname(job.target!);
    const left = fs.existsSync(dir) ? fs.readdirSync(dir).filter((f) => f.includes('harbour-at-night-slowly')) : [];
    assert.deepEqual(left, [], 'no temp file or partial image either');
  });

  it('a .flux file refused for its errors says so in the log too: one line, no stack', async () => {
    const document = await vscode.workspace.openTextDocument(path.join(ws(), 'bad.flux'));
    await vscode.window.showTextDocument(document);
    const before = api.jobs.all().length;
    const runs = await vscode.commands.executeCommand<RunResult[] | undefined>('majicflux.generateFluxFile', document.uri.toString());
    assert.equal(runs, undefined, 'refused');
    assert.equal(api.jobs.all().length, before, 'nothing submitted');
    const at = await waitFor(
      'the refusal in the log',
      () => {
        const lines = logLines();
        const i = lines.findIndex((l) => /\[warning\] not generating: Fix the problems in bad\.flux first: line \d+: /.test(l));
        return i >= 0 && { lines, i };
      },
      5_000,
    ).catch((err: Error) => assert.fail(`${err.message}; the log has: ${logLines().slice(-15).join('\n')}`));
    assert.doesNotMatch(at.lines[at.i + 1] ?? '', /^\s+at /, 'no stack under it');
    await vscode.commands.executeCommand('workbench.action.closeActiveEditor');
  });

  it('Generate all refuses a file whose later block names an image: that is no image before the first block starts', async () => {
    const dir = path.join(ws(), 'img-qa');
    fs.mkdirSync(dir, { recursive: true });
    fs.writeFileSync(path.join(dir, 'notes.png'), 'my notes, renamed\n');
    const file = path.join(dir, 'later-bad.flux');
    fs.writeFileSync(file, 'steps: 2\nwidth: 64\nheight: 64\n\na lighthouse at dawn\n\na lighthouse at dusk\n\na watercolour of these notes\nimage: notes.png\n');
    const document = await vscode.workspace.openTextDocument(file);
    const before = api.jobs.all().length;
    const runs = await vscode.commands.executeCommand<RunResult[] | undefined>('majicflux.generateFluxFile', document.uri.toString());
    // Was: the first two blocks ran (minutes each on a real model), then the third was refused.
    assert.equal(runs, undefined, 'nothing ran');
    assert.equal(api.jobs.all().length, before, 'no job submitted');
    await waitFor('the refusal in the log', () => logLines().find((l) => /not generating: MajicFLUX cannot generate: notes\.png is not a PNG, JPEG or WebP image MajicFLUX can read/.test(l)), 5_000);
  });

  it('Re-run on a PNG whose recorded prompt was hand-edited past the limit says what is wrong with it, not "no parameters"', async () => {
    const file = path.join(ws(), 'img-qa', 'edited-prompt.png');
    fs.mkdirSync(path.dirname(file), { recursive: true });
    fs.writeFileSync(file, insertChunks(TINY_PNG, [iTXtChunk('majicflux', JSON.stringify({ prompt: 'a fox '.repeat(4000), seed: 5, steps: 2, width: 64, height: 64 }))]));
    const before = api.rerunNotices.length;
    const jobsBefore = api.jobs.all().length;
    assert.equal(await vscode.commands.executeCommand('majicflux.rerunFromImage', vscode.Uri.file(file), 'same'), undefined);
    assert.equal(api.rerunNotices[before], 'edited-prompt.png records generation parameters, but its prompt cannot be used (the prompt is 24000 characters; at most 20000 are read). Copy the prompt into the panel or a .flux file and fix it there.');
    assert.equal(api.jobs.all().length, jobsBefore, 'nothing starts');
    await vscode.commands.executeCommand('notifications.clearAll');
  });

  it('Re-run on a JPEG renamed .png says it is a JPEG, not only "bad signature"', async () => {
    const file = path.join(ws(), 'img-qa', 'holiday.png');
    fs.mkdirSync(path.dirname(file), { recursive: true });
    // A 1×1 baseline JPEG's header (SOI, JFIF APP0, SOF0), enough for the type to be read.
    fs.writeFileSync(file, Buffer.from('ffd8ffe000104a46494600010100000100010000ffc0000b080001000101011100ffd9', 'hex'));
    const before = api.rerunNotices.length;
    assert.equal(await vscode.commands.executeCommand('majicflux.rerunFromImage', vscode.Uri.file(file), 'same'), undefined);
    assert.equal(api.rerunNotices[before], 'holiday.png is a JPEG image under a .png name: only PNG files carry the parameters MajicFLUX reads. Vary This Image works with it.');
    await vscode.commands.executeCommand('notifications.clearAll');
  });
});

describe('MajicFLUX in a real VS Code: the server\'s life, jobs and cancels', function () {
  let api: MajicfluxApi;
  before(async () => {
    api = await vscode.extensions.getExtension<MajicfluxApi>('majicflux.majicflux')!.activate();
  });

  it('a server killed mid-job (SIGKILL) fails that job with a message and leaves nothing of it in the folder; the job queued behind it runs on the restarted server; killed idle, the status bar says stopped and the next Generate works', async () => {
    const file = path.join(ws(), 'killed.flux');
    fs.writeFileSync(file, 'a very slow harbour painting, killed\nsteps: 200\nwidth: 256\nheight: 256\n');
    const document = await vscode.workspace.openTextDocument(file);
    const [a] = (await vscode.commands.executeCommand<RunResult[]>('majicflux.generateFluxFile', document.uri.toString()))!;
    const b = await vscode.commands.executeCommand<RunResult>('majicflux.generate', 'a boat queued behind it');
    const ja = a.jobs[0];
    await waitFor('a step', () => ja.step !== undefined && ja.step >= 1, 120_000);
    process.kill((await api.server.serverClient()).pid!, 'SIGKILL');
    const [[ea], [eb]] = await Promise.all([a.finished, b.finished]);
    assert.deepEqual([ea.state, eb.state], ['failed', 'done'], eb.error?.message);
    assert.match(ea.error!.message, /^The MajicFLUX server stopped unexpectedly \(signal SIGKILL\) while running job/);
    assert.equal(eb.resubmitted, 1, 'submitted again once');
    assert.ok(fs.existsSync(eb.result!.file), eb.result!.file);
    const dir = path.dirname(ja.target!);
    assert.deepEqual((fs.existsSync(dir) ? fs.readdirSync(dir) : []).filter((f) => f.startsWith('.') || /killed/.test(f)), [], 'no image, temp file or partial file of the killed job');
    const [ec] = await (await vscode.commands.executeCommand<RunResult>('majicflux.generate', 'after the crash')).finished;
    assert.equal(ec.state, 'done');
    process.kill((await api.server.serverClient()).pid!, 'SIGKILL');
    await waitFor('stopped', () => api.server.state === 'stopped', 10_000);
    assert.equal(api.statusBar.text, '$(circle-large-outline) MajicFLUX');
    assert.match(api.statusBar.tooltip, /^Server stopped/);
    const [ed] = await (await vscode.commands.executeCommand<RunResult>('majicflux.generate', 'after the idle kill')).finished;
    assert.equal(ed.state, 'done');
  });

  it('settings changed while a job runs apply from the next job: the running one keeps its steps and folder and is not stopped by the server restart; a queued one can be cancelled alone', async () => {
    const cfg = vscode.workspace.getConfiguration('majicflux');
    const was = (k: string) => cfg.inspect(k)?.workspaceValue;
    const saved = { weights: was('weights'), 'defaults.steps': was('defaults.steps'), 'output.folder': was('output.folder') };
    const file = path.join(ws(), 'setting-mid.flux');
    fs.writeFileSync(file, 'a slow lighthouse, settings changed\nsteps: 120\nwidth: 128\nheight: 128\nseed: 7\n');
    const document = await vscode.workspace.openTextDocument(file);
    const [a] = (await vscode.commands.executeCommand<RunResult[]>('majicflux.generateFluxFile', document.uri.toString()))!;
    const [queued] = (await vscode.commands.executeCommand<RunResult[]>('majicflux.generateFluxFile', document.uri.toString()))!;
    assert.equal(path.basename(queued.jobs[0].target!), path.basename(a.jobs[0].target!).replace(/\.png$/, '-1.png'), 'same seed and prompt: another name');
    await waitFor('a step', () => a.jobs[0].step !== undefined && a.jobs[0].step >= 1, 120_000);
    // Cancelled while the first still has most of its steps to go: cancelling it after the three
    // settings writes raced the first job's end on a loaded CI machine (the queued one then ran).
    await api.jobs.cancel(queued.jobs[0].id);
    const [q] = await queued.finished;
    assert.equal(q.state, 'cancelled');
    try {
      await cfg.update('weights', 'fp32', vscode.ConfigurationTarget.Workspace);
      await cfg.update('defaults.steps', 3, vscode.ConfigurationTarget.Workspace);
      await cfg.update('output.folder', 'elsewhere', vscode.ConfigurationTarget.Workspace);
      const [ea] = await a.finished;
      // Done, not failed by the server restart the weights change asks for (deferred until the queue is empty).
      assert.equal(ea.state, 'done', JSON.stringify(ea.error));
      assert.equal(ea.result!.metadata.steps, 120);
      assert.equal(path.basename(path.dirname(ea.result!.file)), 'generated');
      const [ec] = await (await vscode.commands.executeCommand<RunResult>('majicflux.generate', 'after the settings change')).finished;
      assert.equal(ec.state, 'done');
      assert.equal(ec.result!.metadata.steps, 3);
      assert.equal(path.basename(path.dirname(ec.result!.file)), 'elsewhere');
    } finally {
      for (const [k, v] of Object.entries(saved)) await cfg.update(k, v, vscode.ConfigurationTarget.Workspace);
    }
  });

  it('a cancel during the text encoding, the decoding or the saving ends the job cancelled with nothing written', async () => {
    for (const stage of ['text', 'decode', 'save'] as const) {
      const file = path.join(ws(), `cancel-${stage}.flux`);
      fs.writeFileSync(file, `cancelled while ${stage}\nsteps: 2\nwidth: 512\nheight: 512\n`);
      const document = await vscode.workspace.openTextDocument(file);
      let seen = false;
      const sub = api.jobs.onDidChange((j) => {
        if (!seen && j.stage === stage && j.state === 'running') {
          seen = true;
          void api.jobs.cancel(j.id);
        }
      });
      try {
        const [r] = (await vscode.commands.executeCommand<RunResult[]>('majicflux.generateFluxFile', document.uri.toString()))!;
        const [e] = await r.finished;
        assert.ok(seen, `the ${stage} stage was seen`);
        assert.equal(e.state, 'cancelled', stage);
        const dir = path.dirname(r.jobs[0].target!);
        assert.deepEqual(fs.existsSync(dir) ? fs.readdirSync(dir).filter((f) => f.includes(`cancelled-while-${stage}`)) : [], [], `${stage}: nothing written`);
      } finally {
        sub.dispose();
      }
    }
  });
});
