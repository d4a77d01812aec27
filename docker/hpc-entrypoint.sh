#!/usr/bin/env bash
# Main process of the dev HPC container: configure and start every daemon with the SAME
# provision.sh the native test bed uses, then stay in the foreground following the daemons'
# logs until the container is stopped (then stop the daemons cleanly: slurmd needs it).
set -euo pipefail
PROVISION=${PROVISION:-/opt/audio-pipeline/hpc/devcluster/provision.sh}
READY=/run/hpc-devcluster.ready

rm -f "$READY"
bash "$PROVISION" configure start
touch "$READY"   # the compose healthcheck waits for this

tail -n 0 -F /var/log/hpc-devcluster/*.log &
tail_pid=$!
shutdown() {
  rm -f "$READY"
  bash "$PROVISION" stop
  kill "$tail_pid" 2>/dev/null || true
  exit 0
}
trap shutdown TERM INT
wait "$tail_pid"
