// ComfyUI's PNG record: a `prompt` text chunk holding the graph it ran in its API form,
//   {"<id>": {"class_type": "KSampler", "inputs": {"seed": 5, "positive": ["<from id>", <output>], …}}, …}
// (beside the editor's `workflow`). A FLUX run's parameters are read from the nodes that carry
// them; the prompt by following the sampler's positive input back to its text encoder. Best
// effort: a value fed by another node (a primitive, a math node) is left out, and the checks of
// infotext.ts apply as to any reader. Names as ImageParameters', unchecked.

import type { ImageParameters } from './infotext';
import { jsonObject } from './infotextExtras';

interface ComfyNode {
  class_type?: unknown;
  inputs?: Record<string, unknown>;
}

const SAMPLERS = new Set(['KSampler', 'KSamplerAdvanced', 'SamplerCustom', 'SamplerCustomAdvanced']);
const LATENTS = new Set(['EmptyLatentImage', 'EmptySD3LatentImage', 'EmptyFluxLatentImage']);

/** The parameters of ComfyUI's `prompt` chunk; undefined when it is not such a graph or names no prompt. */
export function parseComfyPrompt(text: string): Partial<ImageParameters> | undefined {
  const nodes = jsonObject(text) as Record<string, ComfyNode> | undefined;
  if (!nodes) return undefined;
  const all = Object.values(nodes).filter((n): n is ComfyNode & { inputs: Record<string, unknown> } => n !== null && typeof n === 'object' && typeof n.inputs === 'object' && n.inputs !== null);
  const kind = (n: ComfyNode | undefined) => (typeof n?.class_type === 'string' ? n.class_type : '');
  // An input is a literal, or a link [node id, output index].
  const linked = (x: unknown): ComfyNode | undefined => (Array.isArray(x) && x.length === 2 ? nodes[String(x[0])] : undefined);
  const literal = (x: unknown) => (typeof x === 'number' || typeof x === 'string' ? x : undefined);

  const out: Record<string, unknown> = {};
  // Conditioning back to its text: FluxGuidance and guiders pass it through (the guidance found on the way is FLUX's).
  const textOf = (link: unknown, depth = 0): string | undefined => {
    const n = linked(link);
    if (!n?.inputs || depth > 16) return undefined;
    const k = kind(n);
    if (k === 'CLIPTextEncodeFlux') {
      if (literal(n.inputs.guidance) !== undefined) out.guidance ??= n.inputs.guidance;
      const t = literal(n.inputs.t5xxl) ?? literal(n.inputs.clip_l);
      return typeof t === 'string' ? t : undefined;
    }
    if (k.startsWith('CLIPTextEncode')) return typeof n.inputs.text === 'string' ? n.inputs.text : undefined;
    if (k === 'FluxGuidance' && literal(n.inputs.guidance) !== undefined) out.guidance ??= n.inputs.guidance;
    return textOf(n.inputs.conditioning ?? n.inputs.positive, depth + 1);
  };

  const sampler = all.find((n) => SAMPLERS.has(kind(n)));
  const si = sampler?.inputs ?? {};
  const guider = linked(si.guider);
  const positive = si.positive ?? guider?.inputs?.positive ?? guider?.inputs?.conditioning;
  const prompt = positive !== undefined ? textOf(positive) : (() => {
    // No sampler we know: the one text encoder there is, if only one.
    const encoders = all.filter((n) => kind(n).startsWith('CLIPTextEncode'));
    return encoders.length === 1 ? textOf([Object.keys(nodes).find((id) => nodes[id] === encoders[0]), 0]) : undefined;
  })();
  if (!prompt?.trim()) return undefined;
  out.prompt = prompt;

  const cfg = literal(si.cfg) ?? literal(guider?.inputs?.cfg);
  if (cfg !== undefined) out.cfgScale = cfg;
  const negative = textOf(si.negative ?? guider?.inputs?.negative);
  if (negative?.trim() && typeof cfg === 'number' && cfg > 1) out.negativePrompt = negative;
  out.seed ??= literal(si.seed) ?? literal(si.noise_seed) ?? literal(linked(si.noise)?.inputs?.noise_seed);
  out.steps ??= literal(si.steps) ?? literal(linked(si.sigmas)?.inputs?.steps);
  const latent = [linked(si.latent_image), ...all.filter((n) => LATENTS.has(kind(n)))].find((n) => LATENTS.has(kind(n)));
  if (latent?.inputs) {
    out.width = literal(latent.inputs.width);
    out.height = literal(latent.inputs.height);
  }
  const model = all.find((n) => ['UNETLoader', 'CheckpointLoaderSimple', 'UnetLoaderGGUF'].includes(kind(n)))?.inputs;
  const modelName = literal(model?.unet_name) ?? literal(model?.ckpt_name);
  if (typeof modelName === 'string') out.model = fileStem(modelName);
  const loras = all
    .filter((n) => kind(n).startsWith('LoraLoader') && typeof n.inputs.lora_name === 'string')
    .map((n) => ({ name: fileStem(n.inputs.lora_name as string), strength: (literal(n.inputs.strength_model) ?? literal(n.inputs.strength) ?? 1) as number | string }));
  if (loras.length) out.loras = loras;
  const extra: Record<string, string> = { software: 'ComfyUI' };
  for (const key of ['sampler_name', 'scheduler'] as const) {
    const v = literal(si[key]);
    if (typeof v === 'string') extra[key] = v;
  }
  out.extra = extra;
  for (const k of Object.keys(out)) if (out[k] === undefined) delete out[k];
  return out as Partial<ImageParameters>;
}

/** A model folder's file name without folders or extension, as a LoRA or model is named. */
function fileStem(name: string): string {
  return name.replace(/^.*[\\/]/, '').replace(/\.(safetensors|gguf|ckpt|pt|sft)$/i, '');
}
