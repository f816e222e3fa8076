// Checkpoints in the formats people download, built from the golden tiny model's files: ComfyUI /
// Forge all-in-one files (every component under its prefix) and ComfyUI's scaled fp8.

import * as fs from 'node:fs';
import * as path from 'node:path';
import { DType, f32ToE4M3, f32ToF16, toFloat32 } from '../../src/inference/formats/dtypes';
import { openTensors, TensorSource } from '../../src/inference/formats/safetensors';
import { TensorSpec, writeSafetensors } from '../../src/inference/formats/safetensorsWriter';
import { GOLDEN_MODELS } from './golden';

/** ComfyUI's names for each part of an all-in-one checkpoint. */
export const COMFY_PREFIXES = {
  dit: 'model.diffusion_model.',
  vae: 'vae.',
  clip: 'text_encoders.clip_l.transformer.',
  t5: 'text_encoders.t5xxl.transformer.',
} as const;

/** Every tensor of `src`, renamed. */
export function specsOf(src: TensorSource, rename: (name: string) => string = (n) => n): TensorSpec[] {
  return src.names().map((n) => ({ name: rename(n), dtype: src.info(n).dtype, shape: src.info(n).shape, bytes: () => src.readBytes(n) }));
}

/**
 * The golden model as one all-in-one file with ComfyUI's prefixes: `dit` is a file in the golden
 * models folder (the BFL DiT, bf16 or fp8), the VAE is ae.safetensors (LDM names), the text
 * encoders transformers' names.
 */
export function writeAllInOne(file: string, dit = 'flux-tiny-fp8.safetensors', extra: TensorSpec[] = []): string {
  const parts: Array<[string, string]> = [
    [dit, COMFY_PREFIXES.dit],
    ['ae.safetensors', COMFY_PREFIXES.vae],
    ['text_encoder/model.safetensors', COMFY_PREFIXES.clip],
    ['text_encoder_2/model.safetensors.index.json', COMFY_PREFIXES.t5],
  ];
  const specs = parts.flatMap(([f, prefix]) => specsOf(openTensors(path.join(GOLDEN_MODELS, f)), (n) => prefix + n));
  writeSafetensors(file, [...specs, ...extra]);
  return file;
}

/**
 * `src` in ComfyUI's scaled fp8: every 2-D float weight stored as F8_E4M3 codes of weight / scale
 * with a float32 `X.scale_weight` beside it (a different power-of-two-free scale per tensor, so a
 * reader that ignores the scales is far off), plus the `scaled_fp8` marker. Returns the specs and,
 * per weight, the values a correct reader must compute with (codes × scale, rounded to float32).
 */
export function scaledFp8Specs(src: TensorSource): { specs: TensorSpec[]; dequantized: Map<string, Float32Array> } {
  const specs: TensorSpec[] = [{ name: 'scaled_fp8', dtype: 'F8_E4M3', shape: [0], bytes: () => new Uint8Array(0) }];
  const dequantized = new Map<string, Float32Array>();
  let i = 0;
  for (const n of src.names()) {
    const t = src.info(n);
    if (t.shape.length !== 2 || !n.endsWith('.weight') || !['BF16', 'F16', 'F32', 'F8_E4M3'].includes(t.dtype)) {
      specs.push({ name: n, dtype: t.dtype, shape: t.shape, bytes: () => src.readBytes(n) });
      continue;
    }
    const x = toFloat32(src.readBytes(n), t.dtype as DType);
    let amax = 0;
    for (const v of x) amax = Math.max(amax, Math.abs(v));
    // Codes reach about 300 of fp8's 448, times a factor that differs per tensor.
    const scale = Math.fround((amax || 1) / (300 * (1 + 0.37 * (i++ % 3))));
    const codes = Uint8Array.from(x, (v) => f32ToE4M3(v / scale));
    dequantized.set(n, Float32Array.from(toFloat32(codes, 'F8_E4M3'), (c) => Math.fround(c * scale)));
    specs.push({ name: n, dtype: 'F8_E4M3', shape: t.shape, bytes: () => codes });
    specs.push({ name: n.replace(/\.weight$/, '.scale_weight'), dtype: 'F32', shape: [], bytes: () => new Uint8Array(Float32Array.of(scale).buffer) });
  }
  return { specs, dequantized };
}

/**
 * The sidecar a tiny all-in-one file needs: its DiT's FluxParams at the top, the other components'
 * configs in sections named like a model folder's subfolders (the real FLUX.1 numbers need none).
 */
export function allInOneSidecar(file: string, withSections = true): string {
  const read = (f: string) => JSON.parse(fs.readFileSync(path.join(GOLDEN_MODELS, f), 'utf8'));
  const sections = withSections ? { vae: read('ae.config.json'), text_encoder: read('text_encoder/config.json'), text_encoder_2: read('text_encoder_2/config.json') } : {};
  const sidecar = file.replace(/\.safetensors$/, '.config.json');
  fs.writeFileSync(sidecar, JSON.stringify({ ...read('flux-tiny.config.json'), ...sections }, null, 1));
  return sidecar;
}

/** float8 e5m2 code of x (the top byte of its half, rounded to nearest even; x within e5m2's range). */
export function f32ToE5M2(x: number): number {
  const h = f32ToF16(x);
  return (h + 0x7f + ((h >> 8) & 1)) >> 8;
}

/**
 * `src` with every 2-D `.weight` stored as `dtype`, and the same file with those weights as the
 * float32 values the stored ones decode to (the reference a correct reader computes with).
 */
export function recastSpecs(src: TensorSource, dtype: 'F8_E5M2' | 'F16' | 'F32'): { specs: TensorSpec[]; reference: TensorSpec[] } {
  const specs: TensorSpec[] = [];
  const reference: TensorSpec[] = [];
  for (const n of src.names()) {
    const t = src.info(n);
    if (t.shape.length !== 2 || !n.endsWith('.weight')) {
      const same = { name: n, dtype: t.dtype, shape: t.shape, bytes: () => src.readBytes(n) };
      specs.push(same);
      reference.push(same);
      continue;
    }
    const x = () => toFloat32(src.readBytes(n), t.dtype);
    const stored = (): Uint8Array => {
      if (dtype === 'F32') return new Uint8Array(x().buffer);
      if (dtype === 'F16') return new Uint8Array(Uint16Array.from(x(), f32ToF16).buffer);
      return Uint8Array.from(x(), f32ToE5M2);
    };
    specs.push({ name: n, dtype, shape: t.shape, bytes: stored });
    reference.push({ name: n, dtype: 'F32', shape: t.shape, bytes: () => new Uint8Array(toFloat32(stored(), dtype).buffer) });
  }
  return { specs, reference };
}
