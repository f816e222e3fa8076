// The layers' boundaries (eslint.config.mjs, scripts/lint/layers.mjs) and the import-cycle check
// (scripts/lint/cycles.ts): each rule fires on a snippet that breaks it, placed at a path in the
// tree (the file need not exist), and stays quiet on its allowed neighbour.
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { pathToFileURL } from 'node:url';
import { ESLint } from 'eslint';
import { findCycles, importGraph } from '../../scripts/lint/cycles';

const ROOT = path.resolve(__dirname, '../..');

describe('lint: layer boundaries', function () {
  this.timeout(60_000);
  let eslint: ESLint;
  let mayLoad: string[];

  before(async () => {
    eslint = new ESLint({ cwd: ROOT });
    mayLoad = (await import(pathToFileURL(path.join(ROOT, 'eslint.config.mjs')).href)).EXTENSION_MAY_LOAD;
  });

  /** The boundary violations ESLint reports for `code` as the file `filePath`, as their specifiers. */
  async function denied(filePath: string, code: string): Promise<string[]> {
    const [result] = await eslint.lintText(code, { filePath, warnIgnored: true });
    // a parse error or another rule would make an empty answer meaningless; the extension's
    // require() rule has its own test below
    const other = result.messages.filter((m) => m.ruleId !== 'layers/boundaries' && m.ruleId !== '@typescript-eslint/no-require-imports');
    assert.deepEqual(other, [], `only boundary problems expected in ${filePath}`);
    return result.messages.filter((m) => m.ruleId === 'layers/boundaries').map((m) => /^'([^']+)'/.exec(m.message)![1]);
  }

  it('no vscode in src/inference/ or src/shared/; the extension may use it', async () => {
    const code = "import * as vscode from 'vscode';\nexport const w = vscode.window;\n";
    assert.deepEqual(await denied('src/inference/server/x.ts', code), ['vscode']);
    assert.deepEqual(await denied('src/shared/x.ts', code), ['vscode']);
    assert.deepEqual(await denied('src/extension/x.ts', code), []);
  });

  it('src/inference/ never loads src/extension/', async () => {
    assert.deepEqual(await denied('src/inference/server/x.ts', "export { readSettings } from '../../extension/settings';\n"), ['../../extension/settings']);
  });

  it('src/shared/ loads neither side, only itself, node built-ins and valibot', async () => {
    assert.deepEqual(await denied('src/shared/x.ts', "import { a } from '../inference/formats/png';\nexport const b = a;\n"), ['../inference/formats/png']);
    assert.deepEqual(await denied('src/shared/x.ts', "import { a } from '../extension/settings';\nexport const b = a;\n"), ['../extension/settings']);
    assert.deepEqual(await denied('src/shared/x.ts', "import { T } from '@huggingface/tokenizers';\nexport const b = T;\n"), ['@huggingface/tokenizers']);
    const allowed = "import * as v from 'valibot';\nimport * as fs from 'node:fs';\nimport * as p from 'path';\nimport { x } from './params';\nexport const b = [v, fs, p, x];\n";
    assert.deepEqual(await denied('src/shared/x.ts', allowed), []);
  });

  it('the extension loads inference code only from the listed pure modules, however it names them', async () => {
    const forms = [
      "import { s } from '../inference/onnx/session';\nexport const a = s;\n",
      "export * from '../inference/pipeline/pipeline';\n",
      "export const a = require('../inference/models/demo');\n",
      "export type D = typeof import('../inference/models/demo');\n",
      "export const a = () => import('../inference/server/server');\n",
    ];
    for (const code of forms) assert.equal((await denied('src/extension/x.ts', code)).length, 1, code);
    // the same module from one folder deeper is the same module
    assert.deepEqual(await denied('src/extension/fluxFile/x.ts', "import { s } from '../../inference/onnx/session';\nexport const a = s;\n"), ['../../inference/onnx/session']);
    for (const m of mayLoad) {
      const spec = `../../${m.replace(/^src\//, '')}`;
      assert.deepEqual(await denied('src/extension/fluxFile/x.ts', `import * as m from '${spec}';\nexport const a = m;\n`), [], m);
    }
  });

  it('a listed module loads no inference module outside the list, so what the extension reaches stays pure', async () => {
    assert.ok(mayLoad.includes('src/inference/formats/pngText'));
    assert.deepEqual(await denied('src/inference/formats/pngText.ts', "import { s } from '../onnx/session';\nexport const a = s;\n"), ['../onnx/session']);
    assert.deepEqual(await denied('src/inference/formats/pngText.ts', "import { p } from './infotext';\nimport { r } from '../system/regularFile';\nexport const a = [p, r];\n"), []);
    // an unlisted inference module is free to load the rest of the inference side
    assert.deepEqual(await denied('src/inference/formats/png.ts', "import { s } from '../onnx/session';\nexport const a = s;\n"), []);
  });

  it('native modules never load in the extension host: not from src/extension/, src/shared/ or a listed module', async () => {
    assert.deepEqual(await denied('src/extension/x.ts', "export const o = require('onnxruntime-node');\n"), ['onnxruntime-node']);
    assert.deepEqual(await denied('src/extension/x.ts', "import sharp from 'sharp';\nexport const s = sharp;\n"), ['sharp']);
    assert.deepEqual(await denied('src/inference/formats/tokenizers.ts', "import sharp from 'sharp';\nexport const s = sharp;\n"), ['sharp']);
    assert.deepEqual(await denied('src/inference/onnx/x.ts', "import * as ort from 'onnxruntime-node';\nimport sharp from 'sharp';\nexport const s = [ort, sharp];\n"), []);
  });

  it('production code never loads tests or scripts; files outside src/ like package.json are fine', async () => {
    assert.deepEqual(await denied('src/inference/models/x.ts', "import { f } from '../../../test/helpers/fuzz';\nexport const a = f;\n"), ['../../../test/helpers/fuzz']);
    assert.deepEqual(await denied('src/extension/x.ts', "import { b } from '../../scripts/bench';\nexport const a = b;\n"), ['../../scripts/bench']);
    assert.deepEqual(await denied('src/extension/x.ts', "import pkg from '../../package.json';\nexport const v = pkg.version;\n"), []);
    // tests load production code and each other freely
    assert.deepEqual(await denied('test/unit/x.test.ts', "import { s } from '../../src/inference/onnx/session';\nimport * as vscode from 'vscode';\nexport const a = [s, vscode];\n"), []);
  });

  it('the extension host may require() only where a disable comment says why', async () => {
    const [bare] = await eslint.lintText("export const p = require('node:path');\n", { filePath: 'src/extension/x.ts' });
    assert.deepEqual(bare.messages.map((m) => m.ruleId), ['@typescript-eslint/no-require-imports']);
    const [inference] = await eslint.lintText("export const p = require('node:path');\n", { filePath: 'src/inference/x.ts' });
    assert.deepEqual(inference.messages, []);
  });
});

describe('lint: import cycles', () => {
  it('findCycles names the files of a cycle and finds none in a graph without one', () => {
    const cyclic = new Map([
      ['a', ['b']],
      ['b', ['c']],
      ['c', ['a', 'd']],
      ['d', []],
    ]);
    assert.deepEqual(findCycles(cyclic), [['a', 'b', 'c', 'a']]);
    assert.deepEqual(findCycles(new Map([['a', ['b', 'c']], ['b', ['c']], ['c', []]])), []);
    assert.deepEqual(findCycles(new Map([['a', ['a']]])), [['a', 'a']]);
  });

  it('importGraph follows value imports and re-exports but not type-only imports', () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'majicflux-cycles-'));
    try {
      const src = path.join(dir, 'src');
      fs.mkdirSync(path.join(src, 'sub'), { recursive: true });
      fs.writeFileSync(path.join(src, 'a.ts'), "import { b } from './sub/b';\nexport const a = b;\nexport interface A { n: number }\n");
      fs.writeFileSync(path.join(src, 'sub', 'b.ts'), "import type { A } from '../a';\nimport { type A as A2 } from '../a';\nexport const b: A | A2 | undefined = undefined;\n");
      fs.writeFileSync(path.join(src, 'sub', 'index.ts'), "export * from './b';\n");
      const graph = importGraph(src);
      assert.deepEqual(graph.get('src/a.ts'), ['src/sub/b.ts']);
      assert.deepEqual(graph.get('src/sub/b.ts'), []);
      assert.deepEqual(graph.get('src/sub/index.ts'), ['src/sub/b.ts']);
      assert.deepEqual(findCycles(graph), []);

      fs.writeFileSync(path.join(src, 'sub', 'b.ts'), "import { a } from '..//a';\nexport const b = 1;\nexport const c = () => a;\n");
      assert.deepEqual(findCycles(importGraph(src)), [['src/a.ts', 'src/sub/b.ts', 'src/a.ts']]);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  it('src/ has no import cycle', () => {
    assert.deepEqual(findCycles(importGraph(path.join(ROOT, 'src'))), []);
  });
});
