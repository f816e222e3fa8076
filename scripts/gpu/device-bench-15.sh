#!/usr/bin/env bash
# Fourteenth session on the GPU host (WebGPU, onnxruntime-node 1.31, the full-size synthetic FLUX.1-dev,
# 512 text tokens): what a warm load and the attention's memory are bound by.
#   upload  scripts/gpu/upload-probe.ts: 2 GiB of weights in 8 … 2,048 initializers, from a file and
#           from memory (session creation time: the upload's rate and its per-buffer cost)
#   pieces  the int8 DiT alone at 1024², the attention whole, then in 8 and 16 query pieces, then 4
#           pieces with the submit window at 4 dispatches: one process each (GPU memory after the steps)
#   OUT=/tmp/out BUDGET=560 bash scripts/gpu/device-bench-15.sh info upload fill pieces > $OUT/log.txt 2>&1
phases=" ${*:-info upload fill pieces} "
FINAL_OUT=${OUT:-/tmp/mf-out}
OUT=/tmp/mf-results
mkdir -p "$OUT"
source scripts/gpu/common.sh
pack() { tar czf "$FINAL_OUT/results.tgz" -C "$OUT" . 2>/dev/null; }

if has info; then stamp info; info; fi
if has upload; then
  stamp "upload probe"
  timeout "$(left 150)" node dist/gpu-upload.js --dir "$W" --out "$OUT/upload.json"
  pack
fi
if has fill; then stamp fill; fill full "$M" "$W/manifest.json" --only flux-fp8; fi
if has pieces; then
  for v in 1 8 16 4w; do
    stamp "dit int8 1024, attention pieces $v"
    cfg=; chunks=${v%w}; [ "$v" != "$chunks" ] && cfg='{"ep.webgpuexecutionprovider.maxNumPendingDispatches":"4"}'
    MAJICFLUX_ORT_CONFIG=$cfg timeout "$(left 110)" bash -c "$(declare -f bench); machine='$machine' M='$M' OUT='$OUT'; bench --stages dit --size 1024 --steps 3 --weights int8 --chunks $chunks --tag pieces-$v --job-timeout 105"
    pack
  done
fi
stamp done
pack
