#!/usr/bin/env bash
# A static FFmpeg (7.0.2, johnvansickle.com's build, from PyPI's imageio-ffmpeg wheel) for the
# SLURM 24.11 nodes: the jobs run it for a clip PyAV cannot read (hpc/src/audio_hpc/decode.py:
# the decode fallback and the failure's reason). Debian's ffmpeg package would be two thirds of
# the node image's packages, and the runtime's own (Debian 12's) is linked against bookworm.
# One place for both clusters: cluster.sh fetches it once for the native nodes (bind-mounted),
# node.Dockerfile's runtime stage for the compose nodes (copied in).
#
# Usage: static-ffmpeg.sh PYTHON OUT    (PYTHON: one with pip, e.g. /opt/hpc-venv/bin/python;
#                                        `pip download` only: no environment changes)
set -euo pipefail
PYTHON=${1:?usage: static-ffmpeg.sh PYTHON OUT}
OUT=${2:?usage: static-ffmpeg.sh PYTHON OUT}
WHEEL=imageio-ffmpeg==0.6.0

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
"$PYTHON" -m pip download -q --no-deps --only-binary=:all: -d "$tmp" "$WHEEL" \
  2> >(grep -v "is ignored: it is neither a file nor a directory" >&2)
install -d -m 755 "$(dirname "$OUT")"
"$PYTHON" - "$tmp" "$OUT.part" <<'PY'
import pathlib, shutil, sys, zipfile

(wheel,) = pathlib.Path(sys.argv[1]).glob("*.whl")
with zipfile.ZipFile(wheel) as whl:
    (name,) = [n for n in whl.namelist() if "/binaries/ffmpeg-linux-" in n]
    with whl.open(name) as src, open(sys.argv[2], "wb") as dst:
        shutil.copyfileobj(src, dst)
PY
chmod 755 "$OUT.part"
mv "$OUT.part" "$OUT"
"$OUT" -version | head -1
