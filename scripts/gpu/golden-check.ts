// The golden tiny DiT on a GPU provider (benchmark helper, not product code): the unit tests run
// the same comparisons on the CPU, this runs them where WebGPU exists. Prints relative L2 and max
// abs against the float32 reference for each configuration; exits 1 when one is above its bound
// (the CPU tests' bounds, except float16 compute: the WebGPU kernels measured 3.1e-3 where the
// CPU's give 5.7e-4).
//
//   node dist/gpu-golden.js --fixtures test/fixtures/flux-tiny [--ep webgpu] [--out golden.json]

import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { parseArgs } from 'node:util';
import { DitInputs, FluxTransformer, FluxTransformerOptions } from '../../src/inference/graphs/dit';
import { ExecutionProvider } from '../../src/inference/onnx/session';
import { openTensors } from '../../src/inference/safetensors';
import { compare } from '../../test/helpers/golden';

interface Config { name: string; opts: FluxTransformerOptions; bound: number }

async function main() {
  const { values } = parseArgs({ options: { fixtures: { type: 'string', default: 'test/fixtures/flux-tiny' }, ep: { type: 'string', default: 'webgpu' }, out: { type: 'string' } } });
  const ep = values.ep as ExecutionProvider;
  const cases = openTensors(path.join(values.fixtures!, 'cases', 'transformer.safetensors'));
  const model = path.join(values.fixtures!, 'models', 'flux-tiny.safetensors');
  const x: DitInputs = {
    img: cases.readF32('hidden_states'), txt: cases.readF32('encoder_hidden_states'), vec: cases.readF32('pooled_projections'),
    timestep: cases.readF32('a.timestep')[0], guidance: cases.readF32('a.guidance')[0], imgIds: cases.readF32('img_ids'), txtIds: cases.readF32('txt_ids'),
  };
  const expected = cases.readF32('a.output');
  const configs: Config[] = [
    { name: 'fp16 weights, float16 compute, flash attention', opts: { format: 'fp16', compute: 'float16', flashAttention: true }, bound: 5e-3 },
    { name: 'fp16 weights, float16 compute, plain attention', opts: { format: 'fp16', compute: 'float16', flashAttention: false }, bound: 5e-3 },
    { name: 'fp32 weights, float32 compute', opts: { format: 'fp32', compute: 'float32' }, bound: 1e-4 },
    { name: 'int8 weights, float16 compute', opts: { format: 'int8', compute: 'float16', int8Activations: false }, bound: 1.8e-2 },
  ];
  const cacheDir = fs.mkdtempSync(path.join(os.tmpdir(), 'golden-cache-'));
  const results: Array<Record<string, unknown>> = [];
  let failed = false;
  for (const c of configs) {
    try {
      const t = await FluxTransformer.load(model, { ...c.opts, ep, inlineLimit: 0, cacheDir });
      const { relL2, maxAbs } = compare(await t.forward(x), expected);
      await t.release();
      const ok = relL2 <= c.bound;
      failed ||= !ok;
      results.push({ config: c.name, ep, relL2, maxAbs, bound: c.bound, ok });
    } catch (e) {
      failed = true;
      results.push({ config: c.name, ep, error: String((e as Error).message ?? e).slice(0, 1000) });
    }
    console.log(JSON.stringify(results[results.length - 1]));
  }
  fs.rmSync(cacheDir, { recursive: true, force: true });
  if (values.out) fs.writeFileSync(values.out, JSON.stringify(results, null, 1));
  process.exit(failed ? 1 : 0);
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
