// Text → image: tokenize → CLIP pooled + T5 hidden → noise → Euler flow-matching loop on the DiT
// → unpack → z / scale + shift → VAE decode. Image → image: the input image VAE-encoded and noised
// part-way along the schedule (img2img.ts) enters the same loop. A hires pass upscales the result
// and runs image-to-image again at the larger size. Components are loaded as the memory mode says:
// `sequential` holds one at a time, `resident` keeps all of them between jobs.

import * as path from 'node:path';
import { version as packageVersion } from '../../../package.json';
import {
  COMPONENTS, ComponentName, ExecutionProvider, GenerateHooks, GenerateResult, errorText, MemoryMode, ModelError, ModelSpec, RuntimeOptions, UserError,
} from '../../shared/api';
import { DEFAULTS, GenerateParams, ImageMetadata, img2imgSteps, RANDOM_SEED, ResolvedParams, resolveParams, stepsToRun } from '../../shared/params';
import { ClipEncoder } from '../graphs/clip';
import { FluxTransformer } from '../graphs/fluxTransformer';
import { T5Encoder } from '../graphs/t5';
import { latentsToImage, VaeDecoder, VaeEncoder } from '../graphs/vae';
import { ModelFiles, resolveModel } from '../models/files';
import type { DitAttention } from '../models/workingSets';
import { availableMemory, currentRss, totalMemory } from '../system/processMemory';
import { formatBytes } from '../../shared/bytes';
import { pruneWeightCaches, removeStaleWeightCaches } from '../onnx/weightCache';
import { chooseEp } from '../onnx/providers';
import { plannedGpuMemory } from '../system/gpuMemory';
import { attentionChunksFor, opChoicesFor } from '../onnx/providerOps';
import { loraFactorBytes, loraGraphOptions } from '../graphs/ditLora';
import { eulerStep, flowMatchSchedule } from './flowMatch';
import { imageIds, initialLatents, LATENT_CHANNELS, latentShape, packLatents, textIds, unpackLatents, VAE_SCALE } from './latents';
import { latentToPreviewRGB } from './latentPreview';
import { randomSeed } from './noise';
import { DEFAULT_SCHEDULER_CONFIG, readSchedulerConfig, SchedulerConfig } from './schedulerConfig';
import { img2imgStart, imageLatents, scaleNoise, upscaleLatents } from './img2img';
import { inputImageTensor, readInputImage, resizeForEncoder } from './inputImage';
import { paramsWarnings } from './paramsWarnings';
import { decodeTiled, encodeTiled, TileGrid, tileGridFor, useTiling, VAE_GPU_BYTES_PER_PIXEL, VAE_TILES } from './vaeTiling';
import { guidedDit, trueCfgOn } from './trueCfg';
import { ClipTokenizer, T5Tokenizer } from '../formats/tokenizers';
import { CLIP_MAX_TOKENS, promptIssues, promptNote } from '../formats/promptCheck';
import { ActiveLoras, PipelineLoras } from './loras';
import { DenoisePass, Job, newJob, PromptEmbedding } from './job';
import { assertFinite, readInitialLatents } from './latentChecks';
import { computeFor, defaultCacheDir, ditArchitecture, ditAttentionFor, explainLoadFailure, planDit, PLANNED_DIT_TOKENS, ResolvedRuntime } from './loading';

/** The release, from package.json (esbuild keeps only this field of it). */
export const VERSION: string = packageVersion;
type Log = (level: 'debug' | 'info' | 'warn' | 'error', message: string) => void;
type LoadHook = NonNullable<GenerateHooks['onLoad']>;

const EMBEDDING_CACHE_SIZE = 16;

interface Parts {
  clip: ClipEncoder;
  t5: T5Encoder;
  dit: FluxTransformer;
  vae: VaeDecoder;
}

export class FluxPipeline {
  private readonly parts: Partial<Parts> = {};
  private vaeEncoder?: VaeEncoder;
  private clipTok?: ClipTokenizer;
  private t5Tok?: T5Tokenizer;
  private scheduler?: SchedulerConfig;
  private readonly embeddings = new Map<string, PromptEmbedding>();
  private readonly notesLogged = new Set<string>();
  /** The text length of the job the DiT is loaded for (graphs with constant slice bounds need it). */
  private ditTextTokens?: number;
  /** The token count the T5 graph is built for (its position biases are [L, L] constants): the job's t5MaxLength. */
  private t5Tokens: number = DEFAULTS.t5MaxLength;
  /** Text + image tokens of the largest pass of the job the DiT is loaded for, and the query pieces its attention was built with. */
  private ditTokens = 0;
  private ditChunks?: number;
  /** GPU memory the DiT's weights and working set may take alone, and what the others hold when resident (loading.planDit); undefined on the CPU or where unknown. */
  private ditGpu?: { alone: number; others: number };
  /** The attention form the DiT was built with where the memory chose it (WebGPU), else undefined. */
  private ditForm?: DitAttention;
  /** Whether the log has said that the caches in use pass the disk limit (once per model). */
  private cacheLimitTold = false;
  private readonly epUsed = new Map<ComponentName, { ep: ExecutionProvider; note?: string }>();
  private readonly loras: PipelineLoras;
  /** Notes of the job running now (a CLIP built for its LoRAs adds to them). */
  /** The running job: loading a part warns in it (a CLIP LoRA's skipped keys) and checks its cancel (a first use's conversion). */
  private running?: Job;

  private constructor(readonly files: ModelFiles, readonly runtime: ResolvedRuntime, private readonly log: Log) {
    this.loras = new PipelineLoras(log, files.transformer);
  }

  /** Resolve and check the model's files (headers only); nothing heavy is loaded yet. */
  static async create(model: ModelSpec, runtime: RuntimeOptions = {}, log: Log = () => {}): Promise<FluxPipeline> {
    const files = resolveModel(model);
    const memory = runtime.memory ?? 'auto';
    const { format: weights, gpuMemory, others } = await planDit(files, runtime, memory, log);
    const p = new FluxPipeline(files, { ...runtime, weights, memory }, log);
    p.ditGpu = gpuMemory === undefined ? undefined : { alone: gpuMemory, others };
    log('info', `model ${files.name}: DiT ${files.transformer}, weights ${weights}, memory mode ${memory}`);
    return p;
  }

  /** Keeps the weight caches within cacheMaxBytes (the least recently used go; those in use stay). */
  private pruneCaches(cacheDir: string): void {
    const stale = removeStaleWeightCaches(cacheDir);
    if (stale.removed.length) this.log('info', `removed ${stale.removed.length} weight cache(s) (${formatBytes(stale.bytes)}) converted from a file that has changed since: ${stale.files.join(', ')}`);
    const max = this.runtime.cacheMaxBytes;
    if (!max) return;
    const { removed, bytes, left } = pruneWeightCaches(cacheDir, max);
    if (removed.length) this.log('info', `weight caches over the ${formatBytes(max)} limit: removed the ${removed.length} least recently used (${formatBytes(bytes)}): ${removed.map((d) => path.basename(d)).join(', ')}`);
    // Those in use stay (removing them would rebuild them, minutes, every run): the limit was then
    // quietly exceeded on every image, with the user believing the disk was capped.
    if (left > max && !this.cacheLimitTold) {
      this.cacheLimitTold = true;
      this.log('warn', `the weight caches this model uses take ${formatBytes(left)} in ${cacheDir}, more than the ${formatBytes(max)} limit: they stay while used (rebuilding them would take minutes each run); raise the limit (--cache-max-gb, the majicflux.weightCache.maxGB setting) to at least that, or use a weight format that needs no conversion`);
    }
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
      // A cancel during the conversion ends it after the tensor in hand (it took minutes before).
      this.running?.check();
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
    return COMPONENTS.filter((c) => this.parts[c] !== undefined || (c === 'vae' && this.vaeEncoder !== undefined));
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
      if (c === 'vae') {
        const encoder = this.vaeEncoder;
        this.vaeEncoder = undefined;
        await encoder?.release();
      }
    }
  }

  async release(): Promise<void> {
    await this.unload();
    this.embeddings.clear();
  }

  async generate(input: GenerateParams, hooks: GenerateHooks = {}): Promise<GenerateResult> {
    try {
      return await this.generateJob(input, hooks);
    } finally {
      // A load outside a job (the protocol's load) must not hear a finished job's cancel.
      this.running = undefined;
    }
  }

  private async generateJob(input: GenerateParams, hooks: GenerateHooks): Promise<GenerateResult> {
    let params = resolveParams(input);
    // The input image's size is what width/height default to: read its header, still before anything loads.
    const source = params.image !== undefined ? await readInputImage(params.image) : undefined;
    if (source) params = resolveParams(input, source);
    const { width, height, steps, guidance, t5MaxLength, shift, hires } = params;
    const seed = params.seed === undefined || params.seed === RANDOM_SEED ? randomSeed() : params.seed;
    const job = newJob(hooks, this.memoryMode(), (c) => this.epUsed.get(c)?.ep);
    this.running = job;
    // LoRA files are read and mapped (headers checked against the DiT) before anything loads.
    const loras = this.loras.resolve(params.loras);
    for (const n of loras.notes) job.warn(n);
    for (const n of paramsWarnings(input, params, source)) {
      this.log('warn', n);
      job.warn(n);
    }
    if (this.loras.clipChanged(loras)) await this.unload(['clip']);
    // Progress counts the steps that run, both passes' from the start.
    const firstSteps = source ? img2imgSteps(steps, params.strength) : steps;
    const totalSteps = stepsToRun(params);
    // Decoded now, not after the text encoders: a damaged file must not cost a prompt encoding.
    const pixels = source && (await inputImageTensor(source, width, height, params.imageFit));
    // The negative prompt too when true CFG runs: same encoders, same cache, one text stage.
    const cfg = trueCfgOn(params);
    // Read now: a damaged scheduler_config.json must not cost a prompt encoding either, nor a damaged latents file.
    await this.schedulerConfig();
    const shape = latentShape(width, height);
    const noise = params.latentsFile ? readInitialLatents(params.latentsFile, shape.tokens) : initialLatents(seed, width, height);
    const [emb, negEmb] = await this.embed(job, cfg ? [params.prompt, params.negativePrompt] : [params.prompt], t5MaxLength, loras.clipKey);
    const guide = { neg: negEmb, scale: params.trueCfgScale, loras };

    const schedule = flowMatchSchedule({ steps, width, height, shift, config: await this.schedulerConfig() });
    let latents = noise;
    let from = 0;
    if (pixels) {
      from = img2imgStart(steps, params.strength);
      const encoded = await job.stage('encode', () => this.encode(job, pixels, width, height, params.vaeTiling), 'vae');
      latents = scaleNoise(encoded, noise, schedule.sigmas[from]);
    }
    const maxTokens = t5MaxLength + latentShape(hires?.width ?? width, hires?.height ?? height).tokens;
    // A latent upscale needs no VAE between the passes: the DiT stays loaded for the second.
    const keepDit = hires?.upscale === 'latent';
    // Built for the largest pass it runs before it is next unloaded (attention pieces grow with the
    // tokens, attentionChunksFor): sequential mode unloads it for an image upscale's VAE, so the
    // first pass gets a graph of its own size (an H200 ran 1024² at 1.15 s/step whole, 1.31 s in the
    // 16 pieces of a 2048² graph) and the second pass loads the larger one.
    const firstMax = job.mode === 'sequential' && !keepDit ? t5MaxLength + shape.tokens : maxTokens;
    latents = await job.stage('denoise', () => this.denoise(job, emb, guide, latents, { width, height, guidance, sigmas: schedule.sigmas, from, stepsBefore: 0, totalSteps, keepDit, maxTokens: firstMax }), 'dit');
    let size = { width, height };
    if (hires) {
      size = { width: hires.width, height: hires.height };
      const upscaled = await job.stage('encode', () => this.upscale(job, latents, { width, height }, size, hires.upscale, params.vaeTiling), hires.upscale === 'image' ? 'vae' : undefined);
      const second = flowMatchSchedule({ steps: hires.steps, ...size, shift, config: await this.schedulerConfig() });
      const start = img2imgStart(hires.steps, hires.strength);
      // Noise for the larger shape, drawn from the same seed.
      latents = scaleNoise(upscaled, initialLatents(seed, size.width, size.height), second.sigmas[start]);
      latents = await job.stage('denoise', () => this.denoise(job, emb, guide, latents, { ...size, guidance, sigmas: second.sigmas, from: start, stepsBefore: firstSteps, totalSteps, maxTokens }), 'dit');
    }
    const image = await job.stage('decode', () => this.decode(job, latents, size.width, size.height, params.vaeTiling), 'vae');

    // width/height are the first pass's (what a re-run sets, as A1111's "Size"); with a hires pass the image is hires.width × hires.height.
    const metadata: ImageMetadata = {
      prompt: params.prompt, seed, steps, width, height, guidance, shift, t5MaxLength, model: this.files.name, weights: this.runtime.weights, sampler: 'euler', software: `MajicFLUX ${VERSION}`,
      ...(source ? { image: source.file, strength: params.strength, imageFit: params.imageFit } : {}),
      ...(hires ? { hires: { ...hires } } : {}),
      ...(cfg ? { negativePrompt: params.negativePrompt, trueCfgScale: params.trueCfgScale } : {}),
      ...(loras.metadata.length ? { loras: loras.metadata } : {}),
    };
    // Pruned once every part this job needs is open (and so kept): pruned after the first load, a
    // limit below one model's caches removed the DiT's before it loaded, converting it every run.
    this.pruneCaches(this.runtime.cacheDir ?? defaultCacheDir());
    return { seed, image, ...size, stages: job.stages, metadata, notes: job.notes, warnings: job.warnings };
  }

  /**
   * CLIP pooled + T5 hidden for each prompt, from the cache or encoded in one 'text' stage (in
   * sequential mode each encoder is loaded once for all of them).
   */
  private async embed(job: Job, prompts: string[], t5MaxLength: number, clipLoras: string): Promise<PromptEmbedding[]> {
    // CLIP with LoRA layers merged gives other embeddings: the set is part of the key.
    const key = (prompt: string) => `${t5MaxLength}\u0000${prompt}\u0000${clipLoras}`;
    const missing = [...new Set(prompts.filter((p) => !this.embeddings.has(key(p))))];
    if (!missing.length) job.notes.push('prompt embeddings from cache');
    else {
      const made = await job.stage('text', async () => {
        const tokenizers = await this.tokenizers();
        const ids = missing.map((prompt) => {
          const clipIds = tokenizers.clip.encode(prompt, CLIP_MAX_TOKENS);
          const t5Ids = tokenizers.t5.encode(prompt, t5MaxLength);
          // The prompt's notes only: a negative prompt cut short is rarely worth a warning.
          if (prompt === prompts[0]) for (const issue of promptIssues(prompt, clipIds, t5Ids, t5MaxLength)) job.notes.push(promptNote(issue, prompt));
          return { clip: clipIds.ids, t5: t5Ids.ids };
        });
        const clip = await this.ensure('clip', job.hooks.onLoad);
        const pooled: Float32Array[] = [];
        for (const x of ids) pooled.push((await clip.encode(x.clip)).pooled);
        if (job.mode === 'sequential') await this.unload(['clip']);
        job.check();
        // A T5 built for another length cannot run these ids: rebuilt for this job's.
        if (this.parts.t5 && this.parts.t5.maxLength !== t5MaxLength) await this.unload(['t5']);
        this.t5Tokens = t5MaxLength;
        const t5 = await this.ensure('t5', job.hooks.onLoad);
        const hidden: Float32Array[] = [];
        for (const x of ids) hidden.push(await t5.encode(x.t5));
        if (job.mode === 'sequential') await this.unload(['t5']);
        return ids.map((_, i) => ({ pooled: pooled[i], hidden: hidden[i], tokens: t5MaxLength }));
      }, 't5');
      missing.forEach((p, i) => this.embeddings.set(key(p), made[i]));
    }
    return prompts.map((p) => {
      const e = this.embeddings.get(key(p))!;
      this.embeddings.delete(key(p));
      this.embeddings.set(key(p), e); // most recently used last
      while (this.embeddings.size > EMBEDDING_CACHE_SIZE) this.embeddings.delete(this.embeddings.keys().next().value!);
      return e;
    });
  }

  /**
   * Euler steps `from`… of the schedule `sigmas` on packed `latents` at width×height. Progress
   * counts `stepsBefore` + the steps run here of `totalSteps`, so passes after the first continue it.
   */
  private async denoise(job: Job, emb: PromptEmbedding, guide: { neg?: PromptEmbedding; scale: number; loras: ActiveLoras }, latents: Float32Array, pass: DenoisePass): Promise<Float32Array> {
    const { hooks, mode } = job;
    const { width, height, guidance, sigmas, from, stepsBefore, totalSteps } = pass;
    const shape = latentShape(width, height);
    // A DiT built for a fixed text length (CoreML) is rebuilt when a job asks for another one; one
    // whose attention pieces are too few for the job's largest pass (a hires pass), once, before its first.
    const built = this.parts.dit?.textTokens;
    if (built !== undefined && built !== emb.tokens) await this.unload(['dit']);
    this.ditTextTokens = emb.tokens;
    this.ditTokens = pass.maxTokens;
    const ditEp = this.epUsed.get('dit')?.ep;
    // Query pieces are the MatMul form's (MultiHeadAttention takes none): a DiT in that form is not rebuilt for them.
    const pieces = (this.ditForm ?? this.runtime.ditTuning?.attention ?? opChoicesFor(ditEp ?? 'cpu').attention) === 'matmul';
    if (this.parts.dit && ditEp && pieces && this.runtime.ditTuning?.attentionChunks === undefined && (this.ditChunks ?? 0) < attentionChunksFor(ditEp, pass.maxTokens)) {
      this.log('info', `dit: rebuilt with its attention in ${attentionChunksFor(ditEp, pass.maxTokens)} query pieces for ${pass.maxTokens} tokens`);
      await this.unload(['dit']);
    } else if (this.parts.dit && ditEp && this.ditForm === 'matmul' && this.ditAttention(ditEp, false) === 'fused') {
      // Only towards the smaller form: one that fits stays (a rebuild costs more than the faster form saves at fewer tokens).
      this.log('info', `dit: rebuilt for ${pass.maxTokens} tokens, whose MatMul-form attention would not fit the GPU's memory`);
      await this.unload(['dit']);
    }
    const dit = await this.ensure('dit', hooks.onLoad);
    await this.loras.applyToDit(dit, guide.loras, hooks.onLoad).catch(async (e) => {
      await this.unload(['dit']).catch(() => {}); // a failed rebuild leaves no usable session
      throw e;
    });
    const prepare = (e: PromptEmbedding) => dit.prepare({ imgIds: imageIds(height, width), txtIds: textIds(e.tokens), txt: e.hidden, vec: e.pooled });
    const run = guidedDit(prepare(emb), guide.neg && prepare(guide.neg), guide.scale);
    const steps = sigmas.length - 1;
    for (let i = from; i < steps; i++) {
      job.check();
      const sigma = sigmas[i];
      const v = await run.forward(latents, sigma, guidance);
      latents = eulerStep(latents, v, sigma, sigmas[i + 1]);
      const step = stepsBefore + i - from + 1;
      assertFinite(latents, 'DiT', this.files.transformer, `at denoising step ${step}`);
      if (hooks.onStep) hooks.onStep({ step, steps: totalSteps, latents, preview: hooks.wantPreview ? { width: shape.w2, height: shape.h2, rgb: latentToPreviewRGB(latents, width, height) } : undefined });
    }
    if (mode === 'sequential' && !pass.keepDit) await this.unload(['dit']);
    return latents;
  }

  /** Packed latents → unpack → z / scale + shift → VAE decode (tiled for large images) → [H, W, 3] in [0, 1]. */
  private async decode(job: Job, latents: Float32Array, width: number, height: number, tiling: VaeTilingMode, keepVae = false): Promise<Float32Array> {
    const shape = latentShape(width, height);
    const vae = await this.ensure('vae', job.hooks.onLoad);
    const z = unpackLatents(latents, shape.h2, shape.w2);
    const { scale, shift: zShift, zChannels } = vae.config;
    for (let i = 0; i < z.length; i++) z[i] = z[i] / scale + zShift;
    const run = (x: Float32Array, h: number, w: number) => vae.decode(x, h, w);
    const grid = await this.vaeGrid();
    const decoded = useTiling(tiling, width, height, grid) ? await decodeTiled(run, z, zChannels, shape.h2, shape.w2, grid, job.onTile) : await run(z, shape.h2, shape.w2);
    assertFinite(decoded, 'VAE', this.files.vae, 'while decoding');
    if (job.mode === 'sequential' && !keepVae) await this.unload(['vae']);
    return latentsToImage(decoded, height, width);
  }

  /**
   * The VAE's tiles: on a GPU whose memory is known (the user's gpuMemory, else what the GPU
   * reports, system/gpuMemory.ts) and too small for a 1024² tile, smaller ones (tileGridFor); 1024² otherwise.
   */
  private async vaeGrid(): Promise<TileGrid> {
    const ep = this.epUsed.get('vae')?.ep;
    if (!ep || ep === 'cpu') return VAE_TILES;
    const memory = await plannedGpuMemory(this.runtime.gpuMemory);
    // A tenth kept for the provider's context and the VAE's own weights.
    const grid = tileGridFor(memory === undefined ? undefined : 0.9 * memory);
    if (grid !== VAE_TILES) this.log('info', `vae: ${grid.tile * VAE_SCALE}-pixel tiles: a 1024² VAE run needs about ${formatBytes(1024 ** 2 * VAE_GPU_BYTES_PER_PIXEL)} of GPU memory, ${formatBytes(memory!)} is there`);
    return grid;
  }

  /** Pixels [1, 3, H, W] in [-1, 1] → encoder mean (tiled for large images) → the packed image latents. */
  private async encode(job: Job, pixels: Float32Array, width: number, height: number, tiling: VaeTilingMode): Promise<Float32Array> {
    const shape = latentShape(width, height);
    const encoder = await this.ensureEncoder(job.hooks.onLoad);
    const run = (x: Float32Array, h: number, w: number) => encoder.encodeMean(x, h, w);
    const grid = await this.vaeGrid();
    const mean = useTiling(tiling, width, height, grid) ? await encodeTiled(run, pixels, height, width, encoder.config.zChannels, grid, job.onTile) : await run(pixels, height, width);
    assertFinite(mean, 'VAE', this.files.vae, 'while encoding the image');
    if (job.mode === 'sequential') await this.unload(['vae']);
    return imageLatents(mean, shape.h2, shape.w2, encoder.config);
  }

  /**
   * The hires pass's start: the first pass's latents at `size`. 'image' decodes, resizes with
   * Lanczos and encodes again; 'latent' resizes the latents bilinearly (no VAE).
   */
  private async upscale(job: Job, latents: Float32Array, from: Size, size: Size, how: ResolvedHires['upscale'], tiling: VaeTilingMode): Promise<Float32Array> {
    const a = latentShape(from.width, from.height);
    const b = latentShape(size.width, size.height);
    if (how === 'latent') return packLatents(upscaleLatents(unpackLatents(latents, a.h2, a.w2), LATENT_CHANNELS, a.h2, a.w2, b.h2, b.w2), b.h2, b.w2);
    const image = await this.decode(job, latents, from.width, from.height, tiling, true);
    job.check();
    const pixels = await resizeForEncoder(image, from.width, from.height, size.width, size.height);
    return this.encode(job, pixels, size.width, size.height, tiling);
  }

  /** The VAE's encoder: part of the `vae` component (loaded, reported and unloaded with it), only when a job has an image to encode. */
  private async ensureEncoder(onLoad?: LoadHook): Promise<VaeEncoder> {
    if (this.vaeEncoder) return this.vaeEncoder;
    onLoad?.('vae', 'load');
    const { ep, note } = await chooseEp('vae', this.runtime.stageEp?.vae ?? this.runtime.ep ?? 'auto', this.runtime.weights);
    this.epUsed.set('vae', { ep, note });
    this.checkFits('vae');
    const t0 = performance.now();
    try {
      this.vaeEncoder = await VaeEncoder.load(this.files.vae, { ep, compute: computeFor('vae', ep, this.runtime.compute), threads: this.runtime.threads });
    } catch (e) {
      throw explainLoadFailure('vae', e, () => this.files.residentBytes(this.runtime.weights, 'vae'), this.runtime.cacheDir ?? defaultCacheDir(), this.files.vae);
    }
    onLoad?.('vae', 'loaded');
    this.log('info', `loaded the VAE encoder on ${ep} in ${((performance.now() - t0) / 1000).toFixed(2)} s (rss ${formatBytes(currentRss())})`);
    return this.vaeEncoder;
  }

  // A damaged tokenizer or scheduler file is the model's problem (the message names the file and
  // says to download it again), not a crash with a stack trace.
  private async tokenizers() {
    try {
      if (!this.clipTok) this.clipTok = await ClipTokenizer.fromFolder(this.files.tokenizer);
      if (!this.t5Tok) this.t5Tok = await T5Tokenizer.fromFolder(this.files.tokenizer2);
    } catch (e) {
      throw e instanceof UserError ? e : new ModelError(errorText(e), (e as Error).stack);
    }
    return { clip: this.clipTok, t5: this.t5Tok };
  }

  private async schedulerConfig(): Promise<SchedulerConfig> {
    try {
      // No scheduler folder: FLUX.1's defaults (not a scheduler/ folder under the server's working directory).
      if (!this.scheduler) this.scheduler = this.files.scheduler ? await readSchedulerConfig(this.files.scheduler) : { ...DEFAULT_SCHEDULER_CONFIG };
    } catch (e) {
      throw e instanceof UserError ? e : new ModelError(errorText(e), (e as Error).stack);
    }
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

  /** WebGPU: the attention form the GPU's memory allows at the tokens the DiT is built for (loading.ditAttentionFor); elsewhere the provider's. */
  private ditAttention(ep: ExecutionProvider, log = true): DitAttention | undefined {
    if (ep !== 'webgpu' || this.runtime.ditTuning?.attention) return undefined;
    // The job's resolved mode: resident keeps the text encoders and the VAE on the GPU beside the DiT.
    const gpu = this.ditGpu && this.ditGpu.alone - (this.running?.mode === 'resident' ? this.ditGpu.others : 0);
    // A DiT loaded before any job (a preload) is planned for 1024².
    const tokens = this.ditTokens || PLANNED_DIT_TOKENS;
    // The job's LoRA factors sit beside the weights (a rank-32 LoRA on every Linear: ≈ 0.6 GiB), and
    // a loaded DiT that is not rebuilt for the job keeps those of LoRAs it no longer uses.
    const wanted = this.loras.ditLoadLoras();
    const dit = this.parts.dit;
    const loras = Math.max(loraFactorBytes(wanted, loraGraphOptions(this.runtime.ditTuning ?? {}, opChoicesFor(ep), computeFor('dit', ep, this.runtime.compute), this.runtime.weights)), dit && !dit.rebuildsFor(wanted) ? dit.loraBytes : 0);
    const a = ditAttentionFor(gpu, this.files.residentBytes(this.runtime.weights, 'dit') + loras, ditArchitecture(this.files), tokens, this.runtime.weights);
    if (a.note && log) this.log('info', `dit: ${a.note}`);
    return a.form;
  }

  private async ensure<C extends ComponentName>(c: C, onLoad?: LoadHook): Promise<Parts[C]> {
    const have = this.parts[c];
    if (have) return have as Parts[C];
    onLoad?.(c, 'load');
    const { ep, note } = await chooseEp(c, this.runtime.stageEp?.[c] ?? this.runtime.ep ?? 'auto', this.runtime.weights);
    // Once per process and reason: the four parts asking for a provider that is missing say it once, not four times.
    const reason = note?.replace(/^(clip|t5|dit|vae): /, '');
    if (note && reason && !this.notesLogged.has(reason)) {
      this.notesLogged.add(reason);
      this.log(ep === 'cpu' && (this.runtime.stageEp?.[c] ?? this.runtime.ep ?? 'auto') === 'auto' ? 'info' : 'warn', note);
    }
    this.epUsed.set(c, { ep, note });
    const modelPath = { clip: this.files.textEncoder, t5: this.files.textEncoder2, dit: this.files.transformer, vae: this.files.vae }[c];
    const failed = (e: unknown) => explainLoadFailure(c, e, () => this.files.residentBytes(this.runtime.weights, c), this.runtime.cacheDir ?? defaultCacheDir(), modelPath);
    // The fit check reads the checkpoint's header: the first to see a file gone since the last job.
    try {
      this.checkFits(c);
    } catch (e) {
      throw failed(e);
    }
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
          part = await ClipEncoder.load(this.files.textEncoder, { ...common, format: textFormat, fp16Cache: true, ...this.loras.clipOptions((n) => this.running?.warn(n)) });
          break;
        case 't5':
          part = await T5Encoder.load(this.files.textEncoder2, { ...common, format: textFormat, fp16Cache: true, maxLength: this.t5Tokens });
          break;
        case 'dit':
          this.ditChunks = this.runtime.ditTuning?.attentionChunks ?? attentionChunksFor(ep, this.ditTokens);
          this.log('info', `dit: built for up to ${this.ditTokens} tokens, attention in ${this.ditChunks} query piece${this.ditChunks === 1 ? '' : 's'}`);
          this.ditForm = this.ditAttention(ep);
          part = await FluxTransformer.load(this.files.transformer, { ...common, attentionChunks: this.ditChunks, ...this.runtime.ditTuning, ...(this.ditForm ? { attention: this.ditForm } : {}), format: this.runtime.weights, textTokens: this.ditTextTokens, loras: this.loras.ditLoadLoras() });
          for (const n of part.notes) this.log('info', `dit: ${n}`);
          break;
        default:
          part = await VaeDecoder.load(this.files.vae, common);
      }
    } catch (e) {
      throw failed(e);
    }
    this.parts[c] = part as Parts[C];
    onLoad?.(c, 'loaded');
    this.log('info', `loaded ${c} on ${ep} in ${((performance.now() - t0) / 1000).toFixed(2)} s (rss ${formatBytes(currentRss())})`);
    return part as Parts[C];
  }
}

type Size = { width: number; height: number };
type ResolvedHires = NonNullable<ResolvedParams['hires']>;
type VaeTilingMode = ResolvedParams['vaeTiling'];
