// The error a weight format and its kernel choices add, on every golden case of the tiny model:
// the DiT's output (cases a, b, c), the latents after each step and the final image of each
// golden pipeline run (fed its initial latents), against the float32 reference. Every Linear is
// stored in the format (inlineLimit 0). Used by test/unit/format-errors.test.ts (CPU) and
// scripts/gpu/golden-check.ts (WebGPU).
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { DitTuning, WeightFormat } from '../../src/shared/api';
import { DitInputs, FluxTransformer } from '../../src/inference/graphs/fluxTransformer';
import type { ExecutionProvider } from '../../src/inference/onnx/session';
import { FluxPipeline } from '../../src/inference/pipeline/pipeline';
import { compare, GOLDEN_CASES, GOLDEN_MODELS, goldenCase } from './golden';

export interface FormatConfig {
  name: string;
  format: WeightFormat;
  tuning?: DitTuning;
}

export interface FormatErrors {
  config: string;
  ep: ExecutionProvider;
  /** Largest relative L2 of the DiT output over cases a, b, c. */
  dit: number;
  /** Largest relative L2 of the latents over every step of every pipeline case. */
  latents: number;
  /** Largest difference of a final image value, in 8-bit levels (255 × the [0, 1] difference). */
  imageLevels: number;
  /** Mean absolute difference of the final images, in 8-bit levels. */
  imageMeanLevels: number;
}

const DIT_FILE = path.join(GOLDEN_MODELS, 'flux-tiny.safetensors');

interface PipelineCase { file: string; prompt: string; height: number; width: number; num_inference_steps: number; guidance_scale: number; max_sequence_length: number }

export async function measureFormatErrors(c: FormatConfig, ep: ExecutionProvider, cacheDir: string): Promise<FormatErrors> {
  const tuning: DitTuning = { inlineLimit: 0, ...c.tuning };
  const cases = goldenCase('transformer.safetensors');
  // The pipeline's compute type: float32 on the CPU, float16 on GPUs.
  const dit = await FluxTransformer.load(DIT_FILE, { format: c.format, compute: ep === 'cpu' ? 'float32' : 'float16', ep, cacheDir, ...tuning });
  let ditError = 0;
  for (const k of ['a', 'b', 'c']) {
    const x: DitInputs = {
      img: cases.readF32('hidden_states'), txt: cases.readF32('encoder_hidden_states'), vec: cases.readF32('pooled_projections'),
      timestep: cases.readF32(`${k}.timestep`)[0], guidance: cases.readF32(`${k}.guidance`)[0], imgIds: cases.readF32('img_ids'), txtIds: cases.readF32('txt_ids'),
    };
    ditError = Math.max(ditError, compare(await dit.forward(x), cases.readF32(`${k}.output`)).relL2);
  }
  await dit.release();

  const runs: PipelineCase[] = JSON.parse(fs.readFileSync(path.join(GOLDEN_CASES, 'pipeline.json'), 'utf8'));
  // Text encoders and VAE in float32 on the CPU: the error measured is the DiT's.
  const pipeline = await FluxPipeline.create({ dir: GOLDEN_MODELS, transformer: DIT_FILE }, { weights: c.format, compute: 'auto', ep: 'cpu', stageEp: { dit: ep }, memory: 'resident', cacheDir, ditTuning: tuning });
  let latents = 0;
  let levels = 0;
  let meanLevels = 0;
  try {
    for (const r of runs) {
      const golden = goldenCase(r.file);
      const seen: Float32Array[] = [];
      const result = await pipeline.generate(
        { prompt: r.prompt, width: r.width, height: r.height, steps: r.num_inference_steps, guidance: r.guidance_scale, t5MaxLength: r.max_sequence_length, latentsFile: path.join(GOLDEN_CASES, r.file), seed: 0 },
        { onStep: (p) => seen.push(p.latents.slice()) },
      );
      seen.forEach((l, k) => (latents = Math.max(latents, compare(l, golden.readF32(`latents_after_step_${k}`)).relL2)));
      const expected = golden.readF32('image');
      let sum = 0;
      for (let i = 0; i < expected.length; i++) {
        const d = Math.abs(result.image[i] - expected[i]) * 255;
        levels = Math.max(levels, d);
        sum += d;
      }
      meanLevels = Math.max(meanLevels, sum / expected.length);
    }
  } finally {
    await pipeline.release();
  }
  return { config: c.name, ep, dit: ditError, latents, imageLevels: levels, imageMeanLevels: meanLevels };
}
