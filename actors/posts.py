"""Posts: create and delete, run in the author's logical actor (actors/user.py routes the ops here), and the
Post wire object for any reader.

Creating is one transaction: the post, its media in order (the author's own completed uploads for ``post``,
made public), mentions of existing users with a ``mention_post`` notification each (never for yourself), the
hashtags with their counts, the author's ``posts_count``, the outbox rows of the realtime events (and of the
feed fan-out job), and the
Idempotency-Key record when the request had one (a retry with the same key and body returns the stored answer
from inside the author's entity, so concurrent retries cannot both create). The caller publishes after commit.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from dataclasses import dataclass
from typing import Any

import asyncpg
import orjson

from actors import fanout
from actors.media import check_attachable
from actors.runtime.delivery import OutboxEvent
from domain import post_text
from domain.errors import Forbidden, NotFound, ValidationFailed
from domain.events import NOTIFICATION_EVENT
from domain.present import summary
from domain.rules import RuleError, clean_text
from storage import db, ids
from storage import interests as interest_store
from storage import notifications as notification_store
from storage import outbox as outbox_store
from storage import posts as post_store
from storage.media import store as media_store
from storage.views import post_views, public_post

MAX_CAPTION = 2200
MAX_MEDIA = 10
POST_TYPES = ("photo", "video", "reel")
POST_PURPOSES = frozenset({"post"})
CREATE_ROUTE = "POST /posts"


@dataclass(frozen=True)
class Created:
    status: int
    body: dict[str, Any]
    events: list[OutboxEvent]


def _rfc3339(value: dt.datetime) -> str:
    return value.astimezone(dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def body_hash(body: dict[str, Any]) -> bytes:
    return hashlib.sha256(orjson.dumps(body, option=orjson.OPT_SORT_KEYS)).digest()


def check_post(body: dict[str, Any]) -> tuple[str, str, list[int]]:
    type_ = body.get("type")
    if type_ not in POST_TYPES:
        raise ValidationFailed({"type": "one of photo, video, reel"})
    caption = body.get("caption") or ""
    if not isinstance(caption, str):
        raise ValidationFailed({"caption": "must be a string"})
    try:
        caption = clean_text(caption, field_max=MAX_CAPTION, allow_empty=True)
    except RuleError as exc:
        raise ValidationFailed({"caption": str(exc)}) from exc
    raw = body.get("media_ids")
    if not isinstance(raw, list) or not 1 <= len(raw) <= MAX_MEDIA:
        raise ValidationFailed({"media_ids": f"1-{MAX_MEDIA} media ids"})
    media_ids = []
    for value in raw:
        if not isinstance(value, str) or not value.isdigit() or len(value) > 19:
            raise ValidationFailed({"media_ids": "must be media ids"})
        media_ids.append(int(value))
    if len(set(media_ids)) != len(media_ids):
        raise ValidationFailed({"media_ids": "each media at most once"})
    if type_ in ("video", "reel") and len(media_ids) != 1:
        raise ValidationFailed({"media_ids": f"a {type_} has exactly one video"})
    return type_, caption, media_ids


async def create(pool: asyncpg.Pool, settings: Any, author_id: int, body: dict[str, Any], key: str | None) -> Created:
    digest = body_hash(body)
    if key is not None:
        kept = await post_store.find_idempotent(pool, author_id, CREATE_ROUTE, key)
        if kept is not None:
            if bytes(kept["body_hash"]) != digest:
                raise ValidationFailed(
                    {"Idempotency-Key": "already used for another request"},
                    "This Idempotency-Key was used for a different post.",
                    code="idempotency_key_reused",
                )
            return Created(int(kept["status"]), orjson.loads(kept["response"]), [])
    type_, caption, media_ids = check_post(body)
    now = dt.datetime.now(dt.UTC)
    post_id = ids.new_id()
    async with db.transaction(pool) as conn:
        kinds = frozenset({"image"}) if type_ == "photo" else frozenset({"video"})
        await check_attachable(conn, author_id, media_ids, purposes=POST_PURPOSES, kinds=kinds)
        await post_store.insert_post(conn, post_id, author_id, type_, caption, now)
        try:
            await post_store.attach_media(conn, post_id, media_ids)
        except asyncpg.UniqueViolationError as exc:
            raise ValidationFailed({"media_ids": "a media is already in another post"}, code="invalid_media") from exc
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
            await post_store.save_idempotent(conn, author_id, CREATE_ROUTE, key, digest, 201, orjson.dumps(view))
    return Created(201, view, events)


async def _mention_notifications(
    conn: asyncpg.Connection, settings: Any, author_id: int, post_id: int, mentioned: list[int], post: dict[str, Any]
) -> list[OutboxEvent]:
    events = []
    actor = summary(
        {"id": author_id, **{k.removeprefix("author_"): v for k, v in post["_author"].items()}},
        settings.public_base_url,
    )
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
        data = {
            "id": str(note["id"]),
            "type": "mention_post",
            "actor": actor,
            "post": public_post(post),
            "created_at": _rfc3339(note["created_at"]),
            "read": False,
        }
        event = OutboxEvent.make([user_id], NOTIFICATION_EVENT, data)
        await outbox_store.insert_events(conn, [(event.id, event.recipients, event.type, event.data)])
        events.append(event)
    return events


async def delete(pool: asyncpg.Pool, user_id: int, post_id: int) -> None:
    async with db.transaction(pool) as conn:
        author = await post_store.get_author(conn, post_id)
        if author is None:
            raise NotFound("No such post.")
        if author != user_id:
            raise Forbidden("Only the author may delete a post.")
        await post_store.delete_post(conn, post_id)
