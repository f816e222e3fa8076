// Messages between the generation panel's webview and the extension host. The webview is untrusted
// input: validateFromWebview accepts only the declared shapes, rebuilt from known fields, with
// numbers in range. Images are named by history ids, never by file paths.

import { LIMITS } from '../fluxFile/parser';

export interface PanelParams {
  prompt: string;
  seed: number;
  steps: number;
  width: number;
  height: number;
  guidance: number;
}

export type HistoryAction = 'open' | 'copyPrompt' | 'rerun' | 'reveal';

/** The form as the user left it (may hold values that do not validate yet). */
export interface PanelForm {
  prompt: string;
  seed?: number;
  lock?: boolean;
  steps?: number;
  guidance?: number;
  width?: number;
  height?: number;
}

export type FromWebview =
  | { type: 'ready' }
  | { type: 'saveForm'; form: PanelForm }
  | { type: 'generate'; params: PanelParams }
  | { type: 'cancel' }
  | { type: 'history'; action: HistoryAction; id: string };

export interface GalleryItem {
  id: string;
  /** A webview resource URI (asWebviewUri), not a path. */
  src: string;
  name: string;
  prompt: string;
  seed: number;
  steps: number;
  width: number;
  height: number;
  guidance: number;
  model: string;
  created: number;
}

export interface JobView {
  state: 'pending' | 'queued' | 'running' | 'done' | 'failed' | 'cancelled';
  stage?: string;
  step?: number;
  steps?: number;
  /** data: URI of the latent preview. */
  preview?: string;
  error?: string;
  /** History id of the image, once done. */
  resultId?: string;
  queued: number;
}

export type ToWebview =
  | { type: 'init'; defaults: PanelParams; form?: PanelForm; history: GalleryItem[]; job?: JobView; demo: boolean; trusted: boolean; model: string }
  | { type: 'job'; job: JobView }
  | { type: 'history'; items: GalleryItem[] }
  | { type: 'prefill'; params: Partial<PanelParams> };

export const MAX_PROMPT_CHARS = 20_000;
const ID_RE = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;
const ACTIONS: readonly HistoryAction[] = ['open', 'copyPrompt', 'rerun', 'reveal'];

const isObj = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);
const isInt = (v: unknown, min: number, max: number): v is number => typeof v === 'number' && Number.isInteger(v) && v >= min && v <= max;

export function validateParams(v: unknown): PanelParams | undefined {
  if (!isObj(v)) return undefined;
  const { prompt, seed, steps, width, height, guidance } = v;
  if (typeof prompt !== 'string' || !prompt.trim() || prompt.length > MAX_PROMPT_CHARS) return undefined;
  if (!isInt(seed, -1, LIMITS.seed.max)) return undefined;
  if (!isInt(steps, LIMITS.steps.min, LIMITS.steps.max)) return undefined;
  for (const s of [width, height]) if (!isInt(s, LIMITS.size.min, LIMITS.size.max) || s % LIMITS.size.multiple !== 0) return undefined;
  if (typeof guidance !== 'number' || !Number.isFinite(guidance) || guidance < LIMITS.guidance.min || guidance > LIMITS.guidance.max) return undefined;
  return { prompt, seed, steps, width: width as number, height: height as number, guidance };
}

export function validateForm(v: unknown): PanelForm | undefined {
  if (!isObj(v) || typeof v.prompt !== 'string' || v.prompt.length > MAX_PROMPT_CHARS) return undefined;
  const form: PanelForm = { prompt: v.prompt };
  for (const k of ['seed', 'steps', 'guidance', 'width', 'height'] as const) {
    const n = v[k];
    if (typeof n === 'number' && Number.isFinite(n) && n >= -1 && n <= LIMITS.seed.max) form[k] = n;
  }
  if (typeof v.lock === 'boolean') form.lock = v.lock;
  return form;
}

/** The message if it is one of the declared shapes, else undefined (and it is ignored). */
export function validateFromWebview(v: unknown): FromWebview | undefined {
  if (!isObj(v) || typeof v.type !== 'string') return undefined;
  switch (v.type) {
    case 'ready':
      return { type: 'ready' };
    case 'cancel':
      return { type: 'cancel' };
    case 'saveForm': {
      const form = validateForm(v.form);
      return form ? { type: 'saveForm', form } : undefined;
    }
    case 'generate': {
      const params = validateParams(v.params);
      return params ? { type: 'generate', params } : undefined;
    }
    case 'history': {
      const { action, id } = v;
      if (typeof action !== 'string' || !(ACTIONS as readonly string[]).includes(action)) return undefined;
      if (typeof id !== 'string' || !ID_RE.test(id)) return undefined;
      return { type: 'history', action: action as HistoryAction, id };
    }
    default:
      return undefined;
  }
}
