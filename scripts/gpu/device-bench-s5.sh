#!/usr/bin/env bash
# Fifth GPU-host session (issue 12): the fast int8 kernels, attention from MatMul, time to the PNG.
#   golden   the error study of test/unit/format-errors.test.ts on WebGPU (block 128/32, float or
#            int8 activations, int4; fp16 with MultiHeadAttention and with matmul attention)
#   probe    kernels alone: MatMulNBits blocks × activations, matmul attention (opset 20/21, query
#            pieces) vs MultiHeadAttention, fp8 decoded on the GPU
#   fill     full-size synthetic FLUX.1-dev (DiT only, or everything with FILL_ALL=1)
#   torch    PyTorch eager bf16 / fp8-storage step, and whole 28-step 512² and 20-step 1024² denoises
#   fp8      ours, DiT alone, fp8 decoded on the GPU from int32 words (zero-copy from the checkpoint)
#   dit*     ours, DiT alone, 512² and 1024²: int8 at the new defaults (block 32, float activations,
#            matmul attention, queries in 4 pieces), with int8 activations, with MultiHeadAttention, queries whole;
#            fp16 and int4 at the defaults
#   cpu      the CPU provider (int8 activations, fp8) against PyTorch CPU eager, 512², quarter and full size
#   e2e      time to the PNG (needs FILL_ALL=1): cold (a fresh `majicflux generate`) and warm, int8,
#            20 steps at 1024² and 28 at 512²
# Results: $OUT/log.txt and $OUT/results.tgz (re-packed after every phase: the device call returns
# at most 8 files, and a call cut short keeps what was measured).
#
#   OUT=/tmp/out BUDGET=560 bash scripts/gpu/device-bench-s5.sh [phase ...] > $OUT/log.txt 2>&1
phases=" ${*:-info golden probe fill torch dit ditmha ditact fp16 int4 chunks} "
FINAL_OUT=${OUT:-/tmp/mf-out}
OUT=/tmp/mf-results
mkdir -p "$OUT"
source scripts/gpu/common.sh
pack() { tar czf "$FINAL_OUT/results.tgz" -C "$OUT" . 2>/dev/null; }
ditrun() { # tag, then bench arguments
  local tag=$1; shift
  stamp "dit $tag"
  timeout "$(left 150)" bash -c "$(declare -f bench); machine='$machine' M='$M' OUT='$OUT'; bench --stages dit --size 512,1024 --steps 3 --tag $tag --job-timeout 140 $*"
  pack
}

if has info; then stamp info; info; fi
if has golden; then
  stamp golden
  timeout "$(left 120)" node dist/gpu-golden.js --ep webgpu --out "$OUT/golden-webgpu.json"
  pack
fi
if has probe; then
  stamp probe
  timeout "$(left 200)" node dist/gpu-probe.js --only ${PROBES:-nbits,attn,fp8} --out "$OUT/probe.json" 2> "$OUT/probe-stderr.txt"
  grep -iE "not assigned|fallback|error" "$OUT/probe-stderr.txt" | sort | uniq -c | head -20
  pack
fi
if has fill; then
  stamp fill
  if [ -n "${FILL_ALL:-}" ]; then fill full "$M" "$W/manifest.json"; else fill full "$M" "$W/manifest.json" --only flux-fp8; fi
  df -h /tmp | tail -1
fi
if has torch; then
  stamp torch
  timeout "$(left 120)" python3 scripts/gpu/torch_flux.py "$M/flux-fp8.safetensors" --sizes 512,1024 --txt 512 --denoise 512:28,1024:20 --out "$OUT/torch.json"
  pack
fi
has dit && ditrun int8-default --weights int8
has ditmha && ditrun int8-mha --weights int8 --attention plain
has ditact && ditrun int8-act --weights int8 --int8-activations on
has fp16 && ditrun fp16-default --weights fp16
has int4 && ditrun int4-default --weights int4
has chunks && ditrun int8-whole --weights int8 --chunks 1
has fp8 && ditrun fp8-words --weights fp8
if has loads; then
  # Where a warm DiT load goes (cache present after the first): prefill / graph build / session
  # creation, per optimization level; 512² steps show what each level costs at run time.
  for level in all all extended basic; do
    stamp "load int8 $level"
    timeout "$(left 120)" bash -c "$(declare -f bench); machine='$machine' M='$M' OUT='$OUT'; bench --stages dit --size 512 --steps 2 --weights int8 --opt-level $level --tag load-$level --job-timeout 110" 2>&1 | grep -E "loaded in|s/step"
  done
  stamp "load fp8"
  timeout "$(left 100)" bash -c "$(declare -f bench); machine='$machine' M='$M' OUT='$OUT'; bench --stages dit --size 512 --steps 2 --weights fp8 --opt-level extended --tag load-fp8-extended --job-timeout 90" 2>&1 | grep -E "loaded in|s/step"
  pack
fi
if has cpu; then
  # Issue 12 item 6: the CPU provider with int8 activations (blocks of 128, its default) and fp8
  # (pair table) against PyTorch CPU eager on all 16 cores, 512²: quarter width, then full size.
  stamp cpu-quarter
  fill "$QMODEL" "$Q" "$W/manifest-q.json" --only flux-fp8
  timeout "$(left 90)" python3 scripts/gpu/torch_flux.py "$Q/flux-fp8.safetensors" --device cpu --modes fp32,bf16 --sizes 512 --txt 512 --reps 2 --out "$OUT/torch-cpu-quarter.json"
  timeout "$(left 120)" node dist/bench.js --model "$QMODEL" --dir "$Q" --ep cpu --t5 512 --out "$OUT" --machine "$machine" \
    --stages dit --size 512 --weights int8,fp8 --steps 3 --tag cpu-quarter --job-timeout 55
  pack
  stamp cpu-full
  timeout "$(left 150)" python3 scripts/gpu/torch_flux.py "$M/flux-fp8.safetensors" --device cpu --modes bf16 --sizes 512 --txt 512 --reps 1 --out "$OUT/torch-cpu-full.json"
  pack
  timeout "$(left 200)" node dist/bench.js --model full --dir "$M" --ep cpu --t5 512 --out "$OUT" --machine "$machine" \
    --stages dit --size 512 --weights int8 --steps 2 --tag cpu-full --job-timeout 190
  pack
fi
if has e2e; then
  # sharp writes the PNG (scripts/gpu: .gpu2/sharp.tar.xz, carried for this phase only)
  [ -f .gpu2/sharp.tar.xz ] && (cd node_modules && xz -dc ../.gpu2/sharp.tar.xz | tar xf -)
  for spec in 1024:20 512:28; do
    size=${spec%:*}; steps=${spec#*:}
    stamp "e2e $size $steps"
    timeout "$(left 280)" bash -c "$(declare -f bench); machine='$machine' M='$M' OUT='$OUT'; bench --size $size --steps $steps --weights int8 --modes resident --e2e --tag e2e-$size --job-timeout 270"
    pack
  done
fi
stamp done
pack
