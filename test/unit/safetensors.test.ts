import * as assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { bf16ToF32, DType, E4M3_TO_F32, f16ToF32, f32ToE4M3, f32ToF16 } from '../../src/inference/formats/dtypes';
import { MAX_HEADER_BYTES, MAX_TENSORS, openTensors, readShardIndex, SafetensorsError, SafetensorsFile, ShardedSafetensors } from '../../src/inference/formats/safetensors';
import { tempDir, writeIndex, writeRawSafetensors, writeSafetensors, writeSparseSafetensors } from '../helpers/writeSafetensors';

const MODELS = path.resolve(__dirname, '../fixtures/flux-tiny/models');

/** Asserts `fn` throws a SafetensorsError whose message names `file` and matches `problem`. */
function throwsAbout(fn: () => unknown, file: string, problem: RegExp): SafetensorsError {
  let caught: unknown;
  try {
    fn();
  } catch (e) {
    caught = e;
  }
  assert.ok(caught instanceof SafetensorsError, `expected a SafetensorsError, got ${caught === undefined ? 'no error' : String(caught)}`);
  assert.ok(caught.message.includes(path.resolve(file)), `message should name ${file}: ${caught.message}`);
  assert.match(caught.message, problem);
  return caught;
}

function bytesOf(view: ArrayBufferView): Uint8Array {
  return new Uint8Array(view.buffer, view.byteOffset, view.byteLength);
}

describe('safetensors reader', () => {
  let tmp: { dir: string; cleanup: () => void };
  before(() => {
    tmp = tempDir('st-test-');
  });
  after(() => tmp.cleanup());
  const at = (name: string) => path.join(tmp.dir, name);

  describe('dtypes written by the test', () => {
    const f32 = [0, -0, 1.5, -2.25, 65504, 1e-7, 3.4e38];
    const cases: Array<{ dtype: DType; data: Uint8Array; expect: number[] }> = [
      { dtype: 'F64', data: bytesOf(Float64Array.from([1.25, -1e300, 2 ** -1074])), expect: [1.25, -Infinity, 0] }, // f32 range
      { dtype: 'F32', data: bytesOf(Float32Array.from(f32)), expect: [...Float32Array.from(f32)] },
      { dtype: 'F16', data: bytesOf(Uint16Array.from([0x3c00, 0xc000, 0x7bff, 0x0001, 0x7c00, 0x8000])), expect: [1, -2, 65504, 2 ** -24, Infinity, -0] },
      { dtype: 'BF16', data: bytesOf(Uint16Array.from([0x3f80, 0xc040, 0x7f7f, 0x0001, 0xff80])), expect: [1, -3, bf16ToF32(0x7f7f), bf16ToF32(1), -Infinity] },
      { dtype: 'F8_E4M3', data: Uint8Array.from([0x38, 0xb8, 0x7e, 0x01, 0x00, 0x80]), expect: [1, -1, 448, 2 ** -9, 0, -0] },
      { dtype: 'F8_E5M2', data: Uint8Array.from([0x3c, 0x7b, 0x7c, 0xfc, 0x01]), expect: [1, 57344, Infinity, -Infinity, 2 ** -16] },
      { dtype: 'I64', data: bytesOf(BigInt64Array.from([0n, -1n, 9007199254740991n, -(2n ** 40n)])), expect: [0, -1, 9007199254740992, -(2 ** 40)] },
      { dtype: 'I32', data: bytesOf(Int32Array.from([-2147483648, 7])), expect: [-2147483648, 7] },
      { dtype: 'I16', data: bytesOf(Int16Array.from([-32768, 32767])), expect: [-32768, 32767] },
      { dtype: 'I8', data: bytesOf(Int8Array.from([-128, 127, -1])), expect: [-128, 127, -1] },
      { dtype: 'U64', data: bytesOf(BigUint64Array.from([0n, 2n ** 63n])), expect: [0, 2 ** 63] },
      { dtype: 'U32', data: bytesOf(Uint32Array.from([4294967295, 1])), expect: [4294967295, 1] },
      { dtype: 'U16', data: bytesOf(Uint16Array.from([65535, 2])), expect: [65535, 2] },
      { dtype: 'U8', data: Uint8Array.from([0, 255, 17]), expect: [0, 255, 17] },
      { dtype: 'BOOL', data: Uint8Array.from([1, 0, 1]), expect: [1, 0, 1] },
    ];
    let file: string;
    before(() => {
      const tensors: Record<string, { dtype: string; shape: number[]; data: Uint8Array }> = {};
      for (const c of cases) tensors[`t.${c.dtype}`] = { dtype: c.dtype, shape: [c.expect.length], data: c.data };
      tensors['scalar'] = { dtype: 'F32', shape: [], data: bytesOf(Float32Array.from([42])) };
      tensors['empty'] = { dtype: 'F32', shape: [0, 3], data: new Uint8Array(0) };
      tensors['matrix'] = { dtype: 'F16', shape: [2, 3], data: bytesOf(Uint16Array.from([1, 2, 3, 4, 5, 6].map(f32ToF16))) };
      file = writeSafetensors(at('dtypes.safetensors'), tensors, { format: 'pt', purpose: 'test' });
    });

    for (const c of cases) {
      it(`reads ${c.dtype}`, () => {
        const f = SafetensorsFile.open(file);
        const info = f.info(`t.${c.dtype}`);
        assert.equal(info.dtype, c.dtype);
        assert.deepEqual(info.shape, [c.expect.length]);
        assert.equal(info.file, path.resolve(file));
        assert.deepEqual(bytesOf(f.readBytes(`t.${c.dtype}`)), c.data);
        const got = f.readF32(`t.${c.dtype}`);
        assert.deepEqual([...got].map((v) => (Object.is(v, -0) ? '-0' : v)), c.expect.map((v) => (Object.is(v, -0) ? '-0' : Math.fround(v))));
        const half = f.readF16(`t.${c.dtype}`);
        assert.deepEqual([...half], c.expect.map((v) => f32ToF16(Math.fround(v))));
        f.close();
      });
    }

    it('reads scalars, zero-size tensors and 2-D tensors', () => {
      const f = SafetensorsFile.open(file);
      assert.deepEqual([...f.readF32('scalar')], [42]);
      assert.deepEqual(f.info('scalar').shape, []);
      assert.equal(f.readBytes('empty').byteLength, 0);
      assert.deepEqual([...f.readF32('matrix')], [1, 2, 3, 4, 5, 6]);
      assert.deepEqual([...f.readF16('matrix')].map(f16ToF32), [1, 2, 3, 4, 5, 6]);
      f.close();
    });

    it('gives names, has(), __metadata__ and absolute offsets', () => {
      const f = SafetensorsFile.open(file);
      assert.equal(f.names().length, cases.length + 3);
      assert.ok(f.has('t.BF16'));
      assert.ok(!f.has('__metadata__'));
      assert.deepEqual(f.metadata, { format: 'pt', purpose: 'test' });
      const t = f.info('t.F32');
      const raw = fs.readFileSync(file);
      assert.deepEqual(raw.subarray(t.offset, t.offset + t.byteLength), f.readBytes('t.F32'));
      assert.equal(f.headerBytes, 8 + Number(raw.readBigUInt64LE(0)));
      f.close();
    });

    it('reopens after close()', () => {
      const f = SafetensorsFile.open(file);
      f.close();
      f.close();
      assert.deepEqual([...f.readF32('scalar')], [42]);
      f.close();
    });
  });

  describe('golden tiny models', () => {
    it('reads the bf16 BFL DiT with its __metadata__', () => {
      const f = SafetensorsFile.open(path.join(MODELS, 'flux-tiny.safetensors'));
      assert.equal(f.names().length, 84);
      assert.equal(f.metadata.format, 'pt');
      assert.match(f.metadata.note, /random weights/);
      const qkv = f.info('double_blocks.0.img_attn.qkv.weight');
      assert.deepEqual([qkv.dtype, qkv.shape], ['BF16', [192, 64]]);
      const w = f.readF32('img_in.weight');
      assert.equal(w.length, 64 * 64);
      assert.ok(w.some((v) => v !== 0) && w.every(Number.isFinite));
      f.close();
    });

    it('fp8 DiT = saturating e4m3 cast of the bf16 DiT, tensor for tensor', () => {
      const bf = SafetensorsFile.open(path.join(MODELS, 'flux-tiny.safetensors'));
      const f8 = SafetensorsFile.open(path.join(MODELS, 'flux-tiny-fp8.safetensors'));
      assert.deepEqual(f8.names().sort(), bf.names().sort());
      let fp8Tensors = 0;
      for (const name of bf.names()) {
        const a = bf.info(name);
        const b = f8.info(name);
        assert.deepEqual(b.shape, a.shape, name);
        if (a.shape.length === 2) {
          assert.equal(b.dtype, 'F8_E4M3', `${name} should be fp8`);
          fp8Tensors++;
          const want = Uint8Array.from(bf.readF32(name), f32ToE4M3);
          assert.deepEqual(bytesOf(f8.readBytes(name)), want, name);
          const decoded = f8.readF32(name);
          for (let i = 0; i < want.length; i++) assert.equal(decoded[i], E4M3_TO_F32[want[i]]);
        } else {
          assert.equal(b.dtype, 'BF16', `${name} should stay bf16`);
          assert.deepEqual(f8.readBytes(name), bf.readBytes(name), name);
        }
      }
      assert.equal(fp8Tensors, 36);
      bf.close();
      f8.close();
    });

    it('reads the sharded T5 through its index, a folder, or openTensors', () => {
      const dir = path.join(MODELS, 'text_encoder_2');
      const index = path.join(dir, 'model.safetensors.index.json');
      const viaIndex = ShardedSafetensors.open(index);
      assert.equal(viaIndex.path, index);
      assert.equal(viaIndex.names().length, 21);
      assert.equal(viaIndex.shards.length, 2);
      assert.equal(path.basename(viaIndex.info('shared.weight').file), 'model-00001-of-00002.safetensors');
      assert.equal(path.basename(viaIndex.info('encoder.final_layer_norm.weight').file), 'model-00002-of-00002.safetensors');
      const shard2 = SafetensorsFile.open(path.join(dir, 'model-00002-of-00002.safetensors'));
      for (const n of shard2.names()) assert.deepEqual(viaIndex.readF32(n), shard2.readF32(n), n);
      const viaFolder = openTensors(dir);
      assert.ok(viaFolder instanceof ShardedSafetensors);
      assert.deepEqual(viaFolder.names().sort(), viaIndex.names().sort());
      assert.deepEqual(viaFolder.readBytes('shared.weight'), viaIndex.readBytes('shared.weight'));
      assert.ok(openTensors(index) instanceof ShardedSafetensors);
      throwsAbout(() => viaIndex.info('encoder.block.9.layer.0.SelfAttention.q.weight'), index, /no tensor named "encoder\.block\.9\.layer\.0\.SelfAttention\.q\.weight" in any shard; similar names: .*SelfAttention\.q\.weight/);
      for (const s of [viaIndex, viaFolder, shard2]) s.close();
    });

    it('openTensors finds the single file of a component folder', () => {
      const src = openTensors(path.join(MODELS, 'text_encoder'));
      assert.ok(src instanceof SafetensorsFile);
      assert.equal(path.basename(src.path), 'model.safetensors');
      src.close();
    });
  });

  describe('lazy reading', () => {
    it('opens a 12 GB sparse checkpoint in well under a second without reading it', function () {
      const file = at('huge.safetensors');
      const gib = 1024 ** 3;
      const tensors = {
        'a.weight': { dtype: 'BF16', shape: [65536, 32768] }, // 4 GiB
        'b.weight': { dtype: 'F32', shape: [32768, 32768] }, // 4 GiB
        'c.weight': { dtype: 'F8_E4M3', shape: [4 * gib] }, // 4 GiB
        'tail.bias': { dtype: 'F32', shape: [4] },
      };
      writeSparseSafetensors(file, tensors);
      const size = fs.statSync(file).size;
      assert.ok(size > 12 * gib);
      // Real bytes for the last tensor, beyond the 4 GiB and 2^32 offsets.
      const probe = SafetensorsFile.open(file);
      const tail = probe.info('tail.bias');
      probe.close();
      assert.ok(tail.offset > 2 ** 33);
      const fd = fs.openSync(file, 'r+');
      fs.writeSync(fd, Buffer.from(Float32Array.from([1, 2, 3, 4]).buffer), 0, 16, tail.offset);
      fs.closeSync(fd);

      global.gc?.();
      const rssBefore = process.memoryUsage().rss;
      const t0 = process.hrtime.bigint();
      const f = SafetensorsFile.open(file);
      const ms = Number(process.hrtime.bigint() - t0) / 1e6;
      assert.ok(ms < 1000, `open took ${ms.toFixed(0)} ms`);
      assert.deepEqual(f.info('b.weight').shape, [32768, 32768]);
      assert.deepEqual([...f.readF32('tail.bias')], [1, 2, 3, 4]);
      const grew = process.memoryUsage().rss - rssBefore;
      assert.ok(grew < 64 * 1024 * 1024, `RSS grew by ${(grew / 2 ** 20).toFixed(0)} MiB`);
      f.close();
      fs.rmSync(file);
    });
  });

  describe('bad files: the error names the file and the problem', () => {
    const good = { dtype: 'F32', shape: [2, 2], data_offsets: [0, 16] };

    it('empty file', () => {
      const f = at('empty.safetensors');
      fs.writeFileSync(f, '');
      throwsAbout(() => SafetensorsFile.open(f), f, /only 0 bytes \(the file is truncated or empty\)/);
    });

    (process.platform === 'win32' ? it.skip : it)('a FIFO is refused at once instead of blocking until a writer comes', () => {
      const f = at('fifo.safetensors');
      execFileSync('mkfifo', [f]);
      throwsAbout(() => SafetensorsFile.open(f), f, /is a FIFO \(named pipe\), not a regular file/);
    });

    it('file shorter than the 8-byte length', () => {
      const f = at('short.safetensors');
      fs.writeFileSync(f, Buffer.from([1, 2, 3]));
      throwsAbout(() => SafetensorsFile.open(f), f, /only 3 bytes/);
    });

    it('truncated: data shorter than the header says', () => {
      const f = writeRawSafetensors(at('truncated.safetensors'), { a: good, b: { dtype: 'F32', shape: [4], data_offsets: [16, 32] } }, 20);
      throwsAbout(() => SafetensorsFile.open(f), f, /truncated: .*32 bytes of tensor data \(tensor "b" ends there\) but only 20 are present/);
    });

    it('header length beyond the end of the file', () => {
      const f = writeRawSafetensors(at('longheader.safetensors'), { a: good }, 16, 5000n);
      throwsAbout(() => SafetensorsFile.open(f), f, /not a safetensors file, or it is truncated: its header length goes beyond the end of the \d+-byte file/);
      // The length is read from the file: never echoed (an arbitrary file's first 8 bytes would be).
      assert.throws(() => SafetensorsFile.open(f), (e: Error) => !e.message.includes('5000'));
    });

    it('a file of a format people mix up with safetensors says which it is (an image, a PyTorch pickle or zip, a GGUF), not only "header length over the limit"', () => {
      const head = (bytes: number[] | string) => Buffer.concat([Buffer.from(typeof bytes === 'string' ? Buffer.from(bytes, 'latin1') : bytes), Buffer.alloc(64, 7)]);
      const cases: Array<[string, Buffer, RegExp]> = [
        ['photo.safetensors', head([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]), /not a safetensors file: it is a PNG image$/],
        ['photo2.safetensors', head([0xff, 0xd8, 0xff, 0xe0, 0x00, 0x10, 0x4a, 0x46]), /it is a JPEG image$/],
        ['lora.ckpt', head('PK\x03\x04\x14\x00\x00\x00'), /it is a PyTorch checkpoint \(.*pickles, which can run code.*get the \.safetensors version/],
        ['old.bin', head([0x80, 0x02, 0x7d, 0x71, 0x00, 0x28, 0x58, 0x0b]), /it is a PyTorch checkpoint/],
        ['q8.safetensors', head('GGUF\x03\x00\x00\x00'), /it is a GGUF file: .*a LoRA must be \.safetensors/],
      ];
      for (const [name, bytes, message] of cases) {
        const f = at(name);
        fs.writeFileSync(f, bytes);
        throwsAbout(() => SafetensorsFile.open(f), f, message);
      }
    });

    it('header length claiming over 100 MB (and absurd u64 values)', () => {
      const f = writeRawSafetensors(at('bigheader.safetensors'), { a: good }, 16, BigInt(MAX_HEADER_BYTES + 1));
      throwsAbout(() => SafetensorsFile.open(f), f, /not a safetensors file \(its header length is over the 100000000-byte limit\)/);
      assert.throws(() => SafetensorsFile.open(f), (e: Error) => !e.message.includes('100000001'));
      const g = writeRawSafetensors(at('hugeheader.safetensors'), { a: good }, 16, 0xffffffffffffffffn);
      throwsAbout(() => SafetensorsFile.open(g), g, /not a safetensors file/);
      assert.throws(() => SafetensorsFile.open(g), (e: Error) => !e.message.includes('18446744073709551615'));
      // Any file's first 8 bytes read as a length: "/etc/shadow" must not come back as a number.
      const text = at('text.safetensors');
      fs.writeFileSync(text, 'root:$6$secretsalt$hash:19000:0:99999:7:::\n');
      assert.throws(() => SafetensorsFile.open(text), (e: Error) => /not a safetensors file/.test(e.message) && !e.message.includes(String(Buffer.from('root:$6$').readBigUInt64LE(0))));
    });

    it('header that is not JSON, or not an object', () => {
      const f = writeRawSafetensors(at('badjson.safetensors'), '{"a": {"dtype": "F32",', 16);
      throwsAbout(() => SafetensorsFile.open(f), f, /header is not valid JSON/);
      // JSON.parse quotes the text it choked on: the file's content stays out of the message.
      const secret = writeRawSafetensors(at('secret.safetensors'), 'TOPSECRET-PASSPHRASE', 0);
      assert.throws(() => SafetensorsFile.open(secret), (e: Error) => /not a safetensors file/.test(e.message) && !e.message.includes('TOPSECRET'));
      const g = writeRawSafetensors(at('array.safetensors'), '[1, 2]', 0);
      throwsAbout(() => SafetensorsFile.open(g), g, /header is not a JSON object/);
      const h = writeRawSafetensors(at('binary.safetensors'), Buffer.from([0xff, 0xfe, 0x00, 0x01]).toString('latin1'), 0);
      throwsAbout(() => SafetensorsFile.open(h), h, /header is not valid JSON/);
    });

    it('offsets outside the data section', () => {
      const f = writeRawSafetensors(at('outside.safetensors'), { a: good, far: { dtype: 'F32', shape: [4], data_offsets: [1 << 30, (1 << 30) + 16] } }, 16);
      throwsAbout(() => SafetensorsFile.open(f), f, /tensor "far" ends there\) but only 16 are present/);
      const g = writeRawSafetensors(at('reversed.safetensors'), { a: { dtype: 'F32', shape: [0], data_offsets: [16, 0] } }, 16);
      throwsAbout(() => SafetensorsFile.open(g), g, /tensor "a" has invalid data_offsets \[16,0\]/);
      const h = writeRawSafetensors(at('negative.safetensors'), { a: { dtype: 'F32', shape: [1], data_offsets: [-4, 0] } }, 16);
      throwsAbout(() => SafetensorsFile.open(h), h, /invalid data_offsets \[-4,0\]/);
      const i = writeRawSafetensors(at('fraction.safetensors'), { a: { dtype: 'F32', shape: [1], data_offsets: [0.5, 4.5] } }, 16);
      throwsAbout(() => SafetensorsFile.open(i), i, /invalid data_offsets/);
      const j = writeRawSafetensors(at('nooffsets.safetensors'), { a: { dtype: 'F32', shape: [1] } }, 16);
      throwsAbout(() => SafetensorsFile.open(j), j, /tensor "a" has invalid data_offsets undefined/);
    });

    it('overlapping tensors', () => {
      const f = writeRawSafetensors(at('overlap.safetensors'), {
        a: { dtype: 'F32', shape: [4], data_offsets: [0, 16] },
        b: { dtype: 'F32', shape: [2], data_offsets: [8, 16] },
      }, 16);
      throwsAbout(() => SafetensorsFile.open(f), f, /tensors "a" and "b" overlap/);
      // An overlap hidden behind a tensor that lies inside a longer one.
      const g = writeRawSafetensors(at('overlap2.safetensors'), {
        long: { dtype: 'U8', shape: [100], data_offsets: [0, 100] },
        inner: { dtype: 'U8', shape: [10], data_offsets: [10, 20] },
        later: { dtype: 'U8', shape: [10], data_offsets: [90, 100] },
      }, 100);
      throwsAbout(() => SafetensorsFile.open(g), g, /tensors "long" and "inner" overlap/);
    });

    it('shape × dtype size differs from the byte range', () => {
      const f = writeRawSafetensors(at('size.safetensors'), { a: { dtype: 'BF16', shape: [2, 3], data_offsets: [0, 16] } }, 16);
      throwsAbout(() => SafetensorsFile.open(f), f, /tensor "a" \(BF16 \[2,3\]\) needs 12 bytes but its data_offsets span 16/);
      const g = writeRawSafetensors(at('badshape.safetensors'), { a: { dtype: 'F32', shape: [-1, 4], data_offsets: [0, 16] } }, 16);
      throwsAbout(() => SafetensorsFile.open(g), g, /tensor "a" has an invalid shape \[-1,4\]/);
      const h = writeRawSafetensors(at('noshape.safetensors'), { a: { dtype: 'F32', data_offsets: [0, 16] } }, 16);
      throwsAbout(() => SafetensorsFile.open(h), h, /tensor "a" has an invalid shape undefined/);
    });

    it('unknown dtype', () => {
      const f = writeRawSafetensors(at('dtype.safetensors'), { a: { dtype: 'F8_E4M3FNUZ', shape: [4], data_offsets: [0, 4] } }, 4);
      throwsAbout(() => SafetensorsFile.open(f), f, /tensor "a" has unknown dtype "F8_E4M3FNUZ"/);
      const g = writeRawSafetensors(at('nulltensor.safetensors'), { a: null }, 4);
      throwsAbout(() => SafetensorsFile.open(g), g, /tensor "a" has unknown dtype undefined/);
    });

    it('__metadata__ that is not a map of strings', () => {
      const f = writeRawSafetensors(at('meta.safetensors'), { __metadata__: { step: 5 }, a: good }, 16);
      throwsAbout(() => SafetensorsFile.open(f), f, /"__metadata__" must be an object of strings/);
    });

    it('a tensor name that is absent', () => {
      const f = writeSafetensors(at('names.safetensors'), { 'blocks.0.attn.weight': { dtype: 'F32', shape: [1] } });
      const s = SafetensorsFile.open(f);
      throwsAbout(() => s.info('blocks.1.attn.weight'), f, /no tensor named "blocks\.1\.attn\.weight" \(the file has 1 tensors; similar names: blocks\.0\.attn\.weight\)/);
      throwsAbout(() => s.readF32('nope'), f, /no tensor named "nope"/);
      s.close();
    });

    it('a missing file, a folder given as a file, a folder without checkpoints', () => {
      const f = at('does-not-exist.safetensors');
      throwsAbout(() => SafetensorsFile.open(f), f, /cannot open: ENOENT/);
      throwsAbout(() => openTensors(f), f, /no such file or folder/);
      const dir = at('a-folder');
      fs.mkdirSync(dir);
      throwsAbout(() => SafetensorsFile.open(dir), dir, /is a folder, not a \.safetensors file/);
      throwsAbout(() => openTensors(dir), dir, /folder has no \.safetensors file/);
      writeSafetensors(path.join(dir, 'x.safetensors'), { a: { dtype: 'U8', shape: [1] } });
      writeSafetensors(path.join(dir, 'y.safetensors'), { a: { dtype: 'U8', shape: [1] } });
      throwsAbout(() => openTensors(dir), dir, /2 \.safetensors files and no \.safetensors\.index\.json.*x\.safetensors, y\.safetensors/);
    });

    it('a file truncated after it was opened', () => {
      const f = writeSafetensors(at('shrinks.safetensors'), { a: { dtype: 'F32', shape: [1024] } });
      const s = SafetensorsFile.open(f);
      fs.truncateSync(f, s.headerBytes + 100);
      throwsAbout(() => s.readBytes('a'), f, /unexpected end of file while reading tensor "a"/);
      s.close();
    });

    describe('sharded', () => {
      function shards(name: string) {
        const dir = at(name);
        writeSafetensors(path.join(dir, 'model-00001-of-00002.safetensors'), { 'a.weight': { dtype: 'F32', shape: [2] } });
        writeSafetensors(path.join(dir, 'model-00002-of-00002.safetensors'), { 'b.weight': { dtype: 'F32', shape: [3] } });
        return dir;
      }

      it('opens a well-formed index', () => {
        const dir = shards('sharded-ok');
        const idx = writeIndex(path.join(dir, 'model.safetensors.index.json'), { 'a.weight': 'model-00001-of-00002.safetensors', 'b.weight': 'model-00002-of-00002.safetensors' });
        const s = ShardedSafetensors.open(idx);
        assert.deepEqual(s.names(), ['a.weight', 'b.weight']);
        assert.equal(s.readF32('b.weight').length, 3);
        s.close();
      });

      it('a shard listed in the index is missing', () => {
        const dir = shards('sharded-missing');
        fs.rmSync(path.join(dir, 'model-00002-of-00002.safetensors'));
        const idx = writeIndex(path.join(dir, 'model.safetensors.index.json'), { 'a.weight': 'model-00001-of-00002.safetensors', 'b.weight': 'model-00002-of-00002.safetensors' });
        throwsAbout(() => ShardedSafetensors.open(idx), idx, /shard listed in the index not found in .*: model-00002-of-00002\.safetensors/);
        throwsAbout(() => openTensors(dir), idx, /not found/);
      });

      it('a shard lacks a tensor the index puts in it', () => {
        const dir = shards('sharded-lacks');
        const idx = writeIndex(path.join(dir, 'model.safetensors.index.json'), { 'a.weight': 'model-00001-of-00002.safetensors', 'c.weight': 'model-00002-of-00002.safetensors' });
        throwsAbout(() => ShardedSafetensors.open(idx), path.join(dir, 'model-00002-of-00002.safetensors'), /the index model\.safetensors\.index\.json puts tensor "c\.weight" in this shard, but the shard has no such tensor/);
      });

      it('a broken shard is reported by its own name', () => {
        const dir = shards('sharded-broken');
        const bad = path.join(dir, 'model-00002-of-00002.safetensors');
        fs.truncateSync(bad, 5);
        const idx = writeIndex(path.join(dir, 'model.safetensors.index.json'), { 'a.weight': 'model-00001-of-00002.safetensors', 'b.weight': 'model-00002-of-00002.safetensors' });
        throwsAbout(() => ShardedSafetensors.open(idx), bad, /only 5 bytes/);
      });

      it('an index that is not JSON, lacks weight_map, or names no file', () => {
        const dir = shards('sharded-badindex');
        const idx = path.join(dir, 'model.safetensors.index.json');
        fs.writeFileSync(idx, '{"weight_map": ');
        throwsAbout(() => ShardedSafetensors.open(idx), idx, /index is not valid JSON/);
        fs.writeFileSync(idx, '{"metadata": {}}');
        throwsAbout(() => ShardedSafetensors.open(idx), idx, /index has no "weight_map" object/);
        fs.writeFileSync(idx, 'null');
        throwsAbout(() => ShardedSafetensors.open(idx), idx, /index has no "weight_map" object/);
        writeIndex(idx, { 'a.weight': 5 as unknown as string });
        throwsAbout(() => ShardedSafetensors.open(idx), idx, /maps tensor "a\.weight" to 5, which is not a shard file name/);
        writeIndex(idx, { 'a.weight': '../elsewhere/model.safetensors' });
        throwsAbout(() => ShardedSafetensors.open(idx), idx, /not a shard file name/);
        throwsAbout(() => ShardedSafetensors.open(path.join(dir, 'nope.index.json')), path.join(dir, 'nope.index.json'), /cannot read index: ENOENT/);
      });

      it('readShardIndex lists each shard once, absolute, in first-listed order', () => {
        const dir = shards('sharded-list');
        const idx = writeIndex(path.join(dir, 'model.safetensors.index.json'), { 'b.weight': 'model-00002-of-00002.safetensors', 'a.weight': 'model-00001-of-00002.safetensors', 'c.weight': 'model-00002-of-00002.safetensors' });
        const { shards: files, weightMap } = readShardIndex(idx);
        assert.deepEqual(files, [path.join(dir, 'model-00002-of-00002.safetensors'), path.join(dir, 'model-00001-of-00002.safetensors')]);
        assert.equal(weightMap['a.weight'], 'model-00001-of-00002.safetensors');
        writeIndex(idx, { 'a.weight': '../elsewhere/model.safetensors' });
        throwsAbout(() => readShardIndex(idx), idx, /not a shard file name/);
      });

      it('a folder with two indexes says which', () => {
        const dir = shards('sharded-two');
        writeIndex(path.join(dir, 'model.safetensors.index.json'), { 'a.weight': 'model-00001-of-00002.safetensors' });
        writeIndex(path.join(dir, 'model.fp16.safetensors.index.json'), { 'a.weight': 'model-00001-of-00002.safetensors' });
        throwsAbout(() => openTensors(dir), dir, /2 \.safetensors\.index\.json files/);
      });
    });
  });
});

/** Runs `code` (TypeScript, with the reader imported as `st`) in a child process, so a reader that blocks cannot hang the suite. */
function runIsolated(code: string, timeoutMs = 15000): { status: number | null; stdout: string; stderr: string; timedOut: boolean } {
  const reader = JSON.stringify(path.resolve(__dirname, '../../src/inference/formats/safetensors'));
  const r = spawnSync(process.execPath, ['-r', 'tsx/cjs', '-e', `const st = require(${reader});\n${code}`], { encoding: 'utf8', timeout: timeoutMs });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr, timedOut: r.error !== undefined || r.signal !== null };
}

describe("safetensors reader: the format's own rules (issue 16)", () => {
  let tmp: { dir: string; cleanup: () => void };
  before(() => {
    tmp = tempDir('st-rules-');
  });
  after(() => tmp.cleanup());
  const at = (name: string) => path.join(tmp.dir, name);
  const f32 = (n: number, begin: number) => ({ dtype: 'F32', shape: [n], data_offsets: [begin, begin + 4 * n] });

  it('refuses bytes after the last tensor (the data section must be covered exactly)', () => {
    const f = writeRawSafetensors(at('trailing.safetensors'), { a: f32(4, 0) }, 16 + 4096);
    throwsAbout(() => SafetensorsFile.open(f), f, /4096 bytes after the last tensor .*not covered by any tensor/);
  });

  it('refuses a gap between tensors', () => {
    const f = writeRawSafetensors(at('gap.safetensors'), { a: f32(4, 0), b: f32(4, 32) }, 48);
    throwsAbout(() => SafetensorsFile.open(f), f, /16 bytes between tensors "a" and "b" .*not covered/);
  });

  it('refuses a zero-size tensor placed inside another one (safetensors requires each tensor to start where the previous ends)', () => {
    const f = writeRawSafetensors(at('zero-inside.safetensors'), { a: f32(4, 0), z: { dtype: 'F32', shape: [0], data_offsets: [8, 8] } }, 16);
    throwsAbout(() => SafetensorsFile.open(f), f, /tensors "a" and "z" overlap/);
  });

  it('accepts zero-size tensors at tensor boundaries, in any header order', () => {
    const f = writeRawSafetensors(at('zero-ok.safetensors'), { z2: { dtype: 'F32', shape: [0], data_offsets: [16, 16] }, b: f32(2, 16), z1: { dtype: 'U8', shape: [0, 5], data_offsets: [0, 0] }, a: f32(4, 0) }, 24);
    const s = SafetensorsFile.open(f);
    assert.deepEqual(s.names().sort(), ['a', 'b', 'z1', 'z2']);
    assert.equal(s.readBytes('z2').byteLength, 0);
    s.close();
  });

  it('refuses a duplicate tensor name instead of keeping the last one', () => {
    const e = '{"dtype":"F32","shape":[4],"data_offsets":[0,16]}';
    const f = writeRawSafetensors(at('dup.safetensors'), `{"a":${e},"a":${e}}`, 16);
    throwsAbout(() => SafetensorsFile.open(f), f, /tensor "a" is listed twice in the header/);
    // Escapes do not hide a duplicate, and a nested repeated key is not one.
    const g = writeRawSafetensors(at('dup-escaped.safetensors'), `{"__metadata__":{"k":"{\\"a\\":1,\\"a\\":2}"},"a":${e},"\\u0061":${e}}`, 16);
    throwsAbout(() => SafetensorsFile.open(g), g, /tensor "a" is listed twice/);
    const h = writeRawSafetensors(at('dup-metadata.safetensors'), `{"__metadata__":{"x":"1"},"a":${e},"__metadata__":{"x":"2"}}`, 16);
    throwsAbout(() => SafetensorsFile.open(h), h, /"__metadata__" is listed twice/);
  });

  it('keeps nested or quoted look-alikes of keys apart from top-level keys', () => {
    const e = (b: number) => `{"dtype":"U8","shape":[1],"data_offsets":[${b},${b + 1}]}`;
    const f = writeRawSafetensors(at('nested.safetensors'), ` { "__metadata__" : { "a" : "\\"b\\\\" , "b" : "}{,:" } , "a" : ${e(0)} ,\n"b":${e(1)} } `, 2);
    const s = SafetensorsFile.open(f);
    assert.deepEqual(s.names(), ['a', 'b']);
    assert.deepEqual(s.metadata, { a: '"b\\', b: '}{,:' });
    s.close();
  });

  it("uses safetensors' header limit of 100,000,000 bytes", () => {
    // exactly at the limit: refused only because this small file is shorter than that
    const at100m = writeRawSafetensors(at('at-limit.safetensors'), { a: f32(4, 0) }, 16, 100_000_000n);
    throwsAbout(() => SafetensorsFile.open(at100m), at100m, /its header length goes beyond the end of the \d+-byte file/);
    const f = writeRawSafetensors(at('over-limit.safetensors'), { a: f32(4, 0) }, 16, 100_000_001n);
    throwsAbout(() => SafetensorsFile.open(f), f, /its header length is over the 100000000-byte limit/);
  });

  it('refuses a header that is not UTF-8 (instead of reading it with replacement characters)', () => {
    const json = Buffer.concat([Buffer.from('{"a'), Buffer.from([0xff]), Buffer.from(`":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}}`)]);
    const head = Buffer.alloc(8);
    head.writeBigUInt64LE(BigInt(json.length));
    const f = at('latin1.safetensors');
    fs.writeFileSync(f, Buffer.concat([head, json, Buffer.alloc(16)]));
    throwsAbout(() => SafetensorsFile.open(f), f, /header is not valid UTF-8/);
  });

  it(`refuses more than MAX_TENSORS tensors quickly, before parsing the whole header`, () => {
    assert.ok(MAX_TENSORS >= 50_000 && MAX_TENSORS <= 1_000_000, `MAX_TENSORS ${MAX_TENSORS}`);
    // Zero-size tensors, all at offset 0: valid in every other respect.
    const n = MAX_TENSORS + 1;
    const parts: string[] = [];
    for (let i = 0; i < n; i++) parts.push(`"t${i}":{"dtype":"U8","shape":[0],"data_offsets":[0,0]}`);
    const f = writeRawSafetensors(at('many.safetensors'), `{${parts.join(',')}}`, 0);
    const t0 = Date.now();
    throwsAbout(() => SafetensorsFile.open(f), f, new RegExp(`more than ${MAX_TENSORS} tensors`));
    assert.ok(Date.now() - t0 < 2000, `took ${Date.now() - t0} ms`);
  });

  it('refuses a FIFO without blocking on it (a file, an index, or a path given to openTensors)', function () {
    if (process.platform === 'win32') this.skip();
    const fifo = at('pipe.safetensors');
    const idx = at('pipe.safetensors.index.json');
    spawnSync('mkfifo', [fifo, idx]);
    const r = runIsolated(`
      for (const open of [() => st.SafetensorsFile.open(${JSON.stringify(fifo)}), () => st.openTensors(${JSON.stringify(fifo)}), () => st.ShardedSafetensors.open(${JSON.stringify(idx)}), () => st.openTensors(${JSON.stringify(idx)})]) {
        try { open(); console.log('opened'); } catch (e) { console.log(e.name + ': ' + e.message); }
      }`);
    assert.equal(r.timedOut, false, 'the reader blocked on the FIFO');
    const lines = r.stdout.trim().split('\n');
    assert.equal(lines.length, 4, r.stdout + r.stderr);
    for (const l of lines) assert.match(l, /^SafetensorsError: .*pipe\.safetensors(\.index\.json)?: is a FIFO \(named pipe\), not a regular file( or folder)?$/);
  });

  it('refuses a character device such as /dev/zero with a SafetensorsError', function () {
    if (!fs.existsSync('/dev/zero')) this.skip();
    throwsAbout(() => openTensors('/dev/zero'), '/dev/zero', /is a character device, not a regular file/);
    throwsAbout(() => SafetensorsFile.open('/dev/zero'), '/dev/zero', /is a character device, not a regular file/);
  });
});
