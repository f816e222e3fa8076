#!/usr/bin/env bash
# On the GPU host: make the issue-13 golden fixtures with diffusers (scripts/gpu/make_golden_13.py).
# The host's own diffusers/peft are used when present; else the sources carried in .gpuref/
# (git archives of huggingface/diffusers, peft, accelerate — data for this run, never committed).
set -u
repo=$(pwd)
ref=/tmp/ref && mkdir -p "$ref" && (cd "$ref" && for f in "$repo"/.gpuref/*.tar.xz; do tar xJf "$f"; done)
python3 -c "import sys, torch; print(sys.version, torch.__version__)"
pp=""
python3 -c "import diffusers, transformers; print('diffusers', diffusers.__version__, diffusers.__file__, 'transformers', transformers.__version__)" || pp="$ref/src"
python3 -c "import peft; print('peft', peft.__version__)" || pp="${pp:+$pp:}$ref/src"
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
