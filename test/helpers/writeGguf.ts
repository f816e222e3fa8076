// A small GGUF writer for tests, following the GGUF specification (version 3, little-endian):
// header, typed metadata, tensor infos with dims innermost first, padding to the alignment, data.
// And ggml's reference Q8_0 / Q4_0 quantizers, to build quantized files from float tensors.

import * as fs from 'node:fs';
import * as path from 'node:path';
import { f32ToF16 } from '../../src/inference/formats/dtypes';
import { openTensors } from '../../src/inference/formats/safetensors';
import { GOLDEN_MODELS } from './golden';

export type GgufMeta =
  | { type: 'u8' | 'i8' | 'u16' | 'i16' | 'u32' | 'i32' | 'f32' | 'f64'; value: number }
  | { type: 'u64' | 'i64'; value: bigint }
  | { type: 'bool'; value: boolean }
  | { type: 'string'; value: string }
  | { type: 'array'; of: 'u8' | 'i32' | 'f32' | 'string' | 'bool'; value: Array<number | string | boolean> };

const TYPE_IDS = { u8: 0, i8: 1, u16: 2, i16: 3, u32: 4, i32: 5, f32: 6, bool: 7, string: 8, array: 9, u64: 10, i64: 11, f64: 12 } as const;

/** GGUF ggml type ids. */
export const GGML = { F32: 0, F16: 1, Q4_0: 2, Q4_1: 3, Q5_0: 6, Q5_1: 7, Q8_0: 8, Q2_K: 10, Q3_K: 11, Q4_K: 12, Q5_K: 13, Q6_K: 14, IQ2_XXS: 16, BF16: 30 } as const;

export interface GgufTensor {
  name: string;
  /** PyTorch order (the writer reverses it). */
  shape: number[];
  type: number;
  data: Uint8Array;
}

function str(s: string): Buffer {
  const b = Buffer.from(s, 'utf8');
  const n = Buffer.alloc(8);
  n.writeBigUInt64LE(BigInt(b.length));
  return Buffer.concat([n, b]);
}

function scalar(type: Exclude<GgufMeta['type'], 'array'>, v: number | bigint | boolean | string): Buffer {
  const b = Buffer.alloc(8);
  switch (type) {
    case 'u8': b.writeUInt8(v as number); return b.subarray(0, 1);
    case 'i8': b.writeInt8(v as number); return b.subarray(0, 1);
    case 'u16': b.writeUInt16LE(v as number); return b.subarray(0, 2);
    case 'i16': b.writeInt16LE(v as number); return b.subarray(0, 2);
    case 'u32': b.writeUInt32LE(v as number); return b.subarray(0, 4);
    case 'i32': b.writeInt32LE(v as number); return b.subarray(0, 4);
    case 'f32': b.writeFloatLE(v as number); return b.subarray(0, 4);
    case 'f64': b.writeDoubleLE(v as number); return b;
    case 'u64': b.writeBigUInt64LE(v as bigint); return b;
    case 'i64': b.writeBigInt64LE(v as bigint); return b;
    case 'bool': return Buffer.of(v ? 1 : 0);
    case 'string': return str(v as string);
  }
}

function u32(v: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32LE(v);
  return b;
}

function u64(v: number | bigint): Buffer {
  const b = Buffer.alloc(8);
  b.writeBigUInt64LE(BigInt(v));
  return b;
}

/** The whole file as bytes. `alignment` is written as general.alignment when not 32. */
export function ggufBytes(tensors: GgufTensor[], metadata: Record<string, GgufMeta> = {}, alignment = 32): Buffer {
  const meta: Record<string, GgufMeta> = alignment === 32 ? { ...metadata } : { 'general.alignment': { type: 'u32', value: alignment }, ...metadata };
  const parts: Buffer[] = [Buffer.from('GGUF', 'latin1'), u32(3), u64(tensors.length), u64(Object.keys(meta).length)];
  for (const [k, m] of Object.entries(meta)) {
    parts.push(str(k), u32(TYPE_IDS[m.type]));
    if (m.type === 'array') {
      parts.push(u32(TYPE_IDS[m.of]), u64(m.value.length));
      for (const v of m.value) parts.push(scalar(m.of, v));
    } else {
      parts.push(scalar(m.type, m.value));
    }
  }
  let offset = 0;
  const offsets: number[] = [];
  for (const t of tensors) {
    offsets.push(offset);
    const dims = [...t.shape].reverse();
    parts.push(str(t.name), u32(dims.length), ...dims.map((d) => u64(d)), u32(t.type), u64(offset));
    offset = Math.ceil((offset + t.data.byteLength) / alignment) * alignment;
  }
  const head = Buffer.concat(parts);
  const dataStart = Math.ceil(head.length / alignment) * alignment;
  const out = Buffer.alloc(dataStart + (tensors.length ? offsets[offsets.length - 1] + tensors[tensors.length - 1].data.byteLength : 0));
  head.copy(out, 0);
  tensors.forEach((t, i) => out.set(t.data, dataStart + offsets[i]));
  return out;
}

export function writeGguf(file: string, tensors: GgufTensor[], metadata: Record<string, GgufMeta> = {}, alignment = 32): void {
  fs.writeFileSync(file, ggufBytes(tensors, metadata, alignment));
}

const half = (out: Uint8Array, at: number, x: number) => {
  const h = f32ToF16(x);
  out[at] = h & 255;
  out[at + 1] = h >> 8;
};

/** ggml's quantize_row_q8_0_ref: per block of 32, d = amax / 127, q = round(x / d). */
export function quantizeQ8_0(x: Float32Array): Uint8Array {
  const out = new Uint8Array((x.length / 32) * 34);
  for (let b = 0; b < x.length / 32; b++) {
    let amax = 0;
    for (let j = 0; j < 32; j++) amax = Math.max(amax, Math.abs(x[b * 32 + j]));
    const d = amax / 127;
    const id = d ? 1 / d : 0;
    half(out, b * 34, d);
    for (let j = 0; j < 32; j++) out[b * 34 + 2 + j] = Math.round(x[b * 32 + j] * id) & 255;
  }
  return out;
}

/** ggml's quantize_row_q4_0_ref: per block of 32, d = (signed max-magnitude value) / −8, q = x/d + 8 clamped to 15. */
export function quantizeQ4_0(x: Float32Array): Uint8Array {
  const out = new Uint8Array((x.length / 32) * 18);
  for (let b = 0; b < x.length / 32; b++) {
    let amax = 0;
    let max = 0;
    for (let j = 0; j < 32; j++) {
      const v = x[b * 32 + j];
      if (Math.abs(v) > amax) {
        amax = Math.abs(v);
        max = v;
      }
    }
    const d = max / -8;
    const id = d ? 1 / d : 0;
    half(out, b * 18, d);
    const q = (j: number) => Math.min(15, Math.trunc(x[b * 32 + j] * id + 8.5));
    for (let j = 0; j < 16; j++) out[b * 18 + 2 + j] = q(j) | (q(j + 16) << 4);
  }
  return out;
}

/** ggml's quantize_row_q4_1_ref: per block of 32, d = (max − min) / 15, m = min, q = (x − m)/d rounded, clamped to 15. */
export function quantizeQ4_1(x: Float32Array): Uint8Array {
  const out = new Uint8Array((x.length / 32) * 20);
  for (let b = 0; b < x.length / 32; b++) {
    let min = Infinity;
    let max = -Infinity;
    for (let j = 0; j < 32; j++) {
      min = Math.min(min, x[b * 32 + j]);
      max = Math.max(max, x[b * 32 + j]);
    }
    const d = (max - min) / 15;
    const id = d ? 1 / d : 0;
    half(out, b * 20, d);
    half(out, b * 20 + 2, min);
    const q = (j: number) => Math.min(15, Math.trunc((x[b * 32 + j] - min) * id + 0.5));
    for (let j = 0; j < 16; j++) out[b * 20 + 4 + j] = q(j) | (q(j + 16) << 4);
  }
  return out;
}

const QUANTIZERS = { Q8_0: quantizeQ8_0, Q4_0: quantizeQ4_0, Q4_1: quantizeQ4_1 };

/**
 * The golden tiny DiT as city96 lays out a FLUX GGUF: BFL names, Linear weights quantized, the
 * rest F32; its config sidecar beside it (`<name>.config.json`).
 */
export function writeQuantizedDit(file: string, type: keyof typeof QUANTIZERS): void {
  const src = openTensors(path.join(GOLDEN_MODELS, 'flux-tiny.safetensors'));
  const quantize = QUANTIZERS[type];
  writeGguf(file, src.names().map((name) => {
    const { shape } = src.info(name);
    const x = src.readF32(name);
    return shape.length === 2 ? { name, shape, type: GGML[type], data: quantize(x) } : { name, shape, type: GGML.F32, data: new Uint8Array(x.buffer) };
  }), { 'general.architecture': { type: 'string', value: 'flux' }, 'general.quantization_version': { type: 'u32', value: 2 } });
  fs.copyFileSync(path.join(GOLDEN_MODELS, 'flux-tiny.config.json'), file.replace(/\.gguf$/, '.config.json'));
  src.close();
}

/** transformers' T5EncoderModel names → llama.cpp's, for writing the golden tiny T5 as city96's T5 GGUFs are. */
function llamaT5Name(name: string): string {
  const top: Record<string, string> = { 'shared.weight': 'token_embd.weight', 'encoder.final_layer_norm.weight': 'enc.output_norm.weight' };
  if (top[name]) return top[name];
  const m = /^encoder\.block\.(\d+)\.(.+)$/.exec(name);
  const rest: Record<string, string> = {
    'layer.0.SelfAttention.q.weight': 'attn_q.weight', 'layer.0.SelfAttention.k.weight': 'attn_k.weight', 'layer.0.SelfAttention.v.weight': 'attn_v.weight',
    'layer.0.SelfAttention.o.weight': 'attn_o.weight', 'layer.0.SelfAttention.relative_attention_bias.weight': 'attn_rel_b.weight',
    'layer.0.layer_norm.weight': 'attn_norm.weight', 'layer.1.layer_norm.weight': 'ffn_norm.weight', 'layer.1.DenseReluDense.wi_0.weight': 'ffn_gate.weight',
    'layer.1.DenseReluDense.wi_1.weight': 'ffn_up.weight', 'layer.1.DenseReluDense.wo.weight': 'ffn_down.weight',
  };
  if (!m || !rest[m[2]]) throw new Error(`no llama.cpp name for ${name}`);
  return `enc.blk.${m[1]}.${rest[m[2]]}`;
}

/**
 * The golden tiny T5 encoder as a llama.cpp T5 encoder GGUF: 2-D weights (the embedding too) in
 * `type` where their rows are whole blocks of 32 (F16 otherwise, as llama.cpp falls back), norms
 * and the relative attention bias F32; architecture numbers in the metadata, no config file.
 */
export function writeT5Gguf(file: string, type: 'F32' | 'F16' | 'Q8_0' | 'Q4_0', metadata: Record<string, GgufMeta> = {}): void {
  const src = openTensors(path.join(GOLDEN_MODELS, 'text_encoder_2'));
  const f16 = (x: Float32Array) => {
    const out = new Uint8Array(x.length * 2);
    x.forEach((v, i) => half(out, i * 2, v));
    return out;
  };
  const tensors = src.names().map((name): GgufTensor => {
    const { shape } = src.info(name);
    const x = src.readF32(name);
    const llama = llamaT5Name(name);
    if (shape.length !== 2 || llama.endsWith('attn_rel_b.weight') || type === 'F32') return { name: llama, shape, type: GGML.F32, data: new Uint8Array(x.buffer) };
    if (type === 'F16' || shape[1] % 32 !== 0) return { name: llama, shape, type: GGML.F16, data: f16(x) };
    return { name: llama, shape, type: GGML[type], data: QUANTIZERS[type](x) };
  });
  const u32 = (value: number): GgufMeta => ({ type: 'u32', value });
  writeGguf(file, tensors, {
    'general.architecture': { type: 'string', value: 't5encoder' },
    't5encoder.context_length': u32(512), 't5encoder.embedding_length': u32(32), 't5encoder.feed_forward_length': u32(40), 't5encoder.block_count': u32(2),
    't5encoder.attention.head_count': u32(4), 't5encoder.attention.key_length': u32(8), 't5encoder.attention.value_length': u32(8),
    't5encoder.attention.layer_norm_rms_epsilon': { type: 'f32', value: 1e-6 }, 't5encoder.attention.relative_buckets_count': u32(32),
    ...metadata,
  });
  src.close();
}
