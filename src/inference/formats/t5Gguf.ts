// A T5 encoder GGUF (llama.cpp's names, as city96 ships FLUX's T5-XXL: `enc.blk.N.attn_q.weight`…)
// served under transformers' T5EncoderModel names, so layout detection, configs and graphs/t5.ts
// read it as they read a safetensors T5.
//
// Linear weights keep their GGUF type: Q8_0/Q4_0 run as MatMulNBits blocks like the GGUF DiT's
// (onnx/weights.ts nbitsFor), F16/F32 as stored. Other quantized tensors (the embedding table,
// which Gather reads, and any quantized norm or bias table) are served decoded exactly to float32:
// readBytes returns the decoded bytes and info says F32 with `decoded` set, so onnx/weights.ts
// copies them into its cache instead of pointing onnxruntime at the file's quantized bytes.

import { GgufError, GgufFile, GgufValue } from './gguf';
import { isGgmlQuant } from './ggml';
import { RenamedTensors } from './renamedTensors';
import { TensorInfo } from './safetensorsHeader';
import { TensorSource } from './tensorReader';

const ATTN = 'layer.0.SelfAttention';
const FFN = 'layer.1.DenseReluDense';

/** llama.cpp's per-block T5 encoder names → transformers' (after `encoder.block.N.`). */
const BLOCK_NAMES: Record<string, string> = {
  'attn_q.weight': `${ATTN}.q.weight`,
  'attn_k.weight': `${ATTN}.k.weight`,
  'attn_v.weight': `${ATTN}.v.weight`,
  'attn_o.weight': `${ATTN}.o.weight`,
  'attn_rel_b.weight': `${ATTN}.relative_attention_bias.weight`,
  'attn_norm.weight': 'layer.0.layer_norm.weight',
  'ffn_norm.weight': 'layer.1.layer_norm.weight',
  'ffn_gate.weight': `${FFN}.wi_0.weight`,
  'ffn_up.weight': `${FFN}.wi_1.weight`,
  'ffn_down.weight': `${FFN}.wo.weight`,
};

const TOP_NAMES: Record<string, string> = { 'token_embd.weight': 'shared.weight', 'enc.output_norm.weight': 'encoder.final_layer_norm.weight' };

/** transformers' name of a llama.cpp T5 encoder tensor, or undefined (decoder and unknown tensors keep theirs). */
export function hfT5Name(name: string): string | undefined {
  if (TOP_NAMES[name]) return TOP_NAMES[name];
  const m = /^enc\.blk\.(\d+)\.(.+)$/.exec(name);
  const rest = m && BLOCK_NAMES[m[2]];
  // Only block 0 holds the relative attention bias in transformers' naming (llama.cpp may write one per block).
  if (!rest || (m[2] === 'attn_rel_b.weight' && m[1] !== '0')) return undefined;
  return `encoder.block.${m[1]}.${rest}`;
}

/** Is this GGUF a T5 encoder in llama.cpp's names? */
export function isT5Gguf(names: string[]): boolean {
  return names.some((n) => /^enc\.blk\.\d+\.attn_q\.weight$/.test(n));
}

/** A 2-D weight that graphs/t5.ts runs as a Linear (so MatMulNBits may read its blocks). */
const isLinear = (hf: string) => /\.(q|k|v|o|wi_0|wi_1|wi|wo)\.weight$/.test(hf);

class T5GgufTensors extends RenamedTensors {
  private readonly byHf = new Map<string, string>();

  constructor(file: GgufFile) {
    super(file);
    for (const n of file.names()) {
      const hf = hfT5Name(n);
      if (hf) this.byHf.set(hf, n);
      else if (!n.startsWith('enc.')) this.byHf.set(n, n);
    }
    checkMetadata(file, this);
  }

  names(): string[] {
    return [...this.byHf.keys()];
  }

  has(name: string): boolean {
    return this.byHf.has(name);
  }

  protected innerName(name: string): string {
    const n = this.byHf.get(name);
    if (!n) throw new GgufError(this.inner.path, `no tensor for "${name}" (a T5 encoder GGUF names it in llama.cpp's scheme, e.g. enc.blk.0.attn_q.weight)`);
    return n;
  }

  private decodes(name: string, t: TensorInfo): boolean {
    return isGgmlQuant(t.dtype) && !isLinear(name);
  }

  override info(name: string): TensorInfo {
    const t = this.inner.info(this.innerName(name));
    if (!this.decodes(name, t)) return { ...t, name };
    const elements = t.shape.reduce((a, b) => a * b, 1);
    return { ...t, name, dtype: 'F32', byteLength: elements * 4, decoded: true };
  }

  override readBytes(name: string): Buffer {
    const t = this.inner.info(this.innerName(name));
    if (!this.decodes(name, t)) return this.inner.readBytes(t.name);
    const f = this.inner.readF32(t.name);
    return Buffer.from(f.buffer, f.byteOffset, f.byteLength);
  }
}

/**
 * The architecture metadata must agree with the tensors: a file whose numbers disagree was
 * converted wrongly, and running it would give a wrong image without an error.
 */
function checkMetadata(file: GgufFile, src: T5GgufTensors): void {
  const arch = file.metadata.get('general.architecture');
  if (arch !== undefined && arch !== 't5encoder' && arch !== 't5') {
    throw new GgufError(file.path, `has T5 encoder tensor names (enc.blk.N…) but general.architecture is ${JSON.stringify(arch)}, not "t5encoder" or "t5": the file is mislabelled or corrupt`);
  }
  const num = (key: string): number | undefined => {
    const v: GgufValue | undefined = file.metadata.get(`${arch ?? 't5encoder'}.${key}`);
    return typeof v === 'number' ? v : undefined;
  };
  const shape = (n: string) => (src.has(n) ? src.info(n).shape : undefined);
  const bias = shape(`encoder.block.0.${ATTN}.relative_attention_bias.weight`);
  let blocks = 0;
  while (src.has(`encoder.block.${blocks}.${ATTN}.q.weight`)) blocks++;
  const measured: Array<[string, number | undefined]> = [
    ['embedding_length', shape('shared.weight')?.[1]],
    ['block_count', blocks],
    ['feed_forward_length', shape(`encoder.block.0.${FFN}.wi_0.weight`)?.[0]],
    ['attention.head_count', bias?.[1]],
    ['attention.relative_buckets_count', bias?.[0]],
  ];
  // The graph takes T5's epsilon 1e-6 (configs, graphs/t5.ts); a file saying otherwise would be run wrongly.
  const eps = num('attention.layer_norm_rms_epsilon');
  if (eps !== undefined && Math.abs(eps - 1e-6) > 1e-12) {
    throw new GgufError(file.path, `metadata "${arch ?? 't5encoder'}.attention.layer_norm_rms_epsilon" is ${eps}; MajicFLUX runs T5 encoder GGUFs with T5's 1e-6 only: use the safetensors encoder with its config.json`);
  }
  for (const [key, seen] of measured) {
    const said = num(key);
    if (said !== undefined && seen !== undefined && said !== seen) {
      throw new GgufError(file.path, `metadata "${arch ?? 't5encoder'}.${key}" says ${said} but the tensors give ${seen}: the file was converted wrongly or is corrupt — download it again`);
    }
  }
}

/** The source as MajicFLUX names it: a llama.cpp T5 encoder GGUF under transformers' names, any other file unchanged. */
export function servedGguf(file: GgufFile): TensorSource {
  return isT5Gguf(file.names()) ? new T5GgufTensors(file) : file;
}
