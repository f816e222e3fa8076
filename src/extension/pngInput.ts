// A PNG's embedded parameters as generation input, for "Re-run with these parameters". Kept apart
// from the VS Code UI (pngRerun.ts) and light: the pure-JS text-chunk reader, never sharp.

import { ImageParameters, PngReadError, readPngParameters } from '../inference/formats/pngText';
import { readRegularFile } from '../inference/system/regularFile';
import type { GenerateInput } from './generation';
import { LIMITS } from './fluxFile/parser';
import { MAX_PROMPT_CHARS } from './panel/protocol';

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
  if (typeof p.prompt !== 'string' || !p.prompt.trim() || p.prompt.length > MAX_PROMPT_CHARS) return undefined;
  const int = (v: unknown, min: number, max: number) => (typeof v === 'number' && Number.isInteger(v) && v >= min && v <= max ? v : undefined);
  const size = (v: unknown) => {
    const n = int(v, LIMITS.size.min, LIMITS.size.max);
    return n !== undefined && n % 16 === 0 ? n : undefined;
  };
  const seed = typeof p.seed === 'string' && /^\d+$/.test(p.seed) ? Number(p.seed) : p.seed;
  const input: GenerateInput = { prompt: p.prompt };
  const s = int(seed, 0, Number.MAX_SAFE_INTEGER);
  if (s !== undefined) input.seed = s;
  const steps = int(p.steps, LIMITS.steps.min, LIMITS.steps.max);
  if (steps !== undefined) input.steps = steps;
  const w = size(p.width);
  const h = size(p.height);
  if (w !== undefined && h !== undefined) Object.assign(input, { width: w, height: h });
  if (typeof p.guidance === 'number' && p.guidance >= LIMITS.guidance.min && p.guidance <= LIMITS.guidance.max) input.guidance = p.guidance;
  return input;
}
