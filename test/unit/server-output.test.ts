// The inference server (dist/server.js, built by npm run build) when files change under it between
// or during jobs (the output folder, the model's files): the job fails with a message the
// extension can show as is, and the server stays usable.

import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import type { JobEvent, ServerSettings } from '../../src/shared/protocol';
import { ServerClient } from '../../src/extension/serverClient';
import { JobFailedError } from '../../src/extension/serverErrors';
import type { Logger } from '../../src/extension/serverLink';
import { GOLDEN_MODELS } from '../helpers/golden';

const SERVER = path.resolve(__dirname, '..', '..', 'dist', 'server.js');

const quiet: Logger = { debug() {}, info() {}, warn() {}, error() {} };

describe('inference server: files that change under it', function () {
  this.timeout(120_000);
  let tmp: string;
  let client: ServerClient;
  let model: string;

  before(() => {
    assert.ok(fs.existsSync(SERVER), 'dist/server.js is built by npm run build');
    tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'server-output-'));
    model = path.join(tmp, 'model');
    fs.cpSync(GOLDEN_MODELS, model, { recursive: true });
    // Sequential: every job loads the parts again, from files that may have changed since.
    const settings: ServerSettings = { model: { dir: model }, weights: 'fp32', memory: 'sequential', ep: 'cpu', cacheDir: path.join(tmp, 'cache') };
    client = new ServerClient({ serverPath: SERVER, settings, logger: quiet, clientName: 'server-output.test' });
  });
  after(() => {
    client.dispose();
    fs.rmSync(tmp, { recursive: true, force: true });
  });

  it('an output folder replaced by a file while generating: says why and the seed to get the image again, not Node\'s EEXIST', async () => {
    const folder = path.join(tmp, 'out');
    fs.mkdirSync(folder);
    const params = { prompt: 'a cat', seed: 11, steps: 2, width: 64, height: 64 };
    const handle = await client.generate({ params, output: path.join(folder, 'a.png') }, (e: JobEvent) => {
      if (e.event !== 'step' || e.step !== 1) return;
      fs.rmSync(folder, { recursive: true });
      fs.writeFileSync(folder, 'a file where the folder was');
    });
    await assert.rejects(handle.done, (e: Error) => {
      assert.ok(e instanceof JobFailedError, String(e));
      assert.match(e.message, /^could not save the image to .*a\.png: a file is in the way \(where a folder should be\) \((EEXIST|ENOTDIR)\)/);
      assert.match(e.message, /majicflux\.output\.folder setting\), then run again with seed 11/);
      return true;
    });
    const next = await (await client.generate({ params, output: path.join(tmp, 'b.png') })).done;
    assert.ok(fs.existsSync(next.file), 'the server still generates');
  });

  it('a model file deleted between two jobs: the job fails as a model problem (code "model") naming the file, not "Generation failed"', async () => {
    const params = { prompt: 'a cat', seed: 1, steps: 1, width: 64, height: 64 };
    await (await client.generate({ params, output: path.join(tmp, 'before.png') })).done;
    const dit = path.join(model, 'transformer', 'diffusion_pytorch_model.safetensors');
    fs.rmSync(dit);
    const events: JobEvent[] = [];
    const handle = await client.generate({ params, output: path.join(tmp, 'after.png') }, (e) => events.push(e));
    await assert.rejects(handle.done, JobFailedError);
    const failed = events.find((e) => e.event === 'failed');
    assert.ok(failed && failed.event === 'failed', JSON.stringify(events.at(-1)));
    assert.equal(failed.code, 'model', failed.message);
    assert.ok(failed.message.startsWith(path.join(model, 'transformer')), failed.message);
    assert.match(failed.message, /transformer: folder has no \.safetensors file/);
  });
});
