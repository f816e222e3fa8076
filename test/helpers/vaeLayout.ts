// Rewrites an LDM/BFL `ae.safetensors` as a diffusers AutoencoderKL `vae/` folder, the way
// diffusers' conversion scripts name things. Deliberately independent of graphs/vae.ts's mapping.

import * as fs from 'node:fs';
import * as path from 'node:path';
import { f32ToBf16 } from '../../src/inference/formats/dtypes';
import { openTensors } from '../../src/inference/formats/safetensors';
import { TensorSpec, writeSafetensors } from '../../src/inference/formats/safetensorsWriter';

export interface AeShape {
  ch: number;
  chMult: number[];
  numResBlocks: number;
  zChannels: number;
  scale: number;
  shift: number;
}

/** LDM name → diffusers name for every tensor of a FLUX-style AE. */
export function ldmToDiffusersTable(cfg: AeShape): Map<string, string> {
  const m = new Map<string, string>();
  const levels = cfg.chMult.length;
  const pair = (from: string, to: string) => {
    for (const p of ['weight', 'bias']) m.set(`${from}.${p}`, `${to}.${p}`);
  };
  const resnet = (from: string, to: string) => {
    for (const x of ['norm1', 'conv1', 'norm2', 'conv2']) pair(`${from}.${x}`, `${to}.${x}`);
    pair(`${from}.nin_shortcut`, `${to}.conv_shortcut`);
  };
  for (const part of ['encoder', 'decoder']) {
    pair(`${part}.conv_in`, `${part}.conv_in`);
    pair(`${part}.conv_out`, `${part}.conv_out`);
    pair(`${part}.norm_out`, `${part}.conv_norm_out`);
    resnet(`${part}.mid.block_1`, `${part}.mid_block.resnets.0`);
    resnet(`${part}.mid.block_2`, `${part}.mid_block.resnets.1`);
    const a = `${part}.mid_block.attentions.0`;
    pair(`${part}.mid.attn_1.norm`, `${a}.group_norm`);
    pair(`${part}.mid.attn_1.q`, `${a}.to_q`);
    pair(`${part}.mid.attn_1.k`, `${a}.to_k`);
    pair(`${part}.mid.attn_1.v`, `${a}.to_v`);
    pair(`${part}.mid.attn_1.proj_out`, `${a}.to_out.0`);
  }
  for (let i = 0; i < levels; i++) {
    for (let j = 0; j < cfg.numResBlocks; j++) resnet(`encoder.down.${i}.block.${j}`, `encoder.down_blocks.${i}.resnets.${j}`);
    pair(`encoder.down.${i}.downsample.conv`, `encoder.down_blocks.${i}.downsamplers.0.conv`);
    const u = levels - 1 - i;
    for (let j = 0; j <= cfg.numResBlocks; j++) resnet(`decoder.up.${i}.block.${j}`, `decoder.up_blocks.${u}.resnets.${j}`);
    pair(`decoder.up.${i}.upsample.conv`, `decoder.up_blocks.${u}.upsamplers.0.conv`);
  }
  return m;
}

/**
 * Write `<dir>/config.json` + `<dir>/diffusion_pytorch_model.safetensors` from `aeFile`. Attention
 * projections become Linear [C, C]; `dtype` BF16 rounds (exact for the golden tiny AE).
 */
export function writeDiffusersVae(aeFile: string, cfg: AeShape, dir: string, dtype: 'F32' | 'BF16' = 'F32'): void {
  const table = ldmToDiffusersTable(cfg);
  const src = openTensors(aeFile);
  try {
    const specs: TensorSpec[] = src.names().map((name) => {
      const to = table.get(name);
      if (!to) throw new Error(`no diffusers name for ${name}`);
      const shape = src.info(name).shape;
      const isAttnProj = /\.attentions\.0\.to_/.test(to) && to.endsWith('.weight');
      return {
        name: to,
        dtype,
        shape: isAttnProj ? shape.slice(0, 2) : shape,
        bytes: () => {
          const x = src.readF32(name);
          if (dtype === 'F32') return new Uint8Array(x.buffer, x.byteOffset, x.byteLength);
          const o = Uint16Array.from(x, f32ToBf16);
          return new Uint8Array(o.buffer);
        },
      };
    });
    fs.mkdirSync(dir, { recursive: true });
    writeSafetensors(path.join(dir, 'diffusion_pytorch_model.safetensors'), specs);
  } finally {
    src.close();
  }
  const boc = cfg.chMult.map((m) => m * cfg.ch);
  fs.writeFileSync(path.join(dir, 'config.json'), JSON.stringify({
    _class_name: 'AutoencoderKL',
    in_channels: 3,
    out_channels: 3,
    down_block_types: boc.map(() => 'DownEncoderBlock2D'),
    up_block_types: boc.map(() => 'UpDecoderBlock2D'),
    block_out_channels: boc,
    layers_per_block: cfg.numResBlocks,
    act_fn: 'silu',
    latent_channels: cfg.zChannels,
    norm_num_groups: 32,
    scaling_factor: cfg.scale,
    shift_factor: cfg.shift,
    use_quant_conv: false,
    use_post_quant_conv: false,
    mid_block_add_attention: true,
  }, null, 1));
}
