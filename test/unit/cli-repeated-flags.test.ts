// A single-valued flag given twice with different values is refused before anything loads (it was
// silently the last one); repeatable flags (--lora, --search) stay repeatable.

import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { main } from '../../src/inference/cli/main';

async function cli(...argv: string[]) {
  let out = '';
  let err = '';
  const code = await main(argv, { out: (t) => (out += t), err: (t) => (err += t) });
  return { code, out, err };
}

describe('CLI: a flag given twice', () => {
  let tmp: string;
  before(() => (tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'cli-twice-'))));
  after(() => fs.rmSync(tmp, { recursive: true, force: true }));

  it('generate --steps 20 … --steps 1: exit 2 naming both values, no image, nothing loaded', async () => {
    const out = path.join(tmp, 'x.png');
    const r = await cli('generate', 'a cat', '--model', 'demo', '--steps', '20', '--width', '64', '--height', '64', '--steps', '1', '--out', out);
    assert.equal(r.code, 2, r.err);
    assert.match(r.err, /^majicflux generate: --steps is given twice \("20" and "1"\); give it once$/m);
    assert.match(r.err, /--help/);
    assert.doesNotMatch(r.err, /^\s+at /m);
    assert.ok(!fs.existsSync(out));
  });

  it('the --flag=value form and a negative value count too', async () => {
    const r = await cli('generate', 'a cat', '--seed=1', '--seed', '-1');
    assert.equal(r.code, 2);
    assert.match(r.err, /--seed is given twice \("1" and "-1"\)/);
  });

  it('serve and models check refuse it too; a repeated --token is named, not echoed', async () => {
    const serve = await cli('serve', '--port', '0', '--port', '1');
    assert.equal(serve.code, 2);
    assert.match(serve.err, /--port is given twice \("0" and "1"\)/);
    const token = await cli('serve', '--token', 'secret-one', '--token', 'secret-two');
    assert.equal(token.code, 2);
    assert.match(token.err, /--token is given twice; give it once/);
    assert.doesNotMatch(token.err, /secret/);
    const check = await cli('models', 'check', 'demo', '--transformer', 'a.safetensors', '--transformer', 'b.safetensors');
    assert.equal(check.code, 2);
    assert.match(check.err, /--transformer is given twice \("a.safetensors" and "b.safetensors"\)/);
  });

  it('the same value twice, a switch twice and a repeatable flag are accepted', async () => {
    const same = await cli('generate', 'a cat', '--model', 'demo', '--steps', '1', '--steps', '1', '--width', '64', '--height', '64', '--quiet', '--quiet', '--out', path.join(tmp, 'same.png'));
    assert.equal(same.code, 0, same.err);
    const lora = path.join(tmp, 'l.safetensors');
    fs.writeFileSync(lora, 'x');
    // Two --lora flags get as far as reading the (broken) LoRA file: parsed, not refused as repeated.
    const two = await cli('generate', 'a cat', '--model', 'demo', '--steps', '1', '--width', '64', '--height', '64', '--lora', lora, '--lora', `${lora}:0.5`, '--quiet', '--out', path.join(tmp, 'l.png'));
    assert.doesNotMatch(two.err, /given twice/);
  });
});
