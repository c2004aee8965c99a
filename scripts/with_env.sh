#!/usr/bin/env bash
# Run a command with the variables of an env file: `scripts/with_env.sh FILE COMMAND [ARG...]`.
#
# For the nodes of a multi-machine deployment (ray_cluster.yaml, scripts/i9lyfe-api@.service): the operator's
# env file (DATABASE_URL, REDIS_URL, JWT_SECRET, ...; the names of .env.example) is read the way scripts/run.sh
# reads .env: KEY=VALUE lines, optional `export `, optional matching quotes around the value, # comments, taken
# literally and never evaluated, without overriding variables already set. Then COMMAND replaces this shell
# (exec), so it receives the signals of whoever started it (systemd's SIGTERM reaches the api directly).
set -euo pipefail

if [ "$#" -lt 2 ]; then
  echo "usage: $0 ENV_FILE COMMAND [ARG...]" >&2
  exit 2
fi
file="$1"
shift
[ -r "$file" ] || { echo "with_env: cannot read $file" >&2; exit 1; }

while IFS= read -r line || [ -n "$line" ]; do
  line="${line%$'\r'}"
  [[ "$line" =~ ^[[:space:]]*(export[[:space:]]+)?([A-Za-z_][A-Za-z0-9_]*)=(.*)$ ]] || continue
  key="${BASH_REMATCH[2]}"
  value="${BASH_REMATCH[3]}"
  if [[ "$value" =~ ^\"(.*)\"[[:space:]]*$ || "$value" =~ ^\'(.*)\'[[:space:]]*$ ]]; then
    value="${BASH_REMATCH[1]}"
  else
    value="${value%%[[:space:]]#*}"                    # trailing " # comment" on an unquoted value
    value="${value%"${value##*[![:space:]]}"}"          # trailing blanks
  fi
  [ -n "${!key+set}" ] || export "$key=$value"
done < "$file"

exec "$@"
