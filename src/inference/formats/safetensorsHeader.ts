// The safetensors header: read, bounded and validated by the format's own rules (those the
// reference Rust crate enforces, so a file this accepts is one safetensors/diffusers/ComfyUI load):
// a header of at most 100,000,000 bytes of UTF-8 JSON, each tensor's byte range matching its dtype
// and shape, and the ranges covering the data section exactly — no overlap, no gap, nothing after.
// Beyond the crate: duplicate names are refused (JSON.parse would keep the last silently), and so
// are absurd tensor counts, before the whole header is parsed.

import * as fs from 'node:fs';
import { formatBytes } from '../../shared/bytes';
import { DTYPE_BYTES, isDType, TensorDType } from './dtypes';

/** safetensors' own limit (MAX_HEADER_SIZE in the Rust crate). */
export const MAX_HEADER_BYTES = 100_000_000;
/** FLUX.1's largest files (all-in-one checkpoints, LoRAs) hold a few thousand tensors; 100 k bounds the parse cost. */
export const MAX_TENSORS = 100_000;

export class SafetensorsError extends Error {
  constructor(readonly file: string, problem: string) {
    super(`${file}: ${problem}`);
    this.name = 'SafetensorsError';
  }
}

export interface TensorInfo {
  name: string;
  /** Block-quantized ggml types come only from GGUF files (gguf.ts). */
  dtype: TensorDType;
  shape: number[];
  /** Absolute path of the file that holds the bytes. */
  file: string;
  /** Byte offset of the tensor from the start of that file. */
  offset: number;
  byteLength: number;
  /**
   * The bytes are readBytes' decode of a quantized tensor (formats/t5Gguf.ts), not what lies at
   * `offset`: onnxruntime must get them from a copy (the weight cache), never from the file.
   */
  decoded?: boolean;
}

export interface Header {
  tensors: Map<string, TensorInfo>;
  metadata: Record<string, string>;
  /** 8 + the JSON length: where the data section starts. */
  headerBytes: number;
}

export function elementCount(shape: readonly number[]): number {
  return shape.reduce((a, b) => a * b, 1);
}

/**
 * What a file that is not safetensors is, by its first bytes, for the files people mix up with it
 * (a LoRA or checkpoint downloaded in another format, an image picked by mistake); undefined for
 * anything else. It names a format, never the bytes.
 */
function otherFormat(first: Buffer): string | undefined {
  const ascii = first.toString('latin1');
  if (ascii.startsWith('\x89PNG')) return 'a PNG image';
  if (ascii.startsWith('\xff\xd8\xff')) return 'a JPEG image';
  if (ascii.startsWith('RIFF')) return 'a RIFF file (a WebP image?)';
  if (ascii.startsWith('GGUF')) return 'a GGUF file: MajicFLUX reads GGUF for the transformer and T5 only (give the model folder or the file as the transformer); a LoRA must be .safetensors';
  // PyTorch's formats: a zip of pickles (torch.save since 1.6) or a bare pickle (protocol 2–5).
  if (ascii.startsWith('PK\x03\x04') || (first[0] === 0x80 && first[1] >= 2 && first[1] <= 5)) {
    return 'a PyTorch checkpoint (.ckpt, .pt, .pth or .bin: Python pickles, which can run code when loaded, so MajicFLUX does not read them): get the .safetensors version of it, or convert it with a trusted tool';
  }
  return undefined;
}

/** Parses and validates the header of the regular file `fd` of `size` bytes. */
export function parseHeader(file: string, fd: number, size: number): Header {
  const fail = (problem: string) => new SafetensorsError(file, problem);
  if (size < 8) throw fail(`not a safetensors file: only ${size} bytes (the file is truncated or empty)`);
  const lenBuf = Buffer.alloc(8);
  readFully(file, fd, lenBuf, 0);
  const headerLen = lenBuf.readBigUInt64LE(0);
  if (headerLen > BigInt(MAX_HEADER_BYTES)) {
    // The number read is not shown: from a file that is not safetensors it would echo the file's first bytes.
    const other = otherFormat(lenBuf);
    throw fail(other ? `not a safetensors file: it is ${other}` : `not a safetensors file (its header length is over the ${MAX_HEADER_BYTES}-byte limit), or it is corrupt`);
  }
  const n = Number(headerLen);
  if (8 + n > size) throw fail(`not a safetensors file, or it is truncated: its header length goes beyond the end of the ${size}-byte file`);
  const headerBuf = Buffer.alloc(n);
  readFully(file, fd, headerBuf, 8);
  const json = decodeUtf8(headerBuf, fail);
  // Counted before JSON.parse, so a header of a million tensors costs a scan, not a parse.
  const keys = topLevelKeys(json, MAX_TENSORS + 2);
  if (keys.filter((k) => k !== '__metadata__').length > MAX_TENSORS) {
    throw fail(`header lists more than ${MAX_TENSORS} tensors: not a FLUX.1 checkpoint (those hold a few thousand at most), or a corrupt file`);
  }
  let header: unknown;
  try {
    header = JSON.parse(json);
  } catch {
    // JSON.parse's message quotes the text: not shown, it is the file's content.
    throw fail('not a safetensors file (its header is not valid JSON), or it is corrupt');
  }
  if (typeof header !== 'object' || header === null || Array.isArray(header)) throw fail('header is not a JSON object');
  refuseDuplicates(keys, Object.keys(header).length, fail);
  const dataStart = 8 + n;
  const { tensors, metadata } = readEntries(file, header as Record<string, unknown>, dataStart);
  checkCoverage([...tensors.values()], dataStart, size - dataStart, fail);
  return { tensors, metadata, headerBytes: dataStart };
}

function readFully(file: string, fd: number, buf: Buffer, position: number): void {
  let done = 0;
  while (done < buf.byteLength) {
    const n = fs.readSync(fd, buf, done, buf.byteLength - done, position + done);
    if (n === 0) throw new SafetensorsError(file, 'unexpected end of file while reading the header');
    done += n;
  }
}

function decodeUtf8(buf: Buffer, fail: (p: string) => Error): string {
  try {
    // ignoreBOM keeps a BOM in the text, so JSON.parse refuses it as the reference reader does.
    return new TextDecoder('utf-8', { fatal: true, ignoreBOM: true }).decode(buf);
  } catch {
    throw fail('header is not valid UTF-8: the file is corrupt or not a safetensors file');
  }
}

/**
 * The keys of a top-level JSON object, decoded, in order and with repeats (JSON.parse keeps only
 * the last of each), stopping after `limit`. Linear time; on text that is not JSON it returns
 * something meaningless but never throws.
 */
export function topLevelKeys(json: string, limit: number): string[] {
  const keys: string[] = [];
  let i = json.search(/\S/);
  if (i < 0 || json[i] !== '{') return keys;
  let depth = 0;
  let expectKey = false;
  for (; i < json.length && keys.length < limit; i++) {
    const c = json.charCodeAt(i);
    if (c === 0x22 /* " */) {
      const end = stringEnd(json, i);
      if (end < 0) break;
      if (depth === 1 && expectKey) keys.push(decodeKey(json.slice(i, end + 1)));
      expectKey = false;
      i = end;
    } else if (c === 0x7b /* { */ || c === 0x5b /* [ */) {
      depth++;
      expectKey = depth === 1;
    } else if (c === 0x7d /* } */ || c === 0x5d /* ] */) {
      depth--;
    } else if (c === 0x2c /* , */ && depth === 1) {
      expectKey = true;
    }
  }
  return keys;
}

/** Index of the quote closing the string that opens at `start`, or -1. */
function stringEnd(s: string, start: number): number {
  let j = s.indexOf('"', start + 1);
  while (j >= 0) {
    let backslashes = 0;
    while (s.charCodeAt(j - 1 - backslashes) === 0x5c) backslashes++;
    if (backslashes % 2 === 0) return j;
    j = s.indexOf('"', j + 1);
  }
  return -1;
}

function decodeKey(quoted: string): string {
  if (!quoted.includes('\\')) return quoted.slice(1, -1);
  try {
    return String(JSON.parse(quoted));
  } catch {
    return quoted;
  }
}

function refuseDuplicates(keys: string[], distinct: number, fail: (p: string) => Error): void {
  if (keys.length === distinct) return;
  const seen = new Set<string>();
  for (const k of keys) {
    if (seen.has(k)) {
      const what = k === '__metadata__' ? '"__metadata__"' : `tensor "${k}"`;
      throw fail(`${what} is listed twice in the header (safetensors refuses this; a reader keeping the last one would read the wrong bytes): the file is corrupt`);
    }
    seen.add(k);
  }
}

function parseMetadata(file: string, entry: unknown): Record<string, string> {
  if (entry === null || entry === undefined) return {};
  if (typeof entry !== 'object' || Array.isArray(entry) || !Object.values(entry).every((v) => typeof v === 'string')) {
    throw new SafetensorsError(file, `"__metadata__" must be an object of strings, found ${JSON.stringify(entry).slice(0, 200)}`);
  }
  return entry as Record<string, string>;
}

function readEntries(file: string, header: Record<string, unknown>, dataStart: number) {
  const tensors = new Map<string, TensorInfo>();
  let metadata: Record<string, string> = {};
  for (const [name, entry] of Object.entries(header)) {
    if (name === '__metadata__') metadata = parseMetadata(file, entry);
    else tensors.set(name, tensorInfo(file, name, entry, dataStart));
  }
  return { tensors, metadata };
}

function tensorInfo(file: string, name: string, entry: unknown, dataStart: number): TensorInfo {
  const fail = (problem: string) => new SafetensorsError(file, `tensor "${name}" ${problem}`);
  const e = entry as { dtype?: unknown; shape?: unknown; data_offsets?: unknown };
  if (!isDType(e?.dtype)) throw fail(`has unknown dtype ${JSON.stringify(e?.dtype)}`);
  const shape = e.shape;
  if (!Array.isArray(shape) || !shape.every((d) => Number.isSafeInteger(d) && d >= 0)) throw fail(`has an invalid shape ${JSON.stringify(shape)}`);
  const offs = e.data_offsets;
  if (!Array.isArray(offs) || offs.length !== 2 || !offs.every((d) => Number.isSafeInteger(d) && d >= 0) || offs[0] > offs[1]) {
    throw fail(`has invalid data_offsets ${JSON.stringify(offs)}`);
  }
  const [begin, end] = offs as [number, number];
  const expected = elementCount(shape) * DTYPE_BYTES[e.dtype];
  if (!Number.isSafeInteger(expected)) throw fail(`(${e.dtype} ${JSON.stringify(shape)}) is impossibly large`);
  if (end - begin !== expected) throw fail(`(${e.dtype} ${JSON.stringify(shape)}) needs ${expected} bytes but its data_offsets span ${end - begin}`);
  return { name, dtype: e.dtype, shape: shape as number[], file, offset: dataStart + begin, byteLength: end - begin };
}

/** Every byte of the data section belongs to exactly one tensor, in offset order, as safetensors requires. */
function checkCoverage(infos: TensorInfo[], dataStart: number, dataSize: number, fail: (p: string) => Error): void {
  let last: TensorInfo | undefined;
  for (const t of infos) if (!last || t.offset + t.byteLength > last.offset + last.byteLength) last = t;
  const dataEnd = last ? last.offset + last.byteLength - dataStart : 0;
  if (dataEnd > dataSize) {
    throw fail(`file is truncated: its header describes ${dataEnd} bytes of tensor data (tensor "${last!.name}" ends there) but only ${dataSize} are present (${formatBytes(dataEnd - dataSize)} missing) — download it again`);
  }
  const sorted = [...infos].sort((a, b) => a.offset - b.offset || a.byteLength - b.byteLength);
  let covered = dataStart;
  let prev: TensorInfo | undefined;
  for (const t of sorted) {
    if (t.offset < covered) throw fail(`tensors "${prev!.name}" and "${t.name}" overlap in the data section: the file is corrupt`);
    if (t.offset > covered) {
      const where = prev ? `between tensors "${prev.name}" and "${t.name}"` : `before the first tensor ("${t.name}")`;
      throw fail(`${t.offset - covered} bytes ${where} are not covered by any tensor (safetensors refuses gaps): the file is corrupt`);
    }
    covered = t.offset + t.byteLength;
    prev = t;
  }
  const trailing = dataStart + dataSize - covered;
  if (trailing > 0) {
    const after = prev ? `after the last tensor ("${prev.name}")` : 'of data in a file with no tensors';
    throw fail(`${trailing} bytes ${after} are not covered by any tensor (safetensors refuses such files): the file is corrupt or something was appended to it`);
  }
}
