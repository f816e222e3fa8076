#!/usr/bin/env bash
# Second GPU-host session: what device-bench.sh could not measure in its time.
#   int4    WebGPU MatMulNBits 4-bit DiT, 512² and 1024², full-size synthetic FLUX.1-dev
#   torchq  PyTorch CPU eager fp32 and bf16 DiT step, quarter-width model, 512²
#   cpuq    MajicFLUX CPU EP DiT step, the same quarter-width checkpoint, 512², per format
#   cpufull optional, one step each at full size 512² on the CPU (PyTorch bf16/fp32, ours int8),
#           only with time left
# Both models are written on the host the way device-bench.sh does (bench.js --prepare-manifest,
# fill_synthetic.py), DiT only (F8_E4M3; every other DiT format derives from that file).
#
#   source scripts/gpu/setup.sh; OUT=/tmp/out BUDGET=500 bash scripts/gpu/device-bench-int4-cpu.sh [phase ...] > $OUT/log.txt 2>&1
#
# Dry run without a GPU or PyTorch (CPU phase only, any prepared model dir):
#   Q=/root/.cache/majicflux/synthetic-tiny QMODEL=tiny SIZEQ=256 bash scripts/gpu/device-bench-int4-cpu.sh cpuq
phases=" ${*:-info fill int4 torchq cpuq cpufull} "
BUDGET=${BUDGET:-500}
SIZEQ=${SIZEQ:-512}
CPU_WEIGHTS=${CPU_WEIGHTS:-fp32,int8,fp8,fp16}
source scripts/gpu/common.sh

if has info; then
  stamp info
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader; nproc; free -g | sed -n 2p; df -h /tmp | tail -1; node --version
  lscpu | grep -E "Model name|^CPU\(s\)|Thread|Core|Socket|NUMA node\(s\)"
  echo "flags: $(grep -o 'amx[a-z_0-9]*\|avx512_bf16\|avx512f' /proc/cpuinfo | sort -u | tr '\n' ' ')"
  python3 -c 'import torch; print("torch", torch.__version__, "threads", torch.get_num_threads())'
fi
if has fill; then
  stamp fill
  fill full "$M" "$W/manifest.json" --only flux-fp8
  fill "$QMODEL" "$Q" "$W/manifest-q.json" --only flux-fp8
  ls -la "$M" "$Q"; df -h /tmp | tail -1
fi
if has int4; then
  stamp int4
  timeout "$(left 190)" node dist/bench.js --model full --dir "$M" --ep webgpu --t5 512 --out "$OUT" --machine "$machine" \
    --stages dit --size 512,1024 --weights int4 --steps 2 --tag int4 --job-timeout 185
  du -sh "$M/weight-cache" 2>/dev/null; rm -rf "$M/weight-cache"
fi
if has torchq; then
  stamp torchq
  timeout "$(left 70)" python3 scripts/gpu/torch_flux.py "$Q/flux-fp8.safetensors" --device cpu --modes fp32,bf16 --sizes "$SIZEQ" --txt 512 --reps 2 --out "$OUT/torch-cpu-quarter.json"
fi
if has cpuq; then
  stamp cpuq
  timeout "$(left 200)" node dist/bench.js --model "$QMODEL" --dir "$Q" --ep cpu --t5 512 --out "$OUT" --machine "$machine" \
    --stages dit --size "$SIZEQ" --weights "$CPU_WEIGHTS" --steps 3 --tag cpu-quarter --job-timeout 80
fi
if has cpufull; then
  stamp cpufull "($(remaining) s left)"
  if (( $(remaining) > 75 )); then
    timeout "$(left 80)" python3 scripts/gpu/torch_flux.py "$M/flux-fp8.safetensors" --device cpu --modes bf16,fp32 --sizes 512 --txt 512 --reps 1 --no-warmup --out "$OUT/torch-cpu-full.json"
  fi
  if (( $(remaining) > 60 )); then
    timeout "$(left 200)" node dist/bench.js --model full --dir "$M" --ep cpu --t5 512 --out "$OUT" --machine "$machine" \
      --stages dit --size 512 --weights int8 --steps 1 --tag cpu-full --job-timeout "$(left 200)"
  fi
fi
stamp done
