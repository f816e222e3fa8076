import * as assert from 'node:assert/strict';
import { attentionChunksFor, opChoicesFor } from '../../src/inference/onnx/providerOps';

describe('attention query pieces by job size (onnx/providerOps.ts attentionChunksFor)', () => {
  const tokens = (side: number, text = 512) => text + (side / 16) ** 2;

  it("WebGPU keeps its measured 4 pieces up to 1024² and doubles them as scores grow, up to 16 (session creation grows with the pieces)", () => {
    assert.equal(opChoicesFor('webgpu').attentionChunks, 4);
    assert.equal(attentionChunksFor('webgpu', tokens(512)), 4);
    assert.equal(attentionChunksFor('webgpu', tokens(1024)), 4);
    assert.equal(attentionChunksFor('webgpu', tokens(1040)), 8, 'just past 1024²: the next power of two');
    // 1280²: (6,912 / 4,608)² = 2.25 → 9 → 16 pieces; 2048² would want 54: the cap.
    assert.equal(attentionChunksFor('webgpu', tokens(1280)), 16);
    assert.equal(attentionChunksFor('webgpu', tokens(2048)), 16);
    for (const side of [1024, 1152, 1280]) {
      const n = attentionChunksFor('webgpu', tokens(side));
      const pieceScores = (tokens(side) / n) * tokens(side);
      assert.ok(pieceScores <= (tokens(1024) / 4) * tokens(1024) * 1.0001, `${side}²: ${n} pieces hold ${pieceScores} scores each`);
    }
  });

  it('providers that run attention whole (CPU, CUDA: MultiHeadAttention) stay at one piece', () => {
    for (const ep of ['cpu', 'cuda'] as const) assert.equal(attentionChunksFor(ep, tokens(2048)), 1);
  });
});
