import * as assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { UserError } from '../../src/shared/api';
import { FluxPipeline } from '../../src/inference/pipeline/pipeline';
import { checkModel } from '../../src/inference/models/check';
import { demoAssetsDir } from '../../src/inference/models/demo';
import { discoverModels } from '../../src/inference/models/discovery';
import { resolveModel } from '../../src/inference/models/files';
import { inspectPath } from '../../src/inference/formats/layouts/inspect';
import { ClipEncoder } from '../../src/inference/graphs/clip';
import { T5Encoder } from '../../src/inference/graphs/t5';
import { openTensors } from '../../src/inference/formats/safetensors';
import { writeSafetensors } from '../../src/inference/formats/safetensorsWriter';
import { allInOneSidecar, COMFY_PREFIXES, scaledFp8Specs, writeAllInOne } from '../helpers/checkpoints';
import { assertGoldenClose, compare, GOLDEN_MODELS, goldenCase } from '../helpers/golden';
import { tempDir } from '../helpers/writeSafetensors';

describe('all-in-one checkpoints (ComfyUI / Forge: DiT, text encoders and VAE in one file)', function () {
  this.timeout(300_000);
  let tmp: ReturnType<typeof tempDir>;
  let file: string;
  before(() => {
    tmp = tempDir('mf-aio-');
    file = writeAllInOne(path.join(tmp.dir, 'flux-tiny-aio.safetensors'));
    allInOneSidecar(file);
  });
  after(() => tmp.cleanup());

  it('inspect names every component with its prefix, layout and dtypes', () => {
    const r = inspectPath(file);
    assert.equal(r.type, 'checkpoint');
    const got = r.components.map((c) => [c.kind, c.prefix, c.layout, Object.keys(c.stats.dtypes).sort().join('+')]);
    assert.deepEqual(got, [
      ['dit', COMFY_PREFIXES.dit, 'bfl-dit', 'BF16+F8_E4M3'],
      ['vae', COMFY_PREFIXES.vae, 'ldm-vae', 'F32'],
      ['clip', COMFY_PREFIXES.clip, 'hf-clip', 'BF16'],
      ['t5', COMFY_PREFIXES.t5, 'hf-t5', 'BF16'],
    ]);
    const dit = r.components[0];
    assert.equal(dit.architecture.num_heads, 4);
    assert.equal(r.components[2].architecture.num_attention_heads, 4);
  });

  it('a sidecar with only the DiT\'s numbers applies to the DiT; a text encoder that needs its own config is named, with where to give it', () => {
    const other = writeAllInOne(path.join(tmp.dir, 'dit-sidecar-only.safetensors'));
    allInOneSidecar(other, false);
    assert.throws(() => inspectPath(other), (e: Error) =>
      /the CLIP text encoder's number of attention heads comes out as 0\.5/.test(e.message) && /"text_encoder" section of the <name>\.config\.json/.test(e.message));
  });

  it('the bundled CLI: inspect lists the four components; generate --model FILE writes the image', () => {
    const cli = path.resolve(__dirname, '../../dist/cli.js');
    const run = (args: string[]) => spawnSync(process.execPath, [cli, ...args], { cwd: tmp.dir, encoding: 'utf8' });
    const inspected = run(['inspect', file, '--json']);
    assert.equal(inspected.status, 0, inspected.stderr);
    assert.deepEqual(JSON.parse(inspected.stdout).components.map((c: { kind: string }) => c.kind), ['dit', 'vae', 'clip', 't5']);
    const out = path.join(tmp.dir, 'fox.png');
    const generated = run(['generate', 'a red fox', '--model', file, '--width', '64', '--height', '64', '--steps', '1', '--ep', 'cpu', '--out', out, '--quiet']);
    assert.equal(generated.status, 0, generated.stderr);
    assert.ok(fs.statSync(out).size > 0);
  });

  it('generates from the single file the same pixels as the folder with the same DiT, same seed', async () => {
    const params = { prompt: 'a red fox in the snow', width: 64, height: 64, steps: 2, seed: 7 };
    const runtime = { weights: 'fp8', ep: 'cpu', memory: 'resident', cacheDir: path.join(tmp.dir, 'cache') } as const;
    const images: Float32Array[] = [];
    for (const spec of [{ dir: file }, { dir: GOLDEN_MODELS, transformer: path.join(GOLDEN_MODELS, 'flux-tiny-fp8.safetensors') }]) {
      const p = await FluxPipeline.create(spec, runtime);
      try {
        images.push((await p.generate(params)).image);
      } finally {
        await p.release();
      }
    }
    assert.equal(images[0].length, 64 * 64 * 3);
    assert.deepEqual(images[0], images[1]);
  });
});

describe('all-in-one checkpoints: discovery, check, and a DiT alone given as the model', function () {
  this.timeout(120_000);
  let tmp: ReturnType<typeof tempDir>;
  let file: string;
  before(() => {
    tmp = tempDir('mf-aio-find-');
    fs.mkdirSync(path.join(tmp.dir, 'models'));
    file = writeAllInOne(path.join(tmp.dir, 'models', 'flux1-dev-fp8.safetensors'));
    allInOneSidecar(file);
  });
  after(() => tmp.cleanup());

  it('the Models view\'s discovery lists the file as one complete model, every part in it, the shipped tokenizers', () => {
    const found = discoverModels({ searchPaths: [path.join(tmp.dir, 'models')], env: {}, home: tmp.dir });
    assert.equal(found.length, 1, JSON.stringify(found.map((m) => m.root)));
    const [m] = found;
    assert.equal(m.complete, true, JSON.stringify(m.parts));
    assert.deepEqual(m.spec.dir, file);
    for (const role of ['dit', 'clip', 't5', 'vae'] as const) assert.equal(m.parts.find((p) => p.role === role)!.path, file, role);
    assert.equal(m.parts.find((p) => p.role === 'tokenizer')!.path, path.join(demoAssetsDir(), 'tokenizer'));
    // Each part's bytes are its own tensors', not the whole file's.
    const total = m.parts.filter((p) => p.path === file).reduce((a, p) => a + p.bytes!, 0);
    assert.ok(total <= fs.statSync(file).size, `${total} > file size`);
  });

  it('ComfyUI\'s models/checkpoints/ with two all-in-one files and a fine-tuned DiT: each file a model, the DiT paired with one of them', () => {
    const dir = path.join(tmp.dir, 'comfy', 'models', 'checkpoints');
    fs.mkdirSync(dir, { recursive: true });
    for (const [name, dit] of [['a-fp8', 'flux-tiny-fp8.safetensors'], ['b-bf16', 'flux-tiny.safetensors']]) allInOneSidecar(writeAllInOne(path.join(dir, `${name}.safetensors`), dit));
    const finetune = path.join(dir, 'my-finetune.safetensors');
    fs.copyFileSync(path.join(GOLDEN_MODELS, 'flux-tiny.safetensors'), finetune);
    fs.copyFileSync(path.join(GOLDEN_MODELS, 'flux-tiny.config.json'), path.join(dir, 'my-finetune.config.json'));
    const found = discoverModels({ searchPaths: [path.join(tmp.dir, 'comfy', 'models')], env: {}, home: tmp.dir });
    assert.deepEqual(found.map((m) => [m.name, m.complete]), [['a-fp8', true], ['b-bf16', true], ['my-finetune', true]]);
    assert.deepEqual(found.map((m) => m.spec.dir && path.basename(m.spec.dir)), ['a-fp8.safetensors', 'b-bf16.safetensors', 'a-fp8.safetensors']);
    const files = resolveModel(found[2].spec);
    assert.equal(files.transformer, finetune);
    assert.deepEqual([files.vae, files.textEncoder, files.textEncoder2].map((f) => path.basename(f)), ['a-fp8.safetensors', 'a-fp8.safetensors', 'a-fp8.safetensors']);
  });

  it('models check: complete, and the same memory estimates, component by component, as the folder holding the same parts', async () => {
    const single = await checkModel({ dir: file });
    const folder = await checkModel({ dir: GOLDEN_MODELS, transformer: path.join(GOLDEN_MODELS, 'flux-tiny-fp8.safetensors') });
    assert.equal(single.model.complete, true);
    const formats = [...new Set(single.estimates.map((e) => e.weights))].sort();
    assert.deepEqual(formats, ['fp16', 'fp32', 'fp8', 'int4', 'int8']);
    assert.deepEqual(single.estimates.map((e) => e.components), folder.estimates.map((e) => e.components));
  });

  it('a DiT file alone given as the model: refused before loading, saying to pair it with a model folder', async () => {
    await assert.rejects(FluxPipeline.create({ dir: path.join(GOLDEN_MODELS, 'flux-tiny-fp8.safetensors') }, { ep: 'cpu' }), (e: Error) =>
      e instanceof UserError && /VAE \(autoencoder\): flux-tiny-fp8\.safetensors holds none/.test(e.message) && /--transformer FILE/.test(e.message));
  });
});

describe('ComfyUI scaled fp8 text encoder (t5xxl_fp8_e4m3fn_scaled)', function () {
  this.timeout(120_000);
  let tmp: ReturnType<typeof tempDir>;
  before(() => (tmp = tempDir('mf-t5-scaled-')));
  after(() => tmp.cleanup());

  it('encodes like its weights decoded to float32 (codes × scale_weight), with the weights in the file and inlined, and in fp16', async () => {
    const src = openTensors(path.join(GOLDEN_MODELS, 'text_encoder_2', 'model.safetensors.index.json'));
    const { specs, dequantized } = scaledFp8Specs(src);
    const scaled = path.join(tmp.dir, 't5xxl_fp8_e4m3fn_scaled.safetensors');
    writeSafetensors(scaled, specs);
    const reference = path.join(tmp.dir, 't5-reference.safetensors');
    writeSafetensors(reference, specs.filter((s) => !s.name.endsWith('.scale_weight') && s.name !== 'scaled_fp8').map((s) =>
      dequantized.has(s.name) ? { ...s, dtype: 'F32' as const, bytes: () => new Uint8Array(dequantized.get(s.name)!.buffer) } : s));
    const ids = Int32Array.from(goldenCase('text_encoders.safetensors').readF32('13.t5_ids'));
    const encode = async (file: string, opts: object) => {
      const t5 = await T5Encoder.load(file, { maxLength: 512, ...opts });
      try {
        return await t5.encode(ids);
      } finally {
        await t5.release();
      }
    };
    for (const opts of [{}, { inlineLimit: 0 }, { format: 'fp16', fp16Cache: true, cacheDir: path.join(tmp.dir, 'cache'), inlineLimit: 0 }]) {
      const s = assertGoldenClose(await encode(scaled, opts), await encode(reference, opts), `scaled T5 ${JSON.stringify(opts)}`);
      assert.ok(s.maxRef > 0);
    }
    const s = compare(await encode(scaled, {}), goldenCase('text_encoders.safetensors').readF32('13.t5_hidden'));
    console.log(`      scaled fp8 T5 vs golden bf16: rel L2 ${s.relL2.toExponential(2)}`);
    assert.ok(s.relL2 < 0.1);
  });
});

describe('all-in-one checkpoints: the weight caches of its components', function () {
  this.timeout(120_000);
  let tmp: ReturnType<typeof tempDir>;
  before(() => (tmp = tempDir('mf-aio-cache-')));
  after(() => tmp.cleanup());

  it('CLIP and T5 converted to fp16 from one file into one cache folder: each its own cache, each the folder\'s output', async () => {
    const file = writeAllInOne(path.join(tmp.dir, 'aio.safetensors'));
    allInOneSidecar(file);
    const cacheDir = path.join(tmp.dir, 'cache');
    const opts = { format: 'fp16', fp16Cache: true, cacheDir, inlineLimit: 0 } as const;
    const clipIds = Int32Array.from(goldenCase('text_encoders.safetensors').readF32('5.clip_ids'));
    const t5Ids = Int32Array.from(goldenCase('text_encoders.safetensors').readF32('5.t5_ids'));
    const run = async (clipFrom: string, t5From: string) => {
      const clip = await ClipEncoder.load(clipFrom, opts);
      const hidden = (await clip.encode(clipIds)).hidden;
      await clip.release();
      const t5 = await T5Encoder.load(t5From, { ...opts, maxLength: 512 });
      const t5Hidden = await t5.encode(t5Ids);
      await t5.release();
      return [hidden, t5Hidden];
    };
    const [clip, t5] = await run(file, file);
    const [clipRef, t5Ref] = await run(path.join(GOLDEN_MODELS, 'text_encoder'), path.join(GOLDEN_MODELS, 'text_encoder_2'));
    assert.deepEqual(clip, clipRef);
    assert.deepEqual(t5, t5Ref);
    assert.equal(fs.readdirSync(cacheDir).length, 4, 'one cache per component and source');
  });
});
