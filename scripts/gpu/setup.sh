#!/usr/bin/env bash
# On a bare Linux GPU host (no Node, no network): unpack what scripts/gpu/pack.sh put in .gpu/.
# Usage: source scripts/gpu/setup.sh   (exports PATH with node, and the Vulkan driver path)
set -e
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$root"
mkdir -p /tmp/mf-node node_modules
[ -x /tmp/mf-node/node ] || { xz -dc .gpu/node.xz > /tmp/mf-node/node; chmod +x /tmp/mf-node/node; }
if [ ! -f node_modules/onnxruntime-node/bin/napi-v6/linux/x64/libonnxruntime.so.1 ]; then
  (cd node_modules && xz -dc ../.gpu/ort-js.tar.xz | tar xf -)
  xz -dc .gpu/libonnxruntime.so.1.xz > node_modules/onnxruntime-node/bin/napi-v6/linux/x64/libonnxruntime.so.1
fi
if ! ldconfig -p | grep -q libvulkan.so.1; then
  for f in .gpu/*.deb; do dpkg -x "$f" /; done
  ldconfig
fi
for icd in /usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json /usr/share/vulkan/icd.d/nvidia_icd.json; do
  [ -f "$icd" ] && export VK_DRIVER_FILES="$icd" && break
done
export PATH=/tmp/mf-node:$PATH
cd - >/dev/null
