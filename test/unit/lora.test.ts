import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { UserError } from '../../src/shared/api';
import { bflLinears } from '../../src/inference/graphs/dit';
import { DitInputs, FluxTransformer, FluxTransformerOptions } from '../../src/inference/graphs/fluxTransformer';
import { openComponent } from '../../src/inference/formats/layouts/components';
import { readLora } from '../../src/inference/formats/lora';
import { ditLora } from '../../src/inference/formats/loraDit';
import { openTensors } from '../../src/inference/formats/safetensors';
import { writeSafetensors } from '../../src/inference/formats/safetensorsWriter';
import { assertGoldenClose, GOLDEN_MODELS, goldenCase } from '../helpers/golden';
import { Pair, product, randomPair, seeded, writeLora, writeMerged } from '../helpers/lora';
import { writeQuantizedDit } from '../helpers/writeGguf';

const BF16_FILE = path.join(GOLDEN_MODELS, 'flux-tiny.safetensors');
const FP8_FILE = path.join(GOLDEN_MODELS, 'flux-tiny-fp8.safetensors');
const config = openComponent(BF16_FILE, 'dit').config;
const h = config.hidden_size;
const KOHYA = { down: '.lora_down.weight', up: '.lora_up.weight' };
const PEFT = { down: '.lora_A.weight', up: '.lora_B.weight' };

function inputs(k: string): DitInputs {
  const c = goldenCase('transformer.safetensors');
  return {
    img: c.readF32('hidden_states'), txt: c.readF32('encoder_hidden_states'), vec: c.readF32('pooled_projections'),
    timestep: c.readF32(`${k}.timestep`)[0], guidance: c.readF32(`${k}.guidance`)[0], imgIds: c.readF32('img_ids'), txtIds: c.readF32('txt_ids'),
  };
}

/** Every BFL Linear's [out, in] of the tiny DiT. */
function shapes(): Map<string, [number, number]> {
  const src = openTensors(BF16_FILE);
  try {
    return new Map(bflLinears(config).map((n) => [n, src.info(`${n}.weight`).shape as [number, number]]));
  } finally {
    src.close();
  }
}

/** A kohya LoRA on every Linear (rank 4, alpha 2) and the deltas it makes at `strength`. */
function kohyaOnEveryLinear(file: string, strength: number, seed = 1): Map<string, Float32Array> {
  const rand = seeded(seed);
  const deltas = new Map<string, Float32Array>();
  const pairs = [...shapes()].map(([n, [out, inF]]) => {
    const pair = randomPair(rand, out, inF, 4);
    deltas.set(`${n}.weight`, product(pair).map((x) => x * strength * (2 / 4)));
    return { stem: `lora_unet_${n.replace(/\./g, '_')}`, pair, alpha: 2 };
  });
  writeLora(file, pairs, KOHYA);
  return deltas;
}

/** `base` with `deltas` merged in, written as float32 to `file`: the reference a LoRA branch must match. */
function mergedCopy(base: string, file: string, deltas: Map<string, Float32Array>): string {
  const src = openTensors(base);
  try {
    writeMerged(file, src, deltas);
  } finally {
    src.close();
  }
  return file;
}

async function outputs(source: string, opts: FluxTransformerOptions, use?: (t: FluxTransformer) => Promise<void>): Promise<Float32Array> {
  const t = await FluxTransformer.load(source, config, opts);
  try {
    await use?.(t);
    return await t.forward(inputs('a'));
  } finally {
    await t.release();
  }
}

describe('LoRA (formats/lora.ts, formats/loraDit.ts, graphs/ditLora.ts)', function () {
  this.timeout(300_000);
  let dir: string;
  before(() => (dir = fs.mkdtempSync(path.join(os.tmpdir(), 'lora-'))));
  after(() => fs.rmSync(dir, { recursive: true, force: true }));

  it('kohya LoRA on every Linear as branches = the checkpoint with W + strength·(α/r)·B·A merged in (fp32)', async () => {
    const lora = path.join(dir, 'kohya.safetensors');
    const deltas = kohyaOnEveryLinear(lora, 0.7);
    const merged = mergedCopy(BF16_FILE, path.join(dir, 'merged.safetensors'), deltas);
    const file = readLora(lora);
    const branches = ditLora(file, config, shapes());
    assert.equal(branches.branches.size, bflLinears(config).length);
    assert.deepEqual(branches.skipped, []);
    const withLora = await outputs(BF16_FILE, { format: 'fp32' }, (t) => t.setLoras([{ branches: branches.branches, strength: 0.7 }]));
    const reference = await outputs(merged, { format: 'fp32' });
    const base = await outputs(BF16_FILE, { format: 'fp32' });
    assertGoldenClose(withLora, reference, 'LoRA branch vs merged weights');
    assert.throws(() => assertGoldenClose(base, reference, 'base vs merged'), /error/, 'the LoRA changes the output');
  });

  it('diffusers/PEFT pieces (to_q/to_k/to_v, a single block\'s four linear1 parts, norm_out\'s swapped halves) land on the fused BFL rows exactly', async () => {
    const rand = seeded(7);
    const sh = shapes();
    const mlp = sh.get('single_blocks.0.linear1')![0] - 3 * h;
    const pieces: Array<{ stem: string; pair: Pair }> = [];
    const deltas = new Map<string, Float32Array>();
    /** Adds `pair`'s delta to rows [start, …) of the BFL weight `bfl`; `swap`: diffusers' [scale; shift] order. */
    const place = (stem: string, bfl: string, start: number, pair: Pair, swap = false) => {
      pieces.push({ stem: `transformer.${stem}`, pair });
      const [out, inF] = sh.get(bfl)!;
      const d = deltas.get(`${bfl}.weight`) ?? new Float32Array(out * inF);
      const p = product(pair);
      for (let r = 0; r < pair.out; r++) {
        const row = swap ? (r + pair.out / 2) % pair.out : start + r;
        for (let i = 0; i < inF; i++) d[row * inF + i] += p[r * inF + i];
      }
      deltas.set(`${bfl}.weight`, d);
    };
    ['to_q', 'to_k', 'to_v'].forEach((n, i) => place(`transformer_blocks.1.attn.${n}`, 'double_blocks.1.img_attn.qkv', i * h, randomPair(rand, h, h, 2)));
    place('transformer_blocks.0.attn.add_k_proj', 'double_blocks.0.txt_attn.qkv', h, randomPair(rand, h, h, 3));
    ['to_q', 'to_k', 'to_v'].forEach((n, i) => place(`single_transformer_blocks.1.attn.${n}`, 'single_blocks.1.linear1', i * h, randomPair(rand, h, h, 2)));
    place('single_transformer_blocks.1.proj_mlp', 'single_blocks.1.linear1', 3 * h, randomPair(rand, mlp, h, 2));
    place('single_transformer_blocks.0.proj_out', 'single_blocks.0.linear2', 0, randomPair(rand, h, h + mlp, 2));
    place('norm_out.linear', 'final_layer.adaLN_modulation.1', 0, randomPair(rand, 2 * h, h, 2), true);
    place('x_embedder', 'img_in', 0, randomPair(rand, h, config.in_channels, 2));
    place('transformer_blocks.0.norm1.linear', 'double_blocks.0.img_mod.lin', 0, randomPair(rand, 6 * h, h, 2));
    const lora = path.join(dir, 'peft.safetensors');
    writeLora(lora, pieces, PEFT);
    const merged = mergedCopy(BF16_FILE, path.join(dir, 'merged-peft.safetensors'), deltas);
    const branches = ditLora(readLora(lora), config, sh);
    assert.equal(branches.branches.get('single_blocks.1.linear1')!.rank, 8, 'four pieces of rank 2 stacked');
    const withLora = await outputs(BF16_FILE, { format: 'fp32' }, (t) => t.setLoras([{ branches: branches.branches, strength: 1 }]));
    assertGoldenClose(withLora, await outputs(merged, { format: 'fp32' }), 'PEFT pieces vs merged weights');
  });

  it('strength 0 gives the base output bit for bit; adding a LoRA rebuilds once, changing its strength or removing it never does', async () => {
    const lora = path.join(dir, 'kohya0.safetensors');
    kohyaOnEveryLinear(lora, 1);
    const branches = ditLora(readLora(lora), config, shapes()).branches;
    const t = await FluxTransformer.load(BF16_FILE, config, { format: 'fp32' });
    const session = () => (t as unknown as { session: object }).session;
    try {
      const base = await t.forward(inputs('a'));
      assert.equal(t.hasLoraBranches, false);
      await t.setLoras([]);
      assert.equal(t.sessionBuilds, 1, 'no LoRA on a plain session: nothing to build');
      await t.setLoras([{ branches, strength: 0, id: 'kohya0' }]);
      assert.equal(t.hasLoraBranches, true);
      assert.equal(t.sessionBuilds, 2, 'the new LoRA rebuilt the session once');
      const built = session();
      const zero = await t.forward(inputs('a'));
      assert.equal(zero.length, base.length);
      for (let i = 0; i < base.length; i++) if (zero[i] !== base[i]) assert.fail(`strength 0: element ${i} is ${zero[i]}, the base gives ${base[i]}`);
      await t.setLoras([{ branches, strength: 1, id: 'kohya0' }]);
      const one = await t.forward(inputs('a'));
      assert.ok(one.some((x, i) => x !== base[i]), 'strength 1 changes the output');
      await t.setLoras([]);
      const removed = await t.forward(inputs('a'));
      for (let i = 0; i < base.length; i++) if (removed[i] !== base[i]) assert.fail(`removed: element ${i} is ${removed[i]}, the base gives ${base[i]}`);
      assert.equal(t.hasLoraBranches, true, 'the branched session stays, fed zeros');
      assert.equal(session(), built, 'the same session since the LoRA came');
      assert.equal(t.sessionBuilds, 2);
    } finally {
      await t.release();
    }
  });

  it('removing a LoRA and adding the same file back does not rebuild; a different file rebuilds exactly once, without the leftovers', async () => {
    const fileA = path.join(dir, 'kohya-a.safetensors');
    const fileB = path.join(dir, 'kohya-b.safetensors');
    kohyaOnEveryLinear(fileA, 1, 11);
    kohyaOnEveryLinear(fileB, 1, 12);
    const sh = shapes();
    // Each file mapped twice: identity is the id (the pipeline's file id), not the branches object.
    const a = () => ({ branches: ditLora(readLora(fileA), config, sh).branches, id: 'a' });
    const b = () => ({ branches: ditLora(readLora(fileB), config, sh).branches, id: 'b' });
    const t = await FluxTransformer.load(BF16_FILE, config, { format: 'fp32', loras: [{ ...a(), strength: 0.6 }] });
    const session = () => (t as unknown as { session: object }).session;
    try {
      assert.equal(t.hasLoraBranches, true, 'built with the LoRA at load');
      const withA = await t.forward(inputs('a'));
      const built = session();
      await t.setLoras([]);
      const none = await t.forward(inputs('a'));
      assert.ok(none.some((x, i) => x !== withA[i]), 'removed: the output changes');
      await t.setLoras([{ ...a(), strength: 0.6 }]);
      assert.deepEqual(await t.forward(inputs('a')), withA, 'the same file back: the same output');
      assert.equal(session(), built, 'the same file back: no rebuild');
      assert.equal(t.sessionBuilds, 1);

      await t.setLoras([{ ...b(), strength: 0.6 }]);
      assert.equal(t.sessionBuilds, 2, 'a different file: one rebuild');
      assert.notEqual(session(), built);
      const withB = await t.forward(inputs('a'));
      assert.ok(withB.some((x, i) => x !== withA[i]), 'B is not A');
      // Rebuilt with B only: A is not a slot any more, so A coming back rebuilds again.
      await t.setLoras([{ ...b(), strength: 0.3 }]);
      assert.equal(t.sessionBuilds, 2, 'B at another strength: a feed');
      await t.setLoras([{ ...a(), strength: 0.6 }, { ...b(), strength: 0.6 }]);
      assert.equal(t.sessionBuilds, 3, 'A with B: one rebuild');
      await t.setLoras([{ ...a(), strength: 0.6 }]);
      assert.equal(t.sessionBuilds, 3, 'B removed: a feed');
      assertGoldenClose(await t.forward(inputs('a')), withA, 'A alone on the A+B session (B at 0)');
    } finally {
      await t.release();
    }
  });

  it('two LoRAs stack: kohya at 0.8 plus the same file at −0.8 gives the base output', async () => {
    const lora = path.join(dir, 'kohya-stack.safetensors');
    kohyaOnEveryLinear(lora, 1, 3);
    const branches = ditLora(readLora(lora), config, shapes()).branches;
    const base = await outputs(BF16_FILE, { format: 'fp32' });
    // Distinct ids: two slots, two branches per Linear (the same id twice would be one slot at 0).
    const both = await outputs(BF16_FILE, { format: 'fp32' }, (t) => t.setLoras([{ branches, strength: 0.8, id: 'plus' }, { branches, strength: -0.8, id: 'minus' }]));
    assertGoldenClose(both, base, '+0.8 − 0.8');
  });

  it('an fp8 base keeps its format and takes the LoRA at full effect: = the fp8 weights (as f32) with the delta merged', async () => {
    const lora = path.join(dir, 'kohya-fp8.safetensors');
    const deltas = kohyaOnEveryLinear(lora, 1, 5);
    const merged = mergedCopy(FP8_FILE, path.join(dir, 'merged-fp8.safetensors'), deltas);
    const branches = ditLora(readLora(lora), config, shapes()).branches;
    const withLora = await outputs(FP8_FILE, { format: 'fp8', inlineLimit: 0 }, (t) => t.setLoras([{ branches, strength: 1 }]));
    assertGoldenClose(withLora, await outputs(merged, { format: 'fp32' }), 'fp8 base + LoRA vs fp8 values + delta in f32');
  });

  it('a GGUF Q8_0 base (MatMulNBits blocks) keeps its format and takes the LoRA at full effect: = its dequantized weights with the delta merged', async () => {
    const gguf = path.join(dir, 'tiny-q8.gguf');
    writeQuantizedDit(gguf, 'Q8_0');
    const lora = path.join(dir, 'kohya-gguf.safetensors');
    const deltas = kohyaOnEveryLinear(lora, 1, 6);
    const merged = mergedCopy(gguf, path.join(dir, 'merged-gguf.safetensors'), deltas);
    const branches = ditLora(readLora(lora), config, shapes()).branches;
    const opts = { format: 'fp32', inlineLimit: 0, cacheDir: path.join(dir, 'cache-gguf'), int8Activations: false } as const;
    const withLora = await outputs(gguf, opts, (t) => t.setLoras([{ branches, strength: 1 }]));
    assertGoldenClose(withLora, await outputs(merged, { format: 'fp32' }), 'GGUF Q8_0 base + LoRA vs dequantized values + delta in f32');
  });

  it('XLabs pairs map onto the double blocks\' qkv and proj; ComfyUI diffusion_model. names with lora_A/lora_B onto BFL names', () => {
    const rand = seeded(11);
    const file = path.join(dir, 'xlabs.safetensors');
    writeLora(file, [
      { stem: 'double_blocks.0.processor.qkv_lora1', pair: randomPair(rand, 3 * h, h, 4) },
      { stem: 'double_blocks.1.processor.proj_lora2', pair: randomPair(rand, h, h, 4) },
    ], { down: '.down.weight', up: '.up.weight' });
    const x = ditLora(readLora(file), config, shapes());
    assert.deepEqual([...x.branches.keys()].sort(), ['double_blocks.0.img_attn.qkv', 'double_blocks.1.txt_attn.proj']);
    const comfy = path.join(dir, 'comfy.safetensors');
    writeLora(comfy, [{ stem: 'diffusion_model.single_blocks.0.linear2', pair: randomPair(rand, h, h + 4 * h, 2), alpha: 1 }], PEFT);
    const c = readLora(comfy);
    assert.equal(c.pairs[0].scale, 0.5, 'alpha 1 / rank 2');
    assert.deepEqual([...ditLora(c, config, shapes()).branches.keys()], ['single_blocks.0.linear2']);
  });

  it('partial match: unknown modules are listed as skipped, the rest applies', () => {
    const rand = seeded(12);
    const file = path.join(dir, 'partial.safetensors');
    writeLora(file, [
      { stem: 'lora_unet_double_blocks_0_img_attn_proj', pair: randomPair(rand, h, h, 2) },
      { stem: 'lora_unet_double_blocks_9_img_attn_proj', pair: randomPair(rand, h, h, 2) },
    ], KOHYA);
    const d = ditLora(readLora(file), config, shapes());
    assert.deepEqual([...d.branches.keys()], ['double_blocks.0.img_attn.proj']);
    assert.deepEqual(d.skipped, ['lora_unet_double_blocks_9_img_attn_proj']);
  });

  it('a LoRA for another model size is refused with the layer and both shapes', () => {
    const file = path.join(dir, 'big.safetensors');
    writeLora(file, [{ stem: 'lora_unet_double_blocks_0_img_attn_proj', pair: randomPair(seeded(1), 3072, 3072, 1) }], KOHYA);
    assert.throws(() => ditLora(readLora(file), config, shapes()), (e: Error) => e instanceof UserError && /does not fit this model/.test(e.message) && /\[3072, 3072\]/.test(e.message) && /double_blocks\.0\.img_attn\.proj has \[64, 64\]/.test(e.message));
  });

  it('a file with no LoRA keys: a UserError naming what it found and the formats known', () => {
    const file = path.join(dir, 'not-lora.safetensors');
    writeSafetensors(file, [{ name: 'model.embed.weight', dtype: 'F32', shape: [2, 2], bytes: () => new Uint8Array(16) }]);
    assert.throws(() => readLora(file), (e: Error) => e instanceof UserError && /not a LoRA/.test(e.message) && /"model\.embed\.weight"/.test(e.message) && /kohya/.test(e.message) && /XLabs/.test(e.message));
  });

  it('a PyTorch pickle LoRA (.pt/.ckpt, zip or bare pickle) is named as such, not as a corrupt safetensors file; other unreadable files name the file once', () => {
    const zip = path.join(dir, 'style.pt');
    fs.writeFileSync(zip, Buffer.concat([Buffer.from('PK\x03\x04', 'latin1'), Buffer.alloc(200)]));
    const bare = path.join(dir, 'old.ckpt');
    fs.writeFileSync(bare, Buffer.concat([Buffer.from([0x80, 0x02]), Buffer.alloc(200)]));
    for (const file of [zip, bare]) {
      assert.throws(() => readLora(file), (e: Error) => e instanceof UserError && e.message === `${file} is a PyTorch pickle file, not safetensors: MajicFLUX reads LoRAs only as .safetensors (a pickle can run code when loaded); download the .safetensors version or convert it`);
    }
    const short = path.join(dir, 'empty.safetensors');
    fs.writeFileSync(short, 'hello');
    assert.throws(() => readLora(short), (e: Error) => e instanceof UserError && e.message.startsWith(`Cannot read the LoRA ${short}: not a safetensors file`), 'the path once');
  });

  it('DoRA, LoKr and LoHa files: a clear "not supported" UserError', () => {
    const cases: Array<[string, RegExp]> = [['lora_unet_x.dora_scale', /DoRA/], ['lora_unet_x.lokr_w1', /LoKr/], ['lora_unet_x.hada_w1_a', /LoHa/]];
    for (const [key, what] of cases) {
      const file = path.join(dir, 'adapter.safetensors');
      writeLora(file, [{ stem: 'lora_unet_x', pair: randomPair(seeded(2), 4, 4, 1) }], KOHYA, [{ name: key, dtype: 'F32', shape: [1], bytes: () => new Uint8Array(4) }]);
      assert.throws(() => readLora(file), (e: Error) => e instanceof UserError && what.test(e.message) && /does not support/.test(e.message), key);
    }
  });
});
