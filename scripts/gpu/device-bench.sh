#!/usr/bin/env bash
# One GPU-host benchmark session (H100 via the WebGPU provider, PyTorch alongside). Run from the
# repository root with dist/ built (scripts/gpu/build.sh) and .gpu/ packed (scripts/gpu/pack.sh):
#
#   OUT=/tmp/out BUDGET=430 bash scripts/gpu/device-bench.sh [phase ...] > $OUT/log.txt 2>&1
#
# Phases (default: info fill torch probe dit check pipeline int4). Each gets at most what is left
# of BUDGET seconds, and a failure doesn't stop the next; results go to $OUT as they are measured,
# RAM and GPU memory every 2 s to $OUT/mem-<time>.log (common.sh).
phases=" ${*:-info fill torch probe dit check pipeline int4} "
BUDGET=${BUDGET:-430}
source scripts/gpu/common.sh
mkdir -p "$W/dump"

if has info; then
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader; nproc; free -g | sed -n 2p; df -h /tmp | tail -1; node --version
  python3 -c 'import torch; print("torch", torch.__version__)'
fi
if has fill; then
  stamp fill
  fill full "$M" "$W/manifest.json"
  df -h /tmp | tail -1
fi
if has torch; then
  stamp torch
  timeout "$(left 60)" python3 scripts/gpu/torch_flux.py "$M/flux-fp8.safetensors" --sizes 512,1024 --txt 512 --out "$OUT/torch.json"
fi
if has probe; then
  stamp probe
  timeout "$(left 60)" node dist/gpu-probe.js --out "$OUT/probe.json"
fi
if has dit; then
  stamp dit
  timeout "$(left 230)" bash -c "$(declare -f bench); machine='$machine' M='$M' OUT='$OUT'; bench --stages dit --size 512,1024 --weights fp16,int8 --steps 2 --tag dit --dump '$W/dump' --job-timeout 130"
  df -h /tmp | tail -1
fi
if has check; then
  stamp check
  ls "$W"/dump/dit-*.safetensors && timeout "$(left 60)" python3 scripts/gpu/torch_flux.py "$M/flux-fp8.safetensors" --check "$W"/dump/dit-*-512.safetensors --out "$OUT/check.json"
fi
if has pipeline; then
  stamp pipeline
  timeout "$(left 130)" bash -c "$(declare -f bench); machine='$machine' M='$M' OUT='$OUT'; bench --size 1024 --weights auto --steps 2 --modes resident --tag pipeline --job-timeout 125"
fi
if has int4; then
  stamp int4
  rm -rf "$M/weight-cache"
  timeout "$(left 200)" bash -c "$(declare -f bench); machine='$machine' M='$M' OUT='$OUT'; bench --stages dit --size 512,1024 --weights int4 --steps 2 --tag int4 --job-timeout 200"
fi
stamp done
