"""A single-machine setup is reachable from this machine only: every TCP socket that the test Ray head (GCS,
raylet, workers with the shard actors, agents, client server) or the test server (uvicorn master, workers, their
Ray core workers) listens on is bound to loopback, no Ray process talks to anything but loopback, and the Ray
node advertises 127.0.0.1."""

from __future__ import annotations

import ipaddress
import json
import os
import subprocess
import sys
from dataclasses import dataclass

import psutil

from actors.runtime.cluster import RayHead
from tests.conftest import REPO, Server


@dataclass(frozen=True)
class Socket:
    pid: int
    name: str
    local: str
    remote: str
    status: str


def _is_loopback(host: str) -> bool:
    address = ipaddress.ip_address(host.split("%", 1)[0])
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address.is_loopback


def _tree(root_pid: int) -> list[psutil.Process]:
    """``root_pid``, its descendants, and anything else in its session (a daemonized child that changed parent)."""
    found: dict[int, psutil.Process] = {}
    try:
        root = psutil.Process(root_pid)
        found[root.pid] = root
        for child in root.children(recursive=True):
            found[child.pid] = child
    except psutil.NoSuchProcess:
        pass
    for process in psutil.process_iter():
        try:
            if os.getsid(process.pid) == root_pid:
                found.setdefault(process.pid, process)
        except (ProcessLookupError, PermissionError, psutil.Error):
            continue
    return list(found.values())


def _sockets(processes: list[psutil.Process]) -> list[Socket]:
    sockets = []
    for process in processes:
        try:
            name = " ".join(process.cmdline()[:2])[:80] or process.name()
            connections = process.net_connections(kind="tcp")
        except psutil.Error:
            continue  # ended meanwhile
        for c in connections:
            remote = f"{c.raddr.ip}:{c.raddr.port}" if c.raddr else ""
            sockets.append(Socket(process.pid, name, f"{c.laddr.ip}:{c.laddr.port}", remote, c.status))
    return sockets


def _host(endpoint: str) -> str:
    return endpoint.rsplit(":", 1)[0]


def _report(sockets: list[Socket]) -> str:
    return "\n".join(f"  pid {s.pid} {s.name!r}: {s.status} {s.local} -> {s.remote or '-'}" for s in sockets)


def test_ray_head_and_server_listen_on_loopback_only(ray_head: RayHead, server: Server) -> None:
    ray_processes = _tree(ray_head.process.pid)
    names = " ".join(p.name() for p in ray_processes if p.is_running())
    assert "gcs_server" in names and "raylet" in names, names
    server_processes = _tree(server.process.pid)
    assert len(server_processes) >= 3, "uvicorn master and two workers"

    ray_sockets = _sockets(ray_processes)
    listeners = [s for s in ray_sockets + _sockets(server_processes) if s.status == psutil.CONN_LISTEN]
    assert listeners, "found no listening socket at all: the process lookup is broken"
    exposed = [s for s in listeners if not _is_loopback(_host(s.local))]
    assert not exposed, f"{len(exposed)} of {len(listeners)} listeners beyond loopback:\n{_report(exposed)}"

    dialing_out = [s for s in ray_sockets if s.remote and not _is_loopback(_host(s.remote))]
    assert not dialing_out, f"Ray connections beyond loopback:\n{_report(dialing_out)}"


def test_ray_node_advertises_loopback_to_a_driver(ray_head: RayHead) -> None:
    """A driver with the client environment (as the api workers have it) sees one node, at 127.0.0.1."""
    script = (
        "import json, ray\n"
        "ray.init(log_to_driver=False, configure_logging=False)\n"
        "print(json.dumps({'nodes': [n['NodeManagerAddress'] for n in ray.nodes() if n['Alive']],"
        " 'driver': ray.util.get_node_ip_address()}))\n"
        "ray.shutdown()\n"
    )
    env = {**os.environ, **ray_head.client_env()}
    done = subprocess.run(
        [sys.executable, "-c", script], env=env, cwd=REPO, capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr[-4000:]
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    assert seen == {"nodes": ["127.0.0.1"], "driver": "127.0.0.1"}, seen
