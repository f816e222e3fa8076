import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { FluxPipeline } from '../../src/inference/pipeline/pipeline';
import { combineCfg } from '../../src/inference/pipeline/trueCfg';
import { formatA1111Parameters, imageParameters } from '../../src/inference/formats/infotext';
import { assertGoldenClose, assertMaxAbs, compare, GOLDEN_CASES, GOLDEN_MODELS, goldenCase } from '../helpers/golden';

interface CfgCase { file: string; prompt: string; negative_prompt: string; true_cfg_scale: number; height: number; width: number; num_inference_steps: number; guidance_scale: number; max_sequence_length: number }
const cases: CfgCase[] = JSON.parse(fs.readFileSync(path.join(GOLDEN_CASES, 'cfg.json'), 'utf8'));

const cacheDir = fs.mkdtempSync(path.join(os.tmpdir(), 'mf-cfg-'));

describe('true CFG (negative prompt, true_cfg_scale)', () => {
  it('combines as diffusers: v_neg + scale·(v_pos − v_neg)', () => {
    assert.deepEqual(Array.from(combineCfg(Float32Array.of(1, -2, 0.5), Float32Array.of(0, 2, 0.5), 4)), [4, -14, 0.5]);
    assert.throws(() => combineCfg(new Float32Array(2), new Float32Array(3), 2), /differ in size/);
  });

  describe('in the pipeline (tiny model, CPU, fp32)', () => {
    let pipeline: FluxPipeline;
    before(async () => {
      pipeline = await FluxPipeline.create({ dir: GOLDEN_MODELS, transformer: path.join(GOLDEN_MODELS, 'flux-tiny.safetensors') }, { weights: 'fp32', ep: 'cpu', memory: 'resident', cacheDir });
    });
    after(() => pipeline.release());
    const base = { width: 64, height: 96, steps: 1, seed: 7, guidance: 3.5 };
    const firstStep = async (params: Parameters<FluxPipeline['generate']>[0]) => {
      let latents: Float32Array | undefined;
      const r = await pipeline.generate(params, { onStep: (s) => (latents = s.latents.slice()) });
      return { latents: latents!, result: r };
    };

    cases.forEach((c, idx) => {
      it(`golden cfg-${idx}: every step's latent and the image match diffusers' FluxPipeline (true_cfg_scale ${c.true_cfg_scale}, negative ${JSON.stringify(c.negative_prompt)})`, async () => {
        const golden = goldenCase(c.file);
        const seen: Float32Array[] = [];
        const result = await pipeline.generate(
          {
            prompt: c.prompt, negativePrompt: c.negative_prompt, trueCfgScale: c.true_cfg_scale, width: c.width, height: c.height, steps: c.num_inference_steps, guidance: c.guidance_scale,
            t5MaxLength: c.max_sequence_length, latentsFile: path.join(GOLDEN_CASES, c.file), seed: 0,
          },
          { onStep: (p) => seen.push(p.latents.slice()) },
        );
        assert.equal(seen.length, c.num_inference_steps);
        seen.forEach((l, k) => assertGoldenClose(l, golden.readF32(`latents_after_step_${k}`), `cfg-${idx} step ${k}`));
        assertMaxAbs(result.image, golden.readF32('image'), 1e-3, `cfg-${idx} image`);
        assert.equal(result.metadata.negativePrompt, c.negative_prompt);
        assert.equal(result.metadata.trueCfgScale, c.true_cfg_scale);
      });
    });

    it('one Euler step is linear in the velocity: the CFG step equals neg + scale·(pos − neg) of the two plain steps', async () => {
      const pos = await firstStep({ ...base, prompt: 'a red fox' });
      const neg = await firstStep({ ...base, prompt: 'blurry' });
      const cfg = await firstStep({ ...base, prompt: 'a red fox', negativePrompt: 'blurry', trueCfgScale: 4 });
      assert.ok(compare(pos.latents, neg.latents).maxAbs > 1e-3, 'the two prompts give different steps');
      const expected = combineCfg(pos.latents, neg.latents, 4);
      assertGoldenClose(cfg.latents, expected, 'CFG step');
      assert.equal(cfg.result.metadata.negativePrompt, 'blurry');
      assert.equal(cfg.result.metadata.trueCfgScale, 4);
      assert.ok(cfg.result.notes.includes('prompt embeddings from cache'), 'both prompts were encoded before: nothing is encoded again');
    });

    it('the empty negative prompt (the default) steers away from the unconditional prediction', async () => {
      const pos = await firstStep({ ...base, prompt: 'a city street' });
      const empty = await firstStep({ ...base, prompt: '' });
      const cfg = await firstStep({ ...base, prompt: 'a city street', trueCfgScale: 2.5 });
      assertGoldenClose(cfg.latents, combineCfg(pos.latents, empty.latents, 2.5), 'CFG step, empty negative');
      assert.equal(cfg.result.metadata.negativePrompt, '');
    });

    it('runs with a LoRA on the DiT (both predictions see it): the LoRA changes the CFG image, the metadata and infotext record both', async () => {
      const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'mf-cfg-lora-'));
      fs.copyFileSync(path.join(GOLDEN_CASES, 'lora-kohya-dit.safetensors'), path.join(dir, 'style.safetensors'));
      const params = { ...base, prompt: 'a lighthouse', negativePrompt: 'blurry', trueCfgScale: 2 };
      const withLora = await pipeline.generate({ ...params, loras: [{ path: path.join(dir, 'style.safetensors'), strength: 0.8 }] });
      const zero = await pipeline.generate({ ...params, loras: [{ path: path.join(dir, 'style.safetensors'), strength: 0 }] });
      const none = await pipeline.generate(params);
      assert.ok(compare(withLora.image, none.image).maxAbs > 0.01, 'the LoRA changes the image');
      assert.equal(compare(zero.image, none.image).maxAbs, 0, 'strength 0 is the base exactly, CFG included');
      assert.deepEqual(withLora.metadata.loras?.map((l) => [l.name, l.strength]), [['style', 0.8]]);
      const text = formatA1111Parameters(imageParameters(withLora.metadata));
      assert.match(text, /^a lighthouse <lora:style:0\.8>\nNegative prompt: blurry\n.*CFG scale: 2,.*Lora hashes: "style: [0-9a-f]{12}"/);
    });

    it('scale 1 is off: a negative prompt alone changes nothing and is not recorded', async () => {
      const plain = await firstStep({ ...base, prompt: 'a boat' });
      const off = await firstStep({ ...base, prompt: 'a boat', negativePrompt: 'water', trueCfgScale: 1 });
      assert.equal(compare(off.result.image, plain.result.image).maxAbs, 0);
      assert.equal(off.result.metadata.negativePrompt, undefined);
      assert.equal(off.result.metadata.trueCfgScale, undefined);
      // …and the user is told so with the image (GenerateResult.warnings), not left to find no effect.
      assert.deepEqual(off.result.warnings, ['negative prompt not used: true CFG is off (scale 1); a true CFG scale above 1 (3.5 is usual) turns it on, at two model runs a step']);
      assert.ok(off.result.notes.includes(off.result.warnings[0]), 'a warning is a note too');
      assert.deepEqual(plain.result.warnings, [], 'no negative prompt: nothing to say');
      assert.deepEqual((await firstStep({ ...base, prompt: 'a boat', negativePrompt: '   ', trueCfgScale: 1 })).result.warnings, [], 'a blank one is no negative prompt');
    });
  });
});
