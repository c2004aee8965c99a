"""Time-ordered 64-bit ids (Snowflake layout).

    1 bit 0 | 41 bits milliseconds since EPOCH | 10 bits node | 12 bits sequence

Ids from one generator are strictly increasing; ids from different processes are unique as long as no two of
them mint with the same node number at the same time. So a generator mints only with a node it holds right
now: one leased from Redis (``storage.redis.NodeLease`` calls ``hold`` after each acquisition and renewal,
with the monotonic time until which the lease is surely still ours, and ``drop`` when it is gone). Past that
time, or with no node at all, ``next_id`` raises ``NodeNotHeld`` instead of risking a duplicate. The wire
form is the decimal string.
"""

from __future__ import annotations

import math
import threading
import time

EPOCH_MS = 1_704_067_200_000  # 2024-01-01T00:00:00Z
NODE_BITS = 10
SEQ_BITS = 12
MAX_NODE = (1 << NODE_BITS) - 1
MAX_SEQ = (1 << SEQ_BITS) - 1
NODES = MAX_NODE + 1


class NodeNotHeld(RuntimeError):
    """This process holds no node lease right now, so it may not mint ids (another process may own the node)."""


class IdGenerator:
    """Mints with one of the nodes it holds, keeping to the same one while its lease lasts.

    ``IdGenerator(node)`` holds ``node`` for ever (for tests and tools that own a node by construction).
    """

    def __init__(self, node: int | None = None) -> None:
        self._held: dict[int, float] = {}  # node -> monotonic deadline of its lease
        self._node: int | None = None
        self._last_ms = -1
        self._seq = 0
        self._lock = threading.Lock()
        if node is not None:
            self.hold(node, math.inf)

    @property
    def node(self) -> int | None:
        """The node the last id was (or the next will be) minted with."""
        return self._node

    def hold(self, node: int, valid_until: float) -> None:
        """``node`` is ours until ``valid_until`` (``time.monotonic()``), as a lease acquisition or renewal says."""
        if not 0 <= node <= MAX_NODE:
            raise ValueError(f"node must be in 0..{MAX_NODE}")
        with self._lock:
            self._held[node] = valid_until

    def drop(self, node: int) -> None:
        """``node`` is ours no more (released, or its lease was found lost): never mint with it again."""
        with self._lock:
            self._held.pop(node, None)

    def holds(self, node: int) -> bool:
        return self._held.get(node, -math.inf) > time.monotonic()

    def _current_node(self) -> int:
        now = time.monotonic()
        if self._node is not None and self._held.get(self._node, -math.inf) > now:
            return self._node
        live = sorted(node for node, until in self._held.items() if until > now)
        if not live:
            raise NodeNotHeld("no id node lease is held by this process right now; refusing to mint ids")
        if self._node is not None:
            # Another node: make the next id start a fresh millisecond, so ids stay strictly increasing.
            self._seq = MAX_SEQ
        self._node = live[0]
        return self._node

    def next_id(self) -> int:
        with self._lock:
            node = self._current_node()
            now = int(time.time() * 1000) - EPOCH_MS
            if now < self._last_ms:
                # Clock went backwards: keep ordering by staying on the last millisecond.
                now = self._last_ms
            if now == self._last_ms:
                self._seq = (self._seq + 1) & MAX_SEQ
                if self._seq == 0:
                    # Sequence exhausted in this millisecond: move to the next one.
                    now = self._last_ms + 1
                    while int(time.time() * 1000) - EPOCH_MS < now:
                        time.sleep(0.0001)
            else:
                self._seq = 0
            self._last_ms = now
            return (now << (NODE_BITS + SEQ_BITS)) | (node << SEQ_BITS) | self._seq


def id_time_ms(value: int) -> int:
    """Unix milliseconds at which an id was made."""
    return (value >> (NODE_BITS + SEQ_BITS)) + EPOCH_MS


def id_node(value: int) -> int:
    """The node number an id was minted with."""
    return (value >> SEQ_BITS) & MAX_NODE


def min_id_at(unix_ms: int) -> int:
    """The smallest id that could be made at ``unix_ms`` (for time-range queries over ids)."""
    return max(0, unix_ms - EPOCH_MS) << (NODE_BITS + SEQ_BITS)


_default = IdGenerator()


def default_generator() -> IdGenerator:
    """The process's generator behind ``new_id``; the process's node leases hold their nodes in it."""
    return _default


def new_id() -> int:
    return _default.next_id()


def floor_id(seconds_ago: float) -> int:
    """The smallest id that can have been minted ``seconds_ago`` seconds before now (a time floor for id ranges)."""
    return min_id_at(int((time.time() - seconds_ago) * 1000))
