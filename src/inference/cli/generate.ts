// `majicflux generate`: one image from the command line, with a progress bar and a summary.

import * as path from 'node:path';
import { CancelledError, EP_CHOICES, MEMORY_MODES, ModelSpec, Stage, UserError, WEIGHT_CHOICES } from '../../shared/api';
import { DEFAULT_TEMPLATE, renderTemplate } from '../../shared/fileName';
import {
  DEFAULTS, describeRange, GenerateParams, resolveParams, Guidance, Height, ImageMetadata, LIMITS, Prompt, RANDOM_SEED, Seed, Shift, Steps, T5MaxLength, Width,
} from '../../shared/params';
import { demoModelNamed, ensureDemoModel } from '../models/demo';
import { lifetimePeakRss } from '../system/processMemory';
import { formatBytes } from '../../shared/bytes';
import { FluxPipeline } from '../pipeline/pipeline';
import { encodeImagePng } from '../formats/png';
import { cacheMaxBytesFlag, checked, checkedInputFile, checkPartFlags, choiceFlag, CliOutput, EXIT_CANCELLED, flag, parseCommandArgs, rejectEmptyPaths, Subcommand, UsageError, wholeNumberFlag } from './common';
import { checkCanCreate, checkedCacheDir, checkedOut, writePng } from './generateFiles';
import { EXTRA_HELP, EXTRA_OPTIONS, extraParams } from './generateOptions';

const { side, shift } = LIMITS;

const GENERATE_HELP = `Usage: majicflux generate "PROMPT" [options]
       majicflux generate --prompt TEXT [options]

Generates one image. With no --model (or --model demo), uses the bundled demo model (random
weights: coloured noise).

Model:
  --model DIR|FILE       FLUX.1-dev-style folder (text_encoder/, text_encoder_2/, tokenizer/,
                         tokenizer_2/, ae.safetensors or vae/, transformer/ or one DiT file),
                         or one all-in-one .safetensors (ComfyUI/Forge: DiT, text encoders, VAE)
  --transformer FILE     single-file DiT to use instead (e.g. majicflus_v134.safetensors,
                         or a GGUF such as flux1-dev-Q8_0.gguf)
  --text-encoder PATH    CLIP-L encoder to use instead (e.g. ComfyUI's clip_l.safetensors)
  --text-encoder-2 FILE  T5 encoder to use instead: a .safetensors, or a GGUF such as
                         t5-v1_1-xxl-encoder-Q8_0.gguf
  --vae PATH             ae.safetensors or a diffusers vae/ folder, overriding the model's
Sampling:
  --prompt TEXT          the prompt, if not given as the argument (required, not empty)
  --seed N               seed: a whole number from ${LIMITS.seed.min}; ${RANDOM_SEED} (default) draws one and reports it
  --steps N              denoising steps, ${describeRange('steps')}
  --width N, --height N  multiples of ${side.multiple}, ${side.min} to ${side.max} (default ${DEFAULTS.width}×${DEFAULTS.height})
  --guidance X           distilled guidance, ${describeRange('guidance')}
  --shift dynamic|X      sigma shift: FluxPipeline's resolution-dependent one (default) or fixed
                         (${shift.min} to ${shift.max})
  --t5-max-length N      T5 tokens, ${describeRange('t5MaxLength')} (256 for schnell-type models)
  --latents FILE         safetensors with an 'initial_latents' [1, tokens, 64] tensor to start from
${EXTRA_HELP}Runtime:
  --weights auto|fp8|fp16|fp32|int8|int4
                         how the DiT's Linear weights are held (default auto: fp8 on CPU/CUDA,
                         int8 on WebGPU, fp16 on CoreML, by GPU memory on DirectML)
  --ep auto|cpu|webgpu|cuda|dml|coreml   execution provider (default auto)
  --memory auto|sequential|resident      load one stage at a time, or keep all (default auto)
  --threads N            CPU threads for onnxruntime (a whole number, 0–1024)
  --cache DIR            converted-weight cache folder
  --cache-max-gb N       disk the weight caches may take, GiB: past it the least recently used
                         are removed after the image; this run's own stay, and a warning says
                         when they alone pass it (default 0: no limit)
Output:
  --out FILE.png         PNG path (default generated/${DEFAULT_TEMPLATE}, numbered if taken);
                         an existing FILE is refused before anything runs, unless --overwrite
  --overwrite            replace an existing --out FILE
  --json                 print the result summary as JSON on stdout
  --quiet                no progress on stderr (warnings and errors still print)
  -h, --help             show this help

Progress goes to stderr: a bar on a terminal, one line per stage and per step otherwise.
Every argument is checked before the model loads. Exit status: 0 success; 1 a failure (missing
or broken model, out of memory); 2 bad arguments; 130 cancelled (Ctrl+C: no image is written).
`;

export const generateCommand: Subcommand = {
  name: 'generate',
  summary: 'generate an image from a prompt',
  usage: GENERATE_HELP.trimEnd(),
  run: generate,
};

const OPTIONS = {
  prompt: { type: 'string' }, model: { type: 'string' }, transformer: { type: 'string' }, vae: { type: 'string' }, 'text-encoder': { type: 'string' }, 'text-encoder-2': { type: 'string' },
  seed: { type: 'string' }, steps: { type: 'string' }, width: { type: 'string' }, height: { type: 'string' }, guidance: { type: 'string' },
  shift: { type: 'string' }, 't5-max-length': { type: 'string' }, latents: { type: 'string' }, weights: { type: 'string' }, ep: { type: 'string' },
  memory: { type: 'string' }, threads: { type: 'string' }, cache: { type: 'string' }, 'cache-max-gb': { type: 'string' }, out: { type: 'string' }, overwrite: { type: 'boolean' },
  json: { type: 'boolean' }, quiet: { type: 'boolean' }, ...EXTRA_OPTIONS,
} as const;

type Values = ReturnType<typeof parseCommandArgs<typeof OPTIONS>>['values'];

async function generate(argv: string[], io: CliOutput): Promise<number> {
  const { values, positionals } = parseCommandArgs(argv, OPTIONS);
  if (values.help) {
    io.out(GENERATE_HELP);
    return 0;
  }
  // Everything the user typed is checked here, before a model is looked at: a mistake found
  // after loading (or after generating) costs minutes with a real model.
  rejectEmptyPaths(Object.fromEntries((['model', 'transformer', 'vae', 'text-encoder', 'text-encoder-2', 'latents', 'image', 'cache', 'out'] as const).map((f) => [`--${f}`, values[f]])));
  const params = checkedParams(values, positionals);
  const runtime = {
    weights: choiceFlag('weights', values.weights, WEIGHT_CHOICES),
    ep: choiceFlag('ep', values.ep, EP_CHOICES),
    memory: choiceFlag('memory', values.memory, MEMORY_MODES),
    threads: wholeNumberFlag('threads', values.threads, 0, 1024),
    cacheDir: values.cache === undefined ? undefined : checkedCacheDir(values.cache),
    cacheMaxBytes: cacheMaxBytesFlag(values['cache-max-gb']),
  };
  const out = values.out === undefined ? undefined : checkedOut(values.out, values.overwrite === true);
  if (out === undefined) checkCanCreate('the output folder', path.resolve('generated'));
  if (params.latentsFile !== undefined) checkedInputFile('--latents', params.latentsFile);

  checkPartFlags(values.model, { '--transformer': values.transformer, '--vae': values.vae, '--text-encoder': values['text-encoder'], '--text-encoder-2': values['text-encoder-2'] });
  const demo = values.transformer ? undefined : demoModelNamed(values.model);
  const model: ModelSpec = demo ?? (values.model || values.transformer ? { dir: values.model, transformer: values.transformer, vae: values.vae, textEncoder: values['text-encoder'], textEncoder2: values['text-encoder-2'] } : ensureDemoModel());
  const progress = progressPrinter(io, values.quiet === true);
  const pipeline = await FluxPipeline.create(model, runtime, progress.log);
  const controller = new AbortController();
  // The first Ctrl+C stops at the next step; a second one (the listener is gone) kills at once,
  // which is the way out of a first-use weight conversion (minutes) that the cancel waits for.
  const onSigint = () => {
    io.err('\ncancelling at the next step… (Ctrl+C again to quit now)\n');
    controller.abort();
  };
  process.once('SIGINT', onSigint);
  const t0 = performance.now();
  let result: Awaited<ReturnType<FluxPipeline['generate']>>;
  const cancelled = () => {
    io.err('cancelled; no image was written\n');
    return EXIT_CANCELLED;
  };
  let written: string;
  try {
    try {
      result = await pipeline.generate(params, { signal: controller.signal, onStage: progress.onStage, onStep: progress.onStep, onTile: progress.onTile });
      // A Ctrl+C during the decode (one native call that holds the event loop) is heard only now:
      // one turn of the loop, or it was dropped with its listener and the image saved anyway.
      await new Promise((resolve) => setImmediate(resolve));
      controller.signal.throwIfAborted();
    } catch (e) {
      // The PNG is written only after the last step, so a cancelled run has nothing to clean up.
      if (e instanceof CancelledError || controller.signal.aborted) return cancelled();
      throw e;
    }
    await pipeline.release();
    const file = out ?? path.resolve('generated', defaultName(result.metadata));
    const png = await encodeImagePng({ width: result.width, height: result.height, data: result.image }, result.metadata);
    // Still cancellable while saving: the temporary file is removed, no PNG is left.
    written = await writePng(file, png, { ...(out === undefined ? { unique: true } : { overwrite: values.overwrite === true }), signal: controller.signal }, result.seed, io);
  } catch (e) {
    if (controller.signal.aborted) return cancelled();
    throw e;
  } finally {
    process.off('SIGINT', onSigint);
  }
  const total = (performance.now() - t0) / 1000;
  if (values.json) {
    io.out(`${JSON.stringify({ file: written, seed: result.seed, seconds: total, stages: result.stages, notes: result.notes, warnings: result.warnings, metadata: result.metadata })}\n`);
  } else {
    // Warnings were logged as they came up (warn: …, with every detail).
    for (const n of result.notes) if (!result.warnings.includes(n)) io.err(`note: ${n}\n`);
    const stages = result.stages.map((s) => `${s.stage} ${s.seconds.toFixed(2)} s${s.ep ? ` (${s.ep})` : ''}`).join(', ');
    io.out(`${written}\nseed ${result.seed} · ${result.width}×${result.height} · ${stages} · total ${total.toFixed(2)} s · peak RSS ${formatBytes(lifetimePeakRss())}\n`);
  }
  return 0;
}

/** `generate`'s parameters from its command line, checked, without touching a model (tests walk its limits). */
export function parseGenerateParams(argv: string[]): GenerateParams {
  const { values, positionals } = parseCommandArgs(argv, OPTIONS);
  return checkedParams(values, positionals);
}

/** The prompt (from --prompt or the one positional) and the numbers, each checked by its params.ts schema. */
function checkedParams(values: Values, positionals: string[]): GenerateParams {
  if (positionals.length > 1) throw new UsageError(`generate takes one prompt; put it in quotes: majicflux generate "${positionals.join(' ')}"`);
  if (positionals.length && values.prompt !== undefined) throw new UsageError('give the prompt once: either --prompt TEXT or as the argument');
  const prompt = values.prompt ?? positionals[0];
  if (prompt === undefined) throw new UsageError('generate needs a prompt: majicflux generate "a cat" (or --prompt TEXT)');
  if (!prompt.trim()) throw new UsageError('the prompt is empty; describe the image, e.g. majicflux generate "a cat"');
  const params: GenerateParams = {
    prompt: checked(Prompt, prompt),
    seed: flag('seed', Seed, values.seed),
    steps: flag('steps', Steps, values.steps),
    width: flag('width', Width, values.width),
    height: flag('height', Height, values.height),
    guidance: flag('guidance', Guidance, values.guidance),
    t5MaxLength: flag('t5-max-length', T5MaxLength, values['t5-max-length']),
    shift: values.shift === undefined || values.shift === 'dynamic' ? values.shift : flag('shift', Shift, values.shift),
    latentsFile: values.latents,
    ...extraParams(values),
  };
  // The cross-field checks (a strength that leaves no step, a hires pass past 2048) as usage errors.
  try {
    resolveParams(params);
  } catch (e) {
    if (e instanceof UserError) throw new UsageError(e.message);
    throw e;
  }
  return params;
}

/**
 * Progress on stderr: a bar redrawn in place on a terminal; one line per stage and per step
 * elsewhere (a log file or CI would otherwise get one endless \r line); nothing with --quiet.
 */
function progressPrinter(io: CliOutput, quiet: boolean) {
  const tty = io.errIsTTY === true;
  // A bar redrawn in place is ended before any other line (a hires job's first pass ends mid-count).
  let barOpen = false;
  let stageNow: Stage | undefined;
  const line = (text: string) => {
    io.err(`${barOpen ? '\n' : ''}${text}\n`);
    barOpen = false;
  };
  return {
    log: (level: string, msg: string) => {
      if (level === 'debug' || (quiet && level === 'info')) return;
      line(`${level === 'info' ? '' : `${level}: `}${msg}`);
    },
    onStage: (stage: Stage, state: 'start' | 'end', detail?: string) => {
      stageNow = stage;
      if (quiet) return;
      if (state === 'start') line(`${stage}…`);
      else if (detail) line(`${stage} done (${detail})`);
    },
    onStep: ({ step, steps }: { step: number; steps: number }) => {
      if (quiet) return;
      if (!tty) return io.err(`step ${step}/${steps}\n`);
      io.err(`\r${progressBar(step, steps)} step ${step}/${steps}${step === steps ? '\n' : ''}`);
      barOpen = step !== steps;
    },
    // A tiled decode of a large image takes minutes on a CPU: each tile is said, not a silent wait.
    onTile: (done: number, total: number) => {
      if (quiet || total < 2) return;
      const text = `${stageNow ?? 'decode'} tile ${done + 1}/${total}`;
      if (!tty) return io.err(`${text}\n`);
      io.err(`\r${progressBar(done + 1, total)} ${text}`);
      barOpen = true;
    },
  };
}

function progressBar(k: number, n: number, width = 24): string {
  const full = Math.round((k / n) * width);
  return `[${'#'.repeat(full)}${'.'.repeat(width - full)}]`;
}

/** The file name an image gets without --out: the extension's default template, so both name it alike. */
export function defaultName(m: ImageMetadata, date = new Date()): string {
  return renderTemplate(DEFAULT_TEMPLATE, { ...m, date, index: 1 });
}
