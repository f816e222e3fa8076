import * as assert from 'node:assert/strict';
import { attentionChunksFor, opChoicesFor } from '../../src/inference/onnx/providerOps';

describe('attention query pieces by job size (onnx/providerOps.ts attentionChunksFor)', () => {
  const tokens = (side: number, text = 512) => text + (side / 16) ** 2;

  it("WebGPU keeps its measured 4 pieces up to 1024² and doubles them as scores grow, so a piece's scores stay a 1024² piece's", () => {
    assert.equal(opChoicesFor('webgpu').attentionChunks, 4);
    assert.equal(attentionChunksFor('webgpu', tokens(512)), 4);
    assert.equal(attentionChunksFor('webgpu', tokens(1024)), 4);
    assert.equal(attentionChunksFor('webgpu', tokens(1040)), 8, 'just past 1024²: the next power of two');
    // 2048² hires: (16,896 / 4,608)² = 13.4 → 4 · 13.4 = 54 → 64 pieces.
    assert.equal(attentionChunksFor('webgpu', tokens(2048)), 64);
    for (const side of [1024, 1536, 2048]) {
      const n = attentionChunksFor('webgpu', tokens(side));
      const pieceScores = (tokens(side) / n) * tokens(side);
      assert.ok(pieceScores <= (tokens(1024) / 4) * tokens(1024) * 1.0001, `${side}²: ${n} pieces hold ${pieceScores} scores each`);
    }
  });

  it('providers that run attention whole (CPU, CUDA: MultiHeadAttention) stay at one piece', () => {
    for (const ep of ['cpu', 'cuda'] as const) assert.equal(attentionChunksFor(ep, tokens(2048)), 1);
  });
});
