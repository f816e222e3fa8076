// The tensors each component's graph reads, and the checks that turn a missing or misshapen one
// into a message naming it.

import { ditExpectedShapes, ditShapeMismatches } from '../ditShapes';
import { ClipConfig, DitConfig, T5Config, VaeConfig } from './configs';
import { ComponentKind, describeLayout, KIND_NAMES, Layout, LayoutError, listSome } from './detect';
import type { DitWeights } from './ditWeights';
import { SUBFOLDERS } from './folder';

/** BFL names a DiT graph needs. */
export function ditRequiredNames(c: DitConfig): string[] {
  return [...ditExpectedShapes(c).keys()];
}

export function vaeRequiredNames(c: VaeConfig, layout: 'ldm-vae' | 'diffusers-vae', encoder: boolean): string[] {
  const names: string[] = [];
  const wb = (stem: string) => names.push(`${stem}.weight`, `${stem}.bias`);
  const ldm = layout === 'ldm-vae';
  const resnet = (stem: string, cin: number, cout: number) => {
    for (const p of ['norm1', 'conv1', 'norm2', 'conv2']) wb(`${stem}.${p}`);
    if (cin !== cout) wb(`${stem}.${ldm ? 'nin_shortcut' : 'conv_shortcut'}`);
  };
  const mid = (side: 'encoder' | 'decoder', width: number) => {
    if (ldm) {
      resnet(`${side}.mid.block_1`, width, width);
      resnet(`${side}.mid.block_2`, width, width);
      for (const p of ['norm', 'q', 'k', 'v', 'proj_out']) wb(`${side}.mid.attn_1.${p}`);
    } else {
      resnet(`${side}.mid_block.resnets.0`, width, width);
      resnet(`${side}.mid_block.resnets.1`, width, width);
      for (const p of ['group_norm', 'to_q', 'to_k', 'to_v', 'to_out.0']) wb(`${side}.mid_block.attentions.0.${p}`);
    }
  };
  const L = c.ch_mult.length;
  const width = (i: number) => c.ch * c.ch_mult[i];
  if (encoder) {
    wb('encoder.conv_in');
    let cin = c.ch;
    for (let i = 0; i < L; i++) {
      for (let j = 0; j < c.num_res_blocks; j++) {
        resnet(ldm ? `encoder.down.${i}.block.${j}` : `encoder.down_blocks.${i}.resnets.${j}`, cin, width(i));
        cin = width(i);
      }
      if (i !== L - 1) wb(ldm ? `encoder.down.${i}.downsample.conv` : `encoder.down_blocks.${i}.downsamplers.0.conv`);
    }
    mid('encoder', width(L - 1));
    wb(ldm ? 'encoder.norm_out' : 'encoder.conv_norm_out');
    wb('encoder.conv_out');
  }
  wb('decoder.conv_in');
  mid('decoder', width(L - 1));
  let cin = width(L - 1);
  for (let i = L - 1; i >= 0; i--) {
    const level = ldm ? `decoder.up.${i}` : `decoder.up_blocks.${L - 1 - i}`;
    for (let j = 0; j <= c.num_res_blocks; j++) {
      resnet(ldm ? `${level}.block.${j}` : `${level}.resnets.${j}`, cin, width(i));
      cin = width(i);
    }
    if (i !== 0) wb(ldm ? `${level}.upsample.conv` : `${level}.upsamplers.0.conv`);
  }
  wb(ldm ? 'decoder.norm_out' : 'decoder.conv_norm_out');
  wb('decoder.conv_out');
  return names;
}

export function clipRequiredNames(c: ClipConfig): string[] {
  const names = ['embeddings.token_embedding.weight', 'embeddings.position_embedding.weight', 'final_layer_norm.weight', 'final_layer_norm.bias'];
  for (let i = 0; i < c.num_hidden_layers; i++) {
    for (const p of ['self_attn.q_proj', 'self_attn.k_proj', 'self_attn.v_proj', 'self_attn.out_proj', 'layer_norm1', 'layer_norm2', 'mlp.fc1', 'mlp.fc2']) {
      names.push(`encoder.layers.${i}.${p}.weight`, `encoder.layers.${i}.${p}.bias`);
    }
  }
  return names;
}

export function t5RequiredNames(c: T5Config): string[] {
  const names = ['encoder.final_layer_norm.weight', 'encoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight'];
  const ff = c.is_gated_act ? ['wi_0', 'wi_1', 'wo'] : ['wi', 'wo'];
  for (let i = 0; i < c.num_layers; i++) {
    const b = `encoder.block.${i}`;
    for (const p of ['q', 'k', 'v', 'o']) names.push(`${b}.layer.0.SelfAttention.${p}.weight`);
    names.push(`${b}.layer.0.layer_norm.weight`, `${b}.layer.1.layer_norm.weight`);
    for (const p of ff) names.push(`${b}.layer.1.DenseReluDense.${p}.weight`);
  }
  return names;
}

export function assertComplete(kind: ComponentKind, layout: Layout, at: string, missing: string[]): void {
  if (!missing.length) return;
  throw new LayoutError(at, `${KIND_NAMES[kind]} (${describeLayout(layout)}) is missing ${missing.length} tensor${missing.length > 1 ? 's' : ''}: ${listSome(missing)} — the checkpoint is incomplete or not a FLUX.1 model`);
}

/** Every tensor the graph reads has the architecture's shape (same element count is not enough). */
export function assertDitShapes(at: string, c: DitConfig, weights: DitWeights): void {
  const wrong = ditShapeMismatches(c, (n) => weights.tensor(n).shape);
  if (!wrong.length) return;
  const { name, expected, actual } = wrong[0];
  const sources = weights.sourceNames(name);
  const label = sources.length === 1 && sources[0] !== name ? `"${sources[0]}" (BFL "${name}")` : `"${name}"`;
  const arch = `hidden_size ${c.hidden_size}, ${c.num_heads} heads, mlp_ratio ${c.mlp_ratio}`;
  const more = wrong.length > 1 ? ` (and ${wrong.length - 1} more tensor${wrong.length > 2 ? 's' : ''} with the wrong shape)` : '';
  throw new LayoutError(at, `DiT tensor ${label} has shape ${JSON.stringify(actual)}; the architecture (${arch}) needs ${JSON.stringify(expected)}${more}: the checkpoint is corrupt, or not a FLUX.1 DiT`);
}

/**
 * Shape checks a derivation relies on; failing them means the tensors are not FLUX-shaped or need a
 * config. `sharedFile`: the component is one of several in its file (an all-in-one checkpoint),
 * whose sidecar describes the DiT at its top and the others in sections (configFiles.ts).
 */
export function checkWhole(at: string, kind: ComponentKind, what: string, v: number, sharedFile = false): number {
  if (!Number.isInteger(v) || v <= 0) {
    const config = sharedFile && kind !== 'dit'
      ? `its config in a "${SUBFOLDERS[kind]}" section of the <name>.config.json beside the file (the DiT's numbers at its top)`
      : 'its config.json (or <name>.config.json) beside it';
    throw new LayoutError(at, `the ${KIND_NAMES[kind]}'s ${what} comes out as ${v} from the tensor shapes and FLUX.1 defaults: not a FLUX.1-shaped checkpoint, or one that needs ${config}`);
  }
  return v;
}
