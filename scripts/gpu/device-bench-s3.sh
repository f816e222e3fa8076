#!/usr/bin/env bash
# Third GPU-host session: the CPU fp8 decode by table lookup, and a WebGPU profile.
#   torchq   PyTorch CPU eager fp32 and bf16 DiT step, quarter-width model, 512² (same-run baseline)
#   cpuq     MajicFLUX CPU DiT step, same checkpoint: fp32, fp8 (lookup: the default), int8
#   cpuqdq   the same fp8 through DequantizeLinear (the previous default), for the ratio
#   gpuprof  WebGPU fp16 DiT, quarter model 512², with onnxruntime's profiler: time per op type
#            and provider, and the nodes left on the CPU (scripts/gpu/profile-summary.mjs)
#   full     full-size FLUX.1-dev DiT on the CPU at 512², one step: ours fp8 (lookup), PyTorch bf16
#
#   source scripts/gpu/setup.sh; OUT=/tmp/out BUDGET=540 bash scripts/gpu/device-bench-s3.sh [phase ...] > $OUT/log.txt 2>&1
phases=" ${*:-info fillq torchq cpuq cpuqdq gpuprof} "
SIZEQ=${SIZEQ:-512}
source scripts/gpu/common.sh

if has info; then
  stamp info
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader; nproc; free -g | sed -n 2p; node --version
  lscpu | grep -E "Model name|^CPU\(s\)|Thread|Core|Socket"
  python3 -c 'import torch; print("torch", torch.__version__, "threads", torch.get_num_threads())'
fi
if has fillq; then
  stamp fillq
  fill "$QMODEL" "$Q" "$W/manifest-q.json" --only flux-fp8
fi
if has torchq; then
  stamp torchq
  timeout "$(left 90)" python3 scripts/gpu/torch_flux.py "$Q/flux-fp8.safetensors" --device cpu --modes fp32,bf16 --sizes "$SIZEQ" --txt 512 --reps 2 --out "$OUT/torch-cpu-quarter.json"
fi
if has cpuq; then
  stamp cpuq
  timeout "$(left 200)" node dist/bench.js --model "$QMODEL" --dir "$Q" --ep cpu --t5 512 --out "$OUT" --machine "$machine" \
    --stages dit --size "$SIZEQ" --weights fp8,fp32,int8 --steps 3 --tag cpu-quarter-lookup --job-timeout 90
fi
if has cpuqdq; then
  stamp cpuqdq
  timeout "$(left 100)" node dist/bench.js --model "$QMODEL" --dir "$Q" --ep cpu --t5 512 --out "$OUT" --machine "$machine" \
    --stages dit --size "$SIZEQ" --weights fp8 --fp8-decode dequantize --steps 3 --tag cpu-quarter-dq --job-timeout 90
fi
if has gpuprof; then
  stamp gpuprof
  mkdir -p "$W/prof"; rm -f "$W/prof"/*.json
  MAJICFLUX_ORT_PROFILE="$W/prof/webgpu-fp16" timeout "$(left 150)" node dist/bench.js --model "$QMODEL" --dir "$Q" --ep webgpu --t5 512 --out "$OUT" --machine "$machine" \
    --stages dit --size "$SIZEQ" --weights fp16 --steps 3 --tag gpu-quarter-prof --job-timeout 140
  for f in "$W/prof"/*.json; do node scripts/gpu/profile-summary.mjs "$f" --json "$OUT/profile-$(basename "$f")"; done
fi
if has full; then
  stamp full "($(remaining) s left)"
  fill full "$M" "$W/manifest.json" --only flux-fp8
  timeout "$(left 200)" node dist/bench.js --model full --dir "$M" --ep cpu --t5 512 --out "$OUT" --machine "$machine" \
    --stages dit --size 512 --weights fp8 --steps 2 --tag cpu-full-lookup --job-timeout "$(left 200)"
  (( $(remaining) > 70 )) && timeout "$(left 120)" python3 scripts/gpu/torch_flux.py "$M/flux-fp8.safetensors" --device cpu --modes bf16 --sizes 512 --txt 512 --reps 1 --out "$OUT/torch-cpu-full.json"
fi
stamp done
