// The weight cache: converted weights (fp16 transposed, int8/int4 MatMulNBits blocks, fp8 from
// wider types, GGUF decodes) in one memory-mapped file per source and options, built once (on all
// cores by Weights.prefill), reused while the source files are unchanged (removed once one has
// changed), pruned to a disk limit.

import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { ComputeType } from '../../shared/api';
import { E4M3_MAX, f32ToE4M3, float32ToF16Bits } from '../formats/dtypes';
import { isGgmlQuant } from '../formats/ggml';
import { TensorInfo, TensorSource } from '../formats/safetensors';
import { bytesOf } from './graph';
import { ElemType } from './proto';
import { blocksPerRow, FloatDType, NBITS_BLOCK, NBitsWeight, QuantJob, runQuantJob, scaled } from './quant';
import { elemOf, fp8ScaleOf, NBITS, NBitsChoice, WeightOptions } from './weightOptions';
import { isStaleTemp, renameSyncRetrying, replaceFileSync, writeFileOnceSync } from '../system/atomicWrite';
import { processRunning } from '../system/pids';

const CACHE_VERSION = 1;

/** One converted tensor stored in the cache file. */
export interface CacheEntry {
  offset: number;
  length: number;
  type: ElemType;
  dims: number[];
  /** Dequantization scale for fp8 entries (one per row for per-channel). */
  scale?: number[];
}

/**
 * A file of converted weights, `<cacheDir>/<key>/weights-<pid>-<id>.bin` + `cache.json`, which names
 * the file and where each tensor is in it. The key hashes each source file's path, size and mtime
 * plus the conversion options, so a changed checkpoint or other options build a new cache. Each
 * writer has a data file of its own, renamed into place on commit; the first to commit writes the
 * index, and what it names stays: two processes converting the same model at once (two VS Code
 * windows, the CLI beside the extension) each load from their own file, and a third loads from the
 * first's. A complete cache is reused without touching the source.
 */
export class WeightCache {
  /** The data file of caches written before each writer named its own (index.json, a plain entry map, beside it). */
  static readonly LEGACY_FILE = 'weights.bin';
  /** Caches being written, by folder: prefill() and the graph build share one. */
  private static readonly writing = new Map<string, WeightCache>();
  private readonly index: Record<string, CacheEntry>;
  private fd?: number;
  private size = 0;

  /** `file`: the data file in `dir` that the graph's external data names. */
  private constructor(readonly dir: string, readonly complete: boolean, index: Record<string, CacheEntry>, readonly file: string, private readonly sources: SourceStamp[] = []) {
    this.index = index;
  }

  static keyFor(src: TensorSource, opts: WeightOptions): string {
    const ids = sourceFiles(src).map(({ file, size, mtimeMs }) => `${file}|${size}|${mtimeMs}`);
    // int8/int4 scales are stored in the compute type.
    // GGUF quantized weights are MatMulNBits blocks in any format, their scales in the compute type.
    const gguf = src.names().some((n) => isGgmlQuant(src.info(n).dtype)) ? { ggufCompute: opts.compute ?? 'float32' } : {};
    const nbits = NBITS[opts.format] ? { compute: opts.compute ?? 'float32', zeroPoints: opts.zeroPoints ?? false, block: opts.nbitsBlock ?? NBITS_BLOCK } : opts.fp16Cache && opts.format === 'fp16' ? { fp16Cache: true } : {};
    // The names too: the components of an all-in-one checkpoint share its file.
    const names = crypto.createHash('sha256').update([...src.names()].sort().join('\n')).digest('hex');
    const h = crypto.createHash('sha256').update(JSON.stringify({ v: CACHE_VERSION, ids, names, format: opts.format, scale: opts.fp8Scale ?? 'per-channel', ...nbits, ...gguf }));
    return h.digest('hex').slice(0, 24);
  }

  /** Cache folders this process opened: in use, never pruned by it (pruneWeightCaches). */
  static readonly opened = new Set<string>();

  static open(cacheDir: string, src: TensorSource, opts: WeightOptions): WeightCache {
    const dir = path.join(cacheDir, WeightCache.keyFor(src, opts));
    markInUse(dir);
    const open = WeightCache.writing.get(dir);
    if (open) return open;
    const index = readIndex(dir);
    if (index) {
      try {
        const cache = new WeightCache(dir, true, index.entries, index.file);
        // The index's time is the cache's last use, which pruning goes by.
        const now = new Date();
        fs.utimesSync(path.join(dir, index.indexFile), now, now);
        removeLeftovers(dir, index.file);
        return cache;
      } catch {
        // gone meanwhile (pruned by another process): rebuild below
      }
    }
    fs.mkdirSync(dir, { recursive: true });
    const cache = new WeightCache(dir, false, {}, `weights-${process.pid}-${crypto.randomBytes(6).toString('hex')}.bin`, sourceFiles(src));
    WeightCache.writing.set(dir, cache);
    return cache;
  }

  hasF16(name: string): boolean {
    return `fp16t:${name}` in this.index;
  }

  /** Store a Linear weight [out, in] as float16 bits of its transpose [in, out]. */
  putF16(t: TensorInfo, transposedBits: Uint16Array): void {
    this.entry(`fp16t:${t.name}`, () => ({ bytes: bytesOf(transposedBits), type: 'float16', dims: [t.shape[1], t.shape[0]] }));
  }

  /** A weight as float16 [in, out] (an fp8 file's scale applied): from the cache, or converted now (see Weights.prefill). */
  f16(t: TensorInfo, src: TensorSource): CacheEntry {
    if (!this.hasF16(t.name)) {
      const job = quantJob(src, t.name, { bits: 8, block: NBITS_BLOCK }, { format: 'fp16' });
      this.putF16(t, runQuantJob({ ...job, target: 'f16' }));
    }
    return this.index[`fp16t:${t.name}`];
  }

  hasNBits(name: string): boolean {
    return `nbits:${name}` in this.index;
  }

  /** Store a quantized weight: data, scales (in the compute type) and any zero points. */
  putNBits(name: string, q: NBitsWeight, compute: ComputeType): void {
    const blocks = blocksPerRow(q.k, q.blockSize);
    this.entry(`nbits:${name}`, () => ({ bytes: q.data, type: 'uint8', dims: [q.n, blocks, (q.blockSize * q.bits) / 8] }));
    this.entry(`nbits:${name}:scales`, () =>
      compute === 'float16' ? { bytes: bytesOf(float32ToF16Bits(q.scales)), type: 'float16', dims: [q.scales.length] } : { bytes: bytesOf(q.scales), type: 'float32', dims: [q.scales.length] });
    if (q.zeroPoints) this.entry(`nbits:${name}:zp`, () => ({ bytes: q.zeroPoints!, type: 'uint8', dims: [q.zeroPoints!.length] }));
  }

  /** A weight as MatMulNBits blocks: from the cache, or quantized now on this thread (see Weights.prefill). */
  nbits(t: TensorInfo, src: TensorSource, nb: NBitsChoice, opts: WeightOptions, compute: ComputeType): { data: CacheEntry; scales: CacheEntry; zeroPoints?: CacheEntry } {
    if (!this.hasNBits(t.name)) {
      const job = quantJob(src, t.name, nb, opts);
      this.putNBits(t.name, runQuantJob({ ...job, target: 'nbits' }), compute);
    }
    const zeroPoints = this.index[`nbits:${t.name}:zp`];
    return { data: this.index[`nbits:${t.name}`], scales: this.index[`nbits:${t.name}:scales`], ...(zeroPoints ? { zeroPoints } : {}) };
  }

  copy(t: TensorInfo, src: TensorSource): CacheEntry {
    return this.entry(`copy:${t.name}`, () => ({ bytes: src.readBytes(t.name), type: elemOf(t), dims: t.shape }));
  }

  fp8(t: TensorInfo, src: TensorSource, mode: 'per-tensor' | 'per-channel'): CacheEntry {
    return this.entry(`fp8:${t.name}`, () => {
      const rows = t.shape[0];
      const x = scaled(src.readF32(t.name), fp8ScaleOf(src, t.name), rows);
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
    if (this.fd === undefined) this.fd = fs.openSync(path.join(this.dir, `${this.file}${PARTIAL}`), 'w');
    const { bytes, type, dims, scale } = make();
    // Keep every tensor 64-byte aligned for the memory map.
    const offset = Math.ceil(this.size / 64) * 64;
    try {
      fs.writeSync(this.fd, bytes, 0, bytes.byteLength, offset);
    } catch (err) {
      this.abandon();
      throw err;
    }
    this.size = offset + bytes.byteLength;
    const e: CacheEntry = { offset, length: bytes.byteLength, type, dims, ...(scale ? { scale } : {}) };
    this.index[key] = e;
    return e;
  }

  /**
   * A write failed (a full disk, most often): the partial file goes at once, not left taking the
   * space until a later conversion succeeds, and the next open starts afresh.
   */
  private abandon(): void {
    WeightCache.writing.delete(this.dir);
    if (this.fd !== undefined) {
      try {
        fs.closeSync(this.fd);
      } catch {
        // closing a descriptor whose writes failed may fail too
      }
      this.fd = undefined;
    }
    fs.rmSync(path.join(this.dir, `${this.file}${PARTIAL}`), { force: true });
    for (const k of Object.keys(this.index)) delete this.index[k];
    this.size = 0;
  }

  commit(): void {
    WeightCache.writing.delete(this.dir);
    if (this.complete || this.fd === undefined) return;
    fs.fsyncSync(this.fd);
    fs.closeSync(this.fd);
    this.fd = undefined;
    renameSyncRetrying(path.join(this.dir, `${this.file}${PARTIAL}`), path.join(this.dir, this.file));
    // What it was built from, for removeStaleWeightCaches (the same for every writer of this key);
    // then the index, which makes the cache complete. Another writer committed first: its index
    // stays (a reader may be loading from the file it names), and this process loads from its own
    // file, a leftover once it has gone. Only a damaged index is replaced.
    replaceFileSync(path.join(this.dir, SOURCE_FILE), JSON.stringify(this.sources));
    const index = JSON.stringify({ file: this.file, entries: this.index });
    if (!writeFileOnceSync(path.join(this.dir, INDEX_FILE), index)) {
      if (readIndex(this.dir)?.indexFile === INDEX_FILE) return;
      replaceFileSync(path.join(this.dir, INDEX_FILE), index);
    }
    removeLeftovers(this.dir, this.file);
  }
}

/** The index (older versions wrote index.json beside weights.bin: a name of its own leaves their caches to them). */
const INDEX_FILE = 'cache.json';
const LEGACY_INDEX_FILE = 'index.json';
const PARTIAL = '.partial';
/** A writer's data file, or what it was writing: the pid tells whether that writer still runs. */
const WRITER_FILE = /^weights-(\d+)-[0-9a-f]{12}\.bin(\.partial)?$/;

/** A complete cache's index: the data file and where each tensor is in it, and the index's own name. */
interface CacheIndex {
  file: string;
  entries: Record<string, CacheEntry>;
  indexFile: string;
}

/**
 * The complete cache's index in `dir` (cache.json, else an older version's index.json), if its data
 * file is there and as long as the index says: one cut short (a copy or disk that failed) would
 * make onnxruntime refuse every load ("out of bounds") until the folder is deleted; it is built again.
 */
function readIndex(dir: string): CacheIndex | undefined {
  for (const indexFile of [INDEX_FILE, LEGACY_INDEX_FILE]) {
    try {
      const json = JSON.parse(fs.readFileSync(path.join(dir, indexFile), 'utf8')) as { file?: unknown; entries?: unknown };
      // An older version's index was the entry map alone, the data in weights.bin.
      const index = indexFile === INDEX_FILE ? { file: String(json.file), entries: json.entries as Record<string, CacheEntry>, indexFile } : { file: WeightCache.LEGACY_FILE, entries: json as Record<string, CacheEntry>, indexFile };
      if (typeof index.entries !== 'object' || !index.entries || path.basename(index.file) !== index.file) continue;
      const end = Math.max(0, ...Object.values(index.entries).map((e) => e.offset + e.length));
      if (fs.statSync(path.join(dir, index.file)).size >= end) return index;
    } catch {
      // none, or damaged: the next, or none
    }
  }
  return undefined;
}

/**
 * Data files of `dir` that the index does not name: another writer's that committed after the
 * first, or a killed writer's partial file, and a killed writer's temp files. Only those of
 * processes that no longer run go (a running one loads from its own file, or is writing it); a
 * file another process maps on Windows stays until next time. An older version's weights.bin and
 * index.json are its own: left alone.
 */
function removeLeftovers(dir: string, keep: string): void {
  let names: string[];
  try {
    names = fs.readdirSync(dir);
  } catch {
    return;
  }
  for (const name of names) {
    const m = WRITER_FILE.exec(name) ?? IN_USE.exec(name);
    if (name === keep || !(m ? !processRunning(Number(m[1])) : isStaleTemp(name))) continue;
    try {
      fs.rmSync(path.join(dir, name), { force: true });
    } catch {
      // mapped by a process we cannot see (Windows): next time
    }
  }
}

/** A running process's mark in a cache folder it uses: another process's prune or stale sweep leaves the folder. */
const IN_USE = /^inuse-(\d+)$/;

/** Once per process and folder: this process uses the cache (its sessions map the file, a LoRA rebuild reads it again). */
function markInUse(dir: string): void {
  if (WeightCache.opened.has(dir)) return;
  WeightCache.opened.add(dir);
  try {
    fs.mkdirSync(dir, { recursive: true });
    fs.writeFileSync(path.join(dir, `inuse-${process.pid}`), '');
  } catch {
    // a read-only cache folder: nothing to mark, nothing anyone could remove either
  }
}

/** Whether another running process has marked the folder in use. */
function inUseElsewhere(dir: string): boolean {
  try {
    return fs.readdirSync(dir).some((name) => {
      const m = IN_USE.exec(name);
      return !!m && Number(m[1]) !== process.pid && processRunning(Number(m[1]));
    });
  } catch {
    return false;
  }
}

/** Bytes of a cache folder's files (its data file, and any a concurrent or killed writer left). */
function folderBytes(dir: string): number {
  return fs.readdirSync(dir).reduce((sum, name) => sum + (statOrUndefined(path.join(dir, name))?.size ?? 0), 0);
}

/** The source files a cache was converted from, with their size and time then. */
const SOURCE_FILE = 'source.json';

interface SourceStamp {
  file: string;
  size: number;
  mtimeMs: number;
}

function sourceFiles(src: TensorSource): SourceStamp[] {
  return [...new Set(src.names().map((n) => src.info(n).file))].sort().map((file) => {
    const st = fs.statSync(file);
    return { file, size: st.size, mtimeMs: st.mtimeMs };
  });
}

/**
 * Removes the complete caches whose source file has changed since (a checkpoint downloaded again,
 * replaced, touched): their key can never match again, so without a disk limit each left tens of
 * GB behind for good. A source that is gone (an unplugged drive) may come back: its cache stays;
 * so do those this process or another running one opened. Returns the removed folders, their bytes and the changed files.
 */
export function removeStaleWeightCaches(cacheDir: string, keep: ReadonlySet<string> = WeightCache.opened): { removed: string[]; bytes: number; files: string[] } {
  const removed: string[] = [];
  const files = new Set<string>();
  let bytes = 0;
  for (const name of fs.existsSync(cacheDir) ? fs.readdirSync(cacheDir) : []) {
    const dir = path.join(cacheDir, name);
    if (keep.has(dir) || inUseElsewhere(dir)) continue;
    let changed: string[];
    let size: number;
    try {
      if (!readIndex(dir)) continue;
      size = folderBytes(dir);
      const stamps = JSON.parse(fs.readFileSync(path.join(dir, SOURCE_FILE), 'utf8')) as SourceStamp[];
      changed = stamps.filter((s) => {
        const st = statOrUndefined(s.file);
        return st !== undefined && (st.size !== s.size || st.mtimeMs !== s.mtimeMs);
      }).map((s) => s.file);
    } catch {
      continue; // not a complete cache, or one from before source.json
    }
    if (!changed.length) continue;
    try {
      fs.rmSync(dir, { recursive: true, force: true });
    } catch {
      continue; // mapped by another process (Windows): next time
    }
    removed.push(dir);
    bytes += size;
    for (const f of changed) files.add(f);
  }
  return { removed, bytes, files: [...files] };
}

function statOrUndefined(file: string): fs.Stats | undefined {
  try {
    return fs.statSync(file);
  } catch {
    return undefined;
  }
}


/** What a worker needs to quantize one Linear weight [out, in] of the source. */
export function quantJob(src: TensorSource, name: string, { bits, block }: NBitsChoice, opts: WeightOptions): QuantJob {
  const t = src.info(name);
  if (t.shape.length !== 2) throw new Error(`${name}: a ${t.shape.length}-D tensor is no Linear weight`);
  if (!['F32', 'F16', 'BF16', 'F8_E4M3', 'F8_E5M2'].includes(t.dtype) && !isGgmlQuant(t.dtype)) throw new Error(`${name}: cannot quantize ${t.dtype} weights`);
  if (isGgmlQuant(t.dtype)) return { bytes: src.readBytes(name), dtype: t.dtype, n: t.shape[0], k: t.shape[1], opts: { bits, zeroPoints: false, blockSize: block } };
  const scale = fp8ScaleOf(src, name);
  return { bytes: src.readBytes(name), dtype: t.dtype as FloatDType, n: t.shape[0], k: t.shape[1], opts: { bits, zeroPoints: opts.zeroPoints ?? false, blockSize: block }, ...(scale ? { scale } : {}) };
}

function quantScales(x: Float32Array, rows: number, cols: number, mode: 'per-tensor' | 'per-channel'): number[] {
  const amax = new Array<number>(mode === 'per-channel' ? rows : 1).fill(0);
  for (let r = 0; r < rows; r++) {
    const k = mode === 'per-channel' ? r : 0;
    for (let c = r * cols, end = c + cols; c < end; c++) amax[k] = Math.max(amax[k], Math.abs(x[c]));
  }
  return amax.map((a) => (a > 0 ? a / E4M3_MAX : 1));
}

/**
 * Removes complete weight caches under `cacheDir`, least recently used first, until those left
 * take at most `maxBytes`; the ones this process or another running one opened stay (their sessions may map them). Caches
 * being written (no index yet) are not touched. Returns the removed folders and their bytes, and
 * the bytes left (over maxBytes when the caches in use alone take more).
 */
export function pruneWeightCaches(cacheDir: string, maxBytes: number, keep: ReadonlySet<string> = WeightCache.opened): { removed: string[]; bytes: number; left: number } {
  const caches: Array<{ dir: string; bytes: number; used: number }> = [];
  for (const name of fs.existsSync(cacheDir) ? fs.readdirSync(cacheDir) : []) {
    const dir = path.join(cacheDir, name);
    try {
      const index = readIndex(dir);
      if (!index) continue;
      caches.push({ dir, bytes: folderBytes(dir), used: fs.statSync(path.join(dir, index.indexFile)).mtimeMs });
    } catch {
      // not a complete cache
    }
  }
  let total = caches.reduce((s, c) => s + c.bytes, 0);
  const removed: string[] = [];
  let freed = 0;
  for (const c of caches.sort((a, b) => a.used - b.used)) {
    if (total <= maxBytes) break;
    if (keep.has(c.dir) || inUseElsewhere(c.dir)) continue;
    try {
      fs.rmSync(c.dir, { recursive: true, force: true });
    } catch {
      continue; // mapped by another process (Windows): next time
    }
    total -= c.bytes;
    freed += c.bytes;
    removed.push(c.dir);
  }
  return { removed, bytes: freed, left: total };
}
