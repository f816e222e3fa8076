// A PNG's embedded parameters as generation input, for "Re-run with these parameters". Kept apart
// from the VS Code UI (pngRerun.ts) and light: the pure-JS text-chunk reader, never sharp.

import * as path from 'node:path';
import * as v from 'valibot';
import { ImageParameters, PngReadError, readPngParameters } from '../inference/formats/pngText';
import { readRegularFile } from '../inference/system/regularFile';
import type { GenerateInput } from './generation';
import { Guidance, Height, Prompt, Steps, UsedSeed, Width } from '../shared/params';
import { findLora, MissingInput, resolveInputs } from './fluxFile/inputs';

/** Bytes read to sniff a PNG: our chunks sit right after IHDR. */
const SNIFF_BYTES = 256 * 1024;

/** Cheap sniff, without decoding: does the PNG carry a `majicflux` or `parameters` text chunk? */
export function looksGenerated(head: Uint8Array): boolean {
  const b = Buffer.from(head.buffer, head.byteOffset, head.byteLength);
  return ['iTXtmajicflux\0', 'tEXtparameters\0', 'iTXtparameters\0'].some((s) => b.includes(s, 0, 'latin1'));
}

/** looksGenerated on a file's head; false for anything unreadable, a FIFO or a device included. */
export async function sniffGenerated(file: string): Promise<boolean> {
  try {
    return looksGenerated(await readRegularFile(file, SNIFF_BYTES, (p) => new PngReadError(file, p), { head: true }));
  } catch {
    return false;
  }
}

/** Parameters of a PNG as generation input; undefined when it has none. Throws a PngReadError for an unreadable file. */
export async function readImageInput(file: string): Promise<GenerateInput | undefined> {
  const info = await readPngParameters(file);
  return info.params ? toInput(info.params) : undefined;
}

/**
 * The input image and LoRAs of a re-run found on disk: the image relative to the PNG's folder; a
 * LoRA at the path our JSON chunk recorded, else by name (another tool's `<lora:name:…>`, or a
 * moved file) in the PNG's folder and the LoRA folder.
 */
export function resolveRerunInputs(input: GenerateInput, pngFile: string, loraFolder: string | undefined): { input: GenerateInput; missing: MissingInput[] } {
  const dir = path.dirname(pngFile);
  const loras = input.loras?.map((l) => {
    const byPath = findLora(l.file, [dir]);
    return byPath.found ? { ...l, file: byPath.found } : { ...l, file: path.basename(l.file).replace(/\.safetensors$/i, '') };
  });
  const r = resolveInputs({ ...input, ...(loras ? { loras } : {}) }, dir, loraFolder);
  return { input: { ...input, ...r.values }, missing: r.missing };
}

/** Keeps only values a run accepts (a PNG from another tool may say anything). */
export function toInput(p: Partial<ImageParameters>): GenerateInput | undefined {
  if (!v.is(Prompt, p.prompt) || !p.prompt.trim()) return undefined;
  const seed = typeof p.seed === 'string' && /^\d+$/.test(p.seed) ? Number(p.seed) : p.seed;
  const input: GenerateInput = { prompt: p.prompt };
  if (v.is(UsedSeed, seed)) input.seed = seed;
  if (v.is(Steps, p.steps)) input.steps = p.steps;
  if (v.is(Width, p.width) && v.is(Height, p.height)) Object.assign(input, { width: p.width, height: p.height });
  if (v.is(Guidance, p.guidance)) input.guidance = p.guidance;
  // checkParameters has checked these against params.ts already.
  if (p.cfgScale !== undefined && p.cfgScale > 1) {
    input.trueCfgScale = p.cfgScale;
    input.negativePrompt = p.negativePrompt ?? '';
  }
  if (p.loras?.length) input.loras = p.loras.map((l) => ({ file: l.path ?? l.name, strength: l.strength }));
  if (p.image !== undefined) {
    input.image = p.image;
    if (p.strength !== undefined) input.strength = p.strength;
    if (p.imageFit !== undefined) input.imageFit = p.imageFit;
  }
  if (p.hires) Object.assign(input, { hiresScale: p.hires.scale, hiresStrength: p.hires.strength, hiresSteps: p.hires.steps, hiresUpscale: p.hires.upscale });
  for (const k of Object.keys(input) as (keyof GenerateInput)[]) if (input[k] === undefined) delete input[k];
  return input;
}
