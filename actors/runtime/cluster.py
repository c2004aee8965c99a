"""Start and stop a local Ray head for development and tests.

``ray start --head --block`` runs in its own process group with every port chosen free, so several clusters
(a dev server, a test run) live side by side and stopping one never touches another (unlike ``ray stop``,
which ends every Ray process on the machine).

The head is for this machine only: it listens and dials on 127.0.0.1 alone (GCS, raylet, object manager,
workers, agents, metrics, client server) and advertises 127.0.0.1 as its node address. A loopback
``--node-ip-address`` alone does not do that: Ray swaps it for the machine's external address and binds many
ports on every interface, unless ``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0`` is in the environment of the head
and of every driver (``loopback_env``; ``RayHead.client_env`` includes it). With it, ``ray start --address``
refuses to add a second node (``ray.cluster_utils.Cluster`` still can, on 127.0.0.1); a multi-machine cluster
is started from ray_cluster.yaml instead (docs/OPERATIONS.md, "Network exposure"). Token authentication stays
on as well: only processes holding the token file can join or call the cluster.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path


def loopback_env() -> dict[str, str]:
    """Environment that keeps a single-machine Ray on 127.0.0.1: for the head and for every driver joining it.

    Ray reads it at import time (``ray_constants.ENABLE_RAY_CLUSTER``): set it before a process imports ray.
    """
    return {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class RayHead:
    process: subprocess.Popen[bytes]
    address: str
    log_path: Path
    auth_env: dict[str, str]

    def client_env(self) -> dict[str, str]:
        """Environment a process needs to join this cluster (address, loopback only, token authentication)."""
        return {"RAY_ADDRESS": self.address, **loopback_env(), **self.auth_env}

    def stop(self, timeout: float = 5.0) -> None:
        if self.process.poll() is not None:
            return
        try:
            os.killpg(self.process.pid, signal.SIGTERM)
            self.process.wait(timeout=timeout)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=5)


def ensure_auth_token(path: Path) -> dict[str, str]:
    """Ray token authentication (Ray >= 2.52): a random token in a 0600 file, named by the environment."""
    if not path.exists() or not path.read_text().strip():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(secrets.token_hex(32))
        path.chmod(0o600)
    return {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": str(path.resolve())}


def start_head(
    num_cpus: int = 2, log_path: Path | None = None, timeout: float = 60.0, auth_token_path: Path | None = None
) -> RayHead:
    gcs_port = free_port()
    address = f"127.0.0.1:{gcs_port}"
    ray_bin = str(Path(sys.executable).with_name("ray"))
    ports = {
        "--port": gcs_port,
        "--node-manager-port": free_port(),
        "--object-manager-port": free_port(),
        "--ray-client-server-port": free_port(),
        "--dashboard-agent-listen-port": free_port(),
        "--dashboard-agent-grpc-port": free_port(),
        "--runtime-env-agent-port": free_port(),
        "--metrics-export-port": free_port(),
        "--dashboard-port": free_port(),
    }
    cmd = [
        ray_bin,
        "start",
        "--head",
        "--block",
        "--node-ip-address=127.0.0.1",
        "--include-dashboard=false",
        "--dashboard-host=127.0.0.1",
        "--disable-usage-stats",
        f"--num-cpus={num_cpus}",
    ]
    cmd += [f"{flag}={value}" for flag, value in ports.items()]
    log_path = log_path or Path("var/log/ray-head.log")
    log_path.parent.mkdir(parents=True, exist_ok=True)
    auth_env = ensure_auth_token(auth_token_path) if auth_token_path is not None else {}
    # Ray starts its workers (our shard actors) at nice 15 by default, behind the api processes, PostgreSQL and
    # Redis at 0: on a busy machine a shard then got a small fraction of a core. The shards are the server.
    env = dict(os.environ, RAY_USAGE_STATS_ENABLED="0", RAY_worker_niceness="0", **loopback_env(), **auth_env)
    # The autoscaler monitor's and the dashboard head's Prometheus endpoints default to fixed ports (44217,
    # 44227), which a second head on this machine could not bind: free ones, like every other port.
    env.update(AUTOSCALER_METRIC_PORT=str(free_port()), DASHBOARD_METRIC_PORT=str(free_port()))
    env.pop("RAY_ADDRESS", None)
    with open(log_path, "ab") as log:
        process = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True, env=env)
    head = RayHead(process, address, log_path, auth_env)
    try:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise RuntimeError(f"ray head exited with {process.returncode}; see {log_path}")
            try:
                status = subprocess.run(
                    [ray_bin, "status", f"--address={address}"],
                    capture_output=True,
                    env=env,
                    timeout=max(1.0, min(30.0, deadline - time.monotonic())),
                )
            except subprocess.TimeoutExpired:  # a slow answer on a busy machine: ask again while time remains
                continue
            if status.returncode == 0:
                return head
            time.sleep(0.5)
        raise RuntimeError(f"ray head did not come up in {timeout}s; see {log_path}")
    except BaseException:  # interrupted or failed while starting: never leave a head behind
        head.stop()
        raise


def main() -> int:
    """``python -m actors.runtime.cluster``: run a head until interrupted, printing its address first.

    Token authentication is on: the token lives in RAY_AUTH_TOKEN_PATH (default var/ray_auth_token), and
    clients must run with RAY_AUTH_MODE=token and the same RAY_AUTH_TOKEN_PATH (scripts/run.sh exports both).
    """

    def on_term(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_term)
    try:
        token_path = Path(
            os.environ.get("RAY_AUTH_TOKEN_PATH") or Path(os.environ.get("VAR_DIR", "var")) / "ray_auth_token"
        )
        head = start_head(num_cpus=int(os.environ.get("RAY_NUM_CPUS", "2")), auth_token_path=token_path)
    except KeyboardInterrupt:
        return 130
    print(head.address, flush=True)
    try:
        head.process.wait()
    except KeyboardInterrupt:
        pass
    finally:
        head.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
