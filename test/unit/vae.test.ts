import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { buildVaeDecoder, diffusersName, latentsToImage, readVaeConfig, VaeConfig, VaeDecoder, VaeEncoder } from '../../src/inference/graphs/vae';
import { openTensors } from '../../src/inference/formats/safetensors';
import { assertMaxAbs, compare, goldenCase, GOLDEN_MODELS } from '../helpers/golden';
import { ldmToDiffusersTable, writeDiffusersVae } from '../helpers/vaeLayout';

const AE = path.join(GOLDEN_MODELS, 'ae.safetensors');

const TINY_AE: VaeConfig = {
  inChannels: 3, outChannels: 3, ch: 32, chMult: [1, 2, 2, 2], numResBlocks: 2, zChannels: 16, scale: 0.3611, shift: 0.1159, normGroups: 32,
};

/** diffusers' _unpack_latents: [1, (h/2)(w/2), C·4] → [1, C, h, w]. */
function unpack(packed: Float32Array, h: number, w: number, c: number): Float32Array {
  const out = new Float32Array(c * h * w);
  for (let i = 0; i < h / 2; i++)
    for (let j = 0; j < w / 2; j++)
      for (let ch = 0; ch < c; ch++)
        for (let di = 0; di < 2; di++)
          for (let dj = 0; dj < 2; dj++)
            out[ch * h * w + (2 * i + di) * w + 2 * j + dj] = packed[(i * (w / 2) + j) * c * 4 + ch * 4 + di * 2 + dj];
  return out;
}

describe('VAE (graphs/vae.ts)', function () {
  this.timeout(60_000);
  const golden = goldenCase('vae.safetensors');
  let tmp: string;
  let decoder: VaeDecoder;
  let decoded: Float32Array;
  let encoded: Float32Array;

  before(async () => {
    tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'majicflux-vae-'));
    decoder = await VaeDecoder.load(AE);
  });
  after(async () => {
    await decoder?.release();
    fs.rmSync(tmp, { recursive: true, force: true });
  });

  it('reads the config from the sidecar, a diffusers config.json, or the tensor shapes', () => {
    assert.deepEqual(readVaeConfig(AE), TINY_AE);
    const bare = path.join(tmp, 'bare');
    fs.mkdirSync(bare);
    fs.copyFileSync(AE, path.join(bare, 'vae.safetensors'));
    assert.deepEqual(readVaeConfig(path.join(bare, 'vae.safetensors')), TINY_AE);
    const diffusers = path.join(tmp, 'cfg');
    writeDiffusersVae(AE, TINY_AE, diffusers);
    assert.deepEqual(readVaeConfig(diffusers), TINY_AE);
    fs.rmSync(path.join(diffusers, 'config.json'));
    assert.deepEqual(readVaeConfig(diffusers), TINY_AE, 'diffusers layout, shapes only');
  });

  it('decodes the golden latent: z [1,16,16,24] → [1,3,128,192]', async () => {
    decoded = await decoder.decode(golden.readF32('z'), 16, 24);
    const s = assertMaxAbs(decoded, golden.readF32('decoded'), 1e-4, 'decoded');
    console.log(`      max abs error ${s.maxAbs.toExponential(2)} (|ref| ≤ ${s.maxRef.toFixed(2)})`);
  });

  it('encodes the golden image to the posterior mean: [1,3,64,96] → [1,16,8,12]', async () => {
    const enc = await VaeEncoder.load(AE);
    try {
      encoded = await enc.encodeMean(golden.readF32('image'), 64, 96);
      const s = assertMaxAbs(encoded, golden.readF32('encoded_mean'), 1e-4, 'encoded_mean');
      console.log(`      max abs error ${s.maxAbs.toExponential(2)} (|ref| ≤ ${s.maxRef.toFixed(2)})`);
      await assert.rejects(enc.encodeMean(new Float32Array(3 * 60 * 96), 60, 96), /multiple of 8/);
    } finally {
      await enc.release();
    }
  });

  it('serves other sizes from the same session, and its output turns into the pipeline image', async () => {
    // pipeline-2: 64×64, packed final latent [1, 16, 64] → [1, 16, 8, 8], z / scale + shift.
    const run = goldenCase('pipeline-2.safetensors');
    const z = unpack(run.readF32('latents_after_step_0'), 8, 8, 16).map((x) => x / TINY_AE.scale + TINY_AE.shift);
    const image = latentsToImage(await decoder.decode(z, 8, 8), 64, 64);
    const s = assertMaxAbs(image, run.readF32('image'), 1e-3, 'pipeline-2 image');
    console.log(`      final image max abs error ${s.maxAbs.toExponential(2)}`);
  });

  it('latentsToImage: [1,3,H,W] → [H,W,3], (x/2 + 0.5) clamped to [0, 1]', () => {
    const img = latentsToImage(Float32Array.from([-3, 0, 0.5, 1, 2, -1]), 1, 2); // R: -3, 0; G: 0.5, 1; B: 2, -1
    assert.deepEqual(Array.from(img), [0, 0.75, 1, 0.5, 1, 0]);
  });

  it('maps LDM names to diffusers names', () => {
    const table = ldmToDiffusersTable(TINY_AE);
    const src = openTensors(AE);
    try {
      for (const n of src.names()) assert.equal(diffusersName(n, 4), table.get(n), n);
    } finally {
      src.close();
    }
    assert.equal(diffusersName('decoder.up.0.block.0.nin_shortcut.weight', 4), 'decoder.up_blocks.3.resnets.0.conv_shortcut.weight');
    assert.equal(diffusersName('decoder.mid.attn_1.proj_out.bias', 4), 'decoder.mid_block.attentions.0.to_out.0.bias');
  });

  it('decodes and encodes a diffusers-layout bf16 vae/ folder like ae.safetensors', async () => {
    const dir = path.join(tmp, 'vae');
    writeDiffusersVae(AE, TINY_AE, dir, 'BF16');
    // inlineLimit 0: every tensor stays bf16 in the file; keep16Bit casts each after its block's gate.
    const src = openTensors(dir);
    const { graph } = buildVaeDecoder(src, readVaeConfig(dir), { inlineLimit: 0, keep16Bit: true });
    src.close();
    assert.ok(graph.externalBytes > 0 && graph.inlineBytes < 64 * 1024, `external ${graph.externalBytes} B, inline ${graph.inlineBytes} B`);

    const dec = await VaeDecoder.load(path.dirname(dir), { inlineLimit: 0, keep16Bit: true }); // a model folder holding vae/
    try {
      const out = await dec.decode(golden.readF32('z'), 16, 24);
      assert.ok(decoded, 'needs the LDM decode above');
      const s = compare(out, decoded);
      assert.ok(s.maxAbs <= 1e-5, `diffusers vs LDM decode: ${s.maxAbs}`);
      assertMaxAbs(out, golden.readF32('decoded'), 1e-4, 'diffusers decoded');
    } finally {
      await dec.release();
    }
    const enc = await VaeEncoder.load(dir, { inlineLimit: 0 }); // bf16 cast to f32 at session creation
    try {
      const mean = await enc.encodeMean(golden.readF32('image'), 64, 96);
      assertMaxAbs(mean, golden.readF32('encoded_mean'), 1e-4, 'diffusers encoded_mean');
    } finally {
      await enc.release();
    }
  });
});
