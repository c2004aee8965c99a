"""The one after-commit path (DESIGN.md 2b, Zulip's ``do_*`` + ``send_event``): what an op asks for once its
transaction has committed, carried out by the actor that ran it, never by a route.

An op handler answers ``Done(result, events, effects)`` (actors/runtime/host.py):
* ``events``: the outbox rows its transaction staged (domain events for users' streams, and ``job.*`` rows for
  worker queues). The actor delivers them through ``Delivery`` (one Redis script appends them to the streams and
  publishes them to the gateways on the recipients' routes) while it still holds the entity's lock, so a chat's
  events reach the members in ``seq`` order. A delivery that fails leaves them to the outbox relay: they are
  already stored.
* ``effects``: what else must follow the commit: cache versions to bump (so cached reads show the write at once),
  messages to publish on channels (presence, control messages to gateways, live counts), a timeline to update.
  They run in one Redis pipeline where they can; a failure is logged once per outage and never fails the op: the
  caches expire and the timelines are rebuilt on read.

Every op goes through ``AfterCommit.run``, whatever its kind; the ops of one group commit go through it together.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

import msgpack

from actors import fanout
from actors.runtime.delivery import Delivery, OutboxEvent
from actors.runtime.host import Done
from actors.runtime.services import Services
from storage import live_cache
from storage import users as user_store
from storage.outage import OUTAGES

log = logging.getLogger("i9lyfe.after_commit")


@dataclass(frozen=True)
class Publish:
    """One message on one Redis channel (presence, a gateway's control message, live counts)."""

    channel: str
    message: bytes


@dataclass(frozen=True)
class Bump:
    """New versions for these version keys (storage/live_cache.py): cached reads that depend on them are stale."""

    keys: tuple[str, ...]


@dataclass(frozen=True)
class CountsChanged:
    """These posts' counts (or readers' flags) changed, and these comments' (comment id, post id): their versions
    are bumped and each post's topic gets one ``counts.dirty`` message (api/ws/live_counts.py coalesces them)."""

    posts: tuple[int, ...] = ()
    comments: tuple[tuple[int, int], ...] = ()


@dataclass(frozen=True)
class OwnTimeline:
    """A new post into its author's own timeline at once (the fan-out job puts it there too)."""

    author_id: int
    post_id: int


@dataclass(frozen=True)
class MergedPost:
    """A new post or repost: if its author is not fanned out (too many followers), feeds merge it at read time, so
    cached feed pages are stale."""

    author_id: int


@dataclass(frozen=True)
class FeedFollow:
    """A follow (``on``) or unfollow: the follower's timeline takes in or lets go of the followee, and, for a
    followee that is not fanned out, the gateways holding the follower's sockets (``gateways``) start or stop
    forwarding the followee's live posts."""

    follower_id: int
    followee_id: int
    on: bool
    gateways: tuple[str, ...] = ()


@dataclass(frozen=True)
class Route:
    """The gateways holding a user's sockets changed: the mirror in Redis that delivery reads (storage/routes.py)
    is rewritten, before the op that changed them returns (a socket's replay starts after its route is written)."""

    user_id: int
    gateways: tuple[str, ...]


@dataclass(frozen=True)
class LiveOnly:
    """A live-only event (no stream entry, no id: typing) to one user's sockets, through the user's shard."""

    user_id: int
    type: str
    data: dict[str, Any]


Effect = Publish | Bump | CountsChanged | OwnTimeline | MergedPost | FeedFollow | Route | LiveOnly
EphemeralPush = Callable[[int, str, dict[str, Any]], Awaitable[None]]


def summary_changed(services: Services, user_id: int) -> list[Effect]:
    """A user's name, username or avatar changed: every api process drops its cached posts by them, and cached
    responses that show people go stale (api/response_cache.py)."""
    keys = services.keys
    return [
        Publish(keys(*live_cache.CACHE_CHANNEL), str(user_id).encode()),
        Bump((live_cache.profiles_version_key(keys),)),
    ]


def follows_changed(services: Services, user_id: int) -> Bump:
    """A follow, an unfollow or a feed knob: the user's cached feed pages are stale."""
    return Bump((live_cache.follows_version_key(services.keys, user_id),))


def post_gone(services: Services, post_id: int) -> Bump:
    """A deleted post leaves cached reads at once, with its comments."""
    keys = services.keys
    return Bump((live_cache.version_key(keys, post_id), live_cache.comments_version_key(keys, post_id)))


class AfterCommit:
    """Carries out ``Done``'s events and effects for one shard process."""

    def __init__(self, services: Services, delivery: Delivery, ephemeral: EphemeralPush | None = None) -> None:
        self.services = services
        self.delivery = delivery
        self.ephemeral = ephemeral

    async def run(self, dones: Sequence[Done[Any]]) -> None:
        """Committed ops' events, then their effects, in the ops' order: a group commit's together, in one
        delivery script and one pipeline (the host calls this before its next batch)."""
        await self.publish([event for done in dones for event in done.events])
        await self.effects([effect for done in dones for effect in done.effects])

    async def publish(self, events: Sequence[OutboxEvent]) -> None:
        """Committed events to their recipients' streams now (the caller holds the entity's lock, so they land in
        its order), pushed live in the background; a failure leaves them to the outbox relay."""
        if not events:
            return
        try:
            await self.delivery.publish(events, mark_later=True)
        except Exception as exc:  # stored with the write: the outbox relay delivers them
            OUTAGES.note("events left to the outbox relay", exc, log)

    async def effects(self, effects: Sequence[Effect]) -> None:
        if not effects:
            return
        try:
            await self._effects(effects)
        except Exception as exc:  # caches expire (storage/live_cache.py TTL_S) and timelines are rebuilt on read
            OUTAGES.note("after-commit effects not carried out", exc, log)

    async def _effects(self, effects: Sequence[Effect]) -> None:
        services = self.services
        keys = services.keys
        later: list[Effect] = []
        async with services.redis.pipeline(transaction=False) as pipe:
            queued = False
            for effect in effects:
                if isinstance(effect, Publish):
                    pipe.publish(effect.channel, effect.message)
                elif isinstance(effect, Route):
                    self.delivery.routes.mirror(pipe, effect.user_id, effect.gateways)
                elif isinstance(effect, Bump):
                    await live_cache.bump_keys(services.redis, list(effect.keys), pipe)
                elif isinstance(effect, CountsChanged):
                    changed: dict[int, list[int]] = {pid: [] for pid in effect.posts}
                    for comment_id, post_id in effect.comments:
                        changed.setdefault(post_id, []).append(comment_id)
                    await live_cache.bump(services.redis, keys, list(effect.posts), pipe)
                    await live_cache.bump_keys(
                        services.redis, [live_cache.comments_version_key(keys, pid) for pid in changed], pipe
                    )
                    for post_id, comment_ids in changed.items():
                        message = {"type": "counts.dirty", "data": {"post_id": post_id, "comment_ids": comment_ids}}
                        pipe.publish(keys.post_channel(post_id), msgpack.packb(message, use_bin_type=True))
                else:
                    later.append(effect)
                    continue
                queued = True
            if queued:
                await pipe.execute()
        for effect in later:
            await self._one(effect)

    async def _one(self, effect: Effect) -> None:
        services = self.services
        if isinstance(effect, OwnTimeline):
            await fanout.into_own_timeline(services, effect.author_id, effect.post_id)
        elif isinstance(effect, MergedPost):
            followers = await user_store.followers_count(services.pool, effect.author_id)
            if followers is not None and followers > services.settings.fanout_max_followers:
                await live_cache.bump_keys(services.redis, [live_cache.merged_version_key(services.keys)])
        elif isinstance(effect, FeedFollow):
            await self._feed_follow(effect)
        elif isinstance(effect, LiveOnly) and self.ephemeral is not None:
            try:
                await self.ephemeral(effect.user_id, effect.type, effect.data)
            except Exception as exc:  # live-only events are best effort: never stored, never retried
                log.info("live-only event not relayed", extra={"fields": {"error": repr(exc)}})

    async def _feed_follow(self, effect: FeedFollow) -> None:
        """The follow stands whatever happens here: a timeline that could not be updated is dropped, and the next
        read rebuilds it."""
        services = self.services
        try:
            if effect.on:
                await fanout.on_follow(services, effect.follower_id, effect.followee_id)
            else:
                await fanout.on_unfollow(services, effect.follower_id, effect.followee_id)
            if not effect.gateways:
                return
            if effect.on:
                count = await user_store.followers_count(services.pool, effect.followee_id)
                if int(count or 0) <= services.settings.fanout_max_followers:
                    return  # fanned out as usual: nothing to forward (an unfollow always tells, in case)
            message = msgpack.packb(
                {"control": "authors", "user": effect.follower_id, "author": effect.followee_id, "on": effect.on},
                use_bin_type=True,
            )
            async with services.redis.pipeline(transaction=False) as pipe:
                for gateway in effect.gateways:
                    pipe.publish(services.keys.gateway_channel(gateway), message)
                await pipe.execute()
        except Exception:
            await services.redis.delete(services.keys.timeline(effect.follower_id))
            raise
