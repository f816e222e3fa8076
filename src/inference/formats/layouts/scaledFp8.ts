// ComfyUI's "scaled fp8" checkpoints: each fp8 Linear weight `X.weight` has a float32
// `X.scale_weight` (the value to multiply the decoded codes by), and a `scaled_fp8` marker tensor
// says the file is one. onnx/weights.ts applies a tensor `X.weight_scale` on every decode path
// (folded into the fp8 decode's scale, so the weights stay 1 byte); this view serves ComfyUI's
// scales under that name and refuses what it cannot apply.

import { RenamedTensors } from '../renamedTensors';
import { TensorSource } from '../safetensors';
import { LayoutError } from './detect';

const MARKER = 'scaled_fp8';
const SCALE = /^(.*)\.scale_weight$/;
const INPUT_SCALE = /\.scale_input$/;

class ScaledFp8Tensors extends RenamedTensors {
  /** Served name (`X.weight_scale`) → file name (`X.scale_weight`). */
  private readonly renamed = new Map<string, string>();
  private readonly hidden = new Set<string>();

  constructor(inner: TensorSource) {
    super(inner);
    const names = inner.names();
    const inputScales = names.filter((n) => INPUT_SCALE.test(n));
    if (inputScales.length) {
      throw new LayoutError(inner.path, `has ${inputScales.length} input scale${inputScales.length > 1 ? 's' : ''} ("${inputScales[0]}"${inputScales.length > 1 ? ', …' : ''}), ComfyUI's fp8 format for fp8 matrix products, which MajicFLUX does not read. Use the checkpoint without input scales (the plain or weight-scaled fp8 file) or its bf16 original`);
    }
    for (const n of names) {
      const m = SCALE.exec(n);
      if (!m) continue;
      const weight = `${m[1]}.weight`;
      const w = inner.has(weight) ? inner.info(weight) : undefined;
      const s = inner.info(n);
      if (!w || !w.dtype.startsWith('F8')) throw new LayoutError(inner.path, `"${n}" scales ${w ? `a ${w.dtype} weight` : `"${weight}", which the file lacks`}: only fp8 weights carry a scale_weight — the checkpoint is damaged or in an unknown format`);
      const values = s.shape.reduce((a, b) => a * b, 1);
      if (!['F32', 'F16', 'BF16'].includes(s.dtype) || (values !== 1 && values !== w.shape[0])) {
        throw new LayoutError(inner.path, `"${n}" is ${s.dtype} ${JSON.stringify(s.shape)}; a weight scale is one float per tensor (or per row of "${weight}")`);
      }
      if (inner.has(`${weight}_scale`)) throw new LayoutError(inner.path, `"${weight}" has two scales, "${n}" and "${weight}_scale": the file mixes two fp8 formats`);
      this.renamed.set(`${weight}_scale`, n);
      this.hidden.add(n);
    }
    if (inner.has(MARKER)) this.hidden.add(MARKER);
  }

  names(): string[] {
    return [...this.inner.names().filter((n) => !this.hidden.has(n)), ...this.renamed.keys()];
  }

  has(name: string): boolean {
    return this.renamed.has(name) || (!this.hidden.has(name) && this.inner.has(name));
  }

  protected innerName(name: string): string {
    return this.renamed.get(name) ?? (this.hidden.has(name) ? `\0${name}` : name);
  }
}

/** The source with ComfyUI's weight scales served as `X.weight_scale`; the source itself when it has none. */
export function withWeightScales(source: TensorSource): TensorSource {
  return source.names().some((n) => n === MARKER || SCALE.test(n) || INPUT_SCALE.test(n)) ? new ScaledFp8Tensors(source) : source;
}
