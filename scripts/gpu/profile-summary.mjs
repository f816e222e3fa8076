// Summarises an onnxruntime profile (MAJICFLUX_ORT_PROFILE=prefix, see onnx/session.ts):
//  - host time per op type and execution provider over the runs after the first ("Node" events:
//    for a GPU provider this is the time to record the dispatches, not the kernels' run time);
//  - GPU time per op type and shader program, from the WebGPU provider's timestamp queries ("Api"
//    events named node&op&program, on the GPU's clock): every run dispatches the same kernels, so
//    the first run's share (the first dispatches in time order) is dropped like its host events;
//  - the nodes a GPU session left on the CPU provider (each costs a copy each way per step).
//   node scripts/gpu/profile-summary.mjs profile.json [--json out.json]

import * as fs from 'node:fs';

const [file, flag, out] = process.argv.slice(2);
const events = JSON.parse(fs.readFileSync(file, 'utf8'));
const runs = events.filter((e) => e.cat === 'Session' && e.name === 'model_run');
// Node events of the runs after the first (the first compiles shaders and uploads weights).
const firstEnd = runs.length > 1 ? runs[0].ts + runs[0].dur : -Infinity;
const nodes = events.filter((e) => e.cat === 'Node' && e.name.endsWith('_kernel_time') && e.ts > firstEnd);
const timedRuns = Math.max(1, runs.length - 1);
const byOp = new Map();
const cpuNodes = new Map();
for (const e of nodes) {
  const op = e.args?.op_name ?? '?';
  const ep = (e.args?.provider ?? '?').replace('ExecutionProvider', '');
  const key = `${op} @ ${ep}`;
  const s = byOp.get(key) ?? { op, ep, count: 0, us: 0 };
  s.count++;
  s.us += e.dur;
  byOp.set(key, s);
  if (ep === 'CPU') cpuNodes.set(e.name.replace(/_kernel_time$/, ''), op);
}
const rows = [...byOp.values()].sort((a, b) => b.us - a.us);
const total = rows.reduce((a, r) => a + r.us, 0);
const runMs = runs.slice(1).map((r) => r.dur / 1000);
console.log(`${file}: ${runs.length} runs; timed ${timedRuns}: ${runMs.map((m) => m.toFixed(1)).join(', ')} ms; kernel time per run ${(total / timedRuns / 1000).toFixed(1)} ms`);
console.log('| op @ provider | nodes per run | ms per run | share |');
console.log('| --- | --- | --- | --- |');
for (const r of rows.slice(0, 25)) console.log(`| ${r.op} @ ${r.ep} | ${(r.count / timedRuns).toFixed(0)} | ${(r.us / timedRuns / 1000).toFixed(2)} | ${((100 * r.us) / total).toFixed(1)} % |`);
const cpuOps = {};
for (const op of cpuNodes.values()) cpuOps[op] = (cpuOps[op] ?? 0) + 1;
console.log(`nodes on the CPU provider: ${cpuNodes.size} ${JSON.stringify(cpuOps)}`);
const gpu = new Map();
const gpuEvents = events.filter((e) => e.cat === 'Api' && typeof e.name === 'string' && e.name.includes('&')).sort((a, b) => a.ts - b.ts);
const perRun = Math.round(gpuEvents.length / Math.max(1, runs.length));
for (const e of runs.length > 1 ? gpuEvents.slice(perRun) : gpuEvents) {
  const [, op, program] = e.name.split('&');
  const key = `${op} / ${program}`;
  const s = gpu.get(key) ?? { op, program, count: 0, us: 0 };
  s.count++;
  s.us += e.dur;
  gpu.set(key, s);
}
const gpuRows = [...gpu.values()].sort((a, b) => b.us - a.us);
const gpuTotal = gpuRows.reduce((a, r) => a + r.us, 0);
if (gpuRows.length) {
  console.log(`GPU time per run (timestamp queries, runs after the first): ${(gpuTotal / timedRuns / 1000).toFixed(1)} ms`);
  console.log('| op / program | dispatches per run | GPU ms per run | share |');
  console.log('| --- | --- | --- | --- |');
  for (const r of gpuRows.slice(0, 25)) console.log(`| ${r.op} / ${r.program} | ${(r.count / timedRuns).toFixed(0)} | ${(r.us / timedRuns / 1000).toFixed(2)} | ${((100 * r.us) / gpuTotal).toFixed(1)} % |`);
  // The LoRA branches' nodes (graphs/ditLora.ts names them lora_*).
  const lora = new Map();
  for (const e of runs.length > 1 ? gpuEvents.slice(perRun) : gpuEvents) {
    const [node, op, program] = e.name.split('&');
    // Names are scoped ("double_blocks.3/lora_down_57"); a fused node may carry a suffix.
    const m = /(?:^|\/)(lora_[a-z]+)/.exec(node);
    if (!m) continue;
    const key = `${m[1]} ${op} / ${program}`;
    const s = lora.get(key) ?? { key, count: 0, us: 0 };
    s.count++;
    s.us += e.dur;
    lora.set(key, s);
  }
  if (lora.size) {
    const loraUs = [...lora.values()].reduce((a, r) => a + r.us, 0);
    console.log(`GPU time in the LoRA branches' nodes per run: ${(loraUs / timedRuns / 1000).toFixed(1)} ms`);
    for (const r of [...lora.values()].sort((a, b) => b.us - a.us)) console.log(`|   ${r.key} | ${(r.count / timedRuns).toFixed(0)} | ${(r.us / timedRuns / 1000).toFixed(2)} |`);
  }
} else console.log('no GPU timestamps in this profile');
if (flag === '--json' && out) fs.writeFileSync(out, JSON.stringify({ file, runs: runs.length, runMs, rows: rows.map((r) => ({ ...r, msPerRun: r.us / timedRuns / 1000, nodesPerRun: r.count / timedRuns })), cpuNodes: Object.fromEntries(cpuNodes), gpuMsPerRun: gpuTotal / timedRuns / 1000, gpu: gpuRows.map((r) => ({ ...r, msPerRun: r.us / timedRuns / 1000, dispatchesPerRun: r.count / timedRuns })) }, null, 1));
