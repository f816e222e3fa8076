// PNGs from SwarmUI, a FLUX front end people come from: its `parameters` chunk is JSON
// ({"sui_image_params": {…}}), not A1111's text, and must not be read as a prompt.

import * as assert from 'node:assert/strict';
import { insertChunks, iTXtChunk, PARAMETERS_KEYWORD, readPngParameters } from '../../src/inference/formats/pngText';
import { TINY_PNG } from '../helpers/tinyPng';

const withParameters = (text: string) => insertChunks(TINY_PNG, [iTXtChunk(PARAMETERS_KEYWORD, text)]);

describe('PNG parameters from SwarmUI (JSON in the parameters chunk)', () => {
  it('reads sui_image_params: prompt, negative prompt, seed, steps, size, FLUX guidance, CFG scale, model, LoRAs with their weights', async () => {
    const swarm = {
      sui_image_params: {
        prompt: 'a cat in the rain <lora:ink:0.5>', negativeprompt: 'blurry', model: 'Flux/flux1-dev', seed: 42, steps: 20, cfgscale: 1, fluxguidancescale: 3.5,
        width: 896, height: 1152, loras: ['film-grain', 'styles/watercolor.safetensors'], loraweights: ['0.8', '-0.3'], swarm_version: '0.9.6',
      },
      sui_models: [],
    };
    const read = await readPngParameters(withParameters(JSON.stringify(swarm, null, 2)));
    assert.deepEqual(read.dropped, undefined);
    assert.deepEqual(read.params, {
      prompt: 'a cat in the rain', negativePrompt: 'blurry', seed: 42, steps: 20, width: 896, height: 1152, guidance: 3.5, cfgScale: 1, model: 'Flux/flux1-dev', version: '0.9.6',
      loras: [{ name: 'ink', strength: 0.5 }, { name: 'film-grain', strength: 0.8 }, { name: 'watercolor', strength: -0.3 }],
    });
  });

  it('a parameters chunk that is other JSON gives no parameters, never a prompt made of JSON', async () => {
    for (const text of ['{"sui_image_params": {"seed": 1}}', '{"something": "else"}']) {
      const read = await readPngParameters(withParameters(text));
      assert.equal(read.params?.prompt, undefined, text);
    }
  });
});
