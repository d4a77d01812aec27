# One image for every node of the SLURM 24.11 test cluster (hpc/cluster/): Debian 13's SLURM
# (slurmctld, slurmd, slurmdbd, clients), munge, MariaDB for accounting, sshd for the login
# node, FFmpeg for the jobs' decode fallback. The role is chosen at start (node.sh ROLE).
# The jobs' Python runtime is NOT in the image: the host's /opt/hpc-venv (Python 3.11, built by
# hpc/devcluster/provision.sh) and its interpreter are bind-mounted read-only (cluster.sh says
# why), so the image builds in about a minute.
FROM debian:13-slim

ARG EXTRA_CA_CERTS=
COPY docker/install-extra-ca.sh /usr/local/sbin/install-extra-ca
RUN install-extra-ca

RUN apt-get update -qq \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        munge slurmctld slurmd slurmdbd slurm-client mariadb-server openssh-server ffmpeg \
        procps ca-certificates >/dev/null \
    && rm -rf /var/lib/apt/lists/* \
    # the bind-mounted Python 3.11 (cluster.sh) is what /opt/hpc-venv/bin/python3 points at
    && ln -sf python3.11 /usr/bin/python3

COPY hpc/cluster/node.sh /usr/local/sbin/node.sh
ENTRYPOINT ["/usr/local/sbin/node.sh"]
