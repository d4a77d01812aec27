# Airflow for docker-compose: the official image plus the project's Airflow-side pins
# (providers ssh/sftp/postgres, globus-sdk). DAGs, plugins and hpc/ are bind-mounted, not copied.
FROM apache/airflow:3.3.2-python3.11

COPY requirements.txt /tmp/requirements.txt
# requirements.txt pins apache-airflow==3.3.2 itself, so pip cannot move the image's Airflow.
RUN pip install --no-cache-dir -r /tmp/requirements.txt
