// What a Weights build and its WeightCache agree on: the options (which also key the cache), and
// the small facts about source tensors both sides read (element types, fp8 scales, MatMulNBits blocks).

import type { ComputeType, DitTuning, WeightFormat } from '../../shared/api';
import { TensorDType } from '../formats/dtypes';
import { isGgmlQuant, NATIVE_NBITS } from '../formats/ggml';
import { TensorInfo, TensorSource } from '../formats/safetensors';
import { ElemType } from './proto';
import { NBits, NBITS_BLOCK } from './quant';

export interface WeightOptions {
  /** How Linear weights are held in memory. */
  format: WeightFormat;
  /** Element type of activations (float32 on CPU). */
  compute?: ComputeType;
  /** Tensors up to this many bytes are converted and inlined in the model. */
  inlineLimit?: number;
  /** Folder for converted-weight caches (required when a conversion to fp8 is needed). */
  cacheDir?: string;
  /** Scale granularity when quantizing to fp8 (default per-channel). */
  fp8Scale?: 'per-tensor' | 'per-channel';
  /**
   * How fp8 weights become floats at run time. `dequantize`: DequantizeLinear (CUDA runs it in
   * parallel). `lookup`: the same bytes read two at a time as uint16, Cast to int32 and Gathered
   * from one shared table of the 65,536 decoded pairs (512 KB), then multiplied by per-row scales
   * (a single scale ≠ 1 is folded into a 256-entry table of single codes instead):
   * bit-identical, and on the CPU provider far faster (onnxruntime's CPU
   * DequantizeLinear for float8 runs on one thread; Cast and Gather use all of them; per Linear on
   * 2 cores: DequantizeLinear 1.40 s, 256-entry table 1.01 s, pair table 0.75 s). `words`: for
   * providers without 8- or 16-bit integer data (WebGPU): the same bytes read four at a time as
   * int32, split into codes by integer division (decodeFp8Words), then the same 256-entry table:
   * bit-identical, 1 byte per weight, all on the GPU. `gather`: com.microsoft GatherBlockQuantized
   * over every row of the float8 bytes (onnxruntime ≥ 1.31 has it on WebGPU), the scale as its
   * per-row or broadcast block scale: bit-identical, one kernel per weight. Default `dequantize`.
   */
  fp8Decode?: Fp8Decode;
  /** int8/int4: a zero point per block (min/max) instead of symmetric blocks (default false). */
  zeroPoints?: boolean;
  /**
   * int8/int4: MatMulNBits' accuracy_level 4, which quantizes the activations to int8 per block and
   * multiplies in integers (VNNI / AMX on x86 CPUs). One Linear [1024 × 3072] · [3072 × 12288]ᵀ
   * on 2 cores: 1.46 s → 0.66 s for int8 weights, at 3.9e-3 relative difference.
   */
  int8Activations?: boolean;
  /** int8/int4: elements per MatMulNBits block along K (default NBITS_BLOCK; the best per provider is in OpChoices). */
  nbitsBlock?: number;
  /** int8/int4: the Linear's bias as MatMulNBits' input 5 (added inside its kernel) instead of an Add node after it. */
  nbitsBias?: boolean;
  /**
   * fp16 from another dtype: convert once into the cache file, which onnxruntime memory-maps,
   * instead of a Cast folded at session creation (which holds every converted weight in RAM while
   * the session loads: FLUX.1's 24 GB took minutes on a GPU host). Stored transposed, [in, out],
   * for a plain MatMul: WebGPU's Gemm(transB) measured 1.6× slower than its MatMul.
   */
  fp16Cache?: boolean;
  /**
   * int8/int4 without zeroPoints: give MatMulNBits the default zero points (2^(bits−1)) as an
   * explicit input. DirectML's MatMulNBits dequantizes with no zero-point input as zero point 0
   * (DmlOperatorMatMulNBits.cpp), unlike the op's definition; the same math on every provider.
   */
  explicitZeroPoints?: boolean;
}

export const NBITS: Partial<Record<WeightFormat, NBits>> = { int8: 8, int4: 4 };

export type Fp8Decode = NonNullable<DitTuning['fp8Decode']>;

export const SOURCE_ELEM: Partial<Record<TensorDType, ElemType>> = {
  F32: 'float32', F16: 'float16', BF16: 'bfloat16', F8_E4M3: 'float8e4m3fn', F8_E5M2: 'float8e5m2', I64: 'int64', U8: 'uint8', I8: 'int8',
};

export type Fp8DType = 'F8_E4M3' | 'F8_E5M2';

export function isFp8(d: TensorDType): d is Fp8DType {
  return d === 'F8_E4M3' || d === 'F8_E5M2';
}

/**
 * An fp8 tensor's dequantization scale, one value or one per row: `<name>_scale` (a ComfyUI
 * `scale_weight` is served under this name, formats/layouts/scaledFp8.ts). Every path that turns
 * the codes into numbers multiplies by it.
 */
export function fp8ScaleOf(src: TensorSource, name: string): Float32Array | undefined {
  return src.info(name).dtype.startsWith('F8') && src.has(`${name}_scale`) ? src.readF32(`${name}_scale`) : undefined;
}

export function elemOf(t: TensorInfo): ElemType {
  const e = SOURCE_ELEM[t.dtype];
  if (!e) throw new Error(`${t.file}: tensor "${t.name}" has dtype ${t.dtype}, which cannot be used as ${isGgmlQuant(t.dtype) ? 'anything but a Linear weight (it is too large to decode into the model)' : 'a weight'}`);
  return e;
}

export interface NBitsChoice {
  bits: NBits;
  block: number;
}

/**
 * How a Linear weight is held as MatMulNBits blocks, or undefined when it is not: a GGUF
 * block-quantized tensor always is (see the header comment), others when the format is int8/int4.
 */
export function nbitsFor(t: TensorInfo, opts: WeightOptions): NBitsChoice | undefined {
  if (isGgmlQuant(t.dtype)) return { bits: NATIVE_NBITS[t.dtype] ?? 8, block: GGUF_NBITS_BLOCK };
  const bits = NBITS[opts.format];
  return bits ? { bits, block: opts.nbitsBlock ?? NBITS_BLOCK } : undefined;
}

/** The block of Q8_0/Q4_0 and of what other GGUF types are re-quantized to. */
export const GGUF_NBITS_BLOCK = 32;
