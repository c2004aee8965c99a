"""The parts of GET /metrics that need no server: reading an event frame's append time, the METRICS_ALLOW check,
its configuration, and the multiprocess directory (with real processes writing to it)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import msgpack
import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector

from api import metrics_dir
from api.metrics import appended_ms
from api.routes.metrics import is_allowed
from api.ws.frames import FrameCache, plain_frame
from storage.config import ConfigError, Settings, load_settings


@pytest.mark.parametrize("fmt", ["json", "msgpack"])
def test_the_append_time_is_read_from_frames_that_carry_an_event_id(fmt: str) -> None:
    stored = FrameCache("1732000000123-7", "notification", msgpack.packb({"n": 1}), prev="1732000000000-0")
    assert appended_ms(stored.get(fmt)) == 1732000000123
    assert appended_ms(plain_frame("99-0", "test.event", {"id": "1-2"}, fmt)) == 99
    # Acks, presence and other frames without an id have no append time, whatever their data holds.
    assert appended_ms(plain_frame(None, "ack", {"id": "1732000000123-7"}, fmt)) is None
    assert appended_ms(plain_frame("not-an-id", "x", {}, fmt)) is None
    assert appended_ms(b"") is None


def test_metrics_allow_matches_client_addresses_by_network() -> None:
    loopback = Settings().metrics_allow
    assert loopback == ("127.0.0.1/32", "::1/128")
    assert is_allowed("127.0.0.1", loopback)
    assert is_allowed("::1", loopback)
    assert is_allowed("::ffff:127.0.0.1", loopback)  # an IPv4 peer on a dual-stack socket
    for outside in ("127.0.0.2", "10.0.0.1", "203.0.113.7", "::2", "", "not-an-ip", "127.0.0.1, 10.0.0.1"):
        assert not is_allowed(outside, loopback), outside
    assert is_allowed("10.20.30.40", ("10.0.0.0/8", "192.168.1.5"))
    assert not is_allowed("11.0.0.1", ("10.0.0.0/8", "192.168.1.5"))


def test_a_bad_metrics_allow_stops_the_server_at_configuration(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("METRICS_ALLOW", "10.0.0.0/8, 192.168.0.0/16")
    assert load_settings().metrics_allow == ("10.0.0.0/8", "192.168.0.0/16")
    monkeypatch.setenv("METRICS_ALLOW", "10.0.0.0/8,localhost")
    with pytest.raises(ConfigError, match="METRICS_ALLOW: 'localhost' is not a network"):
        load_settings()


def test_python_m_api_refuses_a_bad_metrics_allow_with_exit_2(tmp_path: Path) -> None:
    env = dict(os.environ, METRICS_ALLOW="10.0.0.300/8", VAR_DIR=str(tmp_path), JWT_SECRET="x" * 40)
    done = subprocess.run(
        [sys.executable, "-m", "api"], env=env, capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 2, done.stderr
    assert "METRICS_ALLOW: '10.0.0.300/8' is not a network" in done.stderr


def test_prepare_makes_an_empty_directory_per_server(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(metrics_dir.ENV_VAR, "/somewhere/else")
    settings = Settings(var_dir=str(tmp_path), port=8123)
    stale = tmp_path / "metrics" / "8123" / "counter_1.db"
    stale.parent.mkdir(parents=True)
    stale.write_bytes(b"old run")
    path = metrics_dir.prepare(settings)
    assert path == tmp_path / "metrics" / "8123"
    assert os.environ[metrics_dir.ENV_VAR] == str(path)
    assert list(path.iterdir()) == []


WORKER = textwrap.dedent(
    """
    import sys
    from prometheus_client import Counter, Gauge
    Gauge("i9lyfe_ws_connections", "open sockets", multiprocess_mode="livesum").inc(int(sys.argv[1]))
    Counter("i9lyfe_ws_frames", "frames", ["direction"]).labels(direction="out").inc(int(sys.argv[1]))
    if sys.argv[2] == "stay":
        sys.stdout.write("ready\\n")
        sys.stdout.flush()
        sys.stdin.read()
    """
)


def _scrape(path: Path) -> str:
    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=str(path))
    return generate_latest(registry).decode()


def test_a_dead_workers_open_sockets_leave_the_sum_and_its_counts_stay(tmp_path: Path) -> None:
    env = dict(os.environ, **{metrics_dir.ENV_VAR: str(tmp_path)})
    alive = subprocess.Popen(
        [sys.executable, "-c", WORKER, "2", "stay"], env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE
    )
    try:
        assert alive.stdout is not None and alive.stdout.readline() == b"ready\n"
        dead = subprocess.run([sys.executable, "-c", WORKER, "3", "exit"], env=env, check=True, timeout=60)
        assert dead.returncode == 0
        assert "i9lyfe_ws_connections 5.0" in _scrape(tmp_path)  # a killed worker's sockets, still counted

        dead_pids = [int(f.stem.rsplit("_", 1)[1]) for f in _dead(tmp_path)]
        assert len(dead_pids) == 1
        assert metrics_dir.forget_dead_workers(tmp_path) == dead_pids
        text = _scrape(tmp_path)
        assert "i9lyfe_ws_connections 2.0" in text  # only the live worker's sockets
        assert 'i9lyfe_ws_frames_total{direction="out"} 5.0' in text  # the dead one's frames were sent
        assert metrics_dir.forget_dead_workers(tmp_path) == []
    finally:
        alive.communicate(b"", timeout=30)


def _dead(path: Path) -> list[Path]:
    files = sorted(path.glob("gauge_livesum_*.db"))
    return [f for f in files if not Path(f"/proc/{f.stem.rsplit('_', 1)[1]}").exists()]
