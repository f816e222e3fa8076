// How checkpoint tensors become graph initializers.
//
// Rules, in order of preference:
//  * Small tensors (biases, norms) are converted to the compute type and inlined in the model.
//  * Large tensors stay in the user's file in their own dtype (onnxruntime memory-maps it) and are
//    converted at run time, one layer at a time, just before use.
//  * When the chosen weight format differs from the file's (e.g. fp8 from a bf16 checkpoint), the
//    converted bytes go to a cache file keyed by the source files' identity and the options.
//
// "Just before use" needs care: onnxruntime constant-folds any node whose inputs are all
// initializers (a Cast of a 12 GB fp8 weight becomes 48 GB of fp32 at session creation), and it
// may run every independent DequantizeLinear before the first MatMul, holding all layers
// dequantized at once. So every run-time conversion takes its shape through a `gate`: an empty
// int64 tensor computed from an activation's data (Slice(0:0) → Cast). It is never constant, and
// it orders the conversion after that activation. Give each weight a gate of its own, from the
// output of the layer before it: independent conversions sharing one gate all run before the
// first of their MatMuls (measured: a block of 8 weights held 8 dequantized copies at once).

import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { DType, DTYPE_BYTES, E4M3_MAX, f32ToE4M3, float32ToF16Bits, toFloat32 } from '../dtypes';
import { TensorInfo, TensorSource } from '../safetensors';
import { bytesOf, Graph, Value } from './graph';
import { ElemType } from './proto';

export type WeightFormat = 'fp8' | 'fp16' | 'fp32';
export type ComputeType = 'float32' | 'float16';

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
}

const SOURCE_ELEM: Partial<Record<DType, ElemType>> = {
  F32: 'float32', F16: 'float16', BF16: 'bfloat16', F8_E4M3: 'float8e4m3fn', F8_E5M2: 'float8e5m2', I64: 'int64', U8: 'uint8', I8: 'int8',
};

const CACHE_VERSION = 1;

/** One converted tensor stored in the cache file. */
interface CacheEntry {
  offset: number;
  length: number;
  type: ElemType;
  dims: number[];
  /** Dequantization scale for fp8 entries (one per row for per-channel). */
  scale?: number[];
}

/**
 * Builds initializers for one graph from one tensor source. Call `folder()` after the graph is
 * built: it is the external-data folder to give onnxruntime.
 */
export class Weights {
  private readonly inlineLimit: number;
  private readonly compute: ComputeType;
  private readonly cache?: WeightCache;

  constructor(readonly g: Graph, readonly src: TensorSource, readonly opts: WeightOptions, linearNames: string[] = []) {
    this.inlineLimit = opts.inlineLimit ?? 1 << 20;
    this.compute = opts.compute ?? 'float32';
    const needsCache = opts.format === 'fp8' && linearNames.some((n) => src.info(n).dtype !== 'F8_E4M3' && src.info(n).byteLength > this.inlineLimit);
    if (needsCache) {
      if (!opts.cacheDir) throw new Error('converting weights to fp8 needs a cache folder (cacheDir)');
      this.cache = WeightCache.open(opts.cacheDir, src, opts);
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
    return this.convertAfter(this.stored(t), this.compute, t.shape, gate);
  }

  /** A tensor in its file dtype, zero-copy (e.g. an embedding table to Gather from, then cast). */
  raw(name: string): { value: Value; type: ElemType } {
    const t = this.src.info(name);
    return { value: this.stored(t), type: elemOf(t) };
  }

  /**
   * A Linear weight [out, in] as the compute type, produced at run time after `gate`, held in
   * memory in the chosen format. Use with Gemm(transB=1) or MatMul(x, Transpose) — see linear().
   */
  matrix(name: string, gate: Value): Value {
    const t = this.src.info(name);
    const g = this.g;
    if (t.byteLength <= this.inlineLimit) return this.inline(t);
    const f = this.opts.format;
    if (f === 'fp8') {
      if (t.dtype === 'F8_E4M3') {
        const scale = this.src.has(`${name}_scale`) ? this.src.readF32(`${name}_scale`) : undefined;
        return this.dequantize(this.stored(t), scale ? Array.from(scale) : [1], gate);
      }
      const e = this.cache!.fp8(t, this.src, this.opts.fp8Scale ?? 'per-channel');
      const w = g.external('float8e4m3fn', e.dims, { location: WeightCache.FILE, offset: e.offset, length: e.length }, `${name}.fp8`);
      return this.dequantize(w, e.scale!, gate);
    }
    // fp16 / fp32: the resident copy is made once at session creation by a foldable Cast.
    const residentType: ElemType = f === 'fp16' ? 'float16' : 'float32';
    let w = this.stored(t);
    if (elemOf(t) !== residentType) w = g.op('Cast', [w], { to: dataTypeOf(residentType) }, { name: `${name}.resident` });
    if (residentType === this.compute) return w;
    return this.convertAfter(w, this.compute, t.shape, gate);
  }

  /** y = x · Wᵀ + b for a PyTorch Linear with weight [out, in]; x is [..., in]. */
  linear(x: Value, name: string, gate: Value, bias = true): Value {
    const g = this.g;
    const w = this.matrix(`${name}.weight`, gate);
    // MatMul against a Transpose that onnxruntime fuses into the GEMM (no materialised copy);
    // Gemm would need 2-D inputs.
    const y = g.op('MatMul', [x, g.op('Transpose', [w], { perm: [1, 0] })]);
    return bias && this.src.has(`${name}.bias`) ? g.op('Add', [y, this.param(`${name}.bias`)]) : y;
  }

  private dequantize(w8: Value, scale: number[], gate: Value): Value {
    const g = this.g;
    const per = scale.length > 1;
    const s = per ? this.constOfCompute(scale, [scale.length]) : this.constOfCompute(scale, []);
    // The gate goes through the weight's shape. Besides ordering the dequantization, this hides the
    // static shape from onnxruntime's allocation planner, which would otherwise keep each
    // dequantized buffer alive until the next weight of the same shape can reuse it (with the
    // same-shaped blocks of a DiT: one fp32 weight of every shape alive at once).
    const src = g.op('Reshape', [w8, g.op('Concat', [g.op('Shape', [w8]), gate], { axis: 0 })]);
    return g.op('DequantizeLinear', [src, s], per ? { axis: 0 } : {});
  }

  private convertAfter(w: Value, to: ComputeType, dims: number[], gate: Value): Value {
    const g = this.g;
    const shape = g.op('Concat', [g.i64(dims), gate], { axis: 0 });
    return g.op('Cast', [g.op('Reshape', [w, shape])], { to: dataTypeOf(to) });
  }

  private constOfCompute(values: number[], dims: number[]): Value {
    if (this.compute === 'float32') return this.g.f32(values, dims, 'scale');
    return this.g.constant('float16', dims, bytesOf(float32ToF16Bits(Float32Array.from(values))), 'scale');
  }

  private inline(t: TensorInfo): Value {
    const data = toFloat32(this.src.readBytes(t.name), t.dtype);
    if (this.compute === 'float32') return this.g.constant('float32', t.shape, bytesOf(data), t.name);
    return this.g.constant('float16', t.shape, bytesOf(float32ToF16Bits(data)), t.name);
  }

  /** The tensor as it is in the file: zero-copy from the source, or copied into the cache when one is in use. */
  private stored(t: TensorInfo): Value {
    const type = elemOf(t);
    if (this.cache) {
      const e = this.cache.copy(t, this.src);
      return this.g.external(type, t.shape, { location: WeightCache.FILE, offset: e.offset, length: e.length }, t.name);
    }
    return this.g.external(type, t.shape, { location: path.basename(t.file), offset: t.offset, length: t.byteLength }, t.name);
  }
}

function elemOf(t: TensorInfo): ElemType {
  const e = SOURCE_ELEM[t.dtype];
  if (!e) throw new Error(`${t.file}: tensor "${t.name}" has dtype ${t.dtype}, which cannot be used as a weight`);
  return e;
}

function dataTypeOf(t: ElemType): number {
  return { float32: 1, float16: 10, bfloat16: 16 }[t as 'float32'] ?? (() => { throw new Error(`no cast to ${t}`); })();
}

/**
 * A file of converted weights, `<cacheDir>/<key>/weights.bin` + `index.json`. The key hashes each
 * source file's path, size and mtime plus the conversion options, so a changed checkpoint or other
 * options build a new cache. Written to a temp file and renamed on commit; a complete cache is
 * reused without touching the source.
 */
export class WeightCache {
  static readonly FILE = 'weights.bin';
  private readonly index: Record<string, CacheEntry>;
  private fd?: number;
  private size = 0;

  private constructor(readonly dir: string, readonly complete: boolean, index: Record<string, CacheEntry>) {
    this.index = index;
  }

  static keyFor(src: TensorSource, opts: WeightOptions): string {
    const files = [...new Set(src.names().map((n) => src.info(n).file))].sort();
    const ids = files.map((f) => {
      const st = fs.statSync(f);
      return `${f}|${st.size}|${st.mtimeMs}`;
    });
    const h = crypto.createHash('sha256').update(JSON.stringify({ v: CACHE_VERSION, ids, format: opts.format, scale: opts.fp8Scale ?? 'per-channel' }));
    return h.digest('hex').slice(0, 24);
  }

  static open(cacheDir: string, src: TensorSource, opts: WeightOptions): WeightCache {
    const dir = path.join(cacheDir, WeightCache.keyFor(src, opts));
    const indexFile = path.join(dir, 'index.json');
    if (fs.existsSync(indexFile) && fs.existsSync(path.join(dir, WeightCache.FILE))) {
      try {
        return new WeightCache(dir, true, JSON.parse(fs.readFileSync(indexFile, 'utf8')));
      } catch {
        // A damaged index: rebuild below.
      }
    }
    fs.mkdirSync(dir, { recursive: true });
    return new WeightCache(dir, false, {});
  }

  copy(t: TensorInfo, src: TensorSource): CacheEntry {
    return this.entry(`copy:${t.name}`, () => ({ bytes: src.readBytes(t.name), type: elemOf(t), dims: t.shape }));
  }

  fp8(t: TensorInfo, src: TensorSource, mode: 'per-tensor' | 'per-channel'): CacheEntry {
    return this.entry(`fp8:${t.name}`, () => {
      const x = src.readF32(t.name);
      const rows = t.shape[0];
      const cols = x.length / rows;
      const scale = quantScales(x, rows, cols, mode);
      const q = new Uint8Array(x.length);
      for (let r = 0; r < rows; r++) {
        const inv = 1 / scale[mode === 'per-channel' ? r : 0];
        for (let c = r * cols, end = c + cols; c < end; c++) q[c] = f32ToE4M3(x[c] * inv);
      }
      return { bytes: q, type: 'float8e4m3fn' as ElemType, dims: t.shape, scale };
    });
  }

  private entry(key: string, make: () => { bytes: Uint8Array; type: ElemType; dims: number[]; scale?: number[] }): CacheEntry {
    const hit = this.index[key];
    if (hit) return hit;
    if (this.complete) throw new Error(`weight cache ${this.dir} lacks ${key}: delete the folder to rebuild it`);
    if (this.fd === undefined) this.fd = fs.openSync(path.join(this.dir, `${WeightCache.FILE}.partial`), 'w');
    const { bytes, type, dims, scale } = make();
    // Keep every tensor 64-byte aligned for the memory map.
    const offset = Math.ceil(this.size / 64) * 64;
    fs.writeSync(this.fd, bytes, 0, bytes.byteLength, offset);
    this.size = offset + bytes.byteLength;
    const e: CacheEntry = { offset, length: bytes.byteLength, type, dims, ...(scale ? { scale } : {}) };
    this.index[key] = e;
    return e;
  }

  commit(): void {
    if (this.complete || this.fd === undefined) return;
    fs.fsyncSync(this.fd);
    fs.closeSync(this.fd);
    this.fd = undefined;
    fs.renameSync(path.join(this.dir, `${WeightCache.FILE}.partial`), path.join(this.dir, WeightCache.FILE));
    fs.writeFileSync(path.join(this.dir, 'index.json'), JSON.stringify(this.index));
  }
}

function quantScales(x: Float32Array, rows: number, cols: number, mode: 'per-tensor' | 'per-channel'): number[] {
  const amax = new Array<number>(mode === 'per-channel' ? rows : 1).fill(0);
  for (let r = 0; r < rows; r++) {
    const k = mode === 'per-channel' ? r : 0;
    for (let c = r * cols, end = c + cols; c < end; c++) amax[k] = Math.max(amax[k], Math.abs(x[c]));
  }
  return amax.map((a) => (a > 0 ? a / E4M3_MAX : 1));
}

export const bytesPerElement = (d: DType) => DTYPE_BYTES[d];
