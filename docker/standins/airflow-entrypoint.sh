#!/usr/bin/env bash
# /entrypoint of the apache/airflow stand-in: the parts of the official image's entrypoint
# that docker-compose.yaml and docker/airflow-init.sh use.
#   - any uid with gid 0 (a uid without a passwd entry gets one, HOME=/home/airflow)
#   - `bash ...` / `python ...` run as given; `airflow CMD ...` and a bare `CMD ...` run
#     `airflow CMD ...`
#   - scheduler, dag-processor, triggerer and api-server first wait for the metadata DB
#     (`airflow db check`, CONNECTION_CHECK_MAX_COUNT tries, CONNECTION_CHECK_SLEEP_TIME apart)
# The official entrypoint's _AIRFLOW_DB_MIGRATE, _AIRFLOW_WWW_USER_* and
# _PIP_ADDITIONAL_REQUIREMENTS are refused with a clear error instead of being ignored.
set -euo pipefail

die() { echo "airflow stand-in: $*" >&2; exit 1; }

for unsupported in _AIRFLOW_DB_MIGRATE _AIRFLOW_DB_UPGRADE _AIRFLOW_WWW_USER_CREATE _PIP_ADDITIONAL_REQUIREMENTS; do
  [[ -z ${!unsupported:-} ]] || die "$unsupported is not supported by this stand-in"
done
[[ $(id -g) == 0 ]] || die "run the image with group 0 (uid $(id -u), gid $(id -g)): user: \"<uid>:0\""
umask 0002

if ! whoami >/dev/null 2>&1; then
  if [[ -w /etc/passwd ]]; then
    echo "default:x:$(id -u):0:default user:${AIRFLOW_USER_HOME_DIR}:/sbin/nologin" >>/etc/passwd
  fi
  export HOME=$AIRFLOW_USER_HOME_DIR
fi

case ${1:-} in
  bash) shift; exec /bin/bash "$@" ;;
  python) shift; exec python "$@" ;;
  airflow) shift ;;
esac

tries=${CONNECTION_CHECK_MAX_COUNT:-20}
if ((tries > 0)) && [[ ${1:-} =~ ^(scheduler|dag-processor|triggerer|api-server)$ ]]; then
  until airflow db check >/dev/null 2>&1; do
    tries=$((tries - 1))
    ((tries > 0)) || { airflow db check; die "the metadata DB is not reachable"; }
    sleep "${CONNECTION_CHECK_SLEEP_TIME:-3}"
  done
fi
exec airflow "$@"
