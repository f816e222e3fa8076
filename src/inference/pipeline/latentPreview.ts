// A cheap RGB picture of a latent for step previews, without running the VAE.

import { LATENT_CHANNELS, latentShape, PACKED_CHANNELS } from './latents';

/**
 * Linear map from the 16 FLUX latent channels (as the transformer sees them, i.e. after the VAE
 * scale/shift) to RGB in about [−1, 1]: the public factors ComfyUI's `latent_formats.Flux` uses for
 * its fast previews. Rows are channels, columns R, G, B.
 */
const FLUX_LATENT_RGB: readonly (readonly [number, number, number])[] = [
  [-0.0346, 0.0244, 0.0681],
  [0.0034, 0.021, 0.0687],
  [0.0275, -0.0668, -0.0433],
  [-0.0174, 0.016, 0.0617],
  [0.0859, 0.0721, 0.0329],
  [0.0004, 0.0383, 0.0115],
  [0.0405, 0.0861, 0.0915],
  [-0.0236, -0.0185, -0.0259],
  [-0.0245, 0.025, 0.118],
  [0.1008, 0.0755, -0.0421],
  [-0.0515, 0.0201, 0.0011],
  [0.0428, -0.0012, -0.0036],
  [0.0817, 0.0765, 0.0749],
  [-0.1264, -0.0522, -0.1103],
  [-0.028, -0.0881, -0.0499],
  [-0.1262, -0.0982, -0.0778],
];
const FLUX_LATENT_RGB_BIAS = [-0.0329, -0.0718, -0.0851] as const;

/**
 * A low-resolution RGB preview of a packed latent: Uint8Array of (H/8)·(W/8)·3 bytes, row-major
 * RGB. Pass the predicted clean latent (predictX0) for a meaningful picture mid-run; the raw noisy
 * latent previews as noise early on.
 */
export function latentToPreviewRGB(packedLatent: Float32Array, width: number, height: number): Uint8Array {
  const { h2, w2, tokens } = latentShape(width, height);
  if (packedLatent.length !== tokens * PACKED_CHANNELS) {
    throw new Error(`latentToPreviewRGB: expected ${tokens * PACKED_CHANNELS} values for ${width}×${height}, got ${packedLatent.length}`);
  }
  const out = new Uint8Array(h2 * w2 * 3);
  const gw = w2 / 2;
  for (let y = 0; y < h2; y++) {
    for (let x = 0; x < w2; x++) {
      const base = ((y >> 1) * gw + (x >> 1)) * PACKED_CHANNELS + (y & 1) * 2 + (x & 1);
      let r = FLUX_LATENT_RGB_BIAS[0], g = FLUX_LATENT_RGB_BIAS[1], b = FLUX_LATENT_RGB_BIAS[2];
      for (let c = 0; c < LATENT_CHANNELS; c++) {
        const v = packedLatent[base + c * 4];
        const f = FLUX_LATENT_RGB[c];
        r += v * f[0];
        g += v * f[1];
        b += v * f[2];
      }
      const o = (y * w2 + x) * 3;
      out[o] = toByte(r);
      out[o + 1] = toByte(g);
      out[o + 2] = toByte(b);
    }
  }
  return out;
}

function toByte(v: number): number {
  const t = (v + 1) / 2; // [-1, 1] → [0, 1]
  return t > 0 ? (t < 1 ? Math.round(t * 255) : 255) : 0; // NaN → 0
}
