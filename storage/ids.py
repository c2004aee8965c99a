"""Time-ordered 64-bit ids (Snowflake layout).

    1 bit 0 | 41 bits milliseconds since EPOCH | 10 bits node | 12 bits sequence

Ids from one generator are strictly increasing; ids from different nodes are unique as long as each process
holds a distinct node number (leased from Redis at startup, see ``storage.redis.lease_node_id``). The wire form
is the decimal string.
"""

from __future__ import annotations

import threading
import time

EPOCH_MS = 1_704_067_200_000  # 2024-01-01T00:00:00Z
NODE_BITS = 10
SEQ_BITS = 12
MAX_NODE = (1 << NODE_BITS) - 1
MAX_SEQ = (1 << SEQ_BITS) - 1


class IdGenerator:
    def __init__(self, node: int) -> None:
        if not 0 <= node <= MAX_NODE:
            raise ValueError(f"node must be in 0..{MAX_NODE}")
        self.node = node
        self._last_ms = -1
        self._seq = 0
        self._lock = threading.Lock()

    def next_id(self) -> int:
        with self._lock:
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
            return (now << (NODE_BITS + SEQ_BITS)) | (self.node << SEQ_BITS) | self._seq


def id_time_ms(value: int) -> int:
    """Unix milliseconds at which an id was made."""
    return (value >> (NODE_BITS + SEQ_BITS)) + EPOCH_MS


def min_id_at(unix_ms: int) -> int:
    """The smallest id that could be made at ``unix_ms`` (for time-range queries over ids)."""
    return max(0, unix_ms - EPOCH_MS) << (NODE_BITS + SEQ_BITS)


_default: IdGenerator | None = None


def configure(node: int) -> None:
    global _default
    _default = IdGenerator(node)


def new_id() -> int:
    if _default is None:
        raise RuntimeError("storage.ids.configure(node) was not called")
    return _default.next_id()
