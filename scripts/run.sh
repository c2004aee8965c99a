#!/usr/bin/env bash
# Serve i9lyfe locally (`make run` calls this after venv, services and migrations).
#
# Loads .env (without overriding variables already set), starts a private local Ray head unless RAY_ADDRESS
# is set, then runs `python -m api` (uvicorn on HOST:PORT with WORKERS processes). Ctrl-C / SIGTERM stops the
# server and the Ray head this script started; other Ray clusters on the machine are never touched.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
VENV="${VENV:-.venv}"
PY="$VENV/bin/python"
[ -x "$PY" ] || { echo "run: $PY not found; run 'make venv' first" >&2; exit 1; }

# .env (KEY=VALUE lines, taken literally, never evaluated; variables already set win): this script runs again
# under scripts/with_env.sh, which reads it the same way for every other command.
if [ -f .env ] && [ -z "${I9_ENV_LOADED:-}" ]; then
  export I9_ENV_LOADED=1
  exec scripts/with_env.sh .env "$0" "$@"
fi

HOST="${HOST:-127.0.0.1}"
PORT="${PORT:-8000}"
WORKERS="${WORKERS:-2}"
export HOST PORT WORKERS

ray_pid=""
api_pid=""

# Session leaders among a process's children: the `ray start --head` process runs in its own session.
session_children() {  # pid
  local child
  for child in $(cat /proc/"$1"/task/*/children 2>/dev/null); do
    [ "$(session_of "$child")" = "$child" ] && echo "$child"
  done
  return 0
}
session_of() {  # pid -> session id (field 6 of /proc/PID/stat, counted after the ")" ending the name)
  local stat fields
  stat="$(cat /proc/"$1"/stat 2>/dev/null)" || return 0
  read -r -a fields <<<"${stat##*) }"
  echo "${fields[3]:-}"
}

cleanup() {
  # Once: a second Ctrl-C must not abort the cleanup half-way and leave the Ray head running.
  trap - EXIT
  trap '' INT TERM
  if [ -n "$api_pid" ] && kill -0 "$api_pid" 2>/dev/null; then
    kill -TERM "$api_pid" 2>/dev/null || true
    wait "$api_pid" 2>/dev/null || true
  fi
  if [ -n "$ray_pid" ] && kill -0 "$ray_pid" 2>/dev/null; then
    echo "run: stopping the local Ray head" >&2
    # Should the helper be interrupted while still starting the head, it exits without stopping it; so
    # remember the head's session now and end it ourselves afterwards if it is still there.
    local heads
    heads="$(session_children "$ray_pid")"
    # Becomes KeyboardInterrupt in actors.runtime.cluster, which then stops the head's own process group.
    kill -TERM "$ray_pid" 2>/dev/null || true
    wait "$ray_pid" 2>/dev/null || true
    local head
    for head in $heads; do
      if [ "$(session_of "$head")" = "$head" ]; then
        kill -TERM -- "-$head" 2>/dev/null || true
      fi
    done
  fi
}
trap 'cleanup; exit 130' INT
trap 'cleanup; exit 143' TERM
trap cleanup EXIT

if [ -z "${RAY_ADDRESS:-}" ]; then
  echo "run: starting a local Ray head (log: var/log/ray-head.log)" >&2
  # Ray token authentication: the head and every client (the api workers) share this token file.
  export RAY_AUTH_MODE=token
  export RAY_AUTH_TOKEN_PATH="${RAY_AUTH_TOKEN_PATH:-$PWD/var/ray_auth_token}"
  # Loopback only: the head and every driver (the api workers) bind and dial 127.0.0.1 alone. Ray reads this
  # when it is imported, so it must be in the api's environment from the start (actors.runtime.cluster.loopback_env).
  export RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0
  # `python -m actors.runtime.cluster`, in its own session so that a terminal's Ctrl-C reaches only this script, which
  # then stops the helper exactly once. SIGINT and SIGTERM both become KeyboardInterrupt, on which the helper
  # stops its head; SIGINT is reset explicitly because launchers without job control start us with it ignored.
  coproc RAY_HELPER {
    exec "$PY" -c '
import os, runpy, signal, sys
try:
    os.setsid()
except OSError:
    pass
signal.signal(signal.SIGINT, signal.default_int_handler)
signal.signal(signal.SIGTERM, signal.default_int_handler)
sys.argv = ["actors.runtime.cluster"]
runpy.run_module("actors.runtime.cluster", run_name="__main__", alter_sys=True)
'
  }
  ray_pid="$RAY_HELPER_PID"
  address=""
  # It prints the head's address once the head answers `ray status`, then blocks until interrupted.
  read -r -t 120 address <&"${RAY_HELPER[0]}" || true
  if ! [[ "$address" =~ ^[0-9A-Za-z.:-]+:[0-9]+$ ]]; then
    echo "run: the Ray head did not start; see var/log/ray-head.log" >&2
    exit 1
  fi
  export RAY_ADDRESS="$address"
  echo "run: Ray head at $RAY_ADDRESS" >&2
else
  echo "run: using the Ray cluster at RAY_ADDRESS=$RAY_ADDRESS" >&2
fi

url="http://$HOST:$PORT"
echo "i9lyfe: serving on $url  (API docs: $url/docs)  with $WORKERS workers; Ctrl-C stops it"

# Background jobs of a script start with SIGINT ignored; give the server the default dispositions back.
( trap - INT QUIT; exec "$PY" -m api ) &
api_pid=$!
set +e
wait "$api_pid"
status=$?
set -e
api_pid=""
exit "$status"
