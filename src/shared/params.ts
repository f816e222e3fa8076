// A generation's parameters, owned here and only here: their names, defaults, limits, validation and
// the messages a user reads when one is wrong. Every other shape is derived from this module: the
// protocol's `generate` request and the PNG metadata (shared/protocol.ts), the CLI's flags and help,
// the panel's form (its limits are sent to the webview), the `.flux` keys, the settings' defaults,
// PNG parameters read and written, and the file-name template's values. test/unit/params-limits
// walks every surface and finds the same numbers.
//
// Schemas are valibot's: each is a few small functions that esbuild keeps only when used (a few KB
// in dist/extension.js, no dependencies), with the TypeScript type inferred from the schema, so a
// field can't be typed in one place and forgotten by the validator in another.

import * as v from 'valibot';
import { UserError, WEIGHT_FORMATS } from './api';

/** Draws a fresh seed (the seed used is reported with the image). */
export const RANDOM_SEED = -1;

/**
 * Sides are whole 16-pixel patches (one packed latent token), 64 (a 4×4 token grid) to 2048: FLUX.1
 * was trained up to about 2 MP, 2048 per side still works (slower, some repetition), larger is not
 * useful. Steps stop at 200: flow-matching Euler converges in 20–50; more is a typo for 28.
 */
export const LIMITS = {
  prompt: { maxChars: 20_000 },
  steps: { min: 1, max: 200 },
  side: { min: 64, max: 2048, multiple: 16 },
  guidance: { min: 0, max: 100 },
  seed: { min: 0, max: Number.MAX_SAFE_INTEGER },
  /** A fixed sigma shift s' = shift·s / (1 + (shift−1)·s) outside this squeezes every sigma to 0 or 1. */
  shift: { min: 0.1, max: 100 },
  /**
   * T5's frame is the text plus </s>: one token leaves no room for text. Past 512 (diffusers refuses
   * it too) FLUX was never trained, and T5-XXL's [64, L, L] attention alone takes 4 GiB at 4096.
   */
  t5MaxLength: { min: 2, max: 512 },
  /** Images per prompt in one request (`.flux` `count:`, the CLI's --count). */
  count: { min: 1, max: 100 },
  /**
   * Real classifier-free guidance (two DiT passes a step); 1 is off. FLUX.1-dev is guidance-distilled:
   * diffusers' examples use 1.5–4; past 30 the image burns out.
   */
  trueCfgScale: { min: 1, max: 30 },
  /** LoRA strength: A1111 and ComfyUI accept negatives (to invert a LoRA); past ±10 nothing useful is left. */
  loraStrength: { min: -10, max: 10 },
  /** LoRAs on one image. */
  loras: { max: 16 },
  /**
   * Image-to-image: the fraction of the schedule that is re-run (diffusers' `strength`). 1 ignores
   * the image's content; a value that leaves no whole step to run is refused (see resolveParams).
   */
  strength: { min: 0.01, max: 1 },
  /** High-resolution pass: the second pass's size over the first's. */
  hiresScale: { min: 1.05, max: 4 },
  /**
   * An input image's size: under 16 px (one packed token) a side holds nothing to vary; 16384²
   * decoded is 805 MB of RGB, far past any size FLUX.1 runs at, refused before decoding.
   */
  inputImage: { minSide: 16, maxPixels: 16384 * 16384 },
} as const;

export const DEFAULTS = {
  steps: 28,
  width: 1024,
  height: 1024,
  guidance: 3.5,
  seed: RANDOM_SEED,
  /** 512 for dev-type models (256 for schnell-type). */
  t5MaxLength: 512,
  shift: 'dynamic',
  count: 1,
  trueCfgScale: 1,
  negativePrompt: '',
  loraStrength: 1,
  /** diffusers' FluxImg2ImgPipeline default. */
  strength: 0.6,
  imageFit: 'crop',
  hiresScale: 2,
  /** Forge's default denoise for the hires pass: enough to add detail, not enough to recompose. */
  hiresStrength: 0.45,
  hiresUpscale: 'image',
  vaeTiling: 'auto',
} as const;

/** How an input image meets the requested size: `crop` scales to cover and cuts the centre; `stretch` ignores the aspect ratio. */
export const IMAGE_FITS = ['crop', 'stretch'] as const;
/** The hires pass upscales the decoded image (Lanczos, then VAE-encoded) or the latents (bilinear). */
export const HIRES_UPSCALERS = ['image', 'latent'] as const;
/** `auto` decodes/encodes in tiles when an image is larger than 1024² pixels, or than the tile a small GPU holds (pipeline/vaeTiling.ts). */
export const VAE_TILING = ['auto', 'on', 'off'] as const;

// ---------------------------------------------------------------------------------------------
// One schema per parameter; the messages name the parameter, the value and what would be accepted.

const show = (x: unknown) => (typeof x === 'string' ? JSON.stringify(x) : String(x));

function wholeNumber(name: string, { min, max }: { min: number; max: number }) {
  const msg = (i: { input: unknown }) => `${name} must be a whole number from ${min} to ${max}, got ${show(i.input)}`;
  return v.pipe(v.number(msg), v.finite(msg), v.integer(msg), v.minValue(min, msg), v.maxValue(max, msg));
}

/** The multiples of 16 either side of `value`, within the side limits. */
export function nearestSides(value: number): number[] {
  const { min, max, multiple } = LIMITS.side;
  const lower = Math.floor(value / multiple) * multiple;
  return [lower, lower + multiple].filter((s) => s >= min && s <= max);
}

function side(name: 'width' | 'height') {
  const { min, max, multiple } = LIMITS.side;
  const whole = (i: { input: unknown }) => `${name} must be a whole number of pixels, got ${show(i.input)}`;
  const range = (i: { input: unknown }) => `${name} ${show(i.input)} is out of range; FLUX.1 sizes go from ${min} to ${max} pixels per side`;
  return v.pipe(
    v.number(whole),
    v.finite(whole),
    v.integer(whole),
    v.minValue(min, range),
    v.maxValue(max, range),
    v.multipleOf(multiple, (i) => `${name} ${i.input} is not a multiple of ${multiple}; try ${nearestSides(i.input as number).join(' or ')}`),
  );
}

export const Prompt = v.pipe(
  v.string('the prompt must be text'),
  v.maxLength(LIMITS.prompt.maxChars, (i) => `the prompt is ${(i.input as string).length} characters; at most ${LIMITS.prompt.maxChars} are read`),
);
export const Steps = wholeNumber('steps', LIMITS.steps);
export const Width = side('width');
export const Height = side('height');
export const Guidance = v.pipe(
  v.number((i) => `guidance must be a number from ${LIMITS.guidance.min} to ${LIMITS.guidance.max}, got ${show(i.input)}`),
  v.check(
    (g) => Number.isFinite(g) && g >= LIMITS.guidance.min && g <= LIMITS.guidance.max,
    (i) => `guidance must be a number from ${LIMITS.guidance.min} to ${LIMITS.guidance.max}, got ${show(i.input)}`,
  ),
);
/** -1 draws one; any other negative is a typo, not a wish for randomness. The noise generator takes whole numbers up to MAX_SAFE_INTEGER. */
export const Seed = v.pipe(
  v.number(),
  v.check(
    (s) => s === RANDOM_SEED || (Number.isSafeInteger(s) && s >= LIMITS.seed.min),
    (i) => `seed must be ${RANDOM_SEED} (draw one) or a whole number from ${LIMITS.seed.min} to ${LIMITS.seed.max}, got ${show(i.input)}`,
  ),
);
/** The seed an image was made with (never the random marker). */
export const UsedSeed = wholeNumber('seed', LIMITS.seed);
const shiftMessage = (i: { input: unknown }) => `shift must be "dynamic" or a number from ${LIMITS.shift.min} to ${LIMITS.shift.max}, got ${show(i.input)}`;
export const Shift = v.pipe(
  v.union([v.literal('dynamic'), v.number()], shiftMessage),
  v.check((s) => s === 'dynamic' || (s >= LIMITS.shift.min && s <= LIMITS.shift.max), shiftMessage),
);
export const T5MaxLength = wholeNumber('T5 max length', LIMITS.t5MaxLength);
export const Count = wholeNumber('count', LIMITS.count);
const FilePath = v.pipe(v.string(), v.minLength(1), v.maxLength(4096));

/**
 * A number as a person writes it in a flag or a .flux line (`20`, `-0.5`, `.5`, `1e3`; spaces
 * around allowed), else undefined: Number() alone also reads `0x10` as 16, `0b11` as 3 and "" as
 * 0 — a typo that would run with a value nobody wrote.
 */
export function parseDecimal(text: string): number | undefined {
  if (!/^\s*[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?\s*$/.test(text)) return undefined;
  const n = Number(text);
  return Number.isFinite(n) ? n : undefined;
}

function numberIn(name: string, { min, max }: { min: number; max: number }) {
  const msg = (i: { input: unknown }) => `${name} must be a number from ${min} to ${max}, got ${show(i.input)}`;
  return v.pipe(v.number(msg), v.check((x) => Number.isFinite(x) && x >= min && x <= max, msg));
}
function oneOf<T extends readonly string[]>(name: string, choices: T) {
  return v.picklist(choices, (i) => `${name} must be one of ${choices.join(', ')}, got ${show(i.input)}`);
}

export const NegativePrompt = v.pipe(
  v.string('the negative prompt must be text'),
  v.maxLength(LIMITS.prompt.maxChars, (i) => `the negative prompt is ${(i.input as string).length} characters; at most ${LIMITS.prompt.maxChars} are read`),
);
export const TrueCfgScale = numberIn('true CFG scale', LIMITS.trueCfgScale);
export const LoraStrength = numberIn('LoRA strength', LIMITS.loraStrength);
/** A LoRA file (safetensors) and how strongly it applies. `path` is resolved by the server within the folders it allows. */
export const LoraSchema = v.object({
  path: v.pipe(v.string('a LoRA is named by its file path'), v.minLength(1, 'a LoRA needs a file path'), v.maxLength(4096)),
  strength: v.optional(LoraStrength),
});
export type Lora = v.InferOutput<typeof LoraSchema>;
export const Loras = v.pipe(v.array(LoraSchema, 'loras must be a list of { path, strength }'), v.maxLength(LIMITS.loras.max, `at most ${LIMITS.loras.max} LoRAs apply to one image`));
/**
 * A LoRA written as `FILE[:STRENGTH]` (the CLI's --lora, a `.flux` `lora:`): the strength is the text
 * after the last colon when it reads as a number, so `C:\loras\x.safetensors` is a path. After a
 * `.safetensors` name, or where it cannot be part of a path (no `.`, `/` or `\`), that text can only
 * be a strength: `badStrength` holds it when it is not a number (`style.safetensors:abc`), rather
 * than a file "style.safetensors:abc" reported missing. `path` is empty for `:0.8`. The strength is
 * returned unchecked (LoraStrength checks it).
 */
export function splitLoraSpec(text: string): { path: string; strength?: number; badStrength?: string } {
  const at = text.lastIndexOf(':');
  if (at < 0) return { path: text.trim() };
  const head = text.slice(0, at).trim();
  const tail = text.slice(at + 1).trim();
  if (tail !== '' && Number.isFinite(Number(tail))) return { path: head, strength: Number(tail) };
  if (/\.safetensors$/i.test(head) || !/[./\\]/.test(tail)) return { path: head, badStrength: tail };
  return { path: text.trim() };
}
/**
 * A1111's `<lora:name>`, `<lora:name:0.8>` (or `:0.8:0.5`, a separate text-encoder weight) tag: other
 * tools' PNG parameters carry LoRAs so (formats/infotextExtras.ts reads them), and users coming from
 * A1111 type them into prompts, where it would reach the model as words. Negated classes only: no backtracking.
 */
export const LORA_TAG = /<lora:([^:<>\n]+)(?::([^:<>\n]*))?(?::[^<>\n]*)?>/;
export const Strength = numberIn('strength', LIMITS.strength);
export const ImageFit = oneOf('image fit', IMAGE_FITS);
export const HiresScale = numberIn('hires scale', LIMITS.hiresScale);
export const HiresUpscale = oneOf('hires upscaler', HIRES_UPSCALERS);
export const VaeTiling = oneOf('VAE tiling', VAE_TILING);
/** The high-resolution pass: generate, upscale by `scale`, image-to-image at `strength` with `steps` (default: the first pass's). */
export const HiresSchema = v.object({
  scale: v.optional(HiresScale),
  strength: v.optional(Strength),
  steps: v.optional(Steps),
  upscale: v.optional(HiresUpscale),
});

// ---------------------------------------------------------------------------------------------
// What a generation takes, and what an image records.

export const GenerateParamsSchema = v.object(
  {
    prompt: Prompt,
    /** RANDOM_SEED (or absent) draws a seed; the seed used is reported. */
    seed: v.optional(Seed),
    steps: v.optional(Steps),
    width: v.optional(Width),
    height: v.optional(Height),
    guidance: v.optional(Guidance),
    t5MaxLength: v.optional(T5MaxLength),
    /** 'dynamic' (FluxPipeline's resolution-dependent shift) or a fixed shift. */
    shift: v.optional(Shift),
    /** A safetensors file whose `initial_latents` [1, tokens, 64] replaces the drawn noise. */
    latentsFile: v.optional(FilePath),
    /** Steers away from this text with real CFG when trueCfgScale > 1 (empty: away from the unconditional prediction). */
    negativePrompt: v.optional(NegativePrompt),
    trueCfgScale: v.optional(TrueCfgScale),
    loras: v.optional(Loras),
    /** Image-to-image: the input image (PNG/JPEG/WebP); width/height default to its size, to the nearest 16. */
    image: v.optional(FilePath),
    strength: v.optional(Strength),
    imageFit: v.optional(ImageFit),
    hires: v.optional(HiresSchema),
    vaeTiling: v.optional(VaeTiling),
  },
  'the parameters must be an object with at least a prompt',
);
export type GenerateParams = v.InferOutput<typeof GenerateParamsSchema>;

/** Everything needed to reproduce an image; embedded in its PNG. */
export const ImageMetadataSchema = v.object({
  prompt: Prompt,
  seed: UsedSeed,
  steps: Steps,
  width: Width,
  height: Height,
  guidance: Guidance,
  shift: Shift,
  t5MaxLength: T5MaxLength,
  model: v.pipe(v.string(), v.maxLength(4096)),
  weights: v.picklist(WEIGHT_FORMATS),
  sampler: v.literal('euler'),
  software: v.pipe(v.string(), v.maxLength(200)),
  negativePrompt: v.optional(NegativePrompt),
  trueCfgScale: v.optional(TrueCfgScale),
  /** `name` is the file's name without extension (A1111's `<lora:name:strength>`), `hash` the first 12 hex digits of its SHA-256 (A1111's "Lora hashes"). */
  loras: v.optional(v.array(v.object({ name: v.pipe(v.string(), v.maxLength(4096)), strength: LoraStrength, path: v.optional(v.pipe(v.string(), v.maxLength(4096))), hash: v.optional(v.pipe(v.string(), v.maxLength(64))) }))),
  /** The input image as the user named it, and its strength (image-to-image). */
  image: v.optional(v.pipe(v.string(), v.maxLength(4096))),
  strength: v.optional(Strength),
  imageFit: v.optional(ImageFit),
  /** The hires pass; its width/height are the written image's, while `width`/`height` above stay the first pass's (what a re-run sets, as A1111's "Size"). */
  hires: v.optional(v.object({ scale: HiresScale, strength: Strength, steps: Steps, upscale: HiresUpscale, width: Width, height: Height })),
});
export type ImageMetadata = v.InferOutput<typeof ImageMetadataSchema>;

/** The parameters a user sets for one image (what the panel, `.flux` blocks and re-runs carry). */
export const IMAGE_PARAMS = ['prompt', 'seed', 'steps', 'width', 'height', 'guidance'] as const;
export type ImageParams = Pick<Required<GenerateParams>, (typeof IMAGE_PARAMS)[number]>;

/** A generation's parameters with every default filled in (the input image and hires pass stay optional: absent is off). */
export type ResolvedParams = Required<Omit<GenerateParams, 'seed' | 'latentsFile' | 'image' | 'hires' | 'loras'>> &
  Pick<GenerateParams, 'seed' | 'latentsFile' | 'image'> & {
    loras: Required<Lora>[];
    hires?: Required<v.InferOutput<typeof HiresSchema>> & { width: number; height: number };
  };

/**
 * img2img runs the last ⌊steps·strength⌋ of `steps` scheduled steps (diffusers' get_timesteps:
 * t_start = int(steps − steps·strength)); this is how many that is.
 */
export function img2imgSteps(steps: number, strength: number): number {
  return steps - Math.trunc(Math.max(steps - steps * strength, 0));
}

/**
 * The denoising steps a job runs, what its progress counts to: image-to-image runs its share of the
 * schedule, a hires pass adds its own share.
 */
export function stepsToRun(p: Pick<GenerateParams, 'steps' | 'image' | 'strength' | 'hires'>): number {
  const steps = p.steps ?? DEFAULTS.steps;
  const first = p.image !== undefined ? img2imgSteps(steps, p.strength ?? DEFAULTS.strength) : steps;
  return first + (p.hires ? img2imgSteps(p.hires.steps ?? steps, p.hires.strength ?? DEFAULTS.hiresStrength) : 0);
}

/** `pixels` to the nearest multiple of 16 (a whole number of patches). */
function nearestMultiple(pixels: number): number {
  return Math.round(pixels / LIMITS.side.multiple) * LIMITS.side.multiple;
}

/** A side derived from an input image: the nearest multiple of 16 within the side limits. */
function imageSide(pixels: number): number {
  return Math.min(LIMITS.side.max, Math.max(LIMITS.side.min, nearestMultiple(pixels)));
}

/** A side scaled for the hires pass, to the nearest multiple of 16. */
export function hiresSide(side: number, scale: number): number {
  return nearestMultiple(side * scale);
}

/**
 * The size an image-to-image run takes by default: the input image's, each side to the nearest
 * multiple of 16, scaled first (keeping the aspect ratio) when a side is outside the limits.
 */
export function sizeForImage(width: number, height: number): { width: number; height: number } {
  const { min, max } = LIMITS.side;
  let k = Math.min(1, max / Math.max(width, height));
  if (Math.min(width, height) * k < min) k = min / Math.min(width, height);
  return { width: imageSide(width * k), height: imageSide(height * k) };
}

/** An image-to-image run's size: the sides given, a missing one from the image's aspect ratio, both missing sizeForImage. */
function imageRunSize(width: number | undefined, height: number | undefined, image: { width: number; height: number }): { width: number; height: number } {
  if (width !== undefined) return { width, height: height ?? imageSide((width * image.height) / image.width) };
  if (height !== undefined) return { width: imageSide((height * image.width) / image.height), height };
  return sizeForImage(image.width, image.height);
}

/** The first problem's message, for a UserError (the rest are usually consequences of it). */
export function firstMessage(issues: readonly v.BaseIssue<unknown>[]): string {
  const i = issues[0];
  // The field schemas name themselves; deeper paths (a message's nested parts) get theirs added.
  const path = i.path ?? [];
  return path.length > 1 ? `${path.map((p) => String(p.key)).join('.')}: ${i.message}` : i.message;
}

/**
 * The parameters with their defaults filled in, or a UserError naming the first one that is wrong.
 * Every entry point (CLI, server, pipeline) calls this before loading anything. `inputImage`: the
 * input image's size (after its EXIF orientation), which width/height default to (sizeForImage);
 * the pipeline reads it before resolving.
 */
export function resolveParams(params: unknown, inputImage?: { width: number; height: number }): ResolvedParams {
  const parsed = v.safeParse(GenerateParamsSchema, params);
  if (!parsed.success) throw new UserError(firstMessage(parsed.issues));
  const p = parsed.output;
  const tag = LORA_TAG.exec(p.prompt);
  if (tag) {
    const strength = tag[2]?.trim() || DEFAULTS.loraStrength;
    throw new UserError(`the prompt holds the LoRA tag ${tag[0]}, which MajicFLUX does not read (the model would get it as words): remove it and give the LoRA file with its strength: --lora "${tag[1].trim()}.safetensors:${strength}", a .flux "lora:" line or the panel's LoRAs`);
  }
  const r: ResolvedParams = {
    prompt: p.prompt,
    seed: p.seed,
    steps: p.steps ?? DEFAULTS.steps,
    ...(p.image !== undefined && inputImage ? imageRunSize(p.width, p.height, inputImage) : { width: p.width ?? DEFAULTS.width, height: p.height ?? DEFAULTS.height }),
    guidance: p.guidance ?? DEFAULTS.guidance,
    t5MaxLength: p.t5MaxLength ?? DEFAULTS.t5MaxLength,
    shift: p.shift ?? DEFAULTS.shift,
    latentsFile: p.latentsFile,
    negativePrompt: p.negativePrompt ?? DEFAULTS.negativePrompt,
    trueCfgScale: p.trueCfgScale ?? DEFAULTS.trueCfgScale,
    loras: (p.loras ?? []).map((l) => ({ path: l.path, strength: l.strength ?? DEFAULTS.loraStrength })),
    image: p.image,
    strength: p.strength ?? DEFAULTS.strength,
    imageFit: p.imageFit ?? DEFAULTS.imageFit,
    vaeTiling: p.vaeTiling ?? DEFAULTS.vaeTiling,
  };
  // Cross-field checks, before anything loads: each names both values and a way out.
  if (r.image !== undefined && img2imgSteps(r.steps, r.strength) < 1) {
    throw new UserError(`strength ${r.strength} with ${r.steps} steps leaves no step to run; use strength ≥ ${Math.ceil((1 / r.steps) * 1000) / 1000} or more steps`);
  }
  if (p.hires) {
    const h = { scale: p.hires.scale ?? DEFAULTS.hiresScale, strength: p.hires.strength ?? DEFAULTS.hiresStrength, steps: p.hires.steps ?? r.steps, upscale: p.hires.upscale ?? DEFAULTS.hiresUpscale };
    const width = hiresSide(r.width, h.scale);
    const height = hiresSide(r.height, h.scale);
    const pass = `a hires pass ×${h.scale} on ${r.width}×${r.height} makes ${width}×${height}`;
    if (Math.max(width, height) > LIMITS.side.max) {
      const most = Math.floor((LIMITS.side.max / Math.max(r.width, r.height)) * 100) / 100;
      // Past the smallest scale only a smaller first pass helps: "at most ×1" would be refused in turn.
      const firstSide = Math.floor(LIMITS.side.max / LIMITS.hiresScale.min / LIMITS.side.multiple) * LIMITS.side.multiple;
      throw new UserError(most >= LIMITS.hiresScale.min
        ? `${pass}; sides stop at ${LIMITS.side.max}: use a smaller scale (at most ×${most}) or a smaller first pass`
        : `${pass}; sides stop at ${LIMITS.side.max}: a first pass that large leaves no room for one (×${LIMITS.hiresScale.min} at least): use a first pass whose sides are at most ${firstSide}`);
    }
    // Sides round to whole patches: a small scale on a small image can leave both as they were, and
    // the pass would re-draw the image at its own size.
    if (width <= r.width && height <= r.height) {
      const side = Math.min(r.width, r.height);
      throw new UserError(`${pass} (sides are whole multiples of ${LIMITS.side.multiple}), no larger: use a scale of at least ×${Math.ceil(((side + LIMITS.side.multiple / 2) / side) * 100) / 100}`);
    }
    if (img2imgSteps(h.steps, h.strength) < 1) {
      throw new UserError(`hires strength ${h.strength} with ${h.steps} steps leaves no step to run; use strength ≥ ${Math.ceil((1 / h.steps) * 1000) / 1000} or more hires steps`);
    }
    r.hires = { ...h, width, height };
  }
  return r;
}

/** One parameter's value checked alone: the value, or the message saying why not. */
export function checkOne<S extends v.GenericSchema>(schema: S, value: unknown): { value: v.InferOutput<S> } | { message: string } {
  const r = v.safeParse(schema, value);
  return r.success ? { value: r.output } : { message: firstMessage(r.issues) };
}

/** "1 to 200, default 28": how help texts and hovers describe a limit. */
export function describeRange(key: 'steps' | 'guidance' | 't5MaxLength' | 'count' | 'trueCfgScale' | 'strength' | 'hiresScale' | 'loraStrength'): string {
  const l = LIMITS[key];
  return `${l.min} to ${l.max}, default ${DEFAULTS[key]}`;
}
