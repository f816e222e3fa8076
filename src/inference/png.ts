// PNG output: encode with sharp, embed generation parameters as text chunks (A1111/Forge-style
// `parameters` plus a `majicflux` JSON chunk), read them back, and write files atomically.
//
// sharp cannot write text chunks, so they are spliced into its output before the first IDAT
// (where PIL and A1111 put them, and where streaming readers look).

import * as fs from 'node:fs/promises';
import * as zlib from 'node:zlib';
import sharp from 'sharp';

export const PARAMETERS_KEYWORD = 'parameters';
export const JSON_KEYWORD = 'majicflux';

const PNG_SIGNATURE = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);

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
// Pixels → PNG

/** Interleaved RGB, row-major [H, W, 3]: floats in [0, 1] (clamped) or bytes. */
export interface RgbImage {
  width: number;
  height: number;
  data: Float32Array | Uint8Array | Uint8ClampedArray;
}

/**
 * Floats → bytes the way diffusers' numpy_to_pil does: clamp to [0, 1], multiply by 255 in
 * float32, round half to even. NaN becomes 0.
 */
export function toRgb8(image: RgbImage): Uint8Array {
  const { width, height, data } = image;
  if (!Number.isInteger(width) || !Number.isInteger(height) || width <= 0 || height <= 0) {
    throw new Error(`image size ${width}×${height} is invalid`);
  }
  if (data.length !== width * height * 3) {
    throw new Error(`image data has ${data.length} values; ${width}×${height} RGB needs ${width * height * 3}`);
  }
  if (!(data instanceof Float32Array)) return data instanceof Uint8Array ? data : new Uint8Array(data.buffer, data.byteOffset, data.length);
  const out = new Uint8Array(data.length);
  for (let i = 0; i < data.length; i++) {
    const x = data[i];
    const v = Math.fround((x > 0 ? (x < 1 ? x : 1) : 0) * 255);
    let r = Math.round(v);
    if (r - v === 0.5 && r % 2 === 1) r -= 1; // ties to even, like numpy/torch
    out[i] = r;
  }
  return out;
}

/** Encodes an RGB image as PNG, with parameter chunks when `params` is given. */
export async function encodePng(image: RgbImage, params?: ImageParameters): Promise<Buffer> {
  const rgb = toRgb8(image);
  const png = await sharp(Buffer.from(rgb.buffer, rgb.byteOffset, rgb.byteLength), {
    raw: { width: image.width, height: image.height, channels: 3 },
  })
    .png()
    .toBuffer();
  return params ? embedParameters(png, params) : png;
}

/** Adds the `parameters` and `majicflux` iTXt chunks to an existing PNG. */
export function embedParameters(png: Uint8Array, params: ImageParameters): Buffer {
  return insertChunks(png, [
    iTXtChunk(PARAMETERS_KEYWORD, formatA1111Parameters(params)),
    iTXtChunk(JSON_KEYWORD, JSON.stringify(params)),
  ]);
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

/** Decodes tEXt, zTXt and iTXt chunks, in file order; chunks with a bad CRC or bad data are skipped. */
export function readPngTextChunks(png: Uint8Array): { keyword: string; text: string }[] {
  const out: { keyword: string; text: string }[] = [];
  for (const c of walkChunks(png)) {
    if (c.type !== 'tEXt' && c.type !== 'zTXt' && c.type !== 'iTXt') continue;
    if (!c.crcOk) continue;
    const d = c.data;
    const nul = d.indexOf(0);
    if (nul < 1) continue;
    const keyword = d.toString('latin1', 0, nul);
    try {
      if (c.type === 'tEXt') {
        out.push({ keyword, text: d.toString('latin1', nul + 1) });
      } else if (c.type === 'zTXt') {
        if (d[nul + 1] !== 0) continue;
        out.push({ keyword, text: zlib.inflateSync(d.subarray(nul + 2)).toString('latin1') });
      } else {
        const compressed = d[nul + 1] === 1;
        if (compressed && d[nul + 2] !== 0) continue;
        const langEnd = d.indexOf(0, nul + 3);
        const transEnd = langEnd < 0 ? -1 : d.indexOf(0, langEnd + 1);
        if (transEnd < 0) continue;
        const body = d.subarray(transEnd + 1);
        out.push({ keyword, text: (compressed ? zlib.inflateSync(body) : body).toString('utf8') });
      }
    } catch {
      // corrupt compressed stream: skip this chunk, keep reading the others
    }
  }
  return out;
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

/** Reads the embedded parameters from a PNG file path or its bytes ("re-run from this image"). */
export async function readPngParameters(input: string | Uint8Array): Promise<PngParameters> {
  const bytes = typeof input === 'string' ? await fs.readFile(input) : input;
  const text: Record<string, string> = {};
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
  else if (result.parameters !== undefined) result.params = parseA1111Parameters(result.parameters);
  return result;
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

const PARAM_RE = /\s*(\w[\w \-/]+):\s*("(?:\\.|[^\\"])+"|[^,]*)(?:,|$)/g;

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
  let last = lines[lines.length - 1];
  let fields = [...last.matchAll(PARAM_RE)].filter((m) => m[0].trim() !== '');
  if (fields.length >= 3) lines.pop();
  else {
    fields = [];
    last = '';
  }
  const negAt = lines.findIndex((l) => l.startsWith('Negative prompt:'));
  const out: Partial<ImageParameters> = {};
  out.prompt = (negAt < 0 ? lines : lines.slice(0, negAt)).join('\n');
  if (negAt >= 0) {
    out.negativePrompt = [lines[negAt].slice('Negative prompt:'.length).trimStart(), ...lines.slice(negAt + 1)].join('\n');
  }
  const extra: Record<string, string> = {};
  for (const m of fields) {
    const key = m[1].trim();
    let v = m[2].trim();
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

// Atomic, never-clobbering file writes live in atomicWrite.ts; re-exported for existing callers.
export { FileExistsError, uniquePath, writePngAtomic } from './atomicWrite';
export type { WriteOptions } from './atomicWrite';
