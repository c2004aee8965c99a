#!/usr/bin/env bash
# Make sure PostgreSQL and Redis are reachable for `make run` / `make test` (with --test-tools: and wrk).
#
#   DATABASE_URL / REDIS_URL set  -> only check that server is reachable; fail with a message if not.
#   unset                         -> use 127.0.0.1:5432 / 127.0.0.1:6379; when nothing answers there, install
#                                    (apt-get) and start PostgreSQL / redis-server, and let the local user
#                                    `postgres` connect over 127.0.0.1 without a password.
#
# When both already answer it does nothing and takes a few milliseconds. Never reads stdin (CI-safe).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
VENV="${VENV:-.venv}"
VENV_PY="$VENV/bin/python"
WAIT_S=60

log() { echo "services: $*" >&2; }
die() { echo "services: error: $*" >&2; exit 1; }

# sudo may ask for a password only when a person is at a terminal; never under CI.
INTERACTIVE=0
if [ -z "${CI:-}" ] && { [ -t 0 ] || [ -t 2 ]; }; then INTERACTIVE=1; fi

# Run as root: directly, or through sudo.
as_root() {
  if [ "$(id -u)" -eq 0 ]; then
    "$@"
  elif command -v sudo >/dev/null 2>&1; then
    if [ "$INTERACTIVE" -eq 1 ]; then sudo "$@"; else sudo -n "$@"; fi
  else
    die "need root for: $* (not root and no sudo)"
  fi
}

APT_UPDATED=0
apt_install() {
  command -v apt-get >/dev/null 2>&1 || die "cannot install $* automatically (no apt-get); install it yourself"
  if [ "$APT_UPDATED" -eq 0 ]; then
    log "apt-get update"
    as_root env DEBIAN_FRONTEND=noninteractive apt-get update -q </dev/null
    APT_UPDATED=1
  fi
  log "apt-get install -y $*"
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$@" </dev/null
}

tcp_open() {  # host port
  (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null
}

wait_for() {  # description, command...
  local what="$1"; shift
  local deadline=$((SECONDS + WAIT_S))
  until "$@"; do
    [ "$SECONDS" -lt "$deadline" ] || return 1
    sleep 0.5
  done
  log "$what is up"
}

wait_for_short() {  # command...: up to ~2 s
  local i
  for i in 1 2 3 4; do
    "$@" && return 0
    sleep 0.5
  done
  return 1
}

# ---------------------------------------------------------------------------------------------- PostgreSQL

# Can we log in with this DSN? A missing database still counts: the server answered and accepted us
# (storage.migrate creates the database).
pg_dsn_ok() {  # dsn
  if [ -x "$VENV_PY" ]; then
    "$VENV_PY" - "$1" <<'PY'
import asyncio, sys
import asyncpg

async def main(dsn: str) -> int:
    try:
        conn = await asyncpg.connect(dsn, timeout=5)
    except asyncpg.InvalidCatalogNameError:
        return 0
    except Exception as exc:  # noqa: BLE001 - any failure means "not usable"; say why
        print(f"services: postgres: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    await conn.close()
    return 0

sys.exit(asyncio.run(main(sys.argv[1])))
PY
  elif command -v pg_isready >/dev/null 2>&1; then
    pg_isready -t 5 -d "$1" </dev/null >&2
  else
    die "cannot check DATABASE_URL: neither $VENV_PY (run 'make venv') nor pg_isready is available"
  fi
}

LOCAL_PG_DSN="postgresql://postgres@127.0.0.1:5432/postgres"

pg_local_login_ok() {
  if command -v psql >/dev/null 2>&1; then
    PGCONNECT_TIMEOUT=5 psql -w -X -q -At -h 127.0.0.1 -p 5432 -U postgres -d postgres -c 'select 1' \
      </dev/null >/dev/null 2>&1
  elif [ -x "$VENV_PY" ]; then
    pg_dsn_ok "$LOCAL_PG_DSN" 2>/dev/null
  else
    tcp_open 127.0.0.1 5432  # nothing better available; storage.migrate will report a login problem
  fi
}

# Debian/Ubuntu cluster serving port 5432 (or the first one): prints "VERSION NAME", empty when none.
pg_cluster() {
  command -v pg_lsclusters >/dev/null 2>&1 || return 0
  pg_lsclusters --no-header 2>/dev/null | awk '$3 == 5432 { print $1, $2; found = 1; exit }
                                             NR == 1 { first = $1 " " $2 }
                                             END { if (!found && first != "") print first }'
}

pg_start_local() {
  if ! command -v pg_ctlcluster >/dev/null 2>&1; then
    if [ -z "$(ls /usr/lib/postgresql 2>/dev/null)" ]; then
      log "PostgreSQL is not installed; installing it"
      apt_install postgresql
    fi
    command -v pg_ctlcluster >/dev/null 2>&1 ||
      die "PostgreSQL has no pg_ctlcluster here; start it on 127.0.0.1:5432 yourself or set DATABASE_URL"
  fi
  local cluster
  cluster="$(pg_cluster)"
  if [ -z "$cluster" ]; then
    local version
    version="$(ls /usr/lib/postgresql | sort -V | tail -n 1)"
    [ -n "$version" ] || die "no PostgreSQL server binaries under /usr/lib/postgresql"
    log "creating cluster $version main on port 5432"
    as_root pg_createcluster --port 5432 "$version" main </dev/null
    cluster="$version main"
  fi
  # apt may have started it already (systemd); starting an online cluster is not an error for us.
  if ! tcp_open 127.0.0.1 5432; then
    log "starting PostgreSQL cluster $cluster"
    # shellcheck disable=SC2086  # "VERSION NAME" splits into two arguments on purpose
    as_root pg_ctlcluster --skip-systemctl-redirect $cluster start </dev/null
  fi
  wait_for "PostgreSQL (127.0.0.1:5432)" tcp_open 127.0.0.1 5432 ||
    die "PostgreSQL did not start listening on 127.0.0.1:5432 within ${WAIT_S}s (see /var/log/postgresql/)"
}

# Let the local `postgres` user in over 127.0.0.1 without a password (a local development box only).
pg_trust_local() {
  local cluster hba
  cluster="$(pg_cluster)"
  [ -n "$cluster" ] || return 1
  hba="/etc/postgresql/${cluster% *}/${cluster#* }/pg_hba.conf"
  as_root test -f "$hba" || return 1
  local line="host    all    postgres    127.0.0.1/32    trust    # added by i9lyfe scripts/services.sh"
  if ! as_root grep -qF "$line" "$hba"; then
    # pg_hba.conf is first-match, so the rule goes before every existing one.
    as_root sed -i "1i $line" "$hba" || return 1
    log "changed $hba: added at the top: $line"
  fi
  # shellcheck disable=SC2086
  as_root pg_ctlcluster --skip-systemctl-redirect $cluster reload </dev/null || return 1
  log "reloaded PostgreSQL cluster $cluster"
}

ensure_postgres() {
  if [ -n "${DATABASE_URL:-}" ]; then
    pg_dsn_ok "$DATABASE_URL" ||
      die "PostgreSQL at DATABASE_URL is not reachable (or refuses the login); check it, or unset DATABASE_URL to use a local server"
    return 0
  fi
  pg_local_login_ok && return 0
  if ! tcp_open 127.0.0.1 5432; then
    pg_start_local  # (not on the right of ||, where set -e would not stop on a failed install)
  fi
  pg_local_login_ok && return 0
  log "user postgres cannot log in without a password on 127.0.0.1:5432; enabling trust for it"
  pg_trust_local && wait_for_short pg_local_login_ok && return 0
  die "cannot log in to 127.0.0.1:5432 as user postgres without a password; fix pg_hba.conf or set DATABASE_URL"
}

# ------------------------------------------------------------------------------------------------- Redis

redis_url_ok() {  # url
  if [ -x "$VENV_PY" ]; then
    "$VENV_PY" - "$1" <<'PY'
import sys
import redis

try:
    client = redis.Redis.from_url(sys.argv[1], socket_connect_timeout=5, socket_timeout=5)
    client.ping()
    client.close()
except Exception as exc:  # noqa: BLE001 - any failure means "not usable"; say why
    print(f"services: redis: {type(exc).__name__}: {exc}", file=sys.stderr)
    sys.exit(1)
PY
  elif command -v redis-cli >/dev/null 2>&1; then
    [ "$(timeout 10 redis-cli -u "$1" ping </dev/null)" = "PONG" ]
  else
    die "cannot check REDIS_URL: neither $VENV_PY (run 'make venv') nor redis-cli is available"
  fi
}

redis_local_ok() (  # speaks RESP over bash's /dev/tcp: no redis-cli or python needed
  reply=""
  exec 3<>/dev/tcp/127.0.0.1/6379 || exit 1
  printf 'PING\r\n' >&3
  read -r -t 5 reply <&3 || true
  [ "${reply%$'\r'}" = "+PONG" ]
) 2>/dev/null

ensure_redis() {
  if [ -n "${REDIS_URL:-}" ]; then
    redis_url_ok "$REDIS_URL" ||
      die "Redis at REDIS_URL is not reachable; check it, or unset REDIS_URL to use a local server"
    return 0
  fi
  redis_local_ok && return 0
  if tcp_open 127.0.0.1 6379; then
    die "something listens on 127.0.0.1:6379 but does not answer PING with PONG (password?); set REDIS_URL"
  fi
  local installed=0
  if ! command -v redis-server >/dev/null 2>&1; then
    log "Redis is not installed; installing redis-server"
    apt_install redis-server
    installed=1
  fi
  # A fresh package install may have started its own service already.
  if [ "$installed" -eq 0 ] || ! wait_for_short redis_local_ok; then
    log "starting redis-server on 127.0.0.1:6379 (no persistence)"
    redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no </dev/null >/dev/null
  fi
  wait_for "Redis (127.0.0.1:6379)" redis_local_ok ||
    die "Redis did not answer on 127.0.0.1:6379 within ${WAIT_S}s"
}

# The tools the test suite's benchmark smoke runs use (tests/benchmarks: wrk for the read loads); `make test` asks
# for them with --test-tools, `make run` does not.
ensure_test_tools() {
  if ! command -v wrk >/dev/null 2>&1; then
    log "wrk is not installed; installing it (the benchmarks' read load)"
    apt_install wrk
  fi
}

ensure_postgres
ensure_redis
if [ "${1:-}" = "--test-tools" ]; then ensure_test_tools; fi
