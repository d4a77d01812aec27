# One image for every node of the SLURM 24.11 test cluster (hpc/cluster/): Debian 13's SLURM
# (slurmctld, slurmd, slurmdbd, clients), munge, MariaDB for accounting, sshd for the login
# node. The role is chosen at start (node.sh ROLE).
#
# BASE: debian:13-slim (the packages below then come from apt here), or what cluster.sh
# builds: trixie with these packages already in (the same list, read from the PACKAGES line;
# docker/standins/debian-slim.sh with DEBIAN_INCLUDE), so that this build only adds the entry
# point: a second apt pass in a docker layer was most of the cluster's build time.
# What the jobs run is NOT in the image: the host's /opt/hpc-venv (Python 3.11, built by
# hpc/devcluster/provision.sh) with its interpreter, and a static FFmpeg for the decode
# fallback, are bind-mounted read-only (cluster.sh says why). Debian's ffmpeg would bring
# ~180 more packages (codec and X libraries): two thirds of the apt pass. libexpat1 and
# libffi8 are for that Python 3.11 (its binary, and ctypes), which Debian's ffmpeg pulled in.
ARG BASE=debian:13-slim
FROM ${BASE}

ARG EXTRA_CA_CERTS=
COPY docker/install-extra-ca.sh /usr/local/sbin/install-extra-ca
RUN install-extra-ca

ARG PACKAGES="munge slurmctld slurmd slurmdbd slurm-client mariadb-server openssh-server procps ca-certificates libexpat1 libffi8"
RUN if ! dpkg -s $PACKAGES >/dev/null 2>&1; then \
        apt-get update -qq \
        && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
            $PACKAGES >/dev/null \
        && rm -rf /var/lib/apt/lists/*; \
    fi \
    # the bind-mounted Python 3.11 (cluster.sh) is what /opt/hpc-venv/bin/python3 points at
    && ln -sf python3.11 /usr/bin/python3

COPY hpc/cluster/node.sh /usr/local/sbin/node.sh
ENTRYPOINT ["/usr/local/sbin/node.sh"]
