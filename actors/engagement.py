"""Reactions, comments and replies, reposts and saves: ops of the acting user's logical actor. Each op is one
transaction: the row, the counters it changes (post counters sharded by the acting user, storage/engagement.py),
the notification (stored once per event, never for your own content; undoing a reaction or repost removes it;
replacing a reaction changes its emoji and notifies nobody again) and the outbox row of its realtime event. The op
answers its events and which posts and comments changed (``CountsChanged``): after commit their cached reads go
stale and the live counts go out (api/ws/live_counts.py).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

import asyncpg
import msgspec

from actors import fanout
from actors.after_commit import CountsChanged, Effect, MergedPost
from actors.media import check_attachable
from actors.runtime.delivery import OutboxEvent
from actors.runtime.host import Done
from actors.runtime.registry import shard_index
from actors.runtime.services import Services
from actors.user import UserState
from domain import post_text
from domain.errors import Forbidden, NotFound, ValidationFailed
from domain.events import NOTIFICATION_EVENT
from domain.ops import (
    AddComment,
    DeleteComment,
    ReactToComment,
    ReactToPost,
    SetRepost,
    SetSave,
    UnreactToComment,
    UnreactToPost,
)
from domain.present import rfc3339, user_summary
from domain.wire.notifications import Notification, NotificationType
from domain.wire.posts import (
    Comment,
    CommentEngagement,
    PostCounts,
    PostEngagement,
    PostMy,
    Reposted,
    Saved,
)
from domain.wire.users import UserSummary
from storage import db, ids
from storage import engagement as store
from storage import notifications as notification_store
from storage import outbox as outbox_store
from storage import posts as post_store
from storage import users as user_store
from storage.media import store as media_store
from storage.views import comment_views, post_views

COMMENT_PURPOSES = frozenset({"comment"})
COMMENT_KINDS = frozenset({"image", "video"})
COMMENT_ROUTE = "POST /comments"
_COMMENT = msgspec.json.Decoder(Comment)


def _done(
    result: Any,
    events: Sequence[OutboxEvent] = (),
    posts: Sequence[int] = (),
    comments: Sequence[tuple[int, int]] = (),
    more: Sequence[Effect] = (),
) -> Done[Any]:
    """An op's answer; ``posts`` and ``comments`` (comment id, post id) are those whose counts changed."""
    effects: list[Effect] = [CountsChanged(tuple(posts), tuple(comments))] if posts or comments else []
    return Done(result, events=events, effects=[*effects, *more])


def counter_shard(settings: Any, user_id: int) -> int:
    """The post-counter row a user's changes go to (storage/engagement.py): the one of the user's UserShard, so
    that two shards' group commits never write the same counter row (a hot post would make their transactions
    wait for each other, or deadlock); with more than ``COUNTER_SHARDS`` UserShards some share a row."""
    return shard_index(user_id, settings.user_shards) % store.COUNTER_SHARDS


async def _actor(conn: Any, user_id: int, base_url: str) -> UserSummary:
    row = await user_store.get_summary_row(conn, user_id)
    if row is None:
        raise NotFound("No such user.")
    return user_summary(row, base_url)


async def _notify(
    conn: asyncpg.Connection,
    settings: Any,
    *,
    owner_id: int,
    type_: NotificationType,
    actor_id: int,
    post_id: int,
    comment_id: int | None = None,
    emoji: str | None = None,
    shared: dict[str, Any] | None = None,
) -> OutboxEvent | None:
    """Store one notification and its realtime event (a Notification); nobody is notified of their own actions.
    ``shared``: one dict for every notification of an op, so the actor and the (new) comment are read once, not
    per recipient; the post is read per recipient, for their own ``my`` flags."""
    if owner_id == actor_id:
        return None
    note = await notification_store.insert_notification(
        conn,
        notification_id=ids.new_id(),
        owner_id=owner_id,
        type_=type_,
        actor_id=actor_id,
        post_id=post_id,
        comment_id=comment_id,
        emoji=emoji,
    )
    shared = {} if shared is None else shared
    if "actor" not in shared:
        shared["actor"] = await _actor(conn, actor_id, settings.public_base_url)
    post = (await post_views(conn, settings, [post_id], owner_id)).get(post_id)
    comment = None
    if comment_id is not None:
        if "comment" not in shared:
            shared["comment"] = (await comment_views(conn, settings, [comment_id], owner_id)).get(comment_id)
        comment = shared["comment"]
    data = Notification(
        id=str(note["id"]),
        type=type_,
        actor=shared["actor"],
        post=post,
        comment=comment,
        emoji=emoji,
        created_at=rfc3339(note["created_at"]),
        read=False,
    )
    event = OutboxEvent.make([owner_id], NOTIFICATION_EVENT, data)
    await outbox_store.insert_events(conn, [(event.id, event.recipients, event.type, event.data)])
    return event


_unnotify = notification_store.delete_event_notifications
_renotify_emoji = notification_store.update_event_emoji


async def _post_author(conn: asyncpg.Connection, post_id: int) -> int:
    author = await store.lock_post(conn, post_id)
    if author is None:
        raise NotFound("No such post.")
    return author


async def counts_of(conn: Any, post_id: int, user_id: int) -> PostEngagement:
    counts, mine = await store.post_engagement(conn, post_id, user_id)
    return PostEngagement(
        post_id=str(post_id),
        counts=PostCounts(**counts["counts"]),
        reactions_summary=counts["reactions_summary"],
        my=PostMy(**mine),
    )


# ------------------------------------------------------------ post reactions


async def react_post(
    pool: asyncpg.Pool, settings: Any, user_id: int, post_id: int, chosen: str
) -> Done[PostEngagement]:
    shard = counter_shard(settings, user_id)
    events = []
    async with db.transaction(pool) as conn:
        author, previous = await store.react_to_post(conn, post_id, user_id, chosen)
        if author is None:
            raise NotFound("No such post.")
        if previous is None:
            await store.bump(conn, post_id, shard, {"reactions": 1, f"emoji:{chosen}": 1})
            event = await _notify(
                conn, settings, owner_id=author, type_="reaction_post", actor_id=user_id, post_id=post_id, emoji=chosen
            )
            events = [event] if event else []
        elif previous != chosen:
            await store.bump(conn, post_id, shard, {f"emoji:{previous}": -1, f"emoji:{chosen}": 1})
            await _renotify_emoji(conn, "reaction_post", user_id, post_id, None, chosen)
        result = await counts_of(conn, post_id, user_id)
    changed = [post_id] if previous != chosen else []
    return _done(result, events, posts=changed)


async def unreact_post(pool: asyncpg.Pool, settings: Any, user_id: int, post_id: int) -> Done[Any]:
    shard = counter_shard(settings, user_id)
    async with db.transaction(pool) as conn:
        await _post_author(conn, post_id)
        removed = await store.remove_reaction(conn, "post_reactions", "post_id", post_id, user_id)
        if removed is None:
            return _done(None)
        await store.bump(conn, post_id, shard, {"reactions": -1, f"emoji:{removed}": -1})
        await _unnotify(conn, "reaction_post", user_id, post_id, None)
    return _done(None, posts=[post_id])


# ------------------------------------------------------------ reposts and saves


async def mark(pool: asyncpg.Pool, settings: Any, user_id: int, post_id: int, kind: str, on: bool) -> Done[Any]:
    """Repost or save (``on``) and undo (idempotent): ``Reposted`` or ``Saved``."""
    shard = counter_shard(settings, user_id)
    table, counter = ("reposts", "reposts") if kind == "repost" else ("saves", "saves")
    events = []
    async with db.transaction(pool) as conn:
        author = await _post_author(conn, post_id)
        if on:
            repost_id = ids.new_id() if kind == "repost" else 0
            if kind == "repost":
                changed = await store.add_repost(conn, repost_id, post_id, user_id)
            else:
                changed = await store.add_mark(conn, table, post_id, user_id)
            if changed:
                await store.bump(conn, post_id, shard, {counter: 1})
                if kind == "repost":
                    event = await _notify(
                        conn, settings, owner_id=author, type_="repost", actor_id=user_id, post_id=post_id
                    )
                    events = [event] if event else []
                    job = fanout.job_event(repost_id, post_id, author, user_id)  # into followers' feeds
                    await outbox_store.insert_events(conn, [(job.id, job.recipients, job.type, job.data)])
                    events.append(job)
        else:
            changed = await store.remove_mark(conn, table, post_id, user_id)
            if changed:
                await store.bump(conn, post_id, shard, {counter: -1})
                if kind == "repost":
                    await _unnotify(conn, "repost", user_id, post_id, None)
    merged = [MergedPost(user_id)] if kind == "repost" and on and changed else []
    result = Reposted(reposted=on) if kind == "repost" else Saved(saved=on)
    return _done(result, events, posts=[post_id] if changed else [], more=merged)


# ------------------------------------------------------------ comments


async def comment(
    pool: asyncpg.Pool,
    settings: Any,
    user_id: int,
    *,
    post_id: int | None,
    parent_id: int | None,
    text: str,
    media_id: int | None,
    key: str | None,
    digest: bytes,
) -> Done[Comment]:
    """A comment on a post, or a reply to a comment (any depth), checked at the edge (domain/posts.py).
    Idempotency-Key as for posts."""
    shard = counter_shard(settings, user_id)
    if key is not None:
        kept = await post_store.find_idempotent(pool, user_id, COMMENT_ROUTE, key)
        if kept is not None:
            if bytes(kept["body_hash"]) != digest:
                raise ValidationFailed(
                    {"Idempotency-Key": "already used for another request"},
                    "This Idempotency-Key was used for a different comment.",
                    code="idempotency_key_reused",
                )
            return _done(_COMMENT.decode(kept["response"]))  # always a 201's
    now = dt.datetime.now(dt.UTC)
    comment_id = ids.new_id()
    events: list[OutboxEvent] = []
    async with db.transaction(pool) as conn:
        parent = None
        if parent_id is not None:
            parent = await store.get_comment(conn, parent_id)
            if parent is None:
                raise NotFound("No such comment.")
            post_id = int(parent["post_id"])
        assert post_id is not None
        author = await _post_author(conn, post_id)
        if media_id is not None:
            await check_attachable(
                conn, user_id, [media_id], purposes=COMMENT_PURPOSES, kinds=COMMENT_KINDS, field="media_id"
            )
            await media_store.make_public(conn, [media_id])
        await store.insert_comment(
            conn,
            id=comment_id,
            post_id=post_id,
            parent_id=parent_id,
            author_id=user_id,
            text=text,
            media_id=media_id,
            created_at=now,
        )
        await store.bump(conn, post_id, shard, {"comments": 1})
        named = post_text.mentions(text)
        found = await post_store.find_user_ids(conn, named) if named else {}
        mentioned = [found[n] for n in named if n in found]
        await store.insert_comment_mentions(conn, comment_id, mentioned)
        type_: NotificationType
        if parent is not None:
            target, type_ = int(parent["author_id"]), "reply_comment"
        else:
            target, type_ = author, "comment_post"
        notified = {target}
        shared: dict[str, Any] = {}  # a new comment: nobody has reacted to it, so its view is the same for all
        first = await _notify(
            conn,
            settings,
            owner_id=target,
            type_=type_,
            actor_id=user_id,
            post_id=post_id,
            comment_id=comment_id,
            shared=shared,
        )
        events += [first] if first else []
        for mentioned_id in mentioned:
            if mentioned_id in notified:
                continue
            notified.add(mentioned_id)
            event = await _notify(
                conn,
                settings,
                owner_id=mentioned_id,
                type_="mention_comment",
                actor_id=user_id,
                post_id=post_id,
                comment_id=comment_id,
                shared=shared,
            )
            events += [event] if event else []
        view = (await comment_views(conn, settings, [comment_id], user_id))[comment_id]
        if key is not None:
            await post_store.save_idempotent(conn, user_id, COMMENT_ROUTE, key, digest, 201, msgspec.json.encode(view))
    changed_comments = [(int(parent["id"]), post_id)] if parent is not None else []
    return _done(view, events, posts=[post_id], comments=changed_comments)


async def delete_comment(pool: asyncpg.Pool, settings: Any, user_id: int, comment_id: int) -> Done[Any]:
    """By the comment's author or the post's author; its replies go too, and every count with them."""
    shard = counter_shard(settings, user_id)
    async with db.transaction(pool) as conn:
        row = await store.get_comment(conn, comment_id, lock=True)
        if row is None:
            raise NotFound("No such comment.")
        post_id = int(row["post_id"])
        author = await _post_author(conn, post_id)
        if user_id not in (int(row["author_id"]), author):
            raise Forbidden("Only the comment's author or the post's author may delete it.")
        gone = await store.delete_comment(conn, row)
        await store.bump(conn, post_id, shard, {"comments": -gone})
    parents = [(int(row["parent_id"]), post_id)] if row["parent_id"] is not None else []
    return _done(None, posts=[post_id], comments=parents)


async def react_comment(
    pool: asyncpg.Pool, settings: Any, user_id: int, comment_id: int, chosen: str
) -> Done[CommentEngagement]:
    events = []
    async with db.transaction(pool) as conn:
        row = await store.get_comment(conn, comment_id, lock=True)
        if row is None:
            raise NotFound("No such comment.")
        post_id = int(row["post_id"])
        previous = await store.set_reaction(conn, "comment_reactions", "comment_id", comment_id, user_id, chosen)
        if previous is None:
            await store.bump_comment_reactions(conn, comment_id, 1)
            event = await _notify(
                conn,
                settings,
                owner_id=int(row["author_id"]),
                type_="reaction_comment",
                actor_id=user_id,
                post_id=post_id,
                comment_id=comment_id,
                emoji=chosen,
            )
            events = [event] if event else []
        elif previous != chosen:
            await _renotify_emoji(conn, "reaction_comment", user_id, post_id, comment_id, chosen)
        view = (await comment_views(conn, settings, [comment_id], user_id))[comment_id]
    result = CommentEngagement(comment_id=str(comment_id), post_id=str(post_id), counts=view.counts, my=view.my)
    return _done(result, events, comments=[(comment_id, post_id)] if previous != chosen else [])


async def unreact_comment(pool: asyncpg.Pool, user_id: int, comment_id: int) -> Done[Any]:
    async with db.transaction(pool) as conn:
        row = await store.get_comment(conn, comment_id, lock=True)
        if row is None:
            raise NotFound("No such comment.")
        removed = await store.remove_reaction(conn, "comment_reactions", "comment_id", comment_id, user_id)
        if removed is None:
            return _done(None)
        await store.bump_comment_reactions(conn, comment_id, -1)
        await _unnotify(conn, "reaction_comment", user_id, int(row["post_id"]), comment_id)
    return _done(None, comments=[(comment_id, int(row["post_id"]))])


class EngagementOps:
    """The op handlers (actors/runtime/host.py derives the op table from their ``op`` types)."""

    def __init__(self, services: Services) -> None:
        self.services = services

    async def react_post(self, state: UserState, op: ReactToPost) -> Done[PostEngagement]:
        return await react_post(self.services.pool, self.services.settings, state.user_id, op.post_id, op.emoji)

    async def unreact_post(self, state: UserState, op: UnreactToPost) -> Done[Any]:
        return await unreact_post(self.services.pool, self.services.settings, state.user_id, op.post_id)

    async def set_repost(self, state: UserState, op: SetRepost) -> Done[Reposted]:
        return await mark(self.services.pool, self.services.settings, state.user_id, op.post_id, "repost", op.on)

    async def set_save(self, state: UserState, op: SetSave) -> Done[Saved]:
        return await mark(self.services.pool, self.services.settings, state.user_id, op.post_id, "save", op.on)

    async def add_comment(self, state: UserState, op: AddComment) -> Done[Comment]:
        return await comment(
            self.services.pool,
            self.services.settings,
            state.user_id,
            post_id=op.post_id,
            parent_id=op.parent_id,
            text=op.text,
            media_id=op.media_id,
            key=op.idempotency_key,
            digest=op.body_hash,
        )

    async def delete_comment(self, state: UserState, op: DeleteComment) -> Done[Any]:
        return await delete_comment(self.services.pool, self.services.settings, state.user_id, op.comment_id)

    async def react_comment(self, state: UserState, op: ReactToComment) -> Done[CommentEngagement]:
        settings = self.services.settings
        return await react_comment(self.services.pool, settings, state.user_id, op.comment_id, op.emoji)

    async def unreact_comment(self, state: UserState, op: UnreactToComment) -> Done[Any]:
        return await unreact_comment(self.services.pool, state.user_id, op.comment_id)
