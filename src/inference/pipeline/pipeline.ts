// Text → image: tokenize → CLIP pooled + T5 hidden → noise → Euler flow-matching loop on the DiT
// → unpack → z / scale + shift → VAE decode. Components are loaded as the memory mode says:
// `sequential` holds one at a time, `resident` keeps all of them between jobs.

import * as path from 'node:path';
import { version as packageVersion } from '../../../package.json';
import {
  CancelledError, COMPONENTS, ComponentName, ComputeType, ExecutionProvider, GenerateHooks, GenerateResult, MemoryMode, ModelSpec, RuntimeOptions, Stage, StageTiming, UserError, WeightFormat,
} from '../../shared/api';
import { GenerateParams, ImageMetadata, RANDOM_SEED, resolveParams } from '../../shared/params';
import { ClipEncoder } from '../graphs/clip';
import { FluxTransformer } from '../graphs/dit';
import { T5Encoder } from '../graphs/t5';
import { latentsToImage, VaeDecoder } from '../graphs/vae';
import { ModelFiles, resolveModel } from '../models/files';
import { availableMemory, currentRss, RssSampler, totalMemory } from '../system/processMemory';
import { formatBytes } from '../../shared/bytes';
import { pruneWeightCaches } from '../onnx/weights';
import { chooseEp, chooseWeights, nvidiaFreeMemory } from '../onnx/providers';
import { SafetensorsFile } from '../formats/safetensors';
import {
  eulerStep, flowMatchSchedule, imageIds, initialLatents, latentShape, latentToPreviewRGB, randomSeed, readSchedulerConfig, SchedulerConfig, textIds, unpackLatents,
} from './sampler';
import { ClipTokenizer, T5Tokenizer } from '../formats/tokenizers';
import { CLIP_MAX_TOKENS, promptIssues, promptNote } from '../formats/promptCheck';
import { cacheRoot } from '../system/userDirs';
import { PipelineLoras } from './loras';

/** The release, from package.json (esbuild keeps only this field of it). */
export const VERSION: string = packageVersion;
type Log = (level: 'debug' | 'info' | 'warn' | 'error', message: string) => void;
type LoadHook = NonNullable<GenerateHooks['onLoad']>;

interface PromptEmbedding {
  pooled: Float32Array;
  hidden: Float32Array;
  tokens: number;
}

const EMBEDDING_CACHE_SIZE = 16;

interface Parts {
  clip: ClipEncoder;
  t5: T5Encoder;
  dit: FluxTransformer;
  vae: VaeDecoder;
}

export class FluxPipeline {
  private readonly parts: Partial<Parts> = {};
  private clipTok?: ClipTokenizer;
  private t5Tok?: T5Tokenizer;
  private scheduler?: SchedulerConfig;
  private readonly embeddings = new Map<string, PromptEmbedding>();
  private readonly notesLogged = new Set<string>();
  /** The text length of the job the DiT is loaded for (graphs with constant slice bounds need it). */
  private ditTextTokens?: number;
  private readonly epUsed = new Map<ComponentName, { ep: ExecutionProvider; note?: string }>();
  private readonly loras: PipelineLoras;
  /** Notes of the job running now (a CLIP built for its LoRAs adds to them). */
  private jobNotes: string[] = [];

  private constructor(readonly files: ModelFiles, readonly runtime: ResolvedRuntime, private readonly log: Log) {
    this.loras = new PipelineLoras(log, files.transformer);
  }

  /** Resolve and check the model's files (headers only); nothing heavy is loaded yet. */
  static async create(model: ModelSpec, runtime: RuntimeOptions = {}, log: Log = () => {}): Promise<FluxPipeline> {
    const files = resolveModel(model);
    const memory = runtime.memory ?? 'auto';
    let weights: WeightFormat;
    if (runtime.weights === 'auto') {
      const { ep } = await chooseEp('dit', runtime.stageEp?.dit ?? runtime.ep ?? 'auto', 'fp8');
      const budget = runtime.gpuMemoryBudget ?? gpuBudgetForDit(files, ep, memory, runtime.gpuMemory);
      const d = chooseWeights(ep, (f) => files.residentBytes(f, 'dit'), budget);
      weights = d.format;
      log('info', `weights auto → ${weights} (${d.reason})`);
    } else {
      weights = runtime.weights ?? 'fp8';
    }
    const p = new FluxPipeline(files, { ...runtime, weights, memory }, log);
    log('info', `model ${files.name}: DiT ${files.transformer}, weights ${weights}, memory mode ${memory}`);
    return p;
  }

  /** Keeps the weight caches within cacheMaxBytes (the least recently used go; those in use stay). */
  private pruneCaches(cacheDir: string): void {
    const max = this.runtime.cacheMaxBytes;
    if (!max) return;
    const { removed, bytes } = pruneWeightCaches(cacheDir, max);
    if (removed.length) this.log('info', `weight caches over the ${formatBytes(max)} limit: removed the ${removed.length} least recently used (${formatBytes(bytes)}): ${removed.map((d) => path.basename(d)).join(', ')}`);
  }

  /**
   * First use of a format: converting the weights into the cache takes minutes for FLUX.1 (the T5
   * and DiT on a GPU); the log says how far it is, every 10 %, and a job's onLoad every 1 %,
   * rather than sit silent. Once converted, the part is still loading: `load` again.
   */
  private preparing(c: ComponentName, onLoad?: LoadHook): (fraction: number) => void {
    let shownTenth = -1;
    let shownPercent = -1;
    return (fraction) => {
      const percent = Math.floor(fraction * 100);
      if (percent !== shownPercent) {
        shownPercent = percent;
        onLoad?.(c, percent >= 100 ? 'load' : 'prepare', percent >= 100 ? undefined : fraction);
      }
      const tenth = Math.floor(fraction * 10);
      if (tenth === shownTenth) return;
      shownTenth = tenth;
      this.log('info', `${c}: preparing its weights in the cache (first use): ${Math.round(fraction * 100)} %`);
    };
  }

  /** The memory mode in effect: `auto` keeps everything resident when it fits the budget (default 80% of available RAM). */
  memoryMode(): Exclude<MemoryMode, 'auto'> {
    if (this.runtime.memory !== 'auto') return this.runtime.memory;
    const need = this.files.residentBytes(this.runtime.weights);
    return need < (this.runtime.memoryBudget ?? 0.8 * (availableMemory() + currentRss())) ? 'resident' : 'sequential';
  }

  loaded(): ComponentName[] {
    return COMPONENTS.filter((c) => this.parts[c] !== undefined);
  }

  eps(): { component: ComponentName; ep: ExecutionProvider; note?: string }[] {
    return [...this.epUsed].map(([component, v]) => ({ component, ...v }));
  }

  async load(components: readonly ComponentName[] = COMPONENTS): Promise<void> {
    for (const c of components) await this.ensure(c);
  }

  async unload(components: readonly ComponentName[] = COMPONENTS): Promise<void> {
    for (const c of components) {
      const part = this.parts[c];
      delete this.parts[c];
      await part?.release();
    }
  }

  async release(): Promise<void> {
    await this.unload();
    this.embeddings.clear();
  }

  async generate(input: GenerateParams, hooks: GenerateHooks = {}): Promise<GenerateResult> {
    const params = resolveParams(input);
    const { width, height, steps, guidance, t5MaxLength, shift } = params;
    const seed = params.seed === undefined || params.seed === RANDOM_SEED ? randomSeed() : params.seed;
    const mode = this.memoryMode();
    const stages: StageTiming[] = [];
    const notes: string[] = (this.jobNotes = []);
    const loras = this.loras.resolve(params.loras);
    if (this.loras.clipChanged(loras)) await this.unload(['clip']);
    const check = () => {
      if (hooks.signal?.aborted) throw new CancelledError();
    };
    const stage = async <T>(name: Stage, fn: () => Promise<T>, ep?: ComponentName): Promise<T> => {
      check();
      hooks.onStage?.(name, 'start');
      const sampler = new RssSampler();
      const t0 = performance.now();
      try {
        return await fn();
      } finally {
        const peakRss = sampler.stop();
        const seconds = (performance.now() - t0) / 1000;
        stages.push({ stage: name, seconds, peakRss, ...(ep && this.epUsed.get(ep) ? { ep: this.epUsed.get(ep)!.ep } : {}) });
        hooks.onStage?.(name, 'end', `${seconds.toFixed(2)} s, peak ${formatBytes(peakRss)}`);
      }
    };

    // 1. Text
    const key = `${t5MaxLength}\u0000${params.prompt}\u0000${loras.clipKey}`;
    let emb = this.embeddings.get(key);
    if (emb) {
      notes.push('prompt embeddings from cache');
      this.embeddings.delete(key);
      this.embeddings.set(key, emb); // most recently used last
    } else {
      emb = await stage('text', async () => {
        const tokenizers = await this.tokenizers();
        const clipIds = tokenizers.clip.encode(params.prompt, CLIP_MAX_TOKENS);
        const t5Ids = tokenizers.t5.encode(params.prompt, t5MaxLength);
        for (const issue of promptIssues(params.prompt, clipIds, t5Ids, t5MaxLength)) notes.push(promptNote(issue, params.prompt));
        const clip = await this.ensure('clip', hooks.onLoad);
        const { pooled } = await clip.encode(clipIds.ids);
        if (mode === 'sequential') await this.unload(['clip']);
        check();
        const t5 = await this.ensure('t5', hooks.onLoad);
        const hidden = await t5.encode(t5Ids.ids);
        if (mode === 'sequential') await this.unload(['t5']);
        return { pooled, hidden, tokens: t5MaxLength };
      }, 't5');
      this.embeddings.set(key, emb);
      if (this.embeddings.size > EMBEDDING_CACHE_SIZE) this.embeddings.delete(this.embeddings.keys().next().value!);
    }

    // 2. Denoise
    const shape = latentShape(width, height);
    let latents = params.latentsFile ? readInitialLatents(params.latentsFile, shape.tokens) : initialLatents(seed, width, height);
    const schedule = flowMatchSchedule({ steps, width, height, shift, config: await this.schedulerConfig() });
    latents = await stage('denoise', async () => {
      // A DiT built for a fixed text length (CoreML) is rebuilt when a job asks for another one.
      const built = this.parts.dit?.textTokens;
      if (built !== undefined && built !== emb!.tokens) await this.unload(['dit']);
      this.ditTextTokens = emb!.tokens;
      const dit = await this.ensure('dit', hooks.onLoad);
      await this.loras.applyToDit(dit, loras, notes).catch(async (e) => {
        await this.unload(['dit']).catch(() => {}); // a failed rebuild leaves no usable session
        throw e;
      });
      const run = dit.prepare({ imgIds: imageIds(height, width), txtIds: textIds(emb!.tokens), txt: emb!.hidden, vec: emb!.pooled });
      for (let i = 0; i < steps; i++) {
        check();
        const sigma = schedule.sigmas[i];
        const v = await run.forward(latents, sigma, guidance);
        latents = eulerStep(latents, v, sigma, schedule.sigmas[i + 1]);
        assertFinite(latents, 'DiT', this.files.transformer, `at denoising step ${i + 1}`);
        if (hooks.onStep) hooks.onStep({ step: i + 1, steps, latents, preview: hooks.wantPreview ? { width: shape.w2, height: shape.h2, rgb: latentToPreviewRGB(latents, width, height) } : undefined });
      }
      if (mode === 'sequential') await this.unload(['dit']);
      return latents;
    }, 'dit');

    // 3. Decode
    const image = await stage('decode', async () => {
      const vae = await this.ensure('vae', hooks.onLoad);
      const z = unpackLatents(latents, shape.h2, shape.w2);
      const { scale, shift: zShift } = vae.config;
      for (let i = 0; i < z.length; i++) z[i] = z[i] / scale + zShift;
      const decoded = await vae.decode(z, shape.h2, shape.w2);
      assertFinite(decoded, 'VAE', this.files.vae, 'while decoding');
      if (mode === 'sequential') await this.unload(['vae']);
      return latentsToImage(decoded, height, width);
    }, 'vae');

    const metadata: ImageMetadata = {
      prompt: params.prompt, seed, steps, width, height, guidance, shift, t5MaxLength, model: this.files.name, weights: this.runtime.weights, sampler: 'euler', software: `MajicFLUX ${VERSION}`,
      ...(loras.metadata.length ? { loras: loras.metadata } : {}),
    };
    return { seed, image, width, height, stages, metadata, notes };
  }

  private async tokenizers() {
    if (!this.clipTok) this.clipTok = await ClipTokenizer.fromFolder(this.files.tokenizer);
    if (!this.t5Tok) this.t5Tok = await T5Tokenizer.fromFolder(this.files.tokenizer2);
    return { clip: this.clipTok, t5: this.t5Tok };
  }

  private async schedulerConfig(): Promise<SchedulerConfig> {
    if (!this.scheduler) this.scheduler = await readSchedulerConfig(this.files.scheduler ?? '');
    return this.scheduler;
  }

  /** Refuse early, with the numbers, when a component cannot fit in this machine's memory. */
  private checkFits(c: ComponentName): void {
    const need = this.files.residentBytes(this.runtime.weights, c);
    const total = totalMemory();
    if (need <= total) {
      if (need > availableMemory()) this.log('warn', `the ${c} needs about ${formatBytes(need)} and only ${formatBytes(availableMemory())} is free: expect swapping`);
      return;
    }
    const smaller = c === 'dit' && this.runtime.weights !== 'fp8' ? ` With fp8 weights it needs about ${formatBytes(this.files.residentBytes('fp8', c))}.` : '';
    throw new UserError(`Not enough memory for the ${c}: it needs about ${formatBytes(need)} with ${this.runtime.weights} weights, and this machine has ${formatBytes(total)}.${smaller} Use memory mode sequential so only one part is loaded at a time.`);
  }

  private async ensure<C extends ComponentName>(c: C, onLoad?: LoadHook): Promise<Parts[C]> {
    const have = this.parts[c];
    if (have) return have as Parts[C];
    onLoad?.(c, 'load');
    const { ep, note } = await chooseEp(c, this.runtime.stageEp?.[c] ?? this.runtime.ep ?? 'auto', this.runtime.weights);
    if (note && !this.notesLogged.has(note)) {
      this.notesLogged.add(note);
      this.log(ep === 'cpu' && (this.runtime.stageEp?.[c] ?? this.runtime.ep ?? 'auto') === 'auto' ? 'info' : 'warn', note);
    }
    this.epUsed.set(c, { ep, note });
    this.checkFits(c);
    const compute = computeFor(c, ep, this.runtime.compute);
    const common = { ep, compute, cacheDir: this.runtime.cacheDir ?? defaultCacheDir(), intraOpThreads: this.runtime.threads, threads: this.runtime.threads, onProgress: this.preparing(c, onLoad) };
    // GPUs have no bf16 kernels: the text encoders' weights are made float16 once, into the weight
    // cache (memory-mapped, so loading does not hold a converted copy in RAM).
    const textFormat = ep === 'cpu' ? 'source' : 'fp16';
    const t0 = performance.now();
    let part: Parts[ComponentName];
    try {
      switch (c) {
        case 'clip':
          part = await ClipEncoder.load(this.files.textEncoder, { ...common, format: textFormat, fp16Cache: true, ...this.loras.clipOptions(this.jobNotes) });
          break;
        case 't5':
          part = await T5Encoder.load(this.files.textEncoder2, { ...common, format: textFormat, fp16Cache: true });
          break;
        case 'dit':
          part = await FluxTransformer.load(this.files.transformer, { ...common, ...this.runtime.ditTuning, format: this.runtime.weights, textTokens: this.ditTextTokens, lora: this.loras.wantBranches });
          for (const n of part.notes) this.log('info', `dit: ${n}`);
          break;
        default:
          part = await VaeDecoder.load(this.files.vae, common);
      }
    } catch (e) {
      throw explainLoadFailure(c, e, this.files.residentBytes(this.runtime.weights, c));
    }
    this.parts[c] = part as Parts[C];
    this.pruneCaches(common.cacheDir);
    onLoad?.(c, 'loaded');
    this.log('info', `loaded ${c} on ${ep} in ${((performance.now() - t0) / 1000).toFixed(2)} s (rss ${formatBytes(currentRss())})`);
    return part as Parts[C];
  }
}

type ResolvedRuntime = Omit<RuntimeOptions, 'weights' | 'memory'> & { weights: WeightFormat; memory: MemoryMode };

/**
 * GPU memory the DiT may take: the user's figure, else what nvidia-smi reports free, less room for activations (~2 GiB
 * at 1024² in fp16) and, when everything stays resident, the other components.
 */
function gpuBudgetForDit(files: ModelFiles, ep: ExecutionProvider, memory: MemoryMode, gpuMemory?: number): number | undefined {
  if (ep === 'cpu') return undefined;
  const free = gpuMemory ?? nvidiaFreeMemory();
  if (free === undefined) return undefined;
  const others = memory === 'sequential' ? 0 : (['clip', 't5', 'vae'] as const).reduce((a, c) => a + files.residentBytes('fp16', c), 0);
  return free - 2 * 2 ** 30 - others;
}

/** Activation type of a component: T5-XXL overflows float16 (its FFN activations pass 65504), so it stays float32. */
function computeFor(c: ComponentName, ep: ExecutionProvider, choice: RuntimeOptions['compute']): ComputeType {
  if (c === 't5') return 'float32';
  if (choice && choice !== 'auto') return choice;
  return ep === 'cpu' ? 'float32' : 'float16';
}

export function defaultCacheDir(): string {
  return path.join(cacheRoot(), 'weights');
}

function readInitialLatents(file: string, tokens: number): Float32Array {
  const f = SafetensorsFile.open(file);
  try {
    if (!f.has('initial_latents')) throw new UserError(`${file} has no "initial_latents" tensor`);
    const shape = f.info('initial_latents').shape;
    if (shape.length !== 3 || shape[1] !== tokens || shape[2] !== 64) {
      throw new UserError(`${file}: initial_latents has shape [${shape}] but this image size needs [1, ${tokens}, 64]`);
    }
    const latents = f.readF32('initial_latents');
    if (!latents.every(Number.isFinite)) throw new UserError(`${file}: initial_latents holds NaN or infinity; the file is corrupt`);
    return latents;
  } finally {
    f.close();
  }
}

/**
 * Finite weights and inputs give finite values; NaN or infinity means broken weights (NaN/Inf in the
 * file, or bytes read at the wrong offset or as the wrong type), which would end as an all-black
 * PNG reported as done. One pass over the latent is nothing next to a DiT step.
 */
function assertFinite(x: Float32Array, component: string, file: string, when: string): void {
  for (let i = 0; i < x.length; i++) {
    if (!Number.isFinite(x[i])) {
      throw new UserError(
        `The ${component} produced non-finite values (NaN or infinity) ${when}: its weights are most likely corrupt or were mis-read (${file}). Run MajicFLUX: Check Models with verification (or majicflux models check --verify) and download the damaged file again.`,
      );
    }
  }
}

function explainLoadFailure(c: ComponentName, e: unknown, needBytes: number): Error {
  if (e instanceof UserError) return e;
  const msg = (e as Error).message ?? String(e);
  if (/bad_alloc|out of memory|Failed to allocate|ENOMEM/i.test(msg)) {
    return new UserError(
      `Not enough memory to load the ${c} (needs about ${formatBytes(needBytes)}, ${formatBytes(availableMemory())} available). Try weight format fp8 and memory mode sequential, or close other programs.`,
      msg,
    );
  }
  return new UserError(`Could not load the ${c}: ${msg.split('\n')[0]}`, (e as Error).stack);
}

