#!/usr/bin/env bash
# Entry point of every node of the SLURM 24.11 cluster: the native one (hpc/cluster/compose.yaml,
# started by cluster.sh) and the docker-compose dev stack's (docker-compose.yaml).
# Usage: node.sh db|ctld|compute|login|init|health
#   db       MariaDB (the container's life) + slurmdbd   ctld   slurmctld (registers the cluster)
#   compute  slurmd (CPUs, memory and gres come from slurm.conf, not from the host)
#   login    sshd for the submit user only: the one thing Airflow talks to
#   init     (compose's one-shot cluster-init) configure.sh into /cluster and /cluster-client:
#            what cluster.sh writes on the host natively
#   health   (the login node's healthcheck) sshd runs, both compute nodes serve jobs, and a
#            job submitted as the submit user ran (once per container start)
# Reads what configure.sh wrote to /cluster (read-only): slurm.conf, gres.conf, cgroup.conf,
# slurmdbd.conf, munge.key, the login node's host key, Airflow's public key. Environment:
# SUBMIT_USER, SUBMIT_UID, SUBMIT_GID (natively the host's, so files on the shared volume
# agree), HOMES (the shared volume's directory of homes: the submit user's home there is its
# pipeline root; default $SHARED/home), CLUSTER_NAME and KNOWN_HOST (init only).
# The daemon runs in the foreground (its log is `docker logs <node>`); it is the container.
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROLE=${1:?usage: node.sh db|ctld|compute|login|init|health}
HOME_DIR=${HOMES:-${SHARED:-}/home}/$SUBMIT_USER
SBATCH_OK=/run/node-health.sbatch-ok

wait_for() { # wait_for SECONDS DESCRIPTION CMD...
  local deadline=$((SECONDS + $1)) what=$2; shift 2
  until "$@" >/dev/null 2>&1; do
    ((SECONDS < deadline)) || { echo "node.sh: timed out waiting for $what" >&2; return 1; }
    sleep 0.5
  done
}

common() {
  getent group "$SUBMIT_USER" >/dev/null || groupadd -g "$SUBMIT_GID" "$SUBMIT_USER"
  if ! id "$SUBMIT_USER" >/dev/null 2>&1; then
    useradd -M -u "$SUBMIT_UID" -g "$SUBMIT_GID" -d "$HOME_DIR" -s /bin/bash "$SUBMIT_USER"
    usermod -p '*' "$SUBMIT_USER"   # useradd locks the account; sshd (UsePAM no) refuses it
  fi
  install -m 644 /cluster/slurm.conf /cluster/gres.conf /cluster/cgroup.conf /etc/slurm/
  install -o munge -g munge -m 400 /cluster/munge.key /etc/munge/munge.key
  install -d -o munge -g munge /run/munge
  pgrep -u munge munged >/dev/null || runuser -u munge -- /usr/sbin/munged
  wait_for 10 munge bash -c 'munge -n | unmunge'
}

db() {
  install -d -o mysql -g mysql /run/mysqld
  [[ -d /var/lib/mysql/mysql ]] || mariadb-install-db --user=mysql >/dev/null
  /usr/sbin/mariadbd --user=mysql --bind-address=127.0.0.1 --skip-name-resolve &
  local server=$!
  wait_for 30 mariadb mariadb -e 'select 1'
  local pass
  pass=$(sed -n 's/^StoragePass=//p' /cluster/slurmdbd.conf)
  mariadb <<SQL
CREATE USER IF NOT EXISTS 'slurm'@'127.0.0.1' IDENTIFIED BY '$pass';
CREATE DATABASE IF NOT EXISTS slurm_acct_db;
GRANT ALL ON slurm_acct_db.* TO 'slurm'@'127.0.0.1';
SQL
  install -o slurm -g slurm -m 600 /cluster/slurmdbd.conf /etc/slurm/slurmdbd.conf
  # slurmdbd daemonizes (pid file /run/slurmdbd.pid): the node outlives it, as a site's
  # accounting host does when the daemon dies, so tests stop and start the daemon alone.
  /usr/sbin/slurmdbd
  wait "$server"
}

ctld() {
  install -d -o slurm -g slurm /var/spool/slurmctld
  local CLUSTER_NAME   # slurm.conf's, as configure.sh wrote it
  CLUSTER_NAME=$(sed -n 's/^ClusterName=//p' /etc/slurm/slurm.conf)
  wait_for 120 slurmdbd sacctmgr -n list cluster
  sacctmgr -n list cluster format=cluster | grep -qw "$CLUSTER_NAME" \
    || sacctmgr -i add cluster "$CLUSTER_NAME" >/dev/null
  sacctmgr -n list account format=account | grep -qw research \
    || sacctmgr -i add account research Description=test Organization=test >/dev/null
  local u
  for u in "$SUBMIT_USER" root; do
    sacctmgr -n list user format=user | grep -qw "$u" \
      || sacctmgr -i add user "$u" Account=research >/dev/null
  done
  exec /usr/sbin/slurmctld -D
}

compute() {
  install -d /var/spool/slurmd
  exec /usr/sbin/slurmd -D
}

login() {
  install -d -m 755 /run/sshd /etc/ssh/cluster
  install -d -m 750 -o "$SUBMIT_USER" -g "$SUBMIT_GID" "$HOME_DIR"
  install -m 600 /cluster/ssh_host_ed25519_key /etc/ssh/cluster/
  install -d -m 700 -o "$SUBMIT_USER" -g "$SUBMIT_GID" "$HOME_DIR/.ssh"
  install -m 600 -o "$SUBMIT_USER" -g "$SUBMIT_GID" /cluster/client_key.pub \
    "$HOME_DIR/.ssh/authorized_keys"
  cat >/etc/ssh/cluster/sshd_config <<CONF
Port 22
HostKey /etc/ssh/cluster/ssh_host_ed25519_key
PidFile /run/sshd.pid
PasswordAuthentication no
KbdInteractiveAuthentication no
PubkeyAuthentication yes
AllowUsers $SUBMIT_USER
UsePAM no
PermitRootLogin no
MaxStartups 50:30:100
MaxSessions 50
Subsystem sftp internal-sftp
CONF
  exec /usr/sbin/sshd -D -e -f /etc/ssh/cluster/sshd_config
}

health() {
  { [[ -s /run/sshd.pid ]] && kill -0 "$(cat /run/sshd.pid)"; } || { echo "sshd is not up"; return 1; }
  local serving
  serving=$(sinfo -h -N -p cpu -t idle,mixed,allocated -o %N | sort -u | wc -l)
  [[ $serving == 2 ]] || { echo "$serving of 2 compute nodes serve jobs"; return 1; }
  # One real job, as the pipeline submits them: the first healthy answer means sbatch works.
  # Not at every check: a job every few seconds for the container's life would crowd the
  # queue and the accounting the pipeline reads.
  [[ -e $SBATCH_OK ]] && return
  (cd / && timeout 50 runuser -u "$SUBMIT_USER" -- sbatch --wait --quiet -J node-health \
    -o /dev/null --wrap true) || { echo "a job submitted as $SUBMIT_USER did not run"; return 1; }
  touch "$SBATCH_OK"
}

case $ROLE in   # the roles that are no daemon
  init) exec bash "$HERE/configure.sh" /cluster /cluster-client ;;
  health) health || exit 1; exit 0 ;;
esac
common
case $ROLE in
  db) db ;;
  ctld) ctld ;;
  compute) compute ;;
  login) login ;;
  *) echo "node.sh: unknown role $ROLE (db|ctld|compute|login|init|health)" >&2; exit 2 ;;
esac
