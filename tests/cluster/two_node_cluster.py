"""A two-node Ray cluster on this machine, for tests/cluster: run as ``python -m tests.cluster.two_node_cluster``.

``ray start --address`` cannot add a second node to a loopback-only head (actors/runtime/cluster.py), but
``ray.cluster_utils.Cluster`` can: a head with 1 CPU and a second node with 1 CPU and the custom resource
``node2``, both on 127.0.0.1. This process prints one JSON line (the address, each node's id, node 2's raylet
pid) and then holds the cluster until stdin closes or SIGTERM, when it shuts it down. It runs apart from
pytest so that a test can SIGKILL node 2's raylet and workers without touching the head.

Run it with ``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0`` (loopback only) and, for token authentication,
``RAY_AUTH_MODE=token`` and ``RAY_AUTH_TOKEN_PATH`` in its environment.
"""

from __future__ import annotations

import json
import signal
import sys
import threading

from ray.cluster_utils import Cluster


def main() -> int:
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda signum, frame: stop.set())
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False})
    try:
        worker = cluster.add_node(num_cpus=1, resources={"node2": 1})
        cluster.wait_for_nodes()
        info = {
            "address": cluster.address,
            "head_node": cluster.head_node.node_id,
            "worker_node": worker.node_id,
            "worker_raylet_pid": worker.all_processes["raylet"][0].process.pid,
        }
        print(json.dumps(info), flush=True)
        threading.Thread(target=lambda: (sys.stdin.read(), stop.set()), daemon=True).start()
        stop.wait()
    finally:
        cluster.shutdown()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
