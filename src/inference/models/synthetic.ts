// Random-weight Flux models in the real on-disk layouts: the bundled demo model, and full-size or
// reduced-width checkpoints for benchmarks where real weights can't be downloaded.
// Weights are N(0, 1/fan_in) so activations stay in range through the blocks; norms are ~1.

import * as fs from 'node:fs';
import * as path from 'node:path';
import { DType, f32ToBf16, f32ToE4M3 } from '../formats/dtypes';
import { TensorSpec, writeSafetensors } from '../formats/safetensorsWriter';
import { clipParams, ditParams, FluxArchitecture, Param, t5Params, vaeParams } from './architecture';

/** xoshiro128** seeded by splitmix32, then Box–Muller: fast and deterministic (not the generation noise). */
class Rng {
  private readonly s = new Uint32Array(4);
  constructor(seed: number) {
    let x = seed >>> 0;
    for (let i = 0; i < 4; i++) {
      x = (x + 0x9e3779b9) >>> 0;
      let z = x;
      z = Math.imul(z ^ (z >>> 16), 0x85ebca6b);
      z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35);
      this.s[i] = (z ^ (z >>> 16)) >>> 0;
    }
  }
  u32(): number {
    const s = this.s;
    const r = Math.imul(rotl(Math.imul(s[1], 5), 7), 9) >>> 0;
    const t = s[1] << 9;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 11);
    return r;
  }
  fillNormal(out: Float32Array, std: number, mean = 0): void {
    for (let i = 0; i < out.length; i += 2) {
      const u1 = (this.u32() + 1) / 4294967297;
      const u2 = this.u32() / 4294967296;
      const r = Math.sqrt(-2 * Math.log(u1)) * std;
      out[i] = mean + r * Math.cos(2 * Math.PI * u2);
      if (i + 1 < out.length) out[i + 1] = mean + r * Math.sin(2 * Math.PI * u2);
    }
  }
}
const rotl = (x: number, k: number) => ((x << k) | (x >>> (32 - k))) >>> 0;

function values(p: Param, rng: Rng): Float32Array {
  const n = p.shape.reduce((a, c) => a * c, 1);
  const out = new Float32Array(n);
  switch (p.kind) {
    case 'weight': {
      const fanIn = p.shape.slice(1).reduce((a, c) => a * c, 1);
      rng.fillNormal(out, 1 / Math.sqrt(fanIn));
      break;
    }
    case 'bias':
      rng.fillNormal(out, 0.02);
      break;
    case 'norm':
      rng.fillNormal(out, 0.05, 1);
      break;
    case 'embedding':
      rng.fillNormal(out, 0.5);
      break;
  }
  return out;
}

function encode(x: Float32Array, dtype: DType): Uint8Array {
  switch (dtype) {
    case 'F32':
      return new Uint8Array(x.buffer, x.byteOffset, x.byteLength);
    case 'BF16': {
      const o = new Uint16Array(x.length);
      for (let i = 0; i < x.length; i++) o[i] = f32ToBf16(x[i]);
      return new Uint8Array(o.buffer);
    }
    case 'F8_E4M3': {
      const o = new Uint8Array(x.length);
      for (let i = 0; i < x.length; i++) o[i] = f32ToE4M3(x[i]);
      return o;
    }
    default:
      throw new Error(`synthetic weights in ${dtype} are not supported`);
  }
}

/** A file to fill, for writers in other languages (a GPU host's PyTorch writes 24 GB in a minute). */
export interface ManifestFile {
  file: string;
  tensors: { name: string; shape: number[]; dtype: DType; kind: Param['kind'] }[];
}

/** Write params; 2-D weights in `matrixDtype`, everything else in `otherDtype`. With `manifest`, only list them. */
function writeParams(file: string, params: Param[], seed: number, matrixDtype: DType, otherDtype: DType, manifest?: ManifestFile[]): number {
  const dtypeOf = (p: Param) => (p.kind === 'weight' && p.shape.length === 2 ? matrixDtype : otherDtype);
  if (manifest) {
    manifest.push({ file, tensors: params.map((p) => ({ name: p.name, shape: p.shape, dtype: dtypeOf(p), kind: p.kind })) });
    return params.reduce((a, p) => a + p.shape.reduce((x, y) => x * y, 1) * (dtypeOf(p) === 'F32' ? 4 : dtypeOf(p) === 'F8_E4M3' ? 1 : 2), 0);
  }
  const rng = new Rng(seed);
  const specs: TensorSpec[] = params.map((p) => {
    const dtype = dtypeOf(p);
    return { name: p.name, dtype, shape: p.shape, bytes: () => encode(values(p, rng), dtype) };
  });
  return writeSafetensors(file, specs);
}

export interface WriteOptions {
  seed?: number;
  /** DiT Linear weights: 'BF16' (like flux1-dev.safetensors) or 'F8_E4M3' (like fp8 checkpoints). */
  ditDtype?: 'BF16' | 'F8_E4M3';
  /** Which parts to write (default all). */
  parts?: Array<'dit' | 'clip' | 't5' | 'vae'>;
  /** Folder with tokenizer/ and tokenizer_2/ to copy in. */
  tokenizers?: string;
  log?: (msg: string) => void;
  /** Write only configs, tokenizers and indexes, and list the tensor files to fill here. */
  manifest?: ManifestFile[];
}

/**
 * Write a FLUX.1-dev-style model folder: text_encoder/, text_encoder_2/ (sharded), ae.safetensors,
 * flux.safetensors (BFL single-file DiT) with `.config.json` sidecars, tokenizers copied.
 */
export function writeSyntheticModel(dir: string, c: FluxArchitecture, opts: WriteOptions = {}): void {
  const seed = opts.seed ?? 0;
  const parts = new Set(opts.parts ?? ['dit', 'clip', 't5', 'vae']);
  const log = opts.log ?? (() => {});
  fs.mkdirSync(dir, { recursive: true });
  if (parts.has('dit')) {
    const dtype = opts.ditDtype ?? 'BF16';
    const file = path.join(dir, dtype === 'F8_E4M3' ? 'flux-fp8.safetensors' : 'flux.safetensors');
    log(`writing ${file}`);
    writeParams(file, ditParams(c.dit), seed + 1, dtype, 'BF16', opts.manifest);
    const d = c.dit;
    const sidecar = {
      architecture: 'flux', in_channels: 64, out_channels: 64, vec_in_dim: d.vecDim, context_in_dim: d.contextDim, hidden_size: d.hidden,
      mlp_ratio: d.mlpRatio, num_heads: d.heads, depth: d.depth, depth_single_blocks: d.depthSingle, axes_dim: d.axes, theta: 10000, qkv_bias: true, guidance_embed: d.guidance,
    };
    fs.writeFileSync(file.replace(/\.safetensors$/, '.config.json'), JSON.stringify(sidecar, null, 1));
  }
  if (parts.has('clip')) {
    const sub = path.join(dir, 'text_encoder');
    fs.mkdirSync(sub, { recursive: true });
    log(`writing ${sub}`);
    writeParams(path.join(sub, 'model.safetensors'), clipParams(c.clip), seed + 2, 'BF16', 'BF16', opts.manifest);
    const k = c.clip;
    fs.writeFileSync(path.join(sub, 'config.json'), JSON.stringify({
      architectures: ['CLIPTextModel'], model_type: 'clip_text_model', hidden_size: k.hidden, intermediate_size: k.intermediate, num_hidden_layers: k.layers,
      num_attention_heads: k.heads, max_position_embeddings: k.positions, vocab_size: k.vocab, hidden_act: 'quick_gelu', layer_norm_eps: 1e-5,
      bos_token_id: 0, eos_token_id: 2, pad_token_id: 1, projection_dim: k.hidden, torch_dtype: 'bfloat16',
    }, null, 1));
  }
  if (parts.has('t5')) {
    const sub = path.join(dir, 'text_encoder_2');
    fs.mkdirSync(sub, { recursive: true });
    log(`writing ${sub}`);
    // Two shards, as the real one is sharded: embedding + first half of the blocks, then the rest.
    const all = t5Params(c.t5);
    const cut = all.findIndex((p) => p.name.startsWith(`encoder.block.${Math.ceil(c.t5.layers / 2)}.`));
    const shards = [all.slice(0, cut < 0 ? all.length : cut), cut < 0 ? [] : all.slice(cut)].filter((s) => s.length);
    const weightMap: Record<string, string> = {};
    let total = 0;
    shards.forEach((s, i) => {
      const name = `model-${String(i + 1).padStart(5, '0')}-of-${String(shards.length).padStart(5, '0')}.safetensors`;
      total += writeParams(path.join(sub, name), s, seed + 3 + i, 'BF16', 'BF16', opts.manifest);
      for (const p of s) weightMap[p.name] = name;
    });
    fs.writeFileSync(path.join(sub, 'model.safetensors.index.json'), JSON.stringify({ metadata: { total_size: total }, weight_map: weightMap }, null, 1));
    const t = c.t5;
    fs.writeFileSync(path.join(sub, 'config.json'), JSON.stringify({
      architectures: ['T5EncoderModel'], model_type: 't5', d_model: t.dModel, d_kv: t.dKv, d_ff: t.dFf, num_layers: t.layers, num_heads: t.heads,
      relative_attention_num_buckets: t.buckets, relative_attention_max_distance: 128, vocab_size: t.vocab, feed_forward_proj: 'gated-gelu',
      dense_act_fn: 'gelu_new', is_gated_act: true, layer_norm_epsilon: 1e-6, pad_token_id: 0, eos_token_id: 1, torch_dtype: 'bfloat16',
    }, null, 1));
  }
  if (parts.has('vae')) {
    log(`writing ${path.join(dir, 'ae.safetensors')}`);
    writeParams(path.join(dir, 'ae.safetensors'), vaeParams(c.vae), seed + 9, 'F32', 'F32', opts.manifest);
    const v = c.vae;
    fs.writeFileSync(path.join(dir, 'ae.config.json'), JSON.stringify({
      architecture: 'flux-ae', resolution: 256, in_channels: 3, ch: v.ch, out_ch: 3, ch_mult: v.chMult, num_res_blocks: v.resBlocks, z_channels: v.z, scale_factor: 0.3611, shift_factor: 0.1159,
    }, null, 1));
  }
  if (opts.tokenizers) {
    for (const t of ['tokenizer', 'tokenizer_2', 'scheduler']) {
      const from = path.join(opts.tokenizers, t);
      if (fs.existsSync(from)) fs.cpSync(from, path.join(dir, t), { recursive: true });
    }
  }
}
