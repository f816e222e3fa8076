import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { CancelledError, ModelError, UserError } from '../../src/shared/api';
import { FluxPipeline } from '../../src/inference/pipeline/pipeline';
import { assertGoldenClose, assertMaxAbs, compare, GOLDEN_CASES, GOLDEN_MODELS, goldenCase } from '../helpers/golden';

interface PipelineCase { file: string; png: string; prompt: string; height: number; width: number; num_inference_steps: number; guidance_scale: number; max_sequence_length: number }
const cases: PipelineCase[] = JSON.parse(fs.readFileSync(path.join(GOLDEN_CASES, 'pipeline.json'), 'utf8'));
const cacheDir = fs.mkdtempSync(path.join(os.tmpdir(), 'mf-cache-'));

describe('FluxPipeline on the golden tiny model (CPU, fp32 compute)', () => {
  for (const dit of ['flux-tiny.safetensors', 'transformer']) {
    describe(`DiT from ${dit}`, () => {
      let pipeline: FluxPipeline;
      before(async () => {
        pipeline = await FluxPipeline.create({ dir: GOLDEN_MODELS, transformer: path.join(GOLDEN_MODELS, dit) }, { weights: 'fp32', ep: 'cpu', memory: 'resident', cacheDir });
      });
      after(() => pipeline.release());

      cases.forEach((c, idx) => {
        it(`case ${idx}: every step's latent and the final image match (${c.width}×${c.height}, ${c.num_inference_steps} steps)`, async () => {
          const golden = goldenCase(c.file);
          const seen: Float32Array[] = [];
          const result = await pipeline.generate(
            { prompt: c.prompt, width: c.width, height: c.height, steps: c.num_inference_steps, guidance: c.guidance_scale, t5MaxLength: c.max_sequence_length, latentsFile: path.join(GOLDEN_CASES, c.file), seed: 0 },
            { onStep: (p) => seen.push(p.latents.slice()) },
          );
          assert.equal(seen.length, c.num_inference_steps);
          seen.forEach((l, k) => assertGoldenClose(l, golden.readF32(`latents_after_step_${k}`), `case ${idx} step ${k}`));
          assertMaxAbs(result.image, golden.readF32('image'), 1e-3, `case ${idx} image`);
        });
      });
    });
  }

  it('first use of a format says in the log how far the weights are converted into the cache; a warm cache says nothing', async () => {
    const cache = fs.mkdtempSync(path.join(os.tmpdir(), 'mf-prepare-'));
    const spec = { dir: GOLDEN_MODELS, transformer: path.join(GOLDEN_MODELS, 'flux-tiny.safetensors') };
    const loads: string[] = [];
    const run = async () => {
      const lines: string[] = [];
      loads.length = 0;
      const p = await FluxPipeline.create(spec, { weights: 'int8', ep: 'cpu', memory: 'sequential', cacheDir: cache, ditTuning: { inlineLimit: 0 } }, (_, m) => lines.push(m));
      await p.generate({ prompt: 'a cat', width: 64, height: 64, steps: 1, seed: 1 }, { onLoad: (c, phase, f) => loads.push(`${c} ${phase}${f === undefined ? '' : ` ${f}`}`) });
      await p.release();
      return lines.filter((l) => /preparing its weights/.test(l));
    };
    try {
      const first = await run();
      // The job hears it too (issue 15 item 2): load, prepare with a growing fraction, load again once converted, loaded.
      const dit = loads.filter((l) => l.startsWith('dit '));
      assert.equal(dit[0], 'dit load');
      const fractions = dit.filter((l) => l.startsWith('dit prepare ')).map((l) => Number(l.split(' ')[2]));
      assert.ok(fractions.length >= 2, dit.join('\n'));
      assert.ok(fractions.every((f, i) => f > 0 && f < 1 && (i === 0 || f > fractions[i - 1])), dit.join('\n'));
      assert.deepEqual(dit.slice(-2), ['dit load', 'dit loaded']);
      assert.deepEqual(loads.filter((l) => !l.startsWith('dit ')), ['clip load', 'clip loaded', 't5 load', 't5 loaded', 'vae load', 'vae loaded']);
      const percents = first.filter((l) => l.startsWith('dit:')).map((l) => Number(/(\d+) %$/.exec(l)![1]));
      assert.ok(percents.length >= 2, first.join('\n'));
      assert.deepEqual(percents, [...percents].sort((a, b) => a - b), 'never goes backwards');
      assert.equal(percents.at(-1), 100);
      assert.deepEqual(await run(), [], 'the cache is warm: nothing to prepare');
      assert.ok(!loads.some((l) => l.includes('prepare')), loads.join('\n'));
    } finally {
      fs.rmSync(cache, { recursive: true, force: true });
    }
  });

  it('a cancel during a first use\'s weight conversion ends the job there (cancelled, not a load failure); the next job finishes the conversion', async () => {
    const cache = fs.mkdtempSync(path.join(os.tmpdir(), 'mf-prepare-cancel-'));
    const spec = { dir: GOLDEN_MODELS, transformer: path.join(GOLDEN_MODELS, 'flux-tiny.safetensors') };
    const p = await FluxPipeline.create(spec, { weights: 'int8', ep: 'cpu', memory: 'sequential', cacheDir: cache, ditTuning: { inlineLimit: 0 } });
    try {
      const ac = new AbortController();
      const fractions: number[] = [];
      await assert.rejects(
        p.generate({ prompt: 'a cat', width: 64, height: 64, steps: 1, seed: 1 }, {
          signal: ac.signal,
          onLoad: (c, phase, f) => {
            if (c !== 'dit' || phase !== 'prepare') return;
            fractions.push(f!);
            ac.abort();
          },
        }),
        CancelledError,
      );
      assert.ok(fractions.length >= 1 && fractions.at(-1)! < 0.5, `stopped early: ${fractions.join(', ')}`);
      const fresh: number[] = [];
      await p.generate({ prompt: 'a cat', width: 64, height: 64, steps: 1, seed: 1 }, { onLoad: (c, phase, f) => c === 'dit' && phase === 'prepare' && fresh.push(f!) });
      assert.ok(fresh.length >= 1, 'the conversion goes on in the next job');
    } finally {
      await p.release();
      fs.rmSync(cache, { recursive: true, force: true });
    }
  });

  it('a provider that is not there is said once for the job, not once per part (the four parts ask alike)', async () => {
    const missing = process.platform === 'win32' ? 'coreml' : 'dml';
    const lines: string[] = [];
    const pipeline = await FluxPipeline.create({ dir: GOLDEN_MODELS, transformer: path.join(GOLDEN_MODELS, 'flux-tiny.safetensors') }, { weights: 'fp32', ep: missing, memory: 'sequential', cacheDir }, (level, m) => lines.push(`${level} ${m}`));
    try {
      await pipeline.generate({ prompt: 'x', width: 64, height: 64, steps: 1, seed: 1 });
      const said = lines.filter((l) => l.includes(`${missing} is not available in onnxruntime-node`));
      assert.equal(said.length, 1, lines.join('\n'));
      assert.match(said[0], /^warn \w+: dml is not available|^warn \w+: coreml is not available/);
    } finally {
      await pipeline.release();
    }
  });

  it('cancels between steps and reports CancelledError', async () => {
    const pipeline = await FluxPipeline.create({ dir: GOLDEN_MODELS, transformer: path.join(GOLDEN_MODELS, 'flux-tiny.safetensors') }, { weights: 'fp32', ep: 'cpu', memory: 'sequential', cacheDir });
    const ac = new AbortController();
    let steps = 0;
    await assert.rejects(
      pipeline.generate({ prompt: 'x', width: 64, height: 64, steps: 10, seed: 1 }, { signal: ac.signal, onStep: () => { if (++steps === 2) ac.abort(); } }),
      CancelledError,
    );
    assert.equal(steps, 2);
    await pipeline.release();
  });

  it('gives the same image for the same seed, sequential and resident; the second run uses cached prompt embeddings', async () => {
    const spec = { dir: GOLDEN_MODELS, transformer: path.join(GOLDEN_MODELS, 'flux-tiny-fp8.safetensors') };
    const a = await FluxPipeline.create(spec, { weights: 'fp8', ep: 'cpu', memory: 'sequential', cacheDir });
    const b = await FluxPipeline.create(spec, { weights: 'fp8', ep: 'cpu', memory: 'resident', cacheDir });
    const params = { prompt: 'a cat', width: 64, height: 96, steps: 2, seed: 42 };
    const ra = await a.generate(params);
    const rb = await b.generate(params);
    assert.deepEqual(compare(ra.image, rb.image).maxAbs, 0);
    assert.deepEqual(a.loaded(), []);
    assert.deepEqual(b.loaded().sort(), ['clip', 'dit', 't5', 'vae']);
    const again = await b.generate(params);
    assert.ok(again.notes.includes('prompt embeddings from cache'));
    assert.ok(!again.stages.some((s) => s.stage === 'text'));
    assert.equal(compare(again.image, rb.image).maxAbs, 0);
    const other = await b.generate({ ...params, seed: 43 });
    assert.ok(compare(other.image, rb.image).maxAbs > 0.01, 'another seed gives another image');
    await a.release();
    await b.release();
  });

  // The T5 graph was always built for 512 tokens: any other t5MaxLength (256, schnell's) failed
  // after the encoders loaded, with "T5 encoder was built for 512 token ids per prompt" and a stack.
  it('runs a job at any t5MaxLength (256 for schnell-type models), the loaded T5 rebuilt when the next job asks for another', async () => {
    const pipeline = await FluxPipeline.create({ dir: GOLDEN_MODELS, transformer: path.join(GOLDEN_MODELS, 'flux-tiny.safetensors') }, { weights: 'fp32', ep: 'cpu', memory: 'resident', cacheDir });
    try {
      const params = { prompt: 'a cat', width: 64, height: 64, steps: 1, seed: 7 };
      const short = await pipeline.generate({ ...params, t5MaxLength: 256 });
      assert.equal(short.metadata.t5MaxLength, 256);
      const full = await pipeline.generate({ ...params, prompt: 'a dog', t5MaxLength: 512 });
      assert.equal(full.metadata.t5MaxLength, 512);
      const odd = await pipeline.generate({ ...params, prompt: 'a dog', t5MaxLength: 77 });
      assert.ok(compare(odd.image, full.image).maxAbs > 0, 'another text length is another DiT input');
      const again = await pipeline.generate({ ...params, prompt: 'a bird', t5MaxLength: 256 });
      assert.equal(again.metadata.t5MaxLength, 256);
    } finally {
      await pipeline.release();
    }
  });

  it('memory auto: resident when the model fits the RAM budget, sequential when it does not', async () => {
    const spec = { dir: GOLDEN_MODELS, transformer: path.join(GOLDEN_MODELS, 'flux-tiny.safetensors') };
    const need = (await FluxPipeline.create(spec, { weights: 'fp32', ep: 'cpu', memory: 'auto' })).files.residentBytes('fp32');
    assert.equal((await FluxPipeline.create(spec, { weights: 'fp32', ep: 'cpu', memory: 'auto', memoryBudget: need * 2 })).memoryMode(), 'resident');
    assert.equal((await FluxPipeline.create(spec, { weights: 'fp32', ep: 'cpu', memory: 'auto', memoryBudget: need / 2 })).memoryMode(), 'sequential');
    assert.equal((await FluxPipeline.create(spec, { weights: 'fp32', ep: 'cpu', memory: 'resident', memoryBudget: 1 })).memoryMode(), 'resident', 'an explicit mode wins');
  });

  it('a weight cache folder that cannot be written says which folder, why, and the setting that moves it (not Node\'s ENOTDIR)', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'mf-cache-blocked-'));
    try {
      const blocker = path.join(dir, 'a-file');
      fs.writeFileSync(blocker, '');
      const cacheDir = path.join(blocker, 'weights');
      const p = await FluxPipeline.create({ dir: GOLDEN_MODELS, transformer: path.join(GOLDEN_MODELS, 'flux-tiny.safetensors') }, { weights: 'int8', ep: 'cpu', memory: 'sequential', cacheDir, ditTuning: { inlineLimit: 0 } });
      await assert.rejects(p.generate({ prompt: 'a cat', width: 64, height: 64, steps: 1, seed: 1 }), (e: Error) => {
        assert.ok(e instanceof UserError, String(e));
        assert.match(e.message, /^Could not load the dit: its converted weights cannot be written to the weight cache folder .*a-file\/weights: a file is in the way/);
        assert.match(e.message, /majicflux\.weightCache\.folder setting; --cache on the command line/);
        return true;
      });
      await p.release();
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  it('a damaged tokenizer or scheduler file is a model problem naming the file, the scheduler found before the prompt is encoded', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'mf-damaged-'));
    try {
      for (const [part, file] of [['tokenizer_2', 'tokenizer.json'], ['scheduler', 'scheduler_config.json']]) {
        const model = path.join(dir, part);
        fs.cpSync(GOLDEN_MODELS, model, { recursive: true });
        fs.writeFileSync(path.join(model, part, file), '{"cut short');
        const stages: string[] = [];
        const p = await FluxPipeline.create({ dir: model, transformer: path.join(model, 'flux-tiny.safetensors') }, { weights: 'fp32', ep: 'cpu', memory: 'sequential' });
        await assert.rejects(p.generate({ prompt: 'a cat', width: 64, height: 64, steps: 1, seed: 1 }, { onStage: (st, state) => stages.push(`${st} ${state}`) }), (e: Error) => {
          assert.ok(e instanceof ModelError, `${part}: ${e.stack}`);
          assert.ok(e.message.startsWith(path.join(model, part, file)), e.message);
          return true;
        });
        if (part === 'scheduler') assert.deepEqual(stages, [], 'no prompt encoding for a job that cannot run');
        await p.release();
      }
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  it('rejects sizes that are not multiples of 16 with a message that suggests valid ones', async () => {
    const p = await FluxPipeline.create({ dir: GOLDEN_MODELS, transformer: path.join(GOLDEN_MODELS, 'flux-tiny.safetensors') }, { ep: 'cpu' });
    await assert.rejects(p.generate({ prompt: 'x', width: 100, height: 64 }), /multiple of 16.*96 or 112/);
  });

  it('says what is missing from an incomplete model folder', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'mf-model-'));
    fs.cpSync(path.join(GOLDEN_MODELS, 'text_encoder'), path.join(dir, 'text_encoder'), { recursive: true });
    await assert.rejects(FluxPipeline.create({ dir }), (e: Error) => /T5 text encoder/.test(e.message) && /VAE/.test(e.message) && /Found: text_encoder/.test(e.message));
  });

  describe('corrupt weights and degenerate settings fail the job instead of writing a black image', () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'mf-corrupt-'));
    after(() => fs.rmSync(dir, { recursive: true, force: true }));

    /** A copy of a golden file (and its sidecar config) with one tensor's bytes replaced by `pattern`, repeated. */
    function corrupt(file: string, tensor: string, pattern: number[]): string {
      const bytes = fs.readFileSync(path.join(GOLDEN_MODELS, file));
      const n = Number(bytes.readBigUInt64LE(0));
      const header = JSON.parse(bytes.subarray(8, 8 + n).toString('utf8')) as Record<string, { data_offsets: [number, number] }>;
      const [begin, end] = header[tensor].data_offsets;
      for (let o = 8 + n + begin; o < 8 + n + end; o++) bytes[o] = pattern[(o - 8 - n - begin) % pattern.length];
      const out = path.join(dir, file);
      fs.writeFileSync(out, bytes);
      const config = file.replace(/\.safetensors$/, '.config.json');
      if (fs.existsSync(path.join(GOLDEN_MODELS, config))) fs.copyFileSync(path.join(GOLDEN_MODELS, config), path.join(dir, config));
      return out;
    }
    const params = { prompt: 'a cat', width: 64, height: 64, steps: 2, seed: 3 };

    it('NaN in the DiT\'s weights: fails at the first step, naming the DiT and a corrupt or mis-read checkpoint', async () => {
      const transformer = corrupt('flux-tiny.safetensors', 'final_layer.linear.bias', [0xc0, 0x7f]); // BF16 NaN
      const p = await FluxPipeline.create({ dir: GOLDEN_MODELS, transformer }, { weights: 'fp32', ep: 'cpu', memory: 'sequential', cacheDir });
      let steps = 0;
      await assert.rejects(p.generate(params, { onStep: () => steps++ }), (e: unknown) => e instanceof UserError && /DiT .*non-finite.*step 1.*corrupt or (were )?mis-read/s.test(e.message) && e.message.includes(transformer));
      assert.equal(steps, 0, 'no step reported with a broken latent');
      await p.release();
    });

    it('infinities in the VAE\'s weights: fails after decoding, naming the VAE', async () => {
      const vae = corrupt('ae.safetensors', 'decoder.conv_out.bias', [0, 0, 0x80, 0x7f]); // F32 +Inf
      const p = await FluxPipeline.create({ dir: GOLDEN_MODELS, transformer: path.join(GOLDEN_MODELS, 'flux-tiny.safetensors'), vae }, { weights: 'fp32', ep: 'cpu', memory: 'sequential', cacheDir });
      await assert.rejects(p.generate(params), (e: unknown) => e instanceof UserError && /VAE .*non-finite.*decod/s.test(e.message) && e.message.includes(vae));
      await p.release();
    });

    it('refuses a shift that gives a black image (5e-324) or none at all, before any work', async () => {
      const p = await FluxPipeline.create({ dir: GOLDEN_MODELS, transformer: path.join(GOLDEN_MODELS, 'flux-tiny.safetensors') }, { weights: 'fp32', ep: 'cpu', memory: 'sequential', cacheDir });
      for (const shift of [5e-324, 0, -1, 1e6, Number.NaN]) {
        let stages = 0;
        await assert.rejects(p.generate({ ...params, shift }, { onStage: () => stages++ }), (e: unknown) => e instanceof UserError && /shift must be "dynamic" or a number from 0\.1 to 100/.test(e.message), String(shift));
        assert.equal(stages, 0);
      }
      await p.release();
    });
  });
});
