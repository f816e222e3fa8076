// InvokeAI's PNG record: an `invokeai_metadata` text chunk holding JSON of its own
//   {"positive_prompt": …, "negative_prompt": …, "seed": …, "steps": …, "width": …, "height": …,
//    "guidance": …, "cfg_scale": …, "model": {"name": …}, "loras": [{"model": {"name": …}, "weight": …}]}
// (InvokeAI 3 named a LoRA {"lora": {"model_name": …}}). Read into ImageParameters' names,
// unchecked (infotext.ts checkParameters checks).

import type { ImageParameters } from './infotext';
import { jsonObject } from './infotextExtras';

const NAMES: Record<string, keyof ImageParameters> = {
  positive_prompt: 'prompt', negative_prompt: 'negativePrompt', seed: 'seed', steps: 'steps', width: 'width', height: 'height', guidance: 'guidance', cfg_scale: 'cfgScale',
};

/** The parameters of an `invokeai_metadata` chunk; undefined when it is not a JSON object with a prompt. */
export function parseInvokeMetadata(text: string): Partial<ImageParameters> | undefined {
  const m = jsonObject(text);
  if (!m || typeof m.positive_prompt !== 'string' || !m.positive_prompt.trim()) return undefined;
  const out: Record<string, unknown> = {};
  for (const [key, name] of Object.entries(NAMES)) if (m[key] !== undefined && m[key] !== '') out[name] = m[key];
  const model = (m.model as { name?: unknown; model_name?: unknown } | null)?.name ?? (m.model as { model_name?: unknown } | null)?.model_name;
  if (typeof model === 'string') out.model = model;
  if (Array.isArray(m.loras)) {
    const loras = m.loras.flatMap((l: unknown) => {
      const entry = l as { model?: { name?: unknown }; lora?: { model_name?: unknown; name?: unknown }; weight?: unknown } | null;
      const name = entry?.model?.name ?? entry?.lora?.model_name ?? entry?.lora?.name;
      return typeof name === 'string' && name ? [{ name, strength: (typeof entry?.weight === 'number' || typeof entry?.weight === 'string' ? entry.weight : 1) as number | string }] : [];
    });
    if (loras.length) out.loras = loras;
  }
  const extra: Record<string, string> = { software: 'InvokeAI' };
  for (const key of ['generation_mode', 'scheduler', 'app_version'] as const) if (typeof m[key] === 'string') extra[key] = m[key] as string;
  out.extra = extra;
  return out as Partial<ImageParameters>;
}
