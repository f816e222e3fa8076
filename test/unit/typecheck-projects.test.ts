// The per-layer tsconfig projects (`npm run typecheck`): src/tsconfig.json must reject vscode in
// src/inference/ and src/shared/, however it is imported, while src/extension/tsconfig.json accepts
// it. Each case type-checks one in-memory file placed in the tree under that project's options.
import * as assert from 'node:assert/strict';
import * as path from 'node:path';
import ts from 'typescript';

const ROOT = path.resolve(__dirname, '../..');

/** The diagnostics of `code` as the file `rel`, compiled with the options of the project `project`. */
function diagnose(project: string, rel: string, code: string): string[] {
  const configFile = path.join(ROOT, project, 'tsconfig.json');
  const read = ts.readConfigFile(configFile, ts.sys.readFile);
  assert.equal(read.error, undefined);
  const { options, errors } = ts.parseJsonConfigFileContent(read.config, ts.sys, path.dirname(configFile), undefined, configFile);
  assert.deepEqual(errors, []);
  const file = path.join(ROOT, rel);
  const host = ts.createCompilerHost(options);
  const getSourceFile = host.getSourceFile.bind(host);
  host.getSourceFile = (name, lang, ...rest) => (path.resolve(name) === file ? ts.createSourceFile(name, code, lang) : getSourceFile(name, lang, ...rest));
  const fileExists = host.fileExists.bind(host);
  host.fileExists = (name) => path.resolve(name) === file || fileExists(name);
  const program = ts.createProgram([file], options, host);
  return ts.getPreEmitDiagnostics(program).map((d) => `${d.file ? path.relative(ROOT, d.file.fileName) : ''}: ${ts.flattenDiagnosticMessageText(d.messageText, '\n')}`);
}

describe('typecheck: vscode only where it may be used', function () {
  this.timeout(60_000);

  const uses = [
    "import * as vscode from 'vscode';\nexport const w = vscode.window;\n",
    "import type { Uri } from 'vscode';\nexport type U = Uri;\n",
    'export const t: Thenable<number> | undefined = undefined;\n',
  ];

  it('src/inference/ and src/shared/ fail to type-check with any use of vscode', () => {
    for (const rel of ['src/inference/server/x.ts', 'src/shared/x.ts']) {
      for (const code of uses) assert.notDeepEqual(diagnose('src', rel, code), [], `${rel}: ${code}`);
    }
    // an import alone, unused, reaches the file that fails
    assert.ok(diagnose('src', 'src/shared/x.ts', "import 'vscode';\n").some((d) => d.startsWith('scripts/lint/vscode-unavailable.ts')));
  });

  it('the same code type-checks in src/extension/, and node code in src/inference/', () => {
    for (const code of uses) assert.deepEqual(diagnose('src/extension', 'src/extension/x.ts', code), [], code);
    assert.deepEqual(diagnose('src', 'src/inference/x.ts', "import * as fs from 'node:fs';\nexport const e = fs.existsSync('.');\n"), []);
  });
});
