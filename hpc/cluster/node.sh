#!/usr/bin/env bash
# Entry point of every node of the SLURM 24.11 test cluster (node.Dockerfile, compose.yaml).
# Usage: node.sh db|ctld|compute|login
#   db       MariaDB (the container's life) + slurmdbd   ctld   slurmctld (registers the cluster)
#   compute  slurmd (CPUs, memory and gres come from slurm.conf, not from the host)
#   login    sshd for the submit user only: the one thing Airflow talks to
# Reads what cluster.sh wrote to /cluster (read-only): slurm.conf, gres.conf, cgroup.conf,
# slurmdbd.conf, munge.key, the login node's host key, Airflow's public key. Environment:
# SUBMIT_USER, SUBMIT_UID, SUBMIT_GID (the host's, so files on the shared volume agree),
# SHARED (the shared volume: the submit user's home, hence its pipeline root), CLUSTER_NAME.
# The daemon runs in the foreground (its log is `docker logs <node>`); it is the container.
set -euo pipefail
ROLE=${1:?usage: node.sh db|ctld|compute|login}
HOME_DIR=$SHARED/home/$SUBMIT_USER

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

common
case $ROLE in
  db) db ;;
  ctld) ctld ;;
  compute) compute ;;
  login) login ;;
  *) echo "node.sh: unknown role $ROLE (db|ctld|compute|login)" >&2; exit 2 ;;
esac
