// Execution-provider choice: what this platform's onnxruntime-node can run, and the fallback
// order for `auto`, each fallback with a reason the user can act on.

import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as ort from 'onnxruntime-node';
import { ComponentName, EpChoice, ExecutionProvider, WeightFormat } from '../../shared/api';
import { formatBytes } from '../../shared/bytes';

export interface EpDecision {
  ep: ExecutionProvider;
  /** Why this EP and not the one asked for, when they differ. */
  note?: string;
}

/** The platform a decision is made for: this process's, or another in tests. */
export interface Host {
  platform: NodeJS.Platform;
  arch: string;
}
const THIS_HOST: Host = { platform: process.platform, arch: process.arch };

/** onnxruntime-node ships a CUDA provider (fetched by its installer) only for Linux x64. */
const cudaPossible = (host: Host) => host.platform === 'linux' && host.arch === 'x64';

/** Folder of onnxruntime-node's native binaries for a platform. */
function ortBinDir(host: Host): string {
  const pkg = path.dirname(require.resolve('onnxruntime-node/package.json'));
  return path.join(pkg, 'bin', 'napi-v6', host.platform, host.arch);
}

export function cudaInstalled(host: Host = THIS_HOST): boolean {
  if (!cudaPossible(host)) return false;
  try {
    return fs.readdirSync(ortBinDir(host)).some((f) => f.startsWith('libonnxruntime_providers_cuda'));
  } catch {
    return false;
  }
}

/** The GPU providers onnxruntime-node bundles for a platform, best first (none needs an install). */
export function bundledGpuProviders(host: Host): ExecutionProvider[] {
  if (host.platform === 'win32') return ['dml', 'webgpu'];
  if (host.platform === 'darwin') return ['coreml', 'webgpu'];
  return ['webgpu'];
}

/**
 * How to get the CUDA provider, with the command spelled out for this installation (the extension's
 * own copy of onnxruntime-node, or the CLI's): its installer downloads the CUDA 12 build from NuGet.
 * Where no CUDA build exists, the providers that do run there.
 */
export function cudaInstallHint(host: Host = THIS_HOST): string {
  if (!cudaPossible(host)) {
    return `onnxruntime-node has no CUDA provider for ${host.platform}-${host.arch}: use ${bundledGpuProviders(host).join(' or ')}, or cpu`;
  }
  const script = path.join(path.dirname(require.resolve('onnxruntime-node/package.json')), 'script', 'install.js');
  return `the CUDA provider is not installed. With network access run: node "${script}" --onnxruntime-node-install=cuda12 (downloads onnxruntime's CUDA 12 build; the machine needs the CUDA 12 runtime and cuDNN 9), then run again (in VS Code: MajicFLUX: Restart Server); or set the execution provider to webgpu or cpu`;
}

let nvidiaSeen: boolean | undefined;

/**
 * Whether this machine has an NVIDIA GPU with its driver loaded: the kernel driver's GPU list on
 * Linux, else nvidia-smi answering. Asked once per process, and only where the answer changes
 * what the user is told (the CUDA hint).
 */
export function nvidiaGpuPresent(probe: { procDir?: string; smi?: string } = {}): boolean {
  if (nvidiaSeen !== undefined && !probe.procDir && !probe.smi) return nvidiaSeen;
  let found = false;
  try {
    found = fs.readdirSync(probe.procDir ?? '/proc/driver/nvidia/gpus').length > 0;
  } catch {
    // no such folder: not Linux, or no NVIDIA kernel driver
  }
  // Else nvidia-smi answering with the GPU's memory (it fails without a driver).
  if (!found) found = nvidiaFreeMemory(probe.smi) !== undefined;
  if (!probe.procDir && !probe.smi) nvidiaSeen = found;
  return found;
}

export function available(host: Host = THIS_HOST): Set<ExecutionProvider> {
  const names = new Set(ort.listSupportedBackends().map((b) => b.name));
  const out = new Set<ExecutionProvider>(['cpu']);
  if (names.has('webgpu')) out.add('webgpu');
  if (names.has('dml')) out.add('dml');
  if (names.has('coreml')) out.add('coreml');
  if (cudaInstalled(host)) out.add('cuda');
  return out;
}

/** What chooseEp needs to know about the machine; tests give their own. */
export interface EpProbe {
  host: Host;
  available: () => Set<ExecutionProvider>;
  nvidia: () => boolean;
}
const THIS_MACHINE: EpProbe = { host: THIS_HOST, available: () => available(), nvidia: () => nvidiaGpuPresent() };

let cudaHintGiven = false;

/**
 * Pick an EP for one component. `auto` prefers CUDA, then DirectML/CoreML, then CPU. The CUDA
 * install hint comes with an `auto` fallback only where it helps: Linux x64 with an NVIDIA GPU, once
 * per process (not on every CPU-only machine, not once per component).
 */
export async function chooseEp(component: ComponentName, choice: EpChoice, weights: WeightFormat, probe: EpProbe = THIS_MACHINE): Promise<EpDecision> {
  const have = probe.available();
  if (choice !== 'auto') {
    if (have.has(choice)) return { ep: choice };
    const why = choice === 'cuda' ? cudaInstallHint(probe.host) : `${choice} is not available in onnxruntime-node on ${probe.host.platform}-${probe.host.arch}`;
    return { ep: 'cpu', note: `${component}: ${why}; using cpu` };
  }
  if (have.has('cuda')) return { ep: 'cuda' };
  if (have.has('dml')) return { ep: 'dml', note: weights === 'fp8' ? `${component}: DirectML has no float8 DequantizeLinear (weights int8 or fp16 run there)` : undefined };
  if (have.has('coreml')) return { ep: 'coreml' };
  const thisMachine = probe === THIS_MACHINE;
  if (!cudaPossible(probe.host) || (thisMachine && cudaHintGiven) || !probe.nvidia()) return { ep: 'cpu' };
  if (thisMachine) cudaHintGiven = true;
  return { ep: 'cpu', note: `running on cpu although an NVIDIA GPU is present: ${cudaInstallHint(probe.host)}` };
}

export interface WeightDecision {
  format: WeightFormat;
  /** Why, for the log. */
  reason: string;
}

/** Providers whose float8 DequantizeLinear keeps the weights at 1 byte (docs: onnxruntime facts). */
const FP8_EPS: ReadonlySet<ExecutionProvider> = new Set(['cpu', 'cuda']);

/**
 * The DiT weight format for `weights: auto`. CPU and CUDA: fp8. WebGPU: int8 (MatMulNBits in blocks
 * of 32), faster than fp16 there and 60 % of its memory (1024² on an H100: 1.23 against 2.71
 * s/step; its exact fp8 decode runs at 3.38, docs/BENCHMARKS.md), int4 when int8 does not fit.
 * DirectML (unmeasured): fp16 if it fits `budget` bytes of GPU memory, else int8, else int4.
 * CoreML: fp16, the one format it holds. `bytesFor` gives the DiT's resident size in a format.
 */
export function chooseWeights(ep: ExecutionProvider, bytesFor: (f: WeightFormat) => number, budget: number | undefined): WeightDecision {
  if (FP8_EPS.has(ep)) return { format: 'fp8', reason: `${ep} keeps float8 weights at 1 byte (DequantizeLinear per layer)` };
  // CoreML has neither float8 DequantizeLinear nor MatMulNBits (onnx/providerOps.ts): fp16 is the one format it holds.
  if (ep === 'coreml') return { format: 'fp16', reason: `coreml runs neither float8 DequantizeLinear nor MatMulNBits: fp16 (${formatBytes(bytesFor('fp16'))})${budget !== undefined && bytesFor('fp16') > budget ? `, over the ${formatBytes(budget)} GPU memory budget` : ''}` };
  const over = (f: WeightFormat) => budget !== undefined && bytesFor(f) > budget;
  if (ep === 'webgpu') {
    const why = `webgpu multiplies int8 blocks faster than fp16 and holds them in 60 % of the memory`;
    if (!over('int8')) return { format: 'int8', reason: `${why}: int8 (${formatBytes(bytesFor('int8'))}${budget !== undefined ? ` of the ${formatBytes(budget)} GPU memory budget` : ''}); fp8 (exact, slower) or fp16 on request` };
    if (!over('int4')) return { format: 'int4', reason: `${why}, but int8 (${formatBytes(bytesFor('int8'))}) exceeds the ${formatBytes(budget!)} GPU memory budget: int4 (${formatBytes(bytesFor('int4'))})` };
    return { format: 'int4', reason: `even int4 (${formatBytes(bytesFor('int4'))}) exceeds the ${formatBytes(budget!)} GPU memory budget; expect an allocation failure` };
  }
  const none = `${ep} has no float8 DequantizeLinear`;
  if (budget === undefined) {
    return { format: 'int8', reason: `${none}, and its free memory is unknown: int8 (MatMulNBits, ${formatBytes(bytesFor('int8'))}); set gpuMemoryBudget to allow fp16 (${formatBytes(bytesFor('fp16'))})` };
  }
  for (const f of ['fp16', 'int8', 'int4'] as const) {
    if (!over(f)) {
      const larger = f === 'fp16' ? '' : `; fp16 needs ${formatBytes(bytesFor('fp16'))}${f === 'int4' ? `, int8 ${formatBytes(bytesFor('int8'))}` : ''}`;
      return { format: f, reason: `${none}: ${f} takes ${formatBytes(bytesFor(f))} of the ${formatBytes(budget)} GPU memory budget${larger}` };
    }
  }
  return { format: 'int4', reason: `${none}: even int4 (${formatBytes(bytesFor('int4'))}) exceeds the ${formatBytes(budget)} GPU memory budget; expect an allocation failure` };
}

/** Free memory of the first NVIDIA GPU (nvidia-smi), bytes; undefined where it can't be read. */
export function nvidiaFreeMemory(command = 'nvidia-smi'): number | undefined {
  try {
    const out = execFileSync(command, ['--query-gpu=memory.free', '--format=csv,noheader,nounits'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'], timeout: 5000, windowsHide: true });
    const mib = Number(out.split('\n')[0]);
    return Number.isFinite(mib) ? mib * 2 ** 20 : undefined;
  } catch {
    return undefined;
  }
}
