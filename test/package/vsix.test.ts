// The .vsix files of `npm run package` (scripts/package.mjs), by content: each target's package has
// its own onnxruntime-node and sharp binaries and no other platform's, the runtime files and none of
// the sources, tests or fixtures, and README links that resolve. The package for this machine's
// platform (linux-x64 here) is also unpacked and its native modules loaded and run. Run by
// `npm run test:package`, which builds the packages first.
import * as assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { PANEL_SCRIPTS } from '../../src/extension/panel/scripts';
import { Zip } from './zip';

const ROOT = path.resolve(__dirname, '../..');
const OUT = process.env.MAJICFLUX_VSIX_DIR ?? path.join(ROOT, 'dist-vsix');
const pkg = JSON.parse(fs.readFileSync(path.join(ROOT, 'package.json'), 'utf8')) as { version: string; main: string; repository?: unknown };

interface Expect {
  os: string;
  cpu: string;
  /** onnxruntime-node's files in bin/napi-v6/<os>/<cpu>. */
  ort: string[];
  /** sharp's platform packages (@img/…) and one native file each must have (regexp on the path inside). */
  img: Record<string, RegExp>;
  /** onnxruntime-node's CUDA installer and its dependencies (Linux x64 only). */
  cudaInstaller: boolean;
}

// onnxruntime 1.31 ships no dxil.dll: its Dawn signs shaders with dxcompiler.dll alone.
const ORT_WIN = ['onnxruntime_binding.node', 'onnxruntime.dll', 'DirectML.dll', 'dxcompiler.dll'];
const TARGETS: Record<string, Expect> = {
  'linux-x64': {
    os: 'linux',
    cpu: 'x64',
    ort: ['onnxruntime_binding.node', 'libonnxruntime.so.1'],
    img: { 'sharp-linux-x64': /^lib\/sharp-linux-x64-[\d.]+\.node$/, 'sharp-libvips-linux-x64': /^lib\/libvips-cpp\.so\.[\d.]+$/ },
    cudaInstaller: true,
  },
  'linux-arm64': {
    os: 'linux',
    cpu: 'arm64',
    ort: ['onnxruntime_binding.node', 'libonnxruntime.so.1'],
    img: { 'sharp-linux-arm64': /^lib\/sharp-linux-arm64-[\d.]+\.node$/, 'sharp-libvips-linux-arm64': /^lib\/libvips-cpp\.so\.[\d.]+$/ },
    cudaInstaller: false,
  },
  'win32-x64': {
    os: 'win32',
    cpu: 'x64',
    ort: ORT_WIN,
    img: { 'sharp-win32-x64': /^lib\/sharp-win32-x64-[\d.]+\.node$/ },
    cudaInstaller: false,
  },
  'win32-arm64': {
    os: 'win32',
    cpu: 'arm64',
    ort: ORT_WIN,
    img: { 'sharp-win32-arm64': /^lib\/sharp-win32-arm64-[\d.]+\.node$/ },
    cudaInstaller: false,
  },
  'darwin-arm64': {
    os: 'darwin',
    cpu: 'arm64',
    ort: ['onnxruntime_binding.node', 'libonnxruntime.1.dylib'],
    img: { 'sharp-darwin-arm64': /^lib\/sharp-darwin-arm64-[\d.]+\.node$/, 'sharp-libvips-darwin-arm64': /^lib\/libvips-cpp\.[\d.]+\.dylib$/ },
    cudaInstaller: false,
  },
};

const E = 'extension/';
const NM = `${E}node_modules/`;
const NATIVE = /\.(node|dll|dylib|exe)$|\.so(\.\d+)*$/;

/** Files the extension runs from (paths inside extension/). */
const REQUIRED = [
  'package.json',
  'package.nls.json',
  'package.nls.zh-cn.json',
  'readme.md',
  'LICENSE.txt',
  'dist/extension.js',
  'dist/server.js',
  'dist/pipelineWorker.js',
  'dist/quantWorker.js',
  'media/icon.png',
  ...PANEL_SCRIPTS.map((f) => `media/panel/${f}`),
  'media/flux/flux.tmLanguage.json',
  'l10n/bundle.l10n.zh-cn.json',
  'models/demo/tokenizer/vocab.json',
  'models/demo/tokenizer_2/tokenizer.json',
];

/** Packages loaded at run time (esbuild.config.mjs keeps them external) and what they load. */
const RUNTIME_PACKAGES = ['onnxruntime-node', 'onnxruntime-common', 'sharp', 'detect-libc', 'semver'];

/** What must never be in a package: sources, tests, fixtures, maps, what esbuild bundled, dev tools. */
const FORBIDDEN: [RegExp, string][] = [
  [/^extension\/(src|test|scripts|scratch|\.vscode|\.vscode-test|\.ci|\.github|generated|bench-out|dist-vsix)\//, 'a repository folder that is not run'],
  [/\.ts$/, 'TypeScript'],
  [/\.map$/, 'a source map'],
  [/(^|\/)fixtures?\//, 'test fixtures'],
  [/(^|\/)(tests?|__tests__)\//, 'tests'],
  [/^extension\/dist\/(cli|bench|gpu-probe)\.js$/, 'a dist entry the extension does not run'],
  [/^extension\/docs\/bench\//, 'benchmark data'],
  [/^extension\/(tsconfig\.json|esbuild\.config\.mjs|\.mocharc\.json|package-lock\.json|\.gitignore|\.vscodeignore)$/, 'a build file'],
  [/^extension\/node_modules\/(@huggingface|protobufjs|@protobufjs|long|@types|undici-types|typescript|esbuild|@esbuild|mocha|tsx|@vscode|eslint|@eslint|typescript-eslint|@typescript-eslint)\//, 'a package esbuild bundled or a devDependency'],
  [/\.vsix$/, 'a package inside the package'],
];

/** Relative Markdown links (not URLs, not anchors) of a README. */
function relativeLinks(md: string): string[] {
  const out: string[] = [];
  for (const m of md.matchAll(/!?\[[^\]]*\]\(([^)\s]+)(?:\s+"[^"]*")?\)/g)) {
    const link = m[1];
    if (/^[a-z][a-z0-9+.-]*:/i.test(link) || link.startsWith('#')) continue;
    out.push(link.replace(/#.*$/, ''));
  }
  return out;
}

/** A one-node ONNX model, y = x + x over float[2], as protobuf bytes (no protobuf library). */
function addModel(): Buffer {
  const varint = (n: number) => {
    const b: number[] = [];
    while (n > 0x7f) {
      b.push((n & 0x7f) | 0x80);
      n >>>= 7;
    }
    b.push(n);
    return Buffer.from(b);
  };
  const field = (no: number, v: Buffer | string) => {
    const data = typeof v === 'string' ? Buffer.from(v) : v;
    return Buffer.concat([varint((no << 3) | 2), varint(data.length), data]);
  };
  const int = (no: number, v: number) => Buffer.concat([varint(no << 3), varint(v)]);
  const valueInfo = (name: string) =>
    Buffer.concat([field(1, name), field(2, field(1, Buffer.concat([int(1, 1), field(2, field(1, int(1, 2)))])))]);
  const node = Buffer.concat([field(1, 'x'), field(1, 'x'), field(2, 'y'), field(4, 'Add')]);
  const graph = Buffer.concat([field(1, node), field(2, 'g'), field(11, valueInfo('x')), field(12, valueInfo('y'))]);
  return Buffer.concat([int(1, 8), field(7, graph), field(8, int(2, 17))]);
}

const sizes: string[] = [];

describe('packaged .vsix files (npm run package)', function () {
  this.timeout(120000);

  after(() => {
    if (sizes.length) console.log(`\n  sizes:\n${sizes.map((s) => `    ${s}`).join('\n')}`);
  });

  it('exist for every target, and for no unsupported one (darwin-x64: onnxruntime-node 1.31 has no binaries)', () => {
    const files = fs.existsSync(OUT) ? fs.readdirSync(OUT).filter((f) => f.endsWith('.vsix')) : [];
    for (const t of Object.keys(TARGETS)) assert.ok(files.includes(`majicflux-${t}-${pkg.version}.vsix`), `${OUT}: no package for ${t} (run npm run package)`);
    assert.deepEqual(
      files.filter((f) => !Object.keys(TARGETS).some((t) => f === `majicflux-${t}-${pkg.version}.vsix`)),
      [],
      'packages other than the supported targets of this version',
    );
  });

  it('the packaging script refuses darwin-x64 with the reason', () => {
    const r = spawnSync(process.execPath, [path.join(ROOT, 'scripts', 'package.mjs'), 'darwin-x64', '--no-build'], { encoding: 'utf8' });
    assert.equal(r.status, 1);
    assert.match(r.stderr, /no darwin-x64 package: onnxruntime-node 1\.31 ships no darwin\/x64 binaries/);
  });

  for (const [target, x] of Object.entries(TARGETS)) {
    describe(target, () => {
      let zip: Zip;
      let names: string[];
      const file = path.join(OUT, `majicflux-${target}-${pkg.version}.vsix`);

      before(function () {
        assert.ok(fs.existsSync(file), `${file} is missing: npm run package builds it (npm run test:package does both)`);
        zip = new Zip(file);
        names = zip.names;
        const unpacked = zip.entries.reduce((s, e) => s + e.size, 0);
        sizes.push(
          `${path.basename(file).padEnd(36)} ${(fs.statSync(file).size / 2 ** 20).toFixed(1).padStart(5)} MiB (${(unpacked / 2 ** 20).toFixed(1)} MiB unpacked, ${names.length} files)`,
        );
      });

      it('is marked for its target and carries the manifest, the runtime files and the licence', () => {
        assert.match(zip.text('extension.vsixmanifest'), new RegExp(`<Identity [^>]*TargetPlatform="${target}"`));
        for (const f of REQUIRED) assert.ok(zip.has(E + f), `missing ${f}`);
        const manifest = JSON.parse(zip.text(`${E}package.json`));
        assert.equal(manifest.version, pkg.version);
        assert.ok(zip.has(E + path.posix.normalize(manifest.main.replace(/^\.\//, ''))), `main ${manifest.main} is not in the package`);
        assert.equal(manifest.scripts, undefined, 'build scripts in the shipped package.json');
        assert.equal(manifest.devDependencies, undefined, 'devDependencies in the shipped package.json');
        assert.match(zip.text(`${E}LICENSE.txt`), /^MIT License/);
        for (const p of RUNTIME_PACKAGES) {
          assert.ok(zip.has(`${NM}${p}/package.json`), `missing package ${p}`);
          const main = path.posix.normalize(JSON.parse(zip.text(`${NM}${p}/package.json`)).main ?? 'index.js');
          assert.ok(zip.has(`${NM}${p}/${main}`), `${p}: its main ${main} is not in the package`);
        }
      });

      it(`has onnxruntime-node's ${x.os}/${x.cpu} binaries and no other platform's`, () => {
        const dir = `${NM}onnxruntime-node/bin/napi-v6/`;
        for (const f of x.ort) assert.ok(zip.has(`${dir}${x.os}/${x.cpu}/${f}`), `missing ${x.os}/${x.cpu}/${f}`);
        const others = names.filter((n) => n.startsWith(dir) && !n.startsWith(`${dir}${x.os}/${x.cpu}/`));
        assert.deepEqual(others, [], 'another platform’s onnxruntime binaries');
      });

      it("has sharp's @img packages for this platform only", () => {
        const img = [...new Set(names.filter((n) => n.startsWith(`${NM}@img/`)).map((n) => n.slice(`${NM}@img/`.length).split('/')[0]))].sort();
        assert.deepEqual(img, ['colour', ...Object.keys(x.img)].sort());
        for (const [p, native] of Object.entries(x.img)) {
          const prefix = `${NM}@img/${p}/`;
          assert.ok(names.some((n) => n.startsWith(prefix) && native.test(n.slice(prefix.length))), `${p}: no file like ${native}`);
        }
      });

      it('has native binaries only in those folders', () => {
        const allowed = [`${NM}onnxruntime-node/bin/napi-v6/${x.os}/${x.cpu}/`, ...Object.keys(x.img).map((p) => `${NM}@img/${p}/`)];
        const stray = names.filter((n) => NATIVE.test(n) && !allowed.some((a) => n.startsWith(a)));
        assert.deepEqual(stray, []);
      });

      it(x.cudaInstaller ? "keeps onnxruntime-node's CUDA installer and its dependencies" : "leaves out onnxruntime-node's CUDA installer (Linux x64 only)", () => {
        const present = [`${NM}onnxruntime-node/script/install.js`, `${NM}adm-zip/package.json`, `${NM}global-agent/package.json`].map((f) => zip.has(f));
        assert.deepEqual(present, [x.cudaInstaller, x.cudaInstaller, x.cudaInstaller]);
      });

      it('has no sources, tests, fixtures, maps, bundled packages or build files', () => {
        const bad = names.flatMap((n) => FORBIDDEN.filter(([re]) => re.test(n)).map(([, why]) => `${n} (${why})`));
        assert.deepEqual(bad, []);
      });

      it("has README links that resolve (relative ones to the package's docs/)", () => {
        const links = relativeLinks(zip.text(`${E}readme.md`));
        if (pkg.repository) assert.deepEqual(links, [], 'vsce should have made the links absolute');
        else assert.ok(links.length > 0, 'the README has no relative links to check');
        for (const l of links) assert.ok(zip.has(E + path.posix.normalize(l)), `README link ${l}: not in the package`);
      });

      // Only this machine's platform can load its binaries: the others are checked by content alone.
      const host = `${process.platform}-${process.arch}` === target;
      if (host) it('unpacked, loads and runs its onnxruntime-node and sharp (this machine’s platform)', () => {
        const dir = fs.mkdtempSync(path.join(os.tmpdir(), `majicflux-vsix-run-`));
        try {
          for (const e of zip.entries) {
            if (!e.name.startsWith(NM) || e.name.endsWith('/')) continue;
            const to = path.join(dir, e.name.slice(E.length));
            fs.mkdirSync(path.dirname(to), { recursive: true });
            fs.writeFileSync(to, zip.read(e.name));
          }
          fs.writeFileSync(path.join(dir, 'add.onnx'), addModel());
          const script = `
            const ort = require('onnxruntime-node'); const sharp = require('sharp');
            (async () => {
              const s = await ort.InferenceSession.create(${JSON.stringify(path.join(dir, 'add.onnx'))});
              const r = await s.run({ x: new ort.Tensor('float32', Float32Array.from([1, 2]), [2]) });
              const png = await sharp({ create: { width: 2, height: 2, channels: 3, background: '#ff0000' } }).png().toBuffer();
              const meta = await sharp(png).metadata();
              console.log(JSON.stringify({ y: Array.from(r.y.data), backends: ort.listSupportedBackends().map((b) => b.name), ort: require.resolve('onnxruntime-node'), png: meta.format + ' ' + meta.width + 'x' + meta.height }));
            })().catch((e) => { console.error(e); process.exit(1); });`;
          const r = spawnSync(process.execPath, ['-e', script], { cwd: dir, encoding: 'utf8', env: { ...process.env, NODE_PATH: '' } });
          assert.equal(r.status, 0, r.stderr);
          const out = JSON.parse(r.stdout.trim().split('\n').pop() ?? '{}');
          assert.deepEqual(out.y, [2, 4]);
          assert.ok(out.ort.startsWith(dir), `onnxruntime-node resolved outside the unpacked package: ${out.ort}`);
          assert.equal(out.png, 'png 2x2');
          assert.ok(out.backends.includes('cpu'));
        } finally {
          fs.rmSync(dir, { recursive: true, force: true });
        }
      });
    });
  }
});
