"""A shard core called where a Ray actor handle would be (``handle.call_batch.remote(ops)``), without a process hop:
the real ShardClient batches into it, in-process (real PostgreSQL and Redis)."""

from __future__ import annotations

from typing import Any


class _Method:
    def __init__(self, fn: Any) -> None:
        self.fn = fn

    def remote(self, *args: Any) -> Any:
        return self.fn(*args)


class InProcess:
    """Stands where a Ray actor handle would: the same core, called without a process hop."""

    def __init__(self, core: Any) -> None:
        self.core = core
        self.call_batch = _Method(core.call_batch)
