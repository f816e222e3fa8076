#!/usr/bin/env bash
# Issue 13 on the GPU host (WebGPU, int8, the full-size synthetic FLUX.1-dev, 512 text tokens):
#   lora    the DiT alone at 1024² and 512²: steps without, then with a synthetic rank-32 kohya
#           LoRA on every Linear (same session after one rebuild), strength change and removal times
#   hires   time to the PNG, warm: 1024², 20 steps, then a ×2 hires pass (2048², 20 steps at
#           strength 0.45 = 9 run, image upscale, tiled VAE), memory mode sequential (GPU peak =
#           the largest single part)
#   dit2048 the DiT alone at 2048², attention in 64 query pieces (a hires pass's second half)
#   cfg     time to the PNG, warm: 1024², 20 steps with true CFG 3.5 (two DiT runs a step), resident
#   plain   the DiT alone at 1024² and 512², int8, the defaults (bias's same-call baseline)
#   bias    the DiT alone at 1024² and 512², int8 with each bias inside MatMulNBits (no Add node after it)
#   loraprof  as lora, 2 steps, with onnxruntime's profiler: GPU time per kernel without and with
#           the LoRA (scripts/gpu/profile-summary.mjs per session); LORAPROF_TUNING (JSON) for another branch form
#   abbias  plain vs bias in ONE process (bench --tuning-b: A, B, A again), 1024² and 512²
#   abnbits the LoRA rank 32 with each branch in float16 MatMul vs its down-projection, or both products,
#           as 8-bit MatMulNBits (loraNbits down / both), one process (A, B, C, A again)
#   absplit the LoRA rank 32: the down-projection as one MatMul vs split 2 and 4 ways side by side
#           (loraSplit), the up-projection + Add as one Gemm (loraGemm), and both, one process
#           (A, B…, A again); ABSPLIT (a JSON list) for other variants
#   abchunks the DiT alone at 1024²: attention in 1, 2 and 4 query pieces, one process
#           (the GPU memory after the steps: what the pieces save)
#   quick   the DiT alone at 1024² and 512², int8: a warm load with onnxruntime's verbose log, then
#           the WebGPU submit window (maxNumPendingDispatches 4) with the attention whole or in
#           pieces, one process per variant (A … A again)
#   loaddiag a warm DiT load with onnxruntime's verbose log (where session creation's time goes),
#           then one with prepacking off
#   golden  the golden tiny model on WebGPU (scripts/gpu/golden-check.ts): every kernel choice's
#           error, nbitsBias's and the LoRA cases in both branch forms; needs test/fixtures/flux-tiny
#           carried (23 MB: leave .gpu2 behind if the 64 MiB limit bites)
# Needs FILL_ALL=1 for hires/cfg (every component). Results: $OUT/log.txt and $OUT/results.tgz.
#   OUT=/tmp/out BUDGET=570 FILL_ALL=1 bash scripts/gpu/device-bench-13.sh info fill lora hires cfg > $OUT/log.txt 2>&1
phases=" ${*:-info fill lora hires cfg} "
FINAL_OUT=${OUT:-/tmp/mf-out}
OUT=/tmp/mf-results
mkdir -p "$OUT"
source scripts/gpu/common.sh
pack() { tar czf "$FINAL_OUT/results.tgz" -C "$OUT" . 2>/dev/null; }
[ -f .gpu2/sharp.tar.xz ] && (cd node_modules && xz -dc ../.gpu2/sharp.tar.xz | tar xf -)

if has info; then stamp info; info; fi
if has fill; then
  stamp fill
  if [ -n "${FILL_ALL:-}" ]; then fill full "$M" "$W/manifest.json"; else fill full "$M" "$W/manifest.json" --only flux-fp8; fi
fi
if has golden; then
  stamp "golden on webgpu"
  timeout "$(left 90)" node dist/gpu-golden.js --ep webgpu --out "$OUT/golden-webgpu.json"
  pack
fi
if has hires; then
  stamp "hires 1024 -> 2048"
  timeout "$(left 430)" bash -c "$(declare -f bench); machine='$machine' M='$M' OUT='$OUT'; bench --size 1024 --steps 20 --weights int8 --modes sequential --e2e --warm-only --params '{\"hires\":{\"scale\":2,\"strength\":0.45,\"steps\":20}}' --tag hires-2048 --job-timeout 420"
  pack
fi
if has lora; then
  stamp "lora dit int8 rank 32"
  timeout "$(left 200)" bash -c "$(declare -f bench); machine='$machine' M='$M' OUT='$OUT'; bench --stages dit --size 1024 --steps 3 --weights int8 --lora-rank 32 --tag lora-r32 --job-timeout 190"
  pack
fi
if has plain; then
  stamp "dit int8 1024 and 512, defaults"
  timeout "$(left 100)" bash -c "$(declare -f bench); machine='$machine' M='$M' OUT='$OUT'; bench --stages dit --size 1024,512 --steps 4 --weights int8 --tag dit-plain --job-timeout 90"
  pack
fi
if has bias; then
  stamp "dit int8 1024 and 512, bias inside MatMulNBits"
  timeout "$(left 100)" bash -c "$(declare -f bench); machine='$machine' M='$M' OUT='$OUT'; bench --stages dit --size 1024,512 --steps 4 --weights int8 --tuning '{\"nbitsBias\":true}' --tag dit-nbits-bias --job-timeout 90"
  pack
fi
if has abbias; then
  stamp "dit int8 1024 and 512: defaults vs bias inside MatMulNBits, one process"
  timeout "$(left 160)" bash -c "$(declare -f bench); machine='$machine' M='$M' OUT='$OUT'; bench --stages dit --size 1024,512 --steps 5 --weights int8 --tuning-b '{\"nbitsBias\":true}' --tag dit-ab-nbits-bias --job-timeout 150"
  pack
fi
if has abnbits; then
  stamp "lora r32: float16 MatMul vs MatMulNBits branches, one process"
  timeout "$(left 300)" bash -c "$(declare -f bench); machine='$machine' M='$M' OUT='$OUT'; bench --stages dit --size 1024 --steps 3 --weights int8 --lora-rank 32 --tuning-b '[{\"loraNbits\":\"down\"},{\"loraNbits\":\"both\"}]' --tag lora-ab-nbits --job-timeout 290"
  pack
fi
if has absplit; then
  stamp "lora r32: branch forms (split down-projection, Gemm up-projection), one process"
  sp=${ABSPLIT:-'[{"loraSplit":2},{"loraSplit":4},{"loraGemm":true},{"loraGemm":true,"loraSplit":4}]'}
  timeout "$(left 400)" bash -c "$(declare -f bench); machine='$machine' M='$M' OUT='$OUT'; bench --stages dit --size 1024 --steps 3 --weights int8 --lora-rank 32 --tuning-b '$sp' --tag lora-ab-split --job-timeout 390"
  pack
fi
if has quick; then
  # The WebGPU context (cache mode, submit window) is the process's: one process per variant. The
  # first with onnxruntime's verbose log (where a load's time goes); then a 4-dispatch submit window
  # (MAJICFLUX_ORT_CONFIG) with the attention in 4 pieces, the window alone, and A again.
  W4='{"ep.webgpuexecutionprovider.maxNumPendingDispatches":"4"}'
  i=0
  for v in '{}|{}' "{\"attentionChunks\":4}|$W4" "{}|$W4" '{}|{}'; do
    i=$((i+1)); tuning=${v%%|*}; config=${v#*|}; stamp "dit int8 1024 and 512, variant $i: tuning $tuning, session config $config"
    if [ $i = 1 ]; then
      MAJICFLUX_ORT_LOG=0 timeout "$(left 90)" bash -c "$(declare -f bench); machine='$machine' M='$M' OUT='$OUT'; bench --stages dit --size 1024,512 --steps 3 --weights int8 --tuning '$tuning' --tag quick-$i --job-timeout 85" > "$W/verbose.log" 2>&1
      grep -vE "^[0-9-]+ [0-9:.]+ \\[" "$W/verbose.log"
      grep -nE "TraceSessionOptions|Saving initialized|Done saving|Session successfully|Finished|repack|Partition" "$W/verbose.log" | cut -c1-300 | head -40
      xz -T4 -c "$W/verbose.log" > "$OUT/verbose.log.xz"
    else
      MAJICFLUX_ORT_CONFIG="$config" timeout "$(left 45)" bash -c "$(declare -f bench); machine='$machine' M='$M' OUT='$OUT'; bench --stages dit --size 1024,512 --steps 3 --weights int8 --tuning '$tuning' --tag quick-$i --job-timeout 40"
    fi
    pack
  done
fi
if has loaddiag; then
  stamp "warm DiT load, onnxruntime verbose log"
  MAJICFLUX_ORT_LOG=0 timeout "$(left 60)" bash -c "$(declare -f bench); machine='$machine' M='$M' OUT='$OUT'; bench --stages dit --size 512 --steps 1 --weights int8 --tag load-verbose --job-timeout 55" > "$W/verbose.log" 2>&1
  grep -nE "TraceSessionOptions|Saving initialized|Done saving|Session successfully|Initializing session|Creating and using per session|Finished|repack|Loading|model_loading|session_initialization|Partition|Memcpy" "$W/verbose.log" | head -80
  xz -T4 -c "$W/verbose.log" > "$OUT/verbose.log.xz"
  stamp "warm DiT load, prepacking off"
  MAJICFLUX_ORT_CONFIG='{"session.disable_prepacking":"1"}' timeout "$(left 70)" bash -c "$(declare -f bench); machine='$machine' M='$M' OUT='$OUT'; bench --stages dit --size 1024 --steps 3 --weights int8 --tag load-noprepack --job-timeout 65"
  pack
fi
if has abchunks; then
  stamp "dit int8 1024 and 512: attention in 1, 2, 4 query pieces, one process"
  timeout "$(left 200)" bash -c "$(declare -f bench); machine='$machine' M='$M' OUT='$OUT'; bench --stages dit --size 1024 --steps 3 --weights int8 --tuning-b '[{\"attentionChunks\":2},{\"attentionChunks\":4}]' --tag dit-ab-chunks --job-timeout 190"
  pack
fi
if has loraprof; then
  stamp "lora dit int8 rank 32, profiled"
  mkdir -p "$W/prof"; rm -f "$W/prof"/*.json
  lt=${LORAPROF_TUNING:-"{}"}
  MAJICFLUX_ORT_PROFILE="$W/prof/lora" timeout "$(left 160)" bash -c "$(declare -f bench); machine='$machine' M='$M' OUT='$OUT'; bench --stages dit --size 1024 --steps 2 --weights int8 --lora-rank 32 --tuning '$lt' --tag lora-prof --job-timeout 150"
  for f in "$W/prof"/*.json; do node scripts/gpu/profile-summary.mjs "$f" --json "$OUT/profile-$(basename "$f")"; done
  pack
fi
if has dit2048; then
  # The DiT alone at 2048² with the attention in 64 query pieces (what a hires pass builds, attentionChunksFor).
  stamp "dit 2048 int8 64 pieces"
  timeout "$(left 200)" bash -c "$(declare -f bench); machine='$machine' M='$M' OUT='$OUT'; bench --stages dit --size 2048 --steps 3 --weights int8 --chunks 64 --tag dit-2048-c64 --job-timeout 190"
  pack
fi
if has cfg; then
  stamp "true cfg 1024"
  timeout "$(left 200)" bash -c "$(declare -f bench); machine='$machine' M='$M' OUT='$OUT'; bench --size 1024 --steps 20 --weights int8 --modes resident --e2e --warm-only --params '{\"trueCfgScale\":3.5,\"negativePrompt\":\"blurry\"}' --tag cfg-1024 --job-timeout 190"
  pack
fi
stamp done
pack
