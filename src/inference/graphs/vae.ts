// The FLUX autoencoder (black-forest-labs/flux modules/autoencoder.py) as ONNX graphs: the decoder
// (latent → image) and the encoder's posterior mean (image → latent, for img2img).
// Shapes in comments: B batch, C channels, H×W spatial. Names are LDM/BFL `ae.safetensors` names;
// a diffusers `vae/` folder is read through diffusersName().

import * as fs from 'node:fs';
import * as path from 'node:path';
import * as ort from 'onnxruntime-node';
import { bytesOf, Graph, Value } from '../onnx/graph';
import { createSession, ExecutionProvider, tensorF32 } from '../onnx/session';
import { graphFor } from '../onnx/providerOps';
import { ComputeType, Weights } from '../onnx/weights';
import { float32ToF16Bits } from '../formats/dtypes';
import { TensorSource } from '../formats/safetensors';
import { componentTensors } from '../formats/layouts/components';
import { configSection, readJson } from '../formats/layouts/configFiles';
import { attention, silu } from './layers';

export interface VaeConfig {
  inChannels: number;
  outChannels: number;
  ch: number;
  chMult: number[];
  numResBlocks: number;
  zChannels: number;
  /** Applied by the pipeline, not the graphs: decoder input = z / scale + shift; encoded latent = (mean - shift) · scale. */
  scale: number;
  shift: number;
  normGroups: number;
}

export type VaeLayout = 'ldm' | 'diffusers';

export interface VaeBuildOptions {
  /** Tensors up to this many bytes are inlined as float32 (default 1 MiB); larger ones stay in the file. */
  inlineLimit?: number;
  /**
   * bf16/f16 files: keep large weights 16-bit resident and cast them per block at run time (saves
   * ~100 MB for FLUX's decoder). Off (default), they are cast to f32 once at session creation:
   * constant conv weights let onnxruntime use its blocked (NCHWc) convs, measured 1.6× faster at 1024².
   */
  keep16Bit?: boolean;
  /**
   * Activation type (default float32). float16 halves the activations (512 MB each at 1024² in
   * float32) and the resident weights on GPUs; GroupNorm statistics stay float32. Inputs and
   * outputs are float32 either way.
   */
  compute?: ComputeType;
  /** Build from the ops this provider implements (providerOps.ts; default cpu). VaeDecoder/VaeEncoder.load pass their ep. */
  opsFor?: ExecutionProvider;
}

export interface VaeLoadOptions extends VaeBuildOptions {
  ep?: ExecutionProvider;
  threads?: number;
  /**
   * onnxruntime's CPU memory arena (default on). Off, every activation (512 MB each at 1024²) is a
   * fresh mmap whose pages fault in on first touch: a first decode measured 6× slower.
   */
  arena?: boolean;
  /** Write the optimized graph here (debugging). */
  optimizedModelPath?: string;
}

export interface BuiltVae {
  graph: Graph;
  weightsFolder: string;
}

const FLUX_AE: VaeConfig = {
  inChannels: 3, outChannels: 3, ch: 128, chMult: [1, 2, 4, 4], numResBlocks: 2, zChannels: 16, scale: 0.3611, shift: 0.1159, normGroups: 32,
};
const EPS = 1e-6;

// ---------------------------------------------------------------------------------------------
// Layouts and config

/** The diffusers AutoencoderKL name of an LDM/BFL name; `levels` = ch_mult.length (diffusers numbers up blocks in reverse). */
export function diffusersName(ldm: string, levels: number): string {
  return ldm
    .replace(/^decoder\.up\.(\d+)\.block\./, (_, i) => `decoder.up_blocks.${levels - 1 - Number(i)}.resnets.`)
    .replace(/^decoder\.up\.(\d+)\.upsample\./, (_, i) => `decoder.up_blocks.${levels - 1 - Number(i)}.upsamplers.0.`)
    .replace(/^encoder\.down\.(\d+)\.block\./, 'encoder.down_blocks.$1.resnets.')
    .replace(/^encoder\.down\.(\d+)\.downsample\./, 'encoder.down_blocks.$1.downsamplers.0.')
    .replace(/\.mid\.block_(\d)\./, (_, i) => `.mid_block.resnets.${Number(i) - 1}.`)
    .replace(/\.mid\.attn_1\.norm\./, '.mid_block.attentions.0.group_norm.')
    .replace(/\.mid\.attn_1\.(q|k|v)\./, '.mid_block.attentions.0.to_$1.')
    .replace(/\.mid\.attn_1\.proj_out\./, '.mid_block.attentions.0.to_out.0.')
    .replace(/\.norm_out\./, '.conv_norm_out.')
    .replace(/\.nin_shortcut\./, '.conv_shortcut.');
}

/** Maps LDM names to the names in `src`: layout and any prefix (e.g. `first_stage_model.`, `vae.`) are detected. */
export interface VaeNames {
  layout: VaeLayout;
  prefix: string;
  (ldm: string): string;
}

export function vaeNames(src: TensorSource, levels?: number): VaeNames {
  const anchor = src.names().find((n) => n.endsWith('decoder.conv_in.weight') || n.endsWith('encoder.conv_in.weight'));
  if (!anchor) throw new Error(`${src.path}: not a VAE (no decoder.conv_in.weight / encoder.conv_in.weight)`);
  const prefix = anchor.slice(0, anchor.length - 'decoder.conv_in.weight'.length);
  const layout: VaeLayout = src.names().some((n) => n.startsWith(`${prefix}decoder.up_blocks.`) || n.startsWith(`${prefix}encoder.down_blocks.`)) ? 'diffusers' : 'ldm';
  let n = levels;
  if (n === undefined && layout === 'diffusers') n = 1 + Math.max(...src.names().map((s) => Number(/^.*?coder\.(?:up|down)_blocks\.(\d+)\./.exec(s)?.[1] ?? -1)));
  const f = ((ldm: string) => prefix + (layout === 'diffusers' ? diffusersName(ldm, n!) : ldm)) as VaeNames;
  f.layout = layout;
  f.prefix = prefix;
  return f;
}

/**
 * The VAE config for an `ae.safetensors` (sidecar `ae.config.json`, BFL names), a diffusers `vae/`
 * folder or its safetensors file (`config.json`), or, without either, read from the tensor shapes.
 */
export function readVaeConfig(p: string, src?: TensorSource): VaeConfig {
  const abs = resolveVaePath(p);
  const isDir = fs.statSync(abs).isDirectory();
  const sidecar = isDir ? undefined : abs.replace(/(\.safetensors)?(\.index\.json)?$/, '.config.json');
  const diffusersConfig = path.join(isDir ? abs : path.dirname(abs), 'config.json');
  // An all-in-one checkpoint's sidecar describes its DiT, and its VAE only in a section.
  const j = (sidecar && fs.existsSync(sidecar) ? configSection(readJson(sidecar), 'vae') : undefined) as Partial<Record<string, number & number[]>> | undefined;
  if (j) {
    return {
      inChannels: j.in_channels ?? 3,
      outChannels: j.out_ch ?? 3,
      ch: j.ch ?? FLUX_AE.ch,
      chMult: j.ch_mult ?? FLUX_AE.chMult,
      numResBlocks: j.num_res_blocks ?? FLUX_AE.numResBlocks,
      zChannels: j.z_channels ?? FLUX_AE.zChannels,
      scale: j.scale_factor ?? FLUX_AE.scale,
      shift: j.shift_factor ?? FLUX_AE.shift,
      normGroups: 32,
    };
  }
  if (fs.existsSync(diffusersConfig)) {
    const j = JSON.parse(fs.readFileSync(diffusersConfig, 'utf8'));
    if (Array.isArray(j.block_out_channels)) {
      const boc: number[] = j.block_out_channels;
      return {
        inChannels: j.in_channels ?? 3,
        outChannels: j.out_channels ?? 3,
        ch: boc[0],
        chMult: boc.map((c) => c / boc[0]),
        numResBlocks: j.layers_per_block ?? FLUX_AE.numResBlocks,
        zChannels: j.latent_channels ?? FLUX_AE.zChannels,
        scale: j.scaling_factor ?? FLUX_AE.scale,
        shift: j.shift_factor ?? 0,
        normGroups: j.norm_num_groups ?? 32,
      };
    }
  }
  const own = !src;
  const s = src ?? openVaeTensors(abs);
  try {
    return configFromShapes(s);
  } finally {
    if (own) s.close();
  }
}

/** ch from the encoder's conv_in (else decoder level 0, assuming ch_mult[0] = 1), widths per level from the decoder blocks. */
function configFromShapes(src: TensorSource): VaeConfig {
  const names = vaeNames(src);
  let levels = 0;
  while (src.has(names(`decoder.up.${levels}.block.0.conv1.weight`))) levels++;
  if (levels === 0) throw new Error(`${src.path}: no decoder up blocks`);
  const n = vaeNames(src, levels);
  let blocks = 0;
  while (src.has(n(`decoder.up.0.block.${blocks}.conv1.weight`))) blocks++;
  const widths = Array.from({ length: levels }, (_, i) => src.info(n(`decoder.up.${i}.block.0.conv1.weight`)).shape[0]);
  const ch = src.has(n('encoder.conv_in.weight')) ? src.info(n('encoder.conv_in.weight')).shape[0] : widths[0];
  return {
    ...FLUX_AE,
    inChannels: src.has(n('encoder.conv_in.weight')) ? src.info(n('encoder.conv_in.weight')).shape[1] : 3,
    outChannels: src.info(n('decoder.conv_out.weight')).shape[0],
    ch,
    chMult: widths.map((w) => w / ch),
    numResBlocks: blocks - 1,
    zChannels: src.info(n('decoder.conv_in.weight')).shape[1],
  };
}

/** `ae.safetensors`, a diffusers `vae/` folder, or a model folder holding `vae/`. */
function resolveVaePath(p: string): string {
  const abs = path.resolve(p);
  if (!fs.existsSync(abs)) throw new Error(`VAE not found: ${abs}`);
  if (fs.statSync(abs).isDirectory() && fs.existsSync(path.join(abs, 'vae')) && !fs.existsSync(path.join(abs, 'config.json'))) return path.join(abs, 'vae');
  return abs;
}

/** Like openTensors, but a diffusers folder that also holds `*.fp16.safetensors` variants opens the main file. */
function openVaeTensors(p: string): TensorSource {
  const main = path.join(p, 'diffusion_pytorch_model.safetensors');
  return componentTensors(fs.statSync(p).isDirectory() && fs.existsSync(main) ? main : p, 'vae');
}

// ---------------------------------------------------------------------------------------------
// Graph

interface Ctx {
  g: Graph;
  w: Weights;
  cfg: VaeConfig;
  n: VaeNames;
  keep16Bit: boolean;
  compute: ComputeType;
  gates: Map<string, Value>;
}

/** A weight in the compute type: small ones inlined, large ones of that type used in place from the file, others see keep16Bit. */
function weight(c: Ctx, ldm: string, after: Value): Value {
  const name = c.n(ldm);
  const t = c.w.src.info(name);
  if (t.byteLength <= c.w.opts.inlineLimit!) return c.w.param(name);
  if (t.dtype === (c.compute === 'float16' ? 'F16' : 'F32')) return c.w.raw(name).value;
  if (c.keep16Bit) return c.w.param(name, gateOf(c, after)); // cast once `after` exists (see onnx/weights.ts)
  return c.g.op('Cast', [c.w.raw(name).value], { to: onnxType(c.compute) }); // constant-folded at session creation
}

const onnxType = (t: ComputeType) => (t === 'float16' ? 10 : 1);

/** A constant in the compute type. */
function constOf(c: Ctx, values: ArrayLike<number>, dims: number[], hint: string): Value {
  const x = Float32Array.from(values);
  return c.compute === 'float16' ? c.g.constant('float16', dims, bytesOf(float32ToF16Bits(x)), hint) : c.g.f32(x, dims, hint);
}

/** One gate per block input, made only when a run-time cast needs it. */
function gateOf(c: Ctx, x: Value): Value {
  let gate = c.gates.get(x.name);
  if (!gate) c.gates.set(x.name, (gate = c.w.gate(x)));
  return gate;
}

/** A per-channel vector as [C, 1, 1], to broadcast over [B, C, H, W]. */
function channelParam(c: Ctx, ldm: string): Value {
  const x = c.w.src.readF32(c.n(ldm));
  return constOf(c, x, [x.length, 1, 1], ldm);
}

/** `after`: the block input; run-time weight casts wait for it. */
function conv(c: Ctx, x: Value, ldm: string, after: Value, opts: { kernel?: number; stride?: number; pads?: number[] } = {}): Value {
  const k = opts.kernel ?? 3;
  const p = (k - 1) / 2;
  return c.g.op('Conv', [x, weight(c, `${ldm}.weight`, after), weight(c, `${ldm}.bias`, after)], {
    kernel_shape: [k, k], strides: [opts.stride ?? 1, opts.stride ?? 1], pads: opts.pads ?? [p, p, p, p],
  });
}

/**
 * GroupNorm(32, eps 1e-6): InstanceNormalization over [B, G, C/G·H·W], then the per-channel affine.
 * (onnxruntime has no CPU kernel for GroupNormalization; it expands it into ~30 ops.) The statistics
 * are float32 in float16 compute too: sums over a group's C/G·H·W values can pass 65504.
 */
function groupNorm(c: Ctx, x: Value, ldm: string): Value {
  const g = c.g;
  const G = c.cfg.normGroups;
  const half = c.compute === 'float16';
  const grouped = g.op('Reshape', [half ? g.op('Cast', [x], { to: 1 }) : x, g.i64([0, G, -1])]);
  const normed = g.op('InstanceNormalization', [grouped, g.f32(new Array(G).fill(1), [G], 'ones'), g.f32(new Array(G).fill(0), [G], 'zeros')], { epsilon: { float: EPS } });
  const y = g.op('Reshape', [half ? g.op('Cast', [normed], { to: 10 }) : normed, g.op('Shape', [x])]);
  return g.op('Add', [g.op('Mul', [y, channelParam(c, `${ldm}.weight`)]), channelParam(c, `${ldm}.bias`)]);
}

// [B, Cin, H, W] → [B, Cout, H, W]
function resnetBlock(c: Ctx, x: Value, ldm: string, cin: number, cout: number): Value {
  return c.g.scope(ldm, () => {
    const g = c.g;
    let h = conv(c, silu(g, groupNorm(c, x, `${ldm}.norm1`)), `${ldm}.conv1`, x);
    h = conv(c, silu(g, groupNorm(c, h, `${ldm}.norm2`)), `${ldm}.conv2`, x);
    const skip = cin !== cout ? conv(c, x, `${ldm}.nin_shortcut`, x, { kernel: 1 }) : x;
    return g.op('Add', [skip, h]);
  });
}

/** A 1×1 conv (LDM [C, C, 1, 1]) or Linear (diffusers [C, C]) applied to [B, L, C]. */
function linear(c: Ctx, x: Value, ldm: string, after: Value, ch: number): Value {
  const g = c.g;
  const w = g.op('Reshape', [weight(c, `${ldm}.weight`, after), g.i64([ch, ch])]);
  return g.op('Add', [g.op('MatMul', [x, g.op('Transpose', [w], { perm: [1, 0] })]), weight(c, `${ldm}.bias`, after)]);
}

// Single-head self-attention over the H·W positions; [B, C, H, W] → [B, C, H, W]
function attnBlock(c: Ctx, x: Value, ldm: string, ch: number): Value {
  return c.g.scope(ldm, () => {
    const g = c.g;
    const h = groupNorm(c, x, `${ldm}.norm`);
    const seq = g.op('Transpose', [g.op('Reshape', [h, g.i64([0, ch, -1])])], { perm: [0, 2, 1] }); // [B, HW, C]
    const q = linear(c, seq, `${ldm}.q`, x, ch);
    const k = linear(c, seq, `${ldm}.k`, x, ch);
    const v = linear(c, seq, `${ldm}.v`, x, ch);
    const o = linear(c, attention(g, q, k, v, 1, { scale: 1 / Math.sqrt(ch), half: c.compute === 'float16' }), `${ldm}.proj_out`, x, ch);
    const back = g.op('Reshape', [g.op('Transpose', [o], { perm: [0, 2, 1] }), g.op('Shape', [x])]);
    return g.op('Add', [x, back]);
  });
}

// Nearest ×2 then conv 3×3; [B, C, H, W] → [B, C, 2H, 2W]
function upsample(c: Ctx, x: Value, ldm: string): Value {
  const g = c.g;
  const up = g.op('Resize', [x, undefined, g.f32([1, 1, 2, 2])], { mode: 'nearest', coordinate_transformation_mode: 'asymmetric', nearest_mode: 'floor' });
  return conv(c, up, `${ldm}.conv`, x);
}

// Pad (0, 1, 0, 1) then conv 3×3 stride 2 — the pad is Conv's asymmetric `pads`; [B, C, H, W] → [B, C, H/2, W/2]
function downsample(c: Ctx, x: Value, ldm: string): Value {
  return conv(c, x, `${ldm}.conv`, x, { stride: 2, pads: [0, 0, 1, 1] });
}

function mid(c: Ctx, x: Value, prefix: string, ch: number): Value {
  let h = resnetBlock(c, x, `${prefix}.mid.block_1`, ch, ch);
  h = attnBlock(c, h, `${prefix}.mid.attn_1`, ch);
  return resnetBlock(c, h, `${prefix}.mid.block_2`, ch, ch);
}

const toCompute = (c: Ctx, x: Value) => (c.compute === 'float16' ? c.g.op('Cast', [x], { to: 10 }) : x);
const toF32 = (c: Ctx, x: Value) => (c.compute === 'float16' ? c.g.op('Cast', [x], { to: 1 }) : x);

function context(g: Graph, src: TensorSource, cfg: VaeConfig, opts: VaeBuildOptions): Ctx {
  const compute = opts.compute ?? 'float32';
  const w = new Weights(g, src, { format: 'fp32', compute, inlineLimit: opts.inlineLimit ?? 1 << 20 });
  return { g, w, cfg, n: vaeNames(src, cfg.chMult.length), keep16Bit: opts.keep16Bit ?? false, compute, gates: new Map() };
}

/** z [1, z, h, w] (already un-scaled: z / scale + shift) → image [1, 3, 8h, 8w], ≈[-1, 1]. */
export function buildVaeDecoder(src: TensorSource, cfg: VaeConfig, opts: VaeBuildOptions = {}): BuiltVae {
  const g = graphFor('flux_vae_decoder', opts.opsFor);
  const c = context(g, src, cfg, opts);
  const z = g.input('z', 'float32', [1, cfg.zChannels, 'h', 'w']);
  const levels = cfg.chMult.length;
  let ch = cfg.ch * cfg.chMult[levels - 1];
  let h = toCompute(c, z);
  if (src.has(c.n('post_quant_conv.weight'))) h = conv(c, h, 'post_quant_conv', h, { kernel: 1 }); // SD-style VAEs; FLUX has none
  h = conv(c, h, 'decoder.conv_in', h);
  h = mid(c, h, 'decoder', ch);
  for (let i = levels - 1; i >= 0; i--) {
    const out = cfg.ch * cfg.chMult[i];
    for (let j = 0; j <= cfg.numResBlocks; j++) {
      h = resnetBlock(c, h, `decoder.up.${i}.block.${j}`, ch, out);
      ch = out;
    }
    if (i !== 0) h = upsample(c, h, `decoder.up.${i}.upsample`);
  }
  h = silu(g, groupNorm(c, h, 'decoder.norm_out'));
  h = conv(c, h, 'decoder.conv_out', h);
  g.output(toF32(c, h), 'image', 'float32', [1, cfg.outChannels, 'H', 'W']);
  return { graph: g, weightsFolder: c.w.folder() };
}

/** image [1, 3, H, W] in [-1, 1] → posterior mean [1, z, H/8, W/8] (not scaled: the pipeline applies (x - shift) · scale). */
export function buildVaeEncoder(src: TensorSource, cfg: VaeConfig, opts: VaeBuildOptions = {}): BuiltVae {
  const g = graphFor('flux_vae_encoder', opts.opsFor);
  const c = context(g, src, cfg, opts);
  const x = g.input('image', 'float32', [1, cfg.inChannels, 'H', 'W']);
  const levels = cfg.chMult.length;
  let h = conv(c, toCompute(c, x), 'encoder.conv_in', x);
  let ch = cfg.ch;
  for (let i = 0; i < levels; i++) {
    const out = cfg.ch * cfg.chMult[i];
    for (let j = 0; j < cfg.numResBlocks; j++) {
      h = resnetBlock(c, h, `encoder.down.${i}.block.${j}`, ch, out);
      ch = out;
    }
    if (i !== levels - 1) h = downsample(c, h, `encoder.down.${i}.downsample`);
  }
  h = mid(c, h, 'encoder', ch);
  h = silu(g, groupNorm(c, h, 'encoder.norm_out'));
  h = conv(c, h, 'encoder.conv_out', h); // [B, 2z, h, w]: mean, then log-variance
  if (src.has(c.n('quant_conv.weight'))) h = conv(c, h, 'quant_conv', h, { kernel: 1 });
  const mean = g.op('Slice', [h, g.i64([0]), g.i64([cfg.zChannels]), g.i64([1])]);
  g.output(toF32(c, mean), 'mean', 'float32', [1, cfg.zChannels, 'h', 'w']);
  return { graph: g, weightsFolder: c.w.folder() };
}

// ---------------------------------------------------------------------------------------------
// Runtime

async function loadSession(p: string, opts: VaeLoadOptions, build: typeof buildVaeDecoder): Promise<{ session: ort.InferenceSession; config: VaeConfig }> {
  const file = resolveVaePath(p);
  const src = openVaeTensors(file);
  try {
    const config = readVaeConfig(file, src);
    const { graph, weightsFolder } = build(src, config, { ...opts, opsFor: opts.opsFor ?? opts.ep });
    const session = await createSession(graph, {
      ep: opts.ep, weightsFolder, intraOpThreads: opts.threads, cpuArena: opts.arena ?? true, optimizedModelPath: opts.optimizedModelPath,
    });
    return { session, config };
  } finally {
    src.close();
  }
}

export class VaeDecoder {
  private constructor(private readonly session: ort.InferenceSession, readonly config: VaeConfig) {}

  /** `ae.safetensors` (LDM/BFL layout), a diffusers `vae/` folder, or a model folder holding `vae/`. */
  static async load(p: string, opts: VaeLoadOptions = {}): Promise<VaeDecoder> {
    const { session, config } = await loadSession(p, opts, buildVaeDecoder);
    return new VaeDecoder(session, config);
  }

  /** z [1, z, h, w], already un-scaled → raw decoder output [1, 3, 8h, 8w] in ≈[-1, 1]. */
  async decode(z: Float32Array, h: number, w: number): Promise<Float32Array> {
    const zc = this.config.zChannels;
    if (z.length !== zc * h * w) throw new Error(`VAE decode: latent has ${z.length} values, expected ${zc}×${h}×${w}`);
    const out = await this.session.run({ z: tensorF32(z, [1, zc, h, w]) });
    return out.image.data as Float32Array;
  }

  async release(): Promise<void> {
    await this.session.release();
  }
}

export class VaeEncoder {
  private constructor(private readonly session: ort.InferenceSession, readonly config: VaeConfig) {}

  static async load(p: string, opts: VaeLoadOptions = {}): Promise<VaeEncoder> {
    const { session, config } = await loadSession(p, opts, buildVaeEncoder);
    return new VaeEncoder(session, config);
  }

  /** image [1, 3, H, W] in [-1, 1], H and W multiples of 8 → posterior mean [1, z, H/8, W/8] (not scaled). */
  async encodeMean(image: Float32Array, H: number, W: number): Promise<Float32Array> {
    const cin = this.config.inChannels;
    if (image.length !== cin * H * W) throw new Error(`VAE encode: image has ${image.length} values, expected ${cin}×${H}×${W}`);
    if (H % 8 || W % 8) throw new Error(`VAE encode: image size ${W}×${H} is not a multiple of 8`);
    const out = await this.session.run({ image: tensorF32(image, [1, cin, H, W]) });
    return out.mean.data as Float32Array;
  }

  async release(): Promise<void> {
    await this.session.release();
  }
}

/** Decoder output [1, 3, H, W] → the final image [H, W, 3] in [0, 1] (diffusers: (x / 2 + 0.5).clamp(0, 1)). */
export function latentsToImage(decoded: Float32Array, H: number, W: number): Float32Array {
  const plane = H * W;
  if (decoded.length !== 3 * plane) throw new Error(`latentsToImage: ${decoded.length} values, expected 3×${H}×${W}`);
  const out = new Float32Array(3 * plane);
  for (let c = 0; c < 3; c++) {
    for (let i = 0; i < plane; i++) {
      const v = Math.fround(Math.fround(decoded[c * plane + i] / 2) + 0.5);
      out[i * 3 + c] = v < 0 ? 0 : v > 1 ? 1 : v;
    }
  }
  return out;
}
