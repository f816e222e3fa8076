// Fuzzing the GGUF reader (issue 17), like fuzz-safetensors: mutated copies of valid GGUF files
// (the golden tiny DiT as Q8_0 and Q4_0, with typed metadata and arrays) either open as valid
// tensors (each inside the file, sized by type × shape, reading back whole and decoding) or fail
// with a GgufError — or, past the reader, a LayoutError. Never a hang, never another exception.
// Fixed seed, bounded count and time: a failure names the case to replay.

import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { DTYPE_BYTES } from '../../src/inference/formats/dtypes';
import { canDecode, GGML_QUANT_BLOCKS, isGgmlQuant } from '../../src/inference/formats/ggml';
import { GgufError, GgufFile } from '../../src/inference/formats/gguf';
import { elementCount, openTensors } from '../../src/inference/formats/safetensors';
import { GOLDEN_MODELS } from '../helpers/golden';
import { fuzzReader } from '../helpers/fuzzFiles';
import { Rng } from '../helpers/prng';
import { GGML, ggufBytes, quantizeQ4_0, quantizeQ8_0 } from '../helpers/writeGguf';

const SEED = 0x66617;
const CASES = 600;
const BUDGET_MS = 7000;

function source(quantize: (x: Float32Array) => Uint8Array, type: number): Buffer {
  const src = openTensors(path.join(GOLDEN_MODELS, 'flux-tiny.safetensors'));
  // A part of the DiT keeps each case small: two blocks' worth of tensors.
  const names = src.names().filter((n) => n.startsWith('double_blocks.0.') || !n.includes('blocks.'));
  const out = ggufBytes(names.map((name) => {
    const { shape } = src.info(name);
    const x = src.readF32(name);
    return shape.length === 2 ? { name, shape, type, data: quantize(x) } : { name, shape, type: GGML.F32, data: new Uint8Array(x.buffer) };
  }), {
    'general.architecture': { type: 'string', value: 'flux' },
    'general.quantization_version': { type: 'u32', value: 2 },
    'test.list': { type: 'array', of: 'string', value: ['a', 'bc'] },
    'test.floats': { type: 'array', of: 'f32', value: [1, 2.5] },
  });
  src.close();
  return out;
}

const SOURCES = [source(quantizeQ8_0, GGML.Q8_0), source(quantizeQ4_0, GGML.Q4_0)];

/** Where the header ends (the first tensor's data): mutations aim there mostly. */
function headerEnd(file: Buffer): number {
  const t = fs.mkdtempSync(path.join(os.tmpdir(), 'fuzz-gguf-h-'));
  const p = path.join(t, 'x.gguf');
  fs.writeFileSync(p, file);
  const g = GgufFile.open(p);
  const end = Math.min(...g.names().map((n) => g.info(n).offset));
  g.close();
  fs.rmSync(t, { recursive: true });
  return end;
}
const HEADER_ENDS = SOURCES.map(headerEnd);

function mutate(r: Rng, file: Buffer, end: number): Buffer {
  const out = Buffer.from(file);
  const at = () => r.int(end);
  switch (r.int(8)) {
    case 0: for (let k = 1 + r.int(4); k > 0; k--) out[at()] ^= 1 << r.int(8); return out;
    case 1: out[at()] = r.int(256); return out;
    // A u64 or u32 field (count, length, dim, type, offset) set to an extreme, at a 4-byte step.
    case 2: {
      const p = Math.min(end - 8, 4 * r.int(end / 4));
      out.writeBigUInt64LE(r.pick([0n, 1n, 3n, 31n, 2n ** 31n, 2n ** 32n - 1n, 2n ** 53n, 2n ** 63n, 2n ** 64n - 1n]), p);
      return out;
    }
    case 3: out.writeUInt32LE(r.pick([0, 1, 2, 3, 8, 9, 12, 13, 31, 99, 2 ** 32 - 1]), Math.min(end - 4, 4 * r.int(end / 4))); return out;
    case 4: out.writeBigUInt64LE(r.pick([0n, 1n, 100_001n, 2n ** 40n, 2n ** 64n - 1n]), r.pick([8, 16])); return out;
    case 5: return out.subarray(0, r.int(out.length));
    case 6: return out.subarray(0, end + r.int(64));
    default: return Buffer.concat([out, Buffer.alloc(1 + r.int(64), r.int(256))]);
  }
}

function checkValid(g: GgufFile, size: number): void {
  for (const n of g.names()) {
    const t = g.info(n);
    const expected = isGgmlQuant(t.dtype) ? (elementCount(t.shape) / GGML_QUANT_BLOCKS[t.dtype].block) * GGML_QUANT_BLOCKS[t.dtype].bytes : elementCount(t.shape) * DTYPE_BYTES[t.dtype];
    assert.equal(t.byteLength, expected, n);
    assert.ok(t.offset >= 24 && t.offset + t.byteLength <= size, `${n} lies outside the file`);
    assert.equal(t.offset % g.alignment, 0, `${n} is aligned`);
    if (isGgmlQuant(t.dtype) && !canDecode(t.dtype)) continue;
    assert.equal(g.readBytes(n).byteLength, t.byteLength);
    assert.equal(g.readF32(n).length, elementCount(t.shape));
  }
}

describe('fuzz: GGUF reader (seeded, bounded)', function () {
  this.timeout(30000);

  it(`${CASES} mutated GGUF files: valid tensors or a clean error (seed ${SEED.toString(16)})`, () => {
    fuzzReader({
      seed: SEED,
      cases: CASES,
      budgetMs: BUDGET_MS,
      ext: 'gguf',
      mutate: (r) => {
        const k = r.int(SOURCES.length);
        return mutate(r, SOURCES[k], HEADER_ENDS[k]);
      },
      open: (file) => GgufFile.open(file),
      check: checkValid,
      refusal: GgufError,
    });
  });
});
