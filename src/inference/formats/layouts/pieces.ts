// Logical tensors described as row ranges of the tensors in the user's files, so graph builders
// can keep the bytes memory-mapped instead of copying them.

import * as fs from 'node:fs';
import { TensorDType } from '../dtypes';
import { SafetensorsError, TensorInfo } from '../safetensors';

/** Rows [start, end) of a tensor in a file. Rows (first dimension) of a row-major tensor are one contiguous byte range. */
export interface TensorPiece {
  source: TensorInfo;
  rows: [number, number];
  /** [end - start, ...source.shape.slice(1)] (the source's shape when it is whole). */
  shape: number[];
  /** Absolute byte offset in source.file. */
  offset: number;
  byteLength: number;
  /** The piece is the entire source tensor. */
  whole: boolean;
}

/** A tensor under its BFL name: the concatenation along dim 0 of its pieces, in order. */
export interface LogicalTensor {
  name: string;
  dtype: TensorDType;
  shape: number[];
  pieces: TensorPiece[];
}

/** A named section of a fused tensor (q, k, v, mlp; shift, scale, gate…): always one contiguous piece. */
export interface TensorPart {
  part: string;
  piece: TensorPiece;
}

export function rowCount(shape: readonly number[]): number {
  return shape.length ? shape[0] : 1;
}

// From the byte length, not dtype × shape: a row of a GGUF block-quantized tensor is whole blocks.
function rowBytes(t: TensorInfo): number {
  return t.byteLength / rowCount(t.shape);
}

export function pieceOf(source: TensorInfo, start = 0, end = rowCount(source.shape)): TensorPiece {
  const rb = rowBytes(source);
  const whole = start === 0 && end === rowCount(source.shape);
  return {
    source,
    rows: [start, end],
    shape: whole ? [...source.shape] : [end - start, ...source.shape.slice(1)],
    offset: source.offset + start * rb,
    byteLength: (end - start) * rb,
    whole,
  };
}

/** Logical rows [start, end) of a concatenation of pieces. */
export function sliceRows(pieces: TensorPiece[], start: number, end: number): TensorPiece[] {
  const out: TensorPiece[] = [];
  let base = 0;
  for (const p of pieces) {
    const n = p.rows[1] - p.rows[0];
    const s = Math.max(start, base);
    const e = Math.min(end, base + n);
    if (s < e) out.push(pieceOf(p.source, p.rows[0] + s - base, p.rows[0] + e - base));
    base += n;
  }
  return out;
}

/** Reads a byte range of a file (the pieces of one tensor may lie in several files). */
export function readPiece(p: TensorPiece): Buffer {
  const buf = Buffer.allocUnsafe(p.byteLength);
  const fd = fs.openSync(p.source.file, 'r');
  try {
    let done = 0;
    while (done < p.byteLength) {
      const n = fs.readSync(fd, buf, done, p.byteLength - done, p.offset + done);
      if (n === 0) throw new SafetensorsError(p.source.file, `unexpected end of file while reading tensor "${p.source.name}"`);
      done += n;
    }
  } finally {
    fs.closeSync(fd);
  }
  return buf;
}
