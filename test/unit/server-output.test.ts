// The inference server (dist/server.js, built by npm run build) when the image cannot be saved:
// the job fails with a message the extension can show as is, and the server stays usable.

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

describe('inference server: an image that cannot be saved', function () {
  this.timeout(120_000);
  let tmp: string;
  let client: ServerClient;

  before(() => {
    assert.ok(fs.existsSync(SERVER), 'dist/server.js is built by npm run build');
    tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'server-output-'));
    const settings: ServerSettings = { model: { dir: GOLDEN_MODELS }, weights: 'fp32', memory: 'resident', ep: 'cpu', cacheDir: path.join(tmp, 'cache') };
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
});
