// LoRA against diffusers' load_lora_weights + set_adapters (test/fixtures/flux-tiny/cases/lora*.json).
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { DitInputs, FluxTransformer } from '../../src/inference/graphs/fluxTransformer';
import { readLora } from '../../src/inference/formats/lora';
import { ditLora, LoraBranch } from '../../src/inference/formats/loraDit';
import { openTensors } from '../../src/inference/formats/safetensors';
import { writeSafetensors } from '../../src/inference/formats/safetensorsWriter';
import { FluxPipeline } from '../../src/inference/pipeline/pipeline';
import { assertGoldenClose, assertMaxAbs, GOLDEN_CASES, GOLDEN_MODELS, goldenCase, KOHYA_DROPPED_BY_DIFFUSERS } from '../helpers/golden';

interface LoraCases {
  cases: Record<string, Array<{ file: string; strength: number }>>;
  pipeline: { file: string; lora: string; strength: number; prompt: string; height: number; width: number; num_inference_steps: number; guidance_scale: number; max_sequence_length: number };
}
const meta: LoraCases = JSON.parse(fs.readFileSync(path.join(GOLDEN_CASES, 'lora.json'), 'utf8'));
const BF16_FILE = path.join(GOLDEN_MODELS, 'flux-tiny.safetensors');

// The reference's subset of a kohya file (KOHYA_DROPPED_BY_DIFFUSERS); that MajicFLUX applies the
// rest too, lora.test.ts checks against the weights merged.
const TOP_LEVEL = KOHYA_DROPPED_BY_DIFFUSERS;
const KOHYA_TOP_LEVEL = new RegExp(`^lora_unet_${KOHYA_DROPPED_BY_DIFFUSERS.source.slice(1)}`);

function inputs(): DitInputs {
  const c = goldenCase('transformer.safetensors');
  return {
    img: c.readF32('hidden_states'), txt: c.readF32('encoder_hidden_states'), vec: c.readF32('pooled_projections'),
    timestep: c.readF32('a.timestep')[0], guidance: c.readF32('a.guidance')[0], imgIds: c.readF32('img_ids'), txtIds: c.readF32('txt_ids'),
  };
}

describe('LoRA golden cases (diffusers load_lora_weights)', function () {
  this.timeout(300_000);

  for (const [what, source] of [['BFL file', BF16_FILE], ['diffusers folder', path.join(GOLDEN_MODELS, 'transformer')]] as const) {
    it(`${what}: base, kohya, kohya at 0.5, PEFT at 0.7, XLabs and kohya 0.8 + PEFT −0.5 stacked match the reference`, async () => {
      const t = await FluxTransformer.load(source, { format: 'fp32', inlineLimit: 0 });
      try {
        const expected = (k: string) => goldenCase('lora-cases.safetensors').readF32(k);
        const base = await t.forward(inputs());
        assertGoldenClose(base, expected('base'), 'base');
        // Mapped once per file, as the pipeline caches them; the file name is the id.
        const mapped = new Map<string, ReadonlyMap<string, LoraBranch>>();
        const branchesOf = (file: string) => {
          if (!mapped.has(file)) {
            const d = ditLora(readLora(path.join(GOLDEN_CASES, file)), t.config, t.linearShapes);
            assert.deepEqual(d.skipped, [], `${file}: every DiT key maps`);
            const kohya = file.includes('kohya');
            mapped.set(file, new Map([...d.branches].filter(([n]) => !kohya || !TOP_LEVEL.test(n))));
          }
          return mapped.get(file)!;
        };
        for (const [key, combo] of Object.entries(meta.cases)) {
          await t.setLoras(combo.map((c) => ({ branches: branchesOf(c.file), strength: c.strength, id: c.file })));
          const s = assertGoldenClose(await t.forward(inputs()), expected(key), key);
          console.log(`      ${key}: max abs ${s.maxAbs.toExponential(2)} (of ${s.maxRef.toFixed(2)}), rel L2 ${s.relL2.toExponential(2)}`);
        }
        // Rebuilt for kohya, PEFT, XLabs and kohya + PEFT; kohya at 0.5 only fed another strength.
        assert.equal(t.sessionBuilds, 5, 'one load and four rebuilds');
        const session = (t as unknown as { session: object }).session;
        await t.setLoras([]);
        const after = await t.forward(inputs());
        for (let i = 0; i < base.length; i++) if (after[i] !== base[i]) assert.fail(`LoRAs removed: element ${i} is ${after[i]}, the base gave ${base[i]}`);
        assert.equal((t as unknown as { session: object }).session, session, 'removing them does not rebuild');
        assert.equal(t.sessionBuilds, 5);
      } finally {
        await t.release();
      }
    });
  }

  it('the pipeline with the kohya LoRA (CLIP layers included) at 0.8: every step\'s latent and the image match', async () => {
    const p = meta.pipeline;
    const cacheDir = fs.mkdtempSync(path.join(os.tmpdir(), 'lora-golden-'));
    // The reference's subset of the file (see TOP_LEVEL), under the same name.
    const lora = path.join(cacheDir, p.lora);
    const src = openTensors(path.join(GOLDEN_CASES, p.lora));
    writeSafetensors(lora, src.names().filter((n) => !KOHYA_TOP_LEVEL.test(n)).map((n) => ({ name: n, dtype: src.info(n).dtype, shape: src.info(n).shape, bytes: () => src.readBytes(n) })));
    src.close();
    const pipeline = await FluxPipeline.create({ dir: GOLDEN_MODELS, transformer: BF16_FILE }, { weights: 'fp32', ep: 'cpu', memory: 'resident', cacheDir });
    try {
      const golden = goldenCase(p.file);
      const seen: Float32Array[] = [];
      const result = await pipeline.generate(
        { prompt: p.prompt, width: p.width, height: p.height, steps: p.num_inference_steps, guidance: p.guidance_scale, t5MaxLength: p.max_sequence_length, latentsFile: path.join(GOLDEN_CASES, p.file), seed: 0, loras: [{ path: lora, strength: p.strength }] },
        { onStep: (s) => seen.push(s.latents.slice()) },
      );
      assert.equal(seen.length, p.num_inference_steps);
      seen.forEach((l, k) => assertGoldenClose(l, golden.readF32(`latents_after_step_${k}`), `step ${k}`));
      assertMaxAbs(result.image, golden.readF32('image'), 1e-3, 'image');
      assert.deepEqual(result.metadata.loras?.map((l) => [l.name, l.strength]), [['lora-kohya', 0.8]]);
    } finally {
      await pipeline.release();
      fs.rmSync(cacheDir, { recursive: true, force: true });
    }
  });
});

describe('LoRA golden cases, float16 compute (the GPU graphs, run on the CPU)', function () {
  this.timeout(300_000);
  it('PEFT at 0.7 and XLabs with fp16 weights and float16 activations: within the README\'s float16 order (relative L2 ≤ 1e-2)', async () => {
    const cacheDir = fs.mkdtempSync(path.join(os.tmpdir(), 'lora-f16-'));
    const t = await FluxTransformer.load(BF16_FILE, { format: 'fp16', compute: 'float16', inlineLimit: 0, cacheDir });
    // Every file under the cache with its size: the LoRA factors must stay out of the base weight cache.
    const cacheFiles = () => fs.readdirSync(cacheDir, { recursive: true, withFileTypes: true }).filter((e) => e.isFile()).map((e) => `${path.join(e.parentPath, e.name)}:${fs.statSync(path.join(e.parentPath, e.name)).size}`).sort();
    const before = cacheFiles();
    assert.ok(before.length > 0, 'the fp16 weights are cached');
    try {
      for (const key of ['peft@0.7', 'xlabs']) {
        const c = meta.cases[key][0];
        await t.setLoras([{ branches: ditLora(readLora(path.join(GOLDEN_CASES, c.file)), t.config, t.linearShapes).branches, strength: c.strength }]);
        const s = assertGoldenClose(await t.forward(inputs()), goldenCase('lora-cases.safetensors').readF32(key), `float16 ${key}`, { maxAbsRel: 1e-2, relL2: 1e-2 });
        console.log(`      float16 ${key}: max abs ${s.maxAbs.toExponential(2)}, rel L2 ${s.relL2.toExponential(2)}`);
      }
      assert.equal(t.sessionBuilds, 3, 'a rebuild per new LoRA file');
      assert.deepEqual(cacheFiles(), before, 'the rebuilds added nothing to the weight cache');
    } finally {
      await t.release();
      fs.rmSync(cacheDir, { recursive: true, force: true });
    }
  });
});
