// Messages between the generation panel's webview and the extension host. The webview is untrusted
// input: validateFromWebview accepts only the declared shapes, rebuilt from known fields, with
// numbers in range. Images are named by history ids, never by file paths.

import * as v from 'valibot';
import { Guidance, Height, IMAGE_PARAMS, ImageParams, LIMITS, Prompt, Seed, Steps, Width } from '../../shared/params';

/** What Generate sends: params.ts's image parameters, a prompt with some text and a whole seed (-1 draws one). */
const PanelParamsSchema = v.object({
  prompt: v.pipe(Prompt, v.check((p) => p.trim() !== '')),
  seed: v.pipe(v.number(), v.integer(), Seed),
  steps: Steps,
  width: Width,
  height: Height,
  guidance: Guidance,
});
// The schema's output is checked against this where a validated message is handled (panel.ts).
export type PanelParams = ImageParams;

const ACTIONS = ['open', 'copyPrompt', 'rerun', 'reveal'] as const;
export type HistoryAction = (typeof ACTIONS)[number];

// A half-typed number is kept (the form is restored as it was); anything else is dropped.
const orDropped = <S extends v.GenericSchema>(s: S) => v.optional(v.union([s, v.pipe(v.unknown(), v.transform(() => undefined))]));
const FormNumber = orDropped(v.pipe(v.number(), v.finite(), v.minValue(-1), v.maxValue(LIMITS.seed.max)));
const NUMBER_FIELDS = IMAGE_PARAMS.filter((k) => k !== 'prompt');

/** The form as the user left it (may hold values that do not validate yet). */
const PanelFormSchema = v.pipe(
  v.object({
    prompt: Prompt,
    lock: orDropped(v.boolean()),
    ...(Object.fromEntries(NUMBER_FIELDS.map((k) => [k, FormNumber])) as Record<(typeof NUMBER_FIELDS)[number], typeof FormNumber>),
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
export const PANEL_LIMITS = { steps: LIMITS.steps, side: LIMITS.side, guidance: LIMITS.guidance, seed: LIMITS.seed };

export interface InitMessage {
  type: 'init';
  defaults: PanelParams;
  limits: typeof PANEL_LIMITS;
  form?: PanelForm;
  history: GalleryItem[];
  job?: JobView;
  demo: boolean;
  trusted: boolean;
  model: string;
}

export type ToWebview =
  | InitMessage
  | { type: 'job'; job?: JobView }
  | { type: 'history'; items: GalleryItem[] }
  | { type: 'prefill'; params: Partial<PanelParams> }
  /** What the text encoders will ignore or cannot read of `prompt` (the .flux diagnostics' facts). */
  | { type: 'promptNotes'; prompt: string; notes: string[] };

/** The first message: the form's defaults and limits, and what the panel shows. */
export function initMessage(m: Omit<InitMessage, 'type' | 'limits'>): InitMessage {
  return { type: 'init', limits: PANEL_LIMITS, ...m };
}

/** The message if it is one of the declared shapes, rebuilt from its declared fields; else undefined (and it is ignored). */
export function validateFromWebview(m: unknown): FromWebview | undefined {
  const r = v.safeParse(FromWebviewSchema, m);
  return r.success ? r.output : undefined;
}
