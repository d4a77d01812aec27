#!/usr/bin/env bash
# A real local Airflow 3 (api-server, scheduler, dag-processor, triggerer; LocalExecutor on
# PostgreSQL) wired to the dev cluster (connection hpc_ssh, host key pinned) and the results DB.
#
# Usage: scripts/airflow_stack.sh start|stop|env      (AIRFLOW_HOME picks the instance)
#   start  migrate the metadata DB and start the four components (idempotent)
#   env    print the environment (source it to run `airflow` CLI against this instance)
# Tunables: AIRFLOW_HOME (.airflow/demo), AIRFLOW_DB (airflow),
#           AIRFLOW_PORT (8080; its log servers take +30000 and +31000: instances run side by side),
#           RESULTS_DB (audio_results), AUDIO_PIPELINE_CONFIG (config/local.json), VENV (.venv),
#           AIRFLOW_COMPONENTS (all four; e.g. "api-server" for the status page and API alone),
#           AIRFLOW_USERS (admin:admin; SimpleAuthManager "name:role,..."; passwords of users
#           other than admin are generated into $AIRFLOW_HOME/passwords.json)
#           HPC_CLUSTER_SCRIPT (hpc/devcluster/provision.sh: the 22.05 bed; hpc/cluster/cluster.sh:
#           the 24.11 cluster), whose `env` names the login node hpc_ssh connects to
set -euo pipefail
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
export AIRFLOW_HOME=${AIRFLOW_HOME:-$REPO/.airflow/demo}
PORT=${AIRFLOW_PORT:-8080}
DB=${AIRFLOW_DB:-airflow}
RESULTS_DB=${RESULTS_DB:-audio_results}
VENV=${VENV:-$REPO/.venv}
RUN=$AIRFLOW_HOME/run

write_env() {
  mkdir -p "$AIRFLOW_HOME" "$RUN"
  [[ -s $AIRFLOW_HOME/jwt_secret ]] || head -c 24 /dev/urandom | base64 > "$AIRFLOW_HOME/jwt_secret"
  [[ -s $AIRFLOW_HOME/passwords.json ]] || echo '{"admin": "admin"}' > "$AIRFLOW_HOME/passwords.json"
  local cluster
  cluster=$(bash "$REPO/${HPC_CLUSTER_SCRIPT:-hpc/devcluster/provision.sh}" env)
  # shellcheck disable=SC1090
  source <(echo "$cluster")
  local ssh_conn results_conn
  ssh_conn=$("$VENV/bin/python" - "$DEVCLUSTER_SSH_PORT" "$DEVCLUSTER_USER" "$DEVCLUSTER_KEY" "$DEVCLUSTER_HOST_KEY" <<'PY'
import json, sys
port, user, key, host_key = sys.argv[1:]
print(json.dumps({"conn_type": "ssh", "host": "127.0.0.1", "port": int(port), "login": user,
                  "extra": {"key_file": key, "host_key": host_key}}))
PY
)
  results_conn='{"conn_type": "postgres", "host": "127.0.0.1", "port": 5432, "login": "audio", "password": "audio", "schema": "'$RESULTS_DB'"}'
  cat > "$AIRFLOW_HOME/stack.env" <<EOF
export AIRFLOW_HOME='$AIRFLOW_HOME'
export AIRFLOW__CORE__DAGS_FOLDER='$REPO/dags'
export AIRFLOW__CORE__PLUGINS_FOLDER='$REPO/plugins'
export AIRFLOW__CORE__LOAD_EXAMPLES=False
export AIRFLOW__CORE__EXECUTOR=LocalExecutor
export AIRFLOW__CORE__PARALLELISM=8
export AIRFLOW__DATABASE__SQL_ALCHEMY_CONN='postgresql+psycopg2://audio:audio@127.0.0.1:5432/$DB'
export AIRFLOW__CORE__EXECUTION_API_SERVER_URL='http://127.0.0.1:$PORT/execution/'
export AIRFLOW__API__PORT=$PORT
export AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT=$((PORT + 30000))
export AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT=$((PORT + 31000))
export AIRFLOW__API__HOST=127.0.0.1
export AIRFLOW__API__BASE_URL='http://127.0.0.1:$PORT'
export AIRFLOW__API_AUTH__JWT_SECRET='$(cat "$AIRFLOW_HOME/jwt_secret")'
export AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS='${AIRFLOW_USERS:-admin:admin}'
export AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE='$AIRFLOW_HOME/passwords.json'
export AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL=5
export AIRFLOW__SCHEDULER__ENABLE_HEALTH_CHECK=False
export AUDIO_PIPELINE_CONFIG='${AUDIO_PIPELINE_CONFIG:-$REPO/config/local.json}'
export AIRFLOW_CONN_HPC_SSH='$ssh_conn'
export AIRFLOW_CONN_AUDIO_RESULTS_DB='$results_conn'
export AIRFLOW_CONN_AIRFLOW_API='{"conn_type": "http", "host": "http://127.0.0.1:$PORT", "login": "admin", "password": "admin"}'
export PATH='$VENV/bin':\$PATH
EOF
}

alive() { [[ -s $RUN/$1.pid ]] && kill -0 "$(cat "$RUN/$1.pid")" 2>/dev/null; }

start() {
  write_env
  # shellcheck disable=SC1091
  source "$AIRFLOW_HOME/stack.env"
  runuser -u postgres -- psql -qAtc "SELECT 1 FROM pg_database WHERE datname = '$DB'" | grep -q 1 \
    || runuser -u postgres -- psql -qc "CREATE DATABASE $DB OWNER audio"
  airflow db migrate >"$AIRFLOW_HOME/migrate.log" 2>&1
  local component
  # Each component runs under a loop that starts it again 2 s after it exits, as a site's
  # service manager does (systemd Restart=, the compose file's restart:). The scheduler exits
  # on a PostgreSQL deadlock in Airflow's own task_instance queries (apache/airflow#23361;
  # seen here when a step failed seconds after it started); unsupervised, every run would then
  # wait forever. The loop leads the component's process group: `stop` (and a test that
  # SIGKILLs the group) ends both.
  for component in ${AIRFLOW_COMPONENTS:-api-server scheduler dag-processor triggerer}; do
    alive "$component" && continue
    # shellcheck disable=SC2016  # $1 is the loop's own argument, expanded by its bash
    setsid nohup bash -c 'while :; do airflow "$1"; echo "[airflow_stack] $1 exited $?," \
      "starting it again in 2 s" >&2; sleep 2; done' _ "$component" \
      >"$AIRFLOW_HOME/$component.log" 2>&1 &
    echo $! >"$RUN/$component.pid"
  done
  for _ in $(seq 120); do
    curl -fsS "http://127.0.0.1:$PORT/api/v2/monitor/health" >/dev/null 2>&1 && break
    sleep 1
  done
  curl -fsS "http://127.0.0.1:$PORT/api/v2/monitor/health" >/dev/null \
    || { echo "[airflow] api-server did not come up; see $AIRFLOW_HOME/api-server.log" >&2; exit 1; }
  echo "[airflow] up: http://127.0.0.1:$PORT (admin/admin), AIRFLOW_HOME=$AIRFLOW_HOME" >&2
}

stop() {
  local component pid
  for component in api-server scheduler dag-processor triggerer; do
    alive "$component" || continue
    pid=$(cat "$RUN/$component.pid")
    kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 40); do kill -0 "$pid" 2>/dev/null || break; sleep 0.25; done
    kill -KILL -- "-$pid" 2>/dev/null || true
    rm -f "$RUN/$component.pid"
  done
}

case ${1:-} in
  start) start ;;
  stop) stop ;;
  env) write_env; cat "$AIRFLOW_HOME/stack.env" ;;
  *) echo "usage: $0 start|stop|env" >&2; exit 2 ;;
esac
