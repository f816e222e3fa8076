// The golden tiny DiT's output for a checkpoint loaded with given options (transformer.safetensors case `a`).
import { FluxTransformer, FluxTransformerOptions } from '../../src/inference/graphs/fluxTransformer';
import { goldenCase } from './golden';

/** Case `a`'s output from a loaded DiT (as it is now: LoRAs and strengths included). */
export async function goldenDitInputsForward(t: FluxTransformer): Promise<Float32Array> {
  const c = goldenCase('transformer.safetensors');
  return t.forward({
    img: c.readF32('hidden_states'), txt: c.readF32('encoder_hidden_states'), vec: c.readF32('pooled_projections'),
    timestep: c.readF32('a.timestep')[0], guidance: c.readF32('a.guidance')[0], imgIds: c.readF32('img_ids'), txtIds: c.readF32('txt_ids'),
  });
}

export async function goldenDitForward(file: string, opts: FluxTransformerOptions): Promise<Float32Array> {
  const t = await FluxTransformer.load(file, opts);
  try {
    return await goldenDitInputsForward(t);
  } finally {
    await t.release();
  }
}
