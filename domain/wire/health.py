"""What /healthz and /readyz answer: ok or not, no internals (no pids, epochs or counters)."""

from __future__ import annotations

from typing import Literal

from domain.wire.base import Wire

DependencyState = Literal["ok", "unavailable"]


class Health(Wire, frozen=True, kw_only=True):
    """The process is up."""

    status: Literal["ok"]


class ReadyChecks(Wire, frozen=True, kw_only=True):
    postgres: DependencyState
    redis: DependencyState
    ray: DependencyState


class Ready(Wire, frozen=True, kw_only=True):
    """PostgreSQL, Redis and the Ray shards are reachable."""

    status: Literal["ready"]
    checks: ReadyChecks
