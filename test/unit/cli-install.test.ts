// The CLI installs like a CLI: `npm install -g .` puts `majicflux` on PATH, `--version` answers,
// and a command the CLI suggests is runnable as printed (the PATH name when it is this script).
import * as assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { cliInvocation } from '../../src/inference/cli/common';

const ROOT = path.resolve(__dirname, '../..');
const CLI = path.join(ROOT, 'dist', 'cli.js');
const VERSION = JSON.parse(fs.readFileSync(path.join(ROOT, 'package.json'), 'utf8')).version as string;

describe('the majicflux command', () => {
  let tmp: string;
  beforeEach(() => { tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'mf-cli-')); });
  afterEach(() => { fs.rmSync(tmp, { recursive: true, force: true }); });

  it('npm install -g puts majicflux on PATH; --version prints package.json\'s version', function () {
    this.timeout(60_000);
    const prefix = path.join(tmp, 'prefix');
    const inst = spawnSync('npm', ['install', '-g', '--prefix', prefix, '--no-audit', '--no-fund', ROOT], { encoding: 'utf8', timeout: 50_000 });
    assert.equal(inst.status, 0, inst.stderr);
    const bin = path.join(prefix, 'bin', 'majicflux');
    for (const flag of ['--version', '-v']) {
      const r = spawnSync(bin, [flag], { encoding: 'utf8' });
      assert.equal(r.status, 0, r.stderr);
      assert.equal(r.stdout, `majicflux ${VERSION}\n`);
    }
  });

  it('suggests "majicflux models download" when majicflux on PATH is this CLI, else the node command', function () {
    this.timeout(60_000);
    const bin = path.join(tmp, 'bin');
    fs.mkdirSync(bin);
    fs.symlinkSync(CLI, path.join(bin, 'majicflux'));
    const empty = path.join(tmp, 'empty');
    fs.mkdirSync(empty);
    const env = { ...process.env, HOME: tmp, HF_HOME: empty, MODELSCOPE_CACHE: empty, MAJICFLUX_MODELS_DIR: empty };
    const viaPath = spawnSync(path.join(bin, 'majicflux'), ['models', 'list', '--search', empty], { encoding: 'utf8', cwd: empty, env: { ...env, PATH: `${bin}${path.delimiter}${process.env.PATH}` } });
    assert.match(viaPath.stdout, /Download one with: majicflux models download flux1-dev\n/);
    const viaNode = spawnSync(process.execPath, [CLI, 'models', 'list', '--search', empty], { encoding: 'utf8', cwd: empty, env });
    assert.ok(viaNode.stdout.includes(`Download one with: node ${CLI} models download flux1-dev\n`), viaNode.stdout);
  });

  it('cliInvocation: another majicflux on PATH is not this one; Windows shims count; paths with spaces are quoted', () => {
    const bin = path.join(tmp, 'bin');
    fs.mkdirSync(bin);
    const other = path.join(tmp, 'other.js');
    fs.writeFileSync(other, '');
    fs.symlinkSync(other, path.join(bin, 'majicflux'));
    assert.equal(cliInvocation(CLI, { PATH: bin }, 'linux'), `node ${CLI}`);
    fs.writeFileSync(path.join(bin, 'majicflux.cmd'), '@node "%~dp0\\node_modules\\majicflux\\dist\\cli.js" %*\r\n');
    assert.equal(cliInvocation('C:\\Users\\Ana\\AppData\\Roaming\\npm\\node_modules\\majicflux\\dist\\cli.js', { Path: bin }, 'win32'), 'majicflux');
    assert.equal(cliInvocation('/opt/my tools/$x.js', { PATH: '' }, 'linux'), "node '/opt/my tools/$x.js'");
    assert.equal(cliInvocation('C:\\Program Files\\mf\\cli.js', { Path: '' }, 'win32'), 'node "C:\\Program Files\\mf\\cli.js"');
  });
});
