// T5 encoder GGUFs (llama.cpp names, as city96's t5-v1_1-xxl-encoder-Q8_0.gguf) are read wherever a
// T5 safetensors is (issue 17): the encoder, `inspect`, `generate --text-encoder-2 FILE.gguf`.

import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { main } from '../../src/inference/cli/main';
import { T5Encoder } from '../../src/inference/graphs/t5';
import { openComponent } from '../../src/inference/formats/layouts/components';
import { assertGoldenClose, ErrorStats, GOLDEN_MODELS, goldenCase } from '../helpers/golden';
import { GGML, writeGguf, writeQuantizedDit, writeT5Gguf } from '../helpers/writeGguf';
import { tempDir } from '../helpers/writeSafetensors';

async function cli(args: string[]): Promise<{ code: number; out: string; err: string }> {
  let out = '';
  let err = '';
  const code = await main(args, { out: (t) => (out += t), err: (t) => (err += t), errIsTTY: false });
  return { code, out, err };
}

const ids = (n: number) => Int32Array.from(goldenCase('text_encoders.safetensors').readF32(`${n}.t5_ids`));
const expected = (n: number) => goldenCase('text_encoders.safetensors').readF32(`${n}.t5_hidden`);

async function encode(file: string, opts: object = {}): Promise<Float32Array> {
  const t5 = await T5Encoder.load(file, { maxLength: 512, ...opts });
  try {
    return await t5.encode(ids(13));
  } finally {
    await t5.release();
  }
}

describe('T5 encoder GGUF files (llama.cpp names)', function () {
  this.timeout(120_000);
  let tmp: ReturnType<typeof tempDir>;
  const file = (type: string) => path.join(tmp.dir, `t5-tiny-encoder-${type}.gguf`);
  const measured: string[] = [];
  const note = (what: string, s: ErrorStats) => measured.push(`${what.padEnd(28)} max abs ${s.maxAbs.toExponential(2)}  rel L2 ${s.relL2.toExponential(2)}`);
  const savedCache = process.env.XDG_CACHE_HOME;
  before(() => {
    tmp = tempDir('gguf-t5-');
    process.env.XDG_CACHE_HOME = path.join(tmp.dir, 'cache');
    for (const t of ['F32', 'F16', 'Q8_0', 'Q4_0'] as const) writeT5Gguf(file(t), t);
  });
  after(() => {
    console.log(`      measured:\n${measured.map((m) => `        ${m}`).join('\n')}`);
    if (savedCache === undefined) delete process.env.XDG_CACHE_HOME;
    else process.env.XDG_CACHE_HOME = savedCache;
    tmp.cleanup();
  });

  it('opens as a T5 encoder under transformers names, its numbers as the golden config.json says', () => {
    const c = openComponent(file('Q8_0'), 't5');
    try {
      assert.equal(c.layout, 'hf-t5');
      assert.equal(c.config.d_model, 32);
      assert.equal(c.config.d_ff, 40);
      assert.equal(c.config.num_layers, 2);
      assert.equal(c.config.num_heads, 4);
      assert.equal(c.config.relative_attention_num_buckets, 32);
      assert.equal(c.tensors.info('encoder.block.0.layer.0.SelfAttention.q.weight').dtype, 'Q8_0');
      // The embedding table is decoded exactly for Gather; it is served as float32.
      assert.equal(c.tensors.info('shared.weight').dtype, 'F32');
    } finally {
      c.close();
    }
  });

  it('inspect FILE.gguf names the T5 encoder and its types', async () => {
    const r = await cli(['inspect', file('Q8_0')]);
    assert.equal(r.code, 0, r.err);
    assert.match(r.out, /hf-t5/);
    assert.match(r.out, /T5/);
    assert.match(r.out, /Q8_0/);
    assert.match(r.out, /F16/);
    assert.match(r.out, /12 GGUF Q8_0 tensors: run as int8 MatMulNBits blocks of 32/);
    assert.match(r.out, /shared\.weight: GGUF-quantized, decoded exactly to float32 at load/);
  });

  for (const t of ['F32', 'F16']) {
    it(`${t}: the hidden state matches the golden reference`, async () => {
      note(`${t} vs golden`, assertGoldenClose(await encode(file(t)), expected(13), `${t} GGUF T5 hidden`));
    });
  }

  for (const t of ['Q8_0', 'Q4_0']) {
    it(`${t}: MatMulNBits Linears match the same file decoded to float (its own dequantized reference)`, async () => {
      // Tiny: every Linear inlined, decoded exactly to float32 (the decoded embedding table is stored in the cache).
      const reference = await encode(file(t), { cacheDir: path.join(tmp.dir, `inlined-${t}`) });
      // Its own folder: the cache key does not include the inline limit.
      const cacheDir = path.join(tmp.dir, `nbits-${t}`);
      const nbits = await encode(file(t), { inlineLimit: 0, cacheDir });
      assert.ok(fs.readdirSync(cacheDir).length > 0, 'the quantized Linears went through the weight cache');
      note(`${t} MatMulNBits vs decoded`, assertGoldenClose(nbits, reference, `${t} GGUF T5 hidden`, { maxAbsRel: 1e-4, relL2: 1e-5 }));
      note(`${t} vs golden (info)`, assertGoldenClose(reference, expected(13), `${t} vs golden`, { maxAbsRel: 1, relL2: 1 }));
    });
  }

  it('generate --text-encoder-2 FILE.gguf (F32) makes the image the safetensors T5 makes', async () => {
    const args = ['--model', GOLDEN_MODELS, '--prompt', 'a cat', '--width', '64', '--height', '64', '--steps', '2', '--seed', '7'];
    const a = path.join(tmp.dir, 'st.png');
    const b = path.join(tmp.dir, 'gguf.png');
    const r1 = await cli(['generate', ...args, '--out', a]);
    assert.equal(r1.code, 0, r1.err);
    const r2 = await cli(['generate', ...args, '--text-encoder-2', file('F32'), '--out', b]);
    assert.equal(r2.code, 0, r2.err);
    assert.ok(fs.readFileSync(a).equals(fs.readFileSync(b)), 'same PNG bytes');
  });

  it('models check --text-encoder-2 FILE.gguf: the T5 is present, its types counted', async () => {
    const r = await cli(['models', 'check', GOLDEN_MODELS, '--text-encoder-2', file('Q8_0'), '--json']);
    assert.equal(r.code, 0, r.err);
    const t5 = JSON.parse(r.out).model.parts.find((p: { role: string }) => p.role === 't5');
    assert.equal(t5.status, 'present', JSON.stringify(t5));
    assert.ok(t5.dtypes.Q8_0 > 0, JSON.stringify(t5.dtypes));
  });

  it('a GGUF that is not a T5 encoder, given as text encoder 2, is refused clearly', async () => {
    const dit = path.join(tmp.dir, 'flux1-tiny-Q8_0.gguf');
    writeQuantizedDit(dit, 'Q8_0');
    const r = await cli(['generate', '--model', GOLDEN_MODELS, '--text-encoder-2', dit, '--prompt', 'a cat', '--width', '64', '--height', '64', '--steps', '1', '--out', path.join(tmp.dir, 'x.png')]);
    assert.notEqual(r.code, 0);
    assert.match(r.err, /flux1-tiny-Q8_0\.gguf: holds no T5 text encoder; found: DiT/);
    assert.doesNotMatch(r.err, /^\s+at /m, 'no stack trace');
  });

  it('metadata that disagrees with the tensors, or another architecture, is refused', async () => {
    const wrong = path.join(tmp.dir, 'wrong-heads.gguf');
    writeT5Gguf(wrong, 'F32', { 't5encoder.attention.head_count': { type: 'u32', value: 8 } });
    const r = await cli(['inspect', wrong]);
    assert.notEqual(r.code, 0);
    assert.match(r.err, /"t5encoder\.attention\.head_count" says 8 but the tensors give 4/);
    const eps = path.join(tmp.dir, 'wrong-eps.gguf');
    writeT5Gguf(eps, 'F32', { 't5encoder.attention.layer_norm_rms_epsilon': { type: 'f32', value: 1e-5 } });
    assert.match((await cli(['inspect', eps])).err, /layer_norm_rms_epsilon" is 0\.0000099\d*; MajicFLUX runs T5 encoder GGUFs with T5's 1e-6 only/);
    const llama = path.join(tmp.dir, 'llama.gguf');
    writeGguf(llama, [{ name: 'enc.blk.0.attn_q.weight', shape: [32, 32], type: GGML.F32, data: new Uint8Array(32 * 32 * 4) }], { 'general.architecture': { type: 'string', value: 'llama' } });
    const r2 = await cli(['inspect', llama]);
    assert.notEqual(r2.code, 0);
    assert.match(r2.err, /general\.architecture is "llama", not "t5encoder" or "t5"/);
    assert.doesNotMatch(r2.err, /^\s+at /m, 'no stack trace');
  });
});
