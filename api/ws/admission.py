"""Socket handshakes in flight in one gateway process.

Each handshake checks the token in Redis and registers the socket with the user's shard before the upgrade.
Past ``limit`` of them at once, a new one is refused at once (503 ``unavailable`` with Retry-After) instead of
queueing behind the others for the same pools; sockets already open are never touched.
"""

from __future__ import annotations

MAX_HANDSHAKES = 256
RETRY_AFTER_S = 1


class HandshakeGate:
    def __init__(self, limit: int = MAX_HANDSHAKES) -> None:
        self.limit = limit
        self._in_flight: set[int] = set()
        self.refused = 0

    @property
    def in_flight(self) -> int:
        return len(self._in_flight)

    def enter(self, handshake: object) -> bool:
        """Count ``handshake`` in; False (and nothing counted) when ``limit`` are in flight already."""
        if len(self._in_flight) >= self.limit:
            self.refused += 1
            return False
        self._in_flight.add(id(handshake))
        return True

    def leave(self, handshake: object) -> None:
        """The handshake is over (upgraded or refused); idempotent."""
        self._in_flight.discard(id(handshake))
