"""Actor names, namespace and shard routing (no Ray import: pure functions, unit-tested)."""

from __future__ import annotations

_MASK = (1 << 64) - 1


def _mix64(value: int) -> int:
    """SplitMix64's finalizer: every output bit depends on every input bit (ids minted milliseconds apart, whose
    low bits are all sequence 0 and one node, spread evenly; a single multiply left bits 32-33 to depend on the
    id's low 34 bits only, and 64 chats made one after another landed 19/8/8/29 on four shards)."""
    z = (value + 0x9E3779B97F4A7C15) & _MASK
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK
    return z ^ (z >> 31)


def shard_index(entity_id: int, shards: int) -> int:
    """Stable ``hash(id) % K`` over a full 64-bit mix of the id."""
    if shards <= 0:
        raise ValueError("shards must be positive")
    return _mix64(entity_id) % shards


def shard_name(kind: str, fingerprint: str, index: int) -> str:
    """``<kind>-shard-<fingerprint>-<k>``: the fingerprint (actors/runtime/versioning.py) names code and settings."""
    return f"{kind}-shard-{fingerprint}-{index}"


def user_shard_name(fingerprint: str, index: int) -> str:
    """``user-shard-<fingerprint>-<k>``: the fingerprint (actors/runtime/versioning.py) names the code and settings."""
    return f"user-shard-{fingerprint}-{index}"


def chat_shard_name(fingerprint: str, index: int) -> str:
    return f"chat-shard-{fingerprint}-{index}"
