// How checkpoint tensors become graph initializers.
//
// Rules, in order of preference:
//  * Small tensors (biases, norms) are converted to the compute type and inlined in the model.
//  * Large tensors stay in the user's file in their own dtype (onnxruntime memory-maps it) and are
//    converted at run time, one layer at a time, just before use.
//  * When the chosen weight format differs from the file's (e.g. fp8 from a bf16 checkpoint), the
//    converted bytes go to a cache file keyed by the source files' identity and the options.
//  * int8/int4 (for GPUs without a float8 DequantizeLinear) are blocks (32 or 128) for
//    com.microsoft.MatMulNBits, which reads them packed: no float copy exists at any time
//    (quant.ts). Weights.prefill builds those caches on all cores before a graph is built.
//  * GGUF block-quantized Linear weights are MatMulNBits blocks of 32 whatever the format: Q8_0
//    and Q4_0 bit for bit (8 and 4 bits), the other types decoded exactly and re-quantized to int8.
//    Block 32 on every provider, the CPU included (whose own default is 128): the file's blocks
//    are 32 wide, and merging four scales into one would change the values.
//
// "Just before use" needs care: onnxruntime constant-folds any node whose inputs are all
// initializers (a Cast of a 12 GB fp8 weight becomes 48 GB of fp32 at session creation), and it
// may run every independent DequantizeLinear before the first MatMul, holding all layers
// dequantized at once. So every run-time conversion takes its shape through a `gate`: an empty
// int64 tensor computed from an activation's data (Slice(0:0) → Cast). It is never constant, and
// it orders the conversion after that activation. Give each weight a gate of its own, from the
// output of the layer before it: independent conversions sharing one gate all run before the
// first of their MatMuls (measured: a block of 8 weights held 8 dequantized copies at once).

import * as path from 'node:path';
import type { ComputeType, WeightFormat } from '../../shared/api';
import { E4M3_TO_F32, E5M2_TO_F32, float32ToF16Bits, toFloat32 } from '../formats/dtypes';
import { isGgmlQuant } from '../formats/ggml';
import { TensorInfo, TensorSource } from '../formats/safetensors';
import { bytesOf, Graph, Value } from './graph';
import { ElemType } from './proto';
import { rowCount } from '../formats/layouts/pieces';
import { blocksPerRow, midZeroPoints, NBits, NBITS_BLOCK, nbitsAttrs, scaled } from './quant';
import { QuantPool } from './quantPool';
import { CacheEntry, quantJob, WeightCache } from './weightCache';
import { elemOf, Fp8DType, fp8ScaleOf, isFp8, NBITS, nbitsFor, SOURCE_ELEM, WeightOptions } from './weightOptions';

export type { ComputeType, WeightFormat };

/**
 * Builds initializers for one graph from one tensor source. Call `folder()` after the graph is
 * built: it is the external-data folder to give onnxruntime.
 */
export class Weights {
  private readonly inlineLimit: number;
  /** The fp8 decode tables of `lookup`, one per graph. */
  private readonly pairTables = new Map<Fp8DType, Value>();
  private readonly codeTables = new Map<string, Value>();
  /** fp8 `gather`: the row indices 0…N−1, one constant per row count. */
  private readonly rowIds = new Map<number, Value>();
  /** explicitZeroPoints: one constant per (rows, bytes per row, bits). */
  private readonly defaultZeroPoints = new Map<string, Value>();
  private readonly compute: ComputeType;
  private readonly cache?: WeightCache;

  constructor(readonly g: Graph, readonly src: TensorSource, readonly opts: WeightOptions, linearNames: string[] = []) {
    this.inlineLimit = opts.inlineLimit ?? 1 << 20;
    this.compute = opts.compute ?? 'float32';
    if (Weights.needsCache(src, opts, linearNames)) {
      const gguf = linearNames.some((n) => isGgmlQuant(src.info(n).dtype)) || src.names().some((n) => src.info(n).decoded);
      if (!opts.cacheDir) throw new Error(`${gguf ? 'GGUF quantized weights (MatMulNBits blocks)' : `converting weights to ${opts.format}`} need${gguf ? '' : 's'} a cache folder (cacheDir)`);
      this.cache = WeightCache.open(opts.cacheDir, src, opts);
    }
  }

  /** Whether these options convert some of `linearNames` into a cache file. */
  static needsCache(src: TensorSource, opts: WeightOptions, linearNames: string[]): boolean {
    const large = linearNames.filter((n) => src.info(n).byteLength > (opts.inlineLimit ?? 1 << 20));
    // A decoded GGUF tensor (an embedding table) exists only as readBytes' output: it is stored by copy.
    if (src.names().some((n) => src.info(n).decoded && src.info(n).byteLength > (opts.inlineLimit ?? 1 << 20))) return true;
    if (NBITS[opts.format] || large.some((n) => isGgmlQuant(src.info(n).dtype))) return large.length > 0;
    if (opts.format === 'fp16' && opts.fp16Cache) return large.some((n) => src.info(n).dtype !== 'F16');
    return opts.format === 'fp8' && large.some((n) => !isFp8(src.info(n).dtype));
  }

  /**
   * int8/int4: quantize the Linear weights into the cache on worker threads, before the graph is
   * built (which then finds every entry). FLUX.1's 11.9 B weights take minutes on one core.
   * Nothing to do for other formats or a complete cache. `onProgress` gets the fraction of the
   * source bytes converted so far, after each tensor; it may throw (a cancel) to stop there, the
   * tensors in flight finishing first. On one thread each tensor ends with a turn of the event loop,
   * so a cancel (Ctrl+C, the protocol's cancel) is heard during minutes of conversion.
   */
  static async prefill(src: TensorSource, opts: WeightOptions, linearNames: string[], threads?: number, onProgress?: (fraction: number) => void): Promise<void> {
    const f16 = opts.format === 'fp16' && opts.fp16Cache;
    const nbitsOf = (n: string) => nbitsFor(src.info(n), opts);
    if ((!f16 && !linearNames.some(nbitsOf)) || !opts.cacheDir || !Weights.needsCache(src, opts, linearNames)) return;
    const cache = WeightCache.open(opts.cacheDir, src, opts);
    const limit = opts.inlineLimit ?? 1 << 20;
    const todo = linearNames.filter((n) => src.info(n).byteLength > limit && (nbitsOf(n) ? !cache.hasNBits(n) : f16 && src.info(n).dtype !== 'F16' && !cache.hasF16(n)));
    if (!todo.length) return;
    const total = todo.reduce((sum, n) => sum + src.info(n).byteLength, 0);
    let converted = 0;
    const pool = new QuantPool(threads);
    try {
      let next = 0;
      // As many tensors in flight as workers: the checkpoint is read as it is quantized.
      const drain = async () => {
        while (next < todo.length) {
          const name = todo[next++];
          const nb = nbitsOf(name);
          const job = quantJob(src, name, nb ?? { bits: 8, block: NBITS_BLOCK }, opts);
          if (nb) cache.putNBits(name, await pool.run({ ...job, target: 'nbits' }), opts.compute ?? 'float32');
          else cache.putF16(src.info(name), await pool.run({ ...job, target: 'f16' }));
          converted += src.info(name).byteLength;
          if (pool.threads <= 1) await new Promise((r) => setImmediate(r));
          onProgress?.(converted / total);
        }
      };
      await Promise.all(Array.from({ length: Math.max(1, pool.threads) }, drain));
    } finally {
      await pool.close();
    }
  }

  /** The folder onnxruntime must resolve external data in. */
  folder(): string {
    if (this.cache) {
      this.cache.commit();
      return this.cache.dir;
    }
    return path.dirname(this.src.info(this.src.names()[0]).file);
  }

  /** An empty int64 tensor that depends on `activation`: see the header comment. */
  gate(activation: Value): Value {
    const g = this.g;
    // From the data, not the shape: onnxruntime constant-folds Shape of a tensor whose shape is
    // static (e.g. [1, hidden]), and with it everything the gate was meant to hold back.
    const none = g.op('Slice', [g.op('Reshape', [activation, g.i64([-1])]), g.i64([0]), g.i64([0])]);
    return g.op('Cast', [none], { to: 7 }, { name: 'gate' });
  }

  /** A small parameter (bias, norm scale) in the compute type, or any tensor converted at run time after `gate`. */
  param(name: string, gate?: Value): Value {
    const t = this.src.info(name);
    if (t.byteLength <= this.inlineLimit || !gate) return this.inline(t);
    return this.scaledBy(name, this.convertAfter(this.stored(t), this.compute, t.shape, gate));
  }

  private scaledBy(name: string, x: Value): Value {
    const s = fp8ScaleOf(this.src, name);
    return s ? this.g.op('Mul', [x, this.constOfCompute(Array.from(s), s.length > 1 ? [s.length, 1] : [])]) : x;
  }

  /**
   * Rows of a table (an embedding) picked by `ids`, as the compute type; the table stays in the
   * file in its dtype. fp8 codes (which Gather does not take) are gathered as bytes and decoded by
   * table, their scale folded in.
   */
  gatherRows(name: string, ids: Value): Value {
    const t = this.src.info(name);
    const g = this.g;
    if (!isFp8(t.dtype)) return g.op('Cast', [g.op('Gather', [this.stored(t), ids], { axis: 0 })], { to: dataTypeOf(this.compute) });
    const scale = fp8ScaleOf(this.src, name) ?? [1];
    if (scale.length > 1) throw new Error(`${this.src.path}: "${name}" has a scale per row, which MajicFLUX does not read for an embedding table`);
    const codes = g.op('Cast', [g.op('Gather', [this.stored(t, 'uint8'), ids], { axis: 0 })], { to: 6 /* int32 */ });
    return g.op('Gather', [this.codeTable(t.dtype, scale[0]), codes], { axis: 0 });
  }

  /** A constant in the compute type. */
  constant(values: number[], dims: number[]): Value {
    return this.constOfCompute(values, dims);
  }

  /** A tensor in its file dtype, zero-copy (e.g. an embedding table to Gather from, then cast). */
  raw(name: string): { value: Value; type: ElemType } {
    const t = this.src.info(name);
    return { value: this.stored(t), type: elemOf(t) };
  }

  /**
   * A Linear weight [out, in] as the compute type, produced at run time after `gate`, held in
   * memory in the chosen format. Use with Gemm(transB=1) or MatMul(x, Transpose) — see linear().
   * Not for int8/int4 weights, which only MatMulNBits reads: use dense() or linear().
   */
  matrix(name: string, gate: Value): Value {
    const t = this.src.info(name);
    const g = this.g;
    if (t.byteLength <= this.inlineLimit) return this.inline(t);
    const f = this.opts.format;
    if (NBITS[f] || isGgmlQuant(t.dtype)) throw new Error(`${name}: ${isGgmlQuant(t.dtype) ? t.dtype : f} weights are only read by MatMulNBits (Weights.dense / linear)`);
    if (f === 'fp8') {
      // Lookup reads pairs of codes as uint16, unless the row length is odd or one scale ≠ 1 is
      // folded into a table of single codes (a scalar Mul would be folded into the product's
      // alpha by onnxruntime, which rounds differently from DequantizeLinear).
      const words = this.opts.fp8Decode === 'words';
      if (words && t.shape[1] % 4 !== 0) throw new Error(`${name}: fp8 decode 'words' reads rows of a multiple of 4 codes, not ${t.shape[1]}`);
      const typeFor = (scale: number[], codes: Fp8DType): ElemType =>
        words ? 'int32' : this.opts.fp8Decode !== 'lookup' ? SOURCE_ELEM[codes]! : t.shape[1] % 2 === 0 && (scale.length > 1 || scale[0] === 1) ? 'uint16' : 'uint8';
      const dimsFor = (type: ElemType) => (type === 'uint16' ? [t.shape[0], t.shape[1] / 2] : type === 'int32' ? [t.shape[0], t.shape[1] / 4] : t.shape);
      if (isFp8(t.dtype)) {
        // The file's codes, e4m3 or e5m2, decoded in place; a checkpoint's scale folds into the decode's.
        const scale = Array.from(fp8ScaleOf(this.src, name) ?? [1]);
        const type = typeFor(scale, t.dtype);
        return this.decodeFp8(this.stored(t, type, dimsFor(type)), t.shape[0], scale, gate, type === 'uint16', t.dtype);
      }
      const e = this.cache!.fp8(t, this.src, this.opts.fp8Scale ?? 'per-channel');
      const type = typeFor(e.scale!, 'F8_E4M3');
      const w = g.external(type, dimsFor(type), { location: this.cache!.file, offset: e.offset, length: e.length }, `${name}.fp8`);
      return this.decodeFp8(w, t.shape[0], e.scale!, gate, type === 'uint16', 'F8_E4M3');
    }
    if (this.isCachedF16(name)) return g.op('Transpose', [this.transposedF16(name, gate)], { perm: [1, 0] });
    // fp16 / fp32: the resident copy is made once at session creation by a foldable Cast (and Mul).
    const residentType: ElemType = f === 'fp16' ? 'float16' : 'float32';
    let w = this.stored(t);
    if (elemOf(t) !== residentType) w = g.op('Cast', [w], { to: dataTypeOf(residentType) }, { name: `${name}.resident` });
    const scale = fp8ScaleOf(this.src, name);
    if (scale) w = g.op('Mul', [w, this.constOf(residentType, Array.from(scale), scale.length > 1 ? [scale.length, 1] : [])]);
    if (residentType === this.compute) return w;
    return this.convertAfter(w, this.compute, t.shape, gate);
  }

  /**
   * y = x · Wᵀ + b for a PyTorch Linear with weight [out, in]; x is [tokens, in]. Gemm with transB
   * reads the weight in place; int8/int4 weights go through MatMulNBits.
   */
  dense(x: Value, name: string, gate: Value, bias = true): Value {
    const b = this.bias(name, bias);
    return this.specialFormat(x, name, gate, b) ?? this.g.op('Gemm', [x, this.matrix(`${name}.weight`, gate), b], { transB: 1 });
  }

  /** y = x · Wᵀ + b for a PyTorch Linear with weight [out, in]; x is [..., in]. */
  linear(x: Value, name: string, gate: Value, bias = true): Value {
    const g = this.g;
    const b = this.bias(name, bias);
    const special = this.specialFormat(x, name, gate, b);
    if (special) return special;
    // MatMul against a Transpose that onnxruntime fuses into the GEMM (no materialised copy);
    // Gemm would need 2-D inputs.
    const y = g.op('MatMul', [x, g.op('Transpose', [this.matrix(`${name}.weight`, gate)], { perm: [1, 0] })]);
    return b ? g.op('Add', [y, b]) : y;
  }

  private bias(name: string, wanted: boolean): Value | undefined {
    return wanted && this.src.has(`${name}.bias`) ? this.param(`${name}.bias`) : undefined;
  }

  /** The int8/int4 (MatMulNBits), cached-fp16 and fp8 `words`/`gather` (MatMul on Wᵀ) paths, shared by dense and linear. */
  private specialFormat(x: Value, name: string, gate: Value, b: Value | undefined): Value | undefined {
    if (this.isNBits(`${name}.weight`)) return this.matMulNBits(x, `${name}.weight`, b);
    if (this.opts.format === 'fp8' && (this.opts.fp8Decode === 'words' || this.opts.fp8Decode === 'gather') && this.src.info(`${name}.weight`).byteLength > this.inlineLimit) {
      // MatMul on the decoded weight's transpose: WebGPU's Gemm(transB) runs 2.7× slower than its MatMul.
      const y = this.g.op('MatMul', [x, this.g.op('Transpose', [this.matrix(`${name}.weight`, gate)], { perm: [1, 0] })]);
      return b ? this.g.op('Add', [y, b]) : y;
    }
    if (!this.isCachedF16(`${name}.weight`)) return undefined;
    const y = this.g.op('MatMul', [x, this.transposedF16(`${name}.weight`, gate)]);
    return b ? this.g.op('Add', [y, b]) : y;
  }

  private isCachedF16(name: string): boolean {
    const t = this.src.info(name);
    return this.opts.format === 'fp16' && this.opts.fp16Cache === true && t.dtype !== 'F16' && t.byteLength > this.inlineLimit;
  }

  /** Wᵀ [in, out] from the float16 cache, in the compute type (cast after `gate` for float32). */
  private transposedF16(name: string, gate: Value): Value {
    const t = this.src.info(name);
    const e = this.cache!.f16(t, this.src);
    const w = this.g.external('float16', e.dims, { location: this.cache!.file, offset: e.offset, length: e.length }, `${name}.fp16t`);
    return this.compute === 'float16' ? w : this.convertAfter(w, this.compute, e.dims, gate);
  }

  /** Whether this weight is held as MatMulNBits blocks (small ones are inlined in the compute type). */
  private isNBits(name: string): boolean {
    return nbitsFor(this.src.info(name), this.opts) !== undefined && this.src.info(name).byteLength > this.inlineLimit;
  }

  /** x [..., K] · dequant(W)ᵀ (+ bias) with W [N, K] as blocks from the cache. */
  private matMulNBits(x: Value, name: string, bias?: Value): Value {
    const g = this.g;
    const t = this.src.info(name);
    const { bits, block } = nbitsFor(t, this.opts)!;
    const e = this.cache!.nbits(t, this.src, { bits, block }, this.opts, this.compute);
    const at = (c: CacheEntry) => ({ location: this.cache!.file, offset: c.offset, length: c.length });
    const b = g.external('uint8', e.data.dims, at(e.data), `${name}.q${bits}`);
    const scales = g.external(e.scales.type, e.scales.dims, at(e.scales), `${name}.scales`);
    const [n, k] = t.shape;
    const zp = e.zeroPoints ? g.external('uint8', e.zeroPoints.dims, at(e.zeroPoints), `${name}.zero_points`) : this.opts.explicitZeroPoints ? this.midZeroPoints(n, k, bits, block) : undefined;
    const attrs = nbitsAttrs(n, k, bits, block, this.opts.int8Activations ?? false);
    if (bias && this.opts.nbitsBias) return g.op('MatMulNBits', [x, b, scales, zp, undefined, bias], attrs, { domain: 'com.microsoft' });
    const y = g.op('MatMulNBits', [x, b, scales, zp], attrs, { domain: 'com.microsoft' });
    return bias ? g.op('Add', [y, bias]) : y;
  }

  /** quant.ts midZeroPoints as a constant, one per shape. */
  private midZeroPoints(n: number, k: number, bits: NBits, block: number): Value {
    const key = `${n}x${blocksPerRow(k, block)}@${bits}`;
    let v = this.defaultZeroPoints.get(key);
    if (!v) {
      const zp = midZeroPoints(n, k, bits, block);
      this.defaultZeroPoints.set(key, (v = this.g.constant('uint8', [zp.length], zp, 'zero_points')));
    }
    return v;
  }

  /** fp8 bytes (float8e4m3fn [N, K]; for `lookup` uint16 [N, K/2] or uint8 [N, K]) → the compute type [N, K], after `gate`. */
  private decodeFp8(w8: Value, rows: number, scale: number[], gate: Value, pairs: boolean, codes: Fp8DType): Value {
    const g = this.g;
    if (this.opts.fp8Decode === 'gather') return this.decodeFp8Gather(w8, rows, scale, gate);
    const per = scale.length > 1;
    // The gate goes through the weight's shape. Besides ordering the dequantization, this hides the
    // static shape from onnxruntime's allocation planner, which would otherwise keep each
    // dequantized buffer alive until the next weight of the same shape can reuse it (with the
    // same-shaped blocks of a DiT: one fp32 weight of every shape alive at once).
    const src = g.op('Reshape', [w8, g.op('Concat', [g.op('Shape', [w8]), gate], { axis: 0 })]);
    if (this.opts.fp8Decode === 'words') return this.decodeFp8Words(w8, src, scale, gate, codes);
    if (this.opts.fp8Decode !== 'lookup') {
      const s = per ? this.constOfCompute(scale, [scale.length]) : this.constOfCompute(scale, []);
      return g.op('DequantizeLinear', [src, s], per ? { axis: 0 } : {});
    }
    // Exact code values, then float(code) · scale rounded once, as DequantizeLinear computes it.
    const indices = g.op('Cast', [src], { to: 6 /* int32 */ });
    let decoded: Value;
    if (pairs) {
      // Only for scale 1 or per-row scales (typeFor).
      let pairTable = this.pairTables.get(codes);
      if (!pairTable) this.pairTables.set(codes, (pairTable = this.constOfCompute(Array.from(fp8Pairs(codes)), [65536, 2])));
      // [N, K/2, 2] → [N, K]: the shape goes through the gate too (see above).
      const nk = g.op('Concat', [g.op('Mul', [g.op('Shape', [w8]), g.i64([1, 2])]), gate], { axis: 0 });
      decoded = g.op('Reshape', [g.op('Gather', [pairTable, indices], { axis: 0 }), nk]);
    } else {
      decoded = g.op('Gather', [this.codeTable(codes, per ? 1 : scale[0]), indices], { axis: 0 });
    }
    return per ? g.op('Mul', [decoded, this.constOfCompute(scale, [scale.length, 1])]) : decoded;
  }

  /**
   * fp8 codes read as int32 words [N, K/4] (four little-endian codes each) → [N, K]. Byte i of a
   * word is r = w − 256·⌊w/256⌋; Div truncates toward zero, so for a negative word (its top
   * code ≥ 0x80) the remainder comes out as r − 256: Gather reads a negative index from the end
   * of the table, which is that same code, and the quotient is one too high where r < 0. Integer
   * Div/Mul/Sub/Less: WebGPU runs them on the GPU (BitShift/BitwiseAnd and Mod measured 16–55×
   * slower, by the timings on the CPU; docs/BENCHMARKS.md).
   */
  private decodeFp8Words(w32: Value, src: Value, scale: number[], gate: Value, format: Fp8DType): Value {
    const g = this.g;
    const i32 = (v: number) => g.constant('int32', [], bytesOf(Int32Array.of(v)), 'c');
    const codes: Value[] = [];
    let rest = src;
    for (let i = 0; i < 4; i++) {
      const q = g.op('Div', [rest, i32(256)]);
      const r = g.op('Sub', [rest, g.op('Mul', [q, i32(256)])]);
      codes.push(g.op('Unsqueeze', [r, g.i64([-1])]));
      if (i < 3) rest = g.op('Sub', [q, g.op('Cast', [g.op('Less', [r, i32(0)])], { to: 6 })]);
    }
    // [N, K/4, 4] → [N, K], the shape through the gate (see decodeFp8).
    const nk = g.op('Concat', [g.op('Mul', [g.op('Shape', [w32]), g.i64([1, 4])]), gate], { axis: 0 });
    const index = g.op('Reshape', [g.op('Concat', codes, { axis: -1 }), nk]);
    const per = scale.length > 1;
    const decoded = g.op('Gather', [this.codeTable(format, per ? 1 : scale[0]), index], { axis: 0 });
    return per ? g.op('Mul', [decoded, this.constOfCompute(scale, [scale.length, 1])]) : decoded;
  }

  /**
   * float8 [N, K] → the compute type [N, K] by com.microsoft GatherBlockQuantized (onnxruntime
   * ≥ 1.31 decodes float8 data there, on WebGPU from its own 256-entry table) gathering every row:
   * one scale per row (block_size 0) or one for the whole tensor (broadcast [1, 1]). The row
   * indices, not the float8 tensor, carry the gate: a Reshape of float8 data may have no kernel on
   * the GPU, and a dynamic index count hides the static shape from the planner just as well.
   */
  private decodeFp8Gather(w8: Value, rows: number, scale: number[], gate: Value): Value {
    const g = this.g;
    let ids = this.rowIds.get(rows);
    if (!ids) this.rowIds.set(rows, (ids = g.constant('int32', [rows], bytesOf(Int32Array.from({ length: rows }, (_, i) => i)), 'rows')));
    const gated = g.op('Reshape', [ids, g.op('Concat', [g.i64([-1]), gate], { axis: 0 })]);
    const s = this.constOfCompute(scale, scale.length > 1 ? [scale.length, 1] : [1, 1]);
    return g.op('GatherBlockQuantized', [w8, gated, s], { gather_axis: 0, quantize_axis: 1, block_size: 0 }, { domain: 'com.microsoft' });
  }

  /** The 256 values of one fp8 format's codes times `s`, in the compute type: one table per graph. */
  private codeTable(codes: Fp8DType, s: number): Value {
    const key = `${codes}:${s}`;
    let table = this.codeTables.get(key);
    if (!table) this.codeTables.set(key, (table = this.constOfCompute(Array.from(FP8_DECODED[codes], (v) => Math.fround(v * s)), [256])));
    return table;
  }

  private convertAfter(w: Value, to: ComputeType, dims: number[], gate: Value): Value {
    const g = this.g;
    const shape = g.op('Concat', [g.i64(dims), gate], { axis: 0 });
    return g.op('Cast', [g.op('Reshape', [w, shape])], { to: dataTypeOf(to) });
  }

  private constOfCompute(values: number[], dims: number[]): Value {
    return this.constOf(this.compute === 'float32' ? 'float32' : 'float16', values, dims);
  }

  private constOf(type: ElemType, values: number[], dims: number[]): Value {
    if (type === 'float32') return this.g.f32(values, dims, 'scale');
    return this.g.constant('float16', dims, bytesOf(float32ToF16Bits(Float32Array.from(values))), 'scale');
  }

  private inline(t: TensorInfo): Value {
    const data = scaled(toFloat32(this.src.readBytes(t.name), t.dtype), fp8ScaleOf(this.src, t.name), rowCount(t.shape));
    if (this.compute === 'float32') return this.g.constant('float32', t.shape, bytesOf(data), t.name);
    return this.g.constant('float16', t.shape, bytesOf(float32ToF16Bits(data)), t.name);
  }

  /** The tensor as it is in the file: zero-copy from the source, or copied into the cache when one is in use. */
  private stored(t: TensorInfo, type: ElemType = elemOf(t), dims: number[] = t.shape): Value {
    if (this.cache) {
      const e = this.cache.copy(t, this.src);
      return this.g.external(type, dims, { location: this.cache.file, offset: e.offset, length: e.length }, t.name);
    }
    if (t.decoded) throw new Error(`${t.file}: tensor "${t.name}" is decoded from GGUF blocks at load and needs a cache folder (cacheDir) to be stored in`);
    return this.g.external(type, dims, { location: path.basename(t.file), offset: t.offset, length: t.byteLength }, t.name);
  }
}

/** The value of each code (e4m3fn: 0x7F and 0xFF are NaN; e5m2: the top byte of a half). */
const FP8_DECODED: Record<Fp8DType, Float32Array> = { F8_E4M3: E4M3_TO_F32, F8_E5M2: E5M2_TO_F32 };
const pairCache = new Map<Fp8DType, Float32Array>();
/** The values of each little-endian pair of codes: entry v holds decode(v & 255), decode(v >> 8). */
function fp8Pairs(codes: Fp8DType): Float32Array {
  let t = pairCache.get(codes);
  const one = FP8_DECODED[codes];
  if (!t) pairCache.set(codes, (t = Float32Array.from({ length: 65536 * 2 }, (_, i) => one[i & 1 ? i >> 9 : (i >> 1) & 255])));
  return t;
}

function dataTypeOf(t: ElemType): number {
  return { float32: 1, float16: 10, bfloat16: 16 }[t as 'float32'] ?? (() => { throw new Error(`no cast to ${t}`); })();
}
