#!/usr/bin/env bash
# Packs what a bare GPU host needs into .gpu/ (git-ignored): node, onnxruntime-node for
# linux-x64 (CPU + WebGPU providers), and Debian's Vulkan/GL loaders. See docs/gpu-host notes.
set -euo pipefail
cd "$(dirname "$0")/../.."
mkdir -p .gpu
# Debian's node carries debug info: stripped, it packs 2 MB smaller (the device call's 64 MiB counts).
if [ ! -f .gpu/node.xz ]; then cp "$(command -v node)" /tmp/mf-node-stripped && strip /tmp/mf-node-stripped && xz -T2 -9 -c /tmp/mf-node-stripped > .gpu/node.xz; fi
[ -f .gpu/libonnxruntime.so.1.xz ] || xz -T2 -9 -c node_modules/onnxruntime-node/bin/napi-v6/linux/x64/libonnxruntime.so.1 > .gpu/libonnxruntime.so.1.xz
(cd node_modules && tar cf - onnxruntime-node/package.json onnxruntime-node/dist onnxruntime-node/lib onnxruntime-node/bin/napi-v6/linux/x64/onnxruntime_binding.node onnxruntime-common/package.json onnxruntime-common/dist/cjs) | xz -T2 -1 > .gpu/ort-js.tar.xz
o='-oAPT::Architecture=amd64 -oAPT::Architectures=amd64 -oDir::State::Lists=/tmp/amd64'
mkdir -p /tmp/amd64/partial
apt-get $o update >/dev/null
(cd .gpu && apt-get $o download libvulkan1 libegl1 libglvnd0 libopengl0 libgl1 libglx0 libgles2)
du -sh .gpu
