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
  /** T5's frame is the text plus </s>: one token leaves no room for text. */
  t5MaxLength: { min: 2, max: 4096 },
  /** Images per prompt in one request (`.flux` `count:`, the CLI's --count). */
  count: { min: 1, max: 100 },
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
} as const;

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
});
export type ImageMetadata = v.InferOutput<typeof ImageMetadataSchema>;

/** The parameters a user sets for one image (what the panel, `.flux` blocks and re-runs carry). */
export const IMAGE_PARAMS = ['prompt', 'seed', 'steps', 'width', 'height', 'guidance'] as const;
export type ImageParams = Pick<Required<GenerateParams>, (typeof IMAGE_PARAMS)[number]>;

/** A generation's parameters with every default filled in. */
export type ResolvedParams = Required<Omit<GenerateParams, 'seed' | 'latentsFile'>> & Pick<GenerateParams, 'seed' | 'latentsFile'>;

/** The first problem's message, for a UserError (the rest are usually consequences of it). */
export function firstMessage(issues: readonly v.BaseIssue<unknown>[]): string {
  const i = issues[0];
  // The field schemas name themselves; deeper paths (a message's nested parts) get theirs added.
  const path = i.path ?? [];
  return path.length > 1 ? `${path.map((p) => String(p.key)).join('.')}: ${i.message}` : i.message;
}

/**
 * The parameters with their defaults filled in, or a UserError naming the first one that is wrong.
 * Every entry point (CLI, server, pipeline) calls this before loading anything.
 */
export function resolveParams(params: unknown): ResolvedParams {
  const r = v.safeParse(GenerateParamsSchema, params);
  if (!r.success) throw new UserError(firstMessage(r.issues));
  const p = r.output;
  return {
    prompt: p.prompt,
    seed: p.seed,
    steps: p.steps ?? DEFAULTS.steps,
    width: p.width ?? DEFAULTS.width,
    height: p.height ?? DEFAULTS.height,
    guidance: p.guidance ?? DEFAULTS.guidance,
    t5MaxLength: p.t5MaxLength ?? DEFAULTS.t5MaxLength,
    shift: p.shift ?? DEFAULTS.shift,
    latentsFile: p.latentsFile,
  };
}

/** One parameter's value checked alone: the value, or the message saying why not. */
export function checkOne<S extends v.GenericSchema>(schema: S, value: unknown): { value: v.InferOutput<S> } | { message: string } {
  const r = v.safeParse(schema, value);
  return r.success ? { value: r.output } : { message: firstMessage(r.issues) };
}

/** "1 to 200, default 28": how help texts and hovers describe a limit. */
export function describeRange(key: 'steps' | 'guidance' | 't5MaxLength' | 'count'): string {
  const l = LIMITS[key];
  return `${l.min} to ${l.max}, default ${DEFAULTS[key]}`;
}
