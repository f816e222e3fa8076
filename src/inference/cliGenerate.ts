// `majicflux generate`: one image from the command line, with a progress bar and a summary.

import * as fs from 'node:fs';
import * as path from 'node:path';
import { EpChoice, GenerateParams, MemoryMode, ModelSpec, WEIGHT_CHOICES, WeightChoice } from './api';
import { ensureDemoModel } from './demoModel';
import { gib, lifetimePeakRss } from './memory';
import { FluxPipeline } from './pipeline';
import { encodePng, writePngAtomic } from './png';
import { CliOutput, parseCommandArgs, Subcommand, UsageError } from './cliCommon';

const GENERATE_HELP = `Usage: majicflux generate --prompt TEXT [options]

Generates one image. With no --model, uses the bundled demo model (random weights: coloured noise).

Model:
  --model DIR            FLUX.1-dev-style folder (text_encoder/, text_encoder_2/, tokenizer/,
                         tokenizer_2/, ae.safetensors or vae/, transformer/ or one DiT file)
  --transformer FILE     single-file DiT to use instead (e.g. majicflus_v134.safetensors)
  --vae PATH             ae.safetensors or a diffusers vae/ folder, overriding the model's
Sampling:
  --prompt TEXT          the prompt (required)
  --seed N               seed; -1 (default) draws one and reports it
  --steps N              denoising steps (default 28)
  --width N, --height N  multiples of 16, 64–2048 (default 1024×1024)
  --guidance X           distilled guidance (default 3.5)
  --shift dynamic|X      sigma shift: FluxPipeline's resolution-dependent one (default) or fixed
  --t5-max-length N      T5 tokens (512 for dev models, 256 for schnell-type)
  --latents FILE         safetensors with an 'initial_latents' [1, tokens, 64] tensor to start from
Runtime:
  --weights auto|fp8|fp16|fp32|int8|int4
                         how the DiT's Linear weights are held (default auto: fp8 on CPU/CUDA,
                         int8 on WebGPU, fp16 on CoreML, by GPU memory on DirectML)
  --ep auto|cpu|webgpu|cuda|dml|coreml   execution provider (default auto)
  --memory auto|sequential|resident      load one stage at a time, or keep all (default auto)
  --threads N            CPU threads for onnxruntime
  --cache DIR            converted-weight cache folder
Output:
  --out FILE             PNG path (default generated/<date>-<seed>-<slug>.png); never overwritten
  --json                 print the result summary as JSON on stdout
`;

export const generateCommand: Subcommand = {
  name: 'generate',
  summary: 'generate an image from a prompt',
  usage: GENERATE_HELP.trimEnd(),
  run: generate,
};

async function generate(argv: string[], io: CliOutput): Promise<number> {
  const { values } = parseCommandArgs(argv, {
      prompt: { type: 'string' }, model: { type: 'string' }, transformer: { type: 'string' }, vae: { type: 'string' },
      seed: { type: 'string' }, steps: { type: 'string' }, width: { type: 'string' }, height: { type: 'string' }, guidance: { type: 'string' },
      shift: { type: 'string' }, 't5-max-length': { type: 'string' }, latents: { type: 'string' }, weights: { type: 'string' }, ep: { type: 'string' },
      memory: { type: 'string' }, threads: { type: 'string' }, cache: { type: 'string' }, out: { type: 'string' }, json: { type: 'boolean' },
  });
  if (values.help) {
    io.out(GENERATE_HELP);
    return 0;
  }
  if (values.prompt === undefined) throw new UsageError('--prompt is required');
  const num = (name: string, v: string | undefined) => {
    if (v === undefined) return undefined;
    const n = Number(v);
    if (!Number.isFinite(n)) throw new UsageError(`--${name} must be a number, got "${v}"`);
    return n;
  };
  const oneOf = <T extends string>(name: string, v: string | undefined, allowed: readonly T[]): T | undefined => {
    if (v === undefined) return undefined;
    if (!allowed.includes(v as T)) throw new UsageError(`--${name} must be one of ${allowed.join(', ')}; got "${v}"`);
    return v as T;
  };
  const model: ModelSpec = values.model || values.transformer ? { dir: values.model, transformer: values.transformer, vae: values.vae } : ensureDemoModel();
  const params: GenerateParams = {
    prompt: values.prompt,
    seed: num('seed', values.seed),
    steps: num('steps', values.steps),
    width: num('width', values.width),
    height: num('height', values.height),
    guidance: num('guidance', values.guidance),
    t5MaxLength: num('t5-max-length', values['t5-max-length']),
    shift: values.shift === undefined || values.shift === 'dynamic' ? 'dynamic' : num('shift', values.shift),
    latentsFile: values.latents,
  };
  const weights = oneOf<WeightChoice>('weights', values.weights, WEIGHT_CHOICES);
  const ep = oneOf<EpChoice>('ep', values.ep, ['auto', 'cpu', 'webgpu', 'cuda', 'dml', 'coreml']);
  const memory = oneOf<MemoryMode>('memory', values.memory, ['auto', 'sequential', 'resident']);
  const log = (level: string, msg: string) => {
    if (level !== 'debug') io.err(`${level === 'info' ? '' : `${level}: `}${msg}\n`);
  };
  const pipeline = await FluxPipeline.create(model, { weights, ep, memory, threads: num('threads', values.threads), cacheDir: values.cache }, log);
  const controller = new AbortController();
  process.once('SIGINT', () => {
    io.err('\ncancelling at the next step…\n');
    controller.abort();
  });
  const t0 = performance.now();
  const result = await pipeline.generate(params, {
    signal: controller.signal,
    onStage: (stage, state, detail) => {
      if (state === 'start') io.err(`${stage}…\n`);
      else if (detail) io.err(`${stage} done (${detail})\n`);
    },
    onStep: ({ step, steps }) => io.err(`\r${progressBar(step, steps)} step ${step}/${steps}${step === steps ? '\n' : ''}`),
  });
  await pipeline.release();
  const out = path.resolve(values.out ?? path.join('generated', defaultName(result.seed, params.prompt)));
  fs.mkdirSync(path.dirname(out), { recursive: true });
  const png = await encodePng({ width: result.width, height: result.height, data: result.image }, {
    prompt: result.metadata.prompt, steps: result.metadata.steps, seed: result.seed, width: result.width, height: result.height, guidance: result.metadata.guidance,
    cfgScale: 1, sampler: 'Euler', scheduleType: 'Simple', shift: result.metadata.shift, model: result.metadata.model, version: result.metadata.software,
    extra: { 'Weight format': result.metadata.weights, 'T5 max length': result.metadata.t5MaxLength },
  });
  const written = await writePngAtomic(out, png, { unique: values.out === undefined });
  const total = (performance.now() - t0) / 1000;
  if (values.json) {
    io.out(`${JSON.stringify({ file: written, seed: result.seed, seconds: total, stages: result.stages, notes: result.notes, metadata: result.metadata })}\n`);
  } else {
    for (const n of result.notes) io.err(`note: ${n}\n`);
    const stages = result.stages.map((s) => `${s.stage} ${s.seconds.toFixed(2)} s${s.ep ? ` (${s.ep})` : ''}`).join(', ');
    io.out(`${written}\nseed ${result.seed} · ${result.width}×${result.height} · ${stages} · total ${total.toFixed(2)} s · peak RSS ${gib(lifetimePeakRss())}\n`);
  }
  return 0;
}

function progressBar(k: number, n: number, width = 24): string {
  const full = Math.round((k / n) * width);
  return `[${'#'.repeat(full)}${'.'.repeat(width - full)}]`;
}

export function defaultName(seed: number, prompt: string, date = new Date()): string {
  const d = `${date.getFullYear()}${String(date.getMonth() + 1).padStart(2, '0')}${String(date.getDate()).padStart(2, '0')}`;
  const slug = prompt.toLowerCase().normalize('NFKD').replace(/[^\p{L}\p{N}]+/gu, '-').replace(/^-+|-+$/g, '').slice(0, 40).replace(/-+$/, '') || 'image';
  return `${d}-${seed}-${slug}.png`;
}
