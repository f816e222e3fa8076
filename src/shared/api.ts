// The pipeline's public surface: what a generation takes and gives back. The server, the CLI and
// (through protocol.ts) the extension use these types. A generation's parameters and an image's
// metadata are params.ts's.

import type { ImageMetadata } from './params';

/**
 * How the DiT's Linear weights are held: fp8 (DequantizeLinear, CPU/CUDA), fp16/fp32 resident,
 * int8/int4 blocks for com.microsoft.MatMulNBits (GPUs without an fp8 DequantizeLinear).
 */
export const WEIGHT_FORMATS = ['fp8', 'fp16', 'fp32', 'int8', 'int4'] as const;
export type WeightFormat = (typeof WEIGHT_FORMATS)[number];
/** `auto`: fp8 on CPU/CUDA, int8 on WebGPU, fp16 on CoreML, by GPU memory on DirectML (providers.chooseWeights). */
export type WeightChoice = WeightFormat | 'auto';
export const WEIGHT_CHOICES: readonly WeightChoice[] = ['auto', ...WEIGHT_FORMATS];
/** Element type of activations. */
export type ComputeType = 'float32' | 'float16';
export const EXECUTION_PROVIDERS = ['cpu', 'webgpu', 'cuda', 'dml', 'coreml'] as const;
export type ExecutionProvider = (typeof EXECUTION_PROVIDERS)[number];
export const EP_CHOICES = ['auto', ...EXECUTION_PROVIDERS] as const;
export type EpChoice = (typeof EP_CHOICES)[number];
export const MEMORY_MODES = ['auto', 'sequential', 'resident'] as const;
export type MemoryMode = (typeof MEMORY_MODES)[number];
/** `encode`: an input image (image-to-image), or a hires pass's first result, made latents. */
export type Stage = 'load' | 'text' | 'encode' | 'denoise' | 'decode' | 'save';
/** The pipeline's parts, in the order a generation runs them. */
export const COMPONENTS = ['clip', 't5', 'dit', 'vae'] as const;
export type ComponentName = (typeof COMPONENTS)[number];

/** Where the model's parts are. `dir` is a FLUX.1-dev-style folder; the others override its parts. */
export interface ModelSpec {
  dir?: string;
  /** A single-file DiT (e.g. majicflus_v134.safetensors) used instead of dir/transformer. */
  transformer?: string;
  vae?: string;
  textEncoder?: string;
  textEncoder2?: string;
  tokenizer?: string;
  tokenizer2?: string;
  /** A name for the metadata (defaults to the transformer file or folder name). */
  name?: string;
  /**
   * The bundled demo model (random weights), kept under this folder: the server writes its weights
   * there on first use, in its own process, and fills in the paths above.
   */
  demo?: string;
}

export interface RuntimeOptions {
  weights?: WeightChoice;
  /** Activation type for the DiT, CLIP and VAE (T5 stays float32); `auto`: float16 on GPU providers, float32 on CPU. */
  compute?: ComputeType | 'auto';
  /** GPU memory the DiT's weights may take, bytes, for `weights: auto` (default: measured free memory). */
  gpuMemoryBudget?: number;
  /** The GPU's memory, bytes, when nvidia-smi cannot tell (AMD, Intel, Apple): `weights: auto` plans within it. */
  gpuMemory?: number;
  ep?: EpChoice;
  /** Per-stage execution provider, overriding `ep`. */
  stageEp?: Partial<Record<ComponentName, EpChoice>>;
  memory?: MemoryMode;
  /** RAM in bytes that memory `auto` may plan with (default: 80 % of what is available now). */
  memoryBudget?: number;
  /** Folder for converted-weight caches. */
  cacheDir?: string;
  /** Disk the weight caches may take, bytes: past it the least recently used are removed after a load. */
  cacheMaxBytes?: number;
  threads?: number;
  /** Benchmarks and error studies only: the DiT's per-provider kernel choices (OpChoices) overridden. */
  ditTuning?: DitTuning;
}

export interface DitTuning {
  nbitsBlock?: number;
  int8Activations?: boolean;
  attention?: 'fused' | 'matmul';
  attentionChunks?: number;
  /** int8/int4: the bias as MatMulNBits' input rather than an Add (OpChoices.nbitsBias). */
  nbitsBias?: boolean;
  /** LoRA branches' down-projection, or both products, as 8-bit MatMulNBits (OpChoices.loraNbits). */
  loraNbits?: false | 'down' | 'both';
  /** LoRA down-projections as one product S times wider (OpChoices.loraSplit; 1: off). */
  loraSplit?: number;
  /** A float LoRA branch's up-projection and its add onto the base output as one Gemm (OpChoices.loraGemm). */
  loraGemm?: boolean;
  /** Tensors up to this many bytes are inlined instead of stored in the weight format (0: every Linear is). */
  inlineLimit?: number;
  /** How fp8 weights are decoded at run time (OpChoices.fp8Decode; WeightOptions.fp8Decode says what each does). */
  fp8Decode?: 'dequantize' | 'lookup' | 'words' | 'gather';
}

export interface StepProgress {
  step: number;
  steps: number;
  /** Low-resolution RGB preview of the current latent. */
  preview?: { width: number; height: number; rgb: Uint8Array };
  /** The packed latent after this step (live buffer: copy it to keep it). */
  latents: Float32Array;
}

export interface StageTiming {
  stage: Stage;
  seconds: number;
  /** Peak resident memory of the process during the stage, bytes. */
  peakRss: number;
  ep?: ExecutionProvider;
}

export interface GenerateResult {
  seed: number;
  /** Final image, [height, width, 3] in [0, 1]. */
  image: Float32Array;
  width: number;
  height: number;
  stages: StageTiming[];
  /** Everything needed to reproduce the image; embedded in the PNG. */
  metadata: ImageMetadata;
  notes: string[];
  /**
   * The notes a user should see with the image (a subset of `notes`): something asked for did not
   * apply as asked — a LoRA's layers skipped, a negative prompt unused, an input image scaled down.
   */
  warnings: string[];
}

/**
 * Loading a model part during a job: `load` (reading it, building its session), `prepare` (first
 * use of a weight format: converting the weights into the cache, with the fraction done; `load`
 * again once converted), `lora` (the DiT loaded, built again with a LoRA it did not have: about a
 * load's time on a GPU), then `loaded`.
 */
export const LOAD_PHASES = ['load', 'prepare', 'lora', 'loaded'] as const;
export type LoadPhase = (typeof LOAD_PHASES)[number];

export interface GenerateHooks {
  onStage?(stage: Stage, state: 'start' | 'end', detail?: string): void;
  /** A part is loaded for this job (inside the stage that needs it); `fraction` (0–1) with `prepare`. */
  onLoad?(component: ComponentName, phase: LoadPhase, fraction?: number): void;
  onStep?(p: StepProgress): void;
  /** Before each tile of a tiled VAE decode or encode (`done` of `total`): a cancel is noticed here too. */
  onTile?(done: number, total: number): void;
  /** Compute a latent preview for onStep (costs a little per step). */
  wantPreview?: boolean;
  signal?: AbortSignal;
}

export class CancelledError extends Error {
  constructor() {
    super('generation cancelled');
    this.name = 'CancelledError';
  }
}

/** What went wrong, as text, whatever was thrown. */
export function errorText(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}

/** An error meant for the user: `message` says what happened and what to do; `detail` goes to the log. */
export class UserError extends Error {
  constructor(message: string, readonly detail?: string) {
    super(message);
    this.name = 'UserError';
  }
}

/** A UserError about the configured model itself (folder not found, parts missing): the fix is in the model settings. */
export class ModelError extends UserError {
  constructor(message: string, detail?: string) {
    super(message, detail);
    this.name = 'ModelError';
  }
}
