import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { Component, DitComponent, openComponent, openComponents, VaeComponent } from '../../src/inference/formats/layouts/components';
import { detectLayouts, LayoutError } from '../../src/inference/formats/layouts/detect';
import { DitWeights } from '../../src/inference/formats/layouts/ditWeights';
import { isModelFolder } from '../../src/inference/formats/layouts/folder';
import { inspectPath, tensorStats } from '../../src/inference/formats/layouts/inspect';
import { openModel, scanModelFolder } from '../../src/inference/formats/layouts/model';
import { readPiece } from '../../src/inference/formats/layouts/pieces';
import { SafetensorsError, SafetensorsFile } from '../../src/inference/formats/safetensors';
import { tempDir, writeSafetensors, writeSparseSafetensors } from '../helpers/writeSafetensors';

const FIXTURES = path.resolve(__dirname, '../fixtures');
const MODELS = path.join(FIXTURES, 'flux-tiny/models');
const DEV = path.join(FIXTURES, 'FLUX.1-dev');
const BFL_FILE = path.join(MODELS, 'flux-tiny.safetensors');
const DIFFUSERS_DIR = path.join(MODELS, 'transformer');

type Shapes = Record<string, { dtype: string; shape: number[] }>;

function namesIn(file: string): string[] {
  const f = SafetensorsFile.open(file);
  const n = f.names();
  f.close();
  return n;
}

function indexNames(file: string): Record<string, string> {
  return JSON.parse(fs.readFileSync(file, 'utf8')).weight_map;
}

/** Asserts `fn` throws a LayoutError or SafetensorsError naming `where` and matching every pattern. */
function throwsAbout(fn: () => unknown, where: string, ...problems: RegExp[]): Error {
  let caught: unknown;
  try {
    fn();
  } catch (e) {
    caught = e;
  }
  assert.ok(caught instanceof LayoutError || caught instanceof SafetensorsError, `expected a LayoutError, got ${caught === undefined ? 'no error' : String(caught)}`);
  assert.ok(caught.message.includes(where), `message should name ${where}: ${caught.message}`);
  for (const p of problems) assert.match(caught.message, p);
  return caught;
}

/** Copies a checkpoint's tensors (bytes and all) into a new file, renaming or dropping them. */
function rewrite(src: string, dest: string, rename: (n: string) => string | undefined = (n) => n): string {
  const f = SafetensorsFile.open(src);
  const out: Record<string, { dtype: string; shape: number[]; data: Uint8Array }> = {};
  for (const n of f.names()) {
    const to = rename(n);
    if (to !== undefined) out[to] = { dtype: f.info(n).dtype, shape: f.info(n).shape, data: f.readBytes(n) };
  }
  f.close();
  return writeSafetensors(dest, out);
}

// ─── Real FLUX.1-dev shapes (weights absent: the test writes sparse files) ─────────────────────

const H = 3072;
const MLP = 4 * H;

/** Shapes of FLUX.1-dev's diffusers transformer, by tensor name. */
function devTransformerShape(name: string): number[] {
  const rules: Array<[RegExp, number[]]> = [
    [/^x_embedder\./, [H, 64]],
    [/^context_embedder\./, [H, 4096]],
    [/(timestep|guidance)_embedder\.linear_1\./, [H, 256]],
    [/text_embedder\.linear_1\./, [H, 768]],
    [/embedder\.linear_2\./, [H, H]],
    [/^norm_out\.linear\./, [2 * H, H]],
    [/^proj_out\./, [64, H]],
    [/\.norm1(_context)?\.linear\./, [6 * H, H]],
    [/^single_transformer_blocks\.\d+\.norm\.linear\./, [3 * H, H]],
    [/\.norm_(added_)?[qk]\.weight$/, [128]],
    [/\.(to_[qkv]|add_[qkv]_proj|to_out\.0|to_add_out)\./, [H, H]],
    [/\.net\.0\.proj\./, [MLP, H]],
    [/\.net\.2\./, [H, MLP]],
    [/\.proj_mlp\./, [MLP, H]],
    [/^single_transformer_blocks\.\d+\.proj_out\./, [H, H + MLP]],
  ];
  const rule = rules.find(([re]) => re.test(name));
  if (!rule) throw new Error(`test: no FLUX.1-dev shape for ${name}`);
  return name.endsWith('.bias') && rule[1].length > 1 ? [rule[1][0]] : rule[1];
}

/** Shapes of FLUX.1-dev's T5-XXL encoder, by tensor name. */
function devT5Shape(name: string): number[] {
  if (name === 'shared.weight') return [32128, 4096];
  if (/relative_attention_bias/.test(name)) return [32, 64];
  if (/SelfAttention\.[qkvo]\.weight$/.test(name)) return [4096, 4096];
  if (/layer_norm\.weight$/.test(name)) return [4096];
  if (/wi_[01]\.weight$/.test(name)) return [10240, 4096];
  if (/wo\.weight$/.test(name)) return [4096, 10240];
  throw new Error(`test: no T5 shape for ${name}`);
}

/** CLIP ViT-L/14 text model as FLUX.1-dev's text_encoder/model.safetensors names it. */
function clipL(prefix = 'text_model.'): Shapes {
  const t: Shapes = {};
  const add = (n: string, shape: number[]) => (t[prefix + n] = { dtype: 'BF16', shape });
  add('embeddings.token_embedding.weight', [49408, 768]);
  add('embeddings.position_embedding.weight', [77, 768]);
  for (let i = 0; i < 12; i++) {
    const l = `encoder.layers.${i}`;
    for (const p of ['q_proj', 'k_proj', 'v_proj', 'out_proj']) {
      add(`${l}.self_attn.${p}.weight`, [768, 768]);
      add(`${l}.self_attn.${p}.bias`, [768]);
    }
    for (const p of ['layer_norm1', 'layer_norm2']) {
      add(`${l}.${p}.weight`, [768]);
      add(`${l}.${p}.bias`, [768]);
    }
    add(`${l}.mlp.fc1.weight`, [3072, 768]);
    add(`${l}.mlp.fc1.bias`, [3072]);
    add(`${l}.mlp.fc2.weight`, [768, 3072]);
    add(`${l}.mlp.fc2.bias`, [768]);
  }
  add('final_layer_norm.weight', [768]);
  add('final_layer_norm.bias', [768]);
  return t;
}

/** The FLUX.1 autoencoder (ch 128, ch_mult 1,2,4,4, 2 res blocks, z 16) in either naming. */
function fluxVae(naming: 'ldm' | 'diffusers', dtype = 'F32'): Shapes {
  const t: Shapes = {};
  const conv = (n: string, cout: number, cin: number, k: number) => {
    t[`${n}.weight`] = { dtype, shape: [cout, cin, k, k] };
    t[`${n}.bias`] = { dtype, shape: [cout] };
  };
  const vec = (n: string, c: number) => {
    t[`${n}.weight`] = { dtype, shape: [c] };
    t[`${n}.bias`] = { dtype, shape: [c] };
  };
  const linear = (n: string, c: number) => {
    t[`${n}.weight`] = { dtype, shape: [c, c] };
    t[`${n}.bias`] = { dtype, shape: [c] };
  };
  const ldm = naming === 'ldm';
  const res = (n: string, cin: number, cout: number) => {
    vec(`${n}.norm1`, cin);
    conv(`${n}.conv1`, cout, cin, 3);
    vec(`${n}.norm2`, cout);
    conv(`${n}.conv2`, cout, cout, 3);
    if (cin !== cout) conv(`${n}.${ldm ? 'nin_shortcut' : 'conv_shortcut'}`, cout, cin, 1);
  };
  const widths = [128, 256, 512, 512];
  const mid = (side: string) => {
    if (ldm) {
      res(`${side}.mid.block_1`, 512, 512);
      vec(`${side}.mid.attn_1.norm`, 512);
      for (const p of ['q', 'k', 'v', 'proj_out']) conv(`${side}.mid.attn_1.${p}`, 512, 512, 1);
      res(`${side}.mid.block_2`, 512, 512);
    } else {
      res(`${side}.mid_block.resnets.0`, 512, 512);
      vec(`${side}.mid_block.attentions.0.group_norm`, 512);
      for (const p of ['to_q', 'to_k', 'to_v', 'to_out.0']) linear(`${side}.mid_block.attentions.0.${p}`, 512);
      res(`${side}.mid_block.resnets.1`, 512, 512);
    }
  };
  conv('encoder.conv_in', 128, 3, 3);
  let c = 128;
  widths.forEach((w, i) => {
    for (let j = 0; j < 2; j++) {
      res(ldm ? `encoder.down.${i}.block.${j}` : `encoder.down_blocks.${i}.resnets.${j}`, c, w);
      c = w;
    }
    if (i < 3) conv(ldm ? `encoder.down.${i}.downsample.conv` : `encoder.down_blocks.${i}.downsamplers.0.conv`, w, w, 3);
  });
  mid('encoder');
  vec(ldm ? 'encoder.norm_out' : 'encoder.conv_norm_out', 512);
  conv('encoder.conv_out', 32, 512, 3);
  conv('decoder.conv_in', 512, 16, 3);
  mid('decoder');
  c = 512;
  for (let k = 0; k < 4; k++) {
    const i = 3 - k; // LDM numbers levels shallow-first, diffusers deepest-first
    const level = ldm ? `decoder.up.${i}` : `decoder.up_blocks.${k}`;
    for (let j = 0; j < 3; j++) {
      res(ldm ? `${level}.block.${j}` : `${level}.resnets.${j}`, c, widths[i]);
      c = widths[i];
    }
    if (i > 0) conv(ldm ? `${level}.upsample.conv` : `${level}.upsamplers.0.conv`, widths[i], widths[i], 3);
  }
  vec(ldm ? 'decoder.norm_out' : 'decoder.conv_norm_out', 128);
  conv('decoder.conv_out', 3, 128, 3);
  return t;
}

/** Writes header-only shards exactly as a real `*.index.json` distributes the names. */
function writeShardsFromIndex(realIndex: string, dir: string, shapeOf: (n: string) => number[], dtype = 'BF16'): void {
  const map = indexNames(realIndex);
  const byShard = new Map<string, Shapes>();
  for (const [name, shard] of Object.entries(map)) {
    if (!byShard.has(shard)) byShard.set(shard, {});
    byShard.get(shard)![name] = { dtype, shape: shapeOf(name) };
  }
  for (const [shard, tensors] of byShard) writeSparseSafetensors(path.join(dir, shard), tensors);
  fs.copyFileSync(realIndex, path.join(dir, path.basename(realIndex)));
}

const FLUX_DEV_CONFIG = {
  in_channels: 64, out_channels: 64, vec_in_dim: 768, context_in_dim: 4096, hidden_size: 3072, mlp_ratio: 4, num_heads: 24,
  depth: 19, depth_single_blocks: 38, axes_dim: [16, 56, 56], theta: 10000, qkv_bias: true, guidance_embed: true,
};
const TINY_CONFIG = {
  in_channels: 64, out_channels: 64, vec_in_dim: 32, context_in_dim: 32, hidden_size: 64, mlp_ratio: 4, num_heads: 4,
  depth: 2, depth_single_blocks: 2, axes_dim: [4, 6, 6], theta: 10000, qkv_bias: true, guidance_embed: true,
};

describe('layouts', () => {
  let tmp: { dir: string; cleanup: () => void };
  before(() => {
    tmp = tempDir('layouts-test-');
  });
  after(() => tmp.cleanup());
  const at = (...p: string[]) => path.join(tmp.dir, ...p);

  describe('detection by tensor names', () => {
    it('recognises every golden layout', () => {
      const cases: Array<[string, string]> = [
        [BFL_FILE, 'bfl-dit'],
        [path.join(MODELS, 'flux-tiny-fp8.safetensors'), 'bfl-dit'],
        [path.join(DIFFUSERS_DIR, 'diffusion_pytorch_model.safetensors'), 'diffusers-dit'],
        [path.join(MODELS, 'ae.safetensors'), 'ldm-vae'],
        [path.join(MODELS, 'text_encoder/model.safetensors'), 'hf-clip'],
        [path.join(MODELS, 'text_encoder_2/model-00002-of-00002.safetensors'), 'hf-t5'],
      ];
      for (const [file, layout] of cases) assert.deepEqual(detectLayouts(namesIn(file)).map((m) => [m.layout, m.prefix]), [[layout, '']], file);
    });

    it('recognises the real FLUX.1-dev name sets from their index files', () => {
      const dit = Object.keys(indexNames(path.join(DEV, 'transformer/diffusion_pytorch_model.safetensors.index.json')));
      assert.equal(dit.length, 1160);
      assert.deepEqual(detectLayouts(dit), [{ layout: 'diffusers-dit', kind: 'dit', prefix: '' }]);
      const t5 = Object.keys(indexNames(path.join(DEV, 'text_encoder_2/model.safetensors.index.json')));
      assert.deepEqual(detectLayouts(t5), [{ layout: 'hf-t5', kind: 't5', prefix: '' }]);
      assert.deepEqual(detectLayouts(Object.keys(clipL())), [{ layout: 'hf-clip', kind: 'clip', prefix: 'text_model.' }]);
      assert.deepEqual(detectLayouts(Object.keys(fluxVae('diffusers'))).map((m) => m.layout), ['diffusers-vae']);
      assert.deepEqual(detectLayouts(Object.keys(fluxVae('ldm'))).map((m) => m.layout), ['ldm-vae']);
    });

    it('finds prefixes and every component of an all-in-one checkpoint', () => {
      const names = [
        ...namesIn(BFL_FILE).map((n) => `model.diffusion_model.${n}`),
        ...namesIn(path.join(MODELS, 'ae.safetensors')).map((n) => `vae.${n}`),
        ...Object.keys(clipL('text_encoders.clip_l.transformer.text_model.')),
        'text_encoders.t5xxl.transformer.encoder.block.0.layer.0.SelfAttention.q.weight',
      ];
      assert.deepEqual(detectLayouts(names).map((m) => [m.layout, m.prefix]), [
        ['bfl-dit', 'model.diffusion_model.'],
        ['ldm-vae', 'vae.'],
        ['hf-clip', 'text_encoders.clip_l.transformer.text_model.'],
        ['hf-t5', 'text_encoders.t5xxl.transformer.'],
      ]);
    });

    it('does not confuse look-alike names', () => {
      assert.deepEqual(detectLayouts(['encoder.layer.0.attention.self.query.weight', 'lora_unet_double_blocks_0_img_attn_qkv.lora_down.weight', 'decoder.up.weight']), []);
      assert.deepEqual(detectLayouts([]), []);
    });
  });

  describe('DiT weights: BFL names over both layouts', () => {
    let bfl: DitComponent;
    let dif: DitComponent;
    before(() => {
      bfl = openComponent(BFL_FILE, 'dit');
      dif = openComponent(DIFFUSERS_DIR, 'dit');
    });

    it('opens both golden files as DiTs in their layouts', () => {
      assert.equal(bfl.layout, 'bfl-dit');
      assert.equal(dif.layout, 'diffusers-dit');
      assert.equal(dif.weights.depth, 2);
      assert.equal(dif.weights.depthSingle, 2);
      assert.deepEqual(dif.weights.unused(), []);
    });

    it('gives the same BFL names from the diffusers file as the BFL file holds', () => {
      assert.deepEqual(dif.weights.names().sort(), namesIn(BFL_FILE).sort());
    });

    it('every BFL tensor from the diffusers file equals the BFL file bit for bit', () => {
      for (const name of bfl.weights.names()) {
        const a = bfl.weights.tensor(name);
        const b = dif.weights.tensor(name);
        assert.deepEqual(b.shape, a.shape, name);
        assert.equal(b.dtype, a.dtype, name);
        const bytes = bfl.weights.readBytes(name);
        assert.deepEqual(dif.weights.readBytes(name), bytes, name);
        // The pieces, read as byte ranges and concatenated, are the tensor too.
        assert.deepEqual(Buffer.concat(dif.weights.pieces(name).map(readPiece)), bytes, `${name} (pieces)`);
        assert.deepEqual(dif.weights.readF32(name), bfl.weights.readF32(name), name);
        assert.deepEqual(dif.weights.readF16(name), bfl.weights.readF16(name), name);
      }
    });

    it('every part (q, k, v, mlp, shift, scale, …) is one piece and equal in both layouts', () => {
      let fused = 0;
      for (const name of bfl.weights.names()) {
        const pa = bfl.weights.parts(name);
        const pb = dif.weights.parts(name);
        assert.deepEqual(pb.map((p) => p.part), pa.map((p) => p.part), name);
        if (pa.length > 1) fused++;
        for (let i = 0; i < pa.length; i++) {
          assert.deepEqual(pb[i].piece.shape, pa[i].piece.shape, `${name} ${pa[i].part}`);
          assert.deepEqual(readPiece(pb[i].piece), readPiece(pa[i].piece), `${name} ${pa[i].part}`);
        }
      }
      assert.equal(fused, 2 * (2 * 4 + 2 * 2) + 2); // qkv+mod (img, txt) ×2 blocks, linear1+modulation ×2, final adaLN
    });

    it('describes how each tensor is stored: one range, concatenation, or swapped halves', () => {
      const d = dif.weights;
      const qkv = d.tensor('double_blocks.1.txt_attn.qkv.weight');
      assert.deepEqual(qkv.pieces.map((p) => p.source.name), ['transformer_blocks.1.attn.add_q_proj.weight', 'transformer_blocks.1.attn.add_k_proj.weight', 'transformer_blocks.1.attn.add_v_proj.weight']);
      assert.ok(qkv.pieces.every((p) => p.whole));
      assert.equal(d.single('double_blocks.1.txt_attn.qkv.weight'), undefined);
      assert.deepEqual(d.pieces('single_blocks.0.linear1.bias').map((p) => p.source.name), ['single_transformer_blocks.0.attn.to_q.bias', 'single_transformer_blocks.0.attn.to_k.bias', 'single_transformer_blocks.0.attn.to_v.bias', 'single_transformer_blocks.0.proj_mlp.bias']);
      const ada = d.pieces('final_layer.adaLN_modulation.1.weight');
      assert.deepEqual(ada.map((p) => [p.source.name, p.rows, p.whole]), [['norm_out.linear.weight', [64, 128], false], ['norm_out.linear.weight', [0, 64], false]]);
      assert.equal(ada[0].offset, ada[1].offset + ada[1].byteLength);
      const shiftScale = d.parts('final_layer.adaLN_modulation.1.bias');
      assert.deepEqual(shiftScale.map((p) => [p.part, p.piece.rows]), [['shift', [64, 128]], ['scale', [0, 64]]]);
      const plain = d.single('double_blocks.0.img_mlp.0.weight');
      assert.ok(plain?.whole);
      assert.equal(plain.source.name, 'transformer_blocks.0.ff.net.0.proj.weight');
      assert.equal(d.single('double_blocks.0.img_mod.lin.weight')?.source.name, 'transformer_blocks.0.norm1.linear.weight');
      assert.equal(d.single('single_blocks.1.norm.key_norm.scale')?.source.name, 'single_transformer_blocks.1.attn.norm_k.weight');
      // BFL: always one whole tensor; parts are row slices of it.
      const b = bfl.weights.single('double_blocks.0.img_attn.qkv.weight')!;
      assert.ok(b.whole);
      const parts = bfl.weights.parts('double_blocks.0.img_attn.qkv.weight');
      assert.deepEqual(parts.map((p) => [p.part, p.piece.rows, p.piece.whole]), [['q', [0, 64], false], ['k', [64, 128], false], ['v', [128, 192], false]]);
      assert.equal(parts[1].piece.offset, b.offset + 64 * 64 * 2);
      assert.deepEqual(bfl.weights.parts('single_blocks.0.linear1.weight').map((p) => [p.part, p.piece.shape]), [['q', [64, 64]], ['k', [64, 64]], ['v', [64, 64]], ['mlp', [256, 64]]]);
      assert.deepEqual(bfl.weights.parts('double_blocks.0.txt_mod.lin.bias').map((p) => p.part), ['shift_msa', 'scale_msa', 'gate_msa', 'shift_mlp', 'scale_mlp', 'gate_mlp']);
      assert.deepEqual(bfl.weights.parts('img_in.weight').map((p) => p.part), ['all']);
    });

    it('assembles tensors whose pieces lie in different shards', () => {
      const dir = at('sharded-transformer');
      const src = SafetensorsFile.open(path.join(DIFFUSERS_DIR, 'diffusion_pytorch_model.safetensors'));
      const shard1: Record<string, { dtype: string; shape: number[]; data: Uint8Array }> = {};
      const shard2: typeof shard1 = {};
      const weightMap: Record<string, string> = {};
      for (const n of src.names()) {
        const second = /\.to_k\.|\.add_v_proj\.|^norm_out/.test(n);
        (second ? shard2 : shard1)[n] = { dtype: src.info(n).dtype, shape: src.info(n).shape, data: src.readBytes(n) };
        weightMap[n] = `diffusion_pytorch_model-0000${second ? 2 : 1}-of-00002.safetensors`;
      }
      src.close();
      writeSafetensors(path.join(dir, 'diffusion_pytorch_model-00001-of-00002.safetensors'), shard1);
      writeSafetensors(path.join(dir, 'diffusion_pytorch_model-00002-of-00002.safetensors'), shard2);
      fs.writeFileSync(path.join(dir, 'diffusion_pytorch_model.safetensors.index.json'), JSON.stringify({ metadata: {}, weight_map: weightMap }));
      fs.copyFileSync(path.join(DIFFUSERS_DIR, 'config.json'), path.join(dir, 'config.json'));
      const sharded = openComponent(dir, 'dit');
      assert.equal(sharded.files.length, 2);
      assert.deepEqual(sharded.config, TINY_CONFIG);
      const qkv = sharded.weights.pieces('double_blocks.0.img_attn.qkv.weight');
      assert.deepEqual(qkv.map((p) => /-(\d+)-of-/.exec(p.source.file)![1]), ['00001', '00002', '00001']);
      for (const name of bfl.weights.names()) {
        assert.deepEqual(sharded.weights.readBytes(name), bfl.weights.readBytes(name), name);
        assert.deepEqual(Buffer.concat(sharded.weights.pieces(name).map(readPiece)), bfl.weights.readBytes(name), `${name} (pieces)`);
      }
      sharded.close();
      assert.deepEqual(sharded.weights.readBytes('img_in.weight'), bfl.weights.readBytes('img_in.weight'), 'reopens after close()');
      sharded.close();
    });

    it('names the missing diffusers tensors when a BFL tensor cannot be assembled', () => {
      const file = rewrite(path.join(DIFFUSERS_DIR, 'diffusion_pytorch_model.safetensors'), at('no-to-k', 'diffusion_pytorch_model.safetensors'), (n) => (n === 'transformer_blocks.1.attn.to_k.weight' ? undefined : n));
      const src = SafetensorsFile.open(file);
      const w = new DitWeights(src, 'diffusers-dit');
      assert.ok(!w.has('double_blocks.1.img_attn.qkv.weight'));
      assert.ok(w.has('double_blocks.1.img_attn.qkv.bias'));
      throwsAbout(() => w.tensor('double_blocks.1.img_attn.qkv.weight'), file, /"double_blocks\.1\.img_attn\.qkv\.weight" needs "transformer_blocks\.1\.attn\.to_k\.weight", which the checkpoint lacks/);
      throwsAbout(() => w.tensor('double_blocks.7.img_attn.qkv.weight'), file, /no DiT tensor named "double_blocks\.7\.img_attn\.qkv\.weight"/);
      throwsAbout(() => openComponent(path.dirname(file)), file, /DiT .* is missing 1 tensor: transformer_blocks\.1\.attn\.to_k\.weight/);
      src.close();
    });

    it('strips a model.diffusion_model. prefix and keeps info(n).name === n', () => {
      const file = rewrite(BFL_FILE, at('prefixed.safetensors'), (n) => `model.diffusion_model.${n}`);
      const c = openComponent(file, 'dit');
      assert.equal(c.layout, 'bfl-dit');
      assert.equal(c.prefix, 'model.diffusion_model.');
      assert.ok(c.tensors.has('img_in.weight'));
      assert.ok(!c.tensors.has('model.diffusion_model.img_in.weight'));
      assert.equal(c.tensors.info('img_in.weight').name, 'img_in.weight');
      const piece = c.weights.single('img_in.weight')!;
      assert.deepEqual(c.tensors.readBytes(piece.source.name), bfl.weights.readBytes('img_in.weight'));
      assert.deepEqual(readPiece(piece), bfl.weights.readBytes('img_in.weight'));
      throwsAbout(() => c.tensors.info('nope'), file, /no tensor named "model\.diffusion_model\.nope"/);
    });
  });

  describe('configs', () => {
    it('reads the BFL sidecar <name>.config.json and the diffusers config.json alike', () => {
      const bfl = openComponent(BFL_FILE, 'dit');
      assert.equal(bfl.configFile, path.join(MODELS, 'flux-tiny.config.json'));
      assert.deepEqual(bfl.config, TINY_CONFIG);
      assert.deepEqual(bfl.notes, []);
      const fp8 = openComponent(path.join(MODELS, 'flux-tiny-fp8.safetensors'), 'dit');
      assert.equal(fp8.configFile, path.join(MODELS, 'flux-tiny-fp8.config.json'));
      assert.deepEqual(fp8.config, TINY_CONFIG);
      const dif = openComponent(DIFFUSERS_DIR, 'dit');
      assert.equal(dif.configFile, path.join(DIFFUSERS_DIR, 'config.json'));
      assert.deepEqual(dif.config, TINY_CONFIG);
      // Opening the diffusers file itself finds the folder's config too.
      assert.equal(openComponent(path.join(DIFFUSERS_DIR, 'diffusion_pytorch_model.safetensors')).configFile, path.join(DIFFUSERS_DIR, 'config.json'));
    });

    it('derives a DiT config from shapes when there is no config, saying what it assumed', () => {
      const file = rewrite(BFL_FILE, at('derive', 'tiny-no-sidecar.safetensors'));
      const c = openComponent(file, 'dit');
      assert.equal(c.configFile, undefined);
      const { axes_dim, ...rest } = c.config;
      const { axes_dim: _, ...expected } = TINY_CONFIG;
      assert.deepEqual(rest, expected);
      assert.equal(axes_dim.reduce((a, b) => a + b, 0), 16);
      assert.ok(axes_dim.every((a) => a % 2 === 0));
      assert.match(c.notes.join('\n'), /RoPE axes guessed .* for head dim 16/);
    });

    it('schnell-like DiT (no guidance_in) has guidance_embed false', () => {
      const file = rewrite(BFL_FILE, at('schnell', 'tiny-schnell.safetensors'), (n) => (n.startsWith('guidance_in.') ? undefined : n));
      const c = openComponent(file, 'dit');
      assert.equal(c.config.guidance_embed, false);
      assert.ok(!c.weights.has('guidance_in.in_layer.weight'));
    });

    it('a config that contradicts the tensors is an error naming both', () => {
      const file = rewrite(BFL_FILE, at('contradict', 'tiny.safetensors'));
      const sidecar = at('contradict', 'tiny.config.json');
      fs.writeFileSync(sidecar, JSON.stringify({ ...TINY_CONFIG, depth: 19 }));
      throwsAbout(() => openComponent(file), sidecar, /says depth = 19, but the tensors in .*tiny\.safetensors have 2/);
      fs.writeFileSync(sidecar, JSON.stringify({ ...TINY_CONFIG, hidden_size: 'big' }));
      throwsAbout(() => openComponent(file), sidecar, /"hidden_size" should be a whole number, found "big"/);
      fs.writeFileSync(sidecar, '{ nope');
      throwsAbout(() => openComponent(file), sidecar, /is not valid JSON/);
    });

    it('a sidecar may give only what shapes cannot (axes, theta)', () => {
      const file = rewrite(BFL_FILE, at('partial', 'tiny.safetensors'));
      fs.writeFileSync(at('partial', 'tiny.config.json'), JSON.stringify({ axes_dim: [4, 6, 6], theta: 10000 }));
      const c = openComponent(file, 'dit');
      assert.deepEqual(c.config, TINY_CONFIG);
      assert.deepEqual(c.notes, []);
    });

    it('VAE: sidecar, or channels from shapes with FLUX.1 scale/shift defaults', () => {
      const withSidecar = openComponent(path.join(MODELS, 'ae.safetensors'), 'vae');
      const expected = { resolution: 256, in_channels: 3, ch: 32, out_ch: 3, ch_mult: [1, 2, 2, 2], num_res_blocks: 2, z_channels: 16, scale_factor: 0.3611, shift_factor: 0.1159 };
      assert.deepEqual(withSidecar.config, expected);
      assert.ok(withSidecar.hasEncoder);
      const bare = openComponent(rewrite(path.join(MODELS, 'ae.safetensors'), at('vae', 'ae.safetensors')), 'vae');
      assert.deepEqual(bare.config, expected);
      assert.match(bare.notes.join('\n'), /scale_factor 0\.3611 and shift_factor 0\.1159 are the FLUX\.1 values/);
      const decoderOnly = openComponent(rewrite(path.join(MODELS, 'ae.safetensors'), at('vae', 'decoder.safetensors'), (n) => (n.startsWith('encoder.') ? undefined : n)), 'vae') as VaeComponent;
      assert.ok(!decoderOnly.hasEncoder);
      assert.deepEqual(decoderOnly.config, expected);
      assert.match(decoderOnly.notes.join('\n'), /decoder only/);
    });

    it('CLIP and T5: config.json, or sizes from shapes', () => {
      const clip = openComponent(path.join(MODELS, 'text_encoder'), 'clip');
      assert.deepEqual(clip.config, { vocab_size: 49408, hidden_size: 32, intermediate_size: 37, num_hidden_layers: 2, num_attention_heads: 4, max_position_embeddings: 77, layer_norm_eps: 1e-5, hidden_act: 'quick_gelu' });
      const t5 = openComponent(path.join(MODELS, 'text_encoder_2'), 't5');
      const t5Expected = { vocab_size: 32128, d_model: 32, d_kv: 8, d_ff: 40, num_layers: 2, num_heads: 4, relative_attention_num_buckets: 32, relative_attention_max_distance: 128, layer_norm_epsilon: 1e-6, is_gated_act: true, dense_act_fn: 'gelu_new' };
      assert.deepEqual(t5.config, t5Expected);
      assert.deepEqual(t5.files.map((f) => path.basename(f)).sort(), ['model-00001-of-00002.safetensors', 'model-00002-of-00002.safetensors']);
      // No config.json: T5 heads come from relative_attention_bias, d_kv from q.
      const dir = at('t5-bare');
      fs.mkdirSync(dir);
      for (const f of ['model.safetensors.index.json', 'model-00001-of-00002.safetensors', 'model-00002-of-00002.safetensors']) fs.copyFileSync(path.join(MODELS, 'text_encoder_2', f), path.join(dir, f));
      assert.deepEqual(openComponent(dir, 't5').config, t5Expected);
      // The tiny CLIP's 4 heads of 8 cannot be guessed (hidden / 64 = 0.5): the error says to give a config.
      const clipBare = rewrite(path.join(MODELS, 'text_encoder/model.safetensors'), at('clip-bare', 'clip.safetensors'));
      throwsAbout(() => openComponent(clipBare), clipBare, /number of attention heads comes out as 0\.5 .*config\.json/);
    });
  });

  describe('real-size FLUX.1-dev checkpoints (header-only sparse files)', function () {
    this.timeout(60000);
    let dev: string;
    before(() => {
      dev = at('FLUX.1-dev');
      fs.mkdirSync(dev);
      for (const sub of ['transformer', 'text_encoder_2', 'text_encoder', 'vae']) fs.mkdirSync(path.join(dev, sub));
      writeShardsFromIndex(path.join(DEV, 'transformer/diffusion_pytorch_model.safetensors.index.json'), path.join(dev, 'transformer'), devTransformerShape);
      writeShardsFromIndex(path.join(DEV, 'text_encoder_2/model.safetensors.index.json'), path.join(dev, 'text_encoder_2'), devT5Shape);
      writeSparseSafetensors(path.join(dev, 'text_encoder/model.safetensors'), clipL());
      writeSparseSafetensors(path.join(dev, 'vae/diffusion_pytorch_model.safetensors'), fluxVae('diffusers', 'BF16'));
      writeSparseSafetensors(path.join(dev, 'ae.safetensors'), fluxVae('ldm'));
      for (const sub of ['transformer', 'text_encoder', 'text_encoder_2', 'vae']) fs.copyFileSync(path.join(DEV, sub, 'config.json'), path.join(dev, sub, 'config.json'));
      for (const sub of ['tokenizer', 'tokenizer_2', 'scheduler']) fs.symlinkSync(path.join(DEV, sub), path.join(dev, sub));
      fs.copyFileSync(path.join(DEV, 'model_index.json'), path.join(dev, 'model_index.json'));
    });

    it('the shapes used agree with the real index total_size', () => {
      const dit = openComponent(path.join(dev, 'transformer'), 'dit');
      assert.equal(tensorStats(dit.tensors).bytes, JSON.parse(fs.readFileSync(path.join(DEV, 'transformer/diffusion_pytorch_model.safetensors.index.json'), 'utf8')).metadata.total_size);
      const t5 = openComponent(path.join(dev, 'text_encoder_2'), 't5');
      assert.equal(tensorStats(t5.tensors).bytes, JSON.parse(fs.readFileSync(path.join(DEV, 'text_encoder_2/model.safetensors.index.json'), 'utf8')).metadata.total_size);
    });

    it('diffusers transformer: config.json and shapes agree on FLUX.1-dev', () => {
      const dit = openComponent(path.join(dev, 'transformer'), 'dit');
      assert.equal(dit.layout, 'diffusers-dit');
      assert.deepEqual(dit.config, FLUX_DEV_CONFIG);
      assert.equal(dit.files.length, 3);
      const stats = tensorStats(dit.tensors);
      assert.equal(stats.parameters, 11_901_408_320);
      assert.deepEqual(Object.keys(stats.dtypes), ['BF16']);
      // Without config.json everything but the FLUX.1 constants comes from shapes.
      fs.renameSync(path.join(dev, 'transformer/config.json'), path.join(dev, 'transformer/config.json.off'));
      try {
        const bare = openComponent(path.join(dev, 'transformer'), 'dit');
        assert.equal(bare.configFile, undefined);
        assert.deepEqual(bare.config, FLUX_DEV_CONFIG);
        assert.deepEqual(bare.notes, []);
      } finally {
        fs.renameSync(path.join(dev, 'transformer/config.json.off'), path.join(dev, 'transformer/config.json'));
      }
      assert.deepEqual(dit.weights.tensor('single_blocks.37.linear1.weight').shape, [3 * H + MLP, H]);
      assert.deepEqual(dit.weights.tensor('double_blocks.18.img_attn.qkv.bias').shape, [3 * H]);
    });

    it('single-file BFL DiT (flux1-dev.safetensors) with the same numbers, no sidecar', () => {
      const dif = openComponent(path.join(dev, 'transformer'), 'dit');
      const shapes: Shapes = {};
      for (const n of dif.weights.names()) shapes[n] = { dtype: 'F8_E4M3', shape: dif.weights.tensor(n).shape };
      const file = writeSparseSafetensors(at('flux1-dev-fp8.safetensors'), shapes);
      const bfl = openComponent(file, 'dit');
      assert.equal(bfl.layout, 'bfl-dit');
      assert.deepEqual(bfl.config, FLUX_DEV_CONFIG);
      assert.deepEqual(bfl.notes, []);
      assert.equal(tensorStats(bfl.tensors).parameters, 11_901_408_320);
      assert.equal(tensorStats(bfl.tensors).bytes, 11_901_408_320);
    });

    it('T5-XXL, CLIP-L and both VAE layouts', () => {
      const t5 = openComponent(path.join(dev, 'text_encoder_2'), 't5');
      assert.deepEqual(
        { d_model: t5.config.d_model, d_ff: t5.config.d_ff, num_layers: t5.config.num_layers, num_heads: t5.config.num_heads, d_kv: t5.config.d_kv, vocab: t5.config.vocab_size },
        { d_model: 4096, d_ff: 10240, num_layers: 24, num_heads: 64, d_kv: 64, vocab: 32128 },
      );
      assert.equal(t5.config.dense_act_fn, 'gelu_pytorch_tanh'); // from its config.json
      const clip = openComponent(path.join(dev, 'text_encoder'), 'clip');
      assert.equal(clip.prefix, 'text_model.');
      assert.deepEqual(
        [clip.config.hidden_size, clip.config.num_hidden_layers, clip.config.num_attention_heads, clip.config.intermediate_size, clip.config.vocab_size, clip.config.max_position_embeddings],
        [768, 12, 12, 3072, 49408, 77],
      );
      assert.equal(tensorStats(clip.tensors).parameters, 123_060_480);
      const bareClip = openComponent(writeSparseSafetensors(at('clip_l.safetensors'), clipL()), 'clip');
      assert.equal(bareClip.config.num_attention_heads, 12);
      assert.match(bareClip.notes.join(), /heads assumed 12/);
      const fluxVaeConfig = { resolution: 256, in_channels: 3, ch: 128, out_ch: 3, ch_mult: [1, 2, 4, 4], num_res_blocks: 2, z_channels: 16, scale_factor: 0.3611, shift_factor: 0.1159 };
      const ae = openComponent(path.join(dev, 'ae.safetensors'), 'vae');
      assert.equal(ae.layout, 'ldm-vae');
      assert.deepEqual(ae.config, fluxVaeConfig);
      const vae = openComponent(path.join(dev, 'vae'), 'vae');
      assert.equal(vae.layout, 'diffusers-vae');
      assert.deepEqual(vae.config, { ...fluxVaeConfig, resolution: 1024 }); // diffusers sample_size
      assert.equal(tensorStats(ae.tensors).parameters, tensorStats(vae.tensors).parameters);
      assert.equal(tensorStats(ae.tensors).parameters, 83_819_683);
    });

    it('opens the whole folder; diffusers components are preferred over root files', () => {
      const m = openModel(dev);
      assert.equal(m.dit.layout, 'diffusers-dit');
      assert.equal(m.vae.path, path.join(dev, 'vae'));
      assert.deepEqual(m.others.map((c) => path.basename(c.path)), ['ae.safetensors']);
      assert.equal(m.tokenizer, path.join(dev, 'tokenizer'));
      assert.equal(m.tokenizer2, path.join(dev, 'tokenizer_2'));
      assert.equal(m.scheduler, path.join(dev, 'scheduler'));
    });
  });

  describe('model folders', () => {
    const link = (dir: string, ...entries: string[]) => {
      fs.mkdirSync(dir, { recursive: true });
      for (const e of entries) fs.symlinkSync(path.join(MODELS, e), path.join(dir, e));
      return dir;
    };

    it('opens the golden models folder', () => {
      assert.ok(isModelFolder(fs.readdirSync(MODELS)));
      const m = openModel(MODELS);
      assert.equal(m.dit.path, DIFFUSERS_DIR);
      assert.equal(m.vae.path, path.join(MODELS, 'ae.safetensors'));
      assert.equal(m.clip.layout, 'hf-clip');
      assert.equal(m.t5.layout, 'hf-t5');
      assert.deepEqual(m.others.map((c) => path.basename(c.path)).sort(), ['flux-tiny-fp8.safetensors', 'flux-tiny.safetensors']);
    });

    it('a ComfyUI-style folder: single-file DiT + ae.safetensors + HF text encoders', () => {
      const dir = link(at('comfy'), 'flux-tiny.safetensors', 'flux-tiny.config.json', 'ae.safetensors', 'ae.config.json', 'text_encoder', 'text_encoder_2', 'tokenizer', 'tokenizer_2');
      const m = openModel(dir);
      assert.equal(m.dit.layout, 'bfl-dit');
      assert.equal(m.dit.path, path.join(dir, 'flux-tiny.safetensors'));
      assert.equal(m.vae.layout, 'ldm-vae');
      assert.equal(m.scheduler, undefined);
      assert.deepEqual(m.others, []);
    });

    it('says what is missing and what was found', () => {
      const dir = link(at('flux-model'), 'transformer');
      fs.mkdirSync(path.join(dir, 'vae'));
      fs.symlinkSync(path.join(MODELS, 'ae.safetensors'), path.join(dir, 'vae', 'ae.safetensors'));
      const e = throwsAbout(() => openModel(dir), dir,
        /no text encoder found\. Expected text_encoder\/ \(CLIP\) with model\.safetensors/,
        /no T5 text encoder found\. Expected text_encoder_2\/ \(T5\) with model\.safetensors or model\.safetensors\.index\.json/,
        /no CLIP tokenizer found/,
        /no T5 tokenizer found/,
        /Found: transformer\/, vae\/$/);
      assert.doesNotMatch(e.message, /no VAE|no FLUX transformer/);
      const scan = scanModelFolder(dir);
      assert.equal(scan.chosen.vae?.layout, 'ldm-vae');
      assert.equal(scan.missing.length, 4);
    });

    it('a folder with several root DiTs and no transformer/ asks which', () => {
      const dir = link(at('two-dits'), 'flux-tiny.safetensors', 'flux-tiny-fp8.safetensors', 'ae.safetensors', 'text_encoder', 'text_encoder_2', 'tokenizer', 'tokenizer_2');
      throwsAbout(() => openModel(dir), dir, /several DiT \(transformer\) checkpoints \(flux-tiny-fp8\.safetensors, flux-tiny\.safetensors\): name the one to use/);
    });

    it('a component folder with a missing shard is reported with the shard', () => {
      const dir = link(at('missing-shard'), 'transformer', 'ae.safetensors', 'text_encoder', 'tokenizer', 'tokenizer_2');
      const t5 = path.join(dir, 'text_encoder_2');
      fs.mkdirSync(t5);
      for (const f of ['model.safetensors.index.json', 'model-00001-of-00002.safetensors', 'config.json']) fs.symlinkSync(path.join(MODELS, 'text_encoder_2', f), path.join(t5, f));
      throwsAbout(() => openModel(dir), dir, /text_encoder_2\/ is unusable: .*model\.safetensors\.index\.json: shard listed in the index not found in .*: model-00002-of-00002\.safetensors/);
      const report = inspectPath(dir);
      assert.equal(report.complete, false);
      assert.equal(report.problems.length, 1);
    });

    it('a folder that is none of these', () => {
      const dir = at('random');
      fs.mkdirSync(path.join(dir, 'sub'), { recursive: true });
      fs.writeFileSync(path.join(dir, 'notes.txt'), 'hi');
      throwsAbout(() => inspectPath(dir), dir, /not a FLUX\.1 model or component: no \.safetensors file here and none of transformer\/, vae\/, text_encoder\/, text_encoder_2\/\. Found: notes\.txt, sub\//);
      throwsAbout(() => openModel(dir), dir, /no FLUX transformer \(DiT\) found/, /no VAE found/, /Found: notes\.txt, sub\//);
      const empty = at('empty');
      fs.mkdirSync(empty);
      throwsAbout(() => openModel(empty), empty, /Found: nothing \(empty folder\)/);
      throwsAbout(() => inspectPath(at('nowhere')), at('nowhere'), /no such file or folder/);
    });

    it('a checkpoint that is no FLUX component, or misses tensors', () => {
      const other = writeSafetensors(at('bert.safetensors'), { 'encoder.layer.0.attention.self.query.weight': { dtype: 'F32', shape: [2, 2] } });
      throwsAbout(() => openComponents(other), other, /not a FLUX\.1 component: its 1 tensor names match none of the known layouts .*First names: encoder\.layer\.0\.attention\.self\.query\.weight/);
      const holed = rewrite(BFL_FILE, at('holed.safetensors'), (n) => (/^double_blocks\.1\.txt_mlp|^single_blocks\.0\.linear2\.bias/.test(n) ? undefined : n));
      throwsAbout(() => openComponent(holed), holed, /DiT \(transformer\) \(FLUX\.1 DiT, BFL single-file layout.*\) is missing 5 tensors: double_blocks\.1\.txt_mlp\.0\.weight, double_blocks\.1\.txt_mlp\.0\.bias, double_blocks\.1\.txt_mlp\.2\.weight, double_blocks\.1\.txt_mlp\.2\.bias, single_blocks\.0\.linear2\.bias/);
      const noEmbed = rewrite(path.join(MODELS, 'text_encoder/model.safetensors'), at('clip-hole', 'model.safetensors'), (n) => (n.includes('token_embedding') ? undefined : n));
      throwsAbout(() => openComponent(noEmbed), noEmbed, /CLIP text encoder .* is missing 1 tensor: embeddings\.token_embedding\.weight/);
      const vaeHole = rewrite(path.join(MODELS, 'ae.safetensors'), at('vae-hole.safetensors'), (n) => (n === 'decoder.up.2.upsample.conv.weight' ? undefined : n));
      throwsAbout(() => openComponent(vaeHole), vaeHole, /VAE .* is missing 1 tensor: decoder\.up\.2\.upsample\.conv\.weight/);
      const dir = at('two-in-one');
      const both = rewrite(BFL_FILE, path.join(dir, 'both.safetensors'), (n) => `model.diffusion_model.${n}`);
      const ae = SafetensorsFile.open(path.join(MODELS, 'ae.safetensors'));
      const dit = SafetensorsFile.open(both);
      const all: Record<string, { dtype: string; shape: number[]; data: Uint8Array }> = {};
      for (const [src, prefix] of [[dit, ''], [ae, 'vae.']] as const) for (const n of src.names()) all[prefix + n] = { dtype: src.info(n).dtype, shape: src.info(n).shape, data: src.readBytes(n) };
      writeSafetensors(both, all);
      ae.close();
      dit.close();
      const comps: Component[] = openComponents(both);
      assert.deepEqual(comps.map((c) => [c.kind, c.prefix]), [['dit', 'model.diffusion_model.'], ['vae', 'vae.']]);
      throwsAbout(() => openComponent(both), both, /holds 2 components .* say which kind to open/);
      assert.equal(openComponent(both, 'vae').config.z_channels, 16);
      throwsAbout(() => openComponent(both, 't5'), both, /holds no T5 text encoder; found: DiT \(transformer\) \(bfl-dit\), VAE \(autoencoder\) \(ldm-vae\)/);
      // An unprefixed DiT beside a prefixed VAE: each component sees only its own tensors.
      const mixed = rewrite(both, path.join(dir, 'mixed.safetensors'), (n) => n.replace(/^model\.diffusion_model\./, ''));
      const [d, v] = openComponents(mixed);
      assert.deepEqual([d.prefix, v.prefix], ['', 'vae.']);
      assert.equal(tensorStats(d.tensors).tensors, 84);
      assert.equal(tensorStats(v.tensors).tensors, 240);
      assert.ok(!d.tensors.has('vae.decoder.conv_in.weight'));
    });
  });

  describe('inspect report (headers only)', () => {
    it('counts parameters and bytes per dtype', () => {
      const fp8 = inspectPath(path.join(MODELS, 'flux-tiny-fp8.safetensors'));
      assert.equal(fp8.type, 'checkpoint');
      assert.equal(fp8.components.length, 1);
      const s = fp8.components[0].stats;
      assert.deepEqual(s, {
        tensors: 84, parameters: 489472, bytes: 495616,
        dtypes: { BF16: { tensors: 48, parameters: 6144, bytes: 12288 }, F8_E4M3: { tensors: 36, parameters: 483328, bytes: 483328 } },
      });
      assert.deepEqual(fp8.totals, { parameters: 489472, bytes: 495616 });
      assert.equal(fp8.components[0].architecture.head_dim, 16);
    });

    it('reports a model folder with the components used and the alternatives', () => {
      const r = inspectPath(MODELS);
      assert.equal(r.type, 'model');
      assert.equal(r.complete, true);
      assert.deepEqual(r.components.map((c) => [c.kind, c.used]), [['dit', true], ['dit', false], ['dit', false], ['vae', true], ['clip', true], ['t5', true]]);
      const used = r.components.filter((c) => c.used);
      assert.equal(r.totals.parameters, used.reduce((a, c) => a + c.stats.parameters, 0));
      assert.deepEqual(r.missing, []);
      assert.ok(r.tokenizers?.clip?.endsWith('tokenizer'));
      assert.doesNotThrow(() => JSON.stringify(r));
    });
  });
});
