#!/usr/bin/env bash
# Builds dist/ for a GPU host: the usual bundles plus the WebGPU probe and the golden check (benchmark helpers).
set -euo pipefail
cd "$(dirname "$0")/../.."
node esbuild.config.mjs
npx esbuild scripts/gpu/probe.ts --bundle --platform=node --target=node20 --format=cjs --sourcemap \
  --external:onnxruntime-node --external:sharp --log-level=warning --outfile=dist/gpu-probe.js
npx esbuild scripts/gpu/golden-check.ts --bundle --platform=node --target=node20 --format=cjs --sourcemap \
  --external:onnxruntime-node --external:sharp --log-level=warning --outfile=dist/gpu-golden.js
npx esbuild scripts/gpu/upload-probe.ts --bundle --platform=node --target=node20 --format=cjs --sourcemap \
  --external:onnxruntime-node --external:sharp --log-level=warning --outfile=dist/gpu-upload.js
