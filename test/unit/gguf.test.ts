// The GGUF reader (formats/gguf.ts) and ggml's block types (formats/ggml.ts): the header's typed
// metadata, tensor infos in PyTorch order, alignment; clear errors for malformed files; decoders
// bit-identical to gguf-py (llama.cpp's reference Python package, fixtures/gguf/blocks.json); the
// Q8_0/Q4_0 → MatMulNBits mapping exact; the memory model counting GGUF blocks.

import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { dequantizeGgml, ggmlToNBits, GgmlQuant } from '../../src/inference/formats/ggml';
import { GgufError, GgufFile } from '../../src/inference/formats/gguf';
import { openTensors } from '../../src/inference/formats/safetensors';
import { ditWeightBytes, tensorBytes } from '../../src/inference/models/weightBytes';
import { dequantizeNBits, nbitsBytes, runQuantJob } from '../../src/inference/onnx/quant';
import { mulberry32 } from '../helpers/prng';
import { FIXTURES } from '../helpers/golden';
import { GGML, ggufBytes, GgufTensor, quantizeQ4_0, quantizeQ8_0, writeGguf } from '../helpers/writeGguf';
import { tempDir } from '../helpers/writeSafetensors';

const BLOCKS: Array<{ type: GgmlQuant; bytes: string; f32bits: number[] }> = JSON.parse(fs.readFileSync(path.join(FIXTURES, 'gguf', 'blocks.json'), 'utf8'));

function randomFloats(n: number, seed: number): Float32Array {
  const r = mulberry32(seed);
  return Float32Array.from({ length: n }, () => (r() - 0.5) * (r() < 0.05 ? 8 : 1));
}

describe('GGUF reader (formats/gguf.ts)', () => {
  let tmp: ReturnType<typeof tempDir>;
  before(() => (tmp = tempDir('gguf-')));
  after(() => tmp.cleanup());
  const file = (name: string, bytes: Uint8Array) => {
    const p = path.join(tmp.dir, name);
    fs.writeFileSync(p, bytes);
    return p;
  };

  const x = randomFloats(64 * 3, 1);
  const tensors: GgufTensor[] = [
    { name: 'a.weight', shape: [3, 64], type: GGML.F32, data: new Uint8Array(x.buffer) },
    { name: 'b.weight', shape: [3, 64], type: GGML.Q8_0, data: quantizeQ8_0(x) },
    { name: 'c.weight', shape: [3, 64], type: GGML.Q4_0, data: quantizeQ4_0(x) },
    { name: 'd.bias', shape: [5], type: GGML.F16, data: new Uint8Array(10) },
  ];

  it('reads typed metadata (arrays too), tensor infos in PyTorch order, and the data at the alignment', () => {
    for (const alignment of [32, 64]) {
      const p = file(`ok-${alignment}.gguf`, ggufBytes(tensors, {
        'general.architecture': { type: 'string', value: 'flux' },
        'u8': { type: 'u8', value: 200 }, 'i16': { type: 'i16', value: -300 }, 'f32': { type: 'f32', value: 0.5 }, 'f64': { type: 'f64', value: -1.25 },
        'u64': { type: 'u64', value: 2n ** 60n }, 'i64': { type: 'i64', value: -5n }, 'yes': { type: 'bool', value: true },
        'list': { type: 'array', of: 'string', value: ['x', 'ÿ🦊'] }, 'ints': { type: 'array', of: 'i32', value: [1, -2, 3] },
      }, alignment));
      const g = GgufFile.open(p);
      try {
        assert.equal(g.version, 3);
        assert.equal(g.alignment, alignment);
        assert.equal(g.metadata.get('general.architecture'), 'flux');
        assert.equal(g.metadata.get('u8'), 200);
        assert.equal(g.metadata.get('i16'), -300);
        assert.equal(g.metadata.get('f32'), 0.5);
        assert.equal(g.metadata.get('f64'), -1.25);
        assert.equal(g.metadata.get('u64'), 2n ** 60n);
        assert.equal(g.metadata.get('i64'), -5);
        assert.equal(g.metadata.get('yes'), true);
        assert.deepEqual(g.metadata.get('list'), ['x', 'ÿ🦊']);
        assert.deepEqual(g.metadata.get('ints'), [1, -2, 3]);
        assert.deepEqual(g.names(), ['a.weight', 'b.weight', 'c.weight', 'd.bias']);
        assert.deepEqual(g.info('b.weight'), { ...g.info('b.weight'), dtype: 'Q8_0', shape: [3, 64], byteLength: 6 * 34 });
        assert.equal(g.info('c.weight').byteLength, 6 * 18);
        for (const n of g.names()) assert.equal(g.info(n).offset % alignment, 0, `${n} aligned`);
        assert.deepEqual(g.readF32('a.weight'), x);
        assert.deepEqual(g.readBytes('b.weight'), Buffer.from(tensors[1].data));
        // Through openTensors, by the extension: what --transformer FILE.gguf and discovery use.
        const t = openTensors(p);
        assert.deepEqual(t.readF32('b.weight'), dequantizeGgml(tensors[1].data, 'Q8_0'));
        t.close();
      } finally {
        g.close();
      }
    }
  });

  const good = () => ggufBytes(tensors);
  const cases: Array<[string, () => Uint8Array, RegExp]> = [
    ['empty', () => new Uint8Array(0), /not a GGUF file: only 0 bytes/],
    ['bad magic', () => Buffer.concat([Buffer.from('GGUX'), good().subarray(4)]), /does not start with "GGUF"/],
    ['a safetensors file named .gguf', () => fs.readFileSync(path.join(FIXTURES, 'flux-tiny', 'models', 'flux-tiny.safetensors')), /not a GGUF file/],
    ['version 1', () => { const b = Buffer.from(good()); b.writeUInt32LE(1, 4); return b; }, /version 1 .* not supported/],
    ['big-endian', () => { const b = Buffer.from(good()); b.writeUInt32BE(3, 4); return b; }, /big-endian GGUF/],
    ['absurd tensor count', () => { const b = Buffer.from(good()); b.writeBigUInt64LE(2n ** 40n, 8); return b; }, /lists 1099511627776 tensors, more than 100000/],
    ['tensor count past the file', () => { const b = Buffer.from(good()); b.writeBigUInt64LE(50_000n, 8); return b; }, /more than its \d+ bytes can hold/],
    ['absurd metadata count', () => { const b = Buffer.from(good()); b.writeBigUInt64LE(2n ** 63n, 16); return b; }, /impossibly large/],
    ['truncated in the data', () => good().subarray(0, good().length - 7), /file is truncated: tensor "d.bias" ends at byte \d+ but the file has \d+ .* download it again/],
    ['truncated in the header', () => good().subarray(0, 130), /(ends inside|bytes left in the file).*truncated/],
    ['unknown ggml type', () => ggufBytes([{ ...tensors[0], type: 99 }]), /tensor "a.weight" has unknown ggml type 99/],
    ['tensor past the end', () => { const b = ggufBytes([tensors[0]]); return Buffer.concat([b, Buffer.alloc(0)]).subarray(0, b.length - 1); }, /truncated: tensor "a.weight" ends/],
    ['rows not whole blocks', () => ggufBytes([{ name: 'q', shape: [2, 48], type: GGML.Q8_0, data: new Uint8Array(3 * 34) }]), /rows of 48 elements, not a multiple of its 32-element blocks/],
    ['duplicate tensor', () => ggufBytes([tensors[0], tensors[0]]), /"a.weight" is listed twice/],
    ['unaligned offset', () => { const b = Buffer.from(ggufBytes([tensors[3], tensors[0]])); const at = b.indexOf('a.weight') + 8 + 4 + 16 + 4; b.writeBigUInt64LE(b.readBigUInt64LE(at) + 4n, at); return b; }, /not a multiple of the file's alignment 32/],
    ['overlapping tensors', () => { const b = Buffer.from(ggufBytes([tensors[0], tensors[3]])); const at = b.indexOf('d.bias') + 6 + 4 + 8 + 4; b.writeBigUInt64LE(64n, at); return b; }, /overlap/],
    ['bad alignment', () => ggufBytes(tensors, {}, 24), /"general.alignment" is 24; it must be a power of two/],
    ['array length past the file', () => { const b = Buffer.from(ggufBytes([], { l: { type: 'array', of: 'u8', value: [1] } })); b.writeBigUInt64LE(2n ** 50n, b.indexOf('l') + 1 + 4 + 4); return b; }, /claims 1125899906842624 uint8 elements, more than the \d+ bytes left/],
    ['absurd array length within the file', () => { const b = Buffer.from(ggufBytes([], { l: { type: 'array', of: 'u8', value: new Array(40).fill(1) } })); b.writeBigUInt64LE(2n ** 25n, b.indexOf('l') + 1 + 4 + 4); return Buffer.concat([b, Buffer.alloc(2 ** 25)]); }, /claims 33554432 elements, over the 16777216/],
    ['absurd string length within the file', () => { const b = Buffer.from(ggufBytes([], { s: { type: 'string', value: 'x' } })); b.writeBigUInt64LE(2n ** 27n, b.indexOf('s') + 1 + 4); return Buffer.concat([b, Buffer.alloc(2 ** 27)]); }, /over the 67108864-byte limit for a GGUF string/],
    ['bad UTF-8 name', () => { const b = Buffer.from(ggufBytes([tensors[0]])); b[b.indexOf('a.weight')] = 0xff; return b; }, /is not valid UTF-8/],
  ];
  for (const [what, bytes, message] of cases) {
    it(`refuses a malformed file with a clear GgufError: ${what}`, () => {
      const p = file(`bad-${what.replace(/\W+/g, '-')}.gguf`, bytes());
      assert.throws(() => GgufFile.open(p), (e: Error) => {
        assert.ok(e instanceof GgufError, `${e.name}: ${e.message}`);
        assert.match(e.message, message);
        assert.ok(e.message.startsWith(p), 'names the file');
        return true;
      });
    });
  }

  it('refuses a tensor of a type it cannot decode when it is read, naming the type and what it reads', () => {
    const p = file('iq.gguf', ggufBytes([{ name: 'w', shape: [1, 256], type: GGML.IQ2_XXS, data: new Uint8Array(66) }]));
    const g = GgufFile.open(p);
    assert.equal(g.info('w').dtype, 'IQ2_XXS');
    assert.throws(() => g.readBytes('w'), /tensor "w" is IQ2_XXS, a GGUF quantization this version cannot read \(it reads F32, F16, BF16, Q8_0, Q4_0/);
    g.close();
  });

  it('writes to disk through writeGguf the same bytes ggufBytes builds', () => {
    const p = path.join(tmp.dir, 'w.gguf');
    writeGguf(p, tensors);
    assert.deepEqual(fs.readFileSync(p), ggufBytes(tensors));
  });
});

describe('ggml block types (formats/ggml.ts)', () => {
  for (const b of BLOCKS) {
    it(`${b.type}: decodes bit for bit as gguf-py does`, () => {
      const y = dequantizeGgml(Buffer.from(b.bytes, 'hex'), b.type);
      assert.deepEqual(Array.from(new Uint32Array(y.buffer)), b.f32bits);
    });
  }

  for (const [type, bits, quantize] of [['Q8_0', 8, quantizeQ8_0], ['Q4_0', 4, quantizeQ4_0]] as const) {
    it(`${type} → MatMulNBits ${bits}-bit blocks of 32: the same values, every one (codes moved, scales the file's)`, () => {
      const n = 5, k = 96;
      const q = quantize(randomFloats(n * k, 7));
      const nb = ggmlToNBits(q, type);
      const mm = dequantizeNBits({ n, k, bits, blockSize: 32, data: nb.data, scales: nb.scales });
      const ref = dequantizeGgml(q, type);
      assert.deepEqual(new Uint32Array(mm.buffer), new Uint32Array(ref.buffer));
      assert.equal(nb.data.byteLength, (n * k * bits) / 8);
    });
  }

  it('K-quants (here Q6_K, Q4_K): the exact decoding re-quantized to int8 blocks of 32, each value within one step of its block (half a step but at the clamped far end)', () => {
    for (const type of ['Q6_K', 'Q4_K'] as const) {
      const block = BLOCKS.find((x) => x.type === type)!;
      const bytes = Buffer.from(block.bytes, 'hex');
      const exact = dequantizeGgml(bytes, type);
      const q = runQuantJob({ bytes, dtype: type, n: 1, k: exact.length, opts: { bits: 8, blockSize: 32, zeroPoints: false } });
      assert.equal(q.blockSize, 32);
      const back = dequantizeNBits(q);
      for (let b = 0; b < exact.length / 32; b++) {
        const step = Math.abs(q.scales[b]);
        const amax = Math.max(...exact.subarray(b * 32, b * 32 + 32).map(Math.abs));
        for (let j = b * 32; j < b * 32 + 32; j++) {
          // Symmetric blocks put the largest magnitude at −128 exactly: only the opposite end (+128 → 127) loses a whole step.
          const bound = Math.abs(exact[j]) > amax - step ? step : step / 2;
          assert.ok(Math.abs(back[j] - exact[j]) <= bound * (1 + 1e-4), `${type} element ${j}: ${back[j]} vs ${exact[j]}`);
        }
      }
    }
  });

  it('Q4_0 nibble order: element j in byte j low, element j+16 in byte j high → MatMulNBits pairs (2i, 2i+1)', () => {
    const block = new Uint8Array(18);
    block[1] = 0x3c; // d = 1.0 (fp16 0x3c00)
    for (let j = 0; j < 16; j++) block[2 + j] = (j & 15) | (((15 - j) & 15) << 4);
    // Elements: 0..15 then 15..0 (codes), values code − 8.
    const { data } = ggmlToNBits(block, 'Q4_0');
    const codes = Array.from(data).flatMap((b) => [b & 15, b >> 4]);
    assert.deepEqual(codes, [...Array.from({ length: 16 }, (_, j) => j), ...Array.from({ length: 16 }, (_, j) => 15 - j)]);
  });
});

describe('memory model for GGUF DiTs (models/weightBytes.ts)', () => {
  it('counts a quantized Linear as its file bytes and as MatMulNBits blocks of 32 whatever the format', () => {
    const n = 3072, k = 3072;
    assert.equal(tensorBytes({ name: 'w', shape: [n, k], dtype: 'Q8_0' }), (n * k / 32) * 34);
    assert.equal(tensorBytes({ name: 'w', shape: [n, k], dtype: 'Q6_K' }), (n * k / 256) * 210);
    for (const format of ['fp8', 'fp16', 'int4'] as const) {
      assert.equal(ditWeightBytes([{ name: 'w', shape: [n, k], dtype: 'Q8_0' }], format), nbitsBytes(n, k, 8, 32));
      assert.equal(ditWeightBytes([{ name: 'w', shape: [n, k], dtype: 'Q4_0' }], format), nbitsBytes(n, k, 4, 32));
      assert.equal(ditWeightBytes([{ name: 'w', shape: [n, k], dtype: 'Q5_K' }], format), nbitsBytes(n, k, 8, 32));
    }
  });
});
