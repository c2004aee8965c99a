"""The parts of posts that change (counts, reactions summary, and a reader's own reaction, repost and save),
cached in Redis and checked against a version per post, so that hot reads skip PostgreSQL (api processes).

Every write that changes a post's live parts, or any reader's flags on it (a reaction, comment, reply, repost,
save, their undoing, a comment deleted, the post deleted), sets the post's version ``ver:post:<id>`` to a new
random token after its commit (``bump``). A cached entry carries the token its reader saw *before* reading
PostgreSQL, so an entry is served only while the post's version is still that token:

* a reader that read PostgreSQL before a write committed tagged its entry with the version from before the write,
  which the write's bump has replaced by then, or replaces afterwards: the entry is never served;
* a version key that expired (a day without writes) reads as no version: an entry tagged so is replaced by the
  next write's token, which can never be empty (random tokens, never a counter that could come round again).

A read is one Redis round trip (the versions, the entries and, for a token, the session's deny mark); what it
misses is read from PostgreSQL as before and cached for ``TTL_S``. A lost bump (the process died between commit
and bump) leaves an entry stale for at most ``TTL_S``.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from typing import Any

import msgspec

from domain.wire.posts import Post, PostCounts, PostMy
from storage.redis import Keys
from storage.views import NOBODY, Live

TTL_S = 60
VERSION_TTL_S = 24 * 3600


CACHE_CHANNEL = ("cache", "users")  # Keys(*CACHE_CHANNEL): published with the id of a user whose summary changed


class Shared(msgspec.Struct, frozen=True):
    """A post's entry for every reader: its counts and reactions summary."""

    counts: PostCounts
    reactions_summary: dict[str, int]


class Mine(msgspec.Struct, frozen=True):
    """A reader's entry on a post: their reaction, repost and save."""

    my: PostMy


# An entry is [the version it was read at, its value] (MessagePack; the value a map, as it always was).
_SHARED = msgspec.msgpack.Decoder(tuple[bytes, Shared])
_MINE = msgspec.msgpack.Decoder(tuple[bytes, Mine])
_PACK = msgspec.msgpack.Encoder()


@dataclass
class Found:
    live: dict[int, Live]  # post id -> its live parts for this reader (counts, summary, my)
    versions: dict[int, bytes]  # post id -> the version read (for caching what was missed)
    denied: bool  # the reader's session has ended
    current: set[int] = field(default_factory=set)  # posts whose shared entry (counts, summary) is current


def version_key(keys: Keys, post_id: int) -> str:
    """A post's version: its live parts and any reader's flags on it."""
    return f"{keys.prefix}ver:post:{post_id}"


def comments_version_key(keys: Keys, post_id: int) -> str:
    """The version of a post's comments: any comment or reply under it, their counts and reactions."""
    return keys("ver", "comments", post_id)


def follows_version_key(keys: Keys, user_id: int) -> str:
    """The version of what a user's feed shows besides its timeline: whom they follow, and their feed knobs."""
    return keys("ver", "follows", user_id)


def merged_version_key(keys: Keys) -> str:
    """The version of the posts merged into feeds at read time: a new post or repost of an account that is not
    fanned out (more than FANOUT_MAX_FOLLOWERS followers)."""
    return keys("ver", "merged")


def profiles_version_key(keys: Keys) -> str:
    """The version of every user summary (name, username, avatar): responses that show people carry it."""
    return keys("ver", "profiles")


def _counts_key(keys: Keys, post_id: int) -> str:
    return keys("live", "post", post_id)


def _mine_key(keys: Keys, post_id: int, viewer_id: int) -> str:
    return keys("live", "post", post_id, viewer_id)


async def bump(redis: Any, keys: Keys, post_ids: list[int], pipe: Any = None) -> None:
    """After a committed change to these posts: a new version each (into ``pipe`` when given, else sent now)."""
    await bump_keys(redis, [version_key(keys, post_id) for post_id in post_ids], pipe)


async def bump_keys(redis: Any, names: list[str], pipe: Any = None) -> None:
    """New random versions for these version keys (into ``pipe`` when given, else sent now)."""
    if not names:
        return
    if pipe is not None:
        for name in names:
            pipe.set(name, secrets.token_bytes(8), ex=VERSION_TTL_S)
        return
    async with redis.pipeline(transaction=False) as own:
        for name in names:
            own.set(name, secrets.token_bytes(8), ex=VERSION_TTL_S)
        await own.execute()


class LiveCache:
    def __init__(self, redis: Any, keys: Keys) -> None:
        self.redis = redis
        self.keys = keys
        self.hits = 0
        self.misses = 0

    async def read(self, post_ids: list[int], viewer_id: int | None, session_id: int | None) -> Found:
        keys = self.keys
        names: list[str] = []
        for post_id in post_ids:
            names.append(version_key(keys, post_id))
            names.append(_counts_key(keys, post_id))
            if viewer_id is not None:
                names.append(_mine_key(keys, post_id, viewer_id))
        if session_id is not None:
            names.append(keys.revoked_session(session_id))
        values = await self.redis.mget(names)
        denied = session_id is not None and values.pop() is not None
        step = 2 if viewer_id is None else 3
        found = Found({}, {}, denied)
        for i, post_id in enumerate(post_ids):
            version = values[i * step] or b""
            found.versions[post_id] = version
            shared = _unpack(_SHARED, values[i * step + 1], version)
            if shared is None:
                continue
            found.current.add(post_id)
            if viewer_id is None:
                my = NOBODY
            else:
                mine = _unpack(_MINE, values[i * step + 2], version)
                if mine is None:
                    continue
                my = mine.my
            found.live[post_id] = (shared.counts, shared.reactions_summary, my)
        self.hits += len(found.live)
        self.misses += len(post_ids) - len(found.live)
        return found

    async def write(
        self,
        posts: dict[int, Post],
        versions: dict[int, bytes],
        viewer_id: int | None,
        current: set[int] | frozenset[int] = frozenset(),
    ) -> None:
        """Cache the live parts of posts read from PostgreSQL, each tagged with the version seen before that read.
        A shared entry found ``current`` by that read (only the reader's own flags were missing) is left as it
        is."""
        if not posts:
            return
        keys = self.keys
        async with self.redis.pipeline(transaction=False) as pipe:
            for post_id, post in posts.items():
                version = versions.get(post_id, b"")
                if post_id not in current:
                    shared = Shared(post.counts, post.reactions_summary)
                    pipe.set(_counts_key(keys, post_id), _PACK.encode((version, shared)), ex=TTL_S)
                if viewer_id is not None:
                    pipe.set(_mine_key(keys, post_id, viewer_id), _PACK.encode((version, Mine(post.my))), ex=TTL_S)
            await pipe.execute()


def _unpack(decoder: msgspec.msgpack.Decoder[Any], raw: bytes | None, version: bytes) -> Any:
    """An entry's value when it was read at ``version``, else None (so is one that does not decode)."""
    if raw is None:
        return None
    try:
        tag, value = decoder.decode(raw)
    except msgspec.DecodeError:
        return None
    return value if tag == version else None
