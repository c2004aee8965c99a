"""Counters a shard process keeps for ``GET /metrics``, reported through the shard's ``ping``.

A shard runs in a Ray actor process: it has no /metrics of its own and no share of the api's multiprocess
directory (Ray starts it, not the api). So what only a shard sees (presence transitions) is counted here in plain
integers, one set per process (one shard actor per Ray worker process), returned by ``ShardHost.ping`` as
``counters``; the api process that serves a scrape pings every shard and exposes them with a ``shard`` label
(api/routes/metrics.py). They start again at zero when a shard restarts, as the counters of any restarted
process do; Prometheus's ``rate()`` and ``increase()`` take such resets in their stride per series.
"""

from __future__ import annotations

from collections import Counter

PRESENCE_ONLINE = "presence_online"
PRESENCE_OFFLINE = "presence_offline"
GROUP_RETRIES = "group_retries"  # ops run again in the next group commit after losing a lock conflict

_counts: Counter[str] = Counter()


def count(name: str, amount: int = 1) -> None:
    _counts[name] += amount


def snapshot() -> dict[str, int]:
    return dict(_counts)
