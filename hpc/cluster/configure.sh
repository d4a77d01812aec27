#!/usr/bin/env bash
# The SLURM 24.11 cluster's configuration and secrets, in one place for both ways it runs:
# natively (cluster.sh, on the host, nodes bind-mount CONF) and in the docker-compose dev stack
# (node.sh init, a one-shot container writing into named volumes). So the two cannot drift.
#
# Usage: configure.sh CONF CLIENT
#   CONF    what every node reads at /cluster (read-only there): slurm.conf, gres.conf,
#           cgroup.conf, slurmdbd.conf (a random DB password), munge.key, the login node's
#           host key, Airflow's public key (client_key.pub)
#   CLIENT  Airflow's side: client_key (private: never in CONF, which every node mounts) and
#           known_hosts, the login node's host key pinned under KNOWN_HOST
# Environment: CLUSTER_NAME (cluster24), KNOWN_HOST (how known_hosts spells the address Airflow
# reaches the login node at; [127.0.0.1]:2223 natively). Secrets are generated once and kept
# (a restart keeps its keys and the pins made from them); the config files are rewritten.
set -euo pipefail
CONF=${1:?usage: configure.sh CONF CLIENT}
CLIENT=${2:?usage: configure.sh CONF CLIENT}
NAME=${CLUSTER_NAME:-cluster24}
KNOWN_HOST=${KNOWN_HOST:-[127.0.0.1]:2223}

umask 077
mkdir -p "$CLIENT"   # natively the cluster's data dir: its mode stays cluster.sh's
install -d -m 700 "$CONF"
[[ -s $CONF/munge.key ]] || head -c 1024 /dev/urandom >"$CONF/munge.key"
[[ -s $CONF/ssh_host_ed25519_key ]] || ssh-keygen -q -t ed25519 -N '' -C login \
  -f "$CONF/ssh_host_ed25519_key"
[[ -s $CLIENT/client_key ]] \
  || ssh-keygen -q -t ed25519 -N '' -C "airflow@$NAME" -f "$CLIENT/client_key"
cp "$CLIENT/client_key.pub" "$CONF/client_key.pub"
printf '%s %s\n' "$KNOWN_HOST" "$(cut -d' ' -f1,2 "$CONF/ssh_host_ed25519_key.pub")" \
  >"$CLIENT/known_hosts"
chmod 644 "$CLIENT/known_hosts" "$CONF/client_key.pub" "$CONF/ssh_host_ed25519_key.pub"
if [[ ! -s $CONF/slurmdbd.conf ]]; then   # the password is written here and nowhere else
  cat >"$CONF/slurmdbd.conf" <<CONF
AuthType=auth/munge
DbdHost=slurmdbd
SlurmUser=slurm
PidFile=/run/slurmdbd.pid
StorageType=accounting_storage/mysql
StorageHost=127.0.0.1
StorageUser=slurm
StoragePass=$(head -c 18 /dev/urandom | base64 | tr -dc 'A-Za-z0-9')
StorageLoc=slurm_acct_db
CONF
fi

# Resources are declared here, not read from the host (config_overrides): 4 CPUs, 6000 MB and
# one GPU per node (the GPU is /dev/null: a gres to schedule on, as on the bed). 6000 MB fits
# one audio shard of config/local.json and config/compose.json (4G), never two; its 2 CPUs
# leave 2 for the plugin tests' small jobs beside it. SlurmdTimeout 10 s: a dead node is DOWN
# in seconds. Written aside and renamed: a daemon never reads a half-written file.
umask 022
cat >"$CONF/slurm.conf.new" <<CONF
ClusterName=$NAME
SlurmctldHost=slurmctld
SlurmUser=slurm
AuthType=auth/munge
AuthInfo=cred_expire=30
StateSaveLocation=/var/spool/slurmctld
SlurmdSpoolDir=/var/spool/slurmd
SlurmctldPidFile=/run/slurmctld.pid
SlurmdPidFile=/run/slurmd.pid
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=1000
ReturnToService=2
SlurmdTimeout=10
MinJobAge=300
KillWait=5
JobRequeue=1
MaxArraySize=1001
GresTypes=gpu
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=slurmdbd
AccountingStorageTRES=gres/gpu
JobAcctGatherType=jobacct_gather/linux
JobAcctGatherFrequency=5
JobAcctGatherParams=OverMemoryKill
SlurmdParameters=config_overrides
NodeName=c[1-2] CPUs=4 RealMemory=6000 Gres=gpu:1 State=UNKNOWN
PartitionName=cpu Nodes=c[1-2] Default=YES MaxTime=INFINITE State=UP
PartitionName=gpu Nodes=c[1-2] MaxTime=INFINITE State=UP
CONF
mv -f "$CONF/slurm.conf.new" "$CONF/slurm.conf"
echo "NodeName=c[1-2] Name=gpu Count=1 File=/dev/null" >"$CONF/gres.conf"
echo "CgroupPlugin=disabled" >"$CONF/cgroup.conf"
