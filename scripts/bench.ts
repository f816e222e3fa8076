// Benchmark: time and memory per stage for each weight format and memory mode, on a synthetic
// random-weight model (FLUX.1-dev-shaped, or reduced width for small machines). Every
// configuration runs in a fresh process so peak memory is its own. Writes JSON and the table in
// docs/BENCHMARKS.md (between the BENCH markers of the given --section).
//
//   npm run bench -- --model quarter --size 256 --steps 2 --ep cpu --weights fp8,fp32 --modes sequential,resident
//   npm run bench -- --model full --ep webgpu --stages dit --size 512,1024 --weights fp16,int8,int4
//
// On a GPU host without Node's speed for writing 30 GB of random weights:
//   node dist/bench.js --model full --prepare-manifest m.json     (configs, tokenizers, indexes)
//   python3 scripts/gpu/fill_synthetic.py m.json                   (the tensors, drawn by PyTorch)
//
// Soak mode (server RSS over many jobs, scripts/soak.ts): npm run bench -- --soak 1000
//
// A LoRA on the DiT (scripts/benchLora.ts): --lora-rank R with --stages dit adds, after the plain
// steps on the first size, a synthetic rank-R kohya LoRA on every Linear: its read, the one session
// rebuild with its branches, the steps with it, a strength change and its removal (a scalar input
// each, no rebuild), and the steps with its strength fed 0:
//   node dist/bench.js --model full --ep cuda --stages dit --weights fp8 --size 1024 --steps 4 --lora-rank 16
//
// Issue 13's options on a pipeline run: --params JSON merges generate parameters into the measured
// image and the warm-up (true CFG, a hires pass); --warm-only skips the cold `majicflux generate`:
//   node dist/bench.js --model full --ep webgpu --e2e --warm-only --size 1024 --steps 20 --params '{"trueCfgScale":3.5}'
// --tuning JSON overrides more of the DiT's kernel choices (DitTuning), e.g. '{"nbitsBias":true}';
// --tuning-b JSON (DiT alone; an object or a list) measures A = --tuning, B (C, …) = A plus each, then A again, in one process.

import '../src/inference/system/privacy'; // first: telemetry off before onnxruntime loads
import { ChildProcess, execFileSync, spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { parseArgs } from 'node:util';
import { ComputeType, DitTuning, EpChoice, MemoryMode, WeightChoice } from '../src/shared/api';
import { DitLoadTimings, FluxTransformer } from '../src/inference/graphs/fluxTransformer';
import { GpuBufferCache } from '../src/inference/onnx/session';
import type { Fp8Decode } from '../src/inference/onnx/weightOptions';
import { currentRss, lifetimePeakRss, RssSampler } from '../src/inference/system/processMemory';
import { FluxPipeline } from '../src/inference/pipeline/pipeline';
import { imageIds, textIds } from '../src/inference/pipeline/latents';
import { writeSafetensors } from '../src/inference/formats/safetensorsWriter';
import { FLUX_DEV, FluxArchitecture, scaledFlux, TINY } from '../src/inference/models/architecture';
import { ManifestFile, writeSyntheticModel } from '../src/inference/models/synthetic';
import { soak } from './soak';
import { benchLora, LoraBench } from './benchLora';

const MODELS: Record<string, () => FluxArchitecture> = { tiny: () => TINY, quarter: () => scaledFlux(0.25), half: () => scaledFlux(0.5), full: () => FLUX_DEV };

/** One configuration, run in its own process. */
interface Job {
  /** The whole pipeline, or the DiT alone. */
  scope: 'pipeline' | 'dit';
  weights: WeightChoice;
  memory: MemoryMode;
  ep: EpChoice;
  compute?: ComputeType;
  size: number;
  /** DiT alone: more sizes measured on the same session after `size` (one load per format). */
  moreSizes?: number[];
  steps: number;
  t5: number;
  /** Write the DiT's first-step inputs and output here (cross-checks against another implementation). */
  dump?: string;
  /** DiT alone, fp8: how the weights are decoded (default: the pipeline's choice for the EP). */
  fp8Decode?: Fp8Decode;
  /** DiT alone: whether MultiHeadAttention writes present K/V (WebGPU's flash kernel); default: the pipeline's choice for the EP. */
  flashAttention?: boolean;
  /** DiT alone, WebGPU: the provider's storage buffer cache mode. */
  gpuBufferCache?: GpuBufferCache;
  /** DiT alone, int8/int4: multiply in int8 (default: the pipeline's choice for the EP). */
  int8Activations?: boolean;
  /** DiT alone, int8/int4: MatMulNBits block size (default: the provider's, OpChoices). */
  nbitsBlock?: number;
  /** DiT alone: MultiHeadAttention or MatMul → Softmax → MatMul (default: the provider's), and query pieces for the latter. */
  attention?: 'fused' | 'matmul';
  attentionChunks?: number;
  /** DiT alone: onnxruntime's graph optimization level (default all). */
  optimization?: 'disabled' | 'basic' | 'extended' | 'all';
  /** Pipeline: time to the PNG, cold (a fresh `majicflux generate` process) and warm (a second generate on a loaded pipeline). */
  e2e?: boolean;
  /** e2e: only the warm image (no cold process). */
  warmOnly?: boolean;
  /** Pipeline: generate parameters merged into the warm-up and the measured image (issue 13: trueCfgScale, hires…). */
  params?: Record<string, unknown>;
  /** DiT alone: then a synthetic LoRA of this rank on every Linear (benchLora.ts), at the first size. */
  loraRank?: number;
  /** --tuning JSON: more of the DiT's kernel choices overridden (DitTuning: nbitsBias, loraNbits, …). */
  tuning?: DitTuning;
  /** --tuning-b JSON (one object or a list): DiT alone, the same measured again in this process with each on top, then without (A, B, C…, A again). */
  tuningB?: DitTuning | DitTuning[];
}

interface RunResult extends Job {
  /** With tuningB: which of A, B, C…, A again. */
  variant?: string;
  /** This process's GPU memory (nvidia-smi) once the DiT is loaded, and after the steps at this size: where the peak falls. */
  gpuMiBAfterLoad?: number;
  gpuMiBAfterSteps?: number;
  /** The DiT checkpoint file the run read. */
  ditFile: string;
  /** The format `auto` resolved to (the format itself otherwise). */
  weightsUsed: string;
  stages: { stage: string; seconds: number; peakRss: number; ep?: string }[];
  stepSeconds: number[];
  loadSeconds?: number;
  /** Peak RSS while denoising (pipeline: the stage, DiT load included; DiT alone: the steps), and RSS right after the loop, DiT still loaded. */
  peakRssDenoise: number;
  rssAfterDenoise: number;
  /** DiT alone: RSS before and right after loading it. */
  rssBeforeLoad?: number;
  rssAfterLoad?: number;
  /** DiT alone: where the load's time went (FluxTransformer.loadTimings). */
  loadTimings?: DitLoadTimings;
  rssAfterRun: number;
  peakRss: number;
  /** Peak GPU memory of the process (nvidia-smi, sampled every 200 ms by the parent). */
  gpuPeakMiB?: number;
  /** e2e: seconds from `generate` to the PNG on disk on the loaded pipeline (the second image), with its stages. */
  warmSeconds?: number;
  /** e2e: a fresh `majicflux generate` process, start to exit (PNG written), its stages and GPU peak. */
  cold?: { seconds: number; stages?: RunResult['stages']; gpuPeakMiB?: number; error?: string };
  notes: string[];
  log: string[];
  /** loraRank: the LoRA's timings on the same session. */
  lora?: LoraBench;
}

// ---------------------------------------------------------------------------------------------
// Worker (one configuration)

function ditFileFor(dir: string, weights: WeightChoice): string {
  const bf16 = path.join(dir, 'flux.safetensors');
  const fp8 = path.join(dir, 'flux-fp8.safetensors');
  // fp8 runs from the F8_E4M3 checkpoint (zero-copy); the other formats from the bf16 one when
  // there is one (a GPU host holds only the fp8 file: there every format derives from it).
  return weights === 'fp8' || !fs.existsSync(bf16) ? fp8 : bf16;
}

function gaussian(n: number, seed: number): Float32Array {
  let s = seed >>> 0;
  const u = () => ((s = (Math.imul(s, 1664525) + 1013904223) >>> 0) + 1) / 4294967297;
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) out[i] = Math.sqrt(-2 * Math.log(u())) * Math.cos(2 * Math.PI * u());
  return out;
}

async function pipelineWorker(job: Job, dir: string, cache: string): Promise<RunResult> {
  const ditFile = ditFileFor(dir, job.weights);
  const log: string[] = [];
  const pipeline = await FluxPipeline.create(
    { dir, transformer: ditFile, name: 'synthetic' },
    { weights: job.weights, memory: job.memory, ep: job.ep, cacheDir: cache, compute: job.compute, ditTuning: ditTuningOf(job) },
    (level, m) => log.push(`${level}: ${m}`),
  );
  const stepTimes: number[] = [];
  let last = performance.now();
  let rssAfterDenoise = 0;
  let warmSeconds: number | undefined;
  if (job.e2e) {
    // The first image loads everything; the second is what a user waits for once the server is warm.
    await pipeline.generate({ prompt: 'warm-up', width: job.size, height: job.size, steps: 1, seed: 2, t5MaxLength: job.t5, ...job.params, ...(job.params?.hires ? { hires: { ...(job.params.hires as object), steps: 1, strength: 1 } } : {}) });
    progress('loaded (warm-up image done)');
  }
  const t0 = performance.now();
  const result = await pipeline.generate(
    { prompt: 'a lighthouse on a cliff at dawn, oil painting', width: job.size, height: job.size, steps: job.steps, seed: 1, t5MaxLength: job.t5, ...job.params },
    {
      onStage: (s, state) => {
        if (s === 'denoise' && state === 'start') last = performance.now();
      },
      onStep: (p) => {
        const now = performance.now();
        stepTimes.push((now - last) / 1000);
        last = now;
        if (p.step === p.steps) rssAfterDenoise = currentRss();
      },
    },
  );
  if (job.e2e) {
    // Loaded here only: png.ts brings sharp, which a DiT-only run on a GPU host does without.
    const { encodePng, writePngAtomic } = await import('../src/inference/formats/png');
    const png = await encodePng({ width: result.width, height: result.height, data: result.image }, { prompt: result.metadata.prompt, steps: job.steps, seed: result.seed, width: result.width, height: result.height });
    await writePngAtomic(path.join(os.tmpdir(), `bench-e2e-${process.pid}.png`), png);
    warmSeconds = (performance.now() - t0) / 1000;
    progress(`warm: ${warmSeconds.toFixed(2)} s to the PNG`);
  }
  await pipeline.release();
  return {
    ...job, ditFile, weightsUsed: pipeline.runtime.weights, stages: result.stages, warmSeconds, stepSeconds: stepTimes, peakRssDenoise: result.stages.find((st) => st.stage === 'denoise')?.peakRss ?? 0,
    rssAfterDenoise, rssAfterRun: currentRss(), peakRss: lifetimePeakRss(), notes: result.notes, log,
  };
}

/** Progress on stderr, with the seconds since the worker started (the parent passes it through). */
const started = performance.now();
const progress = (m: string) => console.error(`  [${((performance.now() - started) / 1000).toFixed(1)} s] ${m}`);

/** The DiT's kernel choices a job overrides (the rest stay the provider's, OpChoices). */
function ditTuningOf(job: Job): DitTuning {
  const t: DitTuning = { nbitsBlock: job.nbitsBlock, int8Activations: job.int8Activations, attention: job.attention, attentionChunks: job.attentionChunks, ...job.tuning };
  return Object.fromEntries(Object.entries(t).filter(([, v]) => v !== undefined));
}

/**
 * The DiT alone: load, then `steps` forwards on random conditioning of the real shapes, per size.
 * With `tuningB`, the same in this process with those choices, then with the first ones again
 * (A, B, A: a drift of the GPU's clocks shows as A ≠ A again); each result names its variant and
 * is emitted as soon as its variant ends (a job timeout keeps what finished). Memory peaks (RSS,
 * the GPU's) are the process's: a B or "A again" row's include the variants before it.
 */
async function ditWorker(job: Job, dir: string, cache: string, emit: (r: RunResult) => void): Promise<void> {
  if (!job.tuningB) return void (await ditRun(job, dir, cache)).forEach(emit);
  const others = (Array.isArray(job.tuningB) ? job.tuningB : [job.tuningB]).map((t, i) => [String.fromCharCode(66 + i), { ...job, tuning: { ...job.tuning, ...t } }] as const);
  const runs = [['A', job], ...others, ['A again', job]] as const;
  const results: RunResult[] = [];
  for (const [variant, j] of runs) {
    progress(`variant ${variant}: ${JSON.stringify(j.tuning ?? {})}`);
    const rs = (await ditRun(j, dir, cache)).map((r) => ({ ...r, variant }));
    rs.forEach(emit);
    results.push(...rs);
  }
  for (const size of [job.size, ...(job.moreSizes ?? [])]) {
    const at = results.filter((r) => r.size === size);
    progress(`${size}² same process, median s/step: ${at.map((r) => `${r.variant} ${median(steadySteps(r)).toFixed(3)}${r.lora ? ` (LoRA ${median(r.lora.stepSeconds).toFixed(3)})` : ''}`).join(', ')}`);
  }
}

async function ditRun(job: Job, dir: string, cache: string): Promise<RunResult[]> {
  if (job.weights === 'auto') throw new Error('--stages dit needs explicit weight formats');
  const ditFile = ditFileFor(dir, job.weights);
  const t0 = performance.now();
  const rssBeforeLoad = currentRss();
  progress(`loading ${job.weights} from ${path.basename(ditFile)}`);
  const dit = await FluxTransformer.load(ditFile, { format: job.weights, ep: job.ep === 'auto' ? 'cpu' : job.ep, cacheDir: cache, compute: job.compute, fp8Decode: job.fp8Decode, flashAttention: job.flashAttention, gpuBufferCache: job.gpuBufferCache, int8Activations: job.int8Activations, nbitsBlock: job.nbitsBlock, attention: job.attention, attentionChunks: job.attentionChunks, optimization: job.optimization, ...job.tuning });
  const loadSeconds = (performance.now() - t0) / 1000;
  const rssAfterLoad = currentRss();
  const gpuMiBAfterLoad = ownGpuMiB();
  progress(`loaded in ${loadSeconds.toFixed(1)} s (${Object.entries(dit.loadTimings ?? {}).map(([k, v]) => `${k} ${v.toFixed(1)} s`).join(', ')}), RSS ${gib(rssAfterLoad)} GiB${gpuMiBAfterLoad !== undefined ? `, GPU ${gpuMiBAfterLoad} MiB` : ''}`);
  const results: RunResult[] = [];
  for (const size of [job.size, ...(job.moreSizes ?? [])]) {
    const r = await ditSteps(dit, { ...job, size, moreSizes: undefined, dump: job.dump?.replace('{size}', String(size)) }, ditFile, loadSeconds);
    const gpuMiBAfterSteps = ownGpuMiB();
    if (gpuMiBAfterSteps !== undefined) progress(`${size}²: GPU ${gpuMiBAfterSteps} MiB after the steps`);
    results.push({ ...r, rssBeforeLoad, rssAfterLoad, loadTimings: dit.loadTimings, gpuMiBAfterLoad, gpuMiBAfterSteps });
  }
  if (job.loraRank) {
    const p = dit.config;
    const run = dit.prepare({ txt: gaussian(job.t5 * p.context_in_dim, 1), vec: gaussian(p.vec_in_dim, 2), imgIds: imageIds(job.size, job.size), txtIds: textIds(job.t5) });
    const img = gaussian((job.size / 16) ** 2 * p.in_channels, 3);
    results[0].lora = await benchLora(dit, job.loraRank, job.steps, async () => void (await run.forward(img, 0.5, 3.5)), progress);
  }
  await dit.release();
  return results;
}

async function ditSteps(dit: FluxTransformer, job: Job, ditFile: string, loadSeconds: number): Promise<RunResult> {
  const p = dit.config;
  const n = (job.size / 16) ** 2;
  const cond = { txt: gaussian(job.t5 * p.context_in_dim, 1), vec: gaussian(p.vec_in_dim, 2), imgIds: imageIds(job.size, job.size), txtIds: textIds(job.t5) };
  const img = gaussian(n * p.in_channels, 3);
  const run = dit.prepare(cond);
  const sampler = new RssSampler();
  const stepSeconds: number[] = [];
  for (let i = 0; i < job.steps; i++) {
    const s0 = performance.now();
    const v = await run.forward(img, 1 - i / job.steps, 3.5);
    stepSeconds.push((performance.now() - s0) / 1000);
    progress(`${job.size}² step ${i + 1}: ${stepSeconds[i].toFixed(2)} s`);
    if (i === 0 && job.dump) {
      writeSafetensors(job.dump, [
        { name: 'img', dtype: 'F32', shape: [1, n, p.in_channels], bytes: () => new Uint8Array(img.buffer) },
        { name: 'txt', dtype: 'F32', shape: [1, job.t5, p.context_in_dim], bytes: () => new Uint8Array(cond.txt.buffer) },
        { name: 'vec', dtype: 'F32', shape: [1, p.vec_in_dim], bytes: () => new Uint8Array(cond.vec.buffer) },
        { name: 'timestep', dtype: 'F32', shape: [1], bytes: () => new Uint8Array(Float32Array.of(1).buffer) },
        { name: 'guidance', dtype: 'F32', shape: [1], bytes: () => new Uint8Array(Float32Array.of(3.5).buffer) },
        { name: 'out', dtype: 'F32', shape: [1, n, p.out_channels], bytes: () => new Uint8Array(v.buffer, v.byteOffset, v.byteLength) },
      ]);
    }
  }
  const peakRssDenoise = sampler.stop();
  const rssAfterDenoise = currentRss();
  return {
    ...job, ditFile, weightsUsed: job.weights, stages: [], stepSeconds, loadSeconds, peakRssDenoise, rssAfterDenoise, rssAfterRun: currentRss(), peakRss: lifetimePeakRss(), notes: [], log: [],
  };
}

// ---------------------------------------------------------------------------------------------
// Parent: one child process per configuration, GPU memory sampled from outside

/** Samples nvidia-smi every 200 ms: per-process memory where listed, else the device's used memory. */
class GpuSampler {
  private readonly proc?: ChildProcess;
  private readonly perPid = new Map<number, number>();
  private deviceMax = 0;
  readonly baseline: number;

  constructor() {
    this.baseline = deviceUsedMiB() ?? 0;
    if (!hasNvidiaSmi()) return;
    this.proc = spawn('nvidia-smi', [...APPS_QUERY, '-lms', '200'], { stdio: ['ignore', 'pipe', 'ignore'] });
    this.proc.stdout!.setEncoding('utf8').on('data', (chunk: string) => {
      for (const [pid, mib] of appsMemory(chunk)) this.perPid.set(pid, Math.max(this.perPid.get(pid) ?? 0, mib));
    });
    const poll = setInterval(() => {
      const used = deviceUsedMiB();
      if (used !== undefined) this.deviceMax = Math.max(this.deviceMax, used);
    }, 500);
    poll.unref();
    this.proc.on('exit', () => clearInterval(poll));
  }

  peak(pid: number): number | undefined {
    return this.perPid.get(pid) ?? (this.deviceMax ? this.deviceMax - this.baseline : undefined);
  }

  stop(): void {
    this.proc?.kill();
  }
}

function hasNvidiaSmi(): boolean {
  return deviceUsedMiB() !== undefined;
}

function deviceUsedMiB(): number | undefined {
  try {
    return Number(execFileSync('nvidia-smi', ['--query-gpu=memory.used', '--format=csv,noheader,nounits'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).split('\n')[0]);
  } catch {
    return undefined;
  }
}

/** This process's GPU memory as nvidia-smi lists it (undefined without nvidia-smi or a listing). */
function ownGpuMiB(): number | undefined {
  try {
    return appsMemory(execFileSync('nvidia-smi', APPS_QUERY, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] })).find(([pid]) => pid === process.pid)?.[1];
  } catch {
    return undefined;
  }
}

/** nvidia-smi's per-process GPU memory, as [pid, MiB] pairs. */
const APPS_QUERY = ['--query-compute-apps=pid,used_memory', '--format=csv,noheader,nounits'];
function appsMemory(text: string): Array<[number, number]> {
  return text
    .split('\n')
    .map((line) => line.split(',').map((x) => Number(x.trim())))
    .filter(([pid, mib]) => Number.isFinite(pid) && Number.isFinite(mib))
    .map(([pid, mib]) => [pid, mib]);
}

async function runChild(args: string[], timeoutS: number): Promise<{ results: RunResult[]; gpuPeakMiB?: number; error?: string }> {
  const gpu = new GpuSampler();
  const child = spawn(process.execPath, [...process.execArgv, __filename, ...args], { stdio: ['ignore', 'pipe', 'inherit'] });
  let out = '';
  child.stdout!.setEncoding('utf8').on('data', (d: string) => (out += d));
  const timer = setTimeout(() => child.kill('SIGKILL'), timeoutS * 1000);
  const status = await new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => child.on('exit', (code, signal) => resolve({ code, signal })));
  clearTimeout(timer);
  // The sampler lists a process until it exits: read its peak now.
  const gpuPeakMiB = gpu.peak(child.pid!);
  gpu.stop();
  const results = out.split('\n').filter((l) => l.startsWith('RESULT ')).map((l) => JSON.parse(l.slice(7)) as RunResult);
  return { results, gpuPeakMiB, ...(status.code !== 0 ? { error: `exit ${status.code}, signal ${status.signal}` } : {}) };
}

/** A user's first image: a fresh `majicflux generate` process (dist/cli.js), from start to exit with the PNG written. */
async function coldGenerate(job: Job, base: string, cache: string, outDir: string): Promise<RunResult['cold']> {
  const gpu = new GpuSampler();
  const png = path.join(outDir, `e2e-${job.weights}-${job.size}.png`);
  const args = [path.join(__dirname, 'cli.js'), 'generate', '--model', base, '--transformer', ditFileFor(base, job.weights), '--weights', job.weights, '--ep', job.ep, '--memory', job.memory,
    '--steps', String(job.steps), '--width', String(job.size), '--height', String(job.size), '--t5-max-length', String(job.t5), '--cache', cache, '--seed', '1', '--out', png, '--json',
    '--prompt', 'a lighthouse on a cliff at dawn, oil painting'];
  const t0 = performance.now();
  const child = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'inherit'] });
  let out = '';
  child.stdout!.setEncoding('utf8').on('data', (d: string) => (out += d));
  const code = await new Promise<number | null>((resolve) => child.on('exit', (c) => resolve(c)));
  const seconds = (performance.now() - t0) / 1000;
  const gpuPeakMiB = gpu.peak(child.pid!);
  gpu.stop();
  fs.rmSync(png, { force: true });
  let stages: RunResult['stages'] | undefined;
  try {
    stages = JSON.parse(out.trim().split('\n').pop() ?? '').stages;
  } catch {
    // reported below as an error
  }
  console.error(`  cold: ${seconds.toFixed(1)} s to the PNG (exit ${code})`);
  return { seconds, stages, gpuPeakMiB, ...(code !== 0 ? { error: `exit ${code}` } : {}) };
}

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length ? (s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2) : NaN;
};
const gib = (b: number) => (b / 2 ** 30).toFixed(2);
/** Steps after the first (which includes one-time work such as shader compilation), when there are any. */
/** With --tuning-b: which variant a row is and its choices. */
const variantLabel = (r: RunResult) => (r.variant ? ` [${r.variant}: ${JSON.stringify(r.tuning ?? {})}]` : '');
const steadySteps = (r: RunResult) => (r.stepSeconds.length > 1 ? r.stepSeconds.slice(1) : r.stepSeconds);

function table(results: RunResult[], machine: string, model: string): string {
  const pipelineRows = results.filter((r) => r.scope === 'pipeline').map((r) => {
    const st = (n: string) => r.stages.find((s) => s.stage === n);
    return `| ${r.weights === 'auto' ? `auto → ${r.weightsUsed}` : r.weights} | ${r.compute ?? '—'} | ${r.memory} | ${r.ep} | ${r.size}² | ${st('text')?.seconds.toFixed(2) ?? '—'} | ${median(steadySteps(r)).toFixed(2)} | ${st('decode')?.seconds.toFixed(2) ?? '—'} | ${gib(r.peakRssDenoise)} | ${gib(r.rssAfterDenoise)} | ${gib(r.peakRss)} | ${r.gpuPeakMiB ?? '—'} |`;
  });
  const ditRows = results.filter((r) => r.scope === 'dit').map((r) =>
    `| ${r.weights}${r.fp8Decode ? ` (${r.fp8Decode})` : ''}${r.flashAttention === false ? ' (no flash attention)' : r.flashAttention ? ' (flash attention)' : ''}${r.gpuBufferCache ? ` (buffer cache ${r.gpuBufferCache})` : ''}${r.int8Activations !== undefined ? ` (int8 activations ${r.int8Activations ? 'on' : 'off'})` : ''}${r.nbitsBlock ? ` (block ${r.nbitsBlock})` : ''}${r.attention ? ` (${r.attention} attention${r.attentionChunks ? ` ×${r.attentionChunks}` : ''})` : ''}${r.optimization ? ` (optimization ${r.optimization})` : ''}${variantLabel(r)} | ${r.compute ?? '—'} | ${r.ep} | ${r.size}² | ${r.loadSeconds?.toFixed(1) ?? '—'} | ${median(steadySteps(r)).toFixed(2)} | ${gib(r.rssBeforeLoad ?? NaN)} | ${gib(r.rssAfterLoad ?? NaN)} | ${gib(r.peakRssDenoise)} | ${gib(r.rssAfterDenoise)} | ${gib(r.peakRss)} | ${r.gpuPeakMiB ?? '—'} |`);
  const out = [`Machine: ${machine}. Model: synthetic ${model} (random weights), ${results[0]?.t5 ?? 512} text tokens. Step times: median over the steps after the first.`, ''];
  if (pipelineRows.length) {
    out.push(
      '| weights | compute | memory mode | EP | size | text s | DiT s/step | VAE s | peak RSS while denoising (DiT load included) GiB | RSS after denoising GiB | process peak RSS GiB | GPU peak MiB |',
      '| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |',
      ...pipelineRows,
      '',
    );
  }
  const e2eRows = results.filter((r) => r.warmSeconds !== undefined).map((r) => {
    const st = (n: string) => r.stages.find((s) => s.stage === n)?.seconds.toFixed(2) ?? '—';
    return `| ${r.weights === 'auto' ? `auto → ${r.weightsUsed}` : r.weights} | ${r.ep} | ${r.size}² | ${r.steps} | ${r.cold ? `${r.cold.seconds.toFixed(1)}${r.cold.error ? ` (${r.cold.error})` : ''}` : '—'} | ${r.warmSeconds!.toFixed(1)} | ${st('text')} | ${median(steadySteps(r)).toFixed(2)} | ${st('decode')} | ${r.cold?.gpuPeakMiB ?? '—'} / ${r.gpuPeakMiB ?? '—'} |`;
  });
  if (e2eRows.length) {
    out.push(
      'Time to the PNG: cold = a fresh `majicflux generate` process, start to exit; warm = the second image on a loaded pipeline, `generate` to the file written:',
      '',
      '| weights | EP | size | steps | cold s | warm s | warm: text s | warm: DiT s/step | warm: VAE s | GPU peak MiB (cold / warm process) |',
      '| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |',
      ...e2eRows,
      '',
    );
  }
  if (ditRows.length) {
    out.push(
      'DiT alone (load, then steps on random conditioning):',
      '',
      '| weights | compute | EP | size | load s | DiT s/step | RSS before load GiB | RSS after load GiB | peak RSS while stepping GiB | RSS after the steps GiB | process peak RSS GiB | GPU peak MiB |',
      '| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |',
      ...ditRows,
    );
  }
  const loraRows = results.filter((r) => r.lora).map((r) => {
    const l = r.lora!;
    return `| ${r.weights}${variantLabel(r)} | ${r.compute ?? '—'} | ${r.ep} | ${r.size}² | ${l.rank} (${l.fileMiB.toFixed(0)} MiB f32) | ${median(steadySteps(r)).toFixed(2)} | ${median(l.stepSeconds).toFixed(2)} | ${median(l.removedStepSeconds).toFixed(2)} | ${l.readSeconds.toFixed(2)} | ${l.applySeconds.toFixed(1)} | ${l.strengthSeconds.toFixed(3)} | ${l.removeSeconds.toFixed(3)} |`;
  });
  if (loraRows.length) {
    out.push(
      '',
      'A synthetic kohya LoRA on every Linear (same session; s/step with the LoRA and after its removal: median of all steps):',
      '',
      '| weights | compute | EP | size | rank | s/step without | s/step with LoRA | s/step removed (strength 0 fed) | read + map s | apply s (one rebuild with its branches) | strength change s | remove s |',
      '| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |',
      ...loraRows,
    );
  }
  return out.join('\n').trimEnd();
}

/** --attention flash | plain (MultiHeadAttention with or without present K/V) | matmul. */
function attentionJob(a: string | undefined): Partial<Job> {
  if (!a) return {};
  if (a === 'matmul') return { attention: 'matmul' };
  if (a === 'flash' || a === 'plain') return { attention: 'fused', flashAttention: a === 'flash' };
  throw new Error('--attention must be flash, plain or matmul');
}

function updateDoc(section: string, body: string): void {
  const doc = path.join(__dirname, '..', 'docs', 'BENCHMARKS.md');
  const begin = `<!-- BENCH:${section}:BEGIN -->`;
  const end = `<!-- BENCH:${section}:END -->`;
  let text = fs.existsSync(doc) ? fs.readFileSync(doc, 'utf8') : '# Benchmarks\n';
  const block = `${begin}\n${body}\n${end}`;
  text = text.includes(begin) ? text.replace(new RegExp(`${begin}[\\s\\S]*?${end}`), block) : `${text.trimEnd()}\n\n## ${section}\n\n${block}\n`;
  fs.writeFileSync(doc, text);
}

function prepare(base: string, config: FluxArchitecture, manifestFile: string | undefined): void {
  const tokenizers = path.join(__dirname, '..', 'models', 'demo');
  if (manifestFile) {
    // Only configs, tokenizers and indexes: another writer fills the listed files. The DiT is
    // listed in F8_E4M3 only (the other formats derive from it), which keeps FLUX.1-dev at 12 GB.
    const manifest: ManifestFile[] = [];
    writeSyntheticModel(base, config, { seed: 7, tokenizers, parts: ['clip', 't5', 'vae'], manifest });
    writeSyntheticModel(base, config, { seed: 7, parts: ['dit'], ditDtype: 'F8_E4M3', manifest });
    fs.writeFileSync(manifestFile, JSON.stringify(manifest));
    console.error(`wrote ${manifestFile}: ${manifest.length} files to fill; then touch ${path.join(base, '.complete')}`);
    return;
  }
  const t0 = performance.now();
  writeSyntheticModel(base, config, { seed: 7, tokenizers, log: (m) => console.error(m) });
  writeSyntheticModel(base, config, { seed: 7, parts: ['dit'], ditDtype: 'F8_E4M3', log: (m) => console.error(m) });
  fs.writeFileSync(path.join(base, '.complete'), '');
  console.error(`wrote synthetic model in ${((performance.now() - t0) / 1000).toFixed(0)} s`);
}

async function main() {
  const { values } = parseArgs({
    options: {
      model: { type: 'string', default: 'quarter' }, size: { type: 'string', default: '256' }, steps: { type: 'string', default: '2' }, ep: { type: 'string', default: 'cpu' },
      weights: { type: 'string', default: 'fp8,fp32' }, modes: { type: 'string', default: 'resident' }, t5: { type: 'string', default: '512' }, dir: { type: 'string' },
      out: { type: 'string', default: 'bench-out' }, section: { type: 'string' }, machine: { type: 'string' }, worker: { type: 'string' }, cache: { type: 'string' },
      stages: { type: 'string', default: 'all' }, compute: { type: 'string' }, dump: { type: 'string' },
      'prepare-manifest': { type: 'string' }, 'fp8-decode': { type: 'string' }, attention: { type: 'string' }, 'buffer-cache': { type: 'string' }, 'int8-activations': { type: 'string' }, 'nbits-block': { type: 'string' }, 'opt-level': { type: 'string' }, chunks: { type: 'string' }, e2e: { type: 'boolean' }, 'job-timeout': { type: 'string', default: '1800' }, tag: { type: 'string' }, 'lora-rank': { type: 'string' }, params: { type: 'string' }, 'warm-only': { type: 'boolean' }, tuning: { type: 'string' }, 'tuning-b': { type: 'string' },
      soak: { type: 'string' }, 'soak-memory': { type: 'string', default: 'auto' }, 'cancel-every': { type: 'string', default: '2' }, 'sample-every': { type: 'string', default: '50' },
    },
  });
  if (values.soak) {
    // Server memory over many jobs (scripts/soak.ts); the golden tiny model unless --dir names one.
    const model = values.dir ?? path.join(__dirname, '..', 'test', 'fixtures', 'flux-tiny', 'models');
    const sizes = (values.size === '256' ? '64' : values.size!).split(',').map(Number);
    fs.mkdirSync(values.out!, { recursive: true });
    await soak(path.join(__dirname, 'server.js'), {
      jobs: Number(values.soak), model, sizes, memory: values['soak-memory']!, steps: Number(values.steps), cancelEvery: Number(values['cancel-every']), sampleEvery: Number(values['sample-every']), out: path.join(values.out!, 'soak.json'),
    });
    return;
  }
  const base = values.dir ?? path.join(os.homedir(), '.cache', 'majicflux', `synthetic-${values.model}`);
  const cache = values.cache ?? path.join(base, 'weight-cache');
  if (values.worker) {
    const job = JSON.parse(values.worker) as Job;
    const emit = (r: RunResult) => process.stdout.write(`RESULT ${JSON.stringify(r)}\n`);
    if (job.scope === 'dit') await ditWorker(job, base, cache, emit);
    else emit(await pipelineWorker(job, base, cache));
    return;
  }
  const config = MODELS[values.model!]?.();
  if (!config) throw new Error(`--model must be one of ${Object.keys(MODELS).join(', ')}`);
  if (values['prepare-manifest'] || !fs.existsSync(path.join(base, '.complete'))) {
    prepare(base, config, values['prepare-manifest']);
    if (values['prepare-manifest']) return;
  }
  const machine = values.machine ?? `${os.cpus()[0]?.model ?? 'cpu'} × ${os.cpus().length} cores, ${gib(os.totalmem())} GiB RAM, ${os.platform()}-${os.arch()}`;
  const results: RunResult[] = [];
  const outDir = values.out!;
  fs.mkdirSync(outDir, { recursive: true });
  const file = path.join(outDir, `bench-${values.model}-${values.ep}-${values.stages}${values.tag ? `-${values.tag}` : ''}.json`);
  const sizes = values.size!.split(',').map(Number);
  const ditOnly = values.stages === 'dit';
  if (values['lora-rank'] && !ditOnly) throw new Error('--lora-rank measures the DiT alone: add --stages dit');
  if (values['tuning-b'] && !ditOnly) throw new Error('--tuning-b compares the DiT alone: add --stages dit');
  // The DiT alone measures every size on one session per format; the pipeline runs each size anew.
  for (const size of ditOnly ? sizes.slice(0, 1) : sizes) {
    for (const memory of values.modes!.split(',') as MemoryMode[]) {
      for (const weights of values.weights!.split(',') as WeightChoice[]) {
        const job: Job = {
          scope: ditOnly ? 'dit' : 'pipeline', weights, memory, ep: values.ep as EpChoice, compute: (values.compute ?? (values.ep === 'cpu' ? 'float32' : 'float16')) as ComputeType, size, steps: Number(values.steps), t5: Number(values.t5),
          ...(ditOnly ? { moreSizes: sizes.slice(1) } : {}), ...(values['fp8-decode'] ? { fp8Decode: values['fp8-decode'] as Job['fp8Decode'] } : {}), ...attentionJob(values.attention), ...(values['nbits-block'] ? { nbitsBlock: Number(values['nbits-block']) } : {}), ...(values.chunks ? { attentionChunks: Number(values.chunks) } : {}), ...(values.e2e ? { e2e: true } : {}), ...(values['opt-level'] ? { optimization: values['opt-level'] as Job['optimization'] } : {}), ...(values['buffer-cache'] ? { gpuBufferCache: values['buffer-cache'] as GpuBufferCache } : {}), ...(values['int8-activations'] ? { int8Activations: values['int8-activations'] === 'on' } : {}), ...(values.dump ? { dump: path.join(values.dump, `dit-${weights}-{size}.safetensors`) } : {}), ...(values['lora-rank'] ? { loraRank: Number(values['lora-rank']) } : {}), ...(values.params ? { params: JSON.parse(values.params) as Record<string, unknown> } : {}), ...(values['warm-only'] ? { warmOnly: true } : {}), ...(values.tuning ? { tuning: JSON.parse(values.tuning) as DitTuning } : {}), ...(values['tuning-b'] ? { tuningB: JSON.parse(values['tuning-b']) as DitTuning } : {}),
        };
        console.error(`running ${JSON.stringify(job)}`);
        const cold = job.e2e && !job.warmOnly ? await coldGenerate(job, base, cache, outDir) : undefined;
        const { results: rs, gpuPeakMiB, error } = await runChild(['--model', values.model!, '--dir', base, '--cache', cache, '--worker', JSON.stringify(job)], Number(values['job-timeout']));
        if (error) console.error(`  run failed (${error})`);
        for (const r of rs) {
          r.gpuPeakMiB = gpuPeakMiB;
          if (cold) r.cold = cold;
          results.push(r);
          console.error(`  ${r.weights} ${r.size}²: DiT ${median(steadySteps(r)).toFixed(2)} s/step (steps ${r.stepSeconds.map((s) => s.toFixed(2)).join(', ')})${r.loadSeconds !== undefined ? `, load ${r.loadSeconds.toFixed(1)} s` : ''}, peak RSS ${gib(r.peakRss)} GiB, GPU ${gpuPeakMiB ?? '—'} MiB`);
          if (r.lora) console.error(`  LoRA rank ${r.lora.rank}: ${median(r.lora.stepSeconds).toFixed(2)} s/step with it, ${median(r.lora.removedStepSeconds).toFixed(2)} removed; apply ${r.lora.applySeconds.toFixed(1)} s, strength ${r.lora.strengthSeconds.toFixed(3)} s, remove ${r.lora.removeSeconds.toFixed(3)} s`);
          for (const l of r.log) console.error(`  ${l}`);
        }
        // Written after every run, so a later failure or timeout keeps what was measured.
        fs.writeFileSync(file, JSON.stringify({ machine, model: values.model, config, date: new Date().toISOString(), results }, null, 1));
      }
    }
  }
  const md = table(results, machine, values.model!);
  console.log(md);
  if (values.section) updateDoc(values.section, md);
  console.error(`wrote ${file}`);
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
