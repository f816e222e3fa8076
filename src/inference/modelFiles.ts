// Where a model's parts are on disk: a FLUX.1-dev-style folder, optionally with a single-file
// DiT (a fine-tune such as majicflus_v134.safetensors) or other parts given separately.

import * as fs from 'node:fs';
import * as path from 'node:path';
import { ComponentName, ModelSpec, UserError, WeightFormat } from './api';
import { openTensors, TensorSource } from './safetensors';

export interface ModelFiles {
  name: string;
  transformer: string;
  textEncoder: string;
  textEncoder2: string;
  tokenizer: string;
  tokenizer2: string;
  vae: string;
  scheduler?: string;
  /** Estimated resident bytes of one component (or all) with this weight format. */
  residentBytes(format: WeightFormat, component?: ComponentName): number;
}

const DIT_MARKERS = ['double_blocks.0.img_attn.qkv.weight', 'model.diffusion_model.double_blocks.0.img_attn.qkv.weight', 'transformer_blocks.0.attn.to_q.weight'];

export function resolveModel(spec: ModelSpec): ModelFiles {
  const dir = spec.dir ? path.resolve(spec.dir) : undefined;
  if (dir && !fs.existsSync(dir)) throw new UserError(`Model folder not found: ${dir}`);
  const found = dir ? fs.readdirSync(dir) : [];
  const inDir = (...names: string[]) => (dir ? names.map((n) => path.join(dir, n)).find((p) => fs.existsSync(p)) : undefined);
  const missing: string[] = [];
  const need = (what: string, given: string | undefined, fallback: string | undefined, expected: string): string => {
    const p = given ? path.resolve(given) : fallback;
    if (!p || !fs.existsSync(p)) missing.push(given ? `${what}: ${p} does not exist` : `${what} (expected ${expected})`);
    return p ?? '';
  };
  const transformer = need('transformer', spec.transformer, inDir('transformer') ?? (dir ? singleDit(dir, found) : undefined), 'transformer/ or a single-file DiT such as flux1-dev.safetensors');
  const textEncoder = need('CLIP text encoder', spec.textEncoder, inDir('text_encoder'), 'text_encoder/ with model.safetensors');
  const textEncoder2 = need('T5 text encoder', spec.textEncoder2, inDir('text_encoder_2'), 'text_encoder_2/ with model*.safetensors');
  const tokenizer = need('CLIP tokenizer', spec.tokenizer, inDir('tokenizer'), 'tokenizer/ with vocab.json and merges.txt');
  const tokenizer2 = need('T5 tokenizer', spec.tokenizer2, inDir('tokenizer_2'), 'tokenizer_2/ with tokenizer.json');
  const vae = need('VAE', spec.vae, inDir('ae.safetensors', 'vae'), 'ae.safetensors or vae/');
  if (missing.length) {
    const where = dir ? `${dir}` : 'the model settings';
    throw new UserError(`The model in ${where} is incomplete. Missing: ${missing.join('; ')}. Found: ${found.length ? found.join(', ') : 'nothing'}.`);
  }
  const base = path.basename(transformer).replace(/\.safetensors$/, '');
  const name = spec.name ?? (base === 'transformer' ? path.basename(dir ?? transformer) : base);
  const scheduler = inDir('scheduler');
  return { name, transformer, textEncoder, textEncoder2, tokenizer, tokenizer2, vae, scheduler, residentBytes: (f, c) => estimate({ transformer, textEncoder, textEncoder2, vae }, f, c) };
}

function singleDit(dir: string, entries: string[]): string | undefined {
  const candidates = entries.filter((e) => e.endsWith('.safetensors') && e !== 'ae.safetensors');
  for (const c of candidates) {
    const p = path.join(dir, c);
    try {
      const t = openTensors(p);
      const isDit = DIT_MARKERS.some((m) => t.has(m));
      t.close();
      if (isDit) return p;
    } catch {
      // not a readable checkpoint: ignore here, inspect reports it
    }
  }
  return undefined;
}

const sizeCache = new Map<string, { linear: number; other: number; otherBytes: number; sourceBytes: number }>();

function sizes(p: string) {
  let s = sizeCache.get(p);
  if (s) return s;
  const t: TensorSource = openTensors(p);
  s = { linear: 0, other: 0, otherBytes: 0, sourceBytes: 0 };
  for (const n of t.names()) {
    const info = t.info(n);
    const count = info.shape.reduce((a, b) => a * b, 1);
    s.sourceBytes += info.byteLength;
    if (info.shape.length === 2 && count > 1 << 16) s.linear += count;
    else {
      s.other += count;
      s.otherBytes += info.byteLength;
    }
  }
  t.close();
  sizeCache.set(p, s);
  return s;
}

// int8/int4: the packed bits plus one float16 scale per block of 128.
const BYTES: Record<WeightFormat, number> = { fp8: 1, fp16: 2, fp32: 4, int8: 1 + 2 / 128, int4: 0.5 + 2 / 128 };

function estimate(parts: Record<'transformer' | 'textEncoder' | 'textEncoder2' | 'vae', string>, format: WeightFormat, c?: ComponentName): number {
  const of = (comp: ComponentName): number => {
    switch (comp) {
      case 'dit': {
        const s = sizes(parts.transformer);
        return s.linear * BYTES[format] + s.other * 4;
      }
      case 'clip':
        return sizes(parts.textEncoder).sourceBytes;
      case 't5':
        return sizes(parts.textEncoder2).sourceBytes;
      case 'vae':
        return sizes(parts.vae).sourceBytes;
    }
  };
  return c ? of(c) : of('dit') + of('clip') + of('t5') + of('vae');
}
