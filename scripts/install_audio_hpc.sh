#!/usr/bin/env bash
# Install the cluster package `audio_hpc` (hpc/pyproject.toml) editable into a venv, so tests,
# benches and the Airflow side import it by name from this checkout; its dev-mode dirs also
# make the dev-cluster tools (hpc/devcluster: sample clips, WER scoring) importable there.
# SLURM jobs never rely on it: they run the deployed release (PYTHONPATH, slurm/_runtime.sh).
# Usage: scripts/install_audio_hpc.sh VENV_DIR   (idempotent)
set -euo pipefail
VENV=${1:?usage: install_audio_hpc.sh VENV_DIR}
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
installed=$("$VENV/bin/python" -c 'import audio_hpc; print(audio_hpc.__file__)' 2>/dev/null || true)
if [[ $installed != "$HERE/hpc/src/audio_hpc/__init__.py" ]]; then
  "$VENV/bin/python" -m pip install -q --no-deps -e "$HERE/hpc"
fi
