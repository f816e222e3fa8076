// A tiny ONNX graph builder. Values are symbolic tensor names; `op` appends a node.
// Large weights are external data that onnxruntime memory-maps (pointing into the user's
// safetensors file when its bytes are usable as is), so the protobuf itself stays small.

import { AttrType, DataType, ElemType, ModelProto } from './proto';

export type Dim = number | string;

/** A symbolic tensor in the graph under construction. */
export class Value {
  constructor(readonly g: Graph, readonly name: string) {}
}

export type AttrValue = number | string | number[] | string[] | { float: number } | { floats: number[] } | { tensor: TensorData };

interface TensorData {
  type: ElemType;
  dims: number[];
  bytes: Uint8Array;
}

export interface ExternalLocation {
  /** File name relative to the folder onnxruntime is told to resolve external data in. */
  location: string;
  offset: number;
  length: number;
}

export interface InitializerSummary {
  name: string;
  type: ElemType;
  dims: number[];
  bytes: number;
  /** Set for external data (bytes read from a file rather than stored in the model). */
  external?: ExternalLocation;
}

export interface OpOptions {
  domain?: string;
  /** Number of outputs (default 1). */
  outputs?: number;
  name?: string;
}

const ELEM_BYTES: Record<ElemType, number> = {
  float32: 4, uint8: 1, int8: 1, uint16: 2, int16: 2, int32: 4, uint32: 4, int64: 8, bool: 1, float16: 2, float64: 8, bfloat16: 2, float8e4m3fn: 1, float8e5m2: 1,
};

export class Graph {
  private readonly nodes: object[] = [];
  private readonly initializers: object[] = [];
  private readonly inputs: object[] = [];
  private readonly outputs: object[] = [];
  private readonly used = new Set<string>();
  private counter = 0;
  /** Name prefix for nodes and values made now; see scope(). */
  private prefix = '';
  /** Bytes of initializers stored inline / referenced externally. */
  inlineBytes = 0;
  externalBytes = 0;
  readonly externalFiles = new Set<string>();
  /**
   * Whether builders may emit onnxruntime's com.microsoft fused ops (MultiHeadAttention,
   * RotaryEmbedding, SimplifiedLayerNormalization, FastGelu, Gelu). Off for providers that lack
   * them (CoreML): layers.ts then emits the same math from standard ONNX ops (providerOps.ts).
   */
  contribOps = true;

  constructor(readonly name: string, readonly opset = 21, readonly msOpset = 1) {}

  /** Run `fn` with node and value names prefixed by `prefix` (e.g. "double_blocks.3"). */
  scope<T>(prefix: string, fn: () => T): T {
    const saved = this.prefix;
    this.prefix = saved ? `${saved}/${prefix}` : prefix;
    try {
      return fn();
    } finally {
      this.prefix = saved;
    }
  }

  private fresh(hint: string): string {
    let base = this.prefix ? `${this.prefix}/${hint}` : hint;
    if (!this.used.has(base)) {
      this.used.add(base);
      return base;
    }
    base = `${base}_${++this.counter}`;
    this.used.add(base);
    return base;
  }

  input(name: string, type: ElemType, shape: Dim[]): Value {
    this.used.add(name);
    this.inputs.push(valueInfo(name, type, shape));
    return new Value(this, name);
  }

  output(v: Value, name: string, type: ElemType, shape: Dim[]): void {
    if (name !== v.name) {
      if (this.used.has(name)) throw new Error(`output name ${name} is taken`);
      this.used.add(name);
      this.nodes.push({ name: `${name}/Identity`, opType: 'Identity', domain: '', input: [v.name], output: [name], attribute: [] });
    }
    this.outputs.push(valueInfo(name, type, shape));
  }

  /** An initializer whose bytes are inlined in the model. */
  constant(type: ElemType, dims: number[], bytes: Uint8Array, hint = 'const'): Value {
    checkSize(type, dims, bytes.byteLength);
    const name = this.fresh(hint);
    this.initializers.push({ name, dataType: DataType[type], dims, rawData: bytes });
    this.inlineBytes += bytes.byteLength;
    return new Value(this, name);
  }

  f32(values: ArrayLike<number>, dims: number[] = [values.length], hint = 'f32'): Value {
    return this.constant('float32', dims, bytesOf(Float32Array.from(values)), hint);
  }

  i64(values: ArrayLike<number>, dims: number[] = [values.length], hint = 'i64'): Value {
    return this.constant('int64', dims, bytesOf(BigInt64Array.from(Array.from(values), (x) => BigInt(x))), hint);
  }

  scalarF32(x: number, hint = 'scalar'): Value {
    return this.f32([x], [], hint);
  }

  /** An initializer that onnxruntime reads from a file (memory-mapped). */
  external(type: ElemType, dims: number[], where: ExternalLocation, hint = 'weight'): Value {
    checkSize(type, dims, where.length);
    const name = this.fresh(hint);
    this.initializers.push({
      name,
      dataType: DataType[type],
      dims,
      dataLocation: 1,
      externalData: [
        { key: 'location', value: where.location },
        { key: 'offset', value: String(where.offset) },
        { key: 'length', value: String(where.length) },
      ],
    });
    this.externalBytes += where.length;
    this.externalFiles.add(where.location);
    return new Value(this, name);
  }

  /** Append a node; returns its single output, or all outputs when `outputs` > 1 (use opN). */
  op(opType: string, inputs: Array<Value | undefined>, attrs: Record<string, AttrValue> = {}, opts: OpOptions = {}): Value {
    return this.opN(opType, inputs, attrs, { ...opts, outputs: opts.outputs ?? 1 })[0];
  }

  opN(opType: string, inputs: Array<Value | undefined>, attrs: Record<string, AttrValue> = {}, opts: OpOptions = {}): Value[] {
    const n = opts.outputs ?? 1;
    const nodeName = this.fresh(opts.name ?? opType);
    const outs = n === 1 ? [nodeName] : Array.from({ length: n }, (_, i) => this.fresh(`${nodeName}:${i}`));
    for (const v of inputs) if (v && v.g !== this) throw new Error(`value ${v.name} belongs to another graph`);
    this.nodes.push({
      name: nodeName,
      opType,
      domain: opts.domain ?? '',
      input: inputs.map((v) => (v ? v.name : '')),
      output: outs,
      attribute: Object.entries(attrs).map(([k, v]) => attribute(k, v)),
    });
    return outs.map((o) => new Value(this, o));
  }

  get nodeCount(): number {
    return this.nodes.length;
  }

  /** The nodes as built: op type, domain, input and output names, attributes (`i` for integer ones) (read-only view, for tests and tools). */
  nodeList(): ReadonlyArray<NodeView> {
    return this.nodes as NodeView[];
  }

  /** The nodes that serialization keeps (those some output depends on), in order. */
  liveNodeList(): ReadonlyArray<NodeView> {
    return this.live().nodes as NodeView[];
  }

  /** The graph inputs: name and element type. */
  inputList(): Array<{ name: string; type: ElemType }> {
    const typeOf = new Map(Object.entries(DataType).map(([k, v]) => [v as number, k as ElemType]));
    return (this.inputs as Array<{ name: string; type: { tensorType: { elemType: number } } }>).map((i) => ({ name: i.name, type: typeOf.get(i.type.tensorType.elemType)! }));
  }

  /** The distinct op types of the nodes, in order of first use. */
  nodeTypes(): string[] {
    return [...new Set((this.nodes as Array<{ opType: string }>).map((n) => n.opType))];
  }

  /** Every initializer: its type, shape, size and, for external data, where its bytes are (read-only view). */
  initializerSummary(): InitializerSummary[] {
    const typeOf = new Map(Object.entries(DataType).map(([k, v]) => [v as number, k as ElemType]));
    return this.initializers.map((i) => {
      const t = i as { name: string; dataType: number; dims: number[]; rawData?: Uint8Array; externalData?: Array<{ key: string; value: string }> };
      const type = typeOf.get(t.dataType)!;
      const ext = t.externalData && Object.fromEntries(t.externalData.map((e) => [e.key, e.value]));
      return {
        name: t.name,
        type,
        dims: [...t.dims],
        bytes: t.dims.reduce((a, b) => a * b, 1) * ELEM_BYTES[type],
        ...(ext ? { external: { location: ext.location, offset: Number(ext.offset), length: Number(ext.length) } } : {}),
      };
    });
  }

  /**
   * Drop nodes and initializers that no output depends on (e.g. a weight gate nobody used): left
   * in, onnxruntime keeps them and they hold their inputs alive longer.
   */
  private live(): { nodes: object[]; initializers: object[] } {
    const nodes = this.nodes as Array<{ input: string[]; output: string[] }>;
    const needed = new Set((this.outputs as Array<{ name: string }>).map((o) => o.name));
    const keep = new Array<boolean>(nodes.length).fill(false);
    for (let i = nodes.length - 1; i >= 0; i--) {
      if (!nodes[i].output.some((o) => needed.has(o))) continue;
      keep[i] = true;
      for (const x of nodes[i].input) if (x) needed.add(x);
    }
    return {
      nodes: nodes.filter((_, i) => keep[i]),
      initializers: (this.initializers as Array<{ name: string }>).filter((t) => needed.has(t.name)),
    };
  }

  /** Serialize to an ONNX ModelProto. */
  toBytes(): Uint8Array {
    const { nodes, initializers } = this.live();
    const opsetImport = [{ domain: '', version: this.opset }, { domain: 'com.microsoft', version: this.msOpset }];
    const model = ModelProto.create({
      irVersion: this.opset >= 23 ? 11 : this.opset >= 21 ? 10 : 9,
      producerName: 'majicflux',
      producerVersion: '0.1',
      opsetImport,
      graph: { name: this.name, node: nodes, initializer: initializers, input: this.inputs, output: this.outputs },
    });
    return ModelProto.encode(model).finish();
  }
}

function valueInfo(name: string, type: ElemType, shape: Dim[]) {
  return {
    name,
    type: { tensorType: { elemType: DataType[type], shape: { dim: shape.map((d) => (typeof d === 'number' ? { dimValue: d } : { dimParam: d })) } } },
  };
}

function attribute(name: string, v: AttrValue) {
  if (typeof v === 'number') {
    if (!Number.isInteger(v)) throw new Error(`attribute ${name}=${v}: pass {float: x} for float attributes`);
    return { name, type: AttrType.INT, i: v };
  }
  if (typeof v === 'string') return { name, type: AttrType.STRING, s: Buffer.from(v, 'utf8') };
  if (Array.isArray(v)) {
    if (v.every((x) => typeof x === 'string')) return { name, type: AttrType.STRINGS, strings: (v as string[]).map((s) => Buffer.from(s)) };
    return { name, type: AttrType.INTS, ints: v as number[] };
  }
  if ('float' in v) return { name, type: AttrType.FLOAT, f: v.float };
  if ('floats' in v) return { name, type: AttrType.FLOATS, floats: v.floats };
  return { name, type: AttrType.TENSOR, t: { dims: v.tensor.dims, dataType: DataType[v.tensor.type], rawData: v.tensor.bytes } };
}

function checkSize(type: ElemType, dims: number[], bytes: number) {
  const expected = dims.reduce((a, b) => a * b, 1) * ELEM_BYTES[type];
  if (expected !== bytes) throw new Error(`initializer of ${type} ${JSON.stringify(dims)} needs ${expected} bytes, got ${bytes}`);
}

/** A node as built (see Graph.nodeList). */
export interface NodeView {
  readonly name: string;
  readonly opType: string;
  readonly domain: string;
  readonly input: readonly string[];
  readonly output: readonly string[];
  readonly attribute: ReadonlyArray<{ readonly name: string; readonly i?: number }>;
}

export function bytesOf(a: ArrayBufferView): Uint8Array {
  return new Uint8Array(a.buffer, a.byteOffset, a.byteLength);
}
