#!/usr/bin/env bash
# On the GPU host: make the issue-13 golden fixtures with diffusers (scripts/gpu/make_golden_13.py).
# The host's own diffusers/peft are used when present; else the sources carried in .gpuref/
# (git archives of huggingface/diffusers, peft, accelerate — data for this run, never committed).
set -u
repo=$(pwd)
ref=/tmp/ref/diffusers && mkdir -p "$ref" && (cd "$ref" && tar xJf "$repo/.gpuref/diffusers.tar.xz")
# diffusers' kohya converter writes FLUX.1's full-size single-block widths (3072·3, 12288) into the
# split of linear1; the tiny model's are 64·3 and 256 (hidden 64, mlp_ratio 4).
sed -i 's/dims=\[3072, 3072, 3072, 12288\]/dims=[64, 64, 64, 256]/' "$ref/src/diffusers/loaders/lora_conversion_utils.py"
grep -c 'dims=\[64, 64, 64, 256\]' "$ref/src/diffusers/loaders/lora_conversion_utils.py"
python3 -c "import sys, torch; print(sys.version, torch.__version__)"
pp=""
python3 -c "import diffusers, transformers; print('diffusers', diffusers.__version__, diffusers.__file__, 'transformers', transformers.__version__)" || pp="$ref/src"
echo "PYTHONPATH extra: $pp"
export PYTHONPATH="${pp}${PYTHONPATH:+:$PYTHONPATH}"
python3 -c "import diffusers, peft; print('with carried:', diffusers.__version__, peft.__version__)" || true
mkdir -p "$OUT/g1" "$OUT/g2"
python3 scripts/gpu/make_golden_13.py test/fixtures/flux-tiny "$OUT/g1" 2>&1 | tail -60
if [ ! -f "$OUT/g1/lora-cases.safetensors" ]; then
  echo "--- LoRA again without peft (diffusers converters + merge)"
  NO_PEFT=1 python3 scripts/gpu/make_golden_13.py test/fixtures/flux-tiny "$OUT/g2" 2>&1 | tail -30
fi
ls -la "$OUT"/g1 "$OUT"/g2
