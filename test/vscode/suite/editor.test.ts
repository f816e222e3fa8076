// Issue 15, items 8–12, in a real VS Code: CodeLens timing, the palette's prompt facts, the Models
// view with the demo model. Runs after extension.test.ts (same extension host, server and workspace).

import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as vscode from 'vscode';
import type { MajicfluxApi } from '../../../src/extension/extension';
import type { RunResult } from '../../../src/extension/generation';
import { blockKey } from '../../../src/extension/history';
import type { Job } from '../../../src/extension/jobs';
import { waitFor } from './waitFor';

const ws = () => vscode.workspace.workspaceFolders![0].uri.fsPath;


/** Every CodeLens change event with the titles the provider gives at that moment. */
function watchLenses(api: MajicfluxApi, document: vscode.TextDocument) {
  const events: { at: number; titles: string[] }[] = [];
  const sub = api.flux.codeLens.onDidChangeCodeLenses(() => {
    events.push({ at: Date.now(), titles: api.flux.codeLens.provideCodeLenses(document).map((l) => l.command?.title ?? '') });
  });
  return { events, dispose: () => sub.dispose() };
}

describe('MajicFLUX in a real VS Code: the editor (issue 15 items 8–12)', function () {
  let api: MajicfluxApi;

  before(async () => {
    api = await vscode.extensions.getExtension<MajicfluxApi>('majicflux.majicflux')!.activate();
  });

  it('CodeLens: "1 image" is redrawn at once when the image is written, not after a throttle (item 9)', async () => {
    const file = path.join(ws(), 'lens.flux');
    fs.writeFileSync(file, 'a small green frog on a leaf\nwidth: 64\nheight: 64\nsteps: 2\n');
    const document = await vscode.workspace.openTextDocument(file);
    await vscode.window.showTextDocument(document);
    const lenses = watchLenses(api, document);
    try {
      const runs = await vscode.commands.executeCommand<RunResult[]>('majicflux.generateFluxFile', document.uri.toString());
      const [job] = await runs[0].finished;
      assert.equal(job.state, 'done', job.error?.message);
      // Set just before the job's last change event, which records the image.
      const doneAt = job.finished!;
      const shown = await waitFor('the "1 image" lens event', () => lenses.events.find((e) => e.at >= doneAt && e.titles.includes('$(file-media) 1 image')), 5_000);
      const lag = shown.at - doneAt;
      console.log(`item 9: "1 image" lens event ${lag} ms after the job finished`);
      assert.ok(lag < 150, `"1 image" redrawn ${lag} ms after the image was written`);
    } finally {
      lenses.dispose();
    }
  });

  it('CodeLens: Cancel returns the block to "Generate" at once, before the server confirms at its next step (item 9)', async () => {
    const document = await vscode.workspace.openTextDocument(path.join(ws(), 'slow.flux'));
    await vscode.window.showTextDocument(document);
    const key = blockKey('a very slow painting of a harbour at night');
    const runs = await vscode.commands.executeCommand<RunResult[]>('majicflux.generateFluxBlock', document.uri.toString(), key);
    const job: Job = runs[0].jobs[0];
    await waitFor('the first step', () => job.step !== undefined && job.step >= 1, 120_000);
    const lenses = watchLenses(api, document);
    let confirmedAt = 0;
    const sub = api.jobs.onDidChange((j) => {
      if (j === job && j.state === 'cancelled' && !confirmedAt) confirmedAt = Date.now();
    });
    try {
      const t0 = Date.now();
      await vscode.commands.executeCommand('majicflux.cancelFluxBlock', document.uri.toString(), key);
      const back = await waitFor('the Generate lens', () => lenses.events.find((e) => e.titles.includes('$(play) Generate') && !e.titles.some((x) => x.includes('Cancel'))), 10_000);
      const [end] = await runs[0].finished;
      assert.equal(end.state, 'cancelled');
      console.log(`item 9: after Cancel, "Generate" lens after ${back.at - t0} ms; the server confirmed after ${confirmedAt - t0} ms`);
      assert.ok(back.at <= confirmedAt, `the lens waited for the server (${back.at - t0} ms vs ${confirmedAt - t0} ms)`);
      assert.ok(back.at - t0 < 150, `${back.at - t0} ms`);
    } finally {
      sub.dispose();
      lenses.dispose();
    }
  });

  it('the palette\'s prompt box says what CLIP and T5 will ignore, before generating (item 11)', async () => {
    const running = vscode.commands.executeCommand<RunResult | undefined>('majicflux.generate');
    const pick = await waitFor('the prompt box', () => api.promptPick(), 10_000);
    const long = Array.from({ length: 100 }, (_, i) => `word${i}`).join(' ');
    pick.value = long;
    const item = await waitFor('the warning under the prompt', () => pick.items.find((i) => i.label === long && i.detail), 10_000);
    assert.match(item.detail!, /\$\(warning\) CLIP reads only the first 77 tokens of this \d+-token prompt; it ignores everything from "word\d+ /);
    pick.value = '一只猫坐在窗边，油画风格';
    const zh = await waitFor('the T5 warning', () => pick.items.find((i) => i.label === pick.value && i.detail), 10_000);
    assert.match(zh.detail!, /T5/);
    pick.value = 'a short english prompt';
    await new Promise((r) => setTimeout(r, 500));
    assert.equal(pick.items.find((i) => i.label === 'a short english prompt')?.detail, undefined, 'no warning for a prompt that fits');
    pick.hide();
    assert.equal(await running, undefined, 'nothing generated');
  });

  it('the Models view says the demo model is in use when the status bar says so (item 10)', async () => {
    const cfg = vscode.workspace.getConfiguration('majicflux');
    const golden = cfg.get<string>('model.path');
    assert.doesNotMatch(String(api.models.view.view.description ?? ''), /demo/);
    await cfg.update('model.path', '', vscode.ConfigurationTarget.Workspace);
    try {
      await waitFor('the demo in the view header', () => /demo model/.test(String(api.models.view.view.description ?? '')), 10_000);
    } finally {
      await cfg.update('model.path', golden, vscode.ConfigurationTarget.Workspace);
    }
    await waitFor('the header without the demo', () => !/demo/.test(String(api.models.view.view.description ?? '')), 10_000);
  });
});
