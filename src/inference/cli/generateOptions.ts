// `generate`'s flags beyond text-to-image (issue 13): negative prompt and true CFG, LoRAs,
// image-to-image, the hires pass, VAE tiling. Each value is checked by its params.ts schema.

import {
  checkOne, DEFAULTS, describeRange, GenerateParams, HIRES_UPSCALERS, HiresScale, IMAGE_FITS, LIMITS, Loras, LoraStrength, NegativePrompt, splitLoraSpec, Steps, Strength, TrueCfgScale, VAE_TILING,
} from '../../shared/params';
import { checked, checkedInputFile, choiceFlag, flag, UsageError } from './common';

export const EXTRA_HELP = `Negative prompt (true CFG, two DiT runs per step):
  --negative-prompt TEXT what to steer away from (default empty: the unconditional prediction)
  --true-cfg N           true CFG scale, ${describeRange('trueCfgScale')} (off); > 1 turns it on
LoRA:
  --lora FILE[:STRENGTH] a LoRA .safetensors and its strength (${LIMITS.loraStrength.min} to ${LIMITS.loraStrength.max}, default ${DEFAULTS.loraStrength});
                         repeat for several (at most ${LIMITS.loras.max})
Image-to-image:
  --image FILE           start from this image (PNG/JPEG/WebP); width/height default to its size
  --strength N           how much is re-drawn, ${describeRange('strength')} (1 ignores the image)
  --image-fit crop|stretch  how the image meets another size (default ${DEFAULTS.imageFit})
High-resolution pass (any --hires-* flag turns it on):
  --hires-scale N        second pass size over the first, ${describeRange('hiresScale')}
  --hires-strength N     its image-to-image strength, ${LIMITS.strength.min} to ${LIMITS.strength.max}, default ${DEFAULTS.hiresStrength}
  --hires-steps N        its steps, ${LIMITS.steps.min} to ${LIMITS.steps.max} (default: --steps)
  --hires-upscale image|latent  upscale the decoded image (Lanczos) or the latents (default ${DEFAULTS.hiresUpscale})
  --vae-tiling auto|on|off      decode/encode in tiles (default ${DEFAULTS.vaeTiling}: above 1024² pixels)
`;

export const EXTRA_OPTIONS = {
  'negative-prompt': { type: 'string' }, 'true-cfg': { type: 'string' }, lora: { type: 'string', multiple: true }, image: { type: 'string' }, strength: { type: 'string' },
  'image-fit': { type: 'string' }, 'hires-scale': { type: 'string' }, 'hires-strength': { type: 'string' }, 'hires-steps': { type: 'string' }, 'hires-upscale': { type: 'string' },
  'vae-tiling': { type: 'string' },
} as const;

type ExtraValues = { [K in keyof typeof EXTRA_OPTIONS]?: (typeof EXTRA_OPTIONS)[K] extends { multiple: true } ? string[] : string };

/** The issue-13 parameters from the flags (absent when not given), checked; files must exist. */
export function extraParams(values: ExtraValues): Partial<GenerateParams> {
  const p: Partial<GenerateParams> = {};
  if (values['negative-prompt'] !== undefined) p.negativePrompt = checked(NegativePrompt, values['negative-prompt']);
  p.trueCfgScale = flag('true-cfg', TrueCfgScale, values['true-cfg']);
  if (values.lora?.length) {
    p.loras = checked(Loras, values.lora.map(loraFlag));
    for (const l of p.loras) checkedInputFile('--lora', l.path);
  }
  if (values.image !== undefined) p.image = checkedInputFile('--image', values.image);
  p.strength = flag('strength', Strength, values.strength);
  p.imageFit = choiceFlag('image-fit', values['image-fit'], IMAGE_FITS);
  if (p.image === undefined && (p.strength !== undefined || p.imageFit !== undefined)) throw new UsageError(`--${p.strength !== undefined ? 'strength' : 'image-fit'} applies to an input image: add --image FILE`);
  // Alone it would change nothing (as in diffusers): say so rather than ignore what was asked for.
  if (p.negativePrompt !== undefined && (p.trueCfgScale ?? DEFAULTS.trueCfgScale) <= 1) throw new UsageError('--negative-prompt works through true CFG: add --true-cfg N with N > 1 (e.g. 4; each step then runs the model twice)');
  const hires = {
    scale: flag('hires-scale', HiresScale, values['hires-scale']),
    strength: flag('hires-strength', Strength, values['hires-strength']),
    steps: flag('hires-steps', Steps, values['hires-steps']),
    upscale: choiceFlag('hires-upscale', values['hires-upscale'], HIRES_UPSCALERS),
  };
  if (Object.values(hires).some((x) => x !== undefined)) p.hires = hires;
  p.vaeTiling = choiceFlag('vae-tiling', values['vae-tiling'], VAE_TILING);
  return Object.fromEntries(Object.entries(p).filter(([, x]) => x !== undefined));
}

/** `FILE[:STRENGTH]` (params.ts's splitLoraSpec), checked; each message quotes the flag as typed. */
export function loraFlag(text: string): { path: string; strength?: number } {
  const l = splitLoraSpec(text);
  const { min, max } = LIMITS.loraStrength;
  if (!l.path) throw new UsageError(`--lora ${text}: name the LoRA file before the strength: --lora style.safetensors${l.strength !== undefined ? `:${l.strength}` : ''}`);
  if (l.badStrength !== undefined) throw new UsageError(`--lora ${text}: the strength after the colon must be a number from ${min} to ${max}, got "${l.badStrength}"`);
  if (l.strength === undefined) return { path: l.path };
  const r = checkOne(LoraStrength, l.strength);
  if ('message' in r) throw new UsageError(`--lora ${text}: ${r.message}`);
  return { path: l.path, strength: r.value };
}
