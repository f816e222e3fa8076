#!/usr/bin/env bash
# Fourth GPU-host session: the WebGPU DiT after the fusions (RotaryEmbedding, modulation inside
# LayerNormalization, present K/V → the provider's flash attention), full-size FLUX.1-dev.
#   golden   the golden tiny DiT on WebGPU (fp16 flash / plain, fp32, int8) against float32
#   fill     full-size synthetic FLUX.1-dev (DiT only, or everything with FILL_ALL=1)
#   torch    PyTorch eager bf16 and fp8-storage DiT step, 512² and 1024² (same-run baseline)
#   probe    kernel throughput in isolation: MatMul, MHA flash vs plain, elementwise ops, I/O
#   dit      ours, fp16 weights, 512² and 1024², flash attention (present K/V requested)
#   ditplain the same without present K/V (the provider's non-flash attention), from the cache
#   ditint8  int8 (MatMulNBits) weights, flash attention
#   (dit, ditplain, ditint8 and prof pin what call A ran: flash where noted and the 'bucket' cache)
#   prof     onnxruntime's profile of the fp16 DiT at 1024²: time per op type
#   pipeline whole pipeline at 1024², sequential, int8 and fp16 DiT (needs FILL_ALL=1)
#   cpuq     quarter-width DiT on the CPU, 512²: ours fp8 (pair table), int8, fp32; PyTorch fp32/bf16
#   cache    fp16 and int8 DiT at 1024² under each storage buffer cache mode of the provider:
#            GPU memory peak and step time (plain attention; flash once with 'simple')
#   int4     int4 (MatMulNBits 4-bit) DiT, 512² and 1024²
#   pack     the JSON results as one results.tgz
#
#   source scripts/gpu/setup.sh; OUT=/tmp/out BUDGET=560 bash scripts/gpu/device-bench-s4.sh [phase ...] > $OUT/log.txt 2>&1
phases=" ${*:-info golden fill torch probe dit ditplain prof ditint8 pack} "
source scripts/gpu/common.sh

if has info; then stamp info; info; fi
if has golden; then
  stamp golden
  timeout "$(left 90)" node dist/gpu-golden.js --fixtures test/fixtures/flux-tiny --ep webgpu --out "$OUT/golden-webgpu.json"
fi
if has fill; then
  stamp fill
  if [ -n "${FILL_ALL:-}" ]; then fill full "$M" "$W/manifest.json"; else fill full "$M" "$W/manifest.json" --only flux-fp8; fi
  df -h /tmp | tail -1
fi
if has torch; then
  stamp torch
  timeout "$(left 90)" python3 scripts/gpu/torch_flux.py "$M/flux-fp8.safetensors" --sizes 512,1024 --txt 512 --out "$OUT/torch.json"
fi
if has probe; then
  stamp probe
  timeout "$(left 150)" node dist/gpu-probe.js --only matmul,mha,eltwise,io --out "$OUT/probe.json"
fi
if has dit; then
  stamp dit
  timeout "$(left 200)" bash -c "$(declare -f bench); machine='$machine' M='$M' OUT='$OUT'; bench --stages dit --size 512,1024 --weights fp16 --steps 3 --attention flash --buffer-cache bucket --tag dit-flash --job-timeout 190"
fi
if has ditplain; then
  stamp ditplain
  timeout "$(left 120)" bash -c "$(declare -f bench); machine='$machine' M='$M' OUT='$OUT'; bench --stages dit --size 512,1024 --weights fp16 --steps 3 --attention plain --buffer-cache bucket --tag dit-plain --job-timeout 110"
fi
if has prof; then
  stamp prof
  mkdir -p "$W/prof"; rm -f "$W/prof"/*.json
  MAJICFLUX_ORT_PROFILE="$W/prof/webgpu-fp16-1024" timeout "$(left 120)" bash -c "$(declare -f bench); machine='$machine' M='$M' OUT='$OUT'; bench --stages dit --size 1024 --weights fp16 --steps 2 --attention flash --buffer-cache bucket --tag prof --job-timeout 110"
  for f in "$W/prof"/*.json; do node scripts/gpu/profile-summary.mjs "$f" --json "$OUT/profile-summary.json"; done
fi
if has ditint8; then
  stamp ditint8
  timeout "$(left 200)" bash -c "$(declare -f bench); machine='$machine' M='$M' OUT='$OUT'; bench --stages dit --size 512,1024 --weights int8 --steps 3 --attention flash --buffer-cache bucket --tag dit-int8 --job-timeout 190"
fi
if has cache; then
  stamp cache
  for mode in bucket simple lazyRelease disabled; do
    timeout "$(left 150)" bash -c "$(declare -f bench); machine='$machine' M='$M' OUT='$OUT'; bench --stages dit --size 1024 --weights fp16 --steps 2 --attention plain --buffer-cache $mode --tag cache-fp16-$mode --job-timeout 140"
  done
  timeout "$(left 60)" bash -c "$(declare -f bench); machine='$machine' M='$M' OUT='$OUT'; bench --stages dit --size 1024 --weights fp16 --steps 2 --attention flash --buffer-cache simple --tag cache-fp16-simple-flash --job-timeout 60"
  for mode in simple bucket; do
    timeout "$(left 120)" bash -c "$(declare -f bench); machine='$machine' M='$M' OUT='$OUT'; bench --stages dit --size 1024 --weights int8 --steps 2 --attention plain --buffer-cache $mode --tag cache-int8-$mode --job-timeout 110"
  done
fi
if has int4; then
  stamp int4
  timeout "$(left 200)" bash -c "$(declare -f bench); machine='$machine' M='$M' OUT='$OUT'; bench --stages dit --size 512,1024 --weights int4 --steps 2 --tag dit-int4 --job-timeout 190"
fi
if has pipeline; then
  stamp pipeline
  for w in fp16 int8; do
    timeout "$(left 200)" bash -c "$(declare -f bench); machine='$machine' M='$M' OUT='$OUT'; bench --size 1024 --weights $w --steps 2 --modes sequential --tag pipeline-seq-$w --job-timeout 190"
  done
fi
if has cpuq; then
  stamp cpuq
  fill "$QMODEL" "$Q" "$W/manifest-q.json" --only flux-fp8
  timeout "$(left 60)" python3 scripts/gpu/torch_flux.py "$Q/flux-fp8.safetensors" --device cpu --modes fp32,bf16 --sizes 512 --txt 512 --reps 2 --out "$OUT/torch-cpu-quarter.json"
  timeout "$(left 150)" node dist/bench.js --model "$QMODEL" --dir "$Q" --ep cpu --t5 512 --out "$OUT" --machine "$machine" \
    --stages dit --size 512 --weights fp8,int8,fp32 --steps 3 --tag cpu-quarter --job-timeout 60
fi
# The device tool brings back a handful of files: the JSON results travel as one archive.
if has pack; then (cd "$OUT" && tar czf results.tgz *.json && rm -f *.json); fi
stamp done
