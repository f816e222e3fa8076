// Writes safetensors files for tests: well-formed ones from shapes (zero-filled unless data is
// given), header-only sparse ones of any size, and deliberately broken ones from a raw header.

import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

const BYTES: Record<string, number> = {
  F64: 8, F32: 4, F16: 2, BF16: 2, F8_E4M3: 1, F8_E5M2: 1, I64: 8, I32: 4, I16: 2, I8: 1, U64: 8, U32: 4, U16: 2, U8: 1, BOOL: 1,
};

export interface TestTensor {
  dtype: string;
  shape: number[];
  /** Raw little-endian bytes; zeros when absent. */
  data?: Uint8Array;
}

export type TestTensors = Record<string, TestTensor>;

export function byteSize(t: { dtype: string; shape: number[] }): number {
  const size = BYTES[t.dtype];
  if (size === undefined) throw new Error(`test helper: no byte size for dtype ${t.dtype}`);
  return t.shape.reduce((a, b) => a * b, 1) * size;
}

/** The header object and data length for tensors laid out back to back in the given order. */
export function headerFor(tensors: TestTensors, metadata?: Record<string, string>): { header: Record<string, unknown>; dataBytes: number } {
  const header: Record<string, unknown> = {};
  if (metadata) header.__metadata__ = metadata;
  let offset = 0;
  for (const [name, t] of Object.entries(tensors)) {
    const n = byteSize(t);
    header[name] = { dtype: t.dtype, shape: t.shape, data_offsets: [offset, offset + n] };
    offset += n;
  }
  return { header, dataBytes: offset };
}

function headerBytes(header: unknown): Buffer {
  const json = typeof header === 'string' ? header : JSON.stringify(header);
  const body = Buffer.from(json, 'utf8');
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(body.length));
  return Buffer.concat([len, body]);
}

export function writeSafetensors(file: string, tensors: TestTensors, metadata?: Record<string, string>): string {
  const { header } = headerFor(tensors, metadata);
  const parts: Buffer[] = [headerBytes(header)];
  for (const [name, t] of Object.entries(tensors)) {
    const n = byteSize(t);
    if (t.data && t.data.byteLength !== n) throw new Error(`test helper: ${name} has ${t.data.byteLength} bytes, shape needs ${n}`);
    parts.push(t.data ? Buffer.from(t.data.buffer, t.data.byteOffset, t.data.byteLength) : Buffer.alloc(n));
  }
  fs.mkdirSync(path.dirname(file), { recursive: true });
  fs.writeFileSync(file, Buffer.concat(parts));
  return file;
}

/**
 * A file with a real header and a data section of the full size that occupies no disk space
 * (a hole made by truncate): for real-size checkpoints without their weights.
 */
export function writeSparseSafetensors(file: string, tensors: Record<string, { dtype: string; shape: number[] }>, metadata?: Record<string, string>): string {
  const { header, dataBytes } = headerFor(tensors, metadata);
  const head = headerBytes(header);
  fs.mkdirSync(path.dirname(file), { recursive: true });
  fs.writeFileSync(file, head);
  fs.truncateSync(file, head.length + dataBytes);
  return file;
}

/**
 * A file from a raw header (object or JSON text) and a data section of `data` bytes (or the
 * given bytes). `declaredLength` overrides the u64 header length.
 */
export function writeRawSafetensors(file: string, header: unknown, data: number | Uint8Array = 0, declaredLength?: bigint): string {
  const head = headerBytes(header);
  if (declaredLength !== undefined) head.writeBigUInt64LE(declaredLength, 0);
  const body = typeof data === 'number' ? Buffer.alloc(data) : Buffer.from(data);
  fs.mkdirSync(path.dirname(file), { recursive: true });
  fs.writeFileSync(file, Buffer.concat([head, body]));
  return file;
}

/** A `*.safetensors.index.json` for shards written with writeSafetensors. */
export function writeIndex(file: string, weightMap: Record<string, string>, metadata: Record<string, unknown> = {}): string {
  fs.mkdirSync(path.dirname(file), { recursive: true });
  fs.writeFileSync(file, JSON.stringify({ metadata, weight_map: weightMap }, null, 2));
  return file;
}

/** A fresh temporary folder, removed by the returned cleanup function. */
export function tempDir(prefix = 'majicflux-test-'): { dir: string; cleanup: () => void } {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), prefix));
  return { dir, cleanup: () => fs.rmSync(dir, { recursive: true, force: true }) };
}

/** Float32 values as raw bytes. */
export function f32Bytes(values: number[]): Uint8Array {
  return new Uint8Array(Float32Array.from(values).buffer);
}
