# Dev HPC node for docker-compose: munge, MariaDB + slurmdbd, slurmctld, slurmd, sshd.
# Built by the SAME hpc/devcluster/provision.sh that sets up CI and the README demo natively;
# this file adds no setup steps of its own. Jobs run with CONTAINER_RUNTIME=none on the
# /opt/hpc-venv runtime that `provision.sh install` creates.
FROM debian:12.12-slim

# 0 = the light runtime (requirements-hpc-base.txt) without WhisperX/torch (~7 GB less).
ARG DEVCLUSTER_WITH_WHISPERX=1

# Behind a TLS-inspecting proxy: its CA certificates (PEM text), trusted by apt and pip during
# the install (docs/compose-and-deploy.md, "Behind a TLS-inspecting proxy"). Empty: no-op.
ARG EXTRA_CA_CERTS=
COPY docker/install-extra-ca.sh /usr/local/sbin/install-extra-ca
RUN install-extra-ca

# Only the installer's inputs: editing hpc/src (deployed over SFTP at run time) must not
# invalidate the multi-minute install layer.
COPY hpc/devcluster/provision.sh /opt/audio-pipeline/hpc/devcluster/provision.sh
COPY hpc/requirements-hpc.txt hpc/requirements-hpc-base.txt /opt/audio-pipeline/hpc/
RUN DEVCLUSTER_WITH_WHISPERX=$DEVCLUSTER_WITH_WHISPERX \
        bash /opt/audio-pipeline/hpc/devcluster/provision.sh install \
    && rm -rf /var/lib/apt/lists/* /root/.cache/pip

# `configure` runs at start, not here: slurm.conf names the container's hostname and its
# CPUs/memory, and the keys it generates must live in the state volume, not in an image layer.
COPY docker/hpc-entrypoint.sh /usr/local/bin/hpc-entrypoint
EXPOSE 2222
CMD ["/usr/local/bin/hpc-entrypoint"]
