// The bundled demo model's first-use write (models/demo.ts): what processes killed mid-write leave.
import * as assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { demoModelDir, ensureDemoModel } from '../../src/inference/models/demo';
import { processRunning } from '../../src/inference/system/pids';
import { tempDir } from '../helpers/writeSafetensors';

describe('demo model: partial copies of killed processes', function () {
  this.timeout(60_000);

  it('removes the partial copies whose process is gone, keeps one a running process is writing, and writes the model', () => {
    const t = tempDir('mf-demo-');
    try {
      const dir = demoModelDir(t.dir);
      // A pid no process has (beyond the kernel's pid_max), and this test's parent: running.
      const dead = `${dir}.partial-4194999`;
      const live = `${dir}.partial-${process.ppid}`;
      for (const d of [dead, live]) {
        fs.mkdirSync(d, { recursive: true });
        fs.writeFileSync(path.join(d, 'flux.safetensors'), Buffer.alloc(1024));
      }
      const spec = ensureDemoModel(t.dir);
      assert.ok(fs.existsSync(spec.transformer!));
      assert.equal(fs.existsSync(dead), false, 'the abandoned copy is gone');
      assert.equal(fs.existsSync(live), true, 'a copy a running process may still be writing stays');
    } finally {
      t.cleanup();
    }
  });
});

describe('processRunning (system/pids.ts: partial demo folders, atomic writes\' temp files)', () => {
  it('this process and a running one are running; one that has exited is not', async () => {
    assert.equal(processRunning(process.pid), true);
    assert.equal(processRunning(process.ppid), true);
    const child = spawn(process.execPath, ['-e', '']);
    await new Promise((r) => child.on('exit', r));
    assert.equal(processRunning(child.pid!), false);
  });
});
