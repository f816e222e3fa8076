import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { ExecutionProvider, WeightFormat } from '../../src/shared/api';
import { chooseEp, chooseWeights, cudaInstalled, cudaInstallHint, EpProbe, nvidiaGpuPresent } from '../../src/inference/onnx/providers';

// FLUX.1-dev's DiT: 11.9 B Linear weights.
const GIB = 2 ** 30;
const bytes: Record<WeightFormat, number> = { fp8: 11.1 * GIB, fp16: 22.2 * GIB, fp32: 44.4 * GIB, int8: 11.3 * GIB, int4: 5.7 * GIB };
const bytesFor = (f: WeightFormat) => bytes[f];

describe('weights: auto (providers.chooseWeights)', () => {
  it('CPU and CUDA keep fp8, whatever the budget', () => {
    for (const ep of ['cpu', 'cuda'] as const) assert.equal(chooseWeights(ep, bytesFor, 1 * GIB).format, 'fp8');
  });

  it('WebGPU: int8 whenever it fits (faster than fp16 there, and smaller), else int4, and says why', () => {
    for (const budget of [70 * GIB, 16 * GIB, undefined]) {
      const d = chooseWeights('webgpu', bytesFor, budget);
      assert.equal(d.format, 'int8', `budget ${budget}`);
      assert.match(d.reason, /faster than fp16/);
    }
    assert.equal(chooseWeights('webgpu', bytesFor, 8 * GIB).format, 'int4');
    assert.match(chooseWeights('webgpu', bytesFor, 8 * GIB).reason, /int8 \(11\.3 GiB\) exceeds the 8\.00 GiB/);
    assert.match(chooseWeights('webgpu', bytesFor, 4 * GIB).reason, /exceeds/);
  });

  it('DirectML (no float8 DequantizeLinear, speed unmeasured): fp16 if it fits, else int8, else int4, and say why', () => {
    for (const ep of ['dml'] as const) {
      assert.equal(chooseWeights(ep, bytesFor, 70 * GIB).format, 'fp16');
      const int8 = chooseWeights(ep, bytesFor, 16 * GIB);
      assert.equal(int8.format, 'int8');
      assert.match(int8.reason, /fp16 needs 22\.2 GiB/);
      assert.equal(chooseWeights(ep, bytesFor, 8 * GIB).format, 'int4');
      assert.match(chooseWeights(ep, bytesFor, 4 * GIB).reason, /exceeds/);
    }
  });

  it('CoreML holds no quantized weights (no MatMulNBits, no float8 DequantizeLinear): fp16, saying when it is over the budget', () => {
    assert.equal(chooseWeights('coreml', bytesFor, 70 * GIB).format, 'fp16');
    const small = chooseWeights('coreml', bytesFor, 16 * GIB);
    assert.equal(small.format, 'fp16');
    assert.match(small.reason, /over the 16\.0 GiB GPU memory budget/);
  });

  it('an unknown GPU budget gives int8, with the way to allow fp16', () => {
    const d = chooseWeights('dml', bytesFor, undefined);
    assert.equal(d.format, 'int8');
    assert.match(d.reason, /gpuMemoryBudget/);
  });
});

describe('CUDA requested where its provider is missing (providers.chooseEp)', () => {
  it('falls back to the CPU with the install command for this copy of onnxruntime-node, a script that exists', async function () {
    if (cudaInstalled()) this.skip(); // a machine with the CUDA provider has nothing to fall back from
    const d = await chooseEp('dit', 'cuda', 'fp8');
    assert.equal(d.ep, 'cpu');
    const m = /node "([^"]+)" --onnxruntime-node-install=cuda12/.exec(d.note ?? '');
    assert.ok(m, `the note gives the command: ${d.note}`);
    assert.ok(fs.existsSync(m[1]), `${m[1]} exists`);
    assert.match(d.note!, /CUDA 12 runtime and cuDNN 9/);
  });
});

describe('the CUDA hint, per platform (providers.chooseEp / cudaInstallHint)', () => {
  const cpuOnly = () => new Set<ExecutionProvider>(['cpu', 'webgpu']);
  const probe = (platform: NodeJS.Platform, arch: string, nvidia: boolean, have = cpuOnly): EpProbe => ({ host: { platform, arch }, available: have, nvidia: () => nvidia });

  it('auto on a Linux x64 machine without an NVIDIA GPU runs on the CPU and says nothing about CUDA', async () => {
    const d = await chooseEp('dit', 'auto', 'fp8', probe('linux', 'x64', false));
    assert.deepEqual(d, { ep: 'cpu' });
  });

  it('auto on Linux x64 with an NVIDIA GPU and no CUDA provider gives the install command', async () => {
    const d = await chooseEp('dit', 'auto', 'fp8', probe('linux', 'x64', true));
    assert.equal(d.ep, 'cpu');
    assert.match(d.note ?? '', /NVIDIA GPU is present.*--onnxruntime-node-install=cuda12/);
  });

  it('Windows and macOS never get a CUDA install command, NVIDIA GPU or not', async () => {
    for (const [platform, arch] of [['win32', 'x64'], ['darwin', 'arm64'], ['darwin', 'x64'], ['linux', 'arm64']] as const) {
      assert.deepEqual(await chooseEp('dit', 'auto', 'fp8', probe(platform, arch, true)), { ep: 'cpu' }, `${platform}-${arch}`);
      const hint = cudaInstallHint({ platform, arch });
      assert.doesNotMatch(hint, /install\.js|cuda12/, `${platform}-${arch}: ${hint}`);
      assert.match(hint, new RegExp(`no CUDA provider for ${platform}-${arch}`));
    }
    assert.match(cudaInstallHint({ platform: 'win32', arch: 'x64' }), /use dml or webgpu, or cpu/);
    assert.match(cudaInstallHint({ platform: 'darwin', arch: 'arm64' }), /use coreml or webgpu, or cpu/);
  });

  it('auto takes the bundled GPU provider of Windows (DirectML) and macOS (CoreML) before the CPU', async () => {
    assert.equal((await chooseEp('dit', 'auto', 'int8', probe('win32', 'x64', true, () => new Set<ExecutionProvider>(['cpu', 'webgpu', 'dml'])))).ep, 'dml');
    assert.equal((await chooseEp('dit', 'auto', 'int8', probe('darwin', 'arm64', false, () => new Set<ExecutionProvider>(['cpu', 'webgpu', 'coreml'])))).ep, 'coreml');
  });

  it('asking for cuda by name on Windows says what runs there instead', async () => {
    const d = await chooseEp('vae', 'cuda', 'fp16', probe('win32', 'x64', true));
    assert.equal(d.ep, 'cpu');
    assert.match(d.note ?? '', /^vae: onnxruntime-node has no CUDA provider for win32-x64: use dml or webgpu/);
  });

  it('nvidia-smi and the Linux driver list decide whether an NVIDIA GPU is present', () => {
    const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'mf-nv-'));
    try {
      const gpus = path.join(tmp, 'gpus');
      fs.mkdirSync(path.join(gpus, '0000:01:00.0'), { recursive: true });
      const noSmi = path.join(tmp, 'no-such-nvidia-smi');
      assert.equal(nvidiaGpuPresent({ procDir: gpus, smi: noSmi }), true, 'a GPU listed by the driver');
      assert.equal(nvidiaGpuPresent({ procDir: path.join(tmp, 'none'), smi: noSmi }), false, 'no driver folder, no nvidia-smi');
      const smi = path.join(tmp, 'nvidia-smi');
      fs.writeFileSync(smi, '#!/bin/sh\necho 11800\n', { mode: 0o755 });
      assert.equal(nvidiaGpuPresent({ procDir: path.join(tmp, 'none'), smi }), true, 'nvidia-smi reports a GPU');
      fs.writeFileSync(smi, '#!/bin/sh\necho "NVIDIA-SMI has failed because it couldn\'t communicate with the NVIDIA driver" >&2; exit 9\n', { mode: 0o755 });
      assert.equal(nvidiaGpuPresent({ procDir: path.join(tmp, 'none'), smi }), false, 'nvidia-smi without a driver');
    } finally {
      fs.rmSync(tmp, { recursive: true, force: true });
    }
  });
});
