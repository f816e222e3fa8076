// FLUX.1's architecture as parameter tables: every tensor each component (DiT, CLIP, T5, VAE) has,
// by name and shape, for FLUX.1-dev and the tiny demo model. The random-weight writer and the
// memory check both read these, so neither depends on the other.

export interface FluxArchitecture {
  dit: { hidden: number; heads: number; depth: number; depthSingle: number; contextDim: number; vecDim: number; mlpRatio: number; axes: number[]; guidance: boolean };
  clip: { hidden: number; layers: number; heads: number; intermediate: number; vocab: number; positions: number };
  t5: { dModel: number; dKv: number; dFf: number; layers: number; heads: number; vocab: number; buckets: number };
  vae: { ch: number; chMult: number[]; resBlocks: number; z: number };
}

/** FLUX.1-dev's shapes (11.9 B DiT parameters). */
export const FLUX_DEV: FluxArchitecture = {
  dit: { hidden: 3072, heads: 24, depth: 19, depthSingle: 38, contextDim: 4096, vecDim: 768, mlpRatio: 4, axes: [16, 56, 56], guidance: true },
  clip: { hidden: 768, layers: 12, heads: 12, intermediate: 3072, vocab: 49408, positions: 77 },
  t5: { dModel: 4096, dKv: 64, dFf: 10240, layers: 24, heads: 64, vocab: 32128, buckets: 32 },
  vae: { ch: 128, chMult: [1, 2, 4, 4], resBlocks: 2, z: 16 },
};

/** The golden flux-tiny shapes: the bundled demo model. */
export const TINY: FluxArchitecture = {
  dit: { hidden: 64, heads: 4, depth: 2, depthSingle: 2, contextDim: 32, vecDim: 32, mlpRatio: 4, axes: [4, 6, 6], guidance: true },
  clip: { hidden: 32, layers: 2, heads: 4, intermediate: 37, vocab: 49408, positions: 77 },
  t5: { dModel: 32, dKv: 8, dFf: 40, layers: 2, heads: 4, vocab: 32128, buckets: 32 },
  vae: { ch: 32, chMult: [1, 2, 2, 2], resBlocks: 2, z: 16 },
};

/** FLUX.1-dev's depth at a fraction of its width (head dim stays 128), encoders shrunk alike. */
export function scaledFlux(widthFraction: number): FluxArchitecture {
  const heads = Math.max(1, Math.round(24 * widthFraction));
  const hidden = heads * 128;
  const t5Heads = Math.max(1, Math.round(64 * widthFraction));
  return {
    dit: { ...FLUX_DEV.dit, hidden, heads, contextDim: t5Heads * 64 },
    clip: FLUX_DEV.clip,
    t5: { ...FLUX_DEV.t5, dModel: t5Heads * 64, heads: t5Heads, dFf: Math.round(10240 * widthFraction) },
    vae: FLUX_DEV.vae,
  };
}

type Shape = number[];
export interface Param { name: string; shape: Shape; kind: 'weight' | 'bias' | 'norm' | 'embedding' }

const w = (name: string, shape: Shape): Param => ({ name, shape, kind: 'weight' });
const b = (name: string, n: number): Param => ({ name, shape: [n], kind: 'bias' });
const norm = (name: string, n: number): Param => ({ name, shape: [n], kind: 'norm' });
const linear = (name: string, out: number, inp: number, bias = true): Param[] => (bias ? [w(`${name}.weight`, [out, inp]), b(`${name}.bias`, out)] : [w(`${name}.weight`, [out, inp])]);

/** BFL single-file DiT names and shapes. */
export function ditParams(c: FluxArchitecture['dit']): Param[] {
  const h = c.hidden;
  const mlp = Math.round(h * c.mlpRatio);
  const hd = h / c.heads;
  const embedder = (n: string, inp: number) => [...linear(`${n}.in_layer`, h, inp), ...linear(`${n}.out_layer`, h, h)];
  const p: Param[] = [
    ...linear('img_in', h, 64),
    ...embedder('time_in', 256),
    ...embedder('vector_in', c.vecDim),
    ...(c.guidance ? embedder('guidance_in', 256) : []),
    ...linear('txt_in', h, c.contextDim),
  ];
  for (let i = 0; i < c.depth; i++) {
    for (const s of ['img', 'txt']) {
      const n = `double_blocks.${i}.${s}`;
      p.push(...linear(`${n}_mod.lin`, 6 * h, h), ...linear(`${n}_attn.qkv`, 3 * h, h));
      p.push(norm(`${n}_attn.norm.query_norm.scale`, hd), norm(`${n}_attn.norm.key_norm.scale`, hd));
      p.push(...linear(`${n}_attn.proj`, h, h), ...linear(`${n}_mlp.0`, mlp, h), ...linear(`${n}_mlp.2`, h, mlp));
    }
  }
  for (let i = 0; i < c.depthSingle; i++) {
    const n = `single_blocks.${i}`;
    p.push(...linear(`${n}.linear1`, 3 * h + mlp, h), ...linear(`${n}.linear2`, h, h + mlp));
    p.push(norm(`${n}.norm.query_norm.scale`, hd), norm(`${n}.norm.key_norm.scale`, hd), ...linear(`${n}.modulation.lin`, 3 * h, h));
  }
  p.push(...linear('final_layer.linear', 64, h), ...linear('final_layer.adaLN_modulation.1', 2 * h, h));
  return p;
}

/** HF CLIPTextModel names and shapes. */
export function clipParams(c: FluxArchitecture['clip']): Param[] {
  const d = c.hidden;
  const p: Param[] = [
    { name: 'text_model.embeddings.token_embedding.weight', shape: [c.vocab, d], kind: 'embedding' },
    { name: 'text_model.embeddings.position_embedding.weight', shape: [c.positions, d], kind: 'embedding' },
  ];
  for (let i = 0; i < c.layers; i++) {
    const n = `text_model.encoder.layers.${i}`;
    for (const proj of ['q_proj', 'k_proj', 'v_proj', 'out_proj']) p.push(...linear(`${n}.self_attn.${proj}`, d, d));
    p.push(norm(`${n}.layer_norm1.weight`, d), b(`${n}.layer_norm1.bias`, d), norm(`${n}.layer_norm2.weight`, d), b(`${n}.layer_norm2.bias`, d));
    p.push(...linear(`${n}.mlp.fc1`, c.intermediate, d), ...linear(`${n}.mlp.fc2`, d, c.intermediate));
  }
  p.push(norm('text_model.final_layer_norm.weight', d), b('text_model.final_layer_norm.bias', d));
  return p;
}

/** HF T5EncoderModel names and shapes. */
export function t5Params(c: FluxArchitecture['t5']): Param[] {
  const inner = c.heads * c.dKv;
  const p: Param[] = [{ name: 'shared.weight', shape: [c.vocab, c.dModel], kind: 'embedding' }];
  for (let i = 0; i < c.layers; i++) {
    const n = `encoder.block.${i}.layer`;
    for (const x of ['q', 'k', 'v']) p.push(w(`${n}.0.SelfAttention.${x}.weight`, [inner, c.dModel]));
    p.push(w(`${n}.0.SelfAttention.o.weight`, [c.dModel, inner]));
    if (i === 0) p.push({ name: `${n}.0.SelfAttention.relative_attention_bias.weight`, shape: [c.buckets, c.heads], kind: 'embedding' });
    p.push(norm(`${n}.0.layer_norm.weight`, c.dModel));
    p.push(w(`${n}.1.DenseReluDense.wi_0.weight`, [c.dFf, c.dModel]), w(`${n}.1.DenseReluDense.wi_1.weight`, [c.dFf, c.dModel]));
    p.push(w(`${n}.1.DenseReluDense.wo.weight`, [c.dModel, c.dFf]), norm(`${n}.1.layer_norm.weight`, c.dModel));
  }
  p.push(norm('encoder.final_layer_norm.weight', c.dModel));
  return p;
}

/** LDM/BFL `ae.safetensors` names and shapes. */
export function vaeParams(c: FluxArchitecture['vae']): Param[] {
  const p: Param[] = [];
  const conv = (n: string, out: number, inp: number, k: number) => p.push(w(`${n}.weight`, [out, inp, k, k]), b(`${n}.bias`, out));
  const gn = (n: string, ch: number) => p.push(norm(`${n}.weight`, ch), b(`${n}.bias`, ch));
  const resnet = (n: string, inp: number, out: number) => {
    gn(`${n}.norm1`, inp);
    conv(`${n}.conv1`, out, inp, 3);
    gn(`${n}.norm2`, out);
    conv(`${n}.conv2`, out, out, 3);
    if (inp !== out) conv(`${n}.nin_shortcut`, out, inp, 1);
  };
  const mid = (n: string, ch: number) => {
    resnet(`${n}.mid.block_1`, ch, ch);
    gn(`${n}.mid.attn_1.norm`, ch);
    for (const x of ['q', 'k', 'v', 'proj_out']) conv(`${n}.mid.attn_1.${x}`, ch, ch, 1);
    resnet(`${n}.mid.block_2`, ch, ch);
  };
  const chs = c.chMult.map((m) => m * c.ch);
  const top = chs[chs.length - 1];
  // Encoder
  conv('encoder.conv_in', c.ch, 3, 3);
  let inp = c.ch;
  chs.forEach((out, i) => {
    for (let j = 0; j < c.resBlocks; j++) {
      resnet(`encoder.down.${i}.block.${j}`, inp, out);
      inp = out;
    }
    if (i < chs.length - 1) conv(`encoder.down.${i}.downsample.conv`, out, out, 3);
  });
  mid('encoder', top);
  gn('encoder.norm_out', top);
  conv('encoder.conv_out', 2 * c.z, top, 3);
  // Decoder
  conv('decoder.conv_in', top, c.z, 3);
  mid('decoder', top);
  inp = top;
  for (let i = chs.length - 1; i >= 0; i--) {
    for (let j = 0; j <= c.resBlocks; j++) {
      resnet(`decoder.up.${i}.block.${j}`, inp, chs[i]);
      inp = chs[i];
    }
    if (i > 0) conv(`decoder.up.${i}.upsample.conv`, chs[i], chs[i], 3);
  }
  gn('decoder.norm_out', c.ch);
  conv('decoder.conv_out', 3, c.ch, 3);
  return p;
}
