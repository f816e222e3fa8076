import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { adviceFor, checkModel, machineInfo, partFiles, recordChecksums, recordedChecksum, sha256File } from '../../src/inference/models/check';
import { estimateMemory, GPU_CONTEXT_BYTES, RUNTIME_BYTES } from '../../src/inference/models/memory';
import { ComponentShapes, readShapes, TensorShape } from '../../src/inference/models/tensorShapes';
import { componentWeightBytes, ditWeightBytes, linearBytes } from '../../src/inference/models/weightBytes';
import { architectureOf, ditGpuWorkingSet, SESSION_BYTES, workingSet } from '../../src/inference/models/workingSets';
import { resolveModel } from '../../src/inference/models/files';
import { nbitsBytes } from '../../src/inference/onnx/quant';
import { clipParams, ditParams, FLUX_DEV, vaeParams } from '../../src/inference/models/architecture';
import type { FoundModel, MachineInfo, PartCheck } from '../../src/shared/models';
import { loadRegistry, validateRegistry } from '../../src/inference/models/registry';
import { GOLDEN_MODELS } from '../helpers/golden';
import { tempDir } from '../helpers/writeSafetensors';

const REF = path.join(__dirname, '..', 'fixtures', 'FLUX.1-dev');
const GiB = 2 ** 30;
const readJson = (f: string) => JSON.parse(fs.readFileSync(path.join(REF, f), 'utf8'));

/**
 * The real FLUX.1-dev transformer's tensors: names from its diffusers index, shapes from its
 * config.json (hidden = 24 heads × 128, MLP 4×, context 4096, pooled 768, 64 latent channels).
 */
function fluxDevDitFromIndex(): TensorShape[] {
  const cfg = readJson('transformer/config.json');
  const h = cfg.num_attention_heads * cfg.attention_head_dim;
  const hd = cfg.attention_head_dim;
  const mlp = 4 * h;
  const inC = cfg.in_channels;
  const rules: [RegExp, number[]][] = [
    [/^x_embedder\.weight$/, [h, inC]],
    [/^context_embedder\.weight$/, [h, cfg.joint_attention_dim]],
    [/^time_text_embed\.(timestep|guidance)_embedder\.linear_1\.weight$/, [h, 256]],
    [/^time_text_embed\.text_embedder\.linear_1\.weight$/, [h, cfg.pooled_projection_dim]],
    [/^time_text_embed\.\w+\.linear_2\.weight$/, [h, h]],
    [/^transformer_blocks\.\d+\.norm1(_context)?\.linear\.weight$/, [6 * h, h]],
    [/^transformer_blocks\.\d+\.attn\.(to_[qkv]|add_[qkv]_proj|to_out\.0|to_add_out)\.weight$/, [h, h]],
    [/^transformer_blocks\.\d+\.ff(_context)?\.net\.0\.proj\.weight$/, [mlp, h]],
    [/^transformer_blocks\.\d+\.ff(_context)?\.net\.2\.weight$/, [h, mlp]],
    [/^single_transformer_blocks\.\d+\.norm\.linear\.weight$/, [3 * h, h]],
    [/^single_transformer_blocks\.\d+\.attn\.to_[qkv]\.weight$/, [h, h]],
    [/^single_transformer_blocks\.\d+\.proj_mlp\.weight$/, [mlp, h]],
    [/^single_transformer_blocks\.\d+\.proj_out\.weight$/, [h, h + mlp]],
    [/^norm_out\.linear\.weight$/, [2 * h, h]],
    [/^proj_out\.weight$/, [inC, h]],
    [/\.norm_(added_)?[qk]\.weight$/, [hd]],
  ];
  const names = Object.keys(readJson('transformer/diffusion_pytorch_model.safetensors.index.json').weight_map);
  return names.map((name) => {
    if (name.endsWith('.bias')) {
      const w = rules.find(([re]) => re.test(name.replace(/\.bias$/, '.weight')));
      assert.ok(w, `no rule for ${name}`);
      return { name, shape: [w[1][0]], dtype: 'BF16' };
    }
    const r = rules.find(([re]) => re.test(name));
    assert.ok(r, `no rule for ${name}`);
    return { name, shape: r[1], dtype: 'BF16' };
  });
}

/** The real T5-XXL encoder's tensors: names from its index, shapes from its config.json. */
function fluxDevT5FromIndex(): TensorShape[] {
  const c = readJson('text_encoder_2/config.json');
  const inner = c.num_heads * c.d_kv;
  const names = Object.keys(readJson('text_encoder_2/model.safetensors.index.json').weight_map);
  return names.map((name) => {
    let shape: number[];
    if (name === 'shared.weight') shape = [c.vocab_size, c.d_model];
    else if (/layer_norm\.weight$/.test(name)) shape = [c.d_model];
    else if (/relative_attention_bias/.test(name)) shape = [c.relative_attention_num_buckets, c.num_heads];
    else if (/SelfAttention\.[qkv]\.weight$/.test(name)) shape = [inner, c.d_model];
    else if (/SelfAttention\.o\.weight$/.test(name)) shape = [c.d_model, inner];
    else if (/DenseReluDense\.wi_[01]\.weight$/.test(name)) shape = [c.d_ff, c.d_model];
    else if (/DenseReluDense\.wo\.weight$/.test(name)) shape = [c.d_model, c.d_ff];
    else throw new Error(`no rule for ${name}`);
    return { name, shape, dtype: 'BF16' };
  });
}

const synthetic = (params: { name: string; shape: number[] }[], dtype: string): TensorShape[] => params.map((p) => ({ name: p.name, shape: p.shape, dtype }));

function fluxDevShapes(): ComponentShapes {
  return {
    dit: synthetic(ditParams(FLUX_DEV.dit), 'BF16'), // BFL names, as flux1-dev.safetensors has them
    t5: fluxDevT5FromIndex(),
    clip: synthetic(clipParams(FLUX_DEV.clip), 'BF16'),
    vae: synthetic(vaeParams(FLUX_DEV.vae), 'F32'),
  };
}

const machine = (ram: number, gpu?: { memory: number; name?: string }): MachineInfo => ({
  platform: 'linux', arch: 'x64', cpus: 8, totalMemory: ram * GiB, freeMemory: ram * GiB * 0.9, ...(gpu ? { gpuMemory: gpu.memory * GiB, gpuName: gpu.name } : {}),
});

describe('model memory estimates (FLUX.1-dev, real shapes)', () => {
  const shapes = fluxDevShapes();
  const diffusers = fluxDevDitFromIndex();

  it('the shapes rebuilt from the index names and config.json add up to the indexes\' total_size', () => {
    const elements = (ts: readonly TensorShape[]) => ts.reduce((a, t) => a + t.shape.reduce((x, y) => x * y, 1), 0);
    // 23 802 816 640 bytes of bf16 = 11 901 408 320 parameters
    assert.equal(diffusers.length, 1160);
    assert.equal(elements(diffusers) * 2, readJson('transformer/diffusion_pytorch_model.safetensors.index.json').metadata.total_size);
    assert.equal(elements(diffusers), 11_901_408_320);
    // synthetic.ts's FLUX_DEV (BFL names, as in flux1-dev.safetensors) holds the same parameters
    assert.equal(elements(shapes.dit), 11_901_408_320);
    assert.equal(elements(shapes.t5) * 2, readJson('text_encoder_2/model.safetensors.index.json').metadata.total_size);
  });

  it('DiT weights per format, by hand', () => {
    // Linear weights held in the format (2-D, over 1 MiB in bf16), h = 3072, MLP 12288:
    //  double block, per stream (img, txt):
    //    mod.lin 18432×3072 = 56 623 104, attn.qkv 9216×3072 = 28 311 552, attn.proj 3072×3072 = 9 437 184,
    //    mlp.0 12288×3072 = 37 748 736, mlp.2 3072×12288 = 37 748 736          → 169 869 312
    //    × 2 streams = 339 738 624; × 19 blocks                                  = 6 455 033 856
    //  single block: linear1 21504×3072 = 66 060 288, linear2 3072×15360 = 47 185 920,
    //    modulation.lin 9216×3072 = 28 311 552 → 141 557 760; × 38 blocks        = 5 379 194 880
    //  time_in 3072×256 + 3072×3072, guidance_in the same, vector_in 3072×768 + 3072×3072,
    //    txt_in 3072×4096, final adaLN 6144×3072:
    //    2×786 432 + 3×9 437 184 + 2 359 296 + 12 582 912 + 18 874 368            = 63 700 992
    //  P = 6 455 033 856 + 5 379 194 880 + 63 700 992                            = 11 897 929 728
    // Everything else as float32: img_in 3072×64 and final linear 64×3072 (393 216 bytes in bf16,
    // inlined) = 393 216, biases and norm scales 1 760 768 (double) + 1 293 824 (single) +
    // 30 784 (embedders, final) → 3 478 592 elements × 4                         = 13 914 368 bytes
    const P = 11_897_929_728;
    const other = 13_914_368;
    assert.equal(P + other / 4, 11_901_408_320);
    const expected = {
      fp8: P + other, //                                     11 911 844 096
      fp16: 2 * P + other, //                                23 809 773 824
      fp32: 4 * P + other, //                                47 605 633 280
      // blocks of 32 (every K — 256, 768, 3072, 4096, 12288, 15360 — is a multiple): a float16
      // scale per 32 weights, P·(1 + 2/32), P·(1/2 + 2/32)
      int8: P + P / 16 + other, //                           12 655 464 704
      int4: P / 2 + P / 16 + other, //                        6 706 499 840
    };
    assert.deepEqual(expected, { fp8: 11_911_844_096, fp16: 23_809_773_824, fp32: 47_605_633_280, int8: 12_655_464_704, int4: 6_706_499_840 });
    for (const [f, bytes] of Object.entries(expected)) {
      assert.equal(ditWeightBytes(shapes.dit, f as keyof typeof expected), bytes, `${f}, BFL names`);
      assert.equal(ditWeightBytes(diffusers, f as keyof typeof expected), bytes, `${f}, diffusers names`);
    }
    // The MatMulNBits layout is quant.ts's.
    for (const [n, k] of [[3072, 64], [21504, 3072], [100, 200]]) {
      assert.equal(linearBytes(n, k, 'int8'), nbitsBytes(n, k, 8, 32));
      assert.equal(linearBytes(n, k, 'int4'), nbitsBytes(n, k, 4, 32));
    }
  });

  it('T5 bytes = its index total_size; CLIP and VAE at their file size', () => {
    for (const f of ['fp8', 'int4'] as const) assert.equal(componentWeightBytes(shapes.t5, 't5', f), 9_524_621_312);
    // CLIP-L text: 123 060 480 bf16 parameters; the AE 83 819 683 float32 (synthetic.ts's real shapes)
    assert.equal(componentWeightBytes(shapes.clip, 'clip', 'fp8'), 2 * 123_060_480);
    assert.equal(componentWeightBytes(shapes.vae, 'vae', 'fp8'), 4 * 83_819_683);
  });

  it('architecture numbers from the shapes, either naming', () => {
    const a = architectureOf(shapes);
    assert.deepEqual(a, {
      dit: { hidden: 3072, heads: 24, largestLinear: 21504 * 3072 },
      t5: { dModel: 4096, dFf: 10240, heads: 64, largestLinear: 10240 * 4096 },
      clip: { hidden: 768, intermediate: 3072, heads: 12, largestLinear: 3072 * 768 },
      vae: { ch: 128 },
    });
    const d = architectureOf({ dit: diffusers }).dit;
    assert.equal(d.hidden, 3072);
    assert.equal(d.heads, 24);
  });

  it('working sets at 1024×1024, by hand', () => {
    const a = architectureOf(shapes);
    const size = { width: 1024, height: 1024 };
    // DiT, CPU, fp8: L = 512 text + (1024/16)² = 4096 image tokens = 4608
    //   256 MiB                       268 435 456
    //   640 · 4608 · 3072           9 059 696 640
    //   4 · 24 · 4608²              2 038 431 744   (attention probabilities, float32)
    //   4 · 21504 · 3072              264 241 152   (one linear1 dequantized to float32)
    assert.equal(workingSet('dit', a, size, 'fp8', 'cpu'), 268_435_456 + 9_059_696_640 + 2_038_431_744 + 264_241_152);
    assert.equal(workingSet('dit', a, size, 'int8', 'cpu'), 268_435_456 + 9_059_696_640 + 2_038_431_744);
    // GPU, float16, the MatMul form: 136 · 4608 · 3072 = 1 925 185 536 of activations and
    //   4.3 · 24 · 4608² = 2 191 314 125 of scores and softmax output; MultiHeadAttention:
    //   184 · 4608 · 3072 = 2 604 662 784 and 0.07 · 24 · 4608² = 35 672 556; fp8 adds the decoded
    //   copies: 17 · 21504 · 3072 = 1 123 024 896. At 1024² that is 4,182 MiB over the int8 weights
    //   (measured 4,155) and 2,774 with MultiHeadAttention (measured 2,742).
    const matmul = 268_435_456 + 1_925_185_536 + 2_191_314_125;
    assert.equal(workingSet('dit', a, size, 'fp16', 'gpu'), matmul);
    assert.equal(workingSet('dit', a, size, 'int4', 'gpu'), matmul);
    assert.equal(workingSet('dit', a, size, 'fp8', 'gpu'), matmul + 1_123_024_896);
    assert.equal(ditGpuWorkingSet(a, 4608, 'int8', 'fused'), 268_435_456 + 2_604_662_784 + 35_672_556);
    assert.equal(Math.round(ditGpuWorkingSet(a, 4608, 'int8') / 2 ** 20), 4182);
    // The measured working sets (the DiT alone, int8, onnxruntime 1.31, H100), each at most 7 % and 0.2 GiB under the model's.
    const measured: Array<[number, 'matmul' | 'fused', number]> = [[1536, 'matmul', 988], [4608, 'matmul', 4155], [9728, 'matmul', 13253], [1536, 'fused', 1051], [4608, 'fused', 2742], [9728, 'fused', 5548]];
    for (const [L, form, mib] of measured) {
      const model = ditGpuWorkingSet(a, L, 'int8', form) / 2 ** 20;
      assert.ok(model >= mib && model - mib < Math.max(0.12 * mib, 200), `${form} at ${L} tokens: model ${model.toFixed(0)} MiB, measured ${mib}`);
    }
    // T5, 512 tokens: 256 MiB + 512·(3·10240 + 6·4096)·4 = 113 246 208 + 64·512²·4 = 67 108 864
    //   + one 10240×4096 weight in float32 = 167 772 160
    assert.equal(workingSet('t5', a, size, 'fp8'), 268_435_456 + 113_246_208 + 67_108_864 + 167_772_160);
    // VAE: 32 · 128 · 1024² = 4 294 967 296 + the mid attention 4 · (16384)² = 1 073 741 824
    assert.equal(workingSet('vae', a, size, 'fp8'), 4_294_967_296 + 1_073_741_824);
    // schnell's 256 T5 tokens: L = 4352
    assert.equal(workingSet('dit', a, { ...size, t5Tokens: 256 }, 'int8', 'cpu'), 268_435_456 + 640 * 4352 * 3072 + 4 * 24 * 4352 * 4352);
  });

  it('peaks per mode, by hand at 1024×1024', () => {
    const all = estimateMemory(shapes, { machine: { totalMemory: 40 * GiB, gpuMemory: 24 * GiB } });
    const e = (w: string, m: string, s = 1024) => all.find((x) => x.weights === w && x.mode === m && x.width === s)!;
    assert.equal(all.length, 2 * 5 * 2, 'two sizes × five formats × two modes');
    const ditWs = 268_435_456 + 9_059_696_640 + 2_038_431_744 + 264_241_152; // 11 630 804 992
    const t5 = 9_524_621_312, clip = 246_120_960, vae = 335_278_732, dit = 11_911_844_096;
    // sequential: the DiT stage is the largest: 0.5 GiB + 11 911 844 096 + 11 630 804 992
    assert.equal(e('fp8', 'sequential').peak, RUNTIME_BYTES + dit + ditWs);
    assert.equal(e('fp8', 'sequential').peak, 24_079_520_000);
    // resident: all weights + the VAE's kept arena + the largest other working set (the DiT's)
    const vaeWs = 5_368_709_120;
    assert.equal(e('fp8', 'resident').peak, RUNTIME_BYTES + dit + t5 + clip + vae + vaeWs + ditWs);
    assert.equal(e('fp8', 'resident').fitsRam, false, `${e('fp8', 'resident').peak / GiB} GiB > 0.85 × 40`);
    assert.equal(e('fp8', 'sequential').fitsRam, true);
    assert.deepEqual(e('fp8', 'sequential').components, { clip, t5, dit, vae });
    // GPU, sequential fp16: 800 MiB context + 23 809 773 824 of weights + 1 740 636 160 of working set
    assert.equal(e('fp16', 'sequential').gpuPeak, GPU_CONTEXT_BYTES + 23_809_773_824 + 268_435_456 + 136 * 4608 * 3072 + 2_191_314_125);
    assert.equal(e('fp16', 'sequential').fitsGpu, false);
    // resident on the GPU: every session keeps its buffers, so all working sets add up
    const gpuWs = (c: 'clip' | 't5' | 'dit' | 'vae') => workingSet(c, architectureOf(shapes), { width: 1024, height: 1024 }, 'int4', 'gpu');
    assert.equal(e('int4', 'resident').gpuPeak, Math.round(GPU_CONTEXT_BYTES + 1.15 * (6_706_499_840 + t5 + clip + vae + gpuWs('clip') + gpuWs('t5') + gpuWs('dit') + gpuWs('vae'))));
    // at 512²: L = 1536
    assert.equal(e('int8', 'sequential', 512).peak, RUNTIME_BYTES + 12_655_464_704 + SESSION_BYTES + 640 * 1536 * 3072 + 4 * 24 * 1536 * 1536);
    // a size of the user's is added
    const more = estimateMemory(shapes, { sizes: [{ width: 768, height: 1344 }], formats: ['fp8'], modes: ['sequential'] });
    assert.deepEqual(more.map((x) => `${x.width}x${x.height}`), ['512x512', '1024x1024', '768x1344']);
  });

  it('advice: best choice first, then what fits and what does not, in plain sentences', () => {
    const model = { id: 'flux1-dev', name: 'FLUX.1-dev', where: 'configured', root: '/m', complete: true, spec: { dir: '/m' }, parts: [] } as unknown as FoundModel;
    const size = { width: 1024, height: 1024 };
    const ram32 = machine(32);
    const a = adviceFor(model, ram32, estimateMemory(shapes, { machine: ram32 }), size);
    assert.match(a[0], /^Choose fp8 weights with memory mode sequential at 1024×1024: peak ≈ 22\.4 GiB of your 32\.0 GiB of RAM\.$/);
    // What is usable, what is free, and what would fit instead: "needs 22 GiB, does not fit 24 GiB" read as a contradiction (issue 15 item 19).
    assert.ok(a.includes('fp16 + resident: needs ≈ 47.9 GiB — more than the ≈ 27.2 GiB usable of your 32.0 GiB of RAM (28.8 GiB free now); fp8 + sequential fits (peak ≈ 22.4 GiB)'), a.join('\n'));
    const ram24 = machine(24);
    const b = adviceFor(model, ram24, estimateMemory(shapes, { machine: ram24 }), size);
    assert.ok(b.some((l) => /^fp8 \+ sequential: needs ≈ 22\.4 GiB — more than the ≈ 20\.4 GiB usable of your 24\.0 GiB of RAM \(21\.6 GiB free now\); int\d \+ \w+ fits \(peak ≈ [\d.]+ GiB\)$/.test(l)), b.join('\n'));
    assert.ok(a.includes('fp8 + sequential: peak ≈ 22.4 GiB — fits your 32.0 GiB of RAM'), a.join('\n'));
    const gpu = machine(32, { memory: 12, name: 'NVIDIA GeForce RTX 3060' });
    const g = adviceFor(model, gpu, estimateMemory(shapes, { machine: gpu }), { width: 512, height: 512 });
    assert.match(g[0], /^Choose int4 weights with memory mode sequential at 512×512: the GPU needs ≈ 10\.2 GiB of your 12\.0 GiB NVIDIA GeForce RTX 3060\.$/);
    assert.ok(g.some((l) => /^fp8 \+ sequential: the GPU needs ≈ 14\.0 GiB — does not fit your 12\.0 GiB NVIDIA GeForce RTX 3060 \(on the CPU: peak ≈ 15\.1 GiB, fits your 32\.0 GiB of RAM\)$/.test(l)), g.join('\n'));
    const small = machine(8);
    const s = adviceFor(model, small, estimateMemory(shapes, { machine: small }), size);
    assert.match(s[0], /^Nothing fits this machine at 1024×1024: the smallest option, int4 \+ sequential, needs ≈ [\d.]+ GiB\..*remote GPU server/);
  });

  it('an incomplete registry model: where to download the rest, in the reader\'s own terms (editor or CLI)', () => {
    const model = { id: 'flux1-dev', name: 'FLUX.1-dev', where: 'configured', root: '/m', complete: false, spec: { dir: '/m' }, parts: [{ role: 'vae', status: 'missing' }] } as unknown as FoundModel;
    const ram = machine(32);
    const est = estimateMemory(shapes, { machine: ram });
    const editor = adviceFor(model, ram, est, { width: 1024, height: 1024 });
    assert.ok(editor.some((l) => l.startsWith('The missing parts can be downloaded with the command "MajicFLUX: Download Model…" (flux1-dev) (from Hugging Face')), editor.join('\n'));
    const cli = adviceFor(model, ram, est, { width: 1024, height: 1024 }, [], undefined, (id) => `majicflux models download ${id}`);
    assert.ok(cli.some((l) => l.startsWith('The missing parts can be downloaded with majicflux models download flux1-dev (from')), cli.join('\n'));
  });

  it("modelFiles.residentBytes (the pipeline's pre-flight) gives the same numbers as the check", () => {
    const files = resolveModel({ dir: GOLDEN_MODELS, transformer: path.join(GOLDEN_MODELS, 'flux-tiny.safetensors') });
    const est = estimateMemory(
      { dit: shapesOfFile(path.join(GOLDEN_MODELS, 'flux-tiny.safetensors')), clip: shapesOfFile(files.textEncoder), t5: shapesOfFile(files.textEncoder2), vae: shapesOfFile(files.vae) },
      { formats: ['fp8', 'int4'], modes: ['sequential'] },
    );
    for (const x of est) {
      for (const c of ['clip', 't5', 'dit', 'vae'] as const) assert.equal(files.residentBytes(x.weights, c), x.components[c], `${x.weights} ${c}`);
    }
  });
});

const shapesOfFile = (p: string): TensorShape[] => readShapes(p);

describe('checkModel', () => {
  let t: { dir: string; cleanup: () => void };
  beforeEach(() => (t = tempDir('majicflux-check-')));
  afterEach(() => t.cleanup());
  const ram16 = machine(16);

  it('the golden tiny model: every part present, with its layout and dtypes; estimates and advice', async () => {
    const r = await checkModel({ dir: GOLDEN_MODELS, transformer: path.join(GOLDEN_MODELS, 'flux-tiny-fp8.safetensors') }, { machine: ram16, width: 256, height: 256 });
    assert.equal(r.model.complete, true);
    assert.equal(r.model.id, 'custom');
    assert.equal(r.model.where, 'configured');
    const p = Object.fromEntries(r.model.parts.map((x) => [x.role, x]));
    assert.deepEqual(Object.keys(p), ['dit', 'clip', 't5', 'vae', 'tokenizer', 'tokenizer2']);
    assert.deepEqual([p.dit.status, p.dit.layout, p.dit.path], ['present', 'bfl-dit', path.join(GOLDEN_MODELS, 'flux-tiny-fp8.safetensors')]);
    assert.ok(p.dit.dtypes!.F8_E4M3 > 0 && p.dit.dtypes!.BF16 > 0);
    assert.equal(p.dit.bytes, fs.statSync(path.join(GOLDEN_MODELS, 'flux-tiny-fp8.safetensors')).size);
    assert.deepEqual([p.clip.layout, p.t5.layout, p.vae.layout], ['hf-clip', 'hf-t5', 'ldm-vae']);
    assert.deepEqual(p.vae.dtypes, { F32: 240 });
    assert.deepEqual(p.t5.dtypes, { BF16: 21 });
    assert.equal(p.t5.bytes, ['model-00001-of-00002.safetensors', 'model-00002-of-00002.safetensors'].reduce((a, f) => a + fs.statSync(path.join(GOLDEN_MODELS, 'text_encoder_2', f)).size, 0));
    assert.equal(p.tokenizer.status, 'present');
    assert.equal(p.tokenizer2.path, path.join(GOLDEN_MODELS, 'tokenizer_2'));
    assert.deepEqual([...new Set(r.estimates.map((e) => `${e.width}x${e.height}`))], ['512x512', '1024x1024', '256x256']);
    assert.ok(r.estimates.every((e) => e.fitsRam && e.fitsGpu === undefined));
    assert.match(r.advice[0], /^Choose fp16 weights with memory mode resident at 256×256/);
    assert.ok(!r.advice.some((l) => /not usable/.test(l)));
  });

  // It said "transformer holds no .safetensors file" beside the .part that a download cut short left.
  it('a DiT folder holding only a download cut short says the download has not finished', async () => {
    const dir = path.join(t.dir, 'half-downloaded');
    fs.cpSync(GOLDEN_MODELS, dir, { recursive: true, filter: (src) => !/^flux-tiny.*\.safetensors$/.test(path.basename(src)) });
    const dit = path.join(dir, 'transformer', 'diffusion_pytorch_model.safetensors');
    fs.renameSync(dit, `${dit}.part`);
    const r = await checkModel({ dir }, { machine: ram16 });
    const p = r.model.parts.find((x) => x.role === 'dit')!;
    assert.equal(p.status, 'missing');
    assert.equal(p.message, 'diffusion_pytorch_model.safetensors.part: the download has not finished (run the same download again to resume it)');
    assert.equal(r.model.complete, false);
  });

  it('a corrupt DiT: the part says so, the model is incomplete, estimates use FLUX.1-dev sizes for it', async () => {
    const dit = path.join(t.dir, 'broken.safetensors');
    fs.copyFileSync(path.join(GOLDEN_MODELS, 'flux-tiny.safetensors'), dit);
    fs.truncateSync(dit, 5000);
    const r = await checkModel({ dir: GOLDEN_MODELS, transformer: dit }, { machine: ram16 });
    const p = r.model.parts.find((x) => x.role === 'dit')!;
    assert.equal(p.status, 'corrupt');
    assert.match(p.message!, /truncated/);
    assert.equal(r.model.complete, false);
    assert.match(r.advice[0], /^The model is not usable yet: dit \(corrupt\)\. The estimates use FLUX\.1-dev's sizes for the dit\.$/);
    assert.equal(r.estimates.find((e) => e.weights === 'fp8')!.components.dit, 11_911_844_096);
  });

  it('a model folder whose DiT file is there but cut short: generate\'s message leads with the broken file, not "no transformer found"', () => {
    const dits = ['flux-tiny.safetensors', 'flux-tiny-fp8.safetensors', 'flux-tiny-fp8.config.json', 'transformer'];
    for (const e of fs.readdirSync(GOLDEN_MODELS)) if (!dits.includes(e)) fs.symlinkSync(path.join(GOLDEN_MODELS, e), path.join(t.dir, e));
    const dit = path.join(t.dir, 'flux-tiny.safetensors');
    fs.copyFileSync(path.join(GOLDEN_MODELS, 'flux-tiny.safetensors'), dit);
    fs.truncateSync(dit, fs.statSync(dit).size - 1000);
    assert.throws(() => resolveModel({ dir: t.dir }), (e: Error) => {
      assert.match(e.message, new RegExp(`^The model in ${t.dir.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')} cannot be used: .*flux-tiny\\.safetensors: file is truncated: .*download it again\\. Missing: no FLUX transformer`));
      return true;
    });
  });

  it("a scheduler config the generation would refuse makes the DiT part corrupt, naming the file; a sound one or none leaves it present", async () => {
    for (const e of fs.readdirSync(GOLDEN_MODELS)) if (e !== 'scheduler') fs.symlinkSync(path.join(GOLDEN_MODELS, e), path.join(t.dir, e));
    const spec = { dir: t.dir, transformer: path.join(GOLDEN_MODELS, 'flux-tiny.safetensors') };
    const dit = async () => (await checkModel(spec, { machine: ram16 })).model.parts.find((x) => x.role === 'dit')!;
    assert.equal((await dit()).status, 'present', 'no scheduler folder: FLUX.1 defaults');
    const file = path.join(t.dir, 'scheduler', 'scheduler_config.json');
    fs.mkdirSync(path.dirname(file));
    fs.writeFileSync(file, '{"shift": 3.0, "use_dynamic');
    let p = await dit();
    assert.equal(p.status, 'corrupt');
    assert.match(p.message!, new RegExp(`^${file.replace(/[/\\.]/g, '\\$&')}: invalid JSON .*download the model's scheduler/scheduler_config\\.json again$`));
    fs.writeFileSync(file, JSON.stringify({ use_karras_sigmas: true }));
    p = await dit();
    assert.equal(p.status, 'corrupt');
    assert.match(p.message!, /use_karras_sigmas is not supported/);
    fs.copyFileSync(path.join(GOLDEN_MODELS, 'scheduler', 'scheduler_config.json'), file);
    assert.equal((await dit()).status, 'present');
  });

  it('partFiles never lists a file outside the index folder that an index names', () => {
    const dir = path.join(t.dir, 'escape', 'text_encoder_2');
    fs.mkdirSync(dir, { recursive: true });
    fs.writeFileSync(path.join(t.dir, 'escape', 'secret.safetensors'), 'x');
    fs.writeFileSync(path.join(dir, 'model-00001-of-00001.safetensors'), 'x');
    const idx = path.join(dir, 'model.safetensors.index.json');
    fs.writeFileSync(idx, JSON.stringify({ weight_map: { 'a.weight': 'model-00001-of-00001.safetensors', 'b.weight': '../secret.safetensors' } }));
    assert.deepEqual(partFiles({ role: 't5', path: idx } as PartCheck), [idx]);
    fs.writeFileSync(idx, JSON.stringify({ weight_map: { 'a.weight': 'model-00001-of-00001.safetensors' } }));
    assert.deepEqual(partFiles({ role: 't5', path: idx } as PartCheck), [path.join(dir, 'model-00001-of-00001.safetensors'), idx]);
  });

  it('verify: records unknown checksums, then matches, then detects a changed file', async () => {
    const dir = path.join(t.dir, 'model');
    fs.cpSync(GOLDEN_MODELS, dir, { recursive: true });
    const store = path.join(t.dir, 'state', 'checksums.json');
    const spec = { dir, transformer: path.join(dir, 'flux-tiny.safetensors') };
    const first = await checkModel(spec, { verify: true, checksumStore: store, machine: ram16 });
    assert.deepEqual(first.model.parts.map((p) => p.verified), ['recorded', 'recorded', 'recorded', 'recorded', 'recorded', 'recorded']);
    const dit = first.model.parts[0];
    assert.equal(dit.sha256, await sha256File(spec.transformer));
    // several files: the sha256 of "<sha256>  <name>\n" lines in path order
    const t5 = first.model.parts.find((p) => p.role === 't5')!;
    const t5Files = partFiles(t5);
    assert.deepEqual(t5Files.map((f) => path.basename(f)), ['config.json', 'model-00001-of-00002.safetensors', 'model-00002-of-00002.safetensors', 'model.safetensors.index.json']);
    const lines = (await Promise.all(t5Files.map(async (f) => `${await sha256File(f)}  ${path.basename(f)}\n`))).join('');
    assert.equal(t5.sha256, (await import('node:crypto')).createHash('sha256').update(lines).digest('hex'));
    assert.equal(recordedChecksum(store, spec.transformer), dit.sha256);
    const stored = JSON.parse(fs.readFileSync(store, 'utf8'));
    assert.ok(stored.files[fs.realpathSync(spec.transformer)].size > 0);

    const second = await checkModel(spec, { verify: true, checksumStore: store, machine: ram16 });
    assert.deepEqual(second.model.parts.map((p) => p.verified), ['match', 'match', 'match', 'match', 'match', 'match']);
    assert.equal(second.model.complete, true);

    // the same size and modification time, other bytes: damage the checksum catches
    const st = fs.statSync(spec.transformer);
    const fd = fs.openSync(spec.transformer, 'r+');
    fs.writeSync(fd, Buffer.from([0x5a]), 0, 1, st.size - 1);
    fs.closeSync(fd);
    fs.utimesSync(spec.transformer, st.atime, st.mtime);
    const third = await checkModel(spec, { verify: true, checksumStore: store, machine: ram16 });
    const d3 = third.model.parts[0];
    assert.equal(d3.verified, 'mismatch');
    assert.equal(d3.status, 'corrupt');
    assert.match(d3.message!, /flux-tiny\.safetensors \(sha256 [0-9a-f]{12}…, expected [0-9a-f]{12}… as recorded earlier\) differs/);
    assert.equal(third.model.complete, false);

    // a file replaced (new modification time) is recorded afresh, not a mismatch
    fs.utimesSync(spec.transformer, new Date(), new Date(Date.now() + 5000));
    const fourth = await checkModel(spec, { verify: true, checksumStore: store, machine: ram16 });
    assert.equal(fourth.model.parts[0].verified, 'recorded');
  });

  it("verify compares with the registry's sha256 where it has one (path inside the repository)", async () => {
    const dir = path.join(t.dir, 'black-forest-labs', 'FLUX.1-dev');
    fs.mkdirSync(dir, { recursive: true });
    fs.cpSync(GOLDEN_MODELS, dir, { recursive: true });
    fs.renameSync(path.join(dir, 'flux-tiny.safetensors'), path.join(dir, 'flux1-dev.safetensors'));
    fs.renameSync(path.join(dir, 'flux-tiny.config.json'), path.join(dir, 'flux1-dev.config.json'));
    fs.rmSync(path.join(dir, 'transformer'), { recursive: true });
    fs.rmSync(path.join(dir, 'flux-tiny-fp8.safetensors'));
    const reg = structuredClone(loadRegistry());
    const sha = await sha256File(path.join(dir, 'ae.safetensors'));
    reg.models[0].parts.find((p) => p.role === 'vae')!.files[0].sha256 = sha;
    reg.models[0].parts.find((p) => p.role === 'dit')!.files[0].sha256 = '0'.repeat(64);
    const r = await checkModel({ dir }, { verify: true, registry: validateRegistry(reg), machine: ram16 });
    assert.equal(r.model.id, 'flux1-dev');
    const p = Object.fromEntries(r.model.parts.map((x) => [x.role, x]));
    assert.equal(p.vae.verified, 'match');
    assert.equal(p.dit.verified, 'mismatch');
    assert.match(p.dit.message!, /expected 000000000000… from the registry/);
    assert.equal(p.clip.verified, 'recorded', 'no store given: recorded means "checksum now known", nothing to compare with');
  });

  it('recordChecksums (what the downloader verified) makes the next verification a match', async () => {
    const f = path.join(t.dir, 'a.bin');
    fs.writeFileSync(f, 'hello');
    const store = path.join(t.dir, 'c.json');
    recordChecksums(store, [{ path: f, sha256: await sha256File(f) }, { path: path.join(t.dir, 'gone'), sha256: 'x' }]);
    assert.equal(recordedChecksum(store, f), '2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824');
  });
});

describe('machineInfo', () => {
  let t: { dir: string; cleanup: () => void };
  beforeEach(() => (t = tempDir('majicflux-smi-')));
  afterEach(() => t.cleanup());

  it("reads the GPU from nvidia-smi; the user's setting overrides its memory; no nvidia-smi, no GPU", async () => {
    const smi = path.join(t.dir, 'nvidia-smi');
    fs.writeFileSync(smi, '#!/bin/sh\necho "NVIDIA GeForce RTX 3060, 12288"\necho "NVIDIA A100, 81920"\n', { mode: 0o755 });
    const m = await machineInfo({ nvidiaSmi: smi });
    assert.equal(m.gpuName, 'NVIDIA GeForce RTX 3060');
    assert.equal(m.gpuMemory, 12 * GiB);
    assert.ok(m.totalMemory > 0 && m.cpus > 0);
    const o = await machineInfo({ nvidiaSmi: smi, gpuMemory: 8 * GiB });
    assert.equal(o.gpuMemory, 8 * GiB);
    const none = await machineInfo({ nvidiaSmi: path.join(t.dir, 'absent'), gpu: { platform: 'linux', drmRoot: path.join(t.dir, 'absent') } });
    assert.equal(none.gpuMemory, undefined);
    assert.equal(none.gpuName, undefined);
    const slow = path.join(t.dir, 'slow-smi');
    fs.writeFileSync(slow, '#!/bin/sh\nsleep 5\n', { mode: 0o755 });
    const started = Date.now();
    assert.equal((await machineInfo({ nvidiaSmi: slow, timeoutMs: 200, gpu: { platform: 'linux', drmRoot: path.join(t.dir, 'absent') } })).gpuMemory, undefined);
    assert.ok(Date.now() - started < 3000);
  });
});


describe('models: checking a model folder that is not there (issue 15 item 4)', () => {
  it('gives every part the same reason, "model folder not found", so it can be said once', async () => {
    const tmp = tempDir();
    try {
      const dir = path.join(tmp.dir, 'no-such-model');
      const report = await checkModel({ dir }, { machine: { platform: 'linux', arch: 'x64', cpus: 2, totalMemory: 2 ** 34, freeMemory: 2 ** 33 } });
      assert.equal(report.model.complete, false);
      assert.equal(report.model.parts.length, 6);
      assert.deepEqual([...new Set(report.model.parts.map((p) => `${p.status}: ${p.message}`))], [`missing: model folder not found: ${dir}`]);
    } finally {
      tmp.cleanup();
    }
  });
});
