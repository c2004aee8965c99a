"""What ``GET /metrics`` (api/routes/metrics.py) shows, read at scrape time, each with a deadline
(``SCRAPE_WAIT_S``; what does not answer in time is left out, not waited for):
* the outbox, counted in PostgreSQL with a cap (storage/metrics.py): the backlog, the rows waiting for a relay
  retry, the dead rows. The relay runs in the shard processes, which have no /metrics and whose code is not the
  api's: the outbox table is where every relay attempt of every shard is recorded (``attempts``,
  ``last_error``), so it is read there;
* every user shard's ``ping``: whether it answers, and its counters (actors/runtime/shard_counters.py: presence
  transitions, counted where they happen, once each, rather than once per gateway that relays them).
Everything else comes from the memory-mapped files of every worker of this server (prometheus-client's
multiprocess mode, api/metrics_dir.py), or from this process alone when the app runs outside ``python -m api``.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from prometheus_client import REGISTRY, CollectorRegistry, values
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import choose_encoder
from prometheus_client.multiprocess import MultiProcessCollector

from api import metrics_dir
from api.deps import AppContext
from storage.metrics import OUTBOX_COUNT_CAP, OutboxCounts, get_outbox_counts

log = logging.getLogger("i9lyfe.metrics")

SCRAPE_WAIT_S = 2.0  # for the outbox counts and each shard's ping


@dataclass(eq=False)  # a collector: registries key it by identity
class ScrapeState:
    """What was read at scrape time, outside the metric files."""

    outbox: OutboxCounts | None = None
    shards: list[tuple[str, int, dict[str, Any] | None]] = field(default_factory=list)  # kind, index, ping or None

    def collect(self) -> Iterator[Metric]:
        if self.outbox is not None:
            capped = f" (counted up to {OUTBOX_COUNT_CAP})"
            for name, value, text in (
                ("i9lyfe_outbox_backlog", self.outbox.backlog, "Outbox rows not yet sent and not dead"),
                ("i9lyfe_outbox_retrying", self.outbox.retrying, "Unsent outbox rows waiting for a relay retry"),
                ("i9lyfe_outbox_dead", self.outbox.dead, "Outbox rows parked as dead after too many attempts"),
            ):
                yield GaugeMetricFamily(name, text + capped, value=value)
        up = GaugeMetricFamily(
            "i9lyfe_shard_up", "1 when the shard answered this scrape's ping", labels=["kind", "shard"]
        )
        presence = CounterMetricFamily(
            "i9lyfe_presence_transitions",
            "Presence changes a shard announced (online, offline), since that shard started",
            labels=["kind", "shard", "state"],
        )
        groups = CounterMetricFamily(
            "i9lyfe_group_commits",
            "Group commits of a shard (one PostgreSQL transaction for a batch of ops), since that shard started",
            labels=["kind", "shard"],
        )
        grouped = CounterMetricFamily(
            "i9lyfe_group_commit_ops",
            "Ops committed in a shard's group commits, since it started",
            labels=["kind", "shard"],
        )
        retried = CounterMetricFamily(
            "i9lyfe_group_commit_retries",
            "Ops run again in a shard's next group commit after losing a lock conflict, since it started",
            labels=["kind", "shard"],
        )
        for kind, index, ping in self.shards:
            up.add_metric([kind, str(index)], 0 if ping is None else 1)
            if ping is None:
                continue
            counters = ping.get("counters") or {}
            for state in ("online", "offline"):
                presence.add_metric([kind, str(index), state], counters.get(f"presence_{state}", 0))
            groups.add_metric([kind, str(index)], ping.get("group_commits", 0))
            grouped.add_metric([kind, str(index)], ping.get("group_ops", 0))
            retried.add_metric([kind, str(index)], counters.get("group_retries", 0))
        yield up
        yield presence
        yield groups
        yield grouped
        yield retried


async def _outbox(ctx: AppContext) -> OutboxCounts | None:
    try:
        async with asyncio.timeout(SCRAPE_WAIT_S):
            return await get_outbox_counts(ctx.services.pool)
    except Exception as exc:
        log.warning("metrics: outbox not counted", extra={"fields": {"error": repr(exc)}})
        return None


async def _ping(ctx: AppContext, k: int) -> dict[str, Any] | None:
    try:
        async with asyncio.timeout(SCRAPE_WAIT_S):
            return await ctx.users.ping(k)
    except Exception:
        return None


async def read_state(ctx: AppContext) -> ScrapeState:
    shards = range(len(ctx.users.shards))
    outbox, *pings = await asyncio.gather(_outbox(ctx), *(_ping(ctx, k) for k in shards))
    return ScrapeState(outbox, [("user", k, ping) for k, ping in enumerate(pings)])


def multiprocess_dir() -> Path | None:
    """This server's metric files, when this process's values are written there."""
    path = os.environ.get(metrics_dir.ENV_VAR)
    return Path(path) if path and getattr(values.ValueClass, "_multiprocess", False) else None


def render(state: ScrapeState, accept: str) -> tuple[bytes, str]:
    """The exposition (text format, or OpenMetrics when ``accept`` asks for it). Reads files: run it in a thread."""
    registry = CollectorRegistry(auto_describe=False)
    path = multiprocess_dir()
    if path is not None:
        metrics_dir.forget_dead_workers(path)
        MultiProcessCollector(registry, path=str(path))  # type: ignore[no-untyped-call]
    else:
        registry.register(_Process())
    registry.register(state)
    encoder, content_type = choose_encoder(accept)
    return encoder(registry), content_type


class _Process:
    """This process's own metrics (outside multiprocess mode)."""

    def collect(self) -> Iterator[Metric]:
        yield from REGISTRY.collect()
