// The issue-13 parts of a PNG's parameters (infotext.ts has the rest): LoRAs in A1111's infotext —
// `<lora:name:strength>` tags in the prompt and `Lora hashes: "name: hash, …"`, so other tools
// (A1111, Forge, Civitai) recognise them — and the checks of what is read back (true CFG scale,
// LoRAs, input image and strength, hires pass). Parsed in linear time: the text comes from any PNG.

import type { GenericSchema } from 'valibot';
import { checkOne, HiresScale, HiresUpscale, ImageFit, ImageMetadata, LIMITS, LORA_TAG, LoraStrength, Steps, Strength, TrueCfgScale } from '../../shared/params';

/** A PNG text chunk's JSON when it is an object (what every tool's JSON record is); undefined for anything else. */
export function jsonObject(text: string): Record<string, unknown> | undefined {
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    return undefined;
  }
  return json !== null && typeof json === 'object' && !Array.isArray(json) ? (json as Record<string, unknown>) : undefined;
}

/** A model name or sampler is short; a longer "field" is not one. */
export const MAX_FIELD_CHARS = 4096;

export type LoraRef = NonNullable<ImageMetadata['loras']>[number];

/** ` <lora:name:0.8>` per LoRA, appended to the prompt as A1111 writes them. */
export function loraTags(loras: readonly LoraRef[] | undefined): string {
  return (loras ?? []).map((l) => ` <lora:${l.name}:${l.strength}>`).join('');
}

/** `name: hash, name: hash` for the LoRAs whose hash is known (undefined when none is). */
export function loraHashes(loras: readonly LoraRef[] | undefined): string | undefined {
  const known = (loras ?? []).filter((l) => l.hash);
  return known.length ? known.map((l) => `${l.name}: ${l.hash}`).join(', ') : undefined;
}

// params.ts's LORA_TAG (of `<lora:name:0.8:0.5>` the first number is the one kept), with the blanks
// before it and a comma after it.
const TAG = new RegExp(`[ \\t]*${LORA_TAG.source}(?:[ \\t]*,)?`, 'g');

/** The prompt without its LoRA tags, and the LoRAs they name (strength as written: checked later). */
export function takeLoraTags(prompt: string): { prompt: string; loras: { name: string; strength: number | string }[] } {
  const loras: { name: string; strength: number | string }[] = [];
  const rest = prompt.replace(TAG, (_, name: string, strength?: string) => {
    const s = strength === undefined || strength.trim() === '' ? 1 : Number(strength);
    loras.push({ name: name.trim(), strength: Number.isFinite(s) ? s : (strength ?? '') });
    return '';
  });
  return { prompt: loras.length ? rest.trim() : prompt, loras };
}

/** `name: hash, name: hash` → name → hash. */
export function parseLoraHashes(text: string): Map<string, string> {
  const out = new Map<string, string>();
  for (const part of text.split(',')) {
    const at = part.lastIndexOf(':');
    if (at > 0) out.set(part.slice(0, at).trim(), part.slice(at + 1).trim());
  }
  return out;
}

/** The issue-13 fields: true CFG scale, LoRAs, the input image and its strength, the hires pass. */
export function checkExtras(raw: Record<string, unknown>, params: Record<string, unknown>, dropped: string[]): void {
  const one = (key: string, schema: GenericSchema, value: unknown, into: Record<string, unknown> = params): boolean => {
    if (value === undefined) return false;
    const r = checkOne(schema, value);
    if ('value' in r) into[key] = r.value;
    else dropped.push(r.message);
    return 'value' in r;
  };
  one('cfgScale', TrueCfgScale, raw.cfgScale);
  one('strength', Strength, raw.strength);
  one('imageFit', ImageFit, raw.imageFit);
  if (raw.image !== undefined) {
    if (typeof raw.image === 'string' && raw.image.length > 0 && raw.image.length <= MAX_FIELD_CHARS) params.image = raw.image;
    else dropped.push(`image: not a file path of at most ${MAX_FIELD_CHARS} characters`);
  }
  if (raw.loras !== undefined) {
    const loras: LoraRef[] = [];
    for (const l of Array.isArray(raw.loras) ? raw.loras : [raw.loras]) {
      const x = (l ?? {}) as Record<string, unknown>;
      const text = (k: string) => (typeof x[k] === 'string' && (x[k] as string).length > 0 && (x[k] as string).length <= MAX_FIELD_CHARS ? (x[k] as string) : undefined);
      const name = text('name');
      const r = checkOne(LoraStrength, x.strength);
      if (!name) dropped.push('loras: a LoRA without a name');
      else if ('message' in r) dropped.push(`LoRA ${name}: ${r.message}`);
      else if (loras.length >= LIMITS.loras.max) dropped.push(`LoRA ${name}: at most ${LIMITS.loras.max} LoRAs apply to one image`);
      else loras.push({ name, strength: r.value, ...(text('path') ? { path: text('path') } : {}), ...(text('hash') && text('hash')!.length <= 64 ? { hash: text('hash') } : {}) });
    }
    if (loras.length) params.loras = loras;
  }
  if (raw.hires !== undefined) {
    const h = (raw.hires ?? {}) as Record<string, unknown>;
    const hires: Record<string, unknown> = {};
    // A pass without its scale is not re-run; a missing or bad strength, steps or upscaler takes the default.
    if (one('scale', HiresScale, h.scale, hires)) {
      one('strength', Strength, h.strength, hires);
      one('steps', Steps, h.steps, hires);
      one('upscale', HiresUpscale, h.upscale, hires);
      params.hires = hires;
    } else if (h.scale === undefined) dropped.push('hires: left out, it has no scale');
  }
}
