// Execution-provider choice: what this platform's onnxruntime-node can run, and the fallback
// order for `auto`, each fallback with a reason the user can act on.

import * as fs from 'node:fs';
import * as path from 'node:path';
import * as ort from 'onnxruntime-node';
import { ComponentName, EpChoice, ExecutionProvider, WeightFormat } from './api';

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

const CUDA_HOWTO =
  'the CUDA provider is not installed: onnxruntime-node downloads it at install time (CUDA 12). Run `npm run cuda:install` with network access, or set the execution provider to webgpu or cpu';

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
    const why = choice === 'cuda' ? CUDA_HOWTO : `${choice} is not available in onnxruntime-node on ${process.platform}-${process.arch}`;
    return { ep: 'cpu', note: `${component}: ${why}; using cpu` };
  }
  if (have.has('cuda')) return { ep: 'cuda' };
  if (have.has('dml')) return { ep: 'dml', note: weights === 'fp8' ? `${component}: DirectML has no float8 DequantizeLinear` : undefined };
  if (have.has('coreml')) return { ep: 'coreml' };
  const reasons = process.platform === 'linux' && process.arch === 'x64' ? `cuda not used: ${CUDA_HOWTO}` : 'no GPU provider in this build';
  return { ep: 'cpu', note: `running on cpu (${reasons})` };
}
