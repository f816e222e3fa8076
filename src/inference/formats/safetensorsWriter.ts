// Streaming safetensors writer: the header is computed from shapes up front, then each tensor's
// bytes are produced and written one at a time, so a 24 GB file never sits in memory.

import * as fs from 'node:fs';
import { DTYPE_BYTES, isDType, TensorDType } from './dtypes';
import { elementCount } from './safetensors';

export interface TensorSpec {
  name: string;
  /** A GGUF block-quantized type is refused: safetensors has no such dtype. */
  dtype: TensorDType;
  shape: number[];
  /** Produces the tensor's raw little-endian bytes (called once, in file order). */
  bytes: () => Uint8Array;
}

export function writeSafetensors(file: string, tensors: TensorSpec[], metadata: Record<string, string> = {}): number {
  const header: Record<string, unknown> = {};
  if (Object.keys(metadata).length) header.__metadata__ = metadata;
  let offset = 0;
  for (const t of tensors) {
    if (!isDType(t.dtype)) throw new Error(`tensor ${t.name}: safetensors has no dtype ${t.dtype} (a GGUF block-quantized type)`);
    const n = elementCount(t.shape) * DTYPE_BYTES[t.dtype];
    header[t.name] = { dtype: t.dtype, shape: t.shape, data_offsets: [offset, offset + n] };
    offset += n;
  }
  let json = JSON.stringify(header);
  json += ' '.repeat((8 - (json.length % 8)) % 8); // align the data section like the reference writer
  const headerBytes = Buffer.from(json, 'utf8');
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(headerBytes.length));
  const tmp = `${file}.partial`;
  const fd = fs.openSync(tmp, 'w');
  try {
    fs.writeSync(fd, len);
    fs.writeSync(fd, headerBytes);
    for (const t of tensors) {
      const b = t.bytes();
      const expected = elementCount(t.shape) * DTYPE_BYTES[t.dtype as keyof typeof DTYPE_BYTES];
      if (b.byteLength !== expected) throw new Error(`tensor ${t.name}: produced ${b.byteLength} bytes, expected ${expected}`);
      let done = 0;
      while (done < b.byteLength) done += fs.writeSync(fd, b, done, b.byteLength - done);
    }
    fs.fsyncSync(fd);
  } catch (e) {
    fs.closeSync(fd);
    fs.rmSync(tmp, { force: true });
    throw e;
  }
  fs.closeSync(fd);
  fs.renameSync(tmp, file);
  return 8 + headerBytes.length + offset;
}
