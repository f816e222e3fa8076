# Shared by the device-bench scripts (sourced): node and Vulkan set up, paths, a time budget and a
# memory trace. Each script then defines its phases; `has <phase>` says whether to run one.
#   OUT   where results go (the device tool brings $OUT back)     W       scratch folder for models
#   BUDGET seconds the whole script may take; `left N` caps a timeout at N and at what is left
[ -n "${MF_NO_SETUP:-}" ] || source scripts/gpu/setup.sh
set +e -uo pipefail
OUT=${OUT:-/tmp/mf-out}
W=${W:-/tmp/mf}
M=$W/full
Q=${Q:-$W/quarter}
QMODEL=${QMODEL:-quarter}
BUDGET=${BUDGET:-540}
mkdir -p "$OUT" "$W"
has() { [[ "$phases" == *" $1 "* ]]; }
t0=$(date +%s)
left() { local l=$(( BUDGET - ($(date +%s) - t0) )); (( l < $1 )) && echo "$(( l > 1 ? l : 1 ))" || echo "$1"; }
remaining() { echo $(( BUDGET - ($(date +%s) - t0) )); }
stamp() { echo "== $(( $(date +%s) - t0 )) s: $*"; }
machine="$(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -1), $(nproc) cores, $(free -g | awk '/Mem:/{print $2}') GiB RAM (device host)"
export PYTHONUNBUFFERED=1
# time, RAM used and available (MiB), GPU memory used (MiB), every 2 s
( while sleep 2; do echo "$(( $(date +%s) - t0 )) $(free -m | awk '/Mem:/{print $3, $6}') $(nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits 2>/dev/null)"; done ) > "$OUT/mem-$(date +%s).log" &
monitor=$!
trap 'kill $monitor 2>/dev/null; dmesg 2>/dev/null | grep -iE "oom|killed process|out of memory" | tail -5' EXIT

info() {
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader; nproc; free -g | sed -n 2p; df -h /tmp | tail -1; node --version
  lscpu | grep -E "Model name|^CPU\(s\)|Thread|Core|Socket"
  python3 -c 'import torch; print("torch", torch.__version__, "threads", torch.get_num_threads())'
}
# fill <model> <dir> <manifest> [--only part]: write a synthetic model once (bench.js plans it,
# fill_synthetic.py writes it). A marker per part set (.filled-all, .filled--only-flux-fp8, …) tells
# a DiT-only fill from a whole one; .complete is what bench.js checks before writing a model itself.
fill() {
  local model=$1 dir=$2 manifest=$3; shift 3
  local marker="$dir/.filled-${*:-all}"; marker=${marker// /-}
  [ -f "$marker" ] || [ -f "$dir/.filled-all" ] || { node dist/bench.js --model "$model" --dir "$dir" --prepare-manifest "$manifest" &&
    timeout "$(left 150)" python3 scripts/gpu/fill_synthetic.py "$manifest" "$@" && touch "$marker" "$dir/.complete"; }
}
# The full-size synthetic model's benchmark on WebGPU (each script passes its stages, sizes, formats).
bench() { node dist/bench.js --model full --dir "$M" --ep webgpu --t5 512 --out "$OUT" --machine "$machine" "$@"; }
