"""Posts: create and delete, ops of the author's logical actor.

Creating is one transaction: the post, its media in order (the author's own completed uploads for ``post``,
made public), mentions of existing users with a ``mention_post`` notification each (never for yourself), the
hashtags with their counts, the author's ``posts_count``, the outbox rows of the realtime events (and of the
feed fan-out job), and the Idempotency-Key record when the request had one (a retry with the same key and body
returns the stored answer from inside the author's entity, so concurrent retries cannot both create). The post
goes into the author's own timeline after commit (actors/after_commit.py).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import asyncpg
import msgspec

from actors import fanout
from actors.after_commit import MergedPost, OwnTimeline, post_gone
from actors.media import check_attachable
from actors.runtime.delivery import OutboxEvent
from actors.runtime.host import Done
from actors.runtime.services import Services
from actors.user import UserState
from domain import post_text
from domain.errors import Forbidden, NotFound, ValidationFailed
from domain.events import NOTIFICATION_EVENT
from domain.ops import CreatePost, DeletePost
from domain.present import rfc3339
from domain.wire.notifications import Notification
from domain.wire.posts import Post
from storage import db, ids
from storage import interests as interest_store
from storage import notifications as notification_store
from storage import outbox as outbox_store
from storage import posts as post_store
from storage.media import store as media_store
from storage.views import post_views

POST_PURPOSES = frozenset({"post"})
CREATE_ROUTE = "POST /posts"

_POST = msgspec.json.Decoder(Post)


class PostOps:
    def __init__(self, services: Services) -> None:
        self.services = services

    async def create_post(self, state: UserState, op: CreatePost) -> Done[Post]:
        """A new post by this user (checked at the edge: domain/posts.py), or, for a repeated Idempotency-Key,
        the stored answer (always a 201's)."""
        pool, settings, author_id, key = self.services.pool, self.services.settings, state.user_id, op.idempotency_key
        if key is not None:
            kept = await post_store.find_idempotent(pool, author_id, CREATE_ROUTE, key)
            if kept is not None:
                if bytes(kept["body_hash"]) != op.body_hash:
                    raise ValidationFailed(
                        {"Idempotency-Key": "already used for another request"},
                        "This Idempotency-Key was used for a different post.",
                        code="idempotency_key_reused",
                    )
                return Done(_POST.decode(kept["response"]))
        now = dt.datetime.now(dt.UTC)
        post_id = ids.new_id()
        media_ids, caption = op.media_ids, op.caption
        async with db.transaction(pool) as conn:
            kinds = frozenset({"image"}) if op.type == "photo" else frozenset({"video"})
            await check_attachable(conn, author_id, media_ids, purposes=POST_PURPOSES, kinds=kinds)
            await post_store.insert_post(conn, post_id, author_id, op.type, caption, now)
            try:
                await post_store.attach_media(conn, post_id, media_ids)
            except asyncpg.UniqueViolationError as exc:
                raise ValidationFailed(
                    {"media_ids": "a media is already in another post"}, code="invalid_media"
                ) from exc
            await media_store.make_public(conn, media_ids)
            named = post_text.mentions(caption)
            found = await post_store.find_user_ids(conn, named) if named else {}
            mentioned = [found[n] for n in named if n in found]
            await post_store.insert_mentions(conn, post_id, mentioned, now)
            tags = post_text.hashtags(caption)
            await post_store.insert_hashtags(conn, post_id, tags, now)
            await interest_store.tag_post(conn, post_id, author_id, tags, post_text.words(caption))
            view = (await post_views(conn, settings, [post_id], None))[post_id]
            events = await _mention_notifications(conn, settings, author_id, post_id, mentioned, view)
            job = fanout.job_event(post_id, post_id, author_id)  # the fan-out to followers' feeds (actors/fanout.py)
            await outbox_store.insert_events(conn, [(job.id, job.recipients, job.type, job.data)])
            events.append(job)
            if key is not None:
                await post_store.save_idempotent(
                    conn, author_id, CREATE_ROUTE, key, op.body_hash, 201, msgspec.json.encode(view)
                )
        effects = [OwnTimeline(author_id, post_id), MergedPost(author_id)]
        return Done(view, events=events, effects=effects)

    async def delete_post(self, state: UserState, op: DeletePost) -> Done[None]:
        """Only the author deletes a post (403 for others); it leaves cached reads at once."""
        async with db.transaction(self.services.pool) as conn:
            author = await post_store.get_author(conn, op.post_id)
            if author is None:
                raise NotFound("No such post.")
            if author != state.user_id:
                raise Forbidden("Only the author may delete a post.")
            await post_store.delete_post(conn, op.post_id)
        return Done(None, effects=[post_gone(self.services, op.post_id)])


async def _mention_notifications(
    conn: asyncpg.Connection, settings: Any, author_id: int, post_id: int, mentioned: list[int], post: Post
) -> list[OutboxEvent]:
    events = []
    for user_id in mentioned:
        if user_id == author_id:
            continue  # nobody is notified of their own actions
        note = await notification_store.insert_notification(
            conn,
            notification_id=ids.new_id(),
            owner_id=user_id,
            type_="mention_post",
            actor_id=author_id,
            post_id=post_id,
        )
        data = Notification(
            id=str(note["id"]),
            type="mention_post",
            actor=post.author,
            post=post,
            created_at=rfc3339(note["created_at"]),
            read=False,
        )
        event = OutboxEvent.make([user_id], NOTIFICATION_EVENT, data)
        await outbox_store.insert_events(conn, [(event.id, event.recipients, event.type, event.data)])
        events.append(event)
    return events
