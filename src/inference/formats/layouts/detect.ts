// Which FLUX.1 component a checkpoint holds and in which naming, by tensor names alone; the
// error every layout module throws, and the small name helpers they share.

export class LayoutError extends Error {
  constructor(readonly path: string, problem: string) {
    super(`${path}: ${problem}`);
    this.name = 'LayoutError';
  }
}

export type ComponentKind = 'dit' | 'vae' | 'clip' | 't5';
export type Layout = 'bfl-dit' | 'diffusers-dit' | 'ldm-vae' | 'diffusers-vae' | 'hf-clip' | 'hf-t5';

interface LayoutSpec {
  layout: Layout;
  kind: ComponentKind;
  description: string;
  /** Matches a tensor name only this layout has; group 1 is whatever prefix the file puts before it. */
  anchor: RegExp;
}

export const LAYOUTS: LayoutSpec[] = [
  { layout: 'bfl-dit', kind: 'dit', description: 'FLUX.1 DiT, BFL single-file layout (double_blocks / single_blocks)', anchor: /^(.*?)(?:double_blocks\.\d+\.img_attn\.qkv|single_blocks\.\d+\.linear1)\.weight$/ },
  { layout: 'diffusers-dit', kind: 'dit', description: 'FLUX.1 DiT, diffusers FluxTransformer2DModel layout (transformer_blocks / single_transformer_blocks)', anchor: /^(.*?)(?:single_)?transformer_blocks\.\d+\.attn\.to_q\.weight$/ },
  { layout: 'ldm-vae', kind: 'vae', description: 'FLUX.1 autoencoder, LDM/BFL layout (ae.safetensors: encoder.down / decoder.up, 1×1-conv attention)', anchor: /^(.*?)(?:decoder\.up|encoder\.down)\.\d+\.block\.\d+\.conv1\.weight$/ },
  { layout: 'diffusers-vae', kind: 'vae', description: 'FLUX.1 autoencoder, diffusers AutoencoderKL layout (down_blocks / up_blocks, Linear attention)', anchor: /^(.*?)(?:decoder\.up_blocks|encoder\.down_blocks)\.\d+\.resnets\.\d+\.conv1\.weight$/ },
  { layout: 'hf-clip', kind: 'clip', description: 'CLIP text encoder, transformers CLIPTextModel layout', anchor: /^(.*?)encoder\.layers\.\d+\.self_attn\.q_proj\.weight$/ },
  { layout: 'hf-t5', kind: 't5', description: 'T5 text encoder, transformers T5EncoderModel layout', anchor: /^(.*?)encoder\.block\.\d+\.layer\.0\.SelfAttention\.q\.weight$/ },
];

export const KIND_ORDER: ComponentKind[] = ['dit', 'vae', 'clip', 't5'];

export const KIND_NAMES: Record<ComponentKind, string> = { dit: 'DiT (transformer)', vae: 'VAE (autoencoder)', clip: 'CLIP text encoder', t5: 'T5 text encoder' };

export function describeLayout(layout: Layout): string {
  return LAYOUTS.find((l) => l.layout === layout)!.description;
}

export interface LayoutMatch {
  layout: Layout;
  kind: ComponentKind;
  /** Prefix the file puts before the layout's names, e.g. `model.diffusion_model.` ('' for none). */
  prefix: string;
}

/** Every component a set of tensor names holds (all-in-one checkpoints hold several), by names alone. */
export function detectLayouts(names: Iterable<string>): LayoutMatch[] {
  const found = new Map<string, LayoutMatch>();
  for (const name of names) {
    for (const spec of LAYOUTS) {
      const m = spec.anchor.exec(name);
      if (m) found.set(`${spec.layout}\0${m[1]}`, { layout: spec.layout, kind: spec.kind, prefix: m[1] });
    }
  }
  return [...found.values()].sort((a, b) => KIND_ORDER.indexOf(a.kind) - KIND_ORDER.indexOf(b.kind) || a.prefix.length - b.prefix.length);
}

/** 1 + the largest N in names matching `re` (group 1 = N); 0 when none match. */
export function countIndexed(names: Iterable<string>, re: RegExp): number {
  let n = 0;
  for (const name of names) {
    const m = re.exec(name);
    if (m) n = Math.max(n, Number(m[1]) + 1);
  }
  return n;
}

export function listSome(names: string[], max = 6): string {
  return names.slice(0, max).join(', ') + (names.length > max ? `, … (${names.length - max} more)` : '');
}
