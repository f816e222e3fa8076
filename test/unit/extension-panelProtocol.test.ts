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
});
