// Issue 13 in the generation panel, in a real VS Code against the real server on the golden tiny
// model: a LoRA from the picker, "Vary this image", and the Explorer's Vary This Image. Webview
// messages go through the panel's own entry (fromWebview: the same validation as the webview's).

import * as assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import sharp from 'sharp';
import * as vscode from 'vscode';
import type { MajicfluxApi } from '../../../src/extension/extension';
import type { RunResult } from '../../../src/extension/generation';
import type { Job } from '../../../src/extension/jobs';
import type { GenerationPanel } from '../../../src/extension/panel/panel';
import { CLEAR_ALL } from '../../../src/extension/panel/droppedPrune';
import type { InitMessage, ToWebview } from '../../../src/extension/panel/protocol';
import { readImageInput } from '../../../src/extension/pngInput';
import { readPngParameters } from '../../../src/inference/formats/png';
import { DEFAULTS } from '../../../src/shared/params';
import { waitFor } from './waitFor';

const ws = () => vscode.workspace.workspaceFolders![0].uri.fsPath;


const base = { seed: 11, steps: 2, width: 64, height: 64, guidance: 3.5, trueCfgScale: 1 };

/** The decoded pixels (the PNGs differ in their metadata anyway). */
const pixels = (file: string) => sharp(file).raw().toBuffer();

describe('MajicFLUX panel: LoRAs, input image and Vary This Image (issue 13)', function () {
  let api: MajicfluxApi;
  let panel: GenerationPanel;
  let lora: string;
  let made: string;
  /** An image made from a dropped image, and that dropped image's kept copy. */
  let fromDropped: { png: string; input: string } | undefined;

  /** Sends `params` as the webview's Generate and resolves with the job it made, finished. */
  async function generate(params: object): Promise<Job> {
    const before = new Set(api.jobs.all());
    panel.fromWebview({ type: 'generate', params });
    const job = await waitFor('the job', () => api.jobs.all().find((j) => !before.has(j)), 30_000);
    const end = await api.jobs.whenFinished(job);
    assert.equal(end.state, 'done', `${end.state} ${end.error?.message ?? ''}`);
    return end;
  }

  before(async () => {
    api = await vscode.extensions.getExtension<MajicfluxApi>('majicflux.majicflux')!.activate();
    // A LoRA in the workspace (the golden kohya DiT LoRA), as a user would drop one in.
    const golden = vscode.workspace.getConfiguration('majicflux').get<string>('model.path')!;
    lora = path.join(ws(), 'loras', 'ink.safetensors');
    fs.mkdirSync(path.dirname(lora), { recursive: true });
    fs.copyFileSync(path.join(golden, '..', 'cases', 'lora-kohya-dit.safetensors'), lora);
  });

  it('lists the workspace LoRA in the picker; a picked LoRA reaches the request, changes the image and is recorded in it', async () => {
    await vscode.commands.executeCommand('majicflux.openPanel');
    panel = await waitFor('the panel', () => api.panel());
    await waitFor('the webview to say ready', () => panel.received.includes('ready'), 30_000);
    const listed = await waitFor('the LoRA list', () => {
      const m = panel.sent.get('loras') as Extract<ToWebview, { type: 'loras' }> | undefined;
      return m?.items.find((l) => l.name === 'ink');
    });
    assert.equal(listed.path, lora);
    assert.ok(!(panel.sent.get('loras') as Extract<ToWebview, { type: 'loras' }>).items.some((l) => l.path.includes(`${path.sep}models${path.sep}`)), 'no model file offered');
    const job = await generate({ ...base, prompt: 'an ink drawing of a fox', loras: [{ path: listed.path, strength: 0.8 }] });
    assert.deepEqual(job.request.params.loras, [{ path: lora, strength: 0.8 }]);
    made = job.result!.file;
    const png = await readPngParameters(made);
    assert.equal(png.params?.prompt, 'an ink drawing of a fox');
    assert.equal(png.params?.seed, 11);
    const recorded = png.json?.loras as { name: string; strength: number; hash: string }[];
    assert.deepEqual(recorded.map((l) => [l.name, l.strength]), [['ink', 0.8]]);
    assert.match(recorded[0].hash, /^[0-9a-f]{12}$/);
    assert.ok(api.history.byFile(made), 'in the history, for Vary');
    // Applied: the same seed and prompt without it make other pixels.
    const plain = await generate({ ...base, prompt: 'an ink drawing of a fox' });
    assert.equal(plain.request.params.loras, undefined);
    assert.notDeepEqual(await pixels(plain.result!.file), await pixels(made));
  });

  it('"Vary this image" on a result makes it the input image and the next Generate an image-to-image request with it', async () => {
    const entry = api.history.byFile(made)!;
    panel.fromWebview({ type: 'history', action: 'vary', id: entry.id });
    // The workspace state holds the new image before the message goes out: wait for the message.
    const sent = await waitFor('the input image sent to the webview', () => {
      const m = panel.sent.get('inputImage') as Extract<ToWebview, { type: 'inputImage' }> | undefined;
      return panel.inputImage === made && m?.image?.path === made ? m : undefined;
    });
    assert.equal(sent.image?.path, made);
    assert.match(sent.image!.src, /^https?:|^vscode-/, 'a webview URI, not a path');
    assert.deepEqual(sent.vary, { strength: DEFAULTS.strength, width: 64, height: 64 });
    const job = await generate({ ...base, prompt: 'an ink drawing of a fox, at night', image: made, strength: DEFAULTS.strength, imageFit: 'crop' });
    assert.deepEqual([job.request.params.image, job.request.params.strength, job.request.params.imageFit], [made, DEFAULTS.strength, 'crop']);
    assert.notEqual(job.result!.file, made);
    const png = await readPngParameters(job.result!.file);
    assert.equal(png.params?.prompt, 'an ink drawing of a fox, at night');
    assert.deepEqual([png.json?.image, png.json?.strength, png.json?.imageFit], [made, DEFAULTS.strength, 'crop'], 'the PNG records its input image');
  });

  it('Re-run of the LoRA image finds the LoRA by its recorded name in the workspace and makes the same pixels', async () => {
    const run = await vscode.commands.executeCommand<RunResult>('majicflux.rerunFromImage', vscode.Uri.file(made), 'same');
    assert.ok(run, 'a run started');
    const [job] = await run.finished;
    assert.equal(job.state, 'done', job.error?.message);
    assert.deepEqual(job.request.params.loras, [{ path: lora, strength: 0.8 }]);
    assert.deepEqual(await pixels(job.result!.file), await pixels(made));
  });

  it('Re-run of the LoRA image when the LoRA of that name is now another file: made, and the saved message says the LoRA differs (hashes)', async () => {
    const original = fs.readFileSync(lora);
    const golden = vscode.workspace.getConfiguration('majicflux').get<string>('model.path')!;
    fs.copyFileSync(path.join(golden, '..', 'cases', 'lora-peft.safetensors'), lora);
    try {
      const before = api.announcedWarnings.length;
      const run = await vscode.commands.executeCommand<RunResult>('majicflux.rerunFromImage', vscode.Uri.file(made), 'same');
      const [job] = await run.finished;
      assert.equal(job.state, 'done', job.error?.message);
      const shown = await waitFor('the saved message with the warning', () => api.announcedWarnings[before]);
      assert.match(shown, /LoRA "ink" is another file than the image was made with \(hash [0-9a-f]{12} recorded, [0-9a-f]{12} now\): the image may differ/);
      await vscode.commands.executeCommand('notifications.clearAll');
    } finally {
      fs.writeFileSync(lora, original);
    }
  });

  it('the hires steps and upscaler set in the panel reach the request and the PNG, and a re-run brings them back to the panel', async () => {
    const hires = { scale: 1.5, strength: 0.5, upscale: 'latent', steps: 3 };
    const job = await generate({ ...base, prompt: 'a fox, sharper', hires });
    assert.deepEqual(job.request.params.hires, hires);
    const png = await readPngParameters(job.result!.file);
    assert.deepEqual(png.params?.hires && { ...png.params.hires }, hires, 'recorded in the metadata');
    // Re-run's "Edit in the generation panel": the PNG's parameters as the panel's prefill.
    const { loraRefs: _, ...input } = (await readImageInput(job.result!.file))!;
    panel.prefill(input);
    const prefill = panel.sent.get('prefill') as Extract<ToWebview, { type: 'prefill' }>;
    assert.deepEqual(prefill.params.hires, hires);
  });

  it('an image dropped from the desktop (its bytes) is kept by its hash in the global storage, becomes the input image, and Generate sends that path', async () => {
    const bytes = await sharp({ create: { width: 96, height: 64, channels: 3, background: '#3060a0' } }).png().toBuffer();
    const hash = createHash('sha256').update(bytes).digest('hex');
    // What the webview posts for a File from the OS (media/panel/inputs.js's drop handler).
    panel.fromWebview({ type: 'dropImageBytes', name: 'desk.png', bytes: new Uint8Array(bytes) });
    const sent = await waitFor('the dropped image set as the input image', () => {
      const m = panel.sent.get('inputImage') as Extract<ToWebview, { type: 'inputImage' }> | undefined;
      return m?.image?.path.endsWith(`${hash}.png`) ? m : undefined;
    });
    const stored = sent.image!.path;
    assert.equal(path.basename(path.dirname(stored)), 'inputs');
    assert.equal(panel.inputImage, stored);
    assert.deepEqual(fs.readFileSync(stored), bytes);
    assert.match(sent.image!.src, /^https?:|^vscode-/, 'a thumbnail the webview may load');
    assert.deepEqual(sent.vary, { strength: DEFAULTS.strength, width: 96, height: 64 }, 'as a chosen file: its size, the default strength');
    const job = await generate({ ...base, width: 96, height: 64, prompt: 'a fox in the snow', image: stored, strength: DEFAULTS.strength, imageFit: 'crop' });
    assert.equal(job.request.params.image, stored);
    assert.equal((await readPngParameters(job.result!.file)).json?.image, stored, 'the PNG records that path');
    fromDropped = { png: job.result!.file, input: stored };
    // The same image again is the same file; bytes that are no image change nothing.
    const before = fs.readdirSync(path.dirname(stored)).length;
    panel.fromWebview({ type: 'dropImageBytes', name: 'again.png', bytes: new Uint8Array(bytes) });
    panel.fromWebview({ type: 'dropImageBytes', name: 'fake.png', bytes: new TextEncoder().encode('not a picture') });
    await new Promise((r) => setTimeout(r, 1000));
    assert.equal(fs.readdirSync(path.dirname(stored)).length, before);
    assert.equal(panel.inputImage, stored);
  });

  it('a negative prompt with true CFG off is said with the saved image (a warning, not only the log), and the image is made', async () => {
    await waitFor('the panel', () => api.panel());
    const before = api.announcedWarnings.length;
    const job = await generate({ ...base, prompt: 'a fox in the snow', negativePrompt: 'blurry, watermark', trueCfgScale: 1 });
    assert.ok(fs.existsSync(job.result!.file), 'the image is made');
    assert.ok(job.result!.warnings?.some((w) => /^negative prompt not used: true CFG is off/.test(w)), JSON.stringify(job.result!.warnings));
    const shown = await waitFor('the warning with the saved image', () => api.announcedWarnings[before]);
    assert.ok(shown.includes(path.basename(job.result!.file)), shown);
    assert.match(shown, /Not as asked: negative prompt not used: true CFG is off \(scale 1\); a true CFG scale above 1/);
    await vscode.commands.executeCommand('notifications.clearAll');
    // With true CFG on, the same prompt says nothing of the kind.
    const on = await generate({ ...base, prompt: 'a fox in the snow', negativePrompt: 'blurry, watermark', trueCfgScale: 2 });
    assert.equal(on.result!.warnings, undefined);
  });

  it('a re-run whose dropped input image was pruned names it as such and says to drop it again, and starts nothing until told', async () => {
    const { png, input } = fromDropped!;
    panel.fromWebview({ type: 'clearImage' });
    await waitFor('no input image', () => panel.inputImage === undefined);
    // Unused for 40 days: Clear Dropped Images (what the palette command runs once confirmed) removes it.
    const longAgo = new Date(Date.now() - 40 * 24 * 3600_000);
    fs.utimesSync(input, longAgo, longAgo);
    assert.ok((await api.dropped.pruneAndLog('test', CLEAR_ALL)) >= 1);
    assert.equal(fs.existsSync(input), false, 'pruned');
    const jobsBefore = api.jobs.all().length;
    const noticesBefore = api.missingNotices.length;
    const rerun = vscode.commands.executeCommand<RunResult | undefined>('majicflux.rerunFromImage', vscode.Uri.file(png), 'same');
    const notice = await waitFor('the warning', () => api.missingNotices[noticesBefore]);
    assert.ok(notice.includes(path.basename(png)) && notice.includes(path.basename(input)), notice);
    assert.match(notice, /dropped on the panel, deleted after 30 days unused or by Clear Dropped Images\): drop the image on the panel again/);
    assert.doesNotMatch(notice, /LoRA/, 'no LoRA is missing: no word on the LoRA folder');
    // Dismissed: nothing runs.
    await vscode.commands.executeCommand('notifications.clearAll');
    const settled = await Promise.race([rerun, new Promise((r) => setTimeout(() => r('open'), 5000))]);
    if (settled !== 'open') assert.equal(settled, undefined);
    assert.equal(api.jobs.all().length, jobsBefore, 'no job without the user saying so');
  });

  it('Generate with a dropped input image deleted since (another window\'s prune) names it as a dropped copy and says to drop it again; nothing starts', async () => {
    const bytes = await sharp({ create: { width: 48, height: 48, channels: 3, background: '#a06030' } }).png().toBuffer();
    const hash = createHash('sha256').update(bytes).digest('hex');
    panel.fromWebview({ type: 'dropImageBytes', name: 'later.png', bytes: new Uint8Array(bytes) });
    const stored = await waitFor('the dropped image set as the input image', () => panel.inputImage?.endsWith(`${hash}.png`) && panel.inputImage);
    fs.rmSync(stored);
    const jobsBefore = api.jobs.all().length;
    const warned = panel.warnings.length;
    panel.fromWebview({ type: 'generate', params: { ...base, prompt: 'a fox', image: stored, strength: DEFAULTS.strength, imageFit: 'crop' } });
    const warning = await waitFor('the refusal', () => panel.warnings[warned]);
    assert.equal(
      warning,
      `MajicFLUX cannot generate: input image ${hash}.png (a copy of an image dropped on the panel, deleted after 30 days unused or by Clear Dropped Images): drop the image on the panel again to use it`,
    );
    assert.equal(api.jobs.all().length, jobsBefore);
    panel.fromWebview({ type: 'clearImage' });
    await waitFor('no input image', () => panel.inputImage === undefined);
  });

  it('refuses, before any job, an image the host did not set and a LoRA that is not there', async () => {
    const before = api.jobs.all().length;
    panel.fromWebview({ type: 'generate', params: { ...base, prompt: 'x', image: path.join(ws(), 'notes.md') } });
    await waitFor('the refusal', () => (panel.sent.get('job') as Extract<ToWebview, { type: 'job' }> | undefined)?.job === undefined && panel.sent.has('job'));
    panel.fromWebview({ type: 'generate', params: { ...base, prompt: 'x', loras: [{ path: path.join(ws(), 'loras', 'gone.safetensors'), strength: 1 }] } });
    await new Promise((r) => setTimeout(r, 1000));
    assert.equal(api.jobs.all().length, before);
  });

  it('Vary This Image from the Explorer opens the panel with that image as its input', async () => {
    panel.dispose();
    assert.equal(await vscode.commands.executeCommand('majicflux.varyImage', vscode.Uri.file(made)), true);
    const p = await waitFor('the panel', () => api.panel());
    assert.equal(p.inputImage, made);
    // The init message follows 'ready' once the saved input image is checked (an await): waited for, not raced.
    const init = (await waitFor('the init message', () => p.sent.get('init'), 30_000)) as InitMessage;
    assert.equal(init.image?.path, made, 'the reopened webview shows it');
    assert.equal(await vscode.commands.executeCommand('majicflux.varyImage', vscode.Uri.file(path.join(ws(), 'notes.md'))), false, 'not an image');
    assert.equal(p.inputImage, made);
    panel = p;
  });

  it('a panel reopened after its input image was deleted clears it and says so, instead of showing a broken picture', async () => {
    const gone = path.join(ws(), 'soon-gone.png');
    fs.copyFileSync(made, gone);
    assert.equal(await panel.setInputImage(gone), true);
    panel.dispose();
    fs.rmSync(gone);
    await vscode.commands.executeCommand('majicflux.openPanel');
    const p = await waitFor('the panel', () => api.panel());
    await waitFor('the webview to say ready', () => p.received.includes('ready'), 30_000);
    const warning = await waitFor('the notice', () => p.warnings.find((w) => w.startsWith('The input image was cleared')));
    assert.equal(warning, `The input image was cleared: the input image ${gone} is not there any more; choose it again.`);
    assert.equal(((await waitFor('the init message', () => p.sent.get('init'))) as InitMessage).image, undefined, 'no picture sent');
    assert.equal(p.inputImage, undefined);
    await vscode.commands.executeCommand('notifications.clearAll');
    panel = p;
  });

  after(() => {
    fs.rmSync(path.join(ws(), 'loras'), { recursive: true, force: true });
  });
});
