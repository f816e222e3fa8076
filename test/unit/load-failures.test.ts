// What a failed component load tells the user (pipeline/loading.ts explainLoadFailure), for
// failures this machine cannot produce on demand: onnxruntime's exact words are fed in.

import * as assert from 'node:assert/strict';
import { UserError } from '../../src/shared/api';
import { explainLoadFailure } from '../../src/inference/pipeline/loading';

describe('explainLoadFailure', () => {
  it('WebGPU with no usable adapter (no GPU, no Vulkan driver) says so and what to choose instead, not onnxruntime\'s source line', () => {
    // onnxruntime-node 1.31 on a Linux host without a GPU, --ep webgpu.
    const raw = new Error(
      "/onnxruntime_src/onnxruntime/core/providers/webgpu/webgpu_context.cc:129 onnxruntime::webgpu::WebGpuContext::Initialize(const onnxruntime::webgpu::WebGpuContextConfig&)::<lambda()> adapter_result.status == wgpu::RequestAdapterStatus::Success was false. Failed to get a WebGPU adapter: No supported adapters",
    );
    const e = explainLoadFailure('clip', raw, () => 0, '/cache');
    assert.ok(e instanceof UserError);
    assert.equal(
      e.message,
      'Could not load the clip: WebGPU finds no GPU to run on (no GPU, or on Linux no Vulkan driver: libvulkan.so.1). Choose execution provider auto or cpu (the majicflux.executionProvider setting; --ep on the command line).',
    );
    assert.match(e.detail ?? '', /webgpu_context\.cc/, 'onnxruntime\'s words stay in the log');
  });
});
