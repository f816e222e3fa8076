// Benchmark: time and memory per stage for each weight format and memory mode, on a synthetic
// random-weight model (FLUX.1-dev-shaped, or reduced width for small machines). Every
// configuration runs in a fresh process so peak RSS is its own. Writes JSON and the table in
// docs/BENCHMARKS.md (between the BENCH markers of the given --section).
//
//   npm run bench -- --model quarter --size 256 --steps 2 --ep cpu --weights fp8,fp32 --modes sequential,resident

import { execFileSync, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { parseArgs } from 'node:util';
import { EpChoice, MemoryMode, WeightFormat } from '../src/inference/api';
import { currentRss } from '../src/inference/memory';
import { FluxPipeline } from '../src/inference/pipeline';
import { FLUX_DEV, scaledFlux, SyntheticConfig, TINY, writeSyntheticModel } from '../src/inference/synthetic';

const MODELS: Record<string, () => SyntheticConfig> = { tiny: () => TINY, quarter: () => scaledFlux(0.25), half: () => scaledFlux(0.5), full: () => FLUX_DEV };

interface RunResult {
  weights: WeightFormat;
  memory: MemoryMode;
  ep: string;
  size: number;
  steps: number;
  stages: { stage: string; seconds: number; peakRss: number; ep?: string }[];
  stepSeconds: number[];
  /** RSS right after the denoising loop, DiT still loaded. */
  rssAfterDenoise: number;
  rssAfterRun: number;
  peakRss: number;
  gpuMemoryMiB?: number;
  notes: string[];
}

async function worker(opts: { dir: string; weights: WeightFormat; memory: MemoryMode; ep: EpChoice; size: number; steps: number; t5: number; cache: string }): Promise<RunResult> {
  // fp8 runs from the F8_E4M3 checkpoint (zero-copy), the others from the bf16 one.
  const dit = path.join(opts.dir, opts.weights === 'fp8' ? 'flux-fp8.safetensors' : 'flux.safetensors');
  const pipeline = await FluxPipeline.create({ dir: opts.dir, transformer: dit, name: 'synthetic' }, { weights: opts.weights, memory: opts.memory, ep: opts.ep, cacheDir: opts.cache });
  const stepTimes: number[] = [];
  let last = performance.now();
  let rssAfterDenoise = 0;
  const result = await pipeline.generate(
    { prompt: 'a lighthouse on a cliff at dawn, oil painting', width: opts.size, height: opts.size, steps: opts.steps, seed: 1, t5MaxLength: opts.t5 },
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
  await pipeline.release();
  return {
    weights: opts.weights, memory: opts.memory, ep: opts.ep, size: opts.size, steps: opts.steps,
    stages: result.stages, stepSeconds: stepTimes, rssAfterDenoise, rssAfterRun: currentRss(), peakRss: process.resourceUsage().maxRSS * 1024, gpuMemoryMiB: gpuMemory(), notes: result.notes,
  };
}

function gpuMemory(): number | undefined {
  try {
    const out = execFileSync('nvidia-smi', ['--query-compute-apps=pid,used_memory', '--format=csv,noheader,nounits'], { encoding: 'utf8' });
    const line = out.split('\n').find((l) => l.split(',')[0].trim() === String(process.pid));
    return line ? Number(line.split(',')[1]) : undefined;
  } catch {
    return undefined;
  }
}

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length ? (s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2) : NaN;
};
const gib = (b: number) => (b / 2 ** 30).toFixed(2);

function table(results: RunResult[], machine: string, model: string): string {
  const rows = results.map((r) => {
    const st = (n: string) => r.stages.find((s) => s.stage === n);
    const steps = r.stepSeconds.slice(1).length ? r.stepSeconds.slice(1) : r.stepSeconds;
    return `| ${r.weights} | ${r.memory} | ${r.ep} | ${r.size}² | ${st('text')?.seconds.toFixed(2) ?? '—'} | ${median(steps).toFixed(2)} | ${st('decode')?.seconds.toFixed(2) ?? '—'} | ${gib(st('denoise')?.peakRss ?? NaN)} | ${gib(r.rssAfterDenoise)} | ${gib(r.peakRss)} | ${r.gpuMemoryMiB ?? '—'} |`;
  });
  return [
    `Machine: ${machine}. Model: synthetic ${model} (random weights). Medians over the steps after the first.`,
    '',
    '| weights | memory mode | EP | size | text s | DiT s/step | VAE s | denoise peak RSS GiB | RSS after denoise GiB | process peak RSS GiB | GPU MiB |',
    '| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |',
    ...rows,
  ].join('\n');
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

async function main() {
  const { values } = parseArgs({
    options: {
      model: { type: 'string', default: 'quarter' }, size: { type: 'string', default: '256' }, steps: { type: 'string', default: '2' }, ep: { type: 'string', default: 'cpu' },
      weights: { type: 'string', default: 'fp8,fp32' }, modes: { type: 'string', default: 'resident' }, t5: { type: 'string', default: '512' }, dir: { type: 'string' },
      out: { type: 'string', default: 'bench-out' }, section: { type: 'string' }, machine: { type: 'string' }, worker: { type: 'string' }, cache: { type: 'string' },
    },
  });
  const base = values.dir ?? path.join(os.homedir(), '.cache', 'majicflux', `synthetic-${values.model}`);
  const cache = values.cache ?? path.join(base, 'weight-cache');
  if (values.worker) {
    const w = JSON.parse(values.worker);
    const r = await worker({ ...w, dir: base, cache });
    process.stdout.write(`RESULT ${JSON.stringify(r)}\n`);
    return;
  }
  const config = MODELS[values.model!]?.();
  if (!config) throw new Error(`--model must be one of ${Object.keys(MODELS).join(', ')}`);
  if (!fs.existsSync(path.join(base, '.complete'))) {
    const t0 = performance.now();
    writeSyntheticModel(base, config, { seed: 7, tokenizers: path.join(__dirname, '..', 'models', 'demo'), log: (m) => console.error(m) });
    writeSyntheticModel(base, config, { seed: 7, parts: ['dit'], ditDtype: 'F8_E4M3', log: (m) => console.error(m) });
    fs.writeFileSync(path.join(base, '.complete'), '');
    console.error(`wrote synthetic ${values.model} model in ${((performance.now() - t0) / 1000).toFixed(0)} s`);
  }
  const machine = values.machine ?? `${os.cpus()[0]?.model ?? 'cpu'} × ${os.cpus().length} cores, ${gib(os.totalmem())} GiB RAM, ${os.platform()}-${os.arch()}`;
  const results: RunResult[] = [];
  for (const memory of values.modes!.split(',') as MemoryMode[]) {
    for (const weights of values.weights!.split(',') as WeightFormat[]) {
      const job = { weights, memory, ep: values.ep, size: Number(values.size), steps: Number(values.steps), t5: Number(values.t5) };
      console.error(`running ${JSON.stringify(job)}`);
      const child = spawnSync(process.execPath, [...process.execArgv, __filename, '--model', values.model!, '--dir', base, '--cache', cache, '--worker', JSON.stringify(job)], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'], maxBuffer: 1 << 26 });
      const line = child.stdout.split('\n').find((l) => l.startsWith('RESULT '));
      if (!line) {
        console.error(`run failed (exit ${child.status}, signal ${child.signal})`);
        continue;
      }
      const r = JSON.parse(line.slice(7)) as RunResult;
      results.push(r);
      console.error(`  DiT ${median(r.stepSeconds).toFixed(2)} s/step, denoise peak ${gib(r.stages.find((s) => s.stage === 'denoise')?.peakRss ?? 0)} GiB, process peak ${gib(r.peakRss)} GiB`);
    }
  }
  fs.mkdirSync(values.out!, { recursive: true });
  const file = path.join(values.out!, `bench-${values.model}-${values.ep}-${values.size}.json`);
  fs.writeFileSync(file, JSON.stringify({ machine, model: values.model, config, date: new Date().toISOString(), results }, null, 1));
  const md = table(results, machine, values.model!);
  console.log(md);
  if (values.section) updateDoc(values.section, md);
  console.error(`wrote ${file}`);
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
