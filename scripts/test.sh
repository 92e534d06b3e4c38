#!/usr/bin/env bash
# Set everything up, then run every test tier (unit, sshd, lab); extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
mkdir -p reports
exec .venv/bin/python -m pytest --junitxml=reports/junit.xml "$@"
