// Latents checked where a bad value would otherwise end as a black image reported as done: a
// latents file given as input (its shape and values) and each model's output (NaN or infinity).

import { UserError } from '../../shared/api';
import { SafetensorsFile } from '../formats/safetensors';
import { SafetensorsError } from '../formats/safetensorsHeader';

export function readInitialLatents(file: string, tokens: number): Float32Array {
  try {
    return readLatents(file, tokens);
  } catch (e) {
    // The user's file, not a fault of ours: said as such, without a stack trace.
    if (e instanceof SafetensorsError) throw new UserError(`Cannot read the latents file ${e.message}`);
    throw e;
  }
}

function readLatents(file: string, tokens: number): Float32Array {
  const f = SafetensorsFile.open(file);
  try {
    if (!f.has('initial_latents')) throw new UserError(`${file} has no "initial_latents" tensor`);
    const shape = f.info('initial_latents').shape;
    if (shape.length !== 3 || shape[1] !== tokens || shape[2] !== 64) {
      throw new UserError(`${file}: initial_latents has shape [${shape}] but this image size needs [1, ${tokens}, 64]`);
    }
    const latents = f.readF32('initial_latents');
    if (!latents.every(Number.isFinite)) throw new UserError(`${file}: initial_latents holds NaN or infinity; the file is corrupt`);
    return latents;
  } finally {
    f.close();
  }
}

/**
 * Finite weights and inputs give finite values; NaN or infinity means broken weights (NaN/Inf in the
 * file, or bytes read at the wrong offset or as the wrong type), which would end as an all-black
 * PNG reported as done. One pass over the latent is nothing next to a DiT step.
 */
export function assertFinite(x: Float32Array, component: string, file: string, when: string): void {
  for (let i = 0; i < x.length; i++) {
    if (!Number.isFinite(x[i])) {
      throw new UserError(
        `The ${component} produced non-finite values (NaN or infinity) ${when}: its weights are most likely corrupt or were mis-read (${file}). Run MajicFLUX: Check Models with verification (or majicflux models check --verify) and download the damaged file again.`,
      );
    }
  }
}
