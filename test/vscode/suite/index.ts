// Entry of the extension-host tests (extensionTestsPath): runs mocha inside the real VS Code
// extension host and writes a results file that scripts/vscode-test.mjs reads.

import * as fs from 'node:fs';
import * as path from 'node:path';
import Mocha from 'mocha';

export async function run(): Promise<void> {
  const mocha = new Mocha({ ui: 'bdd', timeout: 180_000, color: false, reporter: 'spec' });
  const grep = process.env.MAJICFLUX_TEST_GREP;
  if (grep) mocha.grep(grep);
  // The test files are bundled with this one: install mocha's globals, then evaluate them.
  mocha.suite.emit('pre-require', globalThis, 'bundle', mocha);
  const suite = process.env.MAJICFLUX_TEST_SUITE;
  if (suite === 'untrusted') require('./untrusted.test');
  else if (suite === 'multiroot') require('./multiRoot.test');
  else {
    require('./extension.test');
    require('./editor.test');
    require('./fluxInputs.test');
    require('./panel13.test');
    require('./editorQa.test');
  }

  const results = { passed: 0, failed: 0, pending: 0, lines: [] as string[], failures: [] as { title: string; error: string }[] };
  await new Promise<void>((resolve) => {
    const runner = mocha.run(() => resolve());
    runner.on('pass', (test) => {
      results.passed++;
      results.lines.push(`✔ ${test.fullTitle()} (${test.duration ?? 0} ms)`);
    });
    runner.on('pending', () => results.pending++);
    runner.on('fail', (test, err: Error) => {
      results.failed++;
      results.lines.push(`✘ ${test.fullTitle()}`);
      results.failures.push({ title: test.fullTitle(), error: `${err.message}\n${err.stack ?? ''}` });
    });
  });
  // Next to this bundle, where the runner looks.
  fs.writeFileSync(path.join(__dirname, 'host-results.json'), JSON.stringify(results, null, 2));
  console.log(`extension host: ${results.passed} passed, ${results.failed} failed`);
  if (results.failed) throw new Error(`${results.failed} test(s) failed`);
}
