import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as zlib from 'node:zlib';
import sharp from 'sharp';
import type { ImageMetadata } from '../../src/shared/params';
import {
  FileExistsError,
  ImageParameters,
  crc32,
  encodeImagePng,
  encodePng,
  imageParameters,
  formatA1111Parameters,
  iTXtChunk,
  insertChunks,
  parseA1111Parameters,
  pngChunk,
  readPngParameters,
  readPngTextChunks,
  toRgb8,
  uniquePath,
  writePngAtomic,
} from '../../src/inference/formats/png';

const CASES = path.join(__dirname, '..', 'fixtures', 'flux-tiny', 'cases');

function readF32Tensor(file: string, name: string): { shape: number[]; data: Float32Array } {
  const buf = fs.readFileSync(file);
  const n = Number(buf.readBigUInt64LE(0));
  const header = JSON.parse(buf.subarray(8, 8 + n).toString('utf8'));
  const t = header[name] as { dtype: string; shape: number[]; data_offsets: [number, number] };
  assert.equal(t.dtype, 'F32');
  const bytes = buf.subarray(8 + n + t.data_offsets[0], 8 + n + t.data_offsets[1]);
  const data = new Float32Array(bytes.byteLength / 4);
  for (let i = 0; i < data.length; i++) data[i] = bytes.readFloatLE(i * 4);
  return { shape: t.shape, data };
}

function chunkTypes(png: Buffer): string[] {
  const types: string[] = [];
  for (let p = 8; p < png.length; ) {
    const len = png.readUInt32BE(p);
    types.push(png.toString('latin1', p + 4, p + 8));
    p += 12 + len;
  }
  return types;
}

async function decode(png: Buffer): Promise<{ width: number; height: number; channels: number; data: Buffer }> {
  const { data, info } = await sharp(png).raw().toBuffer({ resolveWithObject: true });
  return { width: info.width, height: info.height, channels: info.channels, data };
}

const PARAMS: ImageParameters = {
  prompt: '赛博朋克风格的未来城市街道，雨夜 🌃🚀, "neon": blue\nsecond line',
  negativePrompt: 'blurry, 低质量',
  steps: 28,
  seed: 42,
  width: 64,
  height: 80,
  guidance: 3.5,
  cfgScale: 1,
  sampler: 'Euler',
  scheduleType: 'Simple',
  shift: 'dynamic',
  model: 'flux1-dev',
  version: 'MajicFLUX 0.1.0',
  extra: { 'Lora hashes': 'a: 1, b: 2', Denoise: 0.5 },
};

function gradient(width: number, height: number): Float32Array {
  const data = new Float32Array(width * height * 3);
  for (let y = 0; y < height; y++) for (let x = 0; x < width; x++) {
    const o = (y * width + x) * 3;
    data[o] = x / (width - 1);
    data[o + 1] = y / (height - 1);
    data[o + 2] = ((x * 7 + y * 13) % 256) / 255;
  }
  return data;
}

describe('png: encoding', () => {
  it('crc32 matches zlib', () => {
    const data = Buffer.from('IHDR and some bytes \u00ff', 'latin1');
    assert.equal(crc32(data), zlib.crc32(data));
    assert.equal(crc32(new Uint8Array(0)), 0);
  });

  it('toRgb8 clamps, rounds like numpy (half to even) and maps NaN to 0', () => {
    // 0.25294119119644165·255 is 64.5 in float32: numpy's round gives 64, Math.round 65.
    const px = toRgb8({ width: 3, height: 1, data: new Float32Array([-1, 0, 1, 2, 0.5, Number.NaN, 0.25294119119644165, 0.2, 1e-9]) });
    assert.deepEqual(Array.from(px), [0, 0, 255, 255, 128, 0, 64, 51, 0]);
    assert.throws(() => toRgb8({ width: 2, height: 2, data: new Float32Array(3) }), /needs 12/);
  });

  it('sharp decodes our PNG to exactly the pixels we passed (float and byte input)', async () => {
    const width = 64, height = 48;
    const f = gradient(width, height);
    const png = await encodePng({ width, height, data: f }, PARAMS);
    const out = await decode(png);
    assert.deepEqual([out.width, out.height, out.channels], [width, height, 3]);
    assert.deepEqual(new Uint8Array(out.data), toRgb8({ width, height, data: f }));

    const bytes = new Uint8Array(width * height * 3).map((_, i) => (i * 31) & 255);
    const out2 = await decode(await encodePng({ width, height, data: bytes }));
    assert.deepEqual(new Uint8Array(out2.data), bytes);
  });

  it('puts the text chunks before the first IDAT', async () => {
    const png = await encodePng({ width: 16, height: 16, data: gradient(16, 16) }, PARAMS);
    const types = chunkTypes(png);
    assert.equal(types[0], 'IHDR');
    const firstIdat = types.indexOf('IDAT');
    assert.deepEqual(types.slice(firstIdat - 2, firstIdat), ['iTXt', 'iTXt']);
    assert.equal(types[types.length - 1], 'IEND');
    // sharp still sees a valid PNG, and reads our text chunks (as "comments").
    const meta = await sharp(png).metadata();
    assert.equal(meta.format, 'png');
    assert.equal(meta.width, 16);
    assert.deepEqual(meta.comments, [
      { keyword: 'parameters', text: formatA1111Parameters(PARAMS) },
      { keyword: 'majicflux', text: JSON.stringify(PARAMS) },
    ]);
  });

  it('reproduces the golden pipeline-N.png pixels exactly from the golden float images', async () => {
    for (const n of [0, 1, 2]) {
      const golden = await decode(fs.readFileSync(path.join(CASES, `pipeline-${n}.png`)));
      const image = readF32Tensor(path.join(CASES, `pipeline-${n}.safetensors`), 'image');
      const [height, width] = image.shape;
      assert.deepEqual([golden.width, golden.height, golden.channels], [width, height, 3]);
      const ours = await decode(await encodePng({ width, height, data: image.data }));
      assert.deepEqual(new Uint8Array(ours.data), new Uint8Array(golden.data), `pipeline-${n}`);
    }
  });
});

describe('png: parameters', () => {
  // Issue 15 item 20: our JSON chunk is the image's ImageMetadata (what `generate --json` prints).
  const META: ImageMetadata = { prompt: 'a fox, "red"', seed: 7, steps: 4, width: 64, height: 80, guidance: 3.5, shift: 'dynamic', t5MaxLength: 256, model: 'flux-tiny', weights: 'fp8', sampler: 'euler', software: 'MajicFLUX 0.1.0' };

  it('writes an image\'s ImageMetadata as the JSON chunk, field for field, and A1111 infotext beside it', async () => {
    const png = await encodeImagePng({ width: 8, height: 8, data: gradient(8, 8) }, META);
    const r = await readPngParameters(png);
    assert.deepEqual(r.json, META);
    assert.equal(r.parameters, formatA1111Parameters(imageParameters(META)));
    assert.deepEqual(r.params, { prompt: META.prompt, seed: 7, steps: 4, width: 64, height: 80, guidance: 3.5, shift: 'dynamic', model: 'flux-tiny', sampler: 'Euler', version: 'MajicFLUX 0.1.0', extra: { 'Weight format': 'fp8', 'T5 max length': 256 } });
  });

  it('still reads the JSON chunk of a PNG written before (ImageParameters\' names): the same parameters', async () => {
    const plain = await encodePng({ width: 8, height: 8, data: gradient(8, 8) });
    const old = { prompt: META.prompt, steps: 4, seed: 7, width: 64, height: 80, guidance: 3.5, cfgScale: 1, sampler: 'Euler', scheduleType: 'Simple', shift: 'dynamic', model: 'flux-tiny', version: 'MajicFLUX 0.1.0', extra: { 'Weight format': 'fp8', 'T5 max length': 256 } };
    const before = await readPngParameters(insertChunks(plain, [iTXtChunk('majicflux', JSON.stringify(old))]));
    const now = await readPngParameters(await encodeImagePng({ width: 8, height: 8, data: gradient(8, 8) }, META));
    assert.equal(before.dropped, undefined);
    assert.deepEqual(before.params, { ...now.params, cfgScale: 1, scheduleType: 'Simple' });
  });

  it('round-trips Chinese + emoji prompts and the JSON chunk', async () => {
    const png = await encodePng({ width: 32, height: 32, data: gradient(32, 32) }, PARAMS);
    const r = await readPngParameters(png);
    assert.deepEqual(r.json, JSON.parse(JSON.stringify(PARAMS)));
    assert.deepEqual(r.params, r.json);
    assert.equal(r.parameters, formatA1111Parameters(PARAMS));
    assert.ok(r.parameters!.startsWith(PARAMS.prompt + '\nNegative prompt: blurry, 低质量\n'));
    assert.equal(Object.keys(r.text).sort().join(), 'majicflux,parameters');
  });

  it('writes A1111/Forge-style infotext', () => {
    const text = formatA1111Parameters({
      prompt: 'a lighthouse on a cliff at dawn',
      steps: 28,
      seed: 42,
      width: 1024,
      height: 1024,
      guidance: 3.5,
      model: 'flux1-dev',
    });
    assert.equal(
      text,
      'a lighthouse on a cliff at dawn\nSteps: 28, Sampler: Euler, Schedule type: Simple, CFG scale: 1, ' +
        'Distilled CFG Scale: 3.5, Seed: 42, Size: 1024x1024, Model: flux1-dev',
    );
  });

  it('parses infotext back into fields (quoted values, negative prompt, unknown keys)', () => {
    const p = parseA1111Parameters(formatA1111Parameters({ ...PARAMS, shift: 3 }));
    assert.deepEqual(p, {
      prompt: PARAMS.prompt,
      negativePrompt: PARAMS.negativePrompt,
      steps: 28,
      sampler: 'Euler',
      scheduleType: 'Simple',
      cfgScale: 1,
      guidance: 3.5,
      seed: 42,
      width: 64,
      height: 80,
      model: 'flux1-dev',
      shift: 3,
      version: 'MajicFLUX 0.1.0',
      extra: { 'Lora hashes': 'a: 1, b: 2', Denoise: '0.5' },
    });
  });

  it('parses infotext from Forge and from A1111 with SD fields', () => {
    const forge =
      'a cat in a hat\nSteps: 20, Sampler: Euler, Schedule type: Simple, CFG scale: 1, Distilled CFG Scale: 3.5, ' +
      'Seed: 3719426402, Size: 896x1152, Model hash: bea01d51bd, Model: flux1-dev-bnb-nf4-v2, ' +
      'Version: f2.0.1v1.10.1-previous-313-g8a042934, Module 1: ae';
    assert.deepEqual(parseA1111Parameters(forge), {
      prompt: 'a cat in a hat',
      steps: 20,
      sampler: 'Euler',
      scheduleType: 'Simple',
      cfgScale: 1,
      guidance: 3.5,
      seed: 3719426402,
      width: 896,
      height: 1152,
      modelHash: 'bea01d51bd',
      model: 'flux1-dev-bnb-nf4-v2',
      version: 'f2.0.1v1.10.1-previous-313-g8a042934',
      extra: { 'Module 1': 'ae' },
    });
    const a1111 = 'masterpiece\nline two\nNegative prompt: ugly\nbad hands\nSteps: 30, Sampler: DPM++ 2M, CFG scale: 7, Seed: 18446744073709551615, Size: 512x768';
    const p = parseA1111Parameters(a1111);
    assert.equal(p.prompt, 'masterpiece\nline two');
    assert.equal(p.negativePrompt, 'ugly\nbad hands');
    assert.equal(p.seed, '18446744073709551615');
    assert.equal(p.cfgScale, 7);
    // No parameter line at all: everything is prompt.
    assert.deepEqual(parseA1111Parameters('just a prompt: nothing else'), { prompt: 'just a prompt: nothing else' });
  });

  it('falls back to the infotext without a JSON chunk, and reads tEXt, zTXt and compressed iTXt', async () => {
    const base = await sharp(Buffer.alloc(8 * 8 * 3, 90), { raw: { width: 8, height: 8, channels: 3 } }).png().toBuffer();
    const infotext = 'a fox\nSteps: 4, Sampler: Euler, Seed: 7, Size: 8x8';
    const zTXt = pngChunk('zTXt', Buffer.concat([Buffer.from('Comment\0\0', 'latin1'), zlib.deflateSync(Buffer.from('caf\u00e9', 'latin1'))]));
    const png = insertChunks(base, [
      pngChunk('tEXt', Buffer.from(`parameters\0${infotext}`, 'latin1')),
      zTXt,
      iTXtChunk('Title', '标题 🦊', { compress: true }),
    ]);
    const r = await readPngParameters(png);
    assert.equal(r.parameters, infotext);
    assert.equal(r.json, undefined);
    // 8×8 is no size FLUX.1 makes: dropped, with params.ts's reason, rather than passed on to a re-run.
    assert.deepEqual(r.params, { prompt: 'a fox', steps: 4, sampler: 'Euler', seed: 7 });
    assert.deepEqual(r.dropped, ['width 8 is out of range; FLUX.1 sizes go from 64 to 2048 pixels per side', 'height 8 is out of range; FLUX.1 sizes go from 64 to 2048 pixels per side']);
    assert.equal(r.text.Comment, 'café');
    assert.equal(r.text.Title, '标题 🦊');
    assert.deepEqual(await decode(png), await decode(base));
  });

  it('keeps only values a generation accepts: each field checked by its params.ts schema, the rest dropped with the reason', async () => {
    const plain = await encodePng({ width: 8, height: 8, data: gradient(8, 8) });
    const json = { prompt: 'p', steps: 1000, seed: '12345678901234567890', width: 1000, height: 768, guidance: 3.5, shift: 5e-324, model: 7, sampler: 'Euler', extra: { a: 1, b: { deep: true } } };
    const r = await readPngParameters(insertChunks(plain, [iTXtChunk('majicflux', JSON.stringify(json))]));
    assert.deepEqual(r.params, { prompt: 'p', height: 768, guidance: 3.5, sampler: 'Euler', extra: { a: 1 } });
    assert.deepEqual(r.dropped, [
      'steps must be a whole number from 1 to 200, got 1000',
      'seed must be a whole number from 0 to 9007199254740991, got 12345678901234567000',
      'width 1000 is not a multiple of 16; try 992 or 1008',
      'shift must be "dynamic" or a number from 0.1 to 100, got 5e-324',
      'model: not text of at most 4096 characters',
    ]);
    const infotext = 'a fox\nSteps: 250, Sampler: Euler, Seed: 7, Size: 1024x1024, Distilled CFG Scale: 150';
    const a1111 = await readPngParameters(insertChunks(plain, [iTXtChunk('parameters', infotext)]));
    assert.deepEqual(a1111.params, { prompt: 'a fox', sampler: 'Euler', seed: 7, width: 1024, height: 1024 });
    assert.deepEqual(a1111.dropped, ['steps must be a whole number from 1 to 200, got 250', 'guidance must be a number from 0 to 100, got 150']);
  });

  it('skips chunks with a bad CRC or broken JSON, and reads files from disk', async () => {
    const png = await encodePng({ width: 8, height: 8, data: gradient(8, 8) }, PARAMS);
    const plain = await encodePng({ width: 8, height: 8, data: gradient(8, 8) });
    const broken = insertChunks(plain, [iTXtChunk('parameters', formatA1111Parameters(PARAMS)), iTXtChunk('majicflux', '{not json')]);
    const r = await readPngParameters(broken);
    assert.equal(r.json, undefined);
    assert.equal(r.params?.prompt, PARAMS.prompt);
    assert.equal(r.params?.seed, 42);

    const bad = Buffer.from(png);
    const idx = bad.indexOf('majicflux', 0, 'latin1');
    bad[idx + 20] ^= 0xff; // corrupt the JSON chunk's data → CRC mismatch
    const chunks = readPngTextChunks(bad);
    assert.deepEqual(chunks.map((c) => c.keyword), ['parameters']);

    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'majicflux-png-'));
    try {
      const file = path.join(dir, 'x.png');
      fs.writeFileSync(file, png);
      assert.deepEqual((await readPngParameters(file)).json, JSON.parse(JSON.stringify(PARAMS)));
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
    await assert.rejects(readPngParameters(Buffer.from('GIF89a')), /not a PNG/);
  });

  it('rejects invalid keywords', () => {
    assert.throws(() => iTXtChunk('', 'x'), /keyword/);
    assert.throws(() => iTXtChunk(' lead', 'x'), /keyword/);
    assert.throws(() => iTXtChunk('a'.repeat(80), 'x'), /keyword/);
    assert.throws(() => iTXtChunk('中文', 'x'), /keyword/);
  });
});

describe('png: atomic writes', () => {
  let dir: string;
  beforeEach(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'majicflux-write-'));
  });
  afterEach(() => fs.rmSync(dir, { recursive: true, force: true }));

  const listing = () => fs.readdirSync(dir).sort();

  it('writes the bytes and leaves no temp file', async () => {
    const file = path.join(dir, 'out.png');
    assert.equal(await writePngAtomic(file, Buffer.from('one')), file);
    assert.equal(fs.readFileSync(file, 'utf8'), 'one');
    assert.deepEqual(listing(), ['out.png']);
  });

  it('refuses to overwrite unless asked', async () => {
    const file = path.join(dir, 'out.png');
    fs.writeFileSync(file, 'original');
    await assert.rejects(writePngAtomic(file, Buffer.from('new')), (err: unknown) => {
      assert.ok(err instanceof FileExistsError);
      assert.equal(err.code, 'EEXIST');
      assert.match(err.message, /out\.png already exists; not overwriting it/);
      return true;
    });
    assert.equal(fs.readFileSync(file, 'utf8'), 'original');
    assert.deepEqual(listing(), ['out.png']);
    await writePngAtomic(file, Buffer.from('replaced'), { overwrite: true });
    assert.equal(fs.readFileSync(file, 'utf8'), 'replaced');
    assert.deepEqual(listing(), ['out.png']);
  });

  it('uniquePath appends -1, -2, …', async () => {
    const file = path.join(dir, 'img.png');
    assert.equal(await uniquePath(file), file);
    fs.writeFileSync(file, '');
    assert.equal(await uniquePath(file), path.join(dir, 'img-1.png'));
    fs.writeFileSync(path.join(dir, 'img-1.png'), '');
    assert.equal(await uniquePath(file), path.join(dir, 'img-2.png'));
    assert.equal(await uniquePath(path.join(dir, 'noext')), path.join(dir, 'noext'));
  });

  it('unique: concurrent writers to one name all land in distinct files', async () => {
    const file = path.join(dir, 'same.png');
    const written = await Promise.all(Array.from({ length: 8 }, (_, i) => writePngAtomic(file, Buffer.from(String(i)), { unique: true })));
    assert.equal(new Set(written).size, 8);
    assert.deepEqual(listing(), ['same-1.png', 'same-2.png', 'same-3.png', 'same-4.png', 'same-5.png', 'same-6.png', 'same-7.png', 'same.png']);
    const contents = written.map((f) => fs.readFileSync(f, 'utf8')).sort();
    assert.deepEqual(contents, ['0', '1', '2', '3', '4', '5', '6', '7']);
  });

  it('removes the temp file when the final step fails', async () => {
    // The target is a non-empty directory: the temp file gets written, then the rename fails.
    const target = path.join(dir, 'taken.png');
    fs.mkdirSync(target);
    fs.writeFileSync(path.join(target, 'keep'), '');
    await assert.rejects(writePngAtomic(target, Buffer.from('x'), { overwrite: true }));
    await assert.rejects(writePngAtomic(target, Buffer.from('x')), FileExistsError);
    assert.deepEqual(listing(), ['taken.png']);
  });

  it('fails cleanly when the parent directory does not exist', async () => {
    await assert.rejects(writePngAtomic(path.join(dir, 'missing', 'a.png'), Buffer.from('x')), { code: 'ENOENT' });
    assert.deepEqual(listing(), []);
  });
});
