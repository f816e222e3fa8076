// Execution-provider choice: what this platform's onnxruntime-node can run, and the fallback
// order for `auto`, each fallback with a reason the user can act on.

import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as ort from 'onnxruntime-node';
import { ComponentName, EpChoice, ExecutionProvider, WeightFormat } from './api';
import { gib } from './memory';

export interface EpDecision {
  ep: ExecutionProvider;
  /** Why this EP and not the one asked for, when they differ. */
  note?: string;
}

/** Folder of onnxruntime-node's native binaries for this platform. */
function ortBinDir(): string {
  const pkg = path.dirname(require.resolve('onnxruntime-node/package.json'));
  return path.join(pkg, 'bin', 'napi-v6', process.platform, process.arch);
}

export function cudaInstalled(): boolean {
  if (process.platform !== 'linux' || process.arch !== 'x64') return false;
  try {
    return fs.readdirSync(ortBinDir()).some((f) => f.startsWith('libonnxruntime_providers_cuda'));
  } catch {
    return false;
  }
}

/**
 * How to get the CUDA provider, with the command spelled out for this installation (the extension's
 * own copy of onnxruntime-node, or the CLI's): its installer downloads the CUDA 12 build from NuGet.
 */
export function cudaInstallHint(): string {
  if (process.platform !== 'linux' || process.arch !== 'x64') {
    return `onnxruntime-node has no CUDA provider for ${process.platform}-${process.arch}: use ${process.platform === 'win32' ? 'dml or webgpu' : process.platform === 'darwin' ? 'coreml or webgpu' : 'webgpu'}, or cpu`;
  }
  const script = path.join(path.dirname(require.resolve('onnxruntime-node/package.json')), 'script', 'install.js');
  return `the CUDA provider is not installed. With network access run: node "${script}" --onnxruntime-node-install=cuda12 (downloads onnxruntime's CUDA 12 build; the machine needs the CUDA 12 runtime and cuDNN 9), then restart the server; or set the execution provider to webgpu or cpu`;
}

export function available(): Set<ExecutionProvider> {
  const names = new Set(ort.listSupportedBackends().map((b) => b.name));
  const out = new Set<ExecutionProvider>(['cpu']);
  if (names.has('webgpu')) out.add('webgpu');
  if (names.has('dml')) out.add('dml');
  if (names.has('coreml')) out.add('coreml');
  if (cudaInstalled()) out.add('cuda');
  return out;
}

/** Pick an EP for one component. `auto` prefers CUDA, then DirectML/CoreML, then CPU. */
export async function chooseEp(component: ComponentName, choice: EpChoice, weights: WeightFormat): Promise<EpDecision> {
  const have = available();
  if (choice !== 'auto') {
    if (have.has(choice)) return { ep: choice };
    const why = choice === 'cuda' ? cudaInstallHint() : `${choice} is not available in onnxruntime-node on ${process.platform}-${process.arch}`;
    return { ep: 'cpu', note: `${component}: ${why}; using cpu` };
  }
  if (have.has('cuda')) return { ep: 'cuda' };
  if (have.has('dml')) return { ep: 'dml', note: weights === 'fp8' ? `${component}: DirectML has no float8 DequantizeLinear (weights int8 or fp16 run there)` : undefined };
  if (have.has('coreml')) return { ep: 'coreml' };
  const reasons = process.platform === 'linux' && process.arch === 'x64' ? `cuda not used: ${cudaInstallHint()}` : 'no GPU provider in this build';
  return { ep: 'cpu', note: `running on cpu (${reasons})` };
}

export interface WeightDecision {
  format: WeightFormat;
  /** Why, for the log. */
  reason: string;
}

/** Providers whose float8 DequantizeLinear keeps the weights at 1 byte (docs: onnxruntime facts). */
const FP8_EPS: ReadonlySet<ExecutionProvider> = new Set(['cpu', 'cuda']);

/**
 * The DiT weight format for `weights: auto`. CPU and CUDA: fp8. Others (WebGPU, DirectML, CoreML)
 * have no float8 DequantizeLinear that stays small: fp16 if it fits `budget` bytes of GPU memory,
 * else int8, else int4 (MatMulNBits). `bytesFor` gives the DiT's resident size in a format.
 */
export function chooseWeights(ep: ExecutionProvider, bytesFor: (f: WeightFormat) => number, budget: number | undefined): WeightDecision {
  if (FP8_EPS.has(ep)) return { format: 'fp8', reason: `${ep} keeps float8 weights at 1 byte (DequantizeLinear per layer)` };
  const none = `${ep} has no float8 DequantizeLinear`;
  if (budget === undefined) {
    return { format: 'int8', reason: `${none}, and its free memory is unknown: int8 (MatMulNBits, ${gib(bytesFor('int8'))}); set gpuMemoryBudget to allow fp16 (${gib(bytesFor('fp16'))})` };
  }
  for (const f of ['fp16', 'int8', 'int4'] as const) {
    if (bytesFor(f) <= budget) {
      const larger = f === 'fp16' ? '' : `; fp16 needs ${gib(bytesFor('fp16'))}${f === 'int4' ? `, int8 ${gib(bytesFor('int8'))}` : ''}`;
      return { format: f, reason: `${none}: ${f} takes ${gib(bytesFor(f))} of the ${gib(budget)} GPU memory budget${larger}` };
    }
  }
  return { format: 'int4', reason: `${none}: even int4 (${gib(bytesFor('int4'))}) exceeds the ${gib(budget)} GPU memory budget; expect an allocation failure` };
}

/** Free memory of the first NVIDIA GPU (nvidia-smi), bytes; undefined where it can't be read. */
export function nvidiaFreeMemory(): number | undefined {
  try {
    const out = execFileSync('nvidia-smi', ['--query-gpu=memory.free', '--format=csv,noheader,nounits'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'], timeout: 5000 });
    const mib = Number(out.split('\n')[0]);
    return Number.isFinite(mib) ? mib * 2 ** 20 : undefined;
  } catch {
    return undefined;
  }
}
