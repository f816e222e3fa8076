// Fuzzing the PNG parameters reader (issue 16): mutated and truncated text chunks give a result or
// a PngReadError, never another exception; and the linear infotext field scanner agrees with
// A1111's regex. Fixed seed, bounded count and time.

import * as assert from 'node:assert/strict';
import * as zlib from 'node:zlib';
import { infotextFields } from '../../src/inference/formats/infotext';
import { crc32, insertChunks, iTXtChunk, PngReadError, pngChunk, readPngParameters } from '../../src/inference/formats/pngText';
import { rng, Rng } from '../helpers/prng';

const SEED = 0x9e916;
const CASES = 1500;
const BUDGET_MS = 6000;

function basePng(): Buffer {
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(1, 0);
  ihdr.writeUInt32BE(1, 4);
  ihdr[8] = 8;
  ihdr[9] = 2;
  const skeleton = Buffer.concat([
    Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
    pngChunk('IHDR', ihdr),
    pngChunk('IDAT', zlib.deflateSync(Buffer.alloc(4))),
    pngChunk('IEND', Buffer.alloc(0)),
  ]);
  return insertChunks(skeleton, [
    pngChunk('tEXt', Buffer.from('parameters\0a "quoted", fox\nNegative prompt: blur\nSteps: 4, Sampler: Euler, Seed: 7, Size: 16x16, Lora hashes: "a: 1, b: 2"', 'latin1')),
    pngChunk('zTXt', Buffer.concat([Buffer.from('Comment\0\0', 'latin1'), zlib.deflateSync(Buffer.from('caf\u00e9', 'latin1'))])),
    iTXtChunk('majicflux', JSON.stringify({ prompt: 'a fox', steps: 4, seed: 7, width: 16, height: 16 })),
    iTXtChunk('workflow', JSON.stringify({ nodes: [1, 2, 3] }), { compress: true }),
  ]);
}

/** Offsets of each chunk's length field. */
function chunkStarts(png: Buffer): number[] {
  const starts: number[] = [];
  for (let p = 8; p + 12 <= png.length; p += 12 + png.readUInt32BE(p)) starts.push(p);
  return starts;
}

/** Recomputes a chunk's CRC, so the mutation reaches the text decoders instead of the CRC check. */
function fixCrc(png: Buffer, start: number): void {
  const len = png.readUInt32BE(start);
  if (start + 12 + len <= png.length) png.writeUInt32BE(crc32(png.subarray(start + 4, start + 8 + len)), start + 8 + len);
}

function mutate(r: Rng, src: Buffer): Buffer {
  const png = Buffer.from(src);
  const starts = chunkStarts(png).slice(1, -2); // the text chunks
  const start = r.pick(starts);
  const len = png.readUInt32BE(start);
  switch (r.int(7)) {
    case 0: for (let k = 1 + r.int(3); k > 0; k--) png[r.int(png.length)] ^= 1 << r.int(8); return png;
    case 1: {
      // Change a byte of a text chunk's data (keyword, flags, NULs, compressed stream) and keep the CRC valid.
      for (let k = 1 + r.int(3); k > 0; k--) png[start + 8 + r.int(Math.max(1, len))] = r.pick([0, 1, 2, 0x78, 0x9c, 0xff, r.int(256)]);
      fixCrc(png, start);
      return png;
    }
    case 2: return png.subarray(0, r.int(png.length));
    case 3: png.writeUInt32BE(r.pick([0, len - 1, len + 1, 0x7fffffff, 0xffffffff]), start); return png;
    case 4: {
      // Random bytes as a text chunk's data.
      const data = Buffer.from(Array.from({ length: r.int(40) }, () => r.pick([0, 1, 0x78, r.int(256)])));
      return insertChunks(png, [pngChunk(r.pick(['tEXt', 'zTXt', 'iTXt']), data)]);
    }
    case 5: {
      // A compressed stream cut short, with a valid CRC.
      const body = zlib.deflateSync(Buffer.from('x'.repeat(1000)));
      const data = Buffer.concat([Buffer.from('parameters\0\x01\0\0\0', 'latin1'), body.subarray(0, r.int(body.length))]);
      return insertChunks(png, [pngChunk('iTXt', data)]);
    }
    default: return Buffer.concat([png.subarray(0, start), png.subarray(start + 12 + len)]); // drop a chunk
  }
}

/** A1111's own field regex, as the reference for infotextFields (quadratic, so short inputs only). */
const A1111_RE = /\s*(\w[\w \-/]+):\s*("(?:\\.|[^\\"])+"|[^,]*)(?:,|$)/g;

describe('fuzz: PNG parameters reader (seeded, bounded)', function () {
  this.timeout(30000);

  it(`${CASES} mutated PNGs: a result or a PngReadError (seed ${SEED.toString(16)})`, async () => {
    const r = rng(SEED);
    const base = basePng();
    assert.equal((await readPngParameters(base)).params?.seed, 7);
    const end = Date.now() + BUDGET_MS;
    let ran = 0;
    let refused = 0;
    for (; ran < CASES && Date.now() < end; ran++) {
      const bytes = mutate(r, base);
      try {
        const p = await readPngParameters(bytes);
        assert.equal(typeof p.text, 'object');
        assert.ok(p.params === undefined || typeof p.params === 'object');
      } catch (e) {
        if (!(e instanceof PngReadError)) assert.fail(`case ${ran} (seed ${SEED}): unexpected ${e instanceof Error ? (e.stack ?? e.message) : String(e)}`);
        refused++;
      }
    }
    assert.ok(ran >= 100, `only ${ran} cases ran`);
    assert.ok(refused > 0 && refused < ran, `${refused} of ${ran} refused`);
  });

  it("infotextFields agrees with A1111's regex on random short lines", () => {
    const r = rng(SEED + 1);
    const alphabet = ['a', 'B', '_', '1', ' ', ' ', ':', ':', ',', ',', '"', '"', '\\', '-', '/', '\t', 'Steps', 'Seed: 1', 'é'];
    for (let i = 0; i < 5000; i++) {
      let line = '';
      for (let n = r.int(24); n > 0; n--) line += r.pick(alphabet);
      const expected = [...line.matchAll(A1111_RE)].filter((m) => m[0].trim() !== '').map((m) => [m[1].trim(), m[2].trim()]);
      assert.deepEqual(infotextFields(line), expected, `case ${i}: ${JSON.stringify(line)}`);
    }
  });
});
