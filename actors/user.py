"""The logical per-user actor: state and operations of one user, hosted in a UserShard.

Plain Python (no Ray import). Every operation is ``check_*`` then ``do_*`` and runs under the entity's lock.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import msgpack

from actors import engagement, fanout, follows, posts, recommendations
from actors.media import check_attachable
from actors.runtime import shard_counters
from actors.runtime.services import Services
from domain import rules
from domain.errors import Conflict, NotFound, RateLimited, ValidationFailed
from domain.presence import Presence
from storage import db, live_cache
from storage import users as user_store
from storage.errors import RowNotFound, UniqueViolation
from storage.live_cache import CACHE_CHANNEL
from storage.media import store as media_store

log = logging.getLogger("i9lyfe.user")

AVATAR_PURPOSES = frozenset({"avatar"})
AVATAR_KINDS = frozenset({"image"})
SOCKET_RETRY_AFTER_S = 10  # Retry-After of a socket refused for the per-user cap: until one of them closes


@dataclass
class UserState:
    user_id: int
    username: str | None = None
    loaded: bool = False
    presence: Presence = field(default_factory=Presence)

    def holds_anything(self) -> bool:
        """An entity with open sockets is never evicted: it is the only record of where they are."""
        return self.presence.online


def _at(unix_seconds: float | None) -> dt.datetime:
    if unix_seconds is None:
        return dt.datetime.now(dt.UTC)
    return dt.datetime.fromtimestamp(unix_seconds, dt.UTC)


def _rfc3339(value: dt.datetime) -> str:
    return value.astimezone(dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def check_profile_changes(raw: dict[str, Any]) -> dict[str, Any]:
    """Validate a PATCH /me body (already restricted to known keys); return column -> value."""
    changes: dict[str, Any] = {}
    errors: dict[str, str] = {}
    checks: dict[str, Callable[[Any], Any]] = {
        "name": rules.check_name,
        "bio": lambda v: rules.check_bio(v or ""),
        "username": rules.normalize_username,
        "birthday": rules.check_birthday,
    }
    for key, value in raw.items():
        if value is None and key != "bio":
            errors[key] = "must not be null"
            continue
        try:
            changes[key] = checks[key](value)
        except rules.RuleError as exc:
            errors[key] = str(exc)
        except KeyError:
            errors[key] = "is not a known field"
    if errors:
        raise ValidationFailed(errors)
    return changes


class UserOps:
    """Operations routed to a user's logical actor. Each takes the entity state first."""

    def __init__(self, services: Services) -> None:
        self.services = services

    def table(self) -> dict[str, Callable[..., Awaitable[Any]]]:
        """The op table: the only operations a UserShard runs for a caller (actors/runtime/host.py)."""
        return {
            "connect": self.connect,
            "disconnect": self.disconnect,
            "sync_gateway": self.sync_gateway,
            "expire_gateway": self.expire_gateway,
            "presence": self.presence,
            "sessions_revoked": self.sessions_revoked,
            "update_profile": self.update_profile,
            "set_avatar": self.set_avatar,
            "create_post": self.create_post,
            "delete_post": self.delete_post,
            "react_post": self.react_post,
            "unreact_post": self.unreact_post,
            "mark_post": self.mark_post,
            "comment": self.comment,
            "delete_comment": self.delete_comment,
            "react_comment": self.react_comment,
            "unreact_comment": self.unreact_comment,
            "follow": self.follow,
            "unfollow": self.unfollow,
            "follow_interest": self.follow_interest,
            "explore_feedback": self.explore_feedback,
            "set_recommendation_knobs": self.set_recommendation_knobs,
            "touch": self.touch,
        }

    # ------------------------------------------------------------ activation and presence

    async def _load(self, state: UserState) -> None:
        """Lazy activation from storage: the username and the persisted last_seen."""
        if state.loaded:
            return
        row = await self.services.pool.fetchrow("SELECT username, last_seen FROM users WHERE id = $1", state.user_id)
        if row is None:
            raise NotFound("No such user.")
        state.username = row["username"]
        if state.presence.last_seen is None:
            state.presence.last_seen = row["last_seen"]
        state.loaded = True

    def presence_view(self, state: UserState) -> dict[str, Any]:
        last_seen = state.presence.last_seen
        return {
            "username": state.username,
            "online": state.presence.online,
            "last_seen": None if state.presence.online or last_seen is None else _rfc3339(last_seen),
            "version": state.presence.version,
        }

    async def _announce(self, state: UserState) -> None:
        """Persist last_seen on going offline, then publish the transition to presence subscribers."""
        went = shard_counters.PRESENCE_ONLINE if state.presence.online else shard_counters.PRESENCE_OFFLINE
        shard_counters.count(went)  # reported through ping for GET /metrics
        if not state.presence.online and state.presence.last_seen is not None:
            await self.services.pool.execute(
                "UPDATE users SET last_seen = $2 WHERE id = $1", state.user_id, state.presence.last_seen
            )
        await self.services.redis.publish(
            self.services.keys.presence_channel(state.user_id),
            msgpack.packb({"type": "presence", "data": self.presence_view(state)}, use_bin_type=True),
        )

    async def connect(self, state: UserState, gateway: str, socket_id: str, seq: int) -> dict[str, Any]:
        """Register a socket; refused (429 ``too_many_sockets``) when the user already has the configured
        number open, across every gateway: this shard is the one place that sees all of them."""
        await self._load(state)
        limit = self.services.settings.ws_max_sockets_per_user
        if state.presence.socket_count() >= limit and socket_id not in state.presence.sockets(gateway):
            raise RateLimited(
                SOCKET_RETRY_AFTER_S,
                f"At most {limit} sockets may be open per user; close one first.",
                code="too_many_sockets",
                details={"limit": limit},
            )
        if state.presence.add(gateway, socket_id, seq):
            await self._announce(state)
        return self.presence_view(state)

    async def disconnect(
        self, state: UserState, gateway: str, socket_id: str, seq: int, closed_at: float | None = None
    ) -> dict[str, Any]:
        """``closed_at``: when the socket closed (Unix seconds); a retried disconnect keeps its original time."""
        await self._load(state)
        if state.presence.remove(gateway, socket_id, _at(closed_at), seq):
            await self._announce(state)
        return self.presence_view(state)

    async def sync_gateway(
        self, state: UserState, gateway: str, sockets: list[str], seq: int, closed_at: float | None = None
    ) -> bool:
        """Re-registration: the gateway's full socket list of this user, taken at ``seq``. ``closed_at``: the
        gateway had sockets of this user that closed then, while this shard could not hear of it."""
        await self._load(state)
        now = dt.datetime.now(dt.UTC)
        closed = None if closed_at is None else _at(closed_at)
        changed = state.presence.replace_gateway(gateway, set(sockets), now, seq, closed)
        if changed:
            await self._announce(state)
        return changed

    async def expire_gateway(self, state: UserState, gateway: str) -> bool:
        """The gateway stopped heartbeating: its sockets are gone."""
        await self._load(state)
        changed = state.presence.forget_gateway(gateway, dt.datetime.now(dt.UTC))
        if changed:
            await self._announce(state)
        return changed

    async def presence(self, state: UserState) -> dict[str, Any]:
        await self._load(state)
        return self.presence_view(state)

    async def sessions_revoked(self, state: UserState, session_ids: list[int]) -> int:
        """Tell the gateways holding this user's sockets to close those of the revoked sessions (4401). The
        revocation itself happened before, in storage and the Redis denylist (api/accounts.py), so a shard
        that cannot be reached never keeps a session alive."""
        gateways = state.presence.gateways()
        if gateways and session_ids:
            message = msgpack.packb(
                {"control": "revoke", "user": state.user_id, "sessions": session_ids}, use_bin_type=True
            )
            async with self.services.redis.pipeline(transaction=False) as pipe:
                for gateway in gateways:
                    pipe.publish(self.services.keys.gateway_channel(gateway), message)
                await pipe.execute()
        return len(gateways)

    async def update_profile(self, state: UserState, raw: dict[str, Any]) -> dict[str, Any]:
        changes = check_profile_changes(raw)
        try:
            async with db.transaction(self.services.pool) as conn:
                row = await user_store.update_profile(conn, state.user_id, changes)
        except UniqueViolation as exc:
            raise Conflict("This username is taken.", code="username_taken") from exc
        except RowNotFound as exc:
            raise NotFound("No such user.") from exc
        state.username = row["username"]  # later presence events carry the new name
        await self._summary_changed(state)
        return dict(row)

    async def _summary_changed(self, state: UserState) -> None:
        """Every api process drops its cached posts by this user (their author summary changed), and cached
        responses that show people go stale (api/response_cache.py)."""
        try:
            keys = self.services.keys
            async with self.services.redis.pipeline(transaction=False) as pipe:
                pipe.publish(keys(*CACHE_CHANNEL), str(state.user_id).encode())
                await live_cache.bump_keys(self.services.redis, [live_cache.profiles_version_key(keys)], pipe)
                await pipe.execute()
        except Exception as exc:  # the caches expire them within their TTLs anyway
            log.warning("cache invalidation not published", extra={"fields": {"error": repr(exc)}})

    async def set_avatar(self, state: UserState, media_id: int | None) -> dict[str, Any]:
        """Make one of the user's own ready avatar images the avatar (it becomes public), or clear it (None)."""
        async with db.transaction(self.services.pool) as conn:
            if media_id is not None:
                await check_attachable(
                    conn, state.user_id, [media_id], purposes=AVATAR_PURPOSES, kinds=AVATAR_KINDS, field="media_id"
                )
                await media_store.make_public(conn, [media_id])
            try:
                row = await user_store.update_profile(conn, state.user_id, {"avatar_media_id": media_id})
            except RowNotFound as exc:
                raise NotFound("No such user.") from exc
        await self._summary_changed(state)
        return dict(row)

    async def create_post(self, state: UserState, body: dict[str, Any], key: str | None) -> posts.Created:
        """A new post by this user (or, for a repeated Idempotency-Key, the stored answer); events to publish."""
        created = await posts.create(self.services.pool, self.services.settings, state.user_id, body, key)
        if created.events:  # made now (a stored answer has none)
            try:
                await fanout.into_own_timeline(self.services, state.user_id, int(created.body["id"]))
            except Exception as exc:  # the fan-out job puts it there too
                log.warning("own timeline not updated", extra={"fields": {"error": repr(exc)}})
            await self._merged_post(state)
        return created

    async def _merged_post(self, state: UserState) -> None:
        """After a committed post or repost: when this user is not fanned out (too many followers), their
        followers' feeds merge it at read time, so cached feed pages are stale (api/routes/feed.py)."""
        services = self.services
        try:
            followers = await services.pool.fetchval("SELECT followers_count FROM users WHERE id = $1", state.user_id)
            if followers is not None and int(followers) > services.settings.fanout_max_followers:
                await live_cache.bump_keys(services.redis, [live_cache.merged_version_key(services.keys)])
        except Exception as exc:  # cached feed pages expire within their TTL
            log.warning("merged feed version not bumped", extra={"fields": {"error": repr(exc)}})

    async def _follows_changed(self, state: UserState) -> None:
        """After a committed follow, unfollow or feed knob change: this user's cached feed pages are stale."""
        services = self.services
        try:
            await live_cache.bump_keys(services.redis, [live_cache.follows_version_key(services.keys, state.user_id)])
        except Exception as exc:  # cached feed pages expire within their TTL
            log.warning("follows version not bumped", extra={"fields": {"error": repr(exc)}})

    async def delete_post(self, state: UserState, post_id: int) -> None:
        await posts.delete(self.services.pool, state.user_id, post_id)

    # Engagement (actors/engagement.py): each returns an Outcome with the events to publish after commit.

    async def react_post(self, state: UserState, post_id: int, emoji: Any) -> engagement.Outcome:
        return await engagement.react_post(self.services.pool, self.services.settings, state.user_id, post_id, emoji)

    async def unreact_post(self, state: UserState, post_id: int) -> engagement.Outcome:
        return await engagement.unreact_post(self.services.pool, state.user_id, post_id)

    async def mark_post(self, state: UserState, post_id: int, kind: str, on: bool) -> engagement.Outcome:
        if kind not in ("repost", "save"):
            raise ValidationFailed({"kind": "repost or save"})
        outcome = await engagement.mark(self.services.pool, self.services.settings, state.user_id, post_id, kind, on)
        if kind == "repost" and on and outcome.posts:
            await self._merged_post(state)
        return outcome

    async def comment(
        self, state: UserState, post_id: int | None, parent_id: int | None, body: dict[str, Any], key: str | None
    ) -> engagement.Outcome:
        return await engagement.comment(
            self.services.pool,
            self.services.settings,
            state.user_id,
            post_id=post_id,
            parent_id=parent_id,
            body=body,
            key=key,
        )

    async def delete_comment(self, state: UserState, comment_id: int) -> engagement.Outcome:
        return await engagement.delete_comment(self.services.pool, state.user_id, comment_id)

    async def react_comment(self, state: UserState, comment_id: int, emoji: Any) -> engagement.Outcome:
        settings = self.services.settings
        return await engagement.react_comment(self.services.pool, settings, state.user_id, comment_id, emoji)

    async def unreact_comment(self, state: UserState, comment_id: int) -> engagement.Outcome:
        return await engagement.unreact_comment(self.services.pool, state.user_id, comment_id)

    async def follow(self, state: UserState, username: str) -> follows.FollowResult:
        """Follow ``username`` (idempotent); the result carries the committed event to publish."""
        settings = self.services.settings
        result = await follows.follow(self.services.pool, state.user_id, username, settings.public_base_url)
        if result.changed:
            await self._follows_changed(state)
            await self._feed_follow(state, result.followee_id, True)
        return result

    async def unfollow(self, state: UserState, username: str) -> follows.FollowResult:
        result = await follows.unfollow(self.services.pool, state.user_id, username)
        if result.changed:
            await self._follows_changed(state)
            await self._feed_follow(state, result.followee_id, False)
        return result

    # ------------------------------------------------------------ interests and recommendations (issue 14)

    async def follow_interest(self, state: UserState, slug: str, on: bool) -> bool:
        """Follow or unfollow an interest (idempotent); 404 for a slug not in the catalogue."""
        return await recommendations.follow_interest(self.services.pool, state.user_id, slug, on)

    async def explore_feedback(self, state: UserState, post_id: int, signal: str) -> None:
        await recommendations.give_feedback(self.services.pool, state.user_id, post_id, signal)

    async def set_recommendation_knobs(self, state: UserState, changes: dict[str, Any]) -> dict[str, Any]:
        knobs = await recommendations.set_knobs(self.services.pool, state.user_id, changes)
        await self._follows_changed(state)  # hide_reposts changes the feed
        return knobs.to_wire()

    async def _feed_follow(self, state: UserState, followee_id: int, on: bool) -> None:
        """After a committed follow or unfollow: the follower's timeline takes in or lets go of the followee,
        and when the followee is not fanned out (too many followers), the gateways holding the follower's
        sockets start or stop forwarding the followee's live posts. The follow stands whatever happens here:
        a timeline that could not be updated is dropped, and the next read rebuilds it."""
        services = self.services
        try:
            if on:
                await fanout.on_follow(services, state.user_id, followee_id)
            else:
                await fanout.on_unfollow(services, state.user_id, followee_id)
            gateways = state.presence.gateways()
            if gateways:
                count = await services.pool.fetchval("SELECT followers_count FROM users WHERE id = $1", followee_id)
                if on and int(count or 0) <= services.settings.fanout_max_followers:
                    return  # fanned out as usual: nothing to forward (an unfollow always tells, in case)
                message = msgpack.packb(
                    {"control": "authors", "user": state.user_id, "author": followee_id, "on": on},
                    use_bin_type=True,
                )
                async with services.redis.pipeline(transaction=False) as pipe:
                    for gateway in gateways:
                        pipe.publish(services.keys.gateway_channel(gateway), message)
                    await pipe.execute()
        except Exception as exc:
            log.warning("feed update after a follow failed", extra={"fields": {"error": repr(exc)}})
            with contextlib.suppress(Exception):
                await services.redis.delete(services.keys.timeline(state.user_id))

    async def touch(self, state: UserState) -> str:
        """Trivial op used by tests and health checks: proves the entity is reachable and serialized."""
        return dt.datetime.now(dt.UTC).isoformat()
