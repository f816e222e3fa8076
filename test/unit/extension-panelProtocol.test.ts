import * as assert from 'node:assert/strict';
import { validateFromWebview } from '../../src/extension/panel/protocol';

const good = { prompt: 'a cat', seed: 42, steps: 4, width: 512, height: 768, guidance: 3.5 };
const ID = '123e4567-e89b-12d3-a456-426614174000';

describe('extension: panel messages from the webview', () => {
  it('accepts the declared shapes, rebuilt from known fields only', () => {
    assert.deepEqual(validateFromWebview({ type: 'ready', extra: 1 }), { type: 'ready' });
    assert.deepEqual(validateFromWebview({ type: 'cancel' }), { type: 'cancel' });
    assert.deepEqual(validateFromWebview({ type: 'generate', params: { ...good, file: '/etc/passwd' } }), { type: 'generate', params: good });
    assert.deepEqual(validateFromWebview({ type: 'generate', params: { ...good, seed: -1 } }), { type: 'generate', params: { ...good, seed: -1 } });
    assert.deepEqual(validateFromWebview({ type: 'history', action: 'rerun', id: ID }), { type: 'history', action: 'rerun', id: ID });
    // The form as typed, half-valid values included; unknown or non-numeric fields are dropped.
    assert.deepEqual(
      validateFromWebview({ type: 'saveForm', form: { prompt: '', seed: 5, lock: true, width: 1000, height: 'x', steps: NaN, path: '/etc' } }),
      { type: 'saveForm', form: { prompt: '', seed: 5, lock: true, width: 1000 } },
    );
  });

  it('rejects everything else', () => {
    const bad: unknown[] = [
      null, 42, 'ready', [], {}, { type: 'eval', code: 'x' }, { type: 'generate' },
      { type: 'generate', params: { ...good, width: 500 } },
      { type: 'generate', params: { ...good, width: 8192 } },
      { type: 'generate', params: { ...good, steps: 0 } },
      { type: 'generate', params: { ...good, steps: 2.5 } },
      { type: 'generate', params: { ...good, guidance: Infinity } },
      { type: 'generate', params: { ...good, seed: -2 } },
      { type: 'generate', params: { ...good, prompt: '   ' } },
      { type: 'generate', params: { ...good, prompt: 'x'.repeat(20_001) } },
      { type: 'generate', params: { ...good, prompt: 7 } },
      { type: 'history', action: 'delete', id: ID },
      { type: 'history', action: 'open', id: '../../etc/passwd' },
      { type: 'history', action: 'open', id: '/home/user/image.png' },
      { type: 'history', action: 'open' },
      { type: 'open', path: '/etc/passwd' },
      { type: 'saveForm', form: { prompt: 3 } },
      { type: 'saveForm', form: { prompt: 'x'.repeat(20_001) } },
      { type: 'saveForm' },
    ];
    for (const m of bad) assert.equal(validateFromWebview(m), undefined, JSON.stringify(m));
  });

  it("carries issue 13's parameters: LoRAs, negative prompt with true CFG, input image, hires pass", () => {
    const extra = {
      negativePrompt: 'blurry',
      trueCfgScale: 2.5,
      loras: [{ path: '/loras/ink.safetensors', strength: 0.8 }, { path: '/loras/b.safetensors', strength: -0.5 }],
      image: '/pics/cat.png',
      strength: 0.6,
      imageFit: 'stretch',
      hires: { scale: 1.5, strength: 0.45, upscale: 'latent', steps: 12 },
    };
    assert.deepEqual(validateFromWebview({ type: 'generate', params: { ...good, ...extra } }), { type: 'generate', params: { ...good, ...extra } });
    assert.deepEqual(validateFromWebview({ type: 'history', action: 'vary', id: ID }), { type: 'history', action: 'vary', id: ID });
    for (const m of [{ type: 'pickImage' }, { type: 'clearImage' }, { type: 'listLoras' }, { type: 'dropImage', uri: 'file:///pics/cat.png' }]) assert.deepEqual(validateFromWebview(m), m);
    // The form keeps the LoRAs and the hires switch; a half-typed LoRA strength is dropped, the LoRA kept.
    assert.deepEqual(
      validateFromWebview({ type: 'saveForm', form: { prompt: 'a', negativePrompt: 'x', trueCfgScale: 2, hires: true, hiresScale: 2, hiresSteps: 12, hiresUpscale: 'latent', loras: [{ path: '/l/a.safetensors', strength: NaN }], imageFit: 'crop', image: '/etc/passwd' } }),
      { type: 'saveForm', form: { prompt: 'a', negativePrompt: 'x', trueCfgScale: 2, hires: true, hiresScale: 2, hiresSteps: 12, hiresUpscale: 'latent', loras: [{ path: '/l/a.safetensors' }], imageFit: 'crop' } },
    );
    // Without steps the hires pass takes the first pass's (params.ts).
    assert.deepEqual(
      validateFromWebview({ type: 'generate', params: { ...good, hires: { scale: 2, strength: 0.5, upscale: 'image' } } }),
      { type: 'generate', params: { ...good, hires: { scale: 2, strength: 0.5, upscale: 'image' } } },
    );
    const bad: unknown[] = [
      { type: 'generate', params: { ...good, trueCfgScale: 0.5 } },
      { type: 'generate', params: { ...good, loras: [{ path: '', strength: 1 }] } },
      { type: 'generate', params: { ...good, loras: [{ path: '/a.safetensors', strength: 11 }] } },
      { type: 'generate', params: { ...good, loras: '/a.safetensors' } },
      { type: 'generate', params: { ...good, image: '/a.png', strength: 0 } },
      { type: 'generate', params: { ...good, imageFit: 'fill' } },
      { type: 'generate', params: { ...good, hires: { scale: 1, strength: 0.5 } } },
      { type: 'generate', params: { ...good, hires: { scale: 2 } } },
      { type: 'generate', params: { ...good, hires: { scale: 2, strength: 0.5 } } },
      { type: 'generate', params: { ...good, hires: { scale: 2, strength: 0.5, upscale: 'nearest' } } },
      { type: 'generate', params: { ...good, hires: { scale: 2, strength: 0.5, upscale: 'image', steps: 0 } } },
      { type: 'generate', params: { ...good, hires: { scale: 2, strength: 0.5, upscale: 'image', steps: 2.5 } } },
      { type: 'dropImage' },
      { type: 'dropImage', uri: 'x'.repeat(9000) },
    ];
    for (const m of bad) assert.equal(validateFromWebview(m), undefined, JSON.stringify(m).slice(0, 200));
  });

  it('takes a file dropped from the desktop as a name and bytes only', () => {
    const bytes = new Uint8Array([0x89, 0x50, 0x4e, 0x47]);
    assert.deepEqual(validateFromWebview({ type: 'dropImageBytes', name: 'cat.png', bytes, path: '/etc/passwd' }), { type: 'dropImageBytes', name: 'cat.png', bytes });
    for (const m of [
      { type: 'dropImageBytes', name: 'cat.png' },
      { type: 'dropImageBytes', name: 'cat.png', bytes: [0x89, 0x50] },
      { type: 'dropImageBytes', name: 'cat.png', bytes: 'iVBORw0KGgo=' },
      { type: 'dropImageBytes', name: 'x'.repeat(2000), bytes },
      { type: 'dropImageBytes', bytes },
    ]) assert.equal(validateFromWebview(m), undefined, JSON.stringify(m).slice(0, 100));
  });
});
