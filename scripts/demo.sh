#!/usr/bin/env bash
# The demo: set up, start a 3-host lab, provision llama.cpp on it (the second run changes
# nothing), show each host's status, then tear the lab down (also on failure or Ctrl-C).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
export PATH="$PWD/.venv/bin:$PATH"

lab=${LLAMAFLEET_DEMO_LAB:-demo}
version=${LLAMAFLEET_DEMO_VERSION:-b11434}
read -r source _ < <(python scripts/fetch_llama_source.py "$version")

trap 'invoke lab.down --name "$lab"' EXIT
invoke lab.up --name "$lab" --workers 2
inventory="inventory/$lab.yml"
vars=(-e "llama_cpp_version=$version" -e "llama_cpp_source_archive=$source")

echo "== provision (builds llama.cpp once, installs it on every host)"
invoke provision -i "$inventory" "${vars[@]}"
echo "== provision again (nothing to change)"
invoke provision -i "$inventory" "${vars[@]}"
echo "== status"
invoke status -i "$inventory"
echo "== deploy and verify are not available yet; the demo runs them once they are"
