#!/usr/bin/env bash
# A multi-node SLURM 24.11 cluster in containers (Debian 13's SLURM on a debootstrap base):
# hpc-cluster-{slurmdbd (+ MariaDB), slurmctld, c1, c2, login}. The login node's sshd, for the
# non-root submit user only, is published on 127.0.0.1:$CLUSTER_SSH_PORT with a pinned host
# key: the only thing Airflow talks to. The native 22.05 bed (hpc/devcluster/provision.sh)
# stays what `make demo` runs; this cluster is the second world the real-SLURM tests run on.
#
# Usage: cluster.sh up|down|status|env|purge|root
#   up      engine (scripts/docker_engine.sh), the node root (one debootstrap of trixie with
#           the node's packages), node image, config + keys under $CLUSTER_DATA, nodes
#           started, waits until both compute nodes serve jobs and the submit user can sbatch
#           over SSH. Idempotent; one at a time (a lock). Logs each step's seconds.
#   down    stop and remove the nodes (images and $CLUSTER_DATA stay)
#   status  the nodes and `sinfo`
#   env     the connection facts as DEVCLUSTER_* shell variables (same names as the bed's)
#   purge   down, then delete $CLUSTER_DATA (jobs' files on the shared volume included)
#   root    build the node root unless present, print its tag (the compose stack's node base)
# The jobs' runtime is the host's /opt/hpc-venv (from `provision.sh install`), bind-mounted
# read-only with its interpreter: the venv is Python 3.11 (Debian 12) and trixie's python3 is
# 3.13, whose ABI its compiled wheels (torch, ctranslate2, av) do not match. Python 3.11's
# binary and standard library come from the host too; their shared libraries are trixie's
# (glibc is backwards compatible). Installing WhisperX into the image would take minutes.
# FFmpeg, which the jobs run for a clip PyAV cannot read, is a static build (static-ffmpeg.sh,
# fetched once into $CLUSTER_DATA/bin) mounted as /usr/local/bin/ffmpeg. The compose dev stack
# runs the same nodes with that runtime copied into its image (node.Dockerfile's `compose`
# stage) and the same configure.sh: docs/compose-and-deploy.md.
# Environment: CLUSTER_DATA (/var/lib/hpc-cluster), CLUSTER_SSH_PORT (2223), DEVCLUSTER_USER
# (hpcuser), EXTRA_CA_CERTS (PEM text for a TLS-inspecting proxy). Needs root.
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
DATA=${CLUSTER_DATA:-/var/lib/hpc-cluster}
CONF=$DATA/conf
SHARED=$DATA/shared
SSH_PORT=${CLUSTER_SSH_PORT:-2223}
SUBMIT_USER=${DEVCLUSTER_USER:-hpcuser}
NAME=cluster24
IMAGE=audio-slurm-node:24.11
HPC_PYTHON=${HPC_VENV:-/opt/hpc-venv}/bin/python
FFMPEG=$DATA/bin/ffmpeg
PROJECT=hpc-cluster

log() { printf '[cluster %3ds] %s\n' "$SECONDS" "$*" >&2; }

step() { # step NAME CMD...: run one step of `up`, log how long it took
  local name=$1 start=$SECONDS
  shift
  "$@"
  log "step $name: $((SECONDS - start)) s"
}

engine() {
  bash "$REPO/scripts/docker_engine.sh" install
  bash "$REPO/scripts/docker_engine.sh" start
  eval "$(bash "$REPO/scripts/docker_engine.sh" env)"
  export DOCKER_HOST
}

compose() {
  local uid gid
  uid=$(id -u "$SUBMIT_USER") gid=$(id -g "$SUBMIT_USER")
  SUBMIT_USER=$SUBMIT_USER SUBMIT_UID=$uid SUBMIT_GID=$gid CLUSTER_SHARED=$SHARED \
    CLUSTER_CONF=$CONF CLUSTER_SSH_PORT=$SSH_PORT CLUSTER_FFMPEG=$FFMPEG \
    docker-compose -p "$PROJECT" -f "$HERE/compose.yaml" "$@"
}

node_packages() { # node.Dockerfile's PACKAGES, comma-separated (debootstrap --include)
  sed -n 's/^ARG PACKAGES="\(.*\)"$/\1/p' "$HERE/node.Dockerfile" | tr ' ' ','
}

build_root() { # build_root TAG PACKAGES: trixie with the node's packages, one debootstrap
  DEBIAN_SUITE=trixie DEBIAN_INCLUDE=$2 bash "$REPO/docker/standins/debian-slim.sh" "$1" >&2
}

docker_build() {
  # --target node: the Dockerfile's later stages (the compose image's runtime) are not built.
  local out
  out=$(DOCKER_BUILDKIT=0 docker build --network host -f "$HERE/node.Dockerfile" --target node \
    --build-arg BASE="$1" --build-arg EXTRA_CA_CERTS="${EXTRA_CA_CERTS:-}" -t "$IMAGE" \
    "$REPO" 2>&1) || { printf '%s\n' "$out" | tail -30 >&2; return 1; }
}

root_tag() { # the node root's tag: it names the package list, so a changed list builds anew
  local packages
  packages=$(node_packages)
  [[ -n $packages ]] || { log "node.Dockerfile has no ARG PACKAGES=\"...\" line"; return 1; }
  echo "audio-slurm-node-root:trixie-$(printf '%s' "$packages" | sha256sum | cut -c1-12)"
}

ensure_root() { # the node root (built unless present); prints its tag
  local root packages
  root=$(root_tag)
  if docker image inspect "$root" >/dev/null 2>&1; then
    log "node root $root present"
  else
    packages=$(node_packages)
    step "node root $root (debootstrap trixie + ${packages//,/ })" build_root "$root" "$packages"
  fi
  echo "$root"
}

build() {
  # The node image's base is trixie debootstrapped with the image's packages in the same pass
  # (docker/standins/debian-slim.sh, as the compose stack's Debian stand-ins): node.Dockerfile
  # then installs nothing.
  local root
  root=$(ensure_root)
  step "node image $IMAGE" docker_build "$root"
  log "node image $IMAGE: slurm $(docker run --rm --entrypoint dpkg-query "$IMAGE" \
    -W -f '${Version}' slurmctld)"
}

fetch_ffmpeg() { # the static FFmpeg the nodes mount, once
  [[ -x $FFMPEG ]] || log "$(bash "$HERE/static-ffmpeg.sh" "$HPC_PYTHON" "$FFMPEG")"
}

configure() {
  # The submit user exists on the host (the bed's provision.sh creates it): the nodes use its
  # uid/gid so that files on the shared volume mean the same on both sides.
  id "$SUBMIT_USER" >/dev/null 2>&1 || useradd -m -s /bin/bash "$SUBMIT_USER"
  install -d -m 755 "$DATA" "$SHARED" "$SHARED/home"
  install -d -m 750 -o "$SUBMIT_USER" -g "$(id -g "$SUBMIT_USER")" "$SHARED/home/$SUBMIT_USER"
  # slurm.conf and the secrets: the same script the compose dev stack's cluster-init runs.
  # Airflow's client key and known_hosts stay in $DATA, out of what the nodes mount.
  CLUSTER_NAME=$NAME KNOWN_HOST="[127.0.0.1]:$SSH_PORT" bash "$HERE/configure.sh" "$CONF" "$DATA"
}

wait_for() { # wait_for SECONDS DESCRIPTION CMD...
  local deadline=$((SECONDS + $1)) what=$2; shift 2
  until "$@" >/dev/null 2>&1; do
    ((SECONDS < deadline)) || { log "timed out waiting for $what"; return 1; }
    sleep 1
  done
}

ssh_login() {
  ssh -i "$DATA/client_key" -p "$SSH_PORT" -o BatchMode=yes -o StrictHostKeyChecking=yes \
    -o UserKnownHostsFile="$DATA/known_hosts" "$SUBMIT_USER@127.0.0.1" "$@"
}

two_up() { # both compute nodes serve jobs (idle, or running another test worker's jobs)
  [[ $(docker exec hpc-cluster-slurmctld sinfo -h -N -p cpu -t idle,mixed,allocated -o %N \
    | sort -u | wc -l) == 2 ]]
}

start_nodes() {
  compose up -d --no-build >/dev/null 2>&1 || compose up -d --no-build
}

do_up() {
  # One `up` at a time (each test worker brings the cluster up, or finds it up).
  install -d -m 755 "$DATA"
  exec 9>"$DATA/up.lock"
  flock 9
  step engine engine 9>&-   # dockerd, started here, must not hold the lock
  build
  step "static ffmpeg" fetch_ffmpeg
  step configure configure
  step start start_nodes
  step "c1 and c2 up" wait_for 120 "both compute nodes up" two_up
  step "sinfo over SSH" wait_for 60 "sinfo over SSH as $SUBMIT_USER" ssh_login sinfo
  log "up: ssh -p $SSH_PORT $SUBMIT_USER@127.0.0.1; $(ssh_login sinfo -h -o '%P=%D' | tr '\n' ' ')"
}

do_env() {
  cat <<ENV
DEVCLUSTER_SSH_HOST=127.0.0.1
DEVCLUSTER_SSH_PORT=$SSH_PORT
DEVCLUSTER_USER=$SUBMIT_USER
DEVCLUSTER_KEY=$DATA/client_key
DEVCLUSTER_KNOWN_HOSTS=$DATA/known_hosts
DEVCLUSTER_HOST_KEY="$(cut -d' ' -f1,2 "$CONF/ssh_host_ed25519_key.pub")"
CLUSTER_SHARED=$SHARED
ENV
}

[[ $EUID -eq 0 ]] || { echo "cluster.sh must run as root" >&2; exit 1; }
case ${1:-} in
  up) do_up ;;
  down) engine; compose down --remove-orphans ;;
  status) engine; compose ps; docker exec hpc-cluster-slurmctld sinfo || true ;;
  env) do_env ;;
  purge) engine; compose down --remove-orphans; rm -rf "$DATA" ;;
  root) engine >&2; ensure_root ;;
  *) echo "usage: $0 up|down|status|env|purge|root" >&2; exit 2 ;;
esac
