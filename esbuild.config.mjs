// Bundles the extension host entry, the inference server (and its pipeline and quantization worker
// threads) and the CLI into dist/.
// Native packages (onnxruntime-node, sharp) stay external: they load their own .node binaries.
import * as esbuild from 'esbuild';

const watch = process.argv.includes('--watch');
const common = {
  bundle: true,
  platform: 'node',
  target: 'node20',
  format: 'cjs',
  sourcemap: true,
  external: ['vscode', 'onnxruntime-node', 'sharp'],
  logLevel: 'warning',
};

const entries = [
  { entryPoints: ['src/extension/extension.ts'], outfile: 'dist/extension.js' },
  { entryPoints: ['src/inference/server/main.ts'], outfile: 'dist/server.js' },
  { entryPoints: ['src/inference/pipeline/worker.ts'], outfile: 'dist/pipelineWorker.js' },
  { entryPoints: ['src/inference/onnx/quantWorker.ts'], outfile: 'dist/quantWorker.js' },
  { entryPoints: ['src/inference/cli/main.ts'], outfile: 'dist/cli.js', banner: { js: '#!/usr/bin/env node' } },
  { entryPoints: ['scripts/bench.ts'], outfile: 'dist/bench.js' },
];

const existing = (await import('node:fs')).existsSync;
const active = entries.filter((e) => existing(e.entryPoints[0]));
if (watch) {
  for (const e of active) await (await esbuild.context({ ...common, ...e })).watch();
} else {
  await Promise.all(active.map((e) => esbuild.build({ ...common, ...e })));
}
