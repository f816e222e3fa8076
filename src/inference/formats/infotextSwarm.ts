// SwarmUI's PNG parameters: its `parameters` chunk holds JSON, {"sui_image_params": {…}}, not
// A1111's text, so infotext.ts's parser would take the whole JSON for the prompt. Read into
// ImageParameters' names, unchecked (infotext.ts checkParameters checks).

import type { ImageParameters } from './infotext';
import { jsonObject, takeLoraTags } from './infotextExtras';

/** sui_image_params keys → ImageParameters'; the rest are kept as extra fields. */
const NAMES: Record<string, keyof ImageParameters> = {
  prompt: 'prompt', negativeprompt: 'negativePrompt', seed: 'seed', steps: 'steps', width: 'width', height: 'height',
  fluxguidancescale: 'guidance', cfgscale: 'cfgScale', model: 'model', swarm_version: 'version',
};
/** Read separately: LoRA names and their weights are two lists. */
const LORA_KEYS = new Set(['loras', 'loraweights']);

/**
 * The parameters of a `parameters` chunk that is a JSON object: SwarmUI's when it has
 * sui_image_params, else none (`{}`: JSON is never a prompt). Undefined when the text is not a JSON
 * object (A1111's infotext, read by parseA1111Parameters).
 */
export function parseJsonParameters(text: string): Partial<ImageParameters> | Record<string, never> | undefined {
  const json = text.trimStart().startsWith('{') ? jsonObject(text) : undefined;
  if (!json) return undefined;
  const sui = json.sui_image_params;
  if (sui === null || typeof sui !== 'object' || Array.isArray(sui)) return {};
  const out: Record<string, unknown> = {};
  const extra: Record<string, string | number | boolean> = {};
  for (const [key, value] of Object.entries(sui)) {
    if (Object.hasOwn(NAMES, key)) out[NAMES[key]] = value;
    else if (!LORA_KEYS.has(key) && ['string', 'number', 'boolean'].includes(typeof value)) extra[key] = value as string | number | boolean;
  }
  // Swarm also takes A1111's <lora:name:weight> in the prompt.
  const loras: { name: string; strength: number | string }[] = [];
  if (typeof out.prompt === 'string') {
    const tagged = takeLoraTags(out.prompt);
    out.prompt = tagged.prompt;
    loras.push(...tagged.loras);
  }
  const { loras: names, loraweights: weights } = sui as { loras?: unknown; loraweights?: unknown };
  if (Array.isArray(names)) {
    names.forEach((n, i) => {
      if (typeof n !== 'string' || !n) return;
      const w = Array.isArray(weights) ? weights[i] : undefined;
      const strength = w === undefined || w === '' ? 1 : Number(w);
      // A model-folder path, with or without the extension: the name is the file's.
      loras.push({ name: n.replace(/^.*[\\/]/, '').replace(/\.safetensors$/i, ''), strength: Number.isFinite(strength) ? strength : String(w) });
    });
  }
  if (loras.length) out.loras = loras;
  if (Object.keys(extra).length) out.extra = extra;
  return out as Partial<ImageParameters>;
}
