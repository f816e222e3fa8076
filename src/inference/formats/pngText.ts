// PNG text chunks without pixels: build the `parameters`/`majicflux` chunks, find chunks, decode
// tEXt/zTXt/iTXt, and read the parameters back (the infotext itself: infotext.ts). Pure JS (zlib + Buffer, no sharp), so the
// extension host can read a PNG's parameters cheaply — and bounded, since the PNG may be hostile:
// only the head of a file is read, never from a FIFO or device, each text chunk inflates to a
// bounded size (all of them to another), and infotext is parsed in linear time.

import * as zlib from 'node:zlib';
import { UserError } from '../../shared/api';
import { checkParameters, ImageParameters, jsonChunkParameters, parseA1111Parameters } from './infotext';
import { readRegularFile } from '../system/regularFile';
import { parseJsonParameters } from './infotextSwarm';
import { parseComfyPrompt } from './infotextComfy';
import { parseInvokeMetadata } from './infotextInvoke';
import { jsonObject } from './infotextExtras';

export * from './infotext';

export const PARAMETERS_KEYWORD = 'parameters';
export const JSON_KEYWORD = 'majicflux';

const PNG_SIGNATURE = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);

/** Read from a PNG file when looking for its parameters: text chunks sit before the image data. */
export const MAX_PNG_READ_BYTES = 32 * 2 ** 20;
/** Inflated size of one zTXt/iTXt chunk (a large ComfyUI workflow is a few MB). */
export const MAX_TEXT_CHUNK_BYTES = 8 * 2 ** 20;
/** Inflated size of all of a file's compressed text chunks together. */
export const MAX_TEXT_TOTAL_BYTES = 32 * 2 ** 20;
/** Longest `parameters` infotext parsed into fields (a prompt is at most 20,000 characters). */
export const MAX_INFOTEXT_CHARS = 128 * 1024;
/** ComfyUI graphs (every node of the run) and InvokeAI's JSON are larger than A1111 text: read up to this many characters. */
const MAX_COMFY_CHARS = 4 * 1024 * 1024;

/** A PNG whose parameters cannot be read: says which file and why; no stack trace for the user. */
export class PngReadError extends UserError {
  constructor(readonly file: string, problem: string) {
    super(`${file}: ${problem}`);
    this.name = 'PngReadError';
  }
}

// ---------------------------------------------------------------------------------------------
// Chunks

const CRC_TABLE = (() => {
  const t = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    t[n] = c >>> 0;
  }
  return t;
})();

/** CRC-32 (ISO-HDLC, as PNG uses). zlib.crc32 would do, but needs Node ≥ 20.15; VS Code's may be older. */
export function crc32(data: Uint8Array, crc = 0): number {
  let c = ~crc >>> 0;
  for (let i = 0; i < data.length; i++) c = CRC_TABLE[(c ^ data[i]) & 0xff] ^ (c >>> 8);
  return ~c >>> 0;
}

/** One chunk: length (BE32), type, data, CRC over type+data. */
export function pngChunk(type: string, data: Uint8Array): Buffer {
  if (!/^[A-Za-z]{4}$/.test(type)) throw new Error(`invalid PNG chunk type ${JSON.stringify(type)}`);
  const out = Buffer.alloc(12 + data.length);
  out.writeUInt32BE(data.length, 0);
  out.write(type, 4, 'latin1');
  out.set(data, 8);
  out.writeUInt32BE(crc32(out.subarray(4, 8 + data.length)), 8 + data.length);
  return out;
}

function checkKeyword(keyword: string): Buffer {
  // PNG: 1–79 Latin-1 printable characters, no leading, trailing or double spaces.
  const ok = /^[\x20-\x7e\xa1-\xff]{1,79}$/.test(keyword) && !/^ | $| {2}/.test(keyword);
  if (!ok) {
    throw new Error(`invalid PNG text keyword ${JSON.stringify(keyword)}`);
  }
  return Buffer.from(keyword, 'latin1');
}

/** An iTXt chunk: UTF-8 text, optionally zlib-compressed, no language tag. */
export function iTXtChunk(keyword: string, text: string, opts: { compress?: boolean } = {}): Buffer {
  const body = Buffer.from(text, 'utf8');
  return pngChunk(
    'iTXt',
    Buffer.concat([
      checkKeyword(keyword),
      Buffer.from([0, opts.compress ? 1 : 0, 0, 0, 0]), // NUL, compression flag, method 0, empty language, empty translated keyword
      opts.compress ? zlib.deflateSync(body) : body,
    ]),
  );
}

interface RawChunk {
  type: string;
  /** Offset of the chunk's length field. */
  start: number;
  data: Buffer;
  crcOk: boolean;
}

function* walkChunks(png: Uint8Array): Generator<RawChunk> {
  const buf = Buffer.from(png.buffer, png.byteOffset, png.byteLength);
  if (buf.length < 8 || !buf.subarray(0, 8).equals(PNG_SIGNATURE)) throw new Error('not a PNG file (bad signature)');
  let p = 8;
  while (p + 12 <= buf.length) {
    const len = buf.readUInt32BE(p);
    const end = p + 12 + len;
    if (end > buf.length) return; // truncated file: keep what we have
    const start = p;
    const type = buf.toString('latin1', start + 4, start + 8);
    const data = buf.subarray(start + 8, start + 8 + len);
    yield {
      type,
      start,
      data,
      get crcOk() {
        return crc32(buf.subarray(start + 4, start + 8 + len)) === buf.readUInt32BE(start + 8 + len);
      },
    };
    if (type === 'IEND') return;
    p = end;
  }
}

/** Inserts whole chunks (as built by pngChunk) right before the first IDAT. */
export function insertChunks(png: Uint8Array, chunks: Uint8Array[]): Buffer {
  for (const c of walkChunks(png)) {
    if (c.type === 'IDAT') {
      const src = Buffer.from(png.buffer, png.byteOffset, png.byteLength);
      return Buffer.concat([src.subarray(0, c.start), ...chunks, src.subarray(c.start)]);
    }
  }
  throw new Error('PNG has no IDAT chunk');
}

/**
 * Decodes tEXt, zTXt and iTXt chunks, in file order; chunks with a bad CRC or bad data are skipped,
 * and so are compressed ones that would inflate past MAX_TEXT_CHUNK_BYTES or, together, past
 * MAX_TEXT_TOTAL_BYTES (zlib bombs).
 */
export function readPngTextChunks(png: Uint8Array): { keyword: string; text: string }[] {
  const out: { keyword: string; text: string }[] = [];
  let budget = MAX_TEXT_TOTAL_BYTES;
  const inflate = (data: Buffer): Buffer | undefined => {
    const limit = Math.min(MAX_TEXT_CHUNK_BYTES, budget);
    if (limit <= 0) return undefined;
    try {
      const text = zlib.inflateSync(data, { maxOutputLength: limit });
      budget -= text.length;
      return text;
    } catch {
      budget -= limit; // a bomb (or corrupt stream) costs what it may have inflated
      return undefined;
    }
  };
  for (const c of walkChunks(png)) {
    if (c.type !== 'tEXt' && c.type !== 'zTXt' && c.type !== 'iTXt') continue;
    if (!c.crcOk) continue;
    const chunk = decodeTextChunk(c.type, c.data, inflate);
    if (chunk) out.push(chunk);
  }
  return out;
}

function decodeTextChunk(type: string, d: Buffer, inflate: (data: Buffer) => Buffer | undefined): { keyword: string; text: string } | undefined {
  const nul = d.indexOf(0);
  if (nul < 1) return undefined;
  const keyword = d.toString('latin1', 0, nul);
  if (type === 'tEXt') return { keyword, text: d.toString('latin1', nul + 1) };
  if (type === 'zTXt') {
    if (d[nul + 1] !== 0) return undefined;
    const body = inflate(d.subarray(nul + 2));
    return body && { keyword, text: body.toString('latin1') };
  }
  const compressed = d[nul + 1] === 1;
  if (compressed && d[nul + 2] !== 0) return undefined;
  const langEnd = d.indexOf(0, nul + 3);
  const transEnd = langEnd < 0 ? -1 : d.indexOf(0, langEnd + 1);
  if (transEnd < 0) return undefined;
  const body = compressed ? inflate(d.subarray(transEnd + 1)) : d.subarray(transEnd + 1);
  return body && { keyword, text: body.toString('utf8') };
}

// ---------------------------------------------------------------------------------------------
// Reading parameters back

export interface PngParameters {
  /** The A1111-style `parameters` text, if any. */
  parameters?: string;
  /** Our `majicflux` JSON chunk, if any (and a JSON object): an ImageMetadata, or ImageParameters in older PNGs. */
  json?: Record<string, unknown>;
  /**
   * Best available parameters: the JSON chunk, else fields parsed from `parameters`; only values
   * a generation accepts (params.ts's limits).
   */
  params?: Partial<ImageParameters>;
  /** Why a value found in the PNG was left out of `params` (out of range, wrong kind). */
  dropped?: string[];
  /** Every text chunk, first occurrence per keyword (e.g. ComfyUI's `prompt`/`workflow`). */
  text: Record<string, string>;
}

/**
 * Reads the embedded parameters from a PNG file path or its bytes ("re-run from this image").
 * Throws a PngReadError for a file that cannot be read, is not a regular file, or is not a PNG.
 */
export async function readPngParameters(input: string | Uint8Array): Promise<PngParameters> {
  const name = typeof input === 'string' ? input : '(PNG data)';
  const bytes = typeof input === 'string' ? await readRegularFile(input, MAX_PNG_READ_BYTES, (problem) => new PngReadError(name, problem), { head: true }) : input;
  if (!hasPngSignature(bytes)) throw new PngReadError(name, 'not a PNG file (bad signature)');
  const text: Record<string, string> = Object.create(null);
  for (const { keyword, text: t } of readPngTextChunks(bytes)) if (!(keyword in text)) text[keyword] = t;
  const result: PngParameters = { text };
  if (PARAMETERS_KEYWORD in text) result.parameters = text[PARAMETERS_KEYWORD];
  // Unreadable JSON: the text parameters instead.
  const json = JSON_KEYWORD in text ? jsonObject(text[JSON_KEYWORD]) : undefined;
  if (json) result.json = json;
  const infotext = result.parameters !== undefined && result.parameters.length <= MAX_INFOTEXT_CHARS ? result.parameters : undefined;
  // Ours, else A1111's text (or SwarmUI's JSON in its place), else ComfyUI's graph, else InvokeAI's JSON.
  const comfy = 'prompt' in text && text.prompt.length <= MAX_COMFY_CHARS ? text.prompt : undefined;
  const invoke = 'invokeai_metadata' in text && text.invokeai_metadata.length <= MAX_COMFY_CHARS ? text.invokeai_metadata : undefined;
  const raw = result.json
    ? jsonChunkParameters(result.json)
    : infotext !== undefined
      ? (parseJsonParameters(infotext) ?? parseA1111Parameters(infotext))
      : ((comfy !== undefined ? parseComfyPrompt(comfy) : undefined) ?? (invoke !== undefined ? parseInvokeMetadata(invoke) : undefined));
  if (raw) {
    const { params, dropped } = checkParameters(raw);
    result.params = params;
    if (dropped.length) result.dropped = dropped;
  }
  return result;
}

function hasPngSignature(b: Uint8Array): boolean {
  return b.length >= 8 && PNG_SIGNATURE.every((v, i) => b[i] === v);
}
