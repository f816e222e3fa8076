// Lazy safetensors reader: parses and validates the header, then reads tensors by name with
// positioned reads. A 12 GB checkpoint costs only its header in memory.
// Format: u64 little-endian header length N, N bytes of JSON, then the data section.

import * as fs from 'node:fs';
import * as path from 'node:path';
import { DType, DTYPE_BYTES, isDType, toFloat16Bits, toFloat32 } from './dtypes';

export const MAX_HEADER_BYTES = 100 * 1024 * 1024;

export interface TensorInfo {
  name: string;
  dtype: DType;
  shape: number[];
  /** Absolute path of the file that holds the bytes. */
  file: string;
  /** Byte offset of the tensor from the start of that file. */
  offset: number;
  byteLength: number;
}

/** Anything that serves tensors by name: one file or a sharded set. */
export interface TensorSource {
  readonly path: string;
  names(): string[];
  has(name: string): boolean;
  info(name: string): TensorInfo;
  readBytes(name: string): Buffer;
  readF32(name: string): Float32Array;
  /** IEEE half bits. */
  readF16(name: string): Uint16Array;
  close(): void;
}

export class SafetensorsError extends Error {
  constructor(readonly file: string, problem: string) {
    super(`${file}: ${problem}`);
    this.name = 'SafetensorsError';
  }
}

export function elementCount(shape: readonly number[]): number {
  return shape.reduce((a, b) => a * b, 1);
}

abstract class Reader implements TensorSource {
  abstract readonly path: string;
  abstract names(): string[];
  abstract info(name: string): TensorInfo;
  abstract close(): void;
  protected abstract fd(file: string): number;

  has(name: string): boolean {
    return this.names().includes(name);
  }

  readBytes(name: string): Buffer {
    const t = this.info(name);
    const buf = Buffer.allocUnsafe(t.byteLength);
    let done = 0;
    while (done < t.byteLength) {
      const n = fs.readSync(this.fd(t.file), buf, done, t.byteLength - done, t.offset + done);
      if (n === 0) throw new SafetensorsError(t.file, `unexpected end of file while reading tensor "${name}" (the file was truncated after it was opened?)`);
      done += n;
    }
    return buf;
  }

  readF32(name: string): Float32Array {
    return toFloat32(this.readBytes(name), this.info(name).dtype);
  }

  readF16(name: string): Uint16Array {
    return toFloat16Bits(this.readBytes(name), this.info(name).dtype);
  }
}

export class SafetensorsFile extends Reader {
  readonly path: string;
  readonly metadata: Record<string, string>;
  readonly headerBytes: number;
  private readonly tensors: Map<string, TensorInfo>;
  private handle: number | undefined;

  private constructor(file: string, tensors: Map<string, TensorInfo>, metadata: Record<string, string>, headerBytes: number) {
    super();
    this.path = file;
    this.tensors = tensors;
    this.metadata = metadata;
    this.headerBytes = headerBytes;
  }

  static open(file: string): SafetensorsFile {
    const abs = path.resolve(file);
    let fd: number;
    try {
      // Non-blocking open: a FIFO would otherwise block here until a writer comes; parseHeader then refuses it.
      fd = fs.openSync(abs, fs.constants.O_RDONLY | (fs.constants.O_NONBLOCK ?? 0));
    } catch (e) {
      throw new SafetensorsError(abs, `cannot open: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
    }
    try {
      const { tensors, metadata, headerBytes } = parseHeader(abs, fd);
      const f = new SafetensorsFile(abs, tensors, metadata, headerBytes);
      f.handle = fd;
      return f;
    } catch (e) {
      fs.closeSync(fd);
      throw e;
    }
  }

  names(): string[] {
    return [...this.tensors.keys()];
  }

  override has(name: string): boolean {
    return this.tensors.has(name);
  }

  info(name: string): TensorInfo {
    const t = this.tensors.get(name);
    if (!t) throw new SafetensorsError(this.path, `no tensor named "${name}" (the file has ${this.tensors.size} tensors${nearest(name, this.names())})`);
    return t;
  }

  /** The open file descriptor (reopened after close()). */
  descriptor(): number {
    if (this.handle === undefined) this.handle = fs.openSync(this.path, 'r');
    return this.handle;
  }

  protected fd(): number {
    return this.descriptor();
  }

  close(): void {
    if (this.handle !== undefined) fs.closeSync(this.handle);
    this.handle = undefined;
  }
}

function readFully(file: string, fd: number, buf: Buffer, position: number): void {
  let done = 0;
  while (done < buf.byteLength) {
    const n = fs.readSync(fd, buf, done, buf.byteLength - done, position + done);
    if (n === 0) throw new SafetensorsError(file, 'unexpected end of file while reading the header');
    done += n;
  }
}

function parseMetadata(file: string, entry: unknown): Record<string, string> {
  if (entry === null || entry === undefined) return {};
  if (typeof entry !== 'object' || Array.isArray(entry) || !Object.values(entry).every((v) => typeof v === 'string')) {
    throw new SafetensorsError(file, `"__metadata__" must be an object of strings, found ${JSON.stringify(entry).slice(0, 200)}`);
  }
  return entry as Record<string, string>;
}

function parseHeader(file: string, fd: number) {
  const st = fs.fstatSync(fd);
  if (!st.isFile()) throw new SafetensorsError(file, st.isDirectory() ? 'is a folder, not a .safetensors file' : 'is not a regular file');
  const size = st.size;
  if (size < 8) throw new SafetensorsError(file, `not a safetensors file: only ${size} bytes (the file is truncated or empty)`);
  const lenBuf = Buffer.alloc(8);
  readFully(file, fd, lenBuf, 0);
  const headerLen = lenBuf.readBigUInt64LE(0);
  if (headerLen > BigInt(MAX_HEADER_BYTES)) {
    // The number read is not shown: from a file that is not safetensors it would echo the file's first bytes.
    throw new SafetensorsError(file, `not a safetensors file (its header length is over the ${MAX_HEADER_BYTES}-byte limit), or it is corrupt`);
  }
  const n = Number(headerLen);
  if (8 + n > size) {
    throw new SafetensorsError(file, `not a safetensors file, or it is truncated: its header length goes beyond the end of the ${size}-byte file`);
  }
  const headerBuf = Buffer.alloc(n);
  readFully(file, fd, headerBuf, 8);
  let header: unknown;
  try {
    header = JSON.parse(headerBuf.toString('utf8'));
  } catch (e) {
    // JSON.parse's message quotes the text: not shown, it is the file's content.
    throw new SafetensorsError(file, 'not a safetensors file (its header is not valid JSON), or it is corrupt');
  }
  if (typeof header !== 'object' || header === null || Array.isArray(header)) {
    throw new SafetensorsError(file, 'header is not a JSON object');
  }
  const dataStart = 8 + n;
  const dataSize = size - dataStart;
  const tensors = new Map<string, TensorInfo>();
  let metadata: Record<string, string> = {};
  const ranges: Array<[number, number, string]> = [];
  let dataEnd = 0;
  let lastTensor = '';
  for (const [name, entry] of Object.entries(header as Record<string, unknown>)) {
    if (name === '__metadata__') {
      metadata = parseMetadata(file, entry);
      continue;
    }
    const e = entry as { dtype?: unknown; shape?: unknown; data_offsets?: unknown };
    if (!isDType(e?.dtype)) throw new SafetensorsError(file, `tensor "${name}" has unknown dtype ${JSON.stringify(e?.dtype)}`);
    const shape = e.shape;
    if (!Array.isArray(shape) || !shape.every((d) => Number.isSafeInteger(d) && d >= 0)) {
      throw new SafetensorsError(file, `tensor "${name}" has an invalid shape ${JSON.stringify(shape)}`);
    }
    const offs = e.data_offsets;
    if (!Array.isArray(offs) || offs.length !== 2 || !offs.every((d) => Number.isSafeInteger(d) && d >= 0) || offs[0] > offs[1]) {
      throw new SafetensorsError(file, `tensor "${name}" has invalid data_offsets ${JSON.stringify(offs)}`);
    }
    const [begin, end] = offs as [number, number];
    const expected = elementCount(shape) * DTYPE_BYTES[e.dtype];
    if (end - begin !== expected) {
      throw new SafetensorsError(file, `tensor "${name}" (${e.dtype} ${JSON.stringify(shape)}) needs ${expected} bytes but its data_offsets span ${end - begin}`);
    }
    if (end > dataEnd) {
      dataEnd = end;
      lastTensor = name;
    }
    ranges.push([begin, end, name]);
    tensors.set(name, { name, dtype: e.dtype, shape: shape as number[], file, offset: dataStart + begin, byteLength: end - begin });
  }
  if (dataEnd > dataSize) {
    throw new SafetensorsError(file, `file is truncated: its header describes ${dataEnd} bytes of tensor data (tensor "${lastTensor}" ends there) but only ${dataSize} are present (${fmtBytes(dataEnd - dataSize)} missing) — download it again`);
  }
  // Sorted by start, any overlap shows between a range and the one ending furthest before it.
  const nonEmpty = ranges.filter(([b, e]) => e > b).sort((a, b) => a[0] - b[0] || a[1] - b[1]);
  let furthest = nonEmpty[0];
  for (let i = 1; i < nonEmpty.length; i++) {
    const [b, e, nm] = nonEmpty[i];
    if (b < furthest[1]) throw new SafetensorsError(file, `tensors "${furthest[2]}" and "${nm}" overlap in the data section: the file is corrupt`);
    if (e > furthest[1]) furthest = nonEmpty[i];
  }
  return { tensors, metadata, headerBytes: dataStart };
}

/** Sharded checkpoint: `*.safetensors.index.json` with a `weight_map` of tensor name → shard file. */
export class ShardedSafetensors extends Reader {
  readonly path: string;
  readonly shards: SafetensorsFile[];
  private readonly byName: Map<string, SafetensorsFile>;

  private constructor(indexPath: string, shards: SafetensorsFile[], byName: Map<string, SafetensorsFile>) {
    super();
    this.path = indexPath;
    this.shards = shards;
    this.byName = byName;
  }

  static open(indexPath: string): ShardedSafetensors {
    const abs = path.resolve(indexPath);
    let index: { weight_map?: Record<string, string> };
    try {
      index = JSON.parse(fs.readFileSync(abs, 'utf8'));
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      throw new SafetensorsError(abs, code ? `cannot read index: ${code}` : `index is not valid JSON (${(e as Error).message})`);
    }
    if (!index || typeof index.weight_map !== 'object' || index.weight_map === null) {
      throw new SafetensorsError(abs, 'index has no "weight_map" object');
    }
    const dir = path.dirname(abs);
    for (const [name, shard] of Object.entries(index.weight_map)) {
      if (typeof shard !== 'string' || !shard || path.isAbsolute(shard) || shard.split(/[\\/]/).includes('..')) {
        throw new SafetensorsError(abs, `index maps tensor "${name}" to ${JSON.stringify(shard)}, which is not a shard file name in ${dir}`);
      }
    }
    const files = new Map<string, SafetensorsFile>();
    const byName = new Map<string, SafetensorsFile>();
    const missing = [...new Set(Object.values(index.weight_map))].filter((s) => !fs.existsSync(path.join(dir, s)));
    if (missing.length) {
      throw new SafetensorsError(abs, `shard${missing.length > 1 ? 's' : ''} listed in the index not found in ${dir}: ${missing.join(', ')}`);
    }
    try {
      for (const [name, shard] of Object.entries(index.weight_map)) {
        let f = files.get(shard);
        if (!f) {
          f = SafetensorsFile.open(path.join(dir, shard));
          files.set(shard, f);
        }
        if (!f.has(name)) throw new SafetensorsError(f.path, `the index ${path.basename(abs)} puts tensor "${name}" in this shard, but the shard has no such tensor`);
        byName.set(name, f);
      }
    } catch (e) {
      for (const f of files.values()) f.close();
      throw e;
    }
    return new ShardedSafetensors(abs, [...files.values()], byName);
  }

  names(): string[] {
    return [...this.byName.keys()];
  }

  override has(name: string): boolean {
    return this.byName.has(name);
  }

  info(name: string): TensorInfo {
    const f = this.byName.get(name);
    if (!f) throw new SafetensorsError(this.path, `no tensor named "${name}" in any shard${nearest(name, this.names())}`);
    return f.info(name);
  }

  protected fd(file: string): number {
    return this.shards.find((s) => s.path === file)!.descriptor();
  }

  close(): void {
    for (const s of this.shards) s.close();
  }
}

/**
 * Open a checkpoint given a `.safetensors` file, a `.safetensors.index.json`, or a folder holding
 * exactly one of `model.safetensors(.index.json)` / `diffusion_pytorch_model.safetensors(.index.json)`
 * or a single `*.safetensors` file.
 */
export function openTensors(p: string): TensorSource {
  const abs = path.resolve(p);
  let st: fs.Stats;
  try {
    st = fs.statSync(abs);
  } catch {
    throw new SafetensorsError(abs, 'no such file or folder');
  }
  if (st.isFile()) return abs.endsWith('.index.json') ? ShardedSafetensors.open(abs) : SafetensorsFile.open(abs);
  const entries = fs.readdirSync(abs);
  const index = entries.filter((e) => e.endsWith('.safetensors.index.json'));
  if (index.length === 1) return ShardedSafetensors.open(path.join(abs, index[0]));
  if (index.length > 1) throw new SafetensorsError(abs, `folder has ${index.length} .safetensors.index.json files; open the one you mean: ${index.join(', ')}`);
  const files = entries.filter((e) => e.endsWith('.safetensors'));
  if (files.length === 1) return SafetensorsFile.open(path.join(abs, files[0]));
  if (files.length === 0) throw new SafetensorsError(abs, 'folder has no .safetensors file');
  throw new SafetensorsError(abs, `folder has ${files.length} .safetensors files and no .safetensors.index.json to say how they fit together: ${files.join(', ')}`);
}

function nearest(name: string, names: string[]): string {
  const tail = name.split('.').slice(-2).join('.');
  const similar = names.filter((n) => n.endsWith(tail)).slice(0, 3);
  return similar.length ? `; similar names: ${similar.join(', ')}` : '';
}

export function fmtBytes(n: number): string {
  const units = ['B', 'KB', 'MB', 'GB', 'TB'];
  let i = 0;
  let v = n;
  while (v >= 1000 && i < units.length - 1) {
    v /= 1000;
    i++;
  }
  return `${v.toFixed(i ? 1 : 0)} ${units[i]}`;
}
