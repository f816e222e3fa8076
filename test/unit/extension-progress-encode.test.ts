// The `encode` stage (an input image made latents, or a hires pass's first result) in a job's
// progress: its own phase between the prompt and the steps, keeping the steps done so far.
import * as assert from 'node:assert/strict';
import type { Job } from '../../src/extension/jobs';
import { jobProgress, PHASES } from '../../src/extension/progress';

const job = (over: Partial<Job>): Job => ({ id: 'j', request: { params: { prompt: 'x', steps: 8 }, output: '/tmp/x.png' }, origin: { kind: 'panel' }, state: 'running', created: 0, ...over });

describe('job progress: the encode stage', () => {
  it('is a phase of its own after the prompt and before the steps', () => {
    assert.ok(PHASES.indexOf('text') < PHASES.indexOf('encode') && PHASES.indexOf('encode') < PHASES.indexOf('denoise'));
    assert.deepEqual(jobProgress(job({ stage: 'encode' })), { phase: 'encode', loading: undefined, step: 0, steps: 8, fraction: 0 });
  });

  it('between two passes (hires) it keeps the steps done and the fraction, not a full bar', () => {
    const p = jobProgress(job({ stage: 'encode', step: 4, steps: 6, loading: { component: 'vae', phase: 'load' } }));
    assert.deepEqual(p, { phase: 'encode', loading: { component: 'vae', preparing: false }, step: 4, steps: 6, fraction: 4 / 6 });
  });

  it('before the first step, an image-to-image job counts the steps it will run, a hires pass its own too', () => {
    const params = (p: object) => ({ id: 'j', request: { params: { prompt: 'x', ...p }, output: '/tmp/x.png' }, origin: { kind: 'panel' }, state: 'running', created: 0, stage: 'encode' }) as Job;
    // 28 steps at strength 0.6: diffusers starts at int(28 − 16.8) = 11 and runs 17; hires 20 at 0.45: int(20 − 9) = 11, 9 run.
    assert.equal(jobProgress(params({ steps: 28, image: '/i.png', strength: 0.6 }))?.steps, 17);
    assert.equal(jobProgress(params({ steps: 20, hires: { scale: 2, strength: 0.45 } }))?.steps, 20 + 9);
    assert.equal(jobProgress(params({ steps: 8 }))?.steps, 8);
  });

  it('the DiT built again with a new LoRA (load phase `lora`) shows inside the denoise stage, at the steps done so far', () => {
    const p = jobProgress(job({ stage: 'denoise', step: 0, steps: 8, loading: { component: 'dit', phase: 'lora' } }));
    assert.deepEqual(p, { phase: 'denoise', loading: { component: 'dit', preparing: false, lora: true }, step: 0, steps: 8, fraction: 0 });
    assert.equal(jobProgress(job({ stage: 'denoise', loading: { component: 'dit', phase: 'load' } }))?.loading?.lora, undefined, 'a plain load is not a LoRA');
  });
});
