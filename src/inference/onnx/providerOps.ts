// Which (domain, op, element type) each execution provider implements, for the ops our graph
// builders emit, and a check of a built graph against it. A node the provider cannot take is
// silently placed on the CPU provider by onnxruntime (one copy to the host and back per run);
// for the DiT that is once per denoising step, so the builders avoid it (docs/PROVIDERS.md).
//
// Read from onnxruntime's source (public GitHub, microsoft/onnxruntime; the stored index holds
// main-branch snapshots around the 1.30 release, not the v1.30.0 tag itself; commits per file):
//  * CPU, CUDA, DirectML: docs/OperatorKernels.md @ 001d12d2623fd411ce0f83d05abb5e82304a3389,
//    generated from the registered kernels (tools/python/gen_opkernel_doc.py), which lists opset
//    ranges and type constraints per provider; cross-read with
//    onnxruntime/contrib_ops/cuda/cuda_contrib_kernels.cc @ 004b79eda305a216ab8d0e21eabe81d7713eb768.
//  * DirectML MatMulNBits: core/providers/dml/DmlExecutionProvider/src/Operators/DmlOperatorMatMulNBits.cpp
//    @ 171d61606f93607bdb7481f1409e6e9feee82991 (bits 4 and 8; without a zero-point input it
//    dequantizes with DML_QUANTIZATION_PARAMETERS_TYPE_SCALE, i.e. zero point 0, not MatMulNBits'
//    default 2^(bits-1): the builders pass explicit zero points there).
//  * WebGPU: core/providers/webgpu/webgpu_execution_provider.cc @ 003f772b21abba32d4310f97b4c8e8035beacf4f
//    and contrib_ops/webgpu/webgpu_contrib_kernels.cc @ 01671d9c4e01d111cb47e5e0d0ef82f61f2a178e
//    (op and opset ranges; type constraints live in each kernel's file and were not all read:
//    the types below are float32/float16 plus the measured limits of docs onnxruntime-facts).
//  * CoreML (ML Program): tools/ci_build/github/apple/coreml_supported_mlprogram_ops.md
//    @ 04f568d869ec533a48f29f67f9842ddf694d7ab1 (the list the op builders' IsOpSupportedImpl
//    implement, with their constraints: constant Slice/Split/Reshape parameters, GatherND
//    batch_dims 0, Gemm with a constant B). CoreML partitions what it cannot take onto the CPU EP.

import type { ExecutionProvider } from './session';
import type { ElemType } from './proto';
import { Graph, NodeView } from './graph';
import type { Fp8Decode } from './weightOptions';

export type Domain = '' | 'com.microsoft';

export interface Kernel {
  domain: Domain;
  op: string;
  /** Element types accepted for the node's first input (the data it computes on). */
  types: readonly ElemType[];
  /** Cast: accepted `to` types; DequantizeLinear: accepted output (scale) types. */
  out?: readonly ElemType[];
  /** The kernel covers ONNX schema versions only below this model opset (a newer schema has no kernel). */
  beforeOpset?: number;
  /** Inputs that must be constant (initializers, or folded at session creation). */
  constInputs?: readonly number[];
  /** Inputs that must be present (see DirectML MatMulNBits). */
  requiredInputs?: readonly number[];
  /** Integer attributes that must have this value. */
  attrs?: Readonly<Record<string, number>>;
}

const F: ElemType[] = ['float32', 'float16'];
const F32: ElemType[] = ['float32'];
const INTS: ElemType[] = ['int32', 'int64'];
const ALL_PLAIN: ElemType[] = ['float32', 'float16', 'int32', 'int64', 'int8', 'uint8', 'uint16', 'bool', 'bfloat16'];

function k(op: string, types: readonly ElemType[], extra: Partial<Kernel> = {}): Kernel {
  return { domain: '', op, types, ...extra };
}
function ms(op: string, types: readonly ElemType[], extra: Partial<Kernel> = {}): Kernel {
  return { domain: 'com.microsoft', op, types, ...extra };
}

/** Shape/index ops that every provider implements for any plain type (types as each provider lists). */
function plumbing(types: readonly ElemType[]): Kernel[] {
  return ['Reshape', 'Concat', 'Slice', 'Split', 'Unsqueeze', 'Squeeze', 'Identity', 'Transpose', 'Shape', 'Gather'].map((op) => k(op, types));
}

const COMMON_FLOAT = ['Add', 'Mul', 'Sub', 'Div', 'Less', 'Sigmoid', 'Tanh', 'Erf', 'Sqrt', 'Relu', 'Cos', 'Sin', 'Clip', 'Softmax', 'MatMul', 'Gemm', 'Conv', 'InstanceNormalization', 'LayerNormalization', 'Resize', 'ReduceMean', 'ReduceSum', 'ArgMax', 'Equal'];

/** What we rely on, per provider. */
export const PROVIDER_KERNELS: Record<ExecutionProvider, readonly Kernel[]> = {
  // CPU: docs/OperatorKernels.md, CPUExecutionProvider. Our CPU graphs compute in float32
  // (fp16 MatMul/Gemm/Conv have no CPU kernels and are wrapped in casts).
  cpu: [
    ...plumbing([...ALL_PLAIN, 'float8e4m3fn']),
    ...COMMON_FLOAT.map((op) => k(op, [...F32, ...INTS, 'float16'])),
    k('GatherND', ALL_PLAIN),
    k('Cast', [...ALL_PLAIN, 'float8e4m3fn'], { out: [...ALL_PLAIN, 'float8e4m3fn'] }),
    // DequantizeLinear 21+: T1 includes float8e4m3fn, int8, uint8; T2 float, float16.
    k('DequantizeLinear', ['float8e4m3fn', 'int8', 'uint8'], { out: F }),
    // GatherBlockQuantized (onnxruntime 1.31, contrib_ops/cpu/quantization): T1 uint8, int4, float8 (e4m3fn, e5m2, …).
    ms('GatherBlockQuantized', ['float8e4m3fn', 'float8e5m2', 'uint8'], { out: F }),
    k('SimplifiedLayerNormalization', F),
    ms('MatMulNBits', F),
    ms('MultiHeadAttention', F32),
    ms('RotaryEmbedding', F),
    ms('FastGelu', F32),
    ms('Gelu', F32),
  ],
  // CUDA: OperatorKernels.md CUDAExecutionProvider + cuda_contrib_kernels.cc.
  cuda: [
    // Reshape, Shape, Identity also take float8e4m3fn (the fp8 weights' gate reshape).
    ...plumbing(ALL_PLAIN).map((x) => (['Reshape', 'Shape', 'Identity'].includes(x.op) ? { ...x, types: [...x.types, 'float8e4m3fn' as ElemType] } : x)),
    ...COMMON_FLOAT.filter((op) => op !== 'ArgMax' && op !== 'Equal').map((op) => k(op, [...F, ...INTS])),
    k('ArgMax', F), // float, double, float16 only: the CLIP graph feeds it float32 ids
    k('Equal', [...F, ...INTS, 'bool']),
    k('GatherND', [...F, 'int64', 'bool', 'bfloat16']),
    // Cast [21, 22]: T1 has float8e4m3fn/bfloat16/uint16, T2 likewise.
    k('Cast', [...ALL_PLAIN, 'float8e4m3fn'], { out: [...ALL_PLAIN, 'float8e4m3fn'] }),
    // DequantizeLinear 21+: T1 float8e4m3fn/e5m2, int4/uint4, int8/uint8; T2 float, float16.
    k('DequantizeLinear', ['float8e4m3fn', 'int8', 'uint8'], { out: F }),
    k('SimplifiedLayerNormalization', [...F, 'bfloat16']),
    ms('MatMulNBits', [...F, 'bfloat16']),
    ms('MultiHeadAttention', [...F, 'bfloat16']),
    ms('RotaryEmbedding', [...F, 'bfloat16']),
    ms('FastGelu', [...F, 'bfloat16']),
    ms('Gelu', [...F, 'bfloat16']),
  ],
  // DirectML: OperatorKernels.md DmlExecutionProvider. No bfloat16 and no float8 anywhere
  // (Cast, Gather, DequantizeLinear); MatMulNBits bits 4/8 with explicit zero points.
  dml: [
    ...plumbing(ALL_PLAIN.filter((t) => t !== 'bfloat16')),
    ...COMMON_FLOAT.map((op) => k(op, [...F, ...INTS])),
    k('GatherND', ALL_PLAIN.filter((t) => t !== 'bfloat16')),
    k('Cast', ALL_PLAIN.filter((t) => t !== 'bfloat16'), { out: ALL_PLAIN.filter((t) => t !== 'bfloat16') }),
    k('DequantizeLinear', ['int8', 'uint8'], { out: F }),
    k('SimplifiedLayerNormalization', F),
    ms('MatMulNBits', F, { requiredInputs: [3] }),
    ms('MultiHeadAttention', F),
    ms('RotaryEmbedding', F),
    ms('FastGelu', F),
    ms('Gelu', F),
  ],
  // WebGPU: webgpu_execution_provider.cc / webgpu_contrib_kernels.cc. Transpose is registered for
  // [1, 12] and [13, 20] only, so at opset 21 it has no WebGPU kernel (WebGPU graphs are built at
  // 20, OpChoices.opset); no float8 DequantizeLinear, but com.microsoft GatherBlockQuantized takes
  // float8 data (onnxruntime 1.31: contrib_ops/webgpu/quantization/gather_block_quantized.cc, a
  // 256-entry table in the shader); WGSL has no 8/16-bit integer storage (uint8/uint16 data falls
  // back, measured).
  webgpu: [
    ...plumbing([...F, ...INTS, 'bool']).map((x) => (x.op === 'Transpose' ? { ...x, beforeOpset: 21 } : x)),
    ...COMMON_FLOAT.map((op) => k(op, [...F, ...INTS])),
    k('Cast', [...F, ...INTS, 'bool'], { out: [...F, ...INTS, 'bool'] }),
    k('DequantizeLinear', ['int8', 'uint8'], { out: F }),
    ms('GatherBlockQuantized', ['float8e4m3fn', 'float8e5m2', 'uint8'], { out: F }),
    k('SimplifiedLayerNormalization', F),
    ms('MatMulNBits', F),
    ms('MultiHeadAttention', F),
    ms('RotaryEmbedding', F),
    ms('FastGelu', F),
    ms('Gelu', F),
  ],
  // CoreML ML Program: coreml_supported_mlprogram_ops.md. No com.microsoft op we use (only
  // QuickGelu/FusedConv, produced by onnxruntime's own fusions), no Gather, no Equal, no
  // DequantizeLinear / MatMulNBits; Slice/Split/Reshape parameters must be constant.
  coreml: [
    k('Reshape', [...F, 'int32'], { constInputs: [1] }),
    k('Slice', [...F, 'int32'], { constInputs: [1, 2, 3, 4] }),
    k('Split', [...F, 'int32'], { constInputs: [1] }),
    ...['Concat', 'Unsqueeze', 'Squeeze', 'Identity', 'Transpose', 'Shape'].map((op) => k(op, [...F, 'int32'])),
    ...['Add', 'Mul', 'Sub', 'Div', 'Sigmoid', 'Tanh', 'Erf', 'Sqrt', 'Relu', 'Cos', 'Sin', 'Clip', 'Softmax', 'MatMul', 'Conv', 'InstanceNormalization', 'LayerNormalization', 'Resize', 'ReduceMean', 'ArgMax'].map((op) => k(op, F)),
    k('Gemm', F, { constInputs: [1] }),
    k('GatherND', F, { attrs: { batch_dims: 0 } }),
    k('Cast', [...F, 'int32', 'bool'], { out: [...F, 'int32', 'bool'] }),
  ],
};

/** A node the provider lacks (or takes only under conditions the node does not meet). */
export interface MissingOp {
  domain: Domain;
  op: string;
  /** Element type of the node's first input. */
  type: ElemType | undefined;
  reason: string;
  /** Node name (first of its kind). */
  node: string;
  count: number;
}

const TO_TYPE: Record<number, ElemType> = { 1: 'float32', 2: 'uint8', 3: 'int8', 4: 'uint16', 6: 'int32', 7: 'int64', 9: 'bool', 10: 'float16', 16: 'bfloat16', 17: 'float8e4m3fn' };

/** Element type of every value in the graph (inputs, initializers, node outputs), by name. */
export function valueTypes(g: Graph, nodes: ReadonlyArray<NodeView> = g.liveNodeList()): Map<string, ElemType> {
  const types = new Map<string, ElemType>();
  for (const i of g.inputList()) types.set(i.name, i.type);
  for (const t of g.initializerSummary()) types.set(t.name, t.type);
  for (const n of nodes) {
    const first = types.get(n.input[0]);
    const attr = (name: string) => n.attribute.find((a) => a.name === name)?.i;
    let out: ElemType | undefined;
    switch (n.opType) {
      case 'Cast':
        out = TO_TYPE[Number(attr('to'))];
        break;
      case 'Shape':
      case 'ArgMax':
        out = 'int64';
        break;
      case 'Equal':
        out = 'bool';
        break;
      case 'DequantizeLinear':
        out = types.get(n.input[1]);
        break;
      case 'GatherBlockQuantized':
        out = types.get(n.input[2]);
        break;
      default:
        out = first;
    }
    for (const o of n.output) if (o && out) types.set(o, out);
  }
  return types;
}

/**
 * Values computed from initializers only: onnxruntime folds them at session creation (constant
 * folding runs before partitioning), so the provider never runs those nodes.
 */
export function constantValues(g: Graph, nodes: ReadonlyArray<NodeView> = g.liveNodeList()): Set<string> {
  const constant = new Set(g.initializerSummary().map((t) => t.name));
  for (const n of nodes) if (n.input.every((i) => !i || constant.has(i))) for (const o of n.output) constant.add(o);
  return constant;
}

/**
 * The ops of `g` (live nodes that run per call, i.e. not folded at session creation) that
 * `provider` has no kernel for, with the element types in use; empty when it runs them all.
 */
export function missingOps(g: Graph, provider: ExecutionProvider): MissingOp[] {
  const nodes = g.liveNodeList();
  const types = valueTypes(g, nodes);
  const constant = constantValues(g, nodes);
  const kernels = PROVIDER_KERNELS[provider];
  const found = new Map<string, MissingOp>();
  for (const n of nodes) {
    if (n.output.every((o) => !o || constant.has(o))) continue; // folded
    const domain = (n.domain || '') as Domain;
    const type = types.get(n.input[0]);
    const reason = lacks(kernels, n, domain, type, types, constant, g.opset);
    if (!reason) continue;
    const key = `${domain}:${n.opType}:${type}:${reason}`;
    const had = found.get(key);
    if (had) had.count++;
    else found.set(key, { domain, op: n.opType, type, reason, node: n.name, count: 1 });
  }
  return [...found.values()];
}

function lacks(kernels: readonly Kernel[], n: NodeView, domain: Domain, type: ElemType | undefined, types: Map<string, ElemType>, constant: Set<string>, opset: number): string | undefined {
  const candidates = kernels.filter((x) => x.op === n.opType && x.domain === domain);
  if (!candidates.length) return 'no kernel';
  const kernel = candidates[0];
  if (kernel.beforeOpset !== undefined && opset >= kernel.beforeOpset) return `kernel only below opset ${kernel.beforeOpset}`;
  if (type && !kernel.types.includes(type)) return `no ${type} kernel`;
  if (kernel.out) {
    const out = n.opType === 'Cast' ? TO_TYPE[Number(n.attribute.find((a) => a.name === 'to')?.i)] : types.get(n.output[0]);
    if (out && !kernel.out.includes(out)) return `no ${type} → ${out} kernel`;
  }
  for (const i of kernel.constInputs ?? []) if (n.input[i] && !constant.has(n.input[i])) return `input ${i} must be constant`;
  for (const i of kernel.requiredInputs ?? []) if (!n.input[i]) return `input ${i} is required`;
  for (const [name, v] of Object.entries(kernel.attrs ?? {})) if ((n.attribute.find((a) => a.name === name)?.i ?? 0) !== v) return `${name} must be ${v}`;
  return undefined;
}

/** What a graph builder emits for a provider: see Graph.contribOps and WeightOptions. */
export interface OpChoices {
  /** com.microsoft fused ops (false: the same math from standard ONNX ops). */
  contribOps: boolean;
  /** MatMulNBits with an explicit zero-point input (DirectML reads none as zero point 0). */
  explicitZeroPoints: boolean;
  /** DiT: slice the joint sequence at a build-time text length (CoreML needs constant Slice bounds). */
  staticTextLength: boolean;
  /**
   * int8/int4 MatMulNBits block size along K, chosen by measured speed (docs/BENCHMARKS.md). The
   * WebGPU provider runs its DP4A kernels at block 32 ([4096, 3072] · [3072, 3072] on an H200:
   * 0.48 ms, against 1.35 ms with int8 activations and 13.96 ms without at block 128); the CPU's
   * int8 kernels are fastest at 128 ([1024, 3072] · [3072, 3072] on 2 cores: 54 ms, 163 ms at 32).
   * Unmeasured providers keep 128.
   */
  nbitsBlock: number;
  /** int8/int4: MatMulNBits' accuracy_level 4 (int8 activations) unless the caller says otherwise. */
  int8Activations: boolean;
  /**
   * DiT attention as `fused` com.microsoft.MultiHeadAttention or as `matmul` (MatMul → Softmax →
   * MatMul, queries in `attentionChunks` pieces): WebGPU's MultiHeadAttention runs at 13 TFLOP/s
   * where its MatMul reaches 25 on the same attention (H200, 4,608 tokens).
   */
  attention: 'fused' | 'matmul';
  /** `matmul`: query pieces at 1024² with 512 text tokens, and the most a larger job grows to (attentionChunksFor). */
  attentionChunks: number;
  attentionChunksMax: number;
  /**
   * int8/int4: a Linear's bias as MatMulNBits' own input (index 5) instead of an Add after it
   * (WeightOptions.nbitsBias). WebGPU: 1.151 against 1.186 s/step at 1024², 0.312 against 0.323 at
   * 512² (H100, one process, A/B/A), the golden errors unchanged; the CPU's optimizer moves the Add
   * into MatMulNBits itself.
   */
  nbitsBias: boolean;
  /**
   * A LoRA branch's down-projection (`down`) or both products (`both`) as 8-bit MatMulNBits instead
   * of float MatMul (graphs/ditLora.ts), beside an int8/int4 base: WebGPU's float16 MatMul ran at
   * 31 TFLOP/s where its MatMulNBits reached ≈ 160–180 (H100/H200, docs/BENCHMARKS.md), and an H100
   * profile put two thirds of a rank-32 LoRA's cost in the down-projection (a 32-wide output). Off
   * everywhere: on WebGPU both forms measured slower than float16 branches (1024², H100, one process:
   * 1.308 s/step with `down`, 1.324 with `both`, 1.283 float), the tensor-core kernel's 128-wide
   * tiles leaving a 32-wide output as few workgroups as the float one. The factors then carry the
   * int8 base's kind of error.
   */
  loraNbits: false | 'down' | 'both';
  /**
   * A float LoRA branch's down-projection x·Aᵀ ([tokens, in] · [in, r]) as one product with S times
   * the output tiles (graphs/ditLora.ts splitDown): the profile put two thirds of a rank-32 LoRA's
   * cost there, a 32-wide output leaving the provider's kernels few workgroups that each walk all
   * of `in`. WebGPU: 4 (with loraGemm, a rank-32 LoRA on every Linear of FLUX.1-dev int8 at 1024²
   * costs +7.7 % a step against +11.5 % as MatMul + Add, H100, one process, docs/BENCHMARKS.md);
   * elsewhere 1: S times the multiply-adds is a loss where the product is compute-bound (CPU).
   */
  loraSplit: number;
  /**
   * A float LoRA branch's up-projection and its Add onto the base output as one Gemm (C = the base
   * output): an H100 profile put 18.3 of a rank-32 LoRA's 122.6 GPU ms per step in that Add (a
   * [tokens, out] read twice and written once more), and onnxruntime's MatMulAddFusion leaves it
   * alone where the token count is not a static dimension. WebGPU: on (alone +10.3 % against
   * +11.5 %, with loraSplit 4 +7.7 %; same call); elsewhere unmeasured, off.
   */
  loraGemm: boolean;
  /**
   * How fp8 weights are decoded (WeightOptions.fp8Decode): the CPU's DequantizeLinear runs on one
   * thread, so a table lookup; WebGPU has no float8 DequantizeLinear, so GatherBlockQuantized over
   * every row (onnxruntime ≥ 1.31; bit-exact; the full-size DiT on an H100, 1024²: 2.79 s a step
   * and 16,984 MiB, against 3.27 s and 20,749 MiB for the int32-word decode `words`, same call);
   * CUDA's DequantizeLinear.
   */
  fp8Decode: Fp8Decode;
  /**
   * ONNX opset of the graphs: WebGPU registers Transpose for opsets up to 20 only, and the matmul
   * attention transposes heads, so WebGPU graphs are built at 20 (nothing we emit needs 21 there).
   */
  opset: number;
}

export function opChoicesFor(ep: ExecutionProvider = 'cpu'): OpChoices {
  const webgpu = ep === 'webgpu';
  return {
    contribOps: ep !== 'coreml',
    explicitZeroPoints: ep === 'dml',
    staticTextLength: ep === 'coreml',
    nbitsBlock: webgpu ? 32 : 128,
    int8Activations: ep === 'cpu',
    attention: webgpu || ep === 'coreml' ? 'matmul' : 'fused',
    attentionChunks: 1,
    attentionChunksMax: webgpu ? 16 : 1,
    nbitsBias: webgpu,
    loraNbits: false,
    loraSplit: webgpu ? 4 : 1,
    loraGemm: webgpu,
    opset: webgpu ? 20 : 21,
    fp8Decode: ep === 'cpu' ? 'lookup' : webgpu ? 'gather' : 'dequantize',
  };
}

/** Text + image tokens of a 1024² image with 512 text tokens: the size the provider's attentionChunks were measured at. */
const CHUNKS_MEASURED_AT = 512 + (1024 / 16) ** 2;

/**
 * Query pieces for the matmul attention when a job reaches `tokens` (text + image): scores grow
 * with the square of the tokens, so the pieces grow with it (powers of two, so sizes a little apart
 * share one graph) to hold one piece's scores within what the measured size held, up to the
 * provider's attentionChunksMax (1 where unmeasured: CoreML runs the matmul form whole). Measured on an H100 (WebGPU, int8): at 1024² one piece ran 1.19 s/step and
 * four 1.23 s at the same GPU peak (17,389 / 17,439 MiB), so 1024² runs whole; at 2048² (16,896
 * tokens) 4 pieces held 47.6 GB, 64 pieces 23.8 GB at 11.9 s/step, but session creation took 130 s
 * instead of 15 (every piece is its own nodes in 57 blocks), paid again at each DiT load of a hires
 * job. 2048² wants 13.4 × the 1024² scores: 16 pieces.
 */
export function attentionChunksFor(ep: ExecutionProvider, tokens: number): number {
  const c = opChoicesFor(ep);
  const want = c.attentionChunks * (tokens / CHUNKS_MEASURED_AT) ** 2;
  let chunks = c.attentionChunks;
  while (chunks < want && chunks < c.attentionChunksMax) chunks *= 2;
  return chunks;
}

/** An empty graph for `ep`'s ops: its opset and whether it may use com.microsoft ops. */
export function graphFor(name: string, ep: ExecutionProvider = 'cpu'): Graph {
  const c = opChoicesFor(ep);
  const g = new Graph(name, c.opset);
  g.contribOps = c.contribOps;
  return g;
}

/**
 * Why a DiT weight format cannot run on `ep` without a per-step CPU fallback, or undefined when
 * it can. fp8: float8 DequantizeLinear exists on CPU and CUDA only; WebGPU decodes by GatherBlockQuantized (OpChoices.fp8Decode). int8/int4: MatMulNBits is
 * not a CoreML op.
 */
export function weightFormatProblem(ep: ExecutionProvider, format: string): string | undefined {
  if (format === 'fp8' && ep !== 'cpu' && ep !== 'cuda' && ep !== 'webgpu') {
    return `${ep} has no float8 DequantizeLinear: fp8 weights would be decoded on the CPU provider every step; use weights ${ep === 'coreml' ? 'fp16' : 'fp16, int8 or int4'} (or auto)`;
  }
  if ((format === 'int8' || format === 'int4') && ep === 'coreml') {
    return `CoreML has no MatMulNBits: ${format} weights would run on the CPU provider every step; use weights fp16 (or auto)`;
  }
  return undefined;
}
