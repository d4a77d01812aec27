# Stand-in for the official apache/airflow:3.3.2-python3.11 image where no registry serves it,
# built from the Debian 12 stand-in and PyPI. It keeps the parts of the official image's
# contract that docker/airflow.Dockerfile and docker-compose.yaml use: user `airflow` (uid
# 50000, gid 0), HOME /home/airflow, Airflow installed into the virtualenv /home/airflow/.local
# (first on PATH, so `pip install` there extends it), AIRFLOW_HOME=/opt/airflow as workdir,
# curl for health checks, and dumb-init + /entrypoint passing commands to `airflow`.
# Differences from the real image: docs/compose-and-deploy.md, "Stand-in base images".
FROM debian:12.12-slim

ARG AIRFLOW_VERSION=3.3.2
ARG AIRFLOW_PIP_VERSION=26.1.2

ARG EXTRA_CA_CERTS=
COPY docker/install-extra-ca.sh /usr/local/sbin/install-extra-ca
RUN install-extra-ca

ENV DEBIAN_FRONTEND=noninteractive LANGUAGE=C.UTF-8 LANG=C.UTF-8 LC_ALL=C.UTF-8 \
    LC_CTYPE=C.UTF-8 LC_MESSAGES=C.UTF-8
# Debian's Python 3.11 (the official image builds 3.11 from python.org into /usr/python) and
# the runtime tools our files call: curl (health checks), ssh-keygen (airflow-init.sh).
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3 python3-venv ca-certificates curl \
        dumb-init openssh-client \
    && rm -rf /var/lib/apt/lists/* \
    && ln -s /usr/bin/python3 /usr/local/bin/python

ENV AIRFLOW_UID=50000 \
    AIRFLOW_USER_HOME_DIR=/home/airflow \
    AIRFLOW_HOME=/opt/airflow \
    AIRFLOW_VERSION=${AIRFLOW_VERSION} \
    VIRTUAL_ENV=/home/airflow/.local \
    PATH=/home/airflow/.local/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    AIRFLOW__CORE__LOAD_EXAMPLES=false \
    DUMB_INIT_SETSID=1 \
    GUNICORN_CMD_ARGS="--worker-tmp-dir /dev/shm"
RUN adduser --gecos "" --disabled-password --quiet airflow --uid 50000 --gid 0 --home /home/airflow \
    && mkdir -p /opt/airflow/dags /opt/airflow/logs \
    && chown -R airflow:0 /home/airflow /opt/airflow \
    && chmod -R g+rw /home/airflow /opt/airflow \
    && chmod g=u /etc/passwd \
    && usermod -g 0 -G 0 airflow

USER airflow
RUN python3 -m venv /home/airflow/.local \
    && pip install --no-cache-dir "pip==${AIRFLOW_PIP_VERSION}" \
    && pip install --no-cache-dir "apache-airflow[postgres]==${AIRFLOW_VERSION}" \
    && find /home/airflow/.local -name '__pycache__' -type d -prune -exec rm -rf {} + \
    && chmod -R g+rw /home/airflow/.local

USER root
COPY docker/standins/airflow-entrypoint.sh /entrypoint
RUN chmod a+rx /entrypoint
LABEL org.audio-pipeline.standin="debian-pypi-apache-airflow" \
      org.apache.airflow.version="${AIRFLOW_VERSION}" org.apache.airflow.uid="50000"
WORKDIR /opt/airflow
EXPOSE 8080
USER 50000
ENTRYPOINT ["/usr/bin/dumb-init", "--", "/entrypoint"]
CMD []
