// What a job asked for that does not apply as asked, said with the image (GenerateResult.warnings)
// rather than only in the log: the user changed something and would otherwise see no effect.

import { GenerateParams, LIMITS, ResolvedParams } from '../../shared/params';
import { trueCfgOn } from './trueCfg';

export function paramsWarnings(input: GenerateParams, params: ResolvedParams, image?: { width: number; height: number }): string[] {
  const out: string[] = [];
  if (input.negativePrompt?.trim() && !trueCfgOn(params)) {
    out.push(`negative prompt not used: true CFG is off (scale ${params.trueCfgScale}); a true CFG scale above 1 (3.5 is usual) turns it on, at two model runs a step`);
  }
  const { min, max } = LIMITS.side;
  if (image && input.width === undefined && input.height === undefined && (Math.max(image.width, image.height) > max || Math.min(image.width, image.height) < min)) {
    out.push(`input image ${image.width}×${image.height} runs at ${params.width}×${params.height}: image sides are ${min}–${max} px (set width/height to choose)`);
  }
  return out;
}
