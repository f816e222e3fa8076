// What one generate() call's stages share: its stages (timed, reported), its notes and the cancel
// check, and the shapes a prompt's embedding and a denoising pass come in.

import { CancelledError, ComponentName, ExecutionProvider, GenerateHooks, MemoryMode, Stage, StageTiming } from '../../shared/api';
import { formatBytes } from '../../shared/bytes';
import { RssSampler } from '../system/processMemory';

export interface PromptEmbedding {
  pooled: Float32Array;
  hidden: Float32Array;
  tokens: number;
}

/** One generate() call: what its stages share. */
export interface Job {
  hooks: GenerateHooks;
  mode: Exclude<MemoryMode, 'auto'>;
  stages: StageTiming[];
  notes: string[];
  /** The notes the user is shown with the image (GenerateResult.warnings); warn() adds to both. */
  warnings: string[];
  warn(note: string): void;
  check(): void;
  /** Before each VAE tile: the hook, then the cancel check. */
  onTile(done: number, total: number): void;
  stage<T>(name: Stage, fn: () => Promise<T>, ep?: ComponentName): Promise<T>;
}

/** One denoising pass: the schedule's steps from `from` on, at width×height. */
export interface DenoisePass {
  width: number;
  height: number;
  guidance: number;
  sigmas: Float32Array;
  from: number;
  /** Steps of earlier passes, and of the whole job (progress continues across passes). */
  stepsBefore: number;
  totalSteps: number;
  /** Text + image tokens of the job's largest pass (the DiT's attention is built for it). */
  maxTokens: number;
  /** Sequential memory mode: keep the DiT loaded for a next pass that needs nothing else in between. */
  keepDit?: boolean;
}

/** A job's bookkeeping; `epOf` says where a component ran, for the stage timings. */
export function newJob(hooks: GenerateHooks, mode: Exclude<MemoryMode, 'auto'>, epOf: (c: ComponentName) => ExecutionProvider | undefined): Job {
    const stages: StageTiming[] = [];
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
        stages.push({ stage: name, seconds, peakRss, ...(ep && epOf(ep) ? { ep: epOf(ep) } : {}) });
        hooks.onStage?.(name, 'end', `${seconds.toFixed(2)} s, peak ${formatBytes(peakRss)}`);
      }
    };
    const onTile = (done: number, total: number) => {
      hooks.onTile?.(done, total);
      check();
    };
  const notes: string[] = [];
  const warnings: string[] = [];
  const warn = (note: string) => {
    notes.push(note);
    warnings.push(note);
  };
  return { hooks, mode, stages, notes, warnings, warn, check, stage, onTile };
}
