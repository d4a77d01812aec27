# One image for every node of the SLURM 24.11 cluster (hpc/cluster/): Debian 13's SLURM
# (slurmctld, slurmd, slurmdbd, clients), munge, MariaDB for accounting, sshd for the login
# node. The role is chosen at start (node.sh ROLE). Three stages:
#   node     what cluster.sh builds (--target node) for the native cluster: the jobs' runtime
#            is NOT in it but bind-mounted from the host (cluster.sh says why)
#   runtime  Debian 12 with what the jobs run, built by hpc/devcluster/provision.sh's
#            `runtime` step (the same script that builds it natively for CI and the demo):
#            /opt/hpc-venv (Python 3.11, WhisperX), /opt/hpc-models, FFmpeg, espeak-ng; plus
#            the static FFmpeg of static-ffmpeg.sh. The compose stack's sample-clips runs it.
#   compose  node + the runtime copied in at the paths the native nodes bind-mount them at:
#            the docker-compose dev stack's nodes, self-contained (docker-compose.yaml)
# The legacy builder (Docker 20.10, DOCKER_BUILDKIT=0) builds every stage up to its target:
# `node` comes first so that the native cluster never builds the runtime.
#
# BASE: debian:13-slim (the packages below then come from apt here), or what cluster.sh
# builds (`cluster.sh root`): trixie with these packages already in (the same list, read from
# the PACKAGES line; docker/standins/debian-slim.sh with DEBIAN_INCLUDE), so that this stage
# only adds the entry point: a second apt pass in a docker layer was most of the build time.
# Debian's ffmpeg would bring ~180 more packages (codec and X libraries): two thirds of the
# apt pass. libexpat1 and libffi8 are for the runtime's Python 3.11 (its binary, and ctypes),
# which Debian's ffmpeg pulled in.
ARG BASE=debian:13-slim
ARG RUNTIME_BASE=debian:12.12-slim

FROM ${BASE} AS node
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
    # the runtime's Python 3.11 (mounted or copied in) is what /opt/hpc-venv/bin/python3 runs
    && ln -sf python3.11 /usr/bin/python3

COPY hpc/cluster/node.sh hpc/cluster/configure.sh /usr/local/sbin/
ENTRYPOINT ["/usr/local/sbin/node.sh"]

FROM ${RUNTIME_BASE} AS runtime
ARG EXTRA_CA_CERTS=
COPY docker/install-extra-ca.sh /usr/local/sbin/install-extra-ca
RUN install-extra-ca
# 0 = the light runtime (requirements-hpc-base.txt) without WhisperX/torch (~7 GB less).
ARG DEVCLUSTER_WITH_WHISPERX=1
# Only the installer's inputs: editing hpc/src (deployed over SFTP at run time) must not
# invalidate the multi-minute install layer.
COPY hpc/devcluster/provision.sh /opt/audio-pipeline/hpc/devcluster/provision.sh
COPY hpc/requirements-hpc.txt hpc/requirements-hpc-base.txt /opt/audio-pipeline/hpc/
RUN DEVCLUSTER_WITH_WHISPERX=$DEVCLUSTER_WITH_WHISPERX \
        bash /opt/audio-pipeline/hpc/devcluster/provision.sh runtime \
    && rm -rf /var/lib/apt/lists/* /root/.cache/pip
COPY hpc/cluster/static-ffmpeg.sh /opt/audio-pipeline/hpc/cluster/static-ffmpeg.sh
RUN bash /opt/audio-pipeline/hpc/cluster/static-ffmpeg.sh /opt/hpc-venv/bin/python \
        /opt/static-ffmpeg/ffmpeg \
    && rm -rf /root/.cache/pip

FROM node AS compose
COPY --from=runtime /usr/bin/python3.11 /usr/bin/python3.11
COPY --from=runtime /usr/lib/python3.11 /usr/lib/python3.11
COPY --from=runtime /opt/hpc-models /opt/hpc-models
COPY --from=runtime /opt/static-ffmpeg/ffmpeg /usr/local/bin/ffmpeg
COPY --from=runtime /opt/hpc-venv /opt/hpc-venv
