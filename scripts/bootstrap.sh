#!/usr/bin/env bash
# Install what llamafleet needs on a Debian/Ubuntu controller (run as root); safe to run again.
# One line per step; the package managers' own output goes to a log that is shown when a step fails.
set -euo pipefail
cd "$(dirname "$0")/.."

log=$(mktemp -t llamafleet-bootstrap.XXXXXX.log)
step() {
    local what=$1 started=$SECONDS
    shift
    printf 'bootstrap: %s ... ' "$what"
    if "$@" >>"$log" 2>&1; then
        printf 'done (%ss)\n' "$((SECONDS - started))"
    else
        local status=$?
        printf 'FAILED (exit %s); the last lines of %s:\n' "$status" "$log"
        tail -n 40 "$log" | sed 's/^/    /'
        exit "$status"
    fi
}

# haproxy and socat: the balancer role's configuration is checked by the real haproxy in the unit tier.
host_packages=(openssh-client openssh-server sudo curl systemd-container debootstrap nftables iproute2 python3-venv
    haproxy socat)
missing=()
for pkg in "${host_packages[@]}"; do
    dpkg-query -W -f='${db:Status-Abbrev}' "$pkg" 2>/dev/null | grep -q '^ii' || missing+=("$pkg")
done
if ((${#missing[@]})); then
    export DEBIAN_FRONTEND=noninteractive
    step "apt-get update" apt-get update -q
    step "apt-get install ${missing[*]}" apt-get install -y -q --no-install-recommends "${missing[@]}"
    if [[ " ${missing[*]} " == *" haproxy "* ]]; then  # installed for its checks only: not left running here
        if [ -d /run/systemd/system ]; then
            step "systemctl disable --now haproxy" systemctl disable --now haproxy
        else
            step "service haproxy stop" service haproxy stop
        fi
    fi
fi

if [ ! -x .venv/bin/python ]; then
    step "python3 -m venv .venv" python3 -m venv .venv
fi
stamp=.venv/.installed-$(sha256sum pyproject.toml | cut -c1-16)
if [ ! -e "$stamp" ]; then
    step "pip install --upgrade pip" .venv/bin/pip install -q --upgrade pip
    step "pip install -e .[dev] (llamafleet and its test tools)" .venv/bin/pip install -q -e '.[dev]'
    rm -f .venv/.installed-*
    touch "$stamp"
fi
# llamafleet's own modules compiled now, as pip does for installed packages: every command then starts
# from bytecode, also where PYTHONDONTWRITEBYTECODE keeps Python from caching it (stale files are redone).
step "byte-compile llamafleet" .venv/bin/python -m compileall -q -j 0 llamafleet roles scripts tasks.py
rm -f "$log"
echo "bootstrap: ready (.venv/bin/invoke, .venv/bin/python -m pytest)"
