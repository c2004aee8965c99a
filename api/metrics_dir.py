"""prometheus-client's multiprocess directory, made by the master of ``python -m api`` before its workers start.

Every uvicorn worker writes its metric values to memory-mapped files in ``PROMETHEUS_MULTIPROC_DIR``; the worker
that serves ``GET /metrics`` sums them (``prometheus_client.multiprocess``). The directory is per server:
``$VAR_DIR/metrics/<PORT>`` (servers sharing a VAR_DIR listen on different ports), created and emptied here, so
a restarted server starts its counters from zero as any restarted process does. Whatever
``PROMETHEUS_MULTIPROC_DIR`` the environment had is replaced: the directory must be this server's alone.

No prometheus-client import here: the variable must be set before prometheus-client is first imported (it picks
its value class then), also in the master itself when ``WORKERS=1`` serves from it.
"""

from __future__ import annotations

import os
from pathlib import Path

from storage.config import Settings

ENV_VAR = "PROMETHEUS_MULTIPROC_DIR"


def multiproc_dir(settings: Settings) -> Path:
    return Path(settings.var_dir) / "metrics" / str(settings.port)


def prepare(settings: Settings) -> Path:
    """Create (or empty) this server's directory and point ``PROMETHEUS_MULTIPROC_DIR`` at it; the workers
    inherit the variable."""
    path = multiproc_dir(settings)
    path.mkdir(parents=True, exist_ok=True)
    for stale in path.glob("*.db"):
        stale.unlink(missing_ok=True)
    os.environ[ENV_VAR] = str(path)
    return path


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def forget_dead_workers(path: Path) -> list[int]:
    """Drop the live-gauge files of workers that are gone (killed, crashed; uvicorn's supervisor restarts them
    without telling anyone), so ``livesum`` gauges such as open sockets stop counting them; their counters and
    histograms stay, as a dead process's counts should. Called at each scrape; returns the pids dropped."""
    from prometheus_client import multiprocess

    dropped = []
    for file in path.glob("gauge_live*_*.db"):
        pid = file.stem.rsplit("_", 1)[-1]
        if pid.isdigit() and int(pid) != os.getpid() and not _alive(int(pid)):
            multiprocess.mark_process_dead(int(pid), str(path))  # type: ignore[no-untyped-call]
            dropped.append(int(pid))
    return sorted(set(dropped))


def forget_worker() -> None:
    """A worker shutting down: its live gauges go now (its counters stay)."""
    path = os.environ.get(ENV_VAR)
    if path:
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(os.getpid(), path)  # type: ignore[no-untyped-call]
