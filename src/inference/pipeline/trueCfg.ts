// True classifier-free guidance (issue 13 item 4), as diffusers' FluxPipeline does it: with
// true_cfg_scale > 1 every step evaluates the DiT on the prompt and on the negative prompt, with
// the same latents, timestep and distilled-guidance embedding, and steps along
// v = v_neg + scale·(v_pos − v_neg). The distilled guidance is unchanged.
//
// Two runs, not one batch of two: the DiT graph (graphs/dit.ts) declares its inputs with batch 1
// (onnxruntime refuses a [2, n, 64] feed: "Got invalid dimensions for input: img"), and inside,
// attention reshapes tokens to [1, L, hidden] and timestep/guidance are [1]. Batching would need a
// batch-dynamic graph build; the weights are read either way, so the saving would be one run's
// overhead per step, small next to a step's matmuls at FLUX.1's size.

import type { PreparedDit } from '../graphs/fluxTransformer';
import type { ResolvedParams } from '../../shared/params';

/** Whether a generation runs true CFG (1 is off; the negative prompt alone does nothing, as in diffusers). */
export function trueCfgOn(params: Pick<ResolvedParams, 'trueCfgScale'>): boolean {
  return params.trueCfgScale > 1;
}

/** v_neg + scale·(v_pos − v_neg), into a new array. */
export function combineCfg(pos: Float32Array, neg: Float32Array, scale: number): Float32Array {
  if (pos.length !== neg.length) throw new Error(`true CFG: the two predictions differ in size (${pos.length} vs ${neg.length})`);
  const out = new Float32Array(pos.length);
  for (let i = 0; i < pos.length; i++) out[i] = neg[i] + scale * (pos[i] - neg[i]);
  return out;
}

/** The DiT as the sampler sees it: one prediction per step, guided by the negative prompt when `negative` is given. */
export function guidedDit(positive: PreparedDit, negative: PreparedDit | undefined, scale: number): PreparedDit {
  if (!negative) return positive;
  return {
    forward: async (img, timestep, guidance) => {
      const pos = await positive.forward(img, timestep, guidance);
      const neg = await negative.forward(img, timestep, guidance);
      return combineCfg(pos, neg, scale);
    },
  };
}
