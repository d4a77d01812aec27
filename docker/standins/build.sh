#!/usr/bin/env bash
# Makes base images available to a Docker engine that no registry serves (an air-gapped site,
# CI here): a TAG already present is kept, else pulled, else built here as a stand-in under the
# same tag, from the Debian archive and PyPI only. docs/compose-and-deploy.md ("Stand-in base
# images") says how each stand-in differs from the real image.
#
# Usage: docker/standins/build.sh TAG...      (from the repository root; root; prints per tag
#                                              "TAG present|pulled|stand-in")
# Stand-ins exist for:
#   debian:12*-slim, debian:bookworm-slim   debootstrap minbase (debian-slim.sh)
#   debian:13*-slim, debian:trixie-slim     the same for trixie (hpc/cluster/: SLURM 24.11)
#   postgres:15-bookworm                    Debian 12's PostgreSQL 15 (postgres.Dockerfile)
#   apache/airflow:X.Y.Z-python3.11         Debian 12's Python 3.11 + apache-airflow==X.Y.Z
#                                           from PyPI (airflow.Dockerfile)
# Environment: DOCKER (docker), EXTRA_CA_CERTS (PEM text: CAs that builds must trust, e.g. a
# TLS-inspecting proxy's), STANDIN_PULL (1: try `docker pull` first, 0: do not), DEBIAN_MIRROR.
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
DOCKER=${DOCKER:-docker}
STANDIN_DEBIAN=debian:12.12-slim   # what the stand-in Dockerfiles build FROM

die() { echo "standins: $*" >&2; exit 1; }

present() { "$DOCKER" image inspect "$1" >/dev/null 2>&1; }

build() { # build TAG DOCKERFILE [BUILD-ARG...]
  local tag=$1 dockerfile=$2; shift 2
  local args=() a
  for a in "$@"; do args+=(--build-arg "$a"); done
  ensure "$STANDIN_DEBIAN" >/dev/null
  DOCKER_BUILDKIT=0 "$DOCKER" build --force-rm --network host -f "$HERE/$dockerfile" \
    --build-arg EXTRA_CA_CERTS="${EXTRA_CA_CERTS:-}" "${args[@]}" -t "$tag" "$REPO" >&2
}

standin() { # standin TAG
  local tag=$1
  case $tag in
    debian:12*-slim | debian:bookworm-slim)
      DOCKER=$DOCKER bash "$HERE/debian-slim.sh" "$tag" >&2 ;;
    debian:13*-slim | debian:trixie-slim)
      DOCKER=$DOCKER DEBIAN_SUITE=trixie bash "$HERE/debian-slim.sh" "$tag" >&2 ;;
    postgres:15-bookworm)
      build "$tag" postgres.Dockerfile ;;
    apache/airflow:[0-9]*.[0-9]*.[0-9]*-python3.11)
      local version=${tag#apache/airflow:}
      build "$tag" airflow.Dockerfile "AIRFLOW_VERSION=${version%-python3.11}" ;;
    *) die "no stand-in for $tag: pull it on a machine that can and \`docker load\` it here" ;;
  esac
}

ensure() { # ensure TAG: print how it became available
  local tag=$1
  if present "$tag"; then echo "$tag present"; return; fi
  if [[ ${STANDIN_PULL:-1} == 1 ]] && timeout 120 "$DOCKER" pull -q "$tag" >/dev/null 2>&1; then
    echo "$tag pulled"; return
  fi
  standin "$tag"
  present "$tag" || die "building the stand-in for $tag left no image"
  echo "$tag stand-in"
}

(($#)) || die "usage: $0 TAG..."
# Debian bases first: the other stand-ins build FROM one, and each tag's line must say how
# that tag itself became available.
for tag in "$@"; do [[ $tag != debian:* ]] || ensure "$tag"; done
for tag in "$@"; do [[ $tag == debian:* ]] || ensure "$tag"; done
