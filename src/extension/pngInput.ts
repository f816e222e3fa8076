// A PNG's embedded parameters as generation input, for "Re-run with these parameters". Kept apart
// from the VS Code UI (pngRerun.ts) and light: the pure-JS text-chunk reader, never sharp.

import * as v from 'valibot';
import { ImageParameters, PngReadError, readPngParameters } from '../inference/formats/pngText';
import { readRegularFile } from '../inference/system/regularFile';
import type { GenerateInput } from './generation';
import { Guidance, Height, Prompt, Steps, UsedSeed, Width } from '../shared/params';

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

/** Keeps only values a run accepts (a PNG from another tool may say anything). */
export function toInput(p: Partial<ImageParameters>): GenerateInput | undefined {
  if (!v.is(Prompt, p.prompt) || !p.prompt.trim()) return undefined;
  const seed = typeof p.seed === 'string' && /^\d+$/.test(p.seed) ? Number(p.seed) : p.seed;
  const input: GenerateInput = { prompt: p.prompt };
  if (v.is(UsedSeed, seed)) input.seed = seed;
  if (v.is(Steps, p.steps)) input.steps = p.steps;
  if (v.is(Width, p.width) && v.is(Height, p.height)) Object.assign(input, { width: p.width, height: p.height });
  if (v.is(Guidance, p.guidance)) input.guidance = p.guidance;
  return input;
}
