// What to offer while typing in a .flux file, pure (no vscode) so it is unit-tested: parameter keys
// at the start of a line, the choices of a key with a fixed set, and files for `image:`/`lora:`.

import * as fs from 'node:fs';
import { DEFAULTS, HIRES_UPSCALERS, IMAGE_FITS, LIMITS, VAE_TILING } from '../../shared/params';
import { PARAM_KEYS, ParamKey } from './parser';

export type CompletionContext = { kind: 'key'; typed: string } | { kind: 'value'; key: ParamKey; typed: string } | undefined;

const KEY_TYPED = /^\s*([A-Za-z][A-Za-z0-9_-]*)?$/;
const VALUE_TYPED = /^\s*([A-Za-z][A-Za-z0-9_-]*)[ \t]*:[ \t]*(.*)$/;

/** What the text before the cursor on its line is: a key being typed, a value after `key:`, or neither (prompt text). */
export function completionContext(before: string): CompletionContext {
  const k = KEY_TYPED.exec(before);
  if (k) return { kind: 'key', typed: k[1] ?? '' };
  const v = VALUE_TYPED.exec(before);
  const key = v?.[1].toLowerCase() === 'negative_prompt' ? 'negative' : v?.[1].toLowerCase();
  if (v && (PARAM_KEYS as readonly string[]).includes(key!)) return { kind: 'value', key: key as ParamKey, typed: v[2] };
  return undefined;
}

/** The fixed choices of a key, if it has them. */
export function keyChoices(key: ParamKey): readonly string[] | undefined {
  return ({ image_fit: IMAGE_FITS, hires_upscale: HIRES_UPSCALERS, vae_tiling: VAE_TILING } as Partial<Record<ParamKey, readonly string[]>>)[key];
}

/** A key's range and default for the completion's detail: [min, max, default], or undefined for keys without one. */
export function keyRange(key: ParamKey): [number, number, number | string] | undefined {
  switch (key) {
    case 'steps': return [LIMITS.steps.min, LIMITS.steps.max, DEFAULTS.steps];
    case 'width': case 'height': return [LIMITS.side.min, LIMITS.side.max, DEFAULTS.width];
    case 'guidance': return [LIMITS.guidance.min, LIMITS.guidance.max, DEFAULTS.guidance];
    case 'count': return [LIMITS.count.min, LIMITS.count.max, DEFAULTS.count];
    case 'cfg': return [LIMITS.trueCfgScale.min, LIMITS.trueCfgScale.max, DEFAULTS.trueCfgScale];
    case 'strength': return [LIMITS.strength.min, LIMITS.strength.max, DEFAULTS.strength];
    case 'hires': return [LIMITS.hiresScale.min, LIMITS.hiresScale.max, DEFAULTS.hiresScale];
    case 'hires_strength': return [LIMITS.strength.min, LIMITS.strength.max, DEFAULTS.hiresStrength];
    case 'hires_steps': return [LIMITS.steps.min, LIMITS.steps.max, 'steps'];
    default: return undefined;
  }
}

const IMAGE_EXT = /\.(png|jpe?g|webp)$/i;
const LORA_EXT = /\.safetensors$/i;
const MAX_LISTED = 200;

/**
 * Files a value may name: images for `image:` in the .flux file's folder; LoRAs for `lora:` there
 * and in the LoRA folder (named relative to the folder they are found in, as the lookup resolves them).
 */
export function fileChoices(key: ParamKey, fluxDir: string | undefined, loraFolder: string | undefined): string[] {
  const list = (dir: string | undefined, ext: RegExp) => {
    if (!dir) return [];
    try {
      return fs.readdirSync(dir, { withFileTypes: true }).filter((e) => e.isFile() && ext.test(e.name)).map((e) => e.name).slice(0, MAX_LISTED);
    } catch {
      return [];
    }
  };
  if (key === 'image') return list(fluxDir, IMAGE_EXT);
  if (key === 'lora') return [...new Set([...list(fluxDir, LORA_EXT), ...list(loraFolder, LORA_EXT)])];
  return [];
}

