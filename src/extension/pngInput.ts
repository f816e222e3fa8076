// A PNG's embedded parameters as generation input, for "Re-run with these parameters". Kept apart
// from the VS Code UI (pngRerun.ts) and light: the pure-JS text-chunk reader, never sharp.

import * as v from 'valibot';
import { ImageParameters, PngReadError, readPngParameters } from '../inference/formats/pngText';
import { readRegularFile } from '../inference/system/regularFile';
import type { GenerateInput } from './generation';
import type { LoraRef } from './loraFiles';
import { DEFAULTS, Guidance, Height, HiresSchema, ImageFit, LoraStrength, NegativePrompt, Prompt, Steps, Strength, TrueCfgScale, UsedSeed, Width } from '../shared/params';

/**
 * A PNG's parameters as run input; its LoRAs are named (and maybe pathed) as recorded, for the host
 * to find (loraFiles.resolveLoraRefs). `dropped`: why values found in the PNG were left out (a re-run
 * takes the defaults for them, so the user is told).
 */
export type PngInput = Omit<GenerateInput, 'loras'> & { loraRefs?: LoraRef[]; dropped?: string[] };

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
export async function readImageInput(file: string): Promise<PngInput | undefined> {
  return (await readImageInputOrTool(file)).input;
}

/**
 * readImageInput, and without parameters we read, why: the recorded prompt a run cannot take (too
 * long, not text, blank), or the tool whose own kind of record the PNG carries.
 */
/** Why a recorded prompt cannot be run: over the length limit (its length), not text, or blank. */
export type UnusablePrompt = { kind: 'tooLong'; chars: number } | { kind: 'notText' } | { kind: 'empty' };

export async function readImageInputOrTool(file: string): Promise<{ input?: PngInput; tool?: string; unusablePrompt?: UnusablePrompt }> {
  const info = await readPngParameters(file);
  const input = info.params ? toInput(info.params) : undefined;
  if (input) return { input: info.dropped?.length ? { ...input, dropped: info.dropped } : input };
  // A hand edit or another tool's over-long prompt: "no parameters" would be untrue. Told as a kind,
  // not the reader's English reason, so the message can be localized.
  const why = unusablePrompt(info.params?.prompt, info.dropped?.find((d) => d.startsWith('the prompt ')));
  if (why) return { unusablePrompt: why };
  const tool = recordedBy(info.text);
  return tool ? { tool } : {};
}

/** `dropped`: the reader's reason for leaving the prompt out (params.ts Prompt's messages). */
function unusablePrompt(prompt: unknown, dropped: string | undefined): UnusablePrompt | undefined {
  const chars = dropped && /^the prompt is (\d+) characters/.exec(dropped);
  if (chars) return { kind: 'tooLong', chars: Number(chars[1]) };
  if (dropped) return { kind: 'notText' };
  return typeof prompt === 'string' && !prompt.trim() ? { kind: 'empty' } : undefined;
}

/** Tools that record a generation as something other than A1111 text or our JSON: ComfyUI (its node graph), InvokeAI (its own JSON). */
export function recordedBy(text: Record<string, string>): string | undefined {
  if ('workflow' in text || 'prompt' in text) return 'ComfyUI';
  if ('invokeai_metadata' in text || 'invokeai_graph' in text) return 'InvokeAI';
  return undefined;
}

/** Keeps only values a run accepts (a PNG from another tool may say anything). */
export function toInput(p: Partial<ImageParameters>): PngInput | undefined {
  if (!v.is(Prompt, p.prompt) || !p.prompt.trim()) return undefined;
  const seed = typeof p.seed === 'string' && /^\d+$/.test(p.seed) ? Number(p.seed) : p.seed;
  const input: PngInput = { prompt: p.prompt };
  if (v.is(UsedSeed, seed)) input.seed = seed;
  if (v.is(Steps, p.steps)) input.steps = p.steps;
  if (v.is(Width, p.width) && v.is(Height, p.height)) Object.assign(input, { width: p.width, height: p.height });
  if (v.is(Guidance, p.guidance)) input.guidance = p.guidance;
  return Object.assign(input, issue13(p as Record<string, unknown>));
}

const LoraRefSchema = v.object({ name: v.pipe(v.string(), v.minLength(1), v.maxLength(4096)), strength: v.optional(LoraStrength), path: v.optional(v.pipe(v.string(), v.minLength(1), v.maxLength(4096))), hash: v.optional(v.string()) });
/** An A1111 LoRA hash as images record it (the first 12 hex digits of a SHA-256, or more). */
const LORA_HASH = /^[0-9a-f]{10,64}$/i;

/** Issue 13's parameters as the metadata reader gives them (infotext.ts), each kept only when params.ts accepts it. */
function issue13(p: Record<string, unknown>): Partial<PngInput> {
  const out: Partial<PngInput> = {};
  if (v.is(NegativePrompt, p.negativePrompt) && p.negativePrompt.trim()) out.negativePrompt = p.negativePrompt;
  // The reader names it as A1111 does (infotext.ts: cfgScale, 1 when off); our JSON chunk says trueCfgScale.
  const cfg = p.trueCfgScale ?? p.cfgScale;
  if (v.is(TrueCfgScale, cfg)) out.trueCfgScale = cfg;
  if (Array.isArray(p.loras)) {
    const refs = p.loras.filter((l) => v.is(LoraRefSchema, l)).map((l) => ({ name: l.name, strength: l.strength ?? DEFAULTS.loraStrength, ...(l.path ? { path: l.path } : {}), ...(l.hash && LORA_HASH.test(l.hash) ? { hash: l.hash.toLowerCase() } : {}) }));
    if (refs.length) out.loraRefs = refs;
  }
  if (typeof p.image === 'string' && p.image.trim() && p.image.length <= 4096) out.image = p.image;
  if (v.is(Strength, p.strength)) out.strength = p.strength;
  if (v.is(ImageFit, p.imageFit)) out.imageFit = p.imageFit;
  if (v.is(HiresSchema, p.hires)) {
    const h = p.hires;
    out.hires = Object.fromEntries((['scale', 'strength', 'steps', 'upscale'] as const).filter((k) => h[k] !== undefined).map((k) => [k, h[k]]));
  }
  return out;
}
