// A LoRA's text-encoder (CLIP) pairs merged into the encoder's weights: W += strength · (α/r) · B·A
// in float32. CLIP-L is small (123 M weights), so its session is simply built again with the merged
// weights inlined whenever the set of CLIP LoRAs or their strengths change; the DiT instead keeps
// its weights and takes LoRAs as branches (graphs/ditLora.ts).

import { UserError } from '../../shared/api';
import { toFloat32 } from './dtypes';
import { LoraFile, underscored } from './lora';
import { TensorInfo, TensorSource } from './safetensors';

/** The encoder's Linear weight names (`….weight`) under every name a LoRA may give them. */
function clipPlaces(src: TensorSource): Map<string, string> {
  const out = new Map<string, string>();
  for (const n of src.names()) {
    if (!n.endsWith('.weight') || src.info(n).shape.length !== 2 || /embedding/.test(n)) continue;
    const stem = n.slice(0, -'.weight'.length);
    // With or without HF's `text_model.` prefix, whichever the checkpoint and the LoRA use.
    const bare = stem.replace(/^text_model\./, '');
    for (const name of [bare, `text_model.${bare}`]) {
      out.set(name, n);
      out.set(underscored(name), n);
    }
  }
  return out;
}

export interface TextLoraResult {
  /** Weight name → delta [out, in], strengths and α/r applied. */
  deltas: Map<string, Float32Array>;
  /** Per file (path): pairs merged, and CLIP keys that match no weight of this encoder. */
  applied: Map<string, number>;
  skipped: Map<string, string[]>;
}

/** The summed CLIP deltas of these LoRAs for this encoder. A pair of the wrong shape is a UserError (a LoRA for another model). */
export function clipDeltas(loras: ReadonlyArray<{ file: LoraFile; strength: number }>, src: TensorSource): TextLoraResult {
  const where = clipPlaces(src);
  const deltas = new Map<string, Float32Array>();
  const applied = new Map<string, number>();
  const skipped = new Map<string, string[]>();
  for (const { file, strength } of loras) {
    for (const pair of file.pairs) {
      if (pair.target !== 'clip') continue;
      const weight = where.get(pair.module);
      if (!weight) {
        skipped.set(file.path, [...(skipped.get(file.path) ?? []), pair.key]);
        continue;
      }
      const [out, inFeatures] = src.info(weight).shape;
      if (pair.outFeatures !== out || pair.inFeatures !== inFeatures) {
        throw new UserError(`The LoRA ${file.path} does not fit this model's CLIP text encoder: "${pair.key}" changes a layer of shape [${pair.outFeatures}, ${pair.inFeatures}] where ${weight} has [${out}, ${inFeatures}].`);
      }
      const d = deltas.get(weight) ?? new Float32Array(out * inFeatures);
      const s = strength * pair.scale;
      const r = pair.rank;
      for (let o = 0; o < out; o++) {
        for (let j = 0; j < r; j++) {
          const u = s * pair.up[o * r + j];
          if (u === 0) continue;
          const row = o * inFeatures;
          const a = j * inFeatures;
          for (let i = 0; i < inFeatures; i++) d[row + i] += u * pair.down[a + i];
        }
      }
      deltas.set(weight, d);
      applied.set(file.path, (applied.get(file.path) ?? 0) + 1);
    }
  }
  return { deltas, applied, skipped };
}

/**
 * The encoder's tensors with deltas added: a merged weight is served as float32 bytes that exist
 * only in memory (`decoded`), so Weights inlines or copies it and never maps the file's bytes.
 * Build with an inline limit above the largest merged weight (no weight cache: its key would not
 * see the LoRA).
 */
export class MergedTensors implements TensorSource {
  constructor(private readonly inner: TensorSource, private readonly deltas: ReadonlyMap<string, Float32Array>) {}

  get path(): string {
    return this.inner.path;
  }

  names(): string[] {
    return this.inner.names();
  }

  has(name: string): boolean {
    return this.inner.has(name);
  }

  info(name: string): TensorInfo {
    const t = this.inner.info(name);
    return this.deltas.has(name) ? { ...t, dtype: 'F32', byteLength: t.shape.reduce((a, b) => a * b, 1) * 4, decoded: true } : t;
  }

  readBytes(name: string): Buffer {
    const d = this.deltas.get(name);
    if (!d) return this.inner.readBytes(name);
    const w = this.merged(name, d);
    return Buffer.from(w.buffer, w.byteOffset, w.byteLength);
  }

  readF32(name: string): Float32Array {
    const d = this.deltas.get(name);
    return d ? this.merged(name, d) : this.inner.readF32(name);
  }

  readF16(name: string): Uint16Array {
    if (this.deltas.has(name)) throw new Error(`${name}: a LoRA-merged weight is read as float32`);
    return this.inner.readF16(name);
  }

  close(): void {
    this.inner.close();
  }

  private merged(name: string, delta: Float32Array): Float32Array {
    const t = this.inner.info(name);
    const w = toFloat32(this.inner.readBytes(name), t.dtype);
    // An fp8 weight's own scale (`<name>_scale`) is part of its value.
    const scale = t.dtype.startsWith('F8') && this.inner.has(`${name}_scale`) ? this.inner.readF32(`${name}_scale`) : undefined;
    const cols = t.shape[1];
    for (let i = 0; i < w.length; i++) w[i] = (scale ? w[i] * scale[scale.length > 1 ? Math.floor(i / cols) : 0] : w[i]) + delta[i];
    return w;
  }
}
