#!/usr/bin/env bash
# Entrypoint of the postgres stand-in, the subset of the official image's contract that
# docker-compose.yaml relies on:
#   - POSTGRES_PASSWORD (required), POSTGRES_USER (postgres), POSTGRES_DB ($POSTGRES_USER),
#     POSTGRES_INITDB_ARGS, PGDATA (/var/lib/postgresql/data)
#   - first start (empty PGDATA): initdb, then /docker-entrypoint-initdb.d/*.sql and *.sh in
#     name order against POSTGRES_DB on a server reachable through its socket only
#   - password (scram-sha-256) logins from any address; `postgres` runs as the postgres user
# Anything else the official entrypoint offers (POSTGRES_HOST_AUTH_METHOD, *_FILE secrets,
# *.sql.gz, initdb waldir) is refused with a clear error instead of being ignored.
set -Eeuo pipefail

die() { echo "postgres stand-in: $*" >&2; exit 1; }

if [[ ${1:-} == -* ]]; then set -- postgres "$@"; fi
if [[ ${1:-} != postgres ]]; then exec "$@"; fi

if [[ $(id -u) == 0 ]]; then   # as root: own the data dir, then drop to postgres
  mkdir -p "$PGDATA"
  chown postgres:postgres "$PGDATA"
  chmod 700 "$PGDATA"
  exec setpriv --reuid=postgres --regid=postgres --init-groups "${BASH_SOURCE[0]}" "$@"
fi

for unsupported in POSTGRES_HOST_AUTH_METHOD POSTGRES_PASSWORD_FILE POSTGRES_USER_FILE \
    POSTGRES_DB_FILE POSTGRES_INITDB_WALDIR; do
  [[ -z ${!unsupported:-} ]] || die "$unsupported is not supported by this stand-in"
done

if [[ ! -s $PGDATA/PG_VERSION ]]; then
  [[ -n ${POSTGRES_PASSWORD:-} ]] || die "POSTGRES_PASSWORD must be set (the database is not initialized)"
  : "${POSTGRES_USER:=postgres}" "${POSTGRES_DB:=$POSTGRES_USER}"
  # shellcheck disable=SC2086  # POSTGRES_INITDB_ARGS is a list of initdb options, as upstream
  initdb --username="$POSTGRES_USER" --pwfile=<(printf '%s\n' "$POSTGRES_PASSWORD") \
    ${POSTGRES_INITDB_ARGS:-} >/dev/null
  printf '\nhost all all all scram-sha-256\n' >>"$PGDATA/pg_hba.conf"

  # A server on the socket only while the init scripts run.
  pg_ctl -D "$PGDATA" -o "-c listen_addresses='' -p 5432" -w start >/dev/null
  export PGPASSWORD=$POSTGRES_PASSWORD
  psql=(psql -v ON_ERROR_STOP=1 --no-psqlrc --username "$POSTGRES_USER" --dbname postgres)
  if [[ $POSTGRES_DB != postgres ]]; then
    "${psql[@]}" --set db="$POSTGRES_DB" -q <<<'CREATE DATABASE :"db";'
  fi
  psql+=(--dbname "$POSTGRES_DB")
  for f in /docker-entrypoint-initdb.d/*; do
    [[ -e $f ]] || continue
    case $f in
      *.sh)
        echo "postgres stand-in: running $f"
        # shellcheck disable=SC1090  # the image user's own init scripts
        if [[ -x $f ]]; then "$f"; else . "$f"; fi ;;
      *.sql) echo "postgres stand-in: running $f"; "${psql[@]}" -q -f "$f" ;;
      *) die "cannot run $f (only *.sql and *.sh are supported)" ;;
    esac
  done
  unset PGPASSWORD
  pg_ctl -D "$PGDATA" -m fast -w stop >/dev/null
  echo "postgres stand-in: database initialized; ready for start up"
fi

exec "$@"
