// A1111/Forge "infotext", the `parameters` text chunk: written from ImageParameters, and parsed
// back the way A1111's parse_generation_parameters does — in linear time, since the text comes
// from any PNG a user opens.

import type { GenericSchema } from 'valibot';
import { checkOne, Guidance, Height, ImageMetadata, Prompt, Shift, Steps, UsedSeed, Width } from '../../shared/params';
import { checkExtras, LoraRef, loraHashes, loraTags, MAX_FIELD_CHARS, parseLoraHashes, takeLoraTags } from './infotextExtras';

/**
 * What produced an image, enough to re-run it: our ImageMetadata's fields under A1111's names, plus
 * what other tools write. Written verbatim as the JSON chunk.
 */
export type ImageParameters = Pick<ImageMetadata, 'prompt' | 'steps' | 'width' | 'height'> &
  Partial<Pick<ImageMetadata, 'guidance' | 'shift' | 'model'>> & {
    negativePrompt?: string;
    /** A string for seeds beyond 2^53 (decimal; other tools write them). */
    seed: ImageMetadata['seed'] | string;
    /** Real classifier-free guidance (our trueCfgScale); 1 means off (the FLUX.1-dev default). */
    cfgScale?: number;
    /** A1111's `<lora:name:strength>` and "Lora hashes"; our JSON chunk adds the path. */
    loras?: LoraRef[];
    /** Image-to-image: the input image as the user named it (our JSON chunk only) and its strength. */
    image?: string;
    strength?: number;
    imageFit?: ImageMetadata['imageFit'];
    /** The high-resolution pass (A1111's "Hires upscale/steps/upscaler" and its "Denoising strength"). */
    hires?: { scale: number; strength?: number; steps?: number; upscale?: 'image' | 'latent' };
    sampler?: string;
    scheduleType?: string;
    modelHash?: string;
    version?: string;
    /** More A1111 "Key: value" fields, written after the standard ones. */
    extra?: Record<string, string | number | boolean>;
  };

/** ImageMetadata's fields that A1111 has no name for: written as extra "Key: value" fields. */
const EXTRA_NAMES = { weights: 'Weight format', t5MaxLength: 'T5 max length' } as const;
/** ImageMetadata's sampler names → A1111's. */
const SAMPLER_NAMES: Record<ImageMetadata['sampler'], string> = { euler: 'Euler' };

/**
 * An image's metadata under A1111's names, for the `parameters` infotext. (The `majicflux` JSON
 * chunk holds the ImageMetadata itself: the shape `majicflux generate --json` prints.)
 */
export function imageParameters(m: ImageMetadata): ImageParameters {
  return {
    prompt: m.prompt, steps: m.steps, seed: m.seed, width: m.width, height: m.height, guidance: m.guidance, cfgScale: 1, sampler: SAMPLER_NAMES[m.sampler], scheduleType: 'Simple',
    shift: m.shift, model: m.model, version: m.software, extra: { [EXTRA_NAMES.weights]: m.weights, [EXTRA_NAMES.t5MaxLength]: m.t5MaxLength },
    ...(m.trueCfgScale !== undefined ? { cfgScale: m.trueCfgScale, negativePrompt: m.negativePrompt } : {}),
    ...(m.loras?.length ? { loras: m.loras } : {}),
    ...(m.image !== undefined ? { image: m.image, strength: m.strength, imageFit: m.imageFit } : {}),
    ...(m.hires ? { hires: { scale: m.hires.scale, strength: m.hires.strength, steps: m.hires.steps, upscale: m.hires.upscale } } : {}),
  };
}

/** A1111's names for the hires upscalers (its "Latent" family and the image upscalers). */
const UPSCALER_NAMES = { latent: 'Latent', image: 'Lanczos' } as const;

/**
 * Our JSON chunk under ImageParameters' names, unchecked (checkParameters checks). Today's chunk is
 * an ImageMetadata (`software`, `weights`, `t5MaxLength`, sampler "euler"); a PNG written before
 * holds ImageParameters already (`version`, `extra`, "Euler") and passes through.
 */
export function jsonChunkParameters(raw: Record<string, unknown>): Record<string, unknown> {
  if (!('software' in raw || 'weights' in raw || 't5MaxLength' in raw)) return raw;
  const { software, weights, t5MaxLength, sampler, trueCfgScale, ...rest } = raw;
  const extra: Record<string, unknown> = {};
  if (weights !== undefined) extra[EXTRA_NAMES.weights] = weights;
  if (t5MaxLength !== undefined) extra[EXTRA_NAMES.t5MaxLength] = t5MaxLength;
  const out: Record<string, unknown> = { ...rest };
  if (sampler !== undefined) out.sampler = typeof sampler === 'string' && Object.hasOwn(SAMPLER_NAMES, sampler) ? SAMPLER_NAMES[sampler as ImageMetadata['sampler']] : sampler;
  if (software !== undefined) out.version = software;
  if (trueCfgScale !== undefined) out.cfgScale = trueCfgScale;
  if (Object.keys(extra).length) out.extra = extra;
  return out;
}

function quote(v: string): string {
  // A1111 quotes values holding a separator as JSON strings (non-ASCII left as is).
  return /[,\n:]/.test(v) ? JSON.stringify(v) : v;
}

/**
 * "<prompt>\nNegative prompt: …\nSteps: 28, Sampler: Euler, Schedule type: Simple, CFG scale: 1,
 * Distilled CFG Scale: 3.5, Seed: 42, Size: 1024x1024, Model: flux1-dev, …" — Forge's field names
 * for FLUX, so A1111/Forge "PNG Info", Civitai and similar tools read it.
 */
export function formatA1111Parameters(p: ImageParameters): string {
  const fields: [string, string | number | boolean | undefined][] = [
    ['Steps', p.steps],
    ['Sampler', p.sampler ?? 'Euler'],
    ['Schedule type', p.scheduleType ?? 'Simple'],
    ['CFG scale', p.cfgScale ?? 1],
    ['Distilled CFG Scale', p.guidance],
    ['Seed', p.seed],
    ['Size', `${p.width}x${p.height}`],
    ['Model hash', p.modelHash],
    ['Model', p.model],
    ['Shift', typeof p.shift === 'number' ? p.shift : undefined],
    // A1111 writes the hires pass's denoise here when one ran, else the image-to-image strength.
    ['Denoising strength', p.hires?.strength ?? (p.image !== undefined ? p.strength : undefined)],
    ['Hires upscale', p.hires?.scale],
    ['Hires steps', p.hires?.steps],
    ['Hires upscaler', p.hires?.upscale ? UPSCALER_NAMES[p.hires.upscale] : undefined],
    ['Lora hashes', loraHashes(p.loras)],
    ...Object.entries(p.extra ?? {}),
    ['Version', p.version],
  ];
  const line = fields
    .filter((f): f is [string, string | number | boolean] => f[1] !== undefined && f[1] !== '')
    .map(([k, v]) => `${k}: ${quote(String(v))}`)
    .join(', ');
  const negative = p.negativePrompt ? `\nNegative prompt: ${p.negativePrompt}` : '';
  return `${p.prompt}${loraTags(p.loras)}${negative}\n${line}`;
}

const isWordChar = (c: number) => (c >= 0x30 && c <= 0x39) || (c >= 0x41 && c <= 0x5a) || (c >= 0x61 && c <= 0x7a) || c === 0x5f;
const isKeyChar = (c: number) => isWordChar(c) || c === 0x20 || c === 0x2d || c === 0x2f;
const isSpace = (ch: string) => /\s/.test(ch);

/**
 * The "Key: value" fields of an infotext line, as A1111's
 * /\s*(\w[\w \-/]+):\s*("(?:\\.|[^\\"])+"|[^,]*)(?:,|$)/g finds them, in linear time (that
 * regex backtracks quadratically on a long line without colons). A quoted value counts only when
 * a comma or the end follows its closing quote; otherwise the value runs to the next comma.
 */
export function infotextFields(line: string): Array<[string, string]> {
  const fields: Array<[string, string]> = [];
  const quotes = new QuoteFinder(line);
  let p = 0;
  while (p < line.length) {
    if (!isWordChar(line.charCodeAt(p))) {
      p++;
      continue;
    }
    // A key is a maximal run: a match starting inside it would end at the same place.
    let k = p + 1;
    while (k < line.length && isKeyChar(line.charCodeAt(k))) k++;
    if (k - p < 2 || line.charCodeAt(k) !== 0x3a) {
      p = k;
      continue;
    }
    let v = k + 1;
    while (v < line.length && isSpace(line[v])) v++;
    const end = valueEnd(line, v, quotes);
    fields.push([line.slice(p, k).trim(), line.slice(v, end).trim()]);
    p = end + 1;
  }
  return fields;
}

function valueEnd(line: string, v: number, quotes: QuoteFinder): number {
  if (line.charCodeAt(v) === 0x22) {
    const q = quotes.closing(v);
    if (q > v + 1 && (q + 1 === line.length || line.charCodeAt(q + 1) === 0x2c)) return q + 1;
  }
  const comma = line.indexOf(',', v);
  return comma < 0 ? line.length : comma;
}

/**
 * Closing quotes: the first quote after `open` that an even run of backslashes precedes. Whether
 * a quote is escaped does not depend on where the search began (a run cannot reach back past the
 * opening quote), so one answer serves every later start before it — the searches stay linear.
 */
class QuoteFinder {
  private from = -1;
  private found = -1;

  constructor(private readonly s: string) {}

  closing(open: number): number {
    const cached = this.from !== -1 && this.from <= open && (this.found === -1 || this.found > open);
    if (!cached) this.search(open);
    return this.found;
  }

  private search(open: number): void {
    this.from = open;
    let j = this.s.indexOf('"', open + 1);
    while (j >= 0 && this.backslashesBefore(j, open) % 2 === 1) j = this.s.indexOf('"', j + 1);
    this.found = j;
  }

  private backslashesBefore(j: number, open: number): number {
    let n = 0;
    while (j - 1 - n > open && this.s.charCodeAt(j - 1 - n) === 0x5c) n++;
    return n;
  }
}

function numberOr(v: string): number | undefined {
  const n = Number(v);
  return v.trim() !== '' && Number.isFinite(n) ? n : undefined;
}

/**
 * Parses A1111 infotext like A1111's own parse_generation_parameters: the last line holds the
 * "Key: value" fields if it has at least three, lines before it are the prompt, and a line
 * starting "Negative prompt:" begins the negative prompt. Unknown keys land in `extra`.
 */
export function parseA1111Parameters(text: string): Partial<ImageParameters> {
  const lines = text.replace(/\r\n/g, '\n').split('\n');
  let fields = infotextFields(lines[lines.length - 1]);
  if (fields.length >= 3) lines.pop();
  else fields = [];
  const negAt = lines.findIndex((l) => l.startsWith('Negative prompt:'));
  const out: Partial<ImageParameters> = {};
  const tagged = takeLoraTags((negAt < 0 ? lines : lines.slice(0, negAt)).join('\n'));
  out.prompt = tagged.prompt;
  const hires: Record<string, unknown> = {};
  let denoise: number | undefined;
  let resize: [number, number] | undefined;
  let hashes = new Map<string, string>();
  if (negAt >= 0) {
    out.negativePrompt = [lines[negAt].slice('Negative prompt:'.length).trimStart(), ...lines.slice(negAt + 1)].join('\n');
  }
  const extra: Record<string, string> = {};
  for (const [key, value] of fields) {
    let v = value;
    if (v.length >= 2 && v.startsWith('"') && v.endsWith('"')) {
      try {
        v = String(JSON.parse(v));
      } catch {
        // leave as written
      }
    }
    switch (key) {
      case 'Steps': out.steps = numberOr(v); break;
      case 'Sampler': out.sampler = v; break;
      case 'Schedule type': out.scheduleType = v; break;
      case 'CFG scale': out.cfgScale = numberOr(v); break;
      case 'Distilled CFG Scale':
      case 'Guidance': out.guidance = numberOr(v); break;
      case 'Seed': {
        const n = numberOr(v);
        out.seed = n !== undefined && Number.isSafeInteger(n) ? n : v;
        break;
      }
      case 'Size': {
        const s = /^(\d+)x(\d+)$/.exec(v);
        if (s) {
          out.width = Number(s[1]);
          out.height = Number(s[2]);
        } else extra[key] = v;
        break;
      }
      case 'Model': out.model = v; break;
      case 'Model hash': out.modelHash = v; break;
      case 'Shift': {
        const n = numberOr(v);
        if (n !== undefined) out.shift = n;
        break;
      }
      case 'Version': out.version = v; break;
      case 'Denoising strength': denoise = numberOr(v); break;
      case 'Hires upscale': hires.scale = numberOr(v); break;
      // Written instead of "Hires upscale" when the second pass's size was set (a 0 side keeps the aspect ratio).
      case 'Hires resize': {
        const s = /^(\d+)x(\d+)$/.exec(v);
        if (s) resize = [Number(s[1]), Number(s[2])];
        else extra[key] = v;
        break;
      }
      case 'Hires steps': hires.steps = numberOr(v); break;
      // A1111's "Latent (nearest-exact)" and the like are latent upscalers; every other one works on the image.
      case 'Hires upscaler': hires.upscale = /^latent/i.test(v) ? 'latent' : 'image'; break;
      case 'Lora hashes':
        hashes = parseLoraHashes(v);
        // Hashes of LoRAs the prompt does not tag stay as written: nothing read is lost.
        if ([...hashes.keys()].some((name) => !tagged.loras.some((l) => l.name === name))) extra[key] = v;
        break;
      default: extra[key] = v;
    }
  }
  if (hires.scale === undefined && resize && out.width && out.height) {
    const ratios = [resize[0] / out.width, resize[1] / out.height].filter((r) => r > 0);
    // Both sides set with another aspect ratio: A1111 scales to cover, then crops.
    if (ratios.length) hires.scale = Math.round(Math.max(...ratios) * 100) / 100;
  }
  if (hires.scale !== undefined || hires.steps !== undefined || hires.upscale !== undefined) {
    out.hires = Object.fromEntries(Object.entries({ ...hires, strength: denoise }).filter(([, x]) => x !== undefined)) as unknown as ImageParameters['hires'];
  }
  else if (denoise !== undefined) out.strength = denoise;
  // Strengths as written (checkParameters drops what is not a number in range).
  if (tagged.loras.length) out.loras = tagged.loras.map((l) => ({ ...l, ...(hashes.has(l.name) ? { hash: hashes.get(l.name) } : {}) })) as LoraRef[];
  if (Object.keys(extra).length) out.extra = extra;
  for (const k of Object.keys(out) as (keyof ImageParameters)[]) if (out[k] === undefined) delete out[k];
  return out;
}

/** The fields a re-run takes, each checked by the schema a generation's request is checked by. */
const CHECKED: { [K in keyof ImageParameters]?: GenericSchema } = {
  prompt: Prompt, steps: Steps, seed: UsedSeed, width: Width, height: Height, guidance: Guidance, shift: Shift,
};
const TEXT_FIELDS = ['negativePrompt', 'sampler', 'scheduleType', 'model', 'modelHash', 'version'] as const;

/**
 * A PNG's parameters (our JSON chunk or parsed infotext: any tool, or anyone, wrote them) reduced to
 * values a generation accepts. A value out of range or of the wrong kind is dropped, and `dropped`
 * says why, so that nothing downstream gets a size or step count the pipeline would refuse.
 */
export function checkParameters(raw: Record<string, unknown>): { params: Partial<ImageParameters>; dropped: string[] } {
  const params: Record<string, unknown> = {};
  const dropped: string[] = [];
  for (const [key, schema] of Object.entries(CHECKED)) {
    if (!Object.prototype.hasOwnProperty.call(raw, key)) continue;
    let value = raw[key];
    // Other tools write seeds beyond 2^53 as decimal strings; ours fit a number.
    if (key === 'seed' && typeof value === 'string' && /^\d{1,20}$/.test(value)) value = Number(value);
    const r = checkOne(schema, value);
    if ('value' in r) params[key] = r.value;
    else dropped.push(r.message);
  }
  for (const key of TEXT_FIELDS) {
    const value = raw[key];
    if (typeof value === 'string' && value.length <= MAX_FIELD_CHARS) params[key] = value;
    else if (value !== undefined) dropped.push(`${key}: not text of at most ${MAX_FIELD_CHARS} characters`);
  }
  checkExtras(raw, params, dropped);
  const extra = raw.extra;
  if (extra !== null && typeof extra === 'object' && !Array.isArray(extra)) {
    const kept = Object.entries(extra).filter(([, v]) => typeof v === 'number' || typeof v === 'boolean' || (typeof v === 'string' && v.length <= MAX_FIELD_CHARS));
    if (kept.length) params.extra = Object.fromEntries(kept);
  }
  return { params: params as Partial<ImageParameters>, dropped };
}
