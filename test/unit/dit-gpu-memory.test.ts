import * as assert from 'node:assert/strict';
import type { WeightFormat } from '../../src/shared/api';
import type { ModelFiles } from '../../src/inference/models/files';
import { GPU_CONTEXT_BYTES } from '../../src/inference/models/memory';
import { ditGpuWorkingSet, ditTokens, FLUX_ARCHITECTURE } from '../../src/inference/models/workingSets';
import { ditAttentionFor, planDit } from '../../src/inference/pipeline/loading';

// FLUX.1-dev's DiT as the weight cache holds it (models/weightBytes.ts): int8 in blocks of 32, int4.
const GiB = 2 ** 30;
const DIT: Partial<Record<WeightFormat, number>> = { int8: 12_655_464_704, int4: 6_706_499_840, fp8: 11_911_844_096 };
const T1024 = ditTokens({ width: 1024, height: 1024 });
const T512 = ditTokens({ width: 512, height: 512 });

/** A FLUX.1-dev whose DiT file is not there: its shapes fall back to FLUX.1's (loading.ditArchitecture). */
const files = { name: 'flux', transformer: '/nowhere/flux.safetensors', residentBytes: (f: WeightFormat, c?: string) => (c === 'dit' ? DIT[f]! : 0.25 * GiB) } as unknown as ModelFiles;

describe('the DiT on a GPU whose memory is known: weights and attention form (loading.planDit, ditAttentionFor)', () => {
  it('the MatMul form where it fits or nothing is known, else MultiHeadAttention (a 16 GB card at 1024²), saying so, and when even that does not fit', () => {
    const card16 = 15.5 * GiB - GPU_CONTEXT_BYTES;
    const a = ditAttentionFor(card16, DIT.int8!, FLUX_ARCHITECTURE, T1024, 'int8');
    assert.equal(a.form, 'fused');
    assert.match(a.note!, /^attention as MultiHeadAttention \(slower\): the faster MatMul form needs about 15\.9 GiB at 4608 tokens, more than the 14\.7 GiB of GPU memory the DiT may take; MultiHeadAttention needs about 14\.5 GiB$/);
    assert.deepEqual(ditAttentionFor(card16, DIT.int8!, FLUX_ARCHITECTURE, T512, 'int8'), { form: 'matmul' }, '512² fits in the MatMul form');
    assert.deepEqual(ditAttentionFor(78 * GiB, DIT.int8!, FLUX_ARCHITECTURE, T1024, 'int8'), { form: 'matmul' });
    // A 24 GB card: the MatMul form at 1024², MultiHeadAttention at 1536² (a hires pass), whose scores alone are 8.5 GiB.
    const card24 = 24 * GiB - GPU_CONTEXT_BYTES;
    assert.equal(ditAttentionFor(card24, DIT.int8!, FLUX_ARCHITECTURE, T1024, 'int8').form, 'matmul');
    assert.equal(ditAttentionFor(card24, DIT.int8!, FLUX_ARCHITECTURE, ditTokens({ width: 1536, height: 1536 }), 'int8').form, 'fused');
    assert.deepEqual(ditAttentionFor(undefined, DIT.int8!, FLUX_ARCHITECTURE, T1024, 'int8'), { form: 'matmul' });
    const neither = ditAttentionFor(8 * GiB, DIT.int8!, FLUX_ARCHITECTURE, T1024, 'int8');
    assert.equal(neither.form, 'fused', 'neither fits: the smaller one');
    assert.match(neither.note!, /more than that too: expect an allocation failure \(a smaller image, or weights int4\)$/);
    // The boundary is the working sets' difference: MultiHeadAttention's is 1.4 GiB smaller at 1024².
    const saved = ditGpuWorkingSet(FLUX_ARCHITECTURE, T1024, 'int8') - ditGpuWorkingSet(FLUX_ARCHITECTURE, T1024, 'int8', 'fused');
    assert.ok(saved > 1.3 * GiB && saved < 1.5 * GiB, `${saved / GiB} GiB`);
  });

  it('weights auto on WebGPU: int8 on a 16 GB card (with MultiHeadAttention at 1024²), int4 on a 12 GB one, int8 and the MatMul form on a large one; an explicit format keeps the GPU memory for the attention', async () => {
    const logs: string[] = [];
    const plan = (gpuMemory: number, weights: 'auto' | 'int8' = 'auto') => planDit(files, { weights, stageEp: { dit: 'webgpu' }, gpuMemory }, 'sequential', (_l, m) => logs.push(m));
    const p16 = await plan(16 * GiB);
    assert.equal(p16.format, 'int8');
    assert.equal(p16.gpuMemory, 16 * GiB - GPU_CONTEXT_BYTES);
    assert.equal(ditAttentionFor(p16.gpuMemory, DIT.int8!, FLUX_ARCHITECTURE, T1024, 'int8').form, 'fused');
    const p12 = await plan(12 * GiB);
    assert.equal(p12.format, 'int4');
    assert.match(logs.at(-1)!, /^weights auto → int4 \(.*int8 \(11\.8 GiB\) exceeds the 8\.\d\d GiB GPU memory budget/);
    assert.equal(ditAttentionFor(p12.gpuMemory, DIT.int4!, FLUX_ARCHITECTURE, T1024, 'int4').form, 'matmul');
    const p80 = await plan(80 * GiB);
    assert.equal(p80.format, 'int8');
    assert.equal(ditAttentionFor(p80.gpuMemory, DIT.int8!, FLUX_ARCHITECTURE, T1024, 'int8').form, 'matmul');
    const asked = await plan(16 * GiB, 'int8');
    assert.deepEqual(asked, { format: 'int8', gpuMemory: 16 * GiB - GPU_CONTEXT_BYTES, others: 0.75 * GiB });
  });

  it('weights auto: unless the mode is sequential (auto may resolve to resident) the other components come out of the DiT\'s share; the CPU plans no GPU memory', async () => {
    const big = { ...files, residentBytes: (f: WeightFormat, c?: string) => (c === 'dit' ? DIT[f]! : 3 * GiB) } as ModelFiles;
    const plan = (memory: 'sequential' | 'auto' | 'resident') => planDit(big, { weights: 'auto', stageEp: { dit: 'webgpu' }, gpuMemory: 24 * GiB }, memory, () => {});
    assert.equal((await plan('sequential')).format, 'int8');
    for (const memory of ['auto', 'resident'] as const) {
      const p = await plan(memory);
      assert.equal(p.format, 'int4', memory);
      assert.deepEqual([p.gpuMemory, p.others], [24 * GiB - GPU_CONTEXT_BYTES, 9 * GiB], 'the share alone and what the others take: the pipeline subtracts them for a resident job');
    }
    const cpu = await planDit(files, { weights: 'fp8', stageEp: { dit: 'cpu' }, gpuMemory: 24 * GiB }, 'sequential', () => {});
    assert.deepEqual([cpu.format, cpu.gpuMemory], ['fp8', undefined]);
  });
});
