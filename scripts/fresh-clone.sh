#!/usr/bin/env bash
# The README's set-up commands, run as a new user types them: in a fresh clone of HEAD, each
# command read from the README's "The two commands" block and run verbatim, with onnxruntime's and
# npm's variables unset (a user has none of them). CI runs this (.ci/run); so can anyone:
#   bash scripts/fresh-clone.sh
set -euo pipefail
repo=$(git -C "$(dirname "$0")" rev-parse --show-toplevel)
work=$(mktemp -d "${TMPDIR:-/tmp}/majicflux-fresh.XXXXXX")
trap 'rm -rf "$work"' EXIT

# Each non-comment line of the first ```sh block under "## The two commands".
mapfile -t commands < <(awk '/^## The two commands/{s=1} s&&/^```sh/{b=1;next} b&&/^```/{exit} b&&NF&&!/^#/' "$repo/README.md")
[ "${#commands[@]}" -ge 2 ] || { echo "fresh-clone: found ${#commands[@]} commands in README.md's 'The two commands' block" >&2; exit 1; }

git clone --quiet "$repo" "$work/majicflux"
cd "$work/majicflux"
echo "fresh clone of $(git rev-parse --short HEAD) in $PWD"

# What a user doesn't have: onnxruntime-node's install switches and any npm_* variable (a parent
# npm's config would otherwise reach the commands).
unset_vars=(-u ONNXRUNTIME_NODE_INSTALL -u ONNXRUNTIME_NODE_INSTALL_CUDA -u ORT_DISABLE_TELEMETRY)
while IFS= read -r v; do unset_vars+=(-u "$v"); done < <(env | sed -n 's/^\(npm_[A-Za-z0-9_]*\)=.*/\1/p; s/^\(NPM_CONFIG_[A-Za-z0-9_]*\)=.*/\1/p')

for c in "${commands[@]}"; do
  echo "\$ $c"
  env "${unset_vars[@]}" bash -c "$c"
done
echo "fresh-clone: the README's ${#commands[@]} commands passed"
