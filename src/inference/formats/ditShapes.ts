// The shape of every tensor a FLUX.1 DiT graph reads, from the architecture numbers. A checkpoint
// whose tensor has another shape — even with the same element count — is refused when it is opened
// (and by `inspect`), naming the tensor, instead of by onnxruntime's shape inference mid-run.

import type { DitConfig } from './layouts/configs';

/** Width of the sinusoidal timestep/guidance embedding fed to time_in and guidance_in (BFL's timestep_embedding(t, 256)). */
const TIME_EMBED_DIM = 256;

/** BFL names a DiT graph needs, in a stable order, with the shape each must have. */
export function ditExpectedShapes(c: DitConfig): Map<string, number[]> {
  const h = c.hidden_size;
  const mlp = Math.round(h * c.mlp_ratio);
  const headDim = h / c.num_heads;
  const shapes = new Map<string, number[]>();
  const linear = (stem: string, out: number, inp: number, bias = true) => {
    shapes.set(`${stem}.weight`, [out, inp]);
    if (bias) shapes.set(`${stem}.bias`, [out]);
  };
  const qkNorm = (stem: string) => {
    shapes.set(`${stem}.query_norm.scale`, [headDim]);
    shapes.set(`${stem}.key_norm.scale`, [headDim]);
  };
  linear('img_in', h, c.in_channels);
  linear('txt_in', h, c.context_in_dim);
  linear('time_in.in_layer', h, TIME_EMBED_DIM);
  linear('time_in.out_layer', h, h);
  linear('vector_in.in_layer', h, c.vec_in_dim);
  linear('vector_in.out_layer', h, h);
  if (c.guidance_embed) {
    linear('guidance_in.in_layer', h, TIME_EMBED_DIM);
    linear('guidance_in.out_layer', h, h);
  }
  linear('final_layer.adaLN_modulation.1', 2 * h, h);
  linear('final_layer.linear', c.out_channels, h);
  for (let i = 0; i < c.depth; i++) {
    for (const s of ['img', 'txt']) {
      const b = `double_blocks.${i}.${s}`;
      linear(`${b}_mod.lin`, 6 * h, h);
      linear(`${b}_attn.qkv`, 3 * h, h, c.qkv_bias);
      linear(`${b}_attn.proj`, h, h);
      qkNorm(`${b}_attn.norm`);
      linear(`${b}_mlp.0`, mlp, h);
      linear(`${b}_mlp.2`, h, mlp);
    }
  }
  for (let i = 0; i < c.depth_single_blocks; i++) {
    const b = `single_blocks.${i}`;
    linear(`${b}.linear1`, 3 * h + mlp, h);
    linear(`${b}.linear2`, h, h + mlp);
    linear(`${b}.modulation.lin`, 3 * h, h);
    qkNorm(`${b}.norm`);
  }
  return shapes;
}

export interface ShapeMismatch {
  name: string;
  expected: number[];
  actual: number[];
}

/** Tensors whose shape differs from the architecture's, in ditExpectedShapes order. */
export function ditShapeMismatches(c: DitConfig, shapeOf: (name: string) => number[]): ShapeMismatch[] {
  const out: ShapeMismatch[] = [];
  for (const [name, expected] of ditExpectedShapes(c)) {
    const actual = shapeOf(name);
    if (actual.length !== expected.length || actual.some((d, i) => d !== expected[i])) out.push({ name, expected, actual });
  }
  return out;
}
