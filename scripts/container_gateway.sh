#!/bin/sh
# The api container of docker-compose.yml: join the Ray cluster at RAY_ADDRESS as a node of its own, then serve.
#
# A Ray driver (each uvicorn worker of `python -m api`) must run on a machine with a raylet, and to Ray every
# container is a machine: so this container starts a raylet (no CPUs offered: tasks that need CPU run on the
# Ray head) with token authentication and the fixed ports of ray_cluster.yaml, then becomes `python -m api`.
# Not loopback-only (no RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER): the nodes talk over the compose network.
set -eu
: "${RAY_ADDRESS:?RAY_ADDRESS must name the Ray head, e.g. ray-head:6380}"
: "${RAY_AUTH_TOKEN_PATH:?RAY_AUTH_TOKEN_PATH must name the shared token file}"
export RAY_AUTH_MODE=token
export RAY_worker_niceness=0  # shards at the api's priority, not Ray's default nice 15

ray start --address="$RAY_ADDRESS" --num-cpus=0 --disable-usage-stats \
  --node-manager-port=6381 --object-manager-port=6382 --runtime-env-agent-port=6383 \
  --dashboard-agent-grpc-port=6384 --dashboard-agent-listen-port=52365 --metrics-export-port=6385 \
  --min-worker-port=10002 --max-worker-port=19999
exec python -m api
