#!/usr/bin/env bash
# onnxruntime-node 1.31 against 1.30 on the GPU host (WebGPU, the full-size synthetic FLUX.1-dev,
# 512 text tokens), and fp8 decoded by GatherBlockQuantized (new in 1.31's WebGPU provider):
#   probe   scripts/gpu/probe.ts fp8gather (bit-exact check, decode + product) and matmul, on 1.31
#   ab      the DiT alone at 1024² and 512², int8, the defaults: 1.31 (builds the int8 cache), 1.30,
#           1.31 again — one process each, the same cache, so the loads after the first are warm
#   fp8     the DiT alone at 1024² and 512², fp8 zero-copy from the checkpoint on 1.31: decoded by
#           GatherBlockQuantized, then by int32 words (the 1.30 path), one process each
#   e2e     time to the PNG, cold and warm, int8, 1024² × 20 and 512² × 28 steps (FILL_ALL=1 fill)
#   attn    probe attn,mha on 1.31, then the DiT with MultiHeadAttention against the matmul form
#   wsets   the int8 DiT's GPU memory at 512², 768², 1024², 1280², matmul and MultiHeadAttention, a process each
#   torch   PyTorch eager bf16 / fp8-storage steps and 20-step 1024², 28-step 512² denoises
#   golden  the golden tiny model on WebGPU (scripts/gpu/golden-check.ts); needs test/fixtures/flux-tiny
# 1.30 comes from .gpu130/ (pack.sh's two ORT files from a 1.30 checkout), 1.31 from .gpu/.
#   OUT=/tmp/out BUDGET=560 bash scripts/gpu/device-bench-14.sh info fill probe ab fp8 > $OUT/log.txt 2>&1
phases=" ${*:-info fill probe ab fp8} "
FINAL_OUT=${OUT:-/tmp/mf-out}
OUT=/tmp/mf-results
mkdir -p "$OUT"
source scripts/gpu/common.sh
pack() { tar czf "$FINAL_OUT/results.tgz" -C "$OUT" . 2>/dev/null; }
# ort_use 130|131: put that onnxruntime-node (and its onnxruntime-common) in node_modules.
ort_use() {
  local src=.gpu; [ "$1" = 130 ] && src=.gpu130
  local d=/tmp/mf-ort-$1
  if [ ! -d "$d" ]; then
    mkdir -p "$d" && (cd "$d" && xz -dc "$OLDPWD/$src/ort-js.tar.xz" | tar xf -)
    xz -dc "$src/libonnxruntime.so.1.xz" > "$d/onnxruntime-node/bin/napi-v6/linux/x64/libonnxruntime.so.1"
  fi
  rm -rf node_modules/onnxruntime-node node_modules/onnxruntime-common
  cp -r "$d/onnxruntime-node" "$d/onnxruntime-common" node_modules/
  echo "onnxruntime-node $(node -p 'require("onnxruntime-node/package.json").version')"
}

if has info; then stamp info; info; fi
if has fill; then
  stamp fill
  if [ -n "${FILL_ALL:-}" ]; then fill full "$M" "$W/manifest.json"; else fill full "$M" "$W/manifest.json" --only flux-fp8; fi
fi
if has probe; then
  stamp "probe fp8gather, matmul (1.31)"; ort_use 131
  timeout "$(left 150)" node dist/gpu-probe.js --only fp8gather,matmul --out "$OUT/probe-131.json"
  pack
fi
if has ab; then
  i=0
  for v in 131 130 131; do
    i=$((i+1)); stamp "dit int8 1024 and 512, defaults, onnxruntime $v (run $i)"; ort_use $v
    timeout "$(left 120)" bash -c "$(declare -f bench); machine='$machine' M='$M' OUT='$OUT'; bench --stages dit --size 1024,512 --steps 4 --weights int8 --tag ort$v-$i --job-timeout 115"
    pack
  done
fi
if has fp8; then
  ort_use 131
  for d in gather words; do
    stamp "dit fp8 1024 and 512, decode $d (1.31)"
    timeout "$(left 120)" bash -c "$(declare -f bench); machine='$machine' M='$M' OUT='$OUT'; bench --stages dit --size 1024,512 --steps 4 --weights fp8 --fp8-decode $d --tag fp8-$d --job-timeout 115"
    pack
  done
fi
if has e2e; then
  # Time to the PNG on 1.31 (needs FILL_ALL=1): cold (a fresh `majicflux generate`) and warm, int8,
  # resident; sharp writes the PNG (.gpu2/sharp.tar.xz, carried for this phase only).
  ort_use 131
  [ -f .gpu2/sharp.tar.xz ] && (cd node_modules && xz -dc ../.gpu2/sharp.tar.xz | tar xf -)
  for spec in ${E2E:-1024:20 512:28}; do
    size=${spec%:*}; steps=${spec#*:}
    stamp "e2e $size $steps (1.31)"
    timeout "$(left 280)" bash -c "$(declare -f bench); machine='$machine' M='$M' OUT='$OUT'; bench --size $size --steps $steps --weights int8 --modes resident --e2e --tag e2e-$size --job-timeout 270"
    pack
  done
fi
if has attn; then
  # Attention on 1.31: the kernels (matmul form against MultiHeadAttention, with and without the
  # flash-attention outputs), then the DiT with MultiHeadAttention against the default, one process each.
  stamp "probe attn, mha (1.31)"; ort_use 131
  timeout "$(left 150)" node dist/gpu-probe.js --only attn,mha --out "$OUT/probe-attn-131.json"
  for t in '{"attention":"fused"}' '{}'; do
    stamp "dit int8 1024 and 512, tuning $t (1.31)"
    timeout "$(left 100)" bash -c "$(declare -f bench); machine='$machine' M='$M' OUT='$OUT'; bench --stages dit --size 1024,512 --steps 4 --weights int8 --tuning '$t' --tag attn-$([ "$t" = '{}' ] && echo matmul || echo mha) --job-timeout 95"
    pack
  done
fi
if has wsets; then
  # The int8 DiT's GPU memory by image size and attention form, one process per (size, form): what
  # models/workingSets.ts estimates and `auto` plans with.
  ort_use 131
  for size in ${WSIZES:-512 768 1024 1280}; do
    for form in matmul fused; do
      stamp "dit int8 $size, attention $form"
      timeout "$(left 60)" bash -c "$(declare -f bench); machine='$machine' M='$M' OUT='$OUT'; bench --stages dit --size $size --steps 3 --weights int8 --tuning '{\"attention\":\"$form\"}' --tag ws-$size-$form --job-timeout 55"
      pack
    done
  done
fi
if has torch; then
  # PyTorch eager on the same host and checkpoint: bf16 and fp8-storage steps, whole denoises.
  stamp torch
  timeout "$(left 150)" python3 scripts/gpu/torch_flux.py "$M/flux-fp8.safetensors" --sizes 512,1024 --txt 512 --denoise 512:28,1024:20 --out "$OUT/torch.json"
  pack
fi
if has golden; then
  stamp "golden on webgpu (1.31)"; ort_use 131
  timeout "$(left 90)" node dist/gpu-golden.js --ep webgpu --out "$OUT/golden-webgpu.json"
  pack
fi
stamp done
pack
