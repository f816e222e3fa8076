// Messages between the generation panel's webview and the extension host. The webview is untrusted
// input: validateFromWebview accepts only the declared shapes, rebuilt from known fields, with
// numbers in range. History images are named by ids; the two paths it may send (the input image,
// LoRA files) are ones the host sent it, and the host checks them again before use (panel.ts).

import * as v from 'valibot';
import { formatBytes } from '../../shared/bytes';
import type { GenerateParams } from '../../shared/params';
import {
  DEFAULTS,
  GenerateParamsSchema,
  Guidance,
  Height,
  HiresSchema,
  HiresUpscale,
  ImageFit,
  IMAGE_PARAMS,
  ImageParams,
  LIMITS,
  NegativePrompt,
  Prompt,
  Seed,
  Steps,
  Width,
} from '../../shared/params';
import { DROPPED_IMAGE_TYPES, MAX_DROPPED_IMAGE_BYTES } from './droppedImages';

const FilePath = v.pipe(v.string(), v.minLength(1), v.maxLength(4096));

/** The panel's hires pass: params.ts's, with the scale, strength and upscaler the form always has; no steps means the first pass's. */
const PanelHiresSchema = v.required(HiresSchema, ['scale', 'strength', 'upscale']);
export type PanelHires = v.InferOutput<typeof PanelHiresSchema>;

/** What Generate sends: params.ts's image parameters, a prompt with some text and a whole seed (-1 draws one), and issue 13's optional ones. */
const PanelParamsSchema = v.object({
  prompt: v.pipe(Prompt, v.check((p) => p.trim() !== '')),
  seed: v.pipe(v.number(), v.integer(), Seed),
  steps: Steps,
  width: Width,
  height: Height,
  guidance: Guidance,
  // Issue 13's, exactly as a generate request takes them.
  ...v.pick(GenerateParamsSchema, ['negativePrompt', 'trueCfgScale', 'loras', 'image', 'strength', 'imageFit']).entries,
  hires: v.optional(PanelHiresSchema),
});
// The schema's output is checked against this where a validated message is handled (panel.ts).
export type PanelParams = ImageParams & Pick<GenerateParams, 'negativePrompt' | 'trueCfgScale' | 'loras' | 'image' | 'strength' | 'imageFit'> & { hires?: PanelHires };

/** The form's starting values: the settings' defaults and params.ts's for the rest. */
export type PanelDefaults = ImageParams & { negativePrompt: string; trueCfgScale: number; strength: number; imageFit: string; hiresScale: number; hiresStrength: number; hiresUpscale: string; loraStrength: number };

/** params.ts's defaults for the fields no setting covers. */
export const PANEL_DEFAULTS = { strength: DEFAULTS.strength, imageFit: DEFAULTS.imageFit, hiresScale: DEFAULTS.hiresScale, hiresStrength: DEFAULTS.hiresStrength, hiresUpscale: DEFAULTS.hiresUpscale, loraStrength: DEFAULTS.loraStrength };

const ACTIONS = ['open', 'copyPrompt', 'rerun', 'reveal', 'vary'] as const;
export type HistoryAction = (typeof ACTIONS)[number];

// A half-typed number is kept (the form is restored as it was); anything else is dropped.
const orDropped = <S extends v.GenericSchema>(s: S) => v.optional(v.union([s, v.pipe(v.unknown(), v.transform(() => undefined))]));
const FormNumber = orDropped(v.pipe(v.number(), v.finite(), v.minValue(-1), v.maxValue(LIMITS.seed.max)));
const NUMBER_FIELDS = [...IMAGE_PARAMS.filter((k) => k !== 'prompt'), 'trueCfgScale', 'strength', 'hiresScale', 'hiresStrength', 'hiresSteps'] as const;
/** A LoRA strength may be negative (it inverts the LoRA); half-typed values are kept as they are. */
const FormLora = v.pipe(
  v.object({ path: FilePath, strength: orDropped(v.pipe(v.number(), v.finite())) }),
  v.transform((l) => (l.strength === undefined ? { path: l.path } : l)),
);

/** The form as the user left it (may hold values that do not validate yet). The input image is the host's (panel.ts), not the form's. */
const PanelFormSchema = v.pipe(
  v.object({
    prompt: Prompt,
    lock: orDropped(v.boolean()),
    ...(Object.fromEntries(NUMBER_FIELDS.map((k) => [k, FormNumber])) as Record<(typeof NUMBER_FIELDS)[number], typeof FormNumber>),
    negativePrompt: orDropped(NegativePrompt),
    loras: orDropped(v.pipe(v.array(FormLora), v.maxLength(LIMITS.loras.max))),
    imageFit: orDropped(ImageFit),
    hires: orDropped(v.boolean()),
    hiresUpscale: orDropped(HiresUpscale),
  }),
  v.transform((f) => Object.fromEntries(Object.entries(f).filter(([, x]) => x !== undefined)) as typeof f),
);
export type PanelForm = v.InferOutput<typeof PanelFormSchema>;

const ID_RE = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

const FromWebviewSchema = v.variant('type', [
  v.object({ type: v.literal('ready') }),
  v.object({ type: v.literal('cancel') }),
  v.object({ type: v.literal('saveForm'), form: PanelFormSchema }),
  v.object({ type: v.literal('generate'), params: PanelParamsSchema }),
  v.object({ type: v.literal('history'), action: v.picklist(ACTIONS), id: v.pipe(v.string(), v.regex(ID_RE)) }),
  /** Choose the input image in a file dialog, take a dropped one (a URI from the drop's uri-list), or clear it. */
  v.object({ type: v.literal('pickImage') }),
  v.object({ type: v.literal('dropImage'), uri: v.pipe(v.string(), v.maxLength(8192)) }),
  /** A file dropped from the desktop: its name (for the log and messages) and bytes; the host checks the bytes (droppedImages.ts). */
  v.object({ type: v.literal('dropImageBytes'), name: v.pipe(v.string(), v.maxLength(1024)), bytes: v.instance(Uint8Array) }),
  v.object({ type: v.literal('clearImage') }),
  /** List the LoRA files again (after adding some). */
  v.object({ type: v.literal('listLoras') }),
]);
export type FromWebview = v.InferOutput<typeof FromWebviewSchema>;

export type GalleryItem = ImageParams & {
  id: string;
  /** A webview resource URI (asWebviewUri), not a path. */
  src: string;
  name: string;
  model: string;
  created: number;
};

export interface JobView {
  state: 'pending' | 'queued' | 'running' | 'done' | 'failed' | 'cancelled';
  stage?: string;
  step?: number;
  steps?: number;
  /** While active: what the job is doing, in the words of the notification and the status bar (progress.ts). */
  label?: string;
  /** While active: 0–1 of the job done. */
  fraction?: number;
  /** data: URI of the latent preview. */
  preview?: string;
  error?: string;
  /** History id of the image, once done. */
  resultId?: string;
  queued: number;
}

/** The numbers the form checks against (min, max, step), params.ts's: the webview keeps no copy. */
export const PANEL_LIMITS = {
  steps: LIMITS.steps,
  side: LIMITS.side,
  guidance: LIMITS.guidance,
  seed: LIMITS.seed,
  trueCfgScale: LIMITS.trueCfgScale,
  loraStrength: LIMITS.loraStrength,
  loras: LIMITS.loras,
  strength: LIMITS.strength,
  hiresScale: LIMITS.hiresScale,
  /** What the webview lets a dropped file be before sending its bytes (the host checks the bytes again). */
  droppedImage: { maxBytes: MAX_DROPPED_IMAGE_BYTES, max: formatBytes(MAX_DROPPED_IMAGE_BYTES), types: DROPPED_IMAGE_TYPES },
};

/** A LoRA the picker offers. */
export interface LoraView {
  path: string;
  name: string;
  /** "144 MB": to tell two files of one name apart. */
  size: string;
  /** The folder it is in, shortened (relative to the workspace where it is in one). */
  where: string;
}

/** The input image: its path (sent back with Generate), name and a webview URI for the thumbnail. */
export interface ImageView {
  path: string;
  name: string;
  src: string;
}

export interface InitMessage {
  type: 'init';
  defaults: PanelDefaults;
  limits: typeof PANEL_LIMITS;
  form?: PanelForm;
  history: GalleryItem[];
  job?: JobView;
  demo: boolean;
  trusted: boolean;
  model: string;
  image?: ImageView;
}

export type ToWebview =
  | InitMessage
  | { type: 'job'; job?: JobView }
  | { type: 'history'; items: GalleryItem[] }
  | { type: 'prefill'; params: Partial<PanelParams> }
  /** What the text encoders will ignore or cannot read of `prompt` (the .flux diagnostics' facts). */
  | { type: 'promptNotes'; prompt: string; notes: string[] }
  | { type: 'loras'; items: LoraView[] }
  /** The input image changed (undefined: none); `vary` also sets the strength and size and focuses the prompt. */
  | { type: 'inputImage'; image?: ImageView; vary?: { strength: number; width?: number; height?: number } };

/** The first message: the form's defaults and limits, and what the panel shows. */
export function initMessage(m: Omit<InitMessage, 'type' | 'limits'>): InitMessage {
  return { type: 'init', limits: PANEL_LIMITS, ...m };
}

/** The message if it is one of the declared shapes, rebuilt from its declared fields; else undefined (and it is ignored). */
export function validateFromWebview(m: unknown): FromWebview | undefined {
  const r = v.safeParse(FromWebviewSchema, m);
  return r.success ? r.output : undefined;
}
