#!/usr/bin/env bash
# Build the pipeline's Apptainer/Singularity images from containers/*.def.
#
# Usage: containers/build_containers.sh [audio_processing|pipeline_utils|all]   (default: all)
# Environment:
#   IMAGES_DIR      where the .sif files go (default: containers/); on the cluster this is the
#                   pipeline config's images_dir
#   CONTAINER_CMD   apptainer or singularity (default: the first of them found in PATH)
#   BUILD_FLAGS     extra flags for `build`; without root, --fakeroot is used unless set
#
# Builds run from the repository root because the definitions' %files copy hpc/ from it.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/.." && pwd)
IMAGES=(audio_processing pipeline_utils)

usage() { echo "usage: $0 [audio_processing|pipeline_utils|all]" >&2; exit "${1:-2}"; }

find_builder() {
  if [[ -n ${CONTAINER_CMD:-} ]]; then
    command -v "$CONTAINER_CMD" >/dev/null || { echo "CONTAINER_CMD=$CONTAINER_CMD is not in PATH" >&2; exit 1; }
    echo "$CONTAINER_CMD"
    return
  fi
  local cmd
  for cmd in apptainer singularity; do
    if command -v "$cmd" >/dev/null; then echo "$cmd"; return; fi
  done
  echo "neither apptainer nor singularity is in PATH: install Apptainer (>= 1.1) or" \
       "SingularityCE (>= 3.7), or on a cluster: module load apptainer" >&2
  exit 1
}

case ${1:-all} in
  all) targets=("${IMAGES[@]}") ;;
  audio_processing | pipeline_utils) targets=("$1") ;;
  -h | --help) usage 0 ;;
  *) echo "unknown image: $1" >&2; usage ;;
esac
(($# <= 1)) || usage

builder=$(find_builder)
out_dir=$(mkdir -p "${IMAGES_DIR:-$HERE}" && cd "${IMAGES_DIR:-$HERE}" && pwd)
read -r -a flags <<<"${BUILD_FLAGS:-}"
if ((${#flags[@]} == 0 && EUID != 0)); then flags=(--fakeroot); fi

cd "$REPO"
for name in "${targets[@]}"; do
  out=$out_dir/$name.sif
  echo "[build] $name.sif with $builder ${flags[*]} (from containers/$name.def)" >&2
  # Build next to the target, then rename: jobs never see a half-written image.
  rm -f "$out.partial"
  "$builder" build "${flags[@]}" "$out.partial" "containers/$name.def"
  mv -f "$out.partial" "$out"
  echo "[build] $out ($(du -h "$out" | cut -f1))" >&2
done
