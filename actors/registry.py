"""Actor names, namespace and shard routing (no Ray import: pure functions, unit-tested)."""

from __future__ import annotations

_MIX = 0x9E3779B97F4A7C15
_MASK = (1 << 64) - 1


def shard_index(entity_id: int, shards: int) -> int:
    """Stable ``hash(id) % K``: a multiplicative mix first so the Snowflake low bits do not skew it."""
    if shards <= 0:
        raise ValueError("shards must be positive")
    mixed = ((entity_id * _MIX) & _MASK) >> 32
    return mixed % shards


def shard_name(kind: str, fingerprint: str, index: int) -> str:
    """``<kind>-shard-<fingerprint>-<k>``: the fingerprint (actors/versioning.py) names the code and settings."""
    return f"{kind}-shard-{fingerprint}-{index}"


def user_shard_name(fingerprint: str, index: int) -> str:
    """``user-shard-<fingerprint>-<k>``: the fingerprint (actors/versioning.py) names the code and settings."""
    return f"user-shard-{fingerprint}-{index}"


def chat_shard_name(fingerprint: str, index: int) -> str:
    return f"chat-shard-{fingerprint}-{index}"
