// Where a warm WebGPU load's time goes, with the graph out of the way (benchmark helper, not product
// code). onnxruntime's WebGPU provider uploads every initializer through a staging buffer of its
// own; a warm int8 DiT load spends 80 % of its time there (≈ 1 GB/s, docs/BENCHMARKS.md, twelfth
// session). This probe loads the same 2 GiB of float16 weights cut into 8, 64, 512 or 2,048
// initializers, each read by a ReduceMax, and times session creation:
//   file    external data read by onnxruntime from a file in the page cache (what the product does)
//   memory  the same bytes handed over in memory (onnxruntime-node ≥ 1.31 `externalData`), read
//           first by Node in parallel pieces (that read is timed too)
// Whether the rate depends on the initializers' size (a per-buffer cost) or on where the bytes come
// from (the file read) says what a faster load would need.
//   node dist/gpu-upload.js [--out upload.json] [--dir /tmp/mf] [--mib 2048] [--ep cpu (a smoke test)]

import * as fs from 'node:fs';
import * as path from 'node:path';
import { parseArgs } from 'node:util';
import * as ort from 'onnxruntime-node';
import { Graph } from '../../src/inference/onnx/graph';
import { providerConfig } from '../../src/inference/onnx/session';

const { values } = parseArgs({ options: { out: { type: 'string' }, dir: { type: 'string', default: '/tmp/mf' }, mib: { type: 'string', default: '2048' }, ep: { type: 'string', default: 'webgpu' } } });
const MiB = 1 << 20;
const total = Number(values.mib) * MiB;
const dir = values.dir!;
const file = path.join(dir, 'upload-probe.bin');
const ep = values.ep as 'webgpu' | 'cpu';

function writeWeights(): void {
  fs.mkdirSync(dir, { recursive: true });
  const chunk = Buffer.alloc(64 * MiB);
  // float16 values in [0.5, 2): no NaN or infinity for ReduceMax to meet.
  for (let i = 0; i < chunk.length; i += 2) chunk.writeUInt16LE(0x3800 + ((i * 7919) & 0x7ff), i);
  const fd = fs.openSync(file, 'w');
  for (let off = 0; off < total; off += chunk.length) fs.writeSync(fd, chunk, 0, chunk.length, off);
  fs.closeSync(fd);
}

/** `count` float16 initializers of total/count bytes each, each reduced to one value, summed. */
function graphOf(count: number): Uint8Array {
  const g = new Graph(`upload-${count}`);
  const bytes = total / count;
  const cols = 1024;
  const rows = bytes / 2 / cols;
  const maxes = [];
  for (let i = 0; i < count; i++) {
    const w = g.external('float16', [rows, cols], { location: path.basename(file), offset: i * bytes, length: bytes });
    maxes.push(g.op('ReduceMax', [w], { keepdims: 0 }));
  }
  // Sum takes any number of inputs; a tree keeps each node's input list short.
  let level = maxes;
  while (level.length > 1) {
    const next = [];
    for (let i = 0; i < level.length; i += 64) next.push(level.length - i === 1 ? level[i] : g.op('Sum', level.slice(i, i + 64)));
    level = next;
  }
  g.output(level[0], 'y', 'float16', []);
  return g.toBytes();
}

async function parallelRead(pieces: number): Promise<Uint8Array> {
  const buf = Buffer.allocUnsafe(total);
  const fh = await fs.promises.open(file, 'r');
  const step = total / pieces;
  await Promise.all(Array.from({ length: pieces }, async (_, i) => {
    for (let off = i * step; off < (i + 1) * step; off += 64 * MiB) await fh.read(buf, off, Math.min(64 * MiB, (i + 1) * step - off), off);
  }));
  await fh.close();
  return buf;
}

interface Row { mode: string; initializers: number; mibEach: number; createS: number; firstRunS: number; gbPerS: number; readS?: number }

async function load(count: number, mode: 'file' | 'memory'): Promise<Row> {
  const model = graphOf(count);
  let readS: number | undefined;
  let external: ort.InferenceSession.SessionOptions = { extra: { session: { model_external_initializers_file_folder_path: dir } } };
  if (mode === 'memory') {
    const t = performance.now();
    const data = await parallelRead(8);
    readS = (performance.now() - t) / 1000;
    external = { externalData: [{ path: path.basename(file), data }] } as ort.InferenceSession.SessionOptions;
  }
  const t0 = performance.now();
  const s = await ort.InferenceSession.create(model, { executionProviders: [providerConfig(ep)], graphOptimizationLevel: 'all', logSeverityLevel: 3, ...external });
  const createS = (performance.now() - t0) / 1000;
  const t1 = performance.now();
  await s.run({});
  const firstRunS = (performance.now() - t1) / 1000;
  await s.release();
  const row: Row = { mode, initializers: count, mibEach: total / count / MiB, createS, firstRunS, gbPerS: total / 1e9 / createS, ...(readS !== undefined ? { readS } : {}) };
  console.log(JSON.stringify(row));
  return row;
}

async function main(): Promise<void> {
  const t = performance.now();
  writeWeights();
  console.log(`wrote ${total / MiB} MiB in ${((performance.now() - t) / 1000).toFixed(1)} s`);
  const rows: Row[] = [];
  const counts = [8, 64, 512, 2048];
  for (const c of counts) rows.push(await load(c, 'file'));
  for (const c of [8, 64, 512]) rows.push(await load(c, 'memory'));
  for (const c of counts) rows.push(await load(c, 'file'));
  if (values.out) fs.writeFileSync(values.out, JSON.stringify({ ep, totalMiB: total / MiB, onnxruntime: ort.env.versions.common, rows }, null, 1));
  fs.rmSync(file, { force: true });
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
