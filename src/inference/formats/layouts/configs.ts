// Each component's architecture numbers (BFL FluxParams / AutoEncoderParams, transformers CLIP and
// T5 configs) as far as tensor shapes tell them, with FLUX.1 defaults and notes for the rest.

import { TensorSource } from '../safetensors';
import { countIndexed } from './detect';
import type { DitWeights } from './ditWeights';

/** BFL `FluxParams`. */
export interface DitConfig {
  in_channels: number;
  out_channels: number;
  vec_in_dim: number;
  context_in_dim: number;
  hidden_size: number;
  mlp_ratio: number;
  num_heads: number;
  depth: number;
  depth_single_blocks: number;
  axes_dim: number[];
  theta: number;
  qkv_bias: boolean;
  guidance_embed: boolean;
}

/** BFL `AutoEncoderParams`. */
export interface VaeConfig {
  resolution: number;
  in_channels: number;
  ch: number;
  out_ch: number;
  ch_mult: number[];
  num_res_blocks: number;
  z_channels: number;
  scale_factor: number;
  shift_factor: number;
}

/** transformers `CLIPTextConfig` (the fields inference needs). */
export interface ClipConfig {
  vocab_size: number;
  hidden_size: number;
  intermediate_size: number;
  num_hidden_layers: number;
  num_attention_heads: number;
  max_position_embeddings: number;
  layer_norm_eps: number;
  hidden_act: string;
}

/** transformers `T5Config` (encoder fields). */
export interface T5Config {
  vocab_size: number;
  d_model: number;
  d_kv: number;
  d_ff: number;
  num_layers: number;
  num_heads: number;
  relative_attention_num_buckets: number;
  relative_attention_max_distance: number;
  layer_norm_epsilon: number;
  is_gated_act: boolean;
  dense_act_fn: string;
}

export type Json = Record<string, unknown>;

/** Config values read from tensor shapes, plus defaults for what shapes cannot tell. */
export interface Derived<C> {
  config: C;
  /** Fields measured from shapes: a config file that disagrees does not belong to these tensors. */
  measured: Set<keyof C>;
  /** Fields filled with an assumption, with a note saying so (dropped when a config file gives the field). */
  assumed: Partial<Record<keyof C, string>>;
  /** Notes that hold whatever the config says. */
  notes: string[];
}

/** Shape of a tensor the derivation relies on; its absence is reported as an incomplete checkpoint. */
export type Need = (name: string) => number[];

const FLUX_HEAD_DIM = 128;
const FLUX_AXES = [16, 56, 56];

export function deriveDit(w: DitWeights, need: Need): Derived<DitConfig> {
  const img = need('img_in.weight');
  const hidden = img[0];
  const assumed: Derived<DitConfig>['assumed'] = {};
  const measured = new Set<keyof DitConfig>(['in_channels', 'out_channels', 'vec_in_dim', 'context_in_dim', 'hidden_size', 'depth', 'depth_single_blocks', 'qkv_bias', 'guidance_embed']);
  const qNorm = 'double_blocks.0.img_attn.norm.query_norm.scale';
  let headDim = FLUX_HEAD_DIM;
  if (w.has(qNorm)) {
    headDim = need(qNorm)[0];
    measured.add('num_heads');
  } else {
    assumed.num_heads = `attention heads assumed hidden_size / ${FLUX_HEAD_DIM} (FLUX.1 head dim)`;
  }
  let axes = FLUX_AXES;
  if (headDim !== FLUX_HEAD_DIM) {
    // Keep FLUX.1's proportions (1/8 index axis, 7/16 per spatial axis) with even sizes.
    const spatial = 2 * Math.round((7 * headDim) / 32);
    axes = [headDim - 2 * spatial, spatial, spatial];
    assumed.axes_dim = `RoPE axes guessed as ${JSON.stringify(axes)} for head dim ${headDim}: FLUX.1 uses [16, 56, 56] for head dim 128; give the real ones in a config`;
  }
  let mlpRatio = 4;
  const mlp = 'double_blocks.0.img_mlp.0.weight';
  if (w.has(mlp)) {
    mlpRatio = need(mlp)[0] / hidden;
    measured.add('mlp_ratio');
  }
  const config: DitConfig = {
    in_channels: img[1],
    out_channels: need('final_layer.linear.weight')[0],
    vec_in_dim: need('vector_in.in_layer.weight')[1],
    context_in_dim: need('txt_in.weight')[1],
    hidden_size: hidden,
    mlp_ratio: mlpRatio,
    num_heads: hidden / headDim,
    depth: w.depth,
    depth_single_blocks: w.depthSingle,
    axes_dim: axes,
    theta: 10000,
    qkv_bias: w.depth > 0 ? w.has('double_blocks.0.img_attn.qkv.bias') : true,
    guidance_embed: w.has('guidance_in.in_layer.weight'),
  };
  return { config, measured, assumed, notes: [] };
}

export function deriveVae(src: TensorSource, layout: 'ldm-vae' | 'diffusers-vae', need: Need): Derived<VaeConfig> & { hasEncoder: boolean } {
  const names = src.names();
  const ldm = layout === 'ldm-vae';
  const hasEncoder = src.has('encoder.conv_in.weight');
  const ch = hasEncoder ? need('encoder.conv_in.weight')[0] : need('decoder.conv_out.weight')[1];
  const levels = countIndexed(names, ldm ? /^decoder\.up\.(\d+)\./ : /^decoder\.up_blocks\.(\d+)\./);
  // Level i's output width is ch × ch_mult[i]; diffusers numbers decoder levels deepest first.
  const chMult = Array.from({ length: levels }, (_, i) =>
    need(ldm ? `decoder.up.${i}.block.0.conv2.weight` : `decoder.up_blocks.${levels - 1 - i}.resnets.0.conv2.weight`)[0] / ch);
  const numRes = hasEncoder
    ? countIndexed(names, ldm ? /^encoder\.down\.0\.block\.(\d+)\./ : /^encoder\.down_blocks\.0\.resnets\.(\d+)\./)
    : countIndexed(names, ldm ? /^decoder\.up\.0\.block\.(\d+)\./ : /^decoder\.up_blocks\.0\.resnets\.(\d+)\./) - 1;
  const config: VaeConfig = {
    resolution: 256,
    in_channels: hasEncoder ? need('encoder.conv_in.weight')[1] : 3,
    ch,
    out_ch: need('decoder.conv_out.weight')[0],
    ch_mult: chMult,
    num_res_blocks: numRes,
    z_channels: need('decoder.conv_in.weight')[1],
    scale_factor: 0.3611,
    shift_factor: 0.1159,
  };
  const measured = new Set<keyof VaeConfig>(['ch', 'out_ch', 'ch_mult', 'num_res_blocks', 'z_channels']);
  if (hasEncoder) measured.add('in_channels');
  const notes = hasEncoder ? [] : ['decoder only (no encoder tensors): image-to-image is not possible'];
  const assumed = { scale_factor: 'latent scale_factor 0.3611 and shift_factor 0.1159 are the FLUX.1 values' };
  return { config, measured, assumed, notes, hasEncoder };
}

export function deriveClip(src: TensorSource, need: Need): Derived<ClipConfig> {
  const tok = need('embeddings.token_embedding.weight');
  const hidden = tok[1];
  const config: ClipConfig = {
    vocab_size: tok[0],
    hidden_size: hidden,
    intermediate_size: need('encoder.layers.0.mlp.fc1.weight')[0],
    num_hidden_layers: countIndexed(src.names(), /^encoder\.layers\.(\d+)\./),
    num_attention_heads: hidden / 64,
    max_position_embeddings: need('embeddings.position_embedding.weight')[0],
    layer_norm_eps: 1e-5,
    hidden_act: 'quick_gelu',
  };
  const measured = new Set<keyof ClipConfig>(['vocab_size', 'hidden_size', 'intermediate_size', 'num_hidden_layers', 'max_position_embeddings']);
  const assumed = { num_attention_heads: `attention heads assumed ${hidden / 64} (hidden_size / 64, as in CLIP ViT-L/14)` };
  const notes = src.has('text_projection.weight') ? ['has text_projection (CLIPTextModelWithProjection); FLUX.1 uses the pooled output without it'] : [];
  return { config, measured, assumed, notes };
}

const T5_EMBEDDING = ['shared.weight', 'encoder.embed_tokens.weight'];

export function deriveT5(src: TensorSource, need: Need): Derived<T5Config> {
  const emb = need(T5_EMBEDDING.find((n) => src.has(n)) ?? T5_EMBEDDING[0]);
  const bias = need('encoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight');
  const heads = bias[1];
  const gated = src.has('encoder.block.0.layer.1.DenseReluDense.wi_0.weight');
  const config: T5Config = {
    vocab_size: emb[0],
    d_model: emb[1],
    d_kv: need('encoder.block.0.layer.0.SelfAttention.q.weight')[0] / heads,
    d_ff: need(`encoder.block.0.layer.1.DenseReluDense.${gated ? 'wi_0' : 'wi'}.weight`)[0],
    num_layers: countIndexed(src.names(), /^encoder\.block\.(\d+)\./),
    num_heads: heads,
    relative_attention_num_buckets: bias[0],
    relative_attention_max_distance: 128,
    layer_norm_epsilon: 1e-6,
    is_gated_act: gated,
    dense_act_fn: gated ? 'gelu_new' : 'relu',
  };
  const measured = new Set<keyof T5Config>(['vocab_size', 'd_model', 'd_kv', 'd_ff', 'num_layers', 'num_heads', 'relative_attention_num_buckets', 'is_gated_act']);
  return { config, measured, assumed: {}, notes: [] };
}
