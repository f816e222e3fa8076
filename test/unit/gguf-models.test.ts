// A GGUF DiT is usable wherever a single-file DiT is (issue 17 item 3): `generate --transformer
// FILE.gguf`, `inspect`, `models check` (with its memory), and discovery of a lone DiT file.

import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { modelName, validateSettings } from '../../src/extension/settings';
import { main } from '../../src/inference/cli/main';
import { resolveModel } from '../../src/inference/models/files';
import { discoverModels } from '../../src/inference/models/discovery';
import { GOLDEN_MODELS } from '../helpers/golden';
import { GGML, writeGguf, writeQuantizedDit } from '../helpers/writeGguf';
import { tempDir } from '../helpers/writeSafetensors';

async function cli(args: string[]): Promise<{ code: number; out: string; err: string }> {
  let out = '';
  let err = '';
  const code = await main(args, { out: (t) => (out += t), err: (t) => (err += t), errIsTTY: false });
  return { code, out, err };
}

describe('GGUF DiT files in the CLI and discovery', function () {
  this.timeout(120_000);
  let tmp: ReturnType<typeof tempDir>;
  let q8: string;
  const savedCache = process.env.XDG_CACHE_HOME;
  before(() => {
    tmp = tempDir('gguf-models-');
    // The GGUF weights go through the weight cache: keep it out of the user's.
    process.env.XDG_CACHE_HOME = path.join(tmp.dir, 'cache');
    q8 = path.join(tmp.dir, 'flux1-tiny-Q8_0.gguf');
    writeQuantizedDit(q8, 'Q8_0');
  });
  after(() => {
    if (savedCache === undefined) delete process.env.XDG_CACHE_HOME;
    else process.env.XDG_CACHE_HOME = savedCache;
    tmp.cleanup();
  });

  it('generate --model FOLDER --transformer FILE.gguf makes an image, and the log says how the Q8_0 weights run', async () => {
    const png = path.join(tmp.dir, 'cat.png');
    const r = await cli(['generate', '--model', GOLDEN_MODELS, '--transformer', q8, '--prompt', 'a cat', '--width', '64', '--height', '64', '--steps', '2', '--out', png]);
    assert.equal(r.code, 0, r.err);
    assert.ok(fs.statSync(png).size > 0);
    assert.match(r.err, /dit: 36 GGUF Q8_0 tensors: run as int8 MatMulNBits blocks of 32, bit for bit/);
  });

  it('inspect FILE.gguf names the DiT, its types and how they run', async () => {
    const r = await cli(['inspect', q8]);
    assert.equal(r.code, 0, r.err);
    assert.match(r.out, /bfl-dit/);
    assert.match(r.out, /Q8_0/);
    assert.match(r.out, /F32/);
    assert.match(r.out, /36 GGUF Q8_0 tensors: run as int8 MatMulNBits blocks of 32/);
  });

  it('models check --transformer FILE.gguf: the DiT is ok, and its memory is that of its blocks', async () => {
    const r = await cli(['models', 'check', GOLDEN_MODELS, '--transformer', q8, '--json']);
    assert.equal(r.code, 0, r.err);
    const report = JSON.parse(r.out);
    const dit = report.model.parts.find((p: { role: string }) => p.role === 'dit');
    assert.equal(dit.status, 'present', JSON.stringify(dit));
    assert.ok(dit.dtypes.Q8_0 > 0);
    assert.equal(dit.bytes, fs.statSync(q8).size);
  });

  it('discovery finds a lone GGUF DiT; one in a GGUF type MajicFLUX cannot read is wrong-dtype, with a GGUF message', () => {
    const search = path.join(tmp.dir, 'search');
    fs.mkdirSync(path.join(search, 'unet'), { recursive: true });
    fs.copyFileSync(q8, path.join(search, 'unet', 'flux1-dev-Q8_0.gguf'));
    const home = path.join(tmp.dir, 'home');
    fs.mkdirSync(home, { recursive: true });
    const found = discoverModels({ env: {}, home, searchPaths: [search] });
    const m = found.find((f) => f.spec.transformer?.endsWith('flux1-dev-Q8_0.gguf'));
    assert.ok(m, JSON.stringify(found.map((f) => f.spec)));
    assert.equal(m.parts.find((p) => p.role === 'dit')!.status, 'present');

    fs.rmSync(path.join(search, 'unet', 'flux1-dev-Q8_0.gguf'));
    writeGguf(path.join(search, 'unet', 'flux1-dev-IQ2_XXS.gguf'), [{ name: 'double_blocks.0.img_attn.qkv.weight', shape: [3, 256], type: GGML.IQ2_XXS, data: new Uint8Array(3 * 66) }]);
    const [bad] = discoverModels({ env: {}, home, searchPaths: [search] });
    const dit = bad.parts.find((p) => p.role === 'dit')!;
    assert.equal(dit.status, 'wrong-dtype');
    assert.match(dit.message!, /GGUF IQ2_XXS, a quantization MajicFLUX cannot read: download the Q8_0, Q4_0/);
  });

  it('an incomplete T5 encoder GGUF (llama.cpp names) is read as a T5 and says which tensors it lacks', async () => {
    const t5 = path.join(tmp.dir, 't5-v1_1-xxl-encoder-Q8_0.gguf');
    writeGguf(t5, [
      { name: 'token_embd.weight', shape: [4, 32], type: GGML.F32, data: new Uint8Array(4 * 32 * 4) },
      { name: 'enc.blk.0.attn_q.weight', shape: [32, 32], type: GGML.Q8_0, data: new Uint8Array(32 * 34) },
    ]);
    const r = await cli(['inspect', t5]);
    assert.notEqual(r.code, 0);
    assert.match(r.err, /relative_attention_bias/);
    assert.doesNotMatch(r.err, /^\s+at /m, 'no stack trace');
  });

  it('the model is named after the GGUF file without its extension (status bar, image metadata)', () => {
    const { settings } = validateSettings((k) => ({ 'model.path': GOLDEN_MODELS, 'model.transformer': q8 })[k]);
    assert.equal(modelName(settings), 'flux1-tiny-Q8_0');
    assert.equal(resolveModel({ dir: GOLDEN_MODELS, transformer: q8 }).name, 'flux1-tiny-Q8_0');
  });
});
