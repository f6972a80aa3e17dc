#!/usr/bin/env bash
# Entrypoint of shipyard-local/postgres:17, modelled on the official postgres
# image's docker-entrypoint.sh (the parts a deploy tool relies on).
#
#   POSTGRES_PASSWORD  required on first start (unless POSTGRES_HOST_AUTH_METHOD=trust)
#   POSTGRES_USER      superuser name, default "postgres"
#   POSTGRES_DB        database created on first start, default = POSTGRES_USER
#   POSTGRES_INITDB_ARGS, POSTGRES_HOST_AUTH_METHOD (default scram-sha-256)
#   /docker-entrypoint-initdb.d/*.sh|*.sql|*.sql.gz run once, on first start.
set -Eeuo pipefail

log() { printf '%s [entrypoint] %s\n' "$(date -u '+%Y-%m-%d %H:%M:%S UTC')" "$*" >&2; }

# `docker run image -c foo=bar` means `postgres -c foo=bar`.
if [ "$#" -eq 0 ] || [ "${1:0:1}" = '-' ]; then
  set -- postgres "$@"
fi
if [ "$1" != 'postgres' ]; then
  exec "$@"
fi

: "${PGDATA:=/var/lib/postgresql/data}"
export PGDATA

# As root: fix ownership of the data and socket dirs, then re-run this script
# as the postgres user. setpriv execs (no child), so postgres ends up PID 1
# and receives the stop signal directly.
if [ "$(id -u)" = '0' ]; then
  mkdir -p "$PGDATA" /var/run/postgresql
  find "$PGDATA" \! -user postgres -exec chown postgres:postgres '{}' +
  chmod 0700 "$PGDATA"
  chown postgres:postgres /var/run/postgresql
  chmod 3777 /var/run/postgresql
  export HOME=/var/lib/postgresql
  exec setpriv --reuid=postgres --regid=postgres --init-groups "${BASH_SOURCE[0]}" "$@"
fi

: "${POSTGRES_USER:=postgres}"
: "${POSTGRES_DB:=$POSTGRES_USER}"
: "${POSTGRES_HOST_AUTH_METHOD:=scram-sha-256}"
: "${POSTGRES_INITDB_ARGS:=}"
export POSTGRES_USER POSTGRES_DB

psql_local() {
  psql -v ON_ERROR_STOP=1 --no-psqlrc --no-password --username "$POSTGRES_USER" "$@"
}

first_start() {
  if [ -z "${POSTGRES_PASSWORD:-}" ] && [ "$POSTGRES_HOST_AUTH_METHOD" != 'trust' ]; then
    cat >&2 <<'EOF'
Error: Database is uninitialized and superuser password is not specified.
       You must specify POSTGRES_PASSWORD to a non-empty value for the
       superuser. For example, "-e POSTGRES_PASSWORD=password" on "docker run".
EOF
    exit 1
  fi

  log "initialising database cluster in $PGDATA"
  # shellcheck disable=SC2086  # POSTGRES_INITDB_ARGS is word-split on purpose
  set -- --username="$POSTGRES_USER" --auth-local=trust --auth-host=scram-sha-256 \
    --encoding=UTF8 --locale=C.UTF-8 $POSTGRES_INITDB_ARGS
  if [ -n "${POSTGRES_PASSWORD:-}" ]; then
    # The password reaches initdb through a pipe (/dev/fd/N), never argv or disk.
    initdb "$@" --pwfile=<(printf '%s\n' "$POSTGRES_PASSWORD") >/dev/null
  else
    initdb "$@" >/dev/null
  fi

  printf '\nhost all all all %s\n' "$POSTGRES_HOST_AUTH_METHOD" >>"$PGDATA/pg_hba.conf"
  cat >>"$PGDATA/postgresql.conf" <<'EOF'

# --- shipyard-local/postgres image defaults ---
listen_addresses = '*'
shared_preload_libraries = 'pg_stat_statements'
EOF

  # Temporary server on the unix socket only (no TCP), for setup SQL.
  pg_ctl -D "$PGDATA" -o "-c listen_addresses=''" -w -t 60 start >/dev/null

  if [ "$POSTGRES_DB" != 'postgres' ]; then
    local exists
    exists=$(psql_local --dbname postgres -tA -v db="$POSTGRES_DB" <<'SQL'
SELECT 1 FROM pg_database WHERE datname = :'db';
SQL
)
    if [ -z "$exists" ]; then
      log "creating database $POSTGRES_DB"
      psql_local --dbname postgres -q -v db="$POSTGRES_DB" <<'SQL'
CREATE DATABASE :"db";
SQL
    fi
  fi

  local f
  for f in /docker-entrypoint-initdb.d/*; do
    [ -e "$f" ] || continue
    case "$f" in
      *.sh)
        if [ -x "$f" ]; then
          log "running $f"; "$f"
        else
          log "sourcing $f"
          # shellcheck disable=SC1090
          . "$f"
        fi
        ;;
      *.sql) log "running $f"; psql_local --dbname "$POSTGRES_DB" -q -f "$f" ;;
      *.sql.gz) log "running $f"; gzip -dc "$f" | psql_local --dbname "$POSTGRES_DB" -q ;;
      *) log "ignoring $f" ;;
    esac
  done

  pg_ctl -D "$PGDATA" -m fast -w -t 60 stop >/dev/null
  log "initialisation complete; starting postgres"
}

if [ ! -s "$PGDATA/PG_VERSION" ]; then
  first_start
fi
unset POSTGRES_PASSWORD PGPASSWORD

exec "$@"
