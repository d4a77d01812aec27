#!/usr/bin/env bash
# airflow-init (docker-compose): runs as root once per `docker compose up`, after the cluster's
# login node is healthy and before any other Airflow service starts.
#   1. pin: publish the cluster's SSH client key and the login node's host key to the Airflow
#      user's ~/.ssh. cluster-init writes them into the cluster-client volume at first start
#      (hpc/cluster/configure.sh, as natively): client_key is root-only there, and known_hosts
#      names the host as configure.sh was told. Airflow reaches it as [$HPC_SSH_HOST]:$HPC_SSH_PORT
#      (the bare name for port 22), so the pinned line is written for that name. SSHHook
#      (paramiko) then loads ~/.ssh/known_hosts and rejects any other host key: verified,
#      never ignored.
#   2. the simple auth manager's password file (dev login admin / $AIRFLOW_ADMIN_PASSWORD).
#   3. migrate the metadata DB; the first Airflow command also writes airflow.cfg with random
#      shared secrets (JWT, fernet) into the config volume every component reads.
# Usage: airflow-init.sh [pin]    (pin: step 1 only)
set -euo pipefail

STATE=${DEVCLUSTER_STATE:-/cluster-client}
SSH_DIR=${AIRFLOW_SSH_DIR:-/home/airflow/.ssh}
HOST=${HPC_SSH_HOST:-login}
PORT=${HPC_SSH_PORT:-22}
OWNER="${AIRFLOW_UID:-50000}:0"

die() { echo "airflow-init: $*" >&2; exit 1; }

pin() {
  [[ -s $STATE/known_hosts && -s $STATE/client_key ]] \
    || die "no known_hosts/client_key in $STATE: has cluster-init run?"
  local _name keytype key
  read -r _name keytype key _ <"$STATE/known_hosts"
  [[ -n $keytype && -n $key ]] || die "cannot read a host key from $STATE/known_hosts"
  local name="[$HOST]:$PORT"
  if [[ $PORT == 22 ]]; then name=$HOST; fi   # known_hosts spells the default port bare
  install -d -m 700 -o "${OWNER%:*}" -g 0 "$SSH_DIR"
  install -m 600 -o "${OWNER%:*}" -g 0 "$STATE/client_key" "$SSH_DIR/devcluster_key"
  printf '%s %s %s\n' "$name" "$keytype" "$key" >"$SSH_DIR/known_hosts"
  chown "$OWNER" "$SSH_DIR/known_hosts"
  chmod 644 "$SSH_DIR/known_hosts"
  echo "airflow-init: pinned $name $keytype $(ssh-keygen -lf "$SSH_DIR/known_hosts" 2>/dev/null | cut -d' ' -f2)"
}

init() {
  pin
  local passwords=${AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE:?}
  if [[ ! -s $passwords ]]; then   # first init only: later password changes go in this file
    : "${AIRFLOW_ADMIN_PASSWORD:=admin}"
    export AIRFLOW_ADMIN_PASSWORD
    python3 -c 'import json, os, sys; json.dump({"admin": os.environ["AIRFLOW_ADMIN_PASSWORD"]}, sys.stdout)' \
      >"$passwords"
  fi
  /entrypoint airflow db migrate
  chown -R "$OWNER" /opt/airflow/config /opt/airflow/logs
}

case ${1:-init} in
  init) init ;;
  pin) pin ;;
  *) die "usage: $0 [pin]" ;;
esac
