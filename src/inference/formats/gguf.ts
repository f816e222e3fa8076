// Lazy GGUF reader (llama.cpp's format, as city96 ships FLUX DiTs and T5 encoders in it): parses
// and validates the header, then serves tensors by name with positioned reads, like
// SafetensorsFile: a 12 GB file costs its header in memory, and float tensors are memory-mapped
// in place by onnxruntime (Weights.stored).
//
// Layout (little-endian): "GGUF", u32 version (2 or 3), u64 tensor count, u64 metadata count;
// metadata as (string key, u32 value type, value); tensor infos as (string name, u32 n_dims,
// u64 dims[n_dims] innermost first — reversed from PyTorch's shape —, u32 ggml type, u64 offset
// into the data section); then padding to `general.alignment` (default 32) and the data section,
// each tensor's offset a multiple of the alignment. A string is a u64 length and UTF-8 bytes.
// Every count is checked against the bytes left before anything is allocated for it.

import * as fs from 'node:fs';
import * as path from 'node:path';
import { formatBytes } from '../../shared/bytes';
import { DType, DTYPE_BYTES, TensorDType } from './dtypes';
import { canDecode, GGML_QUANT_BLOCKS, GgmlQuant, isGgmlQuant } from './ggml';
import { MAX_TENSORS, SafetensorsError, TensorInfo } from './safetensorsHeader';
import { OneFileReader } from './tensorReader';
import { openRegularSync } from '../system/regularFile';

/** A GGUF file, by its name (what openTensors and discovery go by). */
export function isGgufFile(file: string): boolean {
  return /\.gguf$/i.test(file);
}

export class GgufError extends SafetensorsError {
  constructor(file: string, problem: string) {
    super(file, problem);
    this.name = 'GgufError';
  }
}

/** GGUF's ggml type ids (ggml.h), with the float/int ones under safetensors' dtype names. */
export const GGML_TYPES: Record<number, TensorDType> = {
  0: 'F32', 1: 'F16', 2: 'Q4_0', 3: 'Q4_1', 6: 'Q5_0', 7: 'Q5_1', 8: 'Q8_0', 9: 'Q8_1', 10: 'Q2_K', 11: 'Q3_K', 12: 'Q4_K',
  13: 'Q5_K', 14: 'Q6_K', 15: 'Q8_K', 16: 'IQ2_XXS', 17: 'IQ2_XS', 18: 'IQ3_XXS', 19: 'IQ1_S', 20: 'IQ4_NL', 21: 'IQ3_S',
  22: 'IQ2_S', 23: 'IQ4_XS', 24: 'I8', 25: 'I16', 26: 'I32', 27: 'I64', 28: 'F64', 29: 'IQ1_M', 30: 'BF16', 34: 'TQ1_0', 35: 'TQ2_0',
};

export type GgufValue = number | bigint | boolean | string | GgufValue[];

const GGUF_MAGIC = 0x46554747; // "GGUF" read as a little-endian u32
const DEFAULT_ALIGNMENT = 32;
/** ggml's GGML_MAX_DIMS. */
const MAX_DIMS = 4;
/** Metadata of a FLUX GGUF is a few dozen keys; LLM files with vocabularies stay far below this. */
const MAX_METADATA = 1_000_000;
/** A string or array longer than these is corruption, not data (an LLM's vocabulary is ~256 k strings). */
const MAX_STRING_BYTES = 1 << 26;
const MAX_ARRAY = 1 << 24;
/** Fixed sizes of GGUF's value types 0–12 (string 8 and array 9 are variable: their least size). */
const VALUE_BYTES = [1, 1, 2, 2, 4, 4, 4, 1, 8, 12, 8, 8, 8];
const VALUE_NAMES = ['uint8', 'int8', 'uint16', 'int16', 'uint32', 'int32', 'float32', 'bool', 'string', 'array', 'uint64', 'int64', 'float64'];

/** Buffered positioned reads over the header, refusing to read past the file's end. */
class Cursor {
  pos = 0;
  private buf = Buffer.alloc(0);
  private bufStart = 0;

  constructor(readonly file: string, readonly fd: number, readonly size: number) {}

  left(): number {
    return this.size - this.pos;
  }

  /** The next n bytes (a view: read it before the next call). */
  private take(n: number, what: string): Buffer {
    if (n > this.left()) throw new GgufError(this.file, `file is truncated: it ends inside ${what} (at byte ${this.pos} of ${this.size}) — download it again`);
    const rel = this.pos - this.bufStart;
    if (rel < 0 || rel + n > this.buf.byteLength) {
      this.buf = Buffer.alloc(Math.min(Math.max(n, 1 << 20), this.left()));
      this.bufStart = this.pos;
      let done = 0;
      while (done < this.buf.byteLength) {
        const got = fs.readSync(this.fd, this.buf, done, this.buf.byteLength - done, this.pos + done);
        if (got === 0) throw new GgufError(this.file, 'unexpected end of file while reading the header (the file was truncated after it was opened?)');
        done += got;
      }
    }
    const at = this.pos - this.bufStart;
    this.pos += n;
    return this.buf.subarray(at, at + n);
  }

  u32(what: string): number {
    return this.take(4, what).readUInt32LE(0);
  }

  /** A u64 that must be a safe integer (counts, dims, offsets, lengths). */
  size64(what: string): number {
    const v = this.take(8, what).readBigUInt64LE(0);
    if (v > BigInt(Number.MAX_SAFE_INTEGER)) throw new GgufError(this.file, `${what} is ${v}, impossibly large: the file is corrupt or not GGUF`);
    return Number(v);
  }

  string(what: string): string {
    const n = this.size64(`the length of ${what}`);
    if (n > this.left()) throw new GgufError(this.file, `${what} is ${n} bytes long, more than the ${this.left()} bytes left in the file: the file is truncated or corrupt`);
    if (n > MAX_STRING_BYTES) throw new GgufError(this.file, `${what} is ${n} bytes long, over the ${MAX_STRING_BYTES}-byte limit for a GGUF string: the file is corrupt`);
    const bytes = this.take(n, what);
    try {
      return new TextDecoder('utf-8', { fatal: true }).decode(bytes);
    } catch {
      throw new GgufError(this.file, `${what} is not valid UTF-8: the file is corrupt`);
    }
  }

  value(type: number, what: string, depth = 0): GgufValue {
    switch (type) {
      case 0: return this.take(1, what).readUInt8(0);
      case 1: return this.take(1, what).readInt8(0);
      case 2: return this.take(2, what).readUInt16LE(0);
      case 3: return this.take(2, what).readInt16LE(0);
      case 4: return this.take(4, what).readUInt32LE(0);
      case 5: return this.take(4, what).readInt32LE(0);
      case 6: return this.take(4, what).readFloatLE(0);
      case 7: {
        const b = this.take(1, what).readUInt8(0);
        if (b > 1) throw new GgufError(this.file, `${what} is a bool of value ${b} (only 0 and 1 are): the file is corrupt`);
        return b === 1;
      }
      case 8: return this.string(what);
      case 9: {
        if (depth > 0) throw new GgufError(this.file, `${what} is an array of arrays, which GGUF metadata of a FLUX model never holds: the file is corrupt`);
        const elem = this.u32(`the element type of ${what}`);
        if (!(elem in VALUE_NAMES)) throw new GgufError(this.file, `${what} is an array of unknown value type ${elem}: the file is corrupt or from a newer GGUF version`);
        const n = this.size64(`the length of ${what}`);
        if (n * VALUE_BYTES[elem] > this.left()) throw new GgufError(this.file, `${what} claims ${n} ${VALUE_NAMES[elem]} elements, more than the ${this.left()} bytes left in the file: the file is truncated or corrupt`);
        if (n > MAX_ARRAY) throw new GgufError(this.file, `${what} claims ${n} elements, over the ${MAX_ARRAY} a GGUF array of a FLUX model could hold: the file is corrupt`);
        const out: GgufValue[] = new Array(n);
        for (let i = 0; i < n; i++) out[i] = this.value(elem, what, depth + 1);
        return out;
      }
      case 10: {
        const v = this.take(8, what).readBigUInt64LE(0);
        return v <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(v) : v;
      }
      case 11: {
        const v = this.take(8, what).readBigInt64LE(0);
        return v <= BigInt(Number.MAX_SAFE_INTEGER) && v >= BigInt(Number.MIN_SAFE_INTEGER) ? Number(v) : v;
      }
      case 12: return this.take(8, what).readDoubleLE(0);
      default: throw new GgufError(this.file, `${what} has unknown value type ${type}: the file is corrupt or from a newer GGUF version`);
    }
  }
}

export interface GgufHeader {
  version: number;
  metadata: Map<string, GgufValue>;
  tensors: Map<string, TensorInfo>;
  alignment: number;
  /** Where the data section starts. */
  dataStart: number;
}

/** Parses and validates the header of the regular file `fd` of `size` bytes. */
export function parseGgufHeader(file: string, fd: number, size: number): GgufHeader {
  const fail = (problem: string) => new GgufError(file, problem);
  if (size < 24) throw fail(`not a GGUF file: only ${size} bytes (the file is truncated or empty)`);
  const c = new Cursor(file, fd, size);
  if (c.u32('the magic') !== GGUF_MAGIC) throw fail('not a GGUF file (it does not start with "GGUF"), or it is corrupt');
  const version = c.u32('the version');
  if (version === 1) throw fail('is GGUF version 1 (from before August 2023), which is not supported: convert it again with a current llama.cpp or ComfyUI-GGUF');
  if (version !== 2 && version !== 3) {
    throw fail(version === 0x03000000 || version === 0x02000000 ? 'is a big-endian GGUF file, which is not supported: use the little-endian file' : `has GGUF version ${version}; versions 2 and 3 are supported (the file is corrupt or from a newer GGUF)`);
  }
  const tensorCount = c.size64('the tensor count');
  if (tensorCount > MAX_TENSORS) throw fail(`lists ${tensorCount} tensors, more than ${MAX_TENSORS}: not a FLUX.1 checkpoint (those hold a few thousand at most), or a corrupt file`);
  const kvCount = c.size64('the metadata count');
  if (kvCount > MAX_METADATA) throw fail(`lists ${kvCount} metadata entries, more than ${MAX_METADATA}: the file is corrupt`);
  // Each entry takes at least 12 bytes (an empty key's length and a value type), each tensor info 24.
  if (kvCount * 12 + tensorCount * 24 > c.left()) throw fail(`lists ${kvCount} metadata entries and ${tensorCount} tensors, more than its ${size} bytes can hold: the file is truncated or corrupt`);

  const metadata = new Map<string, GgufValue>();
  for (let i = 0; i < kvCount; i++) {
    const key = c.string(`metadata key ${i}`);
    if (metadata.has(key)) throw fail(`metadata key "${key}" is listed twice: the file is corrupt`);
    metadata.set(key, c.value(c.u32(`the value type of "${key}"`), `metadata "${key}"`));
  }
  const alignment = alignmentOf(metadata, fail);

  const raw: Array<{ name: string; dims: number[]; dtype: TensorDType; rel: number }> = [];
  const seen = new Set<string>();
  for (let i = 0; i < tensorCount; i++) {
    const name = c.string(`the name of tensor ${i}`);
    if (seen.has(name)) throw fail(`tensor "${name}" is listed twice (a reader keeping the last one would read the wrong bytes): the file is corrupt`);
    seen.add(name);
    const nDims = c.u32(`the dimension count of tensor "${name}"`);
    if (nDims > MAX_DIMS) throw fail(`tensor "${name}" has ${nDims} dimensions; GGUF allows at most ${MAX_DIMS}: the file is corrupt`);
    const dims: number[] = [];
    for (let d = 0; d < nDims; d++) dims.push(c.size64(`dimension ${d} of tensor "${name}"`));
    const typeId = c.u32(`the type of tensor "${name}"`);
    const dtype = GGML_TYPES[typeId];
    if (dtype === undefined) throw fail(`tensor "${name}" has unknown ggml type ${typeId}: the file is corrupt or from a newer GGUF`);
    const rel = c.size64(`the offset of tensor "${name}"`);
    if (rel % alignment !== 0) throw fail(`tensor "${name}" starts at data offset ${rel}, not a multiple of the file's alignment ${alignment}: the file is corrupt`);
    raw.push({ name, dims, dtype, rel });
  }
  const dataStart = Math.ceil(c.pos / alignment) * alignment;
  const tensors = new Map<string, TensorInfo>();
  for (const r of raw) tensors.set(r.name, tensorInfo(file, r, dataStart, fail));
  checkExtents([...tensors.values()], size, fail);
  return { version, metadata, tensors, alignment, dataStart };
}

function alignmentOf(metadata: Map<string, GgufValue>, fail: (p: string) => Error): number {
  const a = metadata.get('general.alignment');
  if (a === undefined) return DEFAULT_ALIGNMENT;
  if (typeof a !== 'number' || !Number.isInteger(a) || a < 1 || a > 1 << 20 || (a & (a - 1)) !== 0) {
    throw fail(`"general.alignment" is ${JSON.stringify(typeof a === 'bigint' ? String(a) : a)}; it must be a power of two: the file is corrupt`);
  }
  return a;
}

function tensorInfo(file: string, r: { name: string; dims: number[]; dtype: TensorDType; rel: number }, dataStart: number, fail: (p: string) => Error): TensorInfo {
  const shape = [...r.dims].reverse();
  const elements = r.dims.reduce((a, b) => a * b, 1);
  if (!Number.isSafeInteger(elements)) throw fail(`tensor "${r.name}" (${JSON.stringify(shape)}) is impossibly large: the file is corrupt`);
  let byteLength: number;
  if (isGgmlQuant(r.dtype)) {
    const { block, bytes } = GGML_QUANT_BLOCKS[r.dtype];
    if ((r.dims[0] ?? 1) % block !== 0) throw fail(`tensor "${r.name}" is ${r.dtype} with rows of ${r.dims[0] ?? 1} elements, not a multiple of its ${block}-element blocks: the file is corrupt`);
    byteLength = (elements / block) * bytes;
  } else {
    byteLength = elements * DTYPE_BYTES[r.dtype as DType];
  }
  if (!Number.isSafeInteger(byteLength) || !Number.isSafeInteger(dataStart + r.rel + byteLength)) throw fail(`tensor "${r.name}" (${r.dtype} ${JSON.stringify(shape)}) is impossibly large: the file is corrupt`);
  return { name: r.name, dtype: r.dtype, shape, file, offset: dataStart + r.rel, byteLength };
}

/** Each tensor inside the file, none overlapping another (padding between them is the format's). */
function checkExtents(infos: TensorInfo[], size: number, fail: (p: string) => Error): void {
  let last: TensorInfo | undefined;
  for (const t of infos) if (!last || t.offset + t.byteLength > last.offset + last.byteLength) last = t;
  if (last && last.offset + last.byteLength > size) {
    const end = last.offset + last.byteLength;
    throw fail(`file is truncated: tensor "${last.name}" ends at byte ${end} but the file has ${size} (${formatBytes(end - size)} missing) — download it again`);
  }
  const sorted = [...infos].sort((a, b) => a.offset - b.offset);
  for (let i = 1; i < sorted.length; i++) {
    const a = sorted[i - 1];
    const b = sorted[i];
    if (b.offset < a.offset + a.byteLength) throw fail(`tensors "${a.name}" and "${b.name}" overlap in the data section: the file is corrupt`);
  }
}

export class GgufFile extends OneFileReader {
  readonly path: string;
  readonly version: number;
  readonly metadata: Map<string, GgufValue>;
  readonly alignment: number;
  protected readonly tensors: Map<string, TensorInfo>;
  private handle: number | undefined;

  private constructor(file: string, h: GgufHeader, fd: number) {
    super();
    this.path = file;
    this.version = h.version;
    this.metadata = h.metadata;
    this.alignment = h.alignment;
    this.tensors = h.tensors;
    this.handle = fd;
  }

  static open(file: string): GgufFile {
    const abs = path.resolve(file);
    const { fd, size } = openRegularSync(abs, (problem, why) => new GgufError(abs, why.kind === 'a folder' ? 'is a folder, not a .gguf file' : problem));
    try {
      return new GgufFile(abs, parseGgufHeader(abs, fd, size), fd);
    } catch (e) {
      fs.closeSync(fd);
      throw e;
    }
  }

  protected error(problem: string): Error {
    return new GgufError(this.path, problem);
  }

  override readBytes(name: string): Buffer {
    const t = this.info(name);
    if (isGgmlQuant(t.dtype) && !canDecode(t.dtype)) throw unsupported(this.path, t.name, t.dtype);
    return super.readBytes(name);
  }

  protected fd(): number {
    // Reopened by path: refuse whatever may have replaced the file since (a FIFO would block).
    this.handle ??= openRegularSync(this.path, (problem) => new GgufError(this.path, problem)).fd;
    return this.handle;
  }

  close(): void {
    if (this.handle !== undefined) fs.closeSync(this.handle);
    this.handle = undefined;
  }
}

function unsupported(file: string, name: string, dtype: GgmlQuant): GgufError {
  return new GgufError(file, `tensor "${name}" is ${dtype}, a GGUF quantization this version cannot read (it reads F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, Q2_K, Q3_K, Q4_K, Q5_K and Q6_K): download a file in one of those`);
}

/** What `inspect` and the load log say about a source's GGUF quantized tensors: how each type is run. */
export function ggufNotes(tensors: { names(): string[]; info(n: string): TensorInfo }): string[] {
  const count = new Map<GgmlQuant, number>();
  const decoded: string[] = [];
  for (const n of tensors.names()) {
    const t = tensors.info(n);
    if (isGgmlQuant(t.dtype)) count.set(t.dtype, (count.get(t.dtype) ?? 0) + 1);
    if (t.decoded) decoded.push(n);
  }
  // Tables read by Gather (a T5 GGUF's token_embd): served as float32, so counted as F32 above.
  const decodedNote = decoded.length ? [`${decoded.join(', ')}: GGUF-quantized, decoded exactly to float32 at load (into the weight cache)`] : [];
  return decodedNote.concat([...count].map(([d, n]) => {
    const what = `${n} GGUF ${d} tensor${n > 1 ? 's' : ''}`;
    if (d === 'Q8_0' || d === 'Q4_0') return `${what}: run as ${d === 'Q8_0' ? 'int8' : 'int4'} MatMulNBits blocks of 32, bit for bit (no conversion)`;
    if (canDecode(d)) return `${what}: decoded exactly and re-quantized to int8 MatMulNBits blocks of 32 at load (a small rounding change; Q8_0 or Q4_0 files run unchanged)`;
    return `${what}: not supported (use a Q8_0, Q4_0, Q4_1, Q5_0, Q5_1 or Q2_K–Q6_K file)`;
  }));
}
