import * as assert from 'node:assert/strict';
import { attentionChunksFor, opChoicesFor } from '../../src/inference/onnx/providerOps';

describe('attention query pieces by job size (onnx/providerOps.ts attentionChunksFor)', () => {
  const tokens = (side: number, text = 512) => text + (side / 16) ** 2;

  it('WebGPU runs up to 1024² in one piece (measured fastest) and doubles the pieces as scores grow, up to 16 (session creation grows with the pieces)', () => {
    assert.equal(opChoicesFor('webgpu').attention, 'matmul');
    assert.equal(attentionChunksFor('webgpu', tokens(512)), 1);
    assert.equal(attentionChunksFor('webgpu', tokens(1024)), 1);
    assert.equal(attentionChunksFor('webgpu', tokens(1040)), 2, 'just past 1024²: the next power of two');
    // 1280²: (6,912 / 4,608)² = 2.25 → 4 pieces; 1536²: 4.46 → 8; 2048²: 13.4 → 16.
    assert.equal(attentionChunksFor('webgpu', tokens(1280)), 4);
    assert.equal(attentionChunksFor('webgpu', tokens(1536)), 8);
    assert.equal(attentionChunksFor('webgpu', tokens(2048)), 16);
    assert.equal(attentionChunksFor('webgpu', tokens(4096)), 16, 'capped');
    for (const side of [1024, 1152, 1280, 1536, 2048]) {
      const n = attentionChunksFor('webgpu', tokens(side));
      const pieceScores = (tokens(side) / n) * tokens(side);
      assert.ok(pieceScores <= tokens(1024) * tokens(1024) * 1.0001, `${side}²: ${n} pieces hold ${pieceScores} scores each, more than 1024² whole`);
    }
  });

  it('providers that run attention whole (CPU, CUDA: MultiHeadAttention; CoreML: unmeasured) stay at one piece', () => {
    for (const ep of ['cpu', 'cuda', 'coreml'] as const) assert.equal(attentionChunksFor(ep, tokens(2048)), 1);
  });
});
