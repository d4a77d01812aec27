#!/usr/bin/env bash
# The Airflow-side Python environment (off-cluster): Airflow 3 + providers + test tools.
# Usage: scripts/install_airflow.sh [VENV_DIR]   (default .venv; idempotent)
set -euo pipefail
VENV=${1:-.venv}
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# Chromium for the browser test, shellcheck and docker-compose (offline validator) for the
# container tests, curl for the stack's health check.
missing=()
for pkg in chromium shellcheck docker-compose curl python3-venv; do
  dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
done
if ((${#missing[@]})); then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
[[ -x $VENV/bin/python ]] || python3 -m venv "$VENV"
if ! cmp -s "$HERE/requirements-dev.txt" "$VENV/.installed-requirements" 2>/dev/null \
   || ! cmp -s "$HERE/requirements.txt" "$VENV/.installed-requirements-base" 2>/dev/null; then
  "$VENV/bin/pip" install -q -r "$HERE/requirements-dev.txt"
  cp "$HERE/requirements-dev.txt" "$VENV/.installed-requirements"
  cp "$HERE/requirements.txt" "$VENV/.installed-requirements-base"
fi
bash "$HERE/scripts/install_audio_hpc.sh" "$VENV"
