// PNG text chunks without pixels: build the `parameters`/`majicflux` chunks, find chunks, decode
// tEXt/zTXt/iTXt, and read the A1111/Forge infotext back. Pure JS (zlib + Buffer, no sharp), so the
// extension host can read a PNG's parameters cheaply — and bounded, since the PNG may be hostile:
// only the head of a file is read, never from a FIFO or device, each text chunk inflates to a
// bounded size (all of them to another), and infotext is parsed in linear time.

import * as zlib from 'node:zlib';
import { UserError } from './api';
import { readRegularFile } from './regularFile';

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

/** A PNG whose parameters cannot be read: says which file and why; no stack trace for the user. */
export class PngReadError extends UserError {
  constructor(readonly file: string, problem: string) {
    super(`${file}: ${problem}`);
    this.name = 'PngReadError';
  }
}

/** What produced an image, enough to re-run it. Written verbatim as the JSON chunk. */
export interface ImageParameters {
  prompt: string;
  negativePrompt?: string;
  steps: number;
  /** A string for seeds beyond 2^53 (decimal). */
  seed: number | string;
  width: number;
  height: number;
  /** FLUX distilled guidance, A1111/Forge "Distilled CFG Scale". */
  guidance?: number;
  /** Real classifier-free guidance; 1 means off (the FLUX.1-dev default). */
  cfgScale?: number;
  sampler?: string;
  scheduleType?: string;
  /** A fixed sigma shift, or 'dynamic' for FluxPipeline's resolution-dependent one. */
  shift?: number | 'dynamic';
  model?: string;
  modelHash?: string;
  version?: string;
  /** More A1111 "Key: value" fields, written after the standard ones. */
  extra?: Record<string, string | number | boolean>;
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
  const ok = /^[\x20-\x7e\xa1-\xff]{1,79}$/.test(keyword) && !/^ | $|  /.test(keyword);
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
  /** Our `majicflux` JSON chunk, if any (and a JSON object). */
  json?: Record<string, unknown>;
  /** Best available parameters: the JSON chunk, else fields parsed from `parameters`. */
  params?: Partial<ImageParameters>;
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
  if (JSON_KEYWORD in text) {
    try {
      const v: unknown = JSON.parse(text[JSON_KEYWORD]);
      if (v !== null && typeof v === 'object' && !Array.isArray(v)) result.json = v as Record<string, unknown>;
    } catch {
      // unreadable JSON: fall back to the text parameters
    }
  }
  if (result.json) result.params = result.json as Partial<ImageParameters>;
  else if (result.parameters !== undefined && result.parameters.length <= MAX_INFOTEXT_CHARS) result.params = parseA1111Parameters(result.parameters);
  return result;
}

function hasPngSignature(b: Uint8Array): boolean {
  return b.length >= 8 && PNG_SIGNATURE.every((v, i) => b[i] === v);
}

// ---------------------------------------------------------------------------------------------
// A1111 / Forge infotext

function quote(v: string): string {
  // A1111 quotes values holding a separator as JSON strings (non-ASCII left as is).
  return /[,\n:]/.test(v) ? JSON.stringify(v) : v;
}

/**
 * "<prompt>\nNegative prompt: …\nSteps: 28, Sampler: Euler, Schedule type: Simple, CFG scale: 1,
 * Distilled CFG Scale: 3.5, Seed: 42, Size: 1024x1024, Model: flux1-dev, …" — Forge's field names
 * for FLUX, so A1111/Forge "PNG Info", Civitai and similar tools read it.
 */
export function formatA1111Parameters(p: ImageParameters): string {
  const fields: [string, string | number | boolean | undefined][] = [
    ['Steps', p.steps],
    ['Sampler', p.sampler ?? 'Euler'],
    ['Schedule type', p.scheduleType ?? 'Simple'],
    ['CFG scale', p.cfgScale ?? 1],
    ['Distilled CFG Scale', p.guidance],
    ['Seed', p.seed],
    ['Size', `${p.width}x${p.height}`],
    ['Model hash', p.modelHash],
    ['Model', p.model],
    ['Shift', typeof p.shift === 'number' ? p.shift : undefined],
    ...Object.entries(p.extra ?? {}),
    ['Version', p.version],
  ];
  const line = fields
    .filter((f): f is [string, string | number | boolean] => f[1] !== undefined && f[1] !== '')
    .map(([k, v]) => `${k}: ${quote(String(v))}`)
    .join(', ');
  const negative = p.negativePrompt ? `\nNegative prompt: ${p.negativePrompt}` : '';
  return `${p.prompt}${negative}\n${line}`;
}

const isWordChar = (c: number) => (c >= 0x30 && c <= 0x39) || (c >= 0x41 && c <= 0x5a) || (c >= 0x61 && c <= 0x7a) || c === 0x5f;
const isKeyChar = (c: number) => isWordChar(c) || c === 0x20 || c === 0x2d || c === 0x2f;
const isSpace = (ch: string) => /\s/.test(ch);

/**
 * The "Key: value" fields of an infotext line, as A1111's
 * /\s*(\w[\w \-/]+):\s*("(?:\\.|[^\\"])+"|[^,]*)(?:,|$)/g finds them, in linear time (that
 * regex backtracks quadratically on a long line without colons). A quoted value counts only when
 * a comma or the end follows its closing quote; otherwise the value runs to the next comma.
 */
export function infotextFields(line: string): Array<[string, string]> {
  const fields: Array<[string, string]> = [];
  const quotes = new QuoteFinder(line);
  let p = 0;
  while (p < line.length) {
    if (!isWordChar(line.charCodeAt(p))) {
      p++;
      continue;
    }
    // A key is a maximal run: a match starting inside it would end at the same place.
    let k = p + 1;
    while (k < line.length && isKeyChar(line.charCodeAt(k))) k++;
    if (k - p < 2 || line.charCodeAt(k) !== 0x3a) {
      p = k;
      continue;
    }
    let v = k + 1;
    while (v < line.length && isSpace(line[v])) v++;
    const end = valueEnd(line, v, quotes);
    fields.push([line.slice(p, k).trim(), line.slice(v, end).trim()]);
    p = end + 1;
  }
  return fields;
}

function valueEnd(line: string, v: number, quotes: QuoteFinder): number {
  if (line.charCodeAt(v) === 0x22) {
    const q = quotes.closing(v);
    if (q > v + 1 && (q + 1 === line.length || line.charCodeAt(q + 1) === 0x2c)) return q + 1;
  }
  const comma = line.indexOf(',', v);
  return comma < 0 ? line.length : comma;
}

/**
 * Closing quotes: the first quote after `open` that an even run of backslashes precedes. Whether
 * a quote is escaped does not depend on where the search began (a run cannot reach back past the
 * opening quote), so one answer serves every later start before it — the searches stay linear.
 */
class QuoteFinder {
  private from = -1;
  private found = -1;

  constructor(private readonly s: string) {}

  closing(open: number): number {
    const cached = this.from !== -1 && this.from <= open && (this.found === -1 || this.found > open);
    if (!cached) this.search(open);
    return this.found;
  }

  private search(open: number): void {
    this.from = open;
    let j = this.s.indexOf('"', open + 1);
    while (j >= 0 && this.backslashesBefore(j, open) % 2 === 1) j = this.s.indexOf('"', j + 1);
    this.found = j;
  }

  private backslashesBefore(j: number, open: number): number {
    let n = 0;
    while (j - 1 - n > open && this.s.charCodeAt(j - 1 - n) === 0x5c) n++;
    return n;
  }
}

function numberOr(v: string): number | undefined {
  const n = Number(v);
  return v.trim() !== '' && Number.isFinite(n) ? n : undefined;
}

/**
 * Parses A1111 infotext like A1111's own parse_generation_parameters: the last line holds the
 * "Key: value" fields if it has at least three, lines before it are the prompt, and a line
 * starting "Negative prompt:" begins the negative prompt. Unknown keys land in `extra`.
 */
export function parseA1111Parameters(text: string): Partial<ImageParameters> {
  const lines = text.replace(/\r\n/g, '\n').split('\n');
  let fields = infotextFields(lines[lines.length - 1]);
  if (fields.length >= 3) lines.pop();
  else fields = [];
  const negAt = lines.findIndex((l) => l.startsWith('Negative prompt:'));
  const out: Partial<ImageParameters> = {};
  out.prompt = (negAt < 0 ? lines : lines.slice(0, negAt)).join('\n');
  if (negAt >= 0) {
    out.negativePrompt = [lines[negAt].slice('Negative prompt:'.length).trimStart(), ...lines.slice(negAt + 1)].join('\n');
  }
  const extra: Record<string, string> = {};
  for (const [key, value] of fields) {
    let v = value;
    if (v.length >= 2 && v.startsWith('"') && v.endsWith('"')) {
      try {
        v = String(JSON.parse(v));
      } catch {
        // leave as written
      }
    }
    switch (key) {
      case 'Steps': out.steps = numberOr(v); break;
      case 'Sampler': out.sampler = v; break;
      case 'Schedule type': out.scheduleType = v; break;
      case 'CFG scale': out.cfgScale = numberOr(v); break;
      case 'Distilled CFG Scale':
      case 'Guidance': out.guidance = numberOr(v); break;
      case 'Seed': {
        const n = numberOr(v);
        out.seed = n !== undefined && Number.isSafeInteger(n) ? n : v;
        break;
      }
      case 'Size': {
        const s = /^(\d+)x(\d+)$/.exec(v);
        if (s) {
          out.width = Number(s[1]);
          out.height = Number(s[2]);
        } else extra[key] = v;
        break;
      }
      case 'Model': out.model = v; break;
      case 'Model hash': out.modelHash = v; break;
      case 'Shift': {
        const n = numberOr(v);
        if (n !== undefined) out.shift = n;
        break;
      }
      case 'Version': out.version = v; break;
      default: extra[key] = v;
    }
  }
  if (Object.keys(extra).length) out.extra = extra;
  for (const k of Object.keys(out) as (keyof ImageParameters)[]) if (out[k] === undefined) delete out[k];
  return out;
}

