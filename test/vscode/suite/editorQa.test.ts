// The editor as a demanding user meets it: refusals that reach the log. Runs after the other host suites (same extension host, server and workspace).

import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as vscode from 'vscode';
import type { MajicfluxApi } from '../../../src/extension/extension';
import type { RunResult } from '../../../src/extension/generation';
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

  it('a .flux hires pass past the size limit is refused before the server sees it, once for its count, and logged', async () => {
    const file = path.join(ws(), 'hires-too-large.flux');
    fs.writeFileSync(file, 'a cat on a wall\nwidth: 1536\nheight: 1536\nhires: 2\ncount: 3\n');
    const document = await vscode.workspace.openTextDocument(file);
    const before = api.jobs.all().length;
    const runs = await vscode.commands.executeCommand<RunResult[] | undefined>('majicflux.generateFluxFile', document.uri.toString());
    assert.deepEqual(runs, [], 'nothing ran');
    assert.equal(api.jobs.all().length, before, 'no job submitted (was: three, each failing on the server)');
    await waitFor('the refusal in the log', () => logLines().find((l) => /not generating: MajicFLUX cannot generate: a hires pass ×2 on 1536×1536 makes 3072×3072; sides stop at 2048: use a smaller scale \(at most ×1\.33\)/.test(l)), 5_000);
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
});
