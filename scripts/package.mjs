#!/usr/bin/env node
// Builds one platform-specific .vsix per target into dist-vsix/majicflux-<target>-<version>.vsix.
//
//   node scripts/package.mjs [target ...] [--no-build] [--keep-staging] [--out DIR]
//   npm run package [-- target ...]
//
// Targets: linux-x64 linux-arm64 win32-x64 win32-arm64 darwin-arm64 (all of them by default).
// darwin-x64 is refused: onnxruntime-node 1.31's npm package has no darwin/x64 binaries.
//
// Per target, in a staging folder under the system temp dir:
//   1. the files the extension runs from (dist/, media/, l10n/, models/, docs/*.md, README, LICENSE,
//      package.json, package.nls*.json) are copied; dist/ is built once first (vscode:prepublish);
//   2. `npm ci --omit=dev --ignore-scripts --os --cpu [--libc=glibc]` installs the production
//      dependencies from package-lock.json for that platform: sharp's @img/* optional packages of
//      that platform only (from the npm registry or npm's cache), no install scripts (onnxruntime-node's
//      would fetch from NuGet);
//   3. onnxruntime-node's bin/napi-v6/<other platform> folders are deleted;
//   4. the staging .vscodeignore is the repository's plus, for this target, every node_modules package
//      the runtime does not reach from the native externals (onnxruntime-node, sharp; everything else
//      is bundled into dist/ by esbuild) — on targets other than linux-x64 also onnxruntime-node's
//      CUDA installer (script/) and its dependencies (adm-zip, global-agent, …): only Linux x64 has a
//      CUDA provider to install (src/inference/onnx/providers.ts, cudaInstallHint);
//   5. `vsce package --target <target>` (the pinned devDependency @vscode/vsce) writes the .vsix.
// The README's relative links point at docs/*.md, which the package ships. Without a `repository`
// in package.json they are kept relative (--no-rewrite-relative-links); with one, vsce rewrites them
// to absolute URLs of that repository.

import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

/** vsce target → npm os/cpu/libc, onnxruntime-node's bin folder and sharp's @img packages. */
export const TARGETS = {
  'linux-x64': { os: 'linux', cpu: 'x64', libc: 'glibc' },
  'linux-arm64': { os: 'linux', cpu: 'arm64', libc: 'glibc' },
  'win32-x64': { os: 'win32', cpu: 'x64' },
  'win32-arm64': { os: 'win32', cpu: 'arm64' },
  'darwin-arm64': { os: 'darwin', cpu: 'arm64' },
};

/** Targets vsce knows that get no package, and why. */
export const UNSUPPORTED = {
  'darwin-x64':
    'onnxruntime-node 1.31 ships no darwin/x64 binaries (its npm package has bin/napi-v6/darwin/arm64 only), so the extension could not run a model on an Intel Mac',
  'alpine-x64': "onnxruntime-node's Linux binaries need glibc (Alpine uses musl)",
  'alpine-arm64': "onnxruntime-node's Linux binaries need glibc (Alpine uses musl)",
  'linux-armhf': 'onnxruntime-node ships no 32-bit ARM binaries',
  web: 'the extension runs native code (onnxruntime-node, sharp) in a Node extension host',
};

/** Packages esbuild keeps external (esbuild.config.mjs, `external`, less `vscode`): the only ones loaded at run time. */
export const RUNTIME_EXTERNALS = ['onnxruntime-node', 'sharp'];

/** onnxruntime-node's dependencies used only by its installer (script/install.js, the CUDA provider). */
const ORT_INSTALLER_DEPS = ['adm-zip', 'global-agent'];

/** What the package is made of (relative to the repository); .vscodeignore then drops what is not run. */
const COPY = ['package.json', 'package-lock.json', 'README.md', 'LICENSE', 'CHANGELOG.md', 'dist', 'media', 'l10n', 'models', '.vscodeignore'];

export const vsixName = (target, version) => `majicflux-${target}-${version}.vsix`;

function usage(msg) {
  if (msg) console.error(`package: ${msg}`);
  console.error(`usage: node scripts/package.mjs [${Object.keys(TARGETS).join('|')} ...] [--no-build] [--keep-staging] [--out DIR]`);
  process.exit(2);
}

function run(cmd, args, opts = {}) {
  const t0 = Date.now();
  // npm.cmd needs a shell on Windows; there every argument is quoted, since paths may hold spaces.
  const win = process.platform === 'win32';
  const q = (a) => (win && /[\s"]/.test(a) ? `"${a.replace(/"/g, '\\"')}"` : a);
  const r = spawnSync(win ? q(cmd) : cmd, win ? args.map(q) : args, { stdio: ['ignore', 'inherit', 'inherit'], shell: win, ...opts });
  if (r.error) throw r.error;
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')} failed (exit ${r.status}${opts.cwd ? `, in ${opts.cwd}` : ''})`);
  return (Date.now() - t0) / 1000;
}

const npm = process.platform === 'win32' ? 'npm.cmd' : 'npm';

function readJson(file) {
  return JSON.parse(fs.readFileSync(file, 'utf8'));
}

/** Where `name` resolves from `fromDir` inside `nodeModulesRoot`'s tree (node's lookup, nested first). */
function resolvePackage(name, fromDir, stagingRoot) {
  let dir = fromDir;
  for (;;) {
    const candidate = path.join(dir, 'node_modules', name);
    if (fs.existsSync(path.join(candidate, 'package.json'))) return candidate;
    if (dir === stagingRoot) return undefined;
    const up = path.dirname(dir);
    // step out of a node_modules/<scope?>/<pkg> folder to the folder holding that node_modules
    dir = up;
    if (!dir.startsWith(stagingRoot)) return undefined;
  }
}

/**
 * Package folders (relative to the staging root, posix) reachable at run time from the runtime
 * externals, following `dependencies` and installed `optionalDependencies`. `cut` maps a package name
 * to dependency names not to follow.
 */
export function runtimeClosure(stagingRoot, roots, cut = {}) {
  const seen = new Set();
  const stack = roots.map((r) => resolvePackage(r, stagingRoot, stagingRoot)).filter(Boolean);
  while (stack.length) {
    const dir = stack.pop();
    const rel = path.relative(stagingRoot, dir).split(path.sep).join('/');
    if (seen.has(rel)) continue;
    seen.add(rel);
    const pkg = readJson(path.join(dir, 'package.json'));
    const skip = new Set(cut[pkg.name] ?? []);
    for (const dep of [...Object.keys(pkg.dependencies ?? {}), ...Object.keys(pkg.optionalDependencies ?? {})]) {
      if (skip.has(dep)) continue;
      const found = resolvePackage(dep, dir, stagingRoot);
      if (found) stack.push(found);
      else if (!(dep in (pkg.optionalDependencies ?? {}))) throw new Error(`${pkg.name}: dependency ${dep} is not installed`);
    }
  }
  return seen;
}

/** Every installed package folder under `node_modules` (nested ones included), posix, relative to root. */
function installedPackages(stagingRoot) {
  const out = [];
  const walk = (nm) => {
    if (!fs.existsSync(nm)) return;
    for (const e of fs.readdirSync(nm, { withFileTypes: true })) {
      if (!e.isDirectory() || e.name.startsWith('.')) continue;
      const dirs = e.name.startsWith('@') ? fs.readdirSync(path.join(nm, e.name)).map((n) => path.join(nm, e.name, n)) : [path.join(nm, e.name)];
      for (const d of dirs) {
        if (!fs.existsSync(path.join(d, 'package.json'))) continue;
        out.push(path.relative(stagingRoot, d).split(path.sep).join('/'));
        walk(path.join(d, 'node_modules'));
      }
    }
  };
  walk(path.join(stagingRoot, 'node_modules'));
  return out;
}

function copyInto(staging) {
  for (const entry of COPY) {
    const from = path.join(ROOT, entry);
    if (!fs.existsSync(from)) continue;
    fs.cpSync(from, path.join(staging, entry), { recursive: true });
  }
  for (const f of fs.readdirSync(ROOT)) {
    if (/^package\.nls(\..+)?\.json$/.test(f)) fs.copyFileSync(path.join(ROOT, f), path.join(staging, f));
  }
  // The documents README.md links to (docs/*.md; the benchmark data under docs/bench stays out).
  fs.mkdirSync(path.join(staging, 'docs'));
  for (const f of fs.readdirSync(path.join(ROOT, 'docs'))) {
    if (f.endsWith('.md')) fs.copyFileSync(path.join(ROOT, 'docs', f), path.join(staging, 'docs', f));
  }
}

function buildTarget(target, { version, outDir, keepStaging, vsce, hasRepository }) {
  const spec = TARGETS[target];
  const t0 = Date.now();
  const staging = fs.mkdtempSync(path.join(os.tmpdir(), `majicflux-vsix-${target}-`));
  console.log(`\n== ${target} (staging ${staging})`);
  try {
    copyInto(staging);

    // 2. production dependencies for that platform, from the lockfile, no install scripts
    const npmArgs = ['ci', '--omit=dev', '--ignore-scripts', '--no-audit', '--no-fund', '--prefer-offline', '--loglevel=error', `--os=${spec.os}`, `--cpu=${spec.cpu}`];
    if (spec.libc) npmArgs.push(`--libc=${spec.libc}`);
    const tNpm = run(npm, npmArgs, { cwd: staging });

    // 3. onnxruntime-node: only this platform's binaries
    const napi = path.join(staging, 'node_modules', 'onnxruntime-node', 'bin', 'napi-v6');
    const own = path.join(napi, spec.os, spec.cpu);
    if (!fs.existsSync(path.join(own, 'onnxruntime_binding.node'))) throw new Error(`onnxruntime-node has no ${spec.os}/${spec.cpu} binding (${own})`);
    for (const plat of fs.readdirSync(napi)) {
      for (const arch of fs.readdirSync(path.join(napi, plat))) {
        if (plat !== spec.os || arch !== spec.cpu) fs.rmSync(path.join(napi, plat, arch), { recursive: true, force: true });
      }
      if (!fs.readdirSync(path.join(napi, plat)).length) fs.rmSync(path.join(napi, plat), { recursive: true });
    }
    const img = path.join(staging, 'node_modules', '@img', `sharp-${spec.os}-${spec.cpu}`);
    if (!fs.existsSync(img)) throw new Error(`npm did not install @img/sharp-${spec.os}-${spec.cpu}`);

    // 4. per-target ignore: node_modules packages that nothing loads at run time
    const withInstaller = target === 'linux-x64';
    const closure = runtimeClosure(staging, RUNTIME_EXTERNALS, withInstaller ? {} : { 'onnxruntime-node': ORT_INSTALLER_DEPS });
    const unused = installedPackages(staging).filter((p) => !closure.has(p));
    const extra = [`# scripts/package.mjs, target ${target}: packages not loaded at run time`, ...unused.map((p) => `${p}/**`)];
    if (!withInstaller) extra.push("# onnxruntime-node's CUDA installer: Linux x64 only", 'node_modules/onnxruntime-node/script/**');
    fs.appendFileSync(path.join(staging, '.vscodeignore'), `\n${extra.join('\n')}\n`);

    // The shipped manifest: no build scripts (vsce would run vscode:prepublish here, without sources),
    // no devDependencies, no CLI bin (dist/cli.js is not in the package).
    const pj = path.join(staging, 'package.json');
    const manifest = readJson(pj);
    delete manifest.scripts;
    delete manifest.devDependencies;
    delete manifest.bin;
    fs.writeFileSync(pj, `${JSON.stringify(manifest, null, 2)}\n`);

    // 5. vsce
    const out = path.join(outDir, vsixName(target, version));
    const vsceArgs = [vsce, 'package', '--target', target, '--out', out];
    if (!hasRepository) vsceArgs.push('--allow-missing-repository', '--no-rewrite-relative-links');
    const tVsce = run(process.execPath, vsceArgs, { cwd: staging });
    const size = fs.statSync(out).size;
    const secs = (Date.now() - t0) / 1000;
    console.log(`${target}: ${path.relative(ROOT, out)} ${(size / 2 ** 20).toFixed(1)} MiB in ${secs.toFixed(0)} s (npm ci ${tNpm.toFixed(0)} s, vsce ${tVsce.toFixed(0)} s)`);
    return { target, file: out, size, secs };
  } finally {
    if (keepStaging) console.log(`kept ${staging}`);
    else fs.rmSync(staging, { recursive: true, force: true });
  }
}

async function main() {
  const args = process.argv.slice(2);
  let outDir = path.join(ROOT, 'dist-vsix');
  let build = true;
  let keepStaging = false;
  const targets = [];
  for (let i = 0; i < args.length; i++) {
    const a = args[i];
    if (a === '--no-build') build = false;
    else if (a === '--keep-staging') keepStaging = true;
    else if (a === '--out') outDir = path.resolve(args[++i] ?? usage('--out needs a folder'));
    else if (a === '--help' || a === '-h') usage();
    else if (a in TARGETS) targets.push(a);
    else if (a in UNSUPPORTED) {
      console.error(`package: no ${a} package: ${UNSUPPORTED[a]}.`);
      process.exit(1);
    } else usage(`unknown target or option '${a}'`);
  }
  if (!targets.length) targets.push(...Object.keys(TARGETS));

  const pkg = readJson(path.join(ROOT, 'package.json'));
  const vsce = path.join(ROOT, 'node_modules', '@vscode', 'vsce', 'vsce');
  if (!fs.existsSync(vsce)) throw new Error('node_modules/@vscode/vsce is missing: run npm ci first');
  if (!fs.existsSync(path.join(ROOT, 'LICENSE'))) throw new Error('LICENSE is missing');

  const t0 = Date.now();
  if (build) run(npm, ['run', 'vscode:prepublish'], { cwd: ROOT });
  for (const f of ['dist/extension.js', 'dist/server.js', 'dist/pipelineWorker.js', 'dist/quantWorker.js']) {
    if (!fs.existsSync(path.join(ROOT, f))) throw new Error(`${f} is missing: run npm run build`);
  }

  fs.mkdirSync(outDir, { recursive: true });
  for (const t of targets) {
    for (const f of fs.readdirSync(outDir)) if (f.startsWith(`majicflux-${t}-`) && f.endsWith('.vsix')) fs.rmSync(path.join(outDir, f));
  }
  console.log(`packaging ${pkg.name} ${pkg.version} for ${targets.join(', ')}`);
  for (const [t, why] of Object.entries(UNSUPPORTED)) if (t !== 'web' && !t.startsWith('alpine') && t !== 'linux-armhf') console.log(`not packaged: ${t} — ${why}`);

  const results = [];
  for (const t of targets) results.push(buildTarget(t, { version: pkg.version, outDir, keepStaging, vsce, hasRepository: Boolean(pkg.repository) }));

  console.log('\nvsix files:');
  for (const r of results) console.log(`  ${path.relative(ROOT, r.file).padEnd(44)} ${(r.size / 2 ** 20).toFixed(1).padStart(6)} MiB`);
  console.log(`total ${((Date.now() - t0) / 1000).toFixed(0)} s`);
}

if (fs.realpathSync(path.resolve(process.argv[1] ?? '')) === fs.realpathSync(fileURLToPath(import.meta.url))) {
  main().catch((e) => {
    console.error(`package: ${e.message}`);
    process.exit(1);
  });
}
