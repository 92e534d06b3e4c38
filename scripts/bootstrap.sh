#!/usr/bin/env bash
# Install what llamafleet needs on a Debian/Ubuntu controller (run as root); safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."

host_packages=(openssh-client openssh-server sudo curl systemd-container debootstrap nftables iproute2 python3-venv)
missing=()
for pkg in "${host_packages[@]}"; do
    dpkg-query -W -f='${db:Status-Abbrev}' "$pkg" 2>/dev/null | grep -q '^ii' || missing+=("$pkg")
done
if ((${#missing[@]})); then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q
    apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

if [ ! -x .venv/bin/python ]; then
    python3 -m venv .venv
fi
stamp=.venv/.installed-$(sha256sum pyproject.toml | cut -c1-16)
if [ ! -e "$stamp" ]; then
    .venv/bin/pip install -q --upgrade pip
    .venv/bin/pip install -q -e '.[dev]'
    rm -f .venv/.installed-*
    touch "$stamp"
fi
