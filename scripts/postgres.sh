#!/usr/bin/env bash
# Local PostgreSQL for the results DB and Airflow's metadata DB (Debian's postgresql, no systemd).
# Usage: scripts/postgres.sh [install|start|stop]   (default: install start)
# Creates role `audio` (password `audio`, dev only) owning databases `audio_results` and `airflow`.
set -euo pipefail
PGVER=${PGVER:-15}

do_install() {
  dpkg -s postgresql >/dev/null 2>&1 && return 0
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends postgresql >/dev/null
}

do_start() {
  pg_lsclusters -h | grep -q "^$PGVER *main" || pg_createcluster "$PGVER" main >/dev/null
  if ! pg_lsclusters -h | grep -q "^$PGVER *main .*online"; then
    pg_ctlcluster "$PGVER" main start
  fi
  for _ in $(seq 30); do runuser -u postgres -- psql -qAtc 'select 1' >/dev/null 2>&1 && break; sleep 0.5; done
  runuser -u postgres -- psql -v ON_ERROR_STOP=1 -qAt <<'SQL' >/dev/null
SELECT 'CREATE ROLE audio LOGIN PASSWORD ''audio'' CREATEDB'
WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'audio') \gexec
SELECT 'CREATE DATABASE audio_results OWNER audio'
WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = 'audio_results') \gexec
SELECT 'CREATE DATABASE airflow OWNER audio'
WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = 'airflow') \gexec
SQL
  echo "[postgres] up on 127.0.0.1:5432 (role audio, dbs audio_results, airflow)" >&2
}

do_stop() { pg_ctlcluster "$PGVER" main stop -m fast 2>/dev/null || true; }

[[ $EUID -eq 0 ]] || { echo "postgres.sh must run as root" >&2; exit 1; }
(($#)) || set -- install start
for step in "$@"; do
  case $step in
    install) do_install ;;
    start) do_start ;;
    stop) do_stop ;;
    *) echo "unknown step: $step" >&2; exit 2 ;;
  esac
done
