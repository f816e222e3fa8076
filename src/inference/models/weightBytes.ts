// The bytes each component's weights take in memory in each weight format, from tensor shapes
// and dtypes alone (safetensors/GGUF headers): the pipeline's pre-flight (modelFiles.residentBytes)
// and `Check Models` (memory.ts) share these numbers.
//
// Weights held (bytes), per component:
//   DiT   every Linear weight the graph keeps in the chosen format — a 2-D tensor of more than
//         INLINE_LIMIT bytes in the file, as onnx/weights.ts decides — at
//           fp8 n·k · 1, fp16 n·k · 2, fp32 n·k · 4,
//           int8/int4 n · ⌈k/32⌉ · (32·bits/8 + 2)   (MatMulNBits blocks of 32, WebGPU's, + one fp16
//           scale each; the CPU's blocks of 128 take slightly less);
//         every other tensor (biases, norm scales, the two small 2-D weights img_in / final linear)
//         inlined as float32: elements · 4. The fp8 per-row scales (4 bytes per output row, < 0.1 %)
//         are left out.
//   CLIP, T5, VAE   their bytes in the file: the CPU runs them from the memory-mapped file, GPUs hold
//         them as float16, the same size for FLUX.1's bf16 encoders (the VAE is used as it is).

import type { ComponentName, WeightFormat } from '../../shared/api';
import { DTYPE_BYTES, isDType } from '../formats/dtypes';
import { ggmlQuantBytes, isGgmlQuant, NATIVE_NBITS } from '../formats/ggml';
import { elementCount } from '../formats/safetensors';
import { nbitsBytes } from '../onnx/quant';
import type { ShapeSource, TensorShape } from './tensorShapes';

/** Tensors up to this many bytes are inlined in the graph in the compute type (onnx/weights.ts default). */
export const INLINE_LIMIT = 1 << 20;

const FLOAT_DTYPES = new Set(['F64', 'F32', 'F16', 'BF16', 'F8_E4M3', 'F8_E5M2']);

export function isFloatDtype(dtype: string): boolean {
  return FLOAT_DTYPES.has(dtype);
}

export function elements(t: { shape: readonly number[] }): number {
  return elementCount(t.shape);
}

/** Bytes of a tensor in its file dtype (0 for a dtype this reader does not know). */
export function tensorBytes(t: TensorShape): number {
  if (isGgmlQuant(t.dtype)) return ggmlQuantBytes(t.dtype, elements(t));
  return isDType(t.dtype) ? elements(t) * DTYPE_BYTES[t.dtype] : 0;
}

/** A Linear weight the DiT graph keeps in the chosen format (2-D, over the inline limit in its file dtype). */
export function isHeldLinear(t: TensorShape): boolean {
  return t.shape.length === 2 && tensorBytes(t) > INLINE_LIMIT;
}

/** Bytes of one [n, k] Linear weight held in `format`. */
export function linearBytes(n: number, k: number, format: WeightFormat): number {
  switch (format) {
    case 'fp8':
      return n * k;
    case 'fp16':
      return 2 * n * k;
    case 'fp32':
      return 4 * n * k;
    // Blocks of 32 (WebGPU's, OpChoices.nbitsBlock): the larger scale overhead, so the estimate holds for 128 too.
    case 'int8':
      return nbitsBytes(n, k, 8, 32);
    case 'int4':
      return nbitsBytes(n, k, 4, 32);
  }
}

/** The DiT's weights held in `format`: Linear weights in the format, everything else float32. */
export function ditWeightBytes(shapes: ShapeSource, format: WeightFormat): number {
  let total = 0;
  for (const t of shapes) total += isHeldLinear(t) ? heldLinearBytes(t, format) : elements(t) * 4;
  return total;
}

/** GGUF quantized Linears are MatMulNBits blocks of 32 whatever the format (onnx/weights.ts nbitsFor). */
function heldLinearBytes(t: TensorShape, format: WeightFormat): number {
  const [n, k] = t.shape;
  return isGgmlQuant(t.dtype) ? nbitsBytes(n, k, NATIVE_NBITS[t.dtype] ?? 8, 32) : linearBytes(n, k, format);
}

/** Sum of the tensors' bytes in their file dtypes. */
export function sourceBytes(shapes: ShapeSource): number {
  return shapes.reduce((a, t) => a + tensorBytes(t), 0);
}

/** Bytes a component's weights take in memory with this DiT weight format (only the DiT depends on it). */
export function componentWeightBytes(shapes: ShapeSource, component: ComponentName, format: WeightFormat): number {
  return component === 'dit' ? ditWeightBytes(shapes, format) : sourceBytes(shapes);
}
