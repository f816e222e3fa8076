import * as assert from 'node:assert/strict';
import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { UserError } from '../../src/shared/api';
import { ClipEncoder } from '../../src/inference/graphs/clip';
import { readLora } from '../../src/inference/formats/lora';
import { clipDeltas, MergedTensors } from '../../src/inference/formats/loraText';
import { openTensors, TensorSource } from '../../src/inference/formats/safetensors';
import { FluxPipeline } from '../../src/inference/pipeline/pipeline';
import { assertGoldenClose, GOLDEN_MODELS } from '../helpers/golden';
import { randomPair, seeded, writeLora, writeMerged } from '../helpers/lora';

const CLIP_DIR = path.join(GOLDEN_MODELS, 'text_encoder');
const DIT_FILE = path.join(GOLDEN_MODELS, 'flux-tiny.safetensors');
const KOHYA = { down: '.lora_down.weight', up: '.lora_up.weight' };

/** A kohya LoRA on every 2-D weight of the tiny DiT and every attention/MLP Linear of CLIP (as `lora_te1_text_model_…`, the real CLIP-L naming). */
function kohyaWithClip(file: string): void {
  const rand = seeded(21);
  const pairs: Array<{ stem: string; pair: ReturnType<typeof randomPair>; alpha: number }> = [];
  for (const [src, prefix, keep] of [[DIT_FILE, 'lora_unet_', (n: string) => !n.includes('norm')], [path.join(CLIP_DIR, 'model.safetensors'), 'lora_te1_text_model_', (n: string) => /layers\.\d+\.(self_attn|mlp)\./.test(n)]] as const) {
    const t = openTensors(src);
    for (const n of t.names()) {
      const [out, inF] = t.info(n).shape;
      if (!n.endsWith('.weight') || t.info(n).shape.length !== 2 || !keep(n)) continue;
      pairs.push({ stem: prefix + n.slice(0, -'.weight'.length).replace(/\./g, '_'), pair: randomPair(rand, out, inF, 4, 0.3), alpha: 2 });
    }
    t.close();
  }
  writeLora(file, pairs, KOHYA);
}

describe('LoRA in the pipeline (pipeline/loras.ts, formats/loraText.ts)', function () {
  this.timeout(300_000);
  let dir: string;
  let lora: string;
  before(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'lora-pipe-'));
    lora = path.join(dir, 'my-style_v2.safetensors');
    kohyaWithClip(lora);
  });
  after(() => fs.rmSync(dir, { recursive: true, force: true }));

  it('CLIP LoRA layers merged into the weights = a CLIP checkpoint with W + strength·(α/r)·B·A written out', async () => {
    const file = readLora(lora);
    const src = openTensors(path.join(CLIP_DIR, 'model.safetensors'));
    const { deltas, applied, skipped } = clipDeltas([{ file, strength: 0.8 }], src);
    assert.ok(deltas.size > 0);
    assert.equal(applied.get(lora), deltas.size, 'one pair per CLIP Linear');
    assert.equal(skipped.size, 0);
    const mergedDir = path.join(dir, 'clip-merged');
    fs.mkdirSync(mergedDir);
    fs.copyFileSync(path.join(CLIP_DIR, 'config.json'), path.join(mergedDir, 'config.json'));
    writeMerged(path.join(mergedDir, 'model.safetensors'), src, deltas);
    src.close();
    const ids = new Int32Array(77).fill(49407);
    ids.set([49406, 320, 1929, 49407]);
    const run = async (d: string, opts = {}) => {
      const c = await ClipEncoder.load(d, opts);
      try {
        return (await c.encode(ids)).pooled;
      } finally {
        await c.release();
      }
    };
    const withLora = await run(CLIP_DIR, { adapt: (s: TensorSource) => new MergedTensors(s, deltas), inlineLimit: Number.MAX_SAFE_INTEGER });
    assertGoldenClose(withLora, await run(mergedDir), 'merged in memory vs merged file');
    const base = await run(CLIP_DIR);
    assert.throws(() => assertGoldenClose(withLora, base, 'LoRA vs base'), /error/, 'the LoRA changes the pooled vector');
  });

  it('a job with a LoRA: metadata names it with its strength and A1111 hash; strength 0 gives the base image exactly; strengths change without reloading the DiT', async () => {
    const lines: string[] = [];
    const p = await FluxPipeline.create({ dir: GOLDEN_MODELS, transformer: DIT_FILE }, { weights: 'fp32', ep: 'cpu', memory: 'resident', cacheDir: path.join(dir, 'cache') }, (_, m) => lines.push(m));
    try {
      const job = { prompt: 'a paper lantern', width: 64, height: 64, steps: 2, seed: 5 };
      const base = await p.generate(job);
      assert.equal(base.metadata.loras, undefined);
      // The rebuild is reported as the DiT's `lora` load phase (the client shows "Applying LoRAs"), inside the denoise stage.
      const loads: string[] = [];
      const onLoad = (c: string, phase: string) => loads.push(`${c}:${phase}`);
      const strong = await p.generate({ ...job, loras: [{ path: lora, strength: 0.8 }] }, { onLoad });
      // (CLIP loads again: this LoRA has CLIP layers, merged into its weights.)
      assert.deepEqual(loads.filter((l) => l.startsWith('dit:')), ['dit:lora', 'dit:loaded'], 'a LoRA new to the loaded DiT: one lora phase');
      const bytes = fs.readFileSync(lora);
      const hash = crypto.createHash('sha256').update(bytes.subarray(8 + Number(bytes.readBigUInt64LE(0)))).digest('hex').slice(0, 12);
      assert.deepEqual(strong.metadata.loras, [{ name: 'my-style_v2', strength: 0.8, hash }]);
      assert.ok(strong.image.some((x, i) => x !== base.image[i]), 'the LoRA changes the image');
      loads.length = 0;
      const zero = await p.generate({ ...job, loras: [{ path: lora, strength: 0 }] }, { onLoad });
      assert.deepEqual(loads.filter((l) => l.startsWith('dit:')), [], 'a strength change rebuilds nothing and says nothing');
      assert.deepEqual(Array.from(zero.image), Array.from(base.image), 'strength 0 = base');
      const again = await p.generate({ ...job, loras: [{ path: lora, strength: 0.8 }] });
      assert.deepEqual(Array.from(again.image), Array.from(strong.image), 'the same LoRA and strength again: the same image');
      assert.ok(again.notes.includes('prompt embeddings from cache'), again.notes.join('\n'));
      assert.equal(lines.filter((l) => /^loaded dit/.test(l)).length, 1, lines.join('\n'));
      assert.equal(lines.filter((l) => /^LoRA my-style_v2: read/.test(l)).length, 1, 'the file is read once');
      const none = await p.generate(job);
      assert.deepEqual(Array.from(none.image), Array.from(base.image), 'the LoRA removed: the base image');
      const onDit = lines.filter((l) => l.startsWith('LoRAs on the DiT:'));
      assert.equal(onDit.filter((l) => l.includes('session rebuilt')).length, 1, `one rebuild, when the file first came:\n${onDit.join('\n')}`);
      assert.match(onDit.find((l) => l.includes('session rebuilt'))!, /session rebuilt with their branches: graph \d+\.\d\d s, session \d+\.\d\d s/, 'the rebuild says where its time went');
      assert.equal(onDit.filter((l) => l.includes('strengths only')).length, 3, onDit.join('\n'));
    } finally {
      await p.release();
    }
  });

  it('partial match: the job applies what matches and its notes name the layers applied and the keys skipped', async () => {
    const lines: string[] = [];
    const p = await FluxPipeline.create({ dir: GOLDEN_MODELS, transformer: DIT_FILE }, { weights: 'fp32', ep: 'cpu', memory: 'resident', cacheDir: path.join(dir, 'cache') }, (_, m) => lines.push(m));
    try {
      const partial = path.join(dir, 'partial.safetensors');
      const rand = seeded(9);
      writeLora(partial, [
        { stem: 'lora_unet_double_blocks_0_img_attn_proj', pair: randomPair(rand, 64, 64, 2), alpha: 2 },
        { stem: 'lora_unet_double_blocks_7_img_attn_proj', pair: randomPair(rand, 64, 64, 2), alpha: 2 },
        { stem: 'lora_te2_encoder_block_0_layer_0_SelfAttention_q', pair: randomPair(rand, 8, 8, 1), alpha: 1 },
      ], KOHYA);
      const r = await p.generate({ prompt: 'x', width: 64, height: 64, steps: 1, seed: 1, loras: [{ path: partial, strength: 1 }] });
      const note = r.notes.find((n) => n.startsWith('LoRA partial:'));
      assert.ok(note, r.notes.join('\n'));
      assert.match(note!, /applied to 1 DiT layers/);
      assert.match(note!, /1 DiT keys match no layer of this model/);
      assert.match(note!, /1 T5 keys \(LoRA on T5 is not supported\)/);
      assert.match(note!, /lora_unet_double_blocks_7_img_attn_proj/);
      assert.ok(lines.some((l) => l.includes('lora_unet_double_blocks_7_img_attn_proj')), 'the log names the keys too');
    } finally {
      await p.release();
    }
  });

  it('a LoRA file that does not exist, is not a LoRA, is for another model size or family (SDXL) or holds only T5 layers: a UserError before any model loads', async () => {
    const p = await FluxPipeline.create({ dir: GOLDEN_MODELS, transformer: DIT_FILE }, { weights: 'fp32', ep: 'cpu', memory: 'resident', cacheDir: path.join(dir, 'cache') });
    try {
      const job = { prompt: 'x', width: 64, height: 64, steps: 1, seed: 1 };
      await assert.rejects(p.generate({ ...job, loras: [{ path: path.join(dir, 'missing.safetensors') }] }), (e: Error) => e instanceof UserError && /LoRA file not found/.test(e.message));
      await assert.rejects(p.generate({ ...job, loras: [{ path: DIT_FILE }] }), (e: Error) => e instanceof UserError && /not a LoRA/.test(e.message));
      const big = path.join(dir, 'flux-full-size.safetensors');
      writeLora(big, [{ stem: 'lora_unet_double_blocks_0_img_attn_proj', pair: randomPair(seeded(3), 3072, 3072, 1), alpha: 1 }], KOHYA);
      await assert.rejects(p.generate({ ...job, loras: [{ path: big }] }), (e: Error) => e instanceof UserError && /does not fit this model/.test(e.message));
      const t5 = path.join(dir, 't5-only.safetensors');
      writeLora(t5, [{ stem: 'lora_te2_encoder_block_0_layer_0_SelfAttention_q', pair: randomPair(seeded(4), 8, 8, 1), alpha: 1 }], KOHYA);
      await assert.rejects(p.generate({ ...job, loras: [{ path: t5 }] }), (e: Error) => e instanceof UserError && /only T5/.test(e.message));
      // kohya's FLUX trainer names T5 `lora_te3_` (its first versions `lora_te2_`).
      const t5New = path.join(dir, 't5-only-te3.safetensors');
      writeLora(t5New, [{ stem: 'lora_te3_encoder_block_0_layer_0_SelfAttention_q', pair: randomPair(seeded(4), 8, 8, 1), alpha: 1 }], KOHYA);
      await assert.rejects(p.generate({ ...job, loras: [{ path: t5New }] }), (e: Error) => e instanceof UserError && /only T5/.test(e.message));
      // An SDXL LoRA: UNet layers, and a CLIP-L part whose names and shapes fit FLUX's CLIP-L, which
      // alone must not make it pass for a FLUX LoRA (the image would silently lack the LoRA).
      const sdxl = path.join(dir, 'sdxl-style.safetensors');
      writeLora(sdxl, [
        { stem: 'lora_unet_down_blocks_1_attentions_0_transformer_blocks_0_attn1_to_q', pair: randomPair(seeded(5), 64, 64, 2), alpha: 2 },
        { stem: 'lora_unet_mid_block_attentions_0_transformer_blocks_0_attn2_to_k', pair: randomPair(seeded(6), 64, 64, 2), alpha: 2 },
        { stem: 'lora_te1_text_model_encoder_layers_0_self_attn_q_proj', pair: randomPair(seeded(7), 32, 32, 2), alpha: 2 },
      ], KOHYA);
      await assert.rejects(p.generate({ ...job, loras: [{ path: sdxl }] }), (e: Error) => e instanceof UserError && /changes no layer of this model/.test(e.message) && /Stable Diffusion/.test(e.message));
      assert.deepEqual(p.loaded(), []);
    } finally {
      await p.release();
    }
  });
});
