// Other tools' PNG records read into a re-run's parameters: ComfyUI's graph in its `prompt` chunk
// (formats/infotextComfy.ts: the API form it writes, for its two usual FLUX layouts) and InvokeAI's JSON (infotextInvoke.ts).
import * as assert from 'node:assert/strict';
import { parseComfyPrompt } from '../../src/inference/formats/infotextComfy';
import { parseInvokeMetadata } from '../../src/inference/formats/infotextInvoke';
import { insertChunks, iTXtChunk, readPngParameters } from '../../src/inference/formats/png';
import { TINY_PNG } from '../helpers/tinyPng';


/** KSampler (cfg 1), FluxGuidance over CLIPTextEncode, EmptySD3LatentImage, a model-only LoRA over UNETLoader. */
const KSAMPLER = {
  '6': { class_type: 'CLIPTextEncode', inputs: { text: 'a red fox in fresh snow', clip: ['11', 0] } },
  '7': { class_type: 'CLIPTextEncode', inputs: { text: '', clip: ['11', 0] } },
  '26': { class_type: 'FluxGuidance', inputs: { guidance: 3.5, conditioning: ['6', 0] } },
  '27': { class_type: 'EmptySD3LatentImage', inputs: { width: 1024, height: 768, batch_size: 1 } },
  '12': { class_type: 'UNETLoader', inputs: { unet_name: 'flux/majicflus_v1.safetensors', weight_dtype: 'fp8_e4m3fn' } },
  '30': { class_type: 'LoraLoaderModelOnly', inputs: { lora_name: 'styles\\ink.safetensors', strength_model: 0.8, model: ['12', 0] } },
  '3': { class_type: 'KSampler', inputs: { seed: 1234, steps: 28, cfg: 1, sampler_name: 'euler', scheduler: 'simple', denoise: 1, model: ['30', 0], positive: ['26', 0], negative: ['7', 0], latent_image: ['27', 0] } },
  '9': { class_type: 'SaveImage', inputs: { filename_prefix: 'ComfyUI', images: ['8', 0] } },
};

/** SamplerCustomAdvanced: RandomNoise, BasicGuider over FluxGuidance over CLIPTextEncodeFlux, BasicScheduler. */
const CUSTOM = {
  '5': { class_type: 'EmptyLatentImage', inputs: { width: 832, height: 1216, batch_size: 1 } },
  '6': { class_type: 'CLIPTextEncodeFlux', inputs: { clip_l: 'lighthouse', t5xxl: 'a lighthouse on a cliff at dawn, oil painting', guidance: 4, clip: ['11', 0] } },
  '22': { class_type: 'BasicGuider', inputs: { model: ['12', 0], conditioning: ['6', 0] } },
  '25': { class_type: 'RandomNoise', inputs: { noise_seed: 42 } },
  '17': { class_type: 'BasicScheduler', inputs: { scheduler: 'simple', steps: 20, denoise: 1, model: ['12', 0] } },
  '16': { class_type: 'KSamplerSelect', inputs: { sampler_name: 'euler' } },
  '13': { class_type: 'SamplerCustomAdvanced', inputs: { noise: ['25', 0], guider: ['22', 0], sampler: ['16', 0], sigmas: ['17', 0], latent_image: ['5', 0] } },
};

describe('ComfyUI PNGs: the graph in the prompt chunk read as parameters', () => {
  it('KSampler layout: the positive text through FluxGuidance, seed, steps, size, guidance, cfg, model and LoRA by file name', () => {
    assert.deepEqual(parseComfyPrompt(JSON.stringify(KSAMPLER)), {
      prompt: 'a red fox in fresh snow', guidance: 3.5, cfgScale: 1, seed: 1234, steps: 28, width: 1024, height: 768, model: 'majicflus_v1',
      loras: [{ name: 'ink', strength: 0.8 }], extra: { software: 'ComfyUI', sampler_name: 'euler', scheduler: 'simple' },
    });
  });

  it('SamplerCustomAdvanced layout: seed from RandomNoise, steps from BasicScheduler, the T5 text and guidance of CLIPTextEncodeFlux', () => {
    assert.deepEqual(parseComfyPrompt(JSON.stringify(CUSTOM)), { prompt: 'a lighthouse on a cliff at dawn, oil painting', guidance: 4, seed: 42, steps: 20, width: 832, height: 1216, extra: { software: 'ComfyUI' } });
  });

  it('a negative prompt only where CFG runs (cfg > 1); values fed by other nodes are left out; no text, or not a graph, is no parameters', () => {
    const cfg = structuredClone(KSAMPLER) as Record<string, { class_type: string; inputs: Record<string, unknown> }>;
    cfg['3'].inputs.cfg = 3.5;
    cfg['7'].inputs.text = 'blurry, watermark';
    cfg['3'].inputs.seed = ['40', 0];
    const p = parseComfyPrompt(JSON.stringify(cfg))!;
    assert.equal(p.negativePrompt, 'blurry, watermark');
    assert.equal(p.cfgScale, 3.5);
    assert.equal(p.seed, undefined, 'a linked seed is not a value');
    const noText = structuredClone(KSAMPLER) as Record<string, { class_type: string; inputs: Record<string, unknown> }>;
    noText['6'].inputs.text = ['50', 0];
    assert.equal(parseComfyPrompt(JSON.stringify(noText)), undefined);
    assert.equal(parseComfyPrompt('[1, 2]'), undefined);
    assert.equal(parseComfyPrompt('not json'), undefined);
  });

  it('a ComfyUI PNG re-runs: readPngParameters checks the values as for any tool (its own JSON chunk or A1111 text win when present)', async () => {
    const png = insertChunks(TINY_PNG, [iTXtChunk('prompt', JSON.stringify(KSAMPLER)), iTXtChunk('workflow', '{"nodes":[]}')]);
    const r = await readPngParameters(png);
    assert.equal(r.params?.prompt, 'a red fox in fresh snow');
    assert.deepEqual([r.params?.seed, r.params?.steps, r.params?.width, r.params?.height, r.params?.guidance], [1234, 28, 1024, 768, 3.5]);
    const bad = structuredClone(KSAMPLER) as Record<string, { class_type: string; inputs: Record<string, unknown> }>;
    bad['27'].inputs.width = 1000;
    const checked = await readPngParameters(insertChunks(TINY_PNG, [iTXtChunk('prompt', JSON.stringify(bad))]));
    assert.equal(checked.params?.width, undefined, 'a size a run refuses is left out');
    assert.ok(checked.dropped?.some((d) => /1000/.test(d)), JSON.stringify(checked.dropped));
  });
});

describe('InvokeAI PNGs: the invokeai_metadata chunk read as parameters', () => {
  const META = {
    generation_mode: 'flux_txt2img', positive_prompt: 'a paper lantern at night', negative_prompt: '', width: 768, height: 1024, seed: 99, steps: 30, guidance: 4, scheduler: 'euler',
    model: { key: 'k1', hash: 'blake3:00', name: 'FLUX Dev (Quantized)', base: 'flux', type: 'main' }, loras: [{ model: { key: 'k2', name: 'ink' }, weight: 0.75 }, { lora: { model_name: 'film' }, weight: 0.5 }], app_version: '5.6.0',
  };

  it('reads prompt, seed, steps, size, guidance, model and LoRAs (InvokeAI 4–5 and 3 shapes); an empty negative prompt is none', () => {
    assert.deepEqual(parseInvokeMetadata(JSON.stringify(META)), {
      prompt: 'a paper lantern at night', width: 768, height: 1024, seed: 99, steps: 30, guidance: 4, model: 'FLUX Dev (Quantized)',
      loras: [{ name: 'ink', strength: 0.75 }, { name: 'film', strength: 0.5 }], extra: { software: 'InvokeAI', generation_mode: 'flux_txt2img', scheduler: 'euler', app_version: '5.6.0' },
    });
    assert.equal(parseInvokeMetadata('{"negative_prompt": "x"}'), undefined, 'no prompt: no parameters');
    assert.equal(parseInvokeMetadata('nope'), undefined);
  });

  it('an InvokeAI PNG re-runs through readPngParameters, its values checked', async () => {
    const r = await readPngParameters(insertChunks(TINY_PNG, [iTXtChunk('invokeai_metadata', JSON.stringify(META))]));
    assert.deepEqual([r.params?.prompt, r.params?.seed, r.params?.steps, r.params?.width, r.params?.height, r.params?.guidance], ['a paper lantern at night', 99, 30, 768, 1024, 4]);
  });
});
