// Fuzzing the safetensors reader (issue 16): mutated copies of the fixture checkpoints either open
// as valid tensors (each inside the file, sized by dtype × shape, reading back whole) or fail with
// a SafetensorsError — or, past the reader, a LayoutError. Never a hang, never another exception.
// Fixed seed, bounded count and time: a failure names the case to replay.

import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { DTYPE_BYTES } from '../../src/inference/formats/dtypes';
import { elementCount, SafetensorsError, SafetensorsFile } from '../../src/inference/formats/safetensors';
import { topLevelKeys } from '../../src/inference/formats/safetensorsHeader';
import { fuzzReader } from '../helpers/fuzzFiles';
import { fuzzLoop, rng, Rng } from '../helpers/prng';

const SEED = 0x5afe16;
const CASES = 1000;
const BUDGET_MS = 7000;
const FIXTURES = path.resolve(__dirname, '../fixtures/flux-tiny');
const SOURCES = ['cases/pipeline-2.safetensors', 'cases/transformer.safetensors', 'models/flux-tiny-fp8.safetensors'].map((f) => fs.readFileSync(path.join(FIXTURES, f)));

const JSON_CHARS = '{}[]",:\\0123456789-e. a\u00e9\u{1f98a}';

interface Parsed {
  header: Record<string, { dtype: string; shape: number[]; data_offsets: [number, number] }>;
  data: Buffer;
}

function split(file: Buffer): Parsed {
  const n = Number(file.readBigUInt64LE(0));
  return { header: JSON.parse(file.subarray(8, 8 + n).toString('utf8')), data: file.subarray(8 + n) };
}

function join(headerText: string, data: Buffer): Buffer {
  const body = Buffer.from(headerText, 'utf8');
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(body.length));
  return Buffer.concat([len, body, data]);
}

/** One structural change to the header JSON (what a buggy writer or an attacker would produce). */
function mutateHeader(r: Rng, file: Buffer): Buffer {
  const { header, data } = split(file);
  const names = Object.keys(header).filter((k) => k !== '__metadata__');
  const name = r.pick(names);
  const t = header[name];
  switch (r.int(9)) {
    case 0: t.shape = t.shape.length ? t.shape.map((d, i) => (i === 0 ? d * 2 : d)) : [2]; break;
    case 1: t.shape = [...t.shape].reverse(); break;
    case 2: t.dtype = r.pick(Object.keys(DTYPE_BYTES)); break;
    case 3: t.data_offsets = [t.data_offsets[0] + r.int(8) - 4, t.data_offsets[1] + r.int(8) - 4]; break;
    case 4: {
      const other = header[r.pick(names)];
      [t.data_offsets, other.data_offsets] = [other.data_offsets, t.data_offsets];
      break;
    }
    case 5: delete header[name]; break;
    case 6: (header as Record<string, unknown>).__metadata__ = r.pick([{ a: 1 }, 'x', null, [], { k: 'v' }]); break;
    case 7: {
      // The same name twice, as text (JSON.stringify cannot write it).
      const text = JSON.stringify(header);
      return join(`${text.slice(0, -1)},${JSON.stringify(name)}:${JSON.stringify(t)}}`, data);
    }
    default: (header as Record<string, unknown>)[name] = r.pick([null, 5, 'F32', { dtype: 'F32' }, { ...t, shape: [-1] }, { ...t, data_offsets: [0] }, { ...t, shape: [2 ** 53, 2] }]);
  }
  return join(JSON.stringify(header), data);
}

/** One byte-level change anywhere, weighted towards the header. */
function mutateBytes(r: Rng, file: Buffer): Buffer {
  const out = Buffer.from(file);
  const headerEnd = 8 + Number(file.readBigUInt64LE(0));
  switch (r.int(6)) {
    case 0: for (let k = 1 + r.int(4); k > 0; k--) out[8 + r.int(headerEnd - 8)] ^= 1 << r.int(8); return out;
    case 1: out[8 + r.int(headerEnd - 8)] = JSON_CHARS.charCodeAt(r.int(JSON_CHARS.length)) & 0xff; return out;
    case 2: out.writeBigUInt64LE(BigInt(Math.max(0, headerEnd - 8 + r.int(64) - 32)), 0); return out;
    case 3: out.writeBigUInt64LE(r.pick([0n, 1n, 2n ** 63n, 2n ** 64n - 1n, 100_000_000n, 100_000_001n]), 0); return out;
    case 4: return out.subarray(0, r.int(out.length));
    default: return Buffer.concat([out, Buffer.alloc(1 + r.int(64), r.int(256))]);
  }
}

function checkValid(s: SafetensorsFile, size: number): void {
  for (const n of s.names()) {
    const t = s.info(n);
    assert.equal(t.byteLength, elementCount(t.shape) * DTYPE_BYTES[t.dtype as keyof typeof DTYPE_BYTES], n);
    assert.ok(t.offset >= s.headerBytes && t.offset + t.byteLength <= size, `${n} lies outside the file`);
    assert.equal(s.readBytes(n).byteLength, t.byteLength);
  }
}

describe('fuzz: safetensors reader (seeded, bounded)', function () {
  this.timeout(30000);

  it(`${CASES} mutated fixture files: valid tensors or a clean error (seed ${SEED.toString(16)})`, () => {
    fuzzReader({
      seed: SEED,
      cases: CASES,
      budgetMs: BUDGET_MS,
      ext: 'safetensors',
      mutate: (r) => {
        const source = r.pick(SOURCES);
        return r.chance(0.5) ? mutateHeader(r, source) : mutateBytes(r, source);
      },
      open: (file) => SafetensorsFile.open(file),
      check: checkValid,
      refusal: SafetensorsError,
    });
  });

  it('topLevelKeys finds exactly the keys JSON.parse keeps, with repeats, on random JSON', () => {
    const r = rng(SEED + 1);
    const ws = () => r.pick(['', ' ', '\n', '\t ', '\r\n']);
    const key = () => r.pick(['a', 'b', '__metadata__', 'x"y', 'back\\slash', '{', '}', ',', ':', '\u00e9', '\u{1f98a}', '1', '__proto__', '']);
    const value = (depth: number): string => {
      const k = r.int(depth > 2 ? 4 : 6);
      if (k === 0) return JSON.stringify(r.pick([0, -1.5e3, true, null]));
      if (k === 1) return JSON.stringify(key() + key());
      if (k === 2) return '"' + r.pick(['\\"', '\\\\', '\\u0022', '{', '[']) + '"';
      if (k === 3) return `[${ws()}${value(depth + 1)}${ws()},${ws()}${value(depth + 1)}]`;
      return object(depth + 1);
    };
    const object = (depth: number, keys: string[] = []): string => {
      const n = r.int(5);
      const parts: string[] = [];
      for (let i = 0; i < n; i++) {
        const k = key();
        keys.push(k);
        // Sometimes the same key spelled with an escape.
        const spelled = k === 'a' && r.chance(0.3) ? '"\\u0061"' : JSON.stringify(k);
        parts.push(`${ws()}${spelled}${ws()}:${ws()}${value(depth)}${ws()}`);
      }
      return `{${parts.join(',')}}`;
    };
    fuzzLoop(2000, 3000, (i) => {
      const keys: string[] = [];
      const text = ws() + object(0, keys) + ws();
      const parsed = JSON.parse(text) as Record<string, unknown>;
      const found = topLevelKeys(text, 1000);
      assert.deepEqual(found, keys, `case ${i}: ${text}`);
      assert.deepEqual(new Set(found), new Set(Object.keys(parsed)), `case ${i}: ${text}`);
    });
  });
});
