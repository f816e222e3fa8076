// Nothing is written or sent behind the user's back: onnxruntime's telemetry (a device id and a
// queue of events under ~/.cache/Microsoft) stays off in every process that loads it.
import * as assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

const ROOT = path.resolve(__dirname, '../..');
const DIST = path.join(ROOT, 'dist');

describe('onnxruntime telemetry is off', () => {
  it('a generation from the CLI in a fresh HOME leaves no onnxruntime device id or event store', function () {
    this.timeout(180_000);
    const home = fs.mkdtempSync(path.join(os.tmpdir(), 'mf-home-'));
    try {
      const env: NodeJS.ProcessEnv = { ...process.env, HOME: home, USERPROFILE: home, XDG_CACHE_HOME: '' };
      delete env.ORT_DISABLE_TELEMETRY;
      delete env.XDG_CACHE_HOME;
      const out = path.join(home, 'out.png');
      const r = spawnSync(process.execPath, [path.join(DIST, 'cli.js'), 'generate', '--prompt', 'a cat', '--steps', '1', '--width', '64', '--height', '64', '--out', out], { env, encoding: 'utf8', timeout: 170_000 });
      assert.equal(r.status, 0, r.stderr);
      assert.ok(fs.existsSync(out), 'the image was written');
      // Wherever the platform keeps caches: nothing of onnxruntime's anywhere under HOME.
      const all = fs.readdirSync(home, { recursive: true }).map(String);
      assert.ok(all.some((f) => f.includes('demo-model')), `the demo model was written under HOME: ${all.slice(0, 5)}`);
      assert.deepEqual(all.filter((f) => /Microsoft|DeveloperTools|onnxruntime/i.test(f)), [], 'onnxruntime writes Microsoft/DeveloperTools/.onnxruntime when telemetry is on');
    } finally {
      fs.rmSync(home, { recursive: true, force: true });
    }
  });

  for (const bundle of ['cli.js', 'server.js', 'pipelineWorker.js', 'bench.js']) {
    it(`dist/${bundle} sets ORT_DISABLE_TELEMETRY before it loads onnxruntime-node`, () => {
      const code = fs.readFileSync(path.join(DIST, bundle), 'utf8');
      const set = code.indexOf('process.env.ORT_DISABLE_TELEMETRY =');
      const load = code.indexOf('require("onnxruntime-node")');
      assert.ok(set >= 0, 'the assignment is in the bundle');
      assert.ok(load >= 0, 'the bundle loads onnxruntime-node');
      assert.ok(set < load, 'the assignment comes first');
    });
  }
});
