// Creating onnxruntime sessions from in-memory graphs whose weights are external data.

import * as ort from 'onnxruntime-node';
import { Graph } from './graph';

export type ExecutionProvider = 'cpu' | 'webgpu' | 'cuda' | 'dml' | 'coreml';

export interface SessionOptions {
  ep?: ExecutionProvider;
  /** Folder holding the external-data files the graph refers to. */
  weightsFolder?: string;
  /** Write the optimized graph here (debugging: see what a builder's graph became). */
  optimizedModelPath?: string;
  intraOpThreads?: number;
  logLevel?: 0 | 1 | 2 | 3 | 4;
  /** Memory arena: off keeps RSS close to what is live (default off on CPU). */
  cpuArena?: boolean;
  /**
   * WebGPU: how freed GPU buffers are kept for reuse (onnxruntime's storageBufferCacheMode). Ours
   * defaults to 'simple' (exact-size reuse): on the H100 host the 1024² DiT step peaked 6,301 MiB
   * (fp16) and 13,019 MiB (int8) lower than with onnxruntime's 'bucket', at the same speed
   * (docs/BENCHMARKS.md). Set by the first WebGPU session of the process: the context is shared.
   */
  gpuBufferCache?: GpuBufferCache;
  /** onnxruntime's graph optimization level (default 'all'). */
  optimization?: 'disabled' | 'basic' | 'extended' | 'all';
}

export type GpuBufferCache = 'bucket' | 'simple' | 'lazyRelease' | 'disabled';

// Outputs left in GPU memory (preferredOutputLocation 'gpu-buffer', the IO binding of
// onnxruntime-web) are not offered: onnxruntime-node 1.30 accepts the option, then aborts the
// whole process on the first run (an uncaught C++ throw, "terminate called after throwing an
// instance of 'char const*'", measured on the H100 host). Inputs and outputs cross to the host.

/**
 * WebGPU provider options the Node binding accepts (onnxruntime-node 1.30: preferredLayout,
 * validationMode, the buffer cache modes, enableRobustness, forceCpuNodeNames, deviceId).
 * Validation off saves CPU time per dispatch; the DiT issues thousands per step.
 */
export function webgpuProviderOptions(bufferCache: GpuBufferCache = 'simple'): ort.InferenceSession.ExecutionProviderConfig {
  return { name: 'webgpu', validationMode: 'disabled', storageBufferCacheMode: bufferCache } as ort.InferenceSession.ExecutionProviderConfig;
}

/** CoreML's ML Program format: the op table (providerOps.ts, docs/PROVIDERS.md) is ML Program's. */
const COREML_FLAG_CREATE_MLPROGRAM = 0x010;

/** The provider entry a session asks for, with the options each provider needs. */
export function providerConfig(ep: ExecutionProvider, gpuBufferCache?: GpuBufferCache): ort.InferenceSession.ExecutionProviderConfig {
  if (ep === 'webgpu') return webgpuProviderOptions(gpuBufferCache);
  if (ep === 'coreml') return { name: 'coreml', coreMlFlags: COREML_FLAG_CREATE_MLPROGRAM };
  return ep;
}

export async function createSession(graph: Graph | Uint8Array, opts: SessionOptions = {}): Promise<ort.InferenceSession> {
  const bytes = graph instanceof Graph ? graph.toBytes() : graph;
  const ep = opts.ep ?? 'cpu';
  const options: ort.InferenceSession.SessionOptions = {
    executionProviders: [providerConfig(ep, opts.gpuBufferCache)],
    graphOptimizationLevel: opts.optimization ?? 'all',
    enableCpuMemArena: opts.cpuArena ?? false,
    // MAJICFLUX_ORT_LOG (benchmarks): onnxruntime's own log level, 0 = verbose with timestamps.
    logSeverityLevel: opts.logLevel ?? (process.env.MAJICFLUX_ORT_LOG ? (Number(process.env.MAJICFLUX_ORT_LOG) as 0 | 1 | 2 | 3 | 4) : 3),
    ...(opts.intraOpThreads ? { intraOpNumThreads: opts.intraOpThreads } : {}),
    ...(opts.optimizedModelPath ? { optimizedModelFilePath: opts.optimizedModelPath } : {}),
    // Benchmarks only: per-node timings and placements (scripts/gpu/profile-summary.mjs reads them).
    ...(process.env.MAJICFLUX_ORT_PROFILE ? { enableProfiling: true, profileFilePrefix: process.env.MAJICFLUX_ORT_PROFILE } : {}),
    extra: {
      session: {
        ...(opts.weightsFolder ? { model_external_initializers_file_folder_path: opts.weightsFolder } : {}),
      },
      // Benchmarks only: more session config entries, e.g. {"session.disable_prepacking":"1"} or
      // {"ep.webgpuexecutionprovider.maxNumPendingDispatches":"4"} (docs/BENCHMARKS.md, twelfth session).
      ...(process.env.MAJICFLUX_ORT_CONFIG ? (JSON.parse(process.env.MAJICFLUX_ORT_CONFIG) as Record<string, string>) : {}),
    },
  };
  return ort.InferenceSession.create(bytes, options);
}

export function tensorF32(data: Float32Array, dims: number[]): ort.Tensor {
  return new ort.Tensor('float32', data, dims);
}
