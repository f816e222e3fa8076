// The FLUX.1 transformer at run time: the graph of dit.ts built from a checkpoint (the weight
// cache filled first where its format needs one), an onnxruntime session made from it, and the
// per-generation feeds (RoPE tables, text, timestep, guidance, LoRA strengths).

import * as ort from 'onnxruntime-node';
import { UserError } from '../../shared/api';
import { createSession, ExecutionProvider, GpuBufferCache, SessionOptions } from '../onnx/session';
import { opChoicesFor, weightFormatProblem } from '../onnx/providerOps';
import { DitComponent, openComponent } from '../formats/layouts/components';
import { DitConfig } from '../formats/layouts/configs';
import { DitWeights } from '../formats/layouts/ditWeights';
import { ggufNotes } from '../formats/gguf';
import { loraFactorBytes, loraGraphOptions, LoraKey, loraSlots, strengthFeeds, WeightedBranches } from './ditLora';
import { buildDit, DEFAULT_TEXT_TOKENS, DitBuildOptions, ditLinearShapes, prefillDit, ropeTables } from './dit';

export interface FluxTransformerOptions extends DitBuildOptions {
  ep?: ExecutionProvider;
  gpuBufferCache?: GpuBufferCache;
  threads?: number;
  /** Write the optimized graph here (debugging). */
  optimizedModelPath?: string;
  /** onnxruntime's graph optimization level (benchmarks; default 'all'). */
  optimization?: SessionOptions['optimization'];
}

/** Where a DiT load's time went, seconds: the weight cache checked or filled, the graph built, the session created. */
export interface DitLoadTimings {
  prefill: number;
  build: number;
  session: number;
}

/** What stays the same over the steps of one generation. */
export interface DitConditioning {
  /** T5 hidden states [m, context_in_dim]. */
  txt: Float32Array;
  /** Pooled CLIP [vec_in_dim]. */
  vec: Float32Array;
  /** [n, 3] (0, row, col) and [m, 3] (zeros), one row per token. */
  imgIds: ArrayLike<number>;
  txtIds: ArrayLike<number>;
}

export interface DitInputs extends DitConditioning {
  /** Packed latents [n, in_channels]. */
  img: Float32Array;
  /** Sigma in [0, 1]. */
  timestep: number;
  guidance?: number;
}

/** The DiT bound to one generation's conditioning: RoPE tables and text tensors are made once. */
export interface PreparedDit {
  /** Velocity [n, out_channels] for packed latents [n, in_channels] at sigma `timestep`. */
  forward(img: Float32Array, timestep: number, guidance?: number): Promise<Float32Array>;
}

export class FluxTransformer {
  private last?: { key: DitConditioning; prepared: PreparedDit };

  /** `textTokens`: the text length a graph with constant Slice bounds was built for (CoreML). */
  /** Where the last build's time went: load(), then each rebuild (setLoras). */
  loadTimings?: DitLoadTimings;
  /** How a GGUF file's quantized weights are run (for the log); empty for other files. */
  notes: string[] = [];

  /** The LoRAs the session was built with (one strength input each) and the strengths fed to every run; undefined without branches. */
  private lora?: { built: LoraKey[]; feeds: Record<string, ort.Tensor> };
  /** Sessions built by this object: 1 after load, one more per rebuild (setLoras). */
  sessionBuilds = 1;
  /** Bytes of the LoRA factors the session holds beside the weights (those at strength 0 too, until a rebuild drops them). */
  loraBytes = 0;

  private constructor(
    private session: ort.InferenceSession, readonly config: DitConfig, readonly textTokens: number | undefined,
    /** Every BFL Linear's [out, in]: LoRAs are mapped and checked against these. */
    readonly linearShapes: Map<string, [number, number]>,
    /** Builds the session again, from the same checkpoint and options, with these LoRAs' branches. */
    private readonly rebuild: (loras: readonly WeightedBranches[]) => Promise<{ session: ort.InferenceSession; timings: DitLoadTimings; loraBytes: number }>,
  ) {}

  /**
   * `source`: a DiT checkpoint path (BFL single file, with or without `model.diffusion_model.`, or a
   * diffusers `transformer/` folder), an opened DitComponent, or DitWeights. `config` defaults to
   * the component's (sidecar/config.json, else measured from shapes).
   */
  static async load(source: string | DitComponent | DitWeights, opts: FluxTransformerOptions): Promise<FluxTransformer>;
  static async load(source: string | DitComponent | DitWeights, config: DitConfig | undefined, opts: FluxTransformerOptions): Promise<FluxTransformer>;
  static async load(source: string | DitComponent | DitWeights, a: DitConfig | FluxTransformerOptions | undefined, b?: FluxTransformerOptions): Promise<FluxTransformer> {
    const given = (b ?? a) as FluxTransformerOptions;
    const ep = given.ep ?? 'cpu';
    const opsFor = given.opsFor ?? ep;
    const textTokens = opChoicesFor(opsFor).staticTextLength ? given.textTokens ?? DEFAULT_TEXT_TOKENS : undefined;
    const opts: FluxTransformerOptions = { ...given, opsFor, textTokens };
    // A format the provider cannot hold would be decoded on the CPU provider every step: say so instead.
    const problem = weightFormatProblem(opsFor, opts.format);
    if (problem) throw new UserError(problem);
    const component = typeof source === 'string' ? openComponent(source, 'dit') : source instanceof DitWeights ? undefined : source;
    const weights = source instanceof DitWeights ? source : component!.weights;
    const config = (b ? (a as DitConfig | undefined) : undefined) ?? component?.config;
    if (!config) throw new Error('FluxTransformer.load: DitWeights need a DitConfig');
    const create = async (from: DitWeights, loras: readonly WeightedBranches[]) => {
      const t0 = performance.now();
      await prefillDit(from, config, opts);
      const t1 = performance.now();
      const { graph, weights: w } = buildDit(from, config, { ...opts, loras });
      const folder = w.folder();
      const t2 = performance.now();
      const session = await createSession(graph, { ep: opts.ep, weightsFolder: folder, intraOpThreads: opts.threads, optimizedModelPath: opts.optimizedModelPath, gpuBufferCache: opts.gpuBufferCache, optimization: opts.optimization });
      const loraBytes = loraFactorBytes(loras, loraGraphOptions(opts, opChoicesFor(opsFor), opts.compute ?? 'float32', opts.format));
      return { session, timings: { prefill: (t1 - t0) / 1000, build: (t2 - t1) / 1000, session: (performance.now() - t2) / 1000 }, loraBytes };
    };
    // A checkpoint opened here is opened again for a rebuild (onnxruntime maps the files itself meanwhile).
    const rebuild = async (loras: readonly WeightedBranches[]) => {
      const again = typeof source === 'string' ? openComponent(source, 'dit').weights : weights;
      try {
        return await create(again, loras);
      } finally {
        if (typeof source === 'string') again.tensors.close();
      }
    };
    try {
      const loras = opts.loras ?? [];
      const { session, timings, loraBytes } = await create(weights, loras);
      const dit = new FluxTransformer(session, config, textTokens, ditLinearShapes(weights, config), rebuild);
      dit.useBuilt(loras);
      dit.loadTimings = timings;
      dit.loraBytes = loraBytes;
      dit.notes = ggufNotes(weights.tensors);
      return dit;
    } finally {
      // onnxruntime maps the files itself; a checkpoint opened here is not needed any more.
      if (typeof source === 'string') weights.tensors.close();
    }
  }

  /** Whether the session has LoRA branches (built by a setLoras that added a LoRA, or by load's `loras`). */
  get hasLoraBranches(): boolean {
    return this.lora !== undefined;
  }

  /** After a build with `loras`: remember its slots and feed their strengths. */
  private useBuilt(loras: readonly WeightedBranches[]): void {
    const built = loraSlots(loras).map((s) => s.key);
    this.lora = built.length ? { built, feeds: strengthFeeds(built, loras) } : undefined;
  }

  /** Whether setLoras(loras) builds the session again (a LoRA it was not built with), rather than feeding strengths. */
  rebuildsFor(loras: readonly WeightedBranches[]): boolean {
    const built = this.lora?.built ?? [];
    return !loraSlots(loras).every((w) => built.includes(w.key));
  }

  /**
   * Applies these LoRAs (branches from formats/loraDit.ts ditLora, with strengths and the file's
   * id) from the next step on, replacing any set before. LoRAs the session was built with take
   * new strengths as feeds, and one left out is fed 0 (its branch adds exactly nothing): no
   * rebuild, also when all are removed. A LoRA the session was not built with builds it again,
   * once, with exactly the LoRAs given (leftovers at strength 0 dropped); the base weights are not
   * converted again (the cache is complete) and the LoRA factors never enter that cache.
   */
  async setLoras(loras: readonly WeightedBranches[]): Promise<void> {
    if (!this.rebuildsFor(loras)) {
      if (this.lora) this.lora.feeds = strengthFeeds(this.lora.built, loras);
      return;
    }
    // Released first: two sessions of a FLUX.1 DiT at once would not fit where one just does.
    this.lora = undefined;
    await this.session.release();
    const { session, timings, loraBytes } = await this.rebuild(loras);
    this.session = session;
    this.loadTimings = timings;
    this.loraBytes = loraBytes;
    this.sessionBuilds++;
    this.useBuilt(loras);
  }

  /** Binds one generation's conditioning; call forward() on the result each step. */
  prepare(c: DitConditioning): PreparedDit {
    const p = this.config;
    const m = c.txt.length / p.context_in_dim;
    const n = c.imgIds.length / p.axes_dim.length;
    const pe = ropeTables([...Array.from(c.txtIds), ...Array.from(c.imgIds)], p.axes_dim, p.theta);
    if (pe.length !== m + n || !Number.isInteger(m)) throw new Error(`DiT: ${c.txtIds.length / p.axes_dim.length} text ids for ${m} text tokens`);
    if (this.textTokens !== undefined && m !== this.textTokens) throw new Error(`DiT: this graph was built for ${this.textTokens} text tokens (constant slice bounds for the provider), got ${m}: use t5MaxLength ${this.textTokens}`);
    const half = pe.cos.length / pe.length;
    const fixed: Record<string, ort.Tensor> = {
      txt: new ort.Tensor('float32', c.txt, [1, m, p.context_in_dim]),
      vec: new ort.Tensor('float32', c.vec, [1, p.vec_in_dim]),
      pe_cos: new ort.Tensor('float32', pe.cos, [pe.length, half]),
      pe_sin: new ort.Tensor('float32', pe.sin, [pe.length, half]),
    };
    return {
      forward: async (img, timestep, guidance) => {
        if (img.length !== n * p.in_channels) throw new Error(`DiT: latents hold ${img.length / p.in_channels} tokens, the image ids ${n}`);
        const feeds: Record<string, ort.Tensor> = {
          ...fixed,
          img: new ort.Tensor('float32', img, [1, n, p.in_channels]),
          timestep: new ort.Tensor('float32', Float32Array.of(timestep), [1]),
        };
        if (p.guidance_embed) {
          if (guidance === undefined) throw new Error('this DiT is guidance-distilled (FLUX.1-dev type): pass a guidance value');
          feeds.guidance = new ort.Tensor('float32', Float32Array.of(guidance), [1]);
        }
        const out = await this.session.run(this.lora ? { ...feeds, ...this.lora.feeds } : feeds);
        return out.out.data as Float32Array;
      },
    };
  }

  /** One step with everything given; the conditioning is prepared again only when it changes. */
  forward(x: DitInputs): Promise<Float32Array> {
    let last = this.last;
    const k = last?.key;
    if (!last || !k || k.txt !== x.txt || k.vec !== x.vec || !sameValues(k.imgIds, x.imgIds) || !sameValues(k.txtIds, x.txtIds)) {
      last = this.last = { key: { txt: x.txt, vec: x.vec, imgIds: Array.from(x.imgIds), txtIds: Array.from(x.txtIds) }, prepared: this.prepare(x) };
    }
    return last.prepared.forward(x.img, x.timestep, x.guidance);
  }

  async release(): Promise<void> {
    this.last = undefined;
    if (process.env.MAJICFLUX_ORT_PROFILE) this.session.endProfiling();
    await this.session.release();
  }
}

function sameValues(a: ArrayLike<number>, b: ArrayLike<number>): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}
