# Airflow for docker-compose: the official image plus the project's Airflow-side pins
# (providers ssh/sftp/postgres, globus-sdk). DAGs, plugins and hpc/ are bind-mounted, not copied.
FROM apache/airflow:3.3.2-python3.11

# Behind a TLS-inspecting proxy: its CA certificates (PEM text), trusted by pip during the
# build (docs/compose-and-deploy.md, "Behind a TLS-inspecting proxy"). Empty: no-op.
ARG EXTRA_CA_CERTS=
USER root
COPY docker/install-extra-ca.sh /usr/local/sbin/install-extra-ca
RUN install-extra-ca
USER airflow

COPY requirements.txt /tmp/requirements.txt
# requirements.txt pins apache-airflow==3.3.2 itself, so pip cannot move the image's Airflow.
RUN pip install --no-cache-dir -r /tmp/requirements.txt

# The cluster package `audio_hpc` (the contract both sides share), installed editable: the
# compose file bind-mounts ./hpc over /opt/airflow/hpc, so the containers run the checkout's.
COPY hpc/pyproject.toml /opt/airflow/hpc/pyproject.toml
COPY hpc/src /opt/airflow/hpc/src
RUN pip install --no-cache-dir --no-deps -e /opt/airflow/hpc
