"""Run locust as one master and N worker processes on this machine, so the load generator is not the bottleneck.

    .venv/bin/python loadtests/run_distributed.py --workers 3 -u 300 -r 50 -t 60s --host http://127.0.0.1:8000

One locust process uses one core (gevent), so on a multi-core load box a single process saturates long before
the server does. This starts ``locust --master --headless`` bound to 127.0.0.1 only (``--master-bind-host``, on a
free port) and N ``locust --worker`` processes connecting to it; N defaults to the number of cores minus one
(at least 1), leaving a core for the master and the system. The options this script does not know (users,
spawn rate, run time, host, ``--csv``, ...) go to the master, which prints the aggregated stats. Each worker runs
loadtests/distributed.py (the journeys of locustfile.py, with the accounts striped over the workers).

The run ends when the master does; its exit status is this script's (locust: 1 when any request failed). Then
every worker is stopped. Ctrl-C or SIGTERM stops the master first (it prints its final stats and tells the
workers to quit), then whatever is still running: SIGTERM, and SIGKILL after a deadline. The children run in
sessions of their own, so a terminal's Ctrl-C reaches only this script, which stops each of them once.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from types import FrameType

HERE = Path(__file__).resolve().parent
LOCUST = str(Path(sys.executable).with_name("locust"))
MASTER_STOP_S = 30.0  # for the master to print its stats and tell the workers to quit
STOP_S = 10.0  # for each remaining process after SIGTERM, before SIGKILL


def default_workers() -> int:
    return max(1, (os.cpu_count() or 1) - 1)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def parse(argv: list[str]) -> tuple[argparse.Namespace, list[str]]:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter, allow_abbrev=False
    )
    parser.add_argument("--workers", type=int, default=default_workers(), help="worker processes (cores - 1)")
    parser.add_argument("--locustfile", default=str(HERE / "distributed.py"))
    parser.add_argument("--master-port", type=int, default=0, help="port on 127.0.0.1 (default: a free one)")
    parser.add_argument("--worker-loglevel", default="WARNING")
    args, master_args = parser.parse_known_args(argv)
    if args.workers < 1:
        parser.error("--workers must be at least 1")
    return args, master_args


def _spawn(cmd: list[str], env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    return subprocess.Popen(cmd, env=env, start_new_session=True)  # noqa: S603 (our own locust binary)


def _signal(proc: subprocess.Popen[bytes], signum: int) -> None:
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signum)


def _wait(proc: subprocess.Popen[bytes], timeout: float) -> bool:
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        return False
    return True


def stop_all(procs: list[subprocess.Popen[bytes]]) -> None:
    """SIGTERM every process still running, then SIGKILL those that outlive STOP_S."""
    for proc in procs:
        _signal(proc, signal.SIGTERM)
    deadline = time.monotonic() + STOP_S
    for proc in procs:
        if not _wait(proc, max(0.0, deadline - time.monotonic())):
            _signal(proc, signal.SIGKILL)
            proc.wait()


def run(args: argparse.Namespace, master_args: list[str]) -> int:
    port = args.master_port or free_port()
    common = [LOCUST, "-f", args.locustfile]
    master_cmd = [
        *common,
        "--master",
        "--headless",
        "--master-bind-host=127.0.0.1",
        f"--master-bind-port={port}",
        f"--expect-workers={args.workers}",
        "--expect-workers-max-wait=60",
        *master_args,
    ]
    worker_cmd = [
        *common,
        "--worker",
        "--master-host=127.0.0.1",
        f"--master-port={port}",
        f"--loglevel={args.worker_loglevel}",
    ]
    print(f"run_distributed: master on 127.0.0.1:{port}, {args.workers} workers", file=sys.stderr, flush=True)
    procs: list[subprocess.Popen[bytes]] = []
    master: subprocess.Popen[bytes] | None = None
    try:
        master = _spawn(master_cmd)
        procs.append(master)
        for index in range(args.workers):
            env = dict(os.environ, LOAD_WORKER_INDEX=str(index), LOAD_WORKER_COUNT=str(args.workers))
            procs.append(_spawn(worker_cmd, env))
        status = master.wait()
        print(f"run_distributed: master exited with {status}", file=sys.stderr, flush=True)
        return status
    except KeyboardInterrupt:
        print("run_distributed: interrupted; stopping the master, then the workers", file=sys.stderr, flush=True)
        if master is not None:
            _signal(master, signal.SIGINT)  # as Ctrl-C: final stats, quit message to the workers
            _wait(master, MASTER_STOP_S)
        return 130
    finally:
        stop_all(procs)


def main(argv: list[str] | None = None) -> int:
    def on_term(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    args, master_args = parse(sys.argv[1:] if argv is None else argv)
    return run(args, master_args)


if __name__ == "__main__":
    raise SystemExit(main())
