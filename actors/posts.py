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

from actors import feed, post_text
from actors.delivery import OutboxEvent
from actors.errors import Forbidden, NotFound, Unauthenticated, ValidationFailed
from actors.follows import NOTIFICATION_EVENT, summary
from actors.live_cache import LiveCache
from actors.media import check_attachable, media_view, url_signer
from actors.post_cache import PostCache
from actors.rules import RuleError, clean_text
from storage import db, ids
from storage import interests as interest_store
from storage import notifications as notification_store
from storage import outbox as outbox_store
from storage import posts as post_store
from storage.media import store as media_store

MAX_CAPTION = 2200
MAX_MEDIA = 10
POST_TYPES = ("photo", "video", "reel")
POST_PURPOSES = frozenset({"post"})
CREATE_ROUTE = "POST /posts"
NOBODY = {"reaction": None, "reposted": False, "saved": False}  # the `my` of an anonymous reader


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
        view = (await views(conn, settings, [post_id], None))[post_id]
        events = await _mention_notifications(conn, settings, author_id, post_id, mentioned, view)
        job = feed.job_event(post_id, post_id, author_id)  # the fan-out to followers' feeds (actors/feed.py)
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


# ------------------------------------------------------------ the Post object


def public_post(view: dict[str, Any]) -> dict[str, Any]:
    """The wire Post: the view without its private hydration keys."""
    return {k: v for k, v in view.items() if not k.startswith("_")}


_CACHE: PostCache | None = None  # set in api processes (api/app.py); shards hydrate in full
_LIVE: LiveCache | None = None  # the live parts in Redis (actors/live_cache.py), api processes too


def use_cache(cache: PostCache | None, live: LiveCache | None = None) -> None:
    global _CACHE, _LIVE
    _CACHE, _LIVE = cache, live


def forget_author(author_id: int) -> None:
    if _CACHE is not None:
        _CACHE.forget_author(author_id)


def clear_cache() -> None:
    if _CACHE is not None:
        _CACHE.clear()


FIXED_KEYS = ("id", "author", "type", "caption", "media", "mentions", "hashtags", "created_at", "_author")


async def views(
    conn: Any, settings: Any, post_ids: list[int], viewer_id: int | None, *, session_id: int | None = None
) -> dict[int, dict[str, Any]]:
    """Post objects (API.md 2) by id, for the viewer (``my`` flags; None: anonymous). Each carries a private
    ``_author`` (the author's row) for callers that need it; ``public_post`` drops it. With ``session_id`` the
    viewer's session is checked (401 ``session_revoked`` when it has ended): in the same query as the read, or,
    when everything comes from the caches, by the session's deny mark in Redis.

    With the process's PostCache (actors/post_cache.py), posts whose fixed parts are held need only their live
    parts: from the LiveCache (actors/live_cache.py) when its entry is current, else one light query (whose
    answers are cached). The others are hydrated in full (one query) and their fixed parts kept."""
    if not post_ids:
        return {}
    cache = _CACHE
    if cache is None:
        return await _hydrated(conn, settings, post_ids, viewer_id, session_id)
    fixed = {pid: f for pid in post_ids if (f := cache.get(pid)) is not None}
    out: dict[int, dict[str, Any]] = {}
    versions: dict[int, bytes] = {}
    current: set[int] = set()
    if _LIVE is not None:
        found = await _LIVE.read(post_ids, viewer_id, session_id)
        if found.denied:
            raise Unauthenticated("This session has ended; log in again.", reason="session_revoked")
        versions, current = found.versions, found.current
        out = {pid: {**fixed[pid], **live} for pid, live in found.live.items() if pid in fixed}
    missing = [pid for pid in post_ids if pid not in fixed]
    read: dict[int, dict[str, Any]] = {}
    if missing:
        hydrated = await _hydrated(conn, settings, missing, viewer_id, session_id)
        for pid, view in hydrated.items():
            cache.put(pid, int(view["_author"]["author_id"]), {k: view[k] for k in FIXED_KEYS})
            read[pid] = view
        out.update(hydrated)
        session_id = None  # checked by that query
    stale = [pid for pid in fixed if pid not in out]
    if stale:
        for row in await post_store.live_parts(conn, stale, viewer_id, session_id):
            if not row["session_live"]:
                raise Unauthenticated("This session has ended; log in again.", reason="session_revoked")
            pid = int(row["id"])
            out[pid] = read[pid] = {**fixed[pid], **_live(row, viewer_id)}
    if _LIVE is not None and read:
        await _LIVE.write(read, versions, viewer_id, current)
    return out


def _live(row: Any, viewer_id: int | None) -> dict[str, Any]:
    counters = row["counters"]
    counters = {} if counters is None else orjson.loads(counters) if isinstance(counters, str) else counters
    return {
        "counts": {name: int(counters.get(name, 0)) for name in ("reactions", "comments", "reposts", "saves")},
        "reactions_summary": {k[6:]: int(n) for k, n in counters.items() if k.startswith("emoji:") and int(n) > 0},
        "my": (
            {"reaction": row["my_reaction"], "reposted": row["my_reposted"], "saved": row["my_saved"]}
            if viewer_id is not None
            else dict(NOBODY)
        ),
    }


async def _hydrated(
    conn: Any, settings: Any, post_ids: list[int], viewer_id: int | None, session_id: int | None
) -> dict[int, dict[str, Any]]:
    signer = url_signer(settings)
    base = settings.public_base_url
    out: dict[int, dict[str, Any]] = {}
    for row in await post_store.hydrate(conn, post_ids, viewer_id, session_id):
        if not row["session_live"]:
            raise Unauthenticated("This session has ended; log in again.", reason="session_revoked")
        pid = int(row["id"])
        author = {k: row[k] for k in row.keys() if k.startswith("author_")}  # noqa: SIM118 (a Record)
        media = orjson.loads(row["media"]) if isinstance(row["media"], str) else row["media"]
        out[pid] = {
            "id": str(pid),
            "author": summary(
                {
                    "id": row["author_id"],
                    "username": row["author_username"],
                    "name": row["author_name"],
                    "avatar_media_id": row["author_avatar_media_id"],
                },
                base,
            ),
            "type": row["type"],
            "caption": row["caption"],
            "media": [media_view(base, signer, m) for m in media],
            "mentions": list(row["mentions"]),
            "hashtags": list(row["tags"]),
            **_live(row, viewer_id),
            "created_at": _rfc3339(row["created_at"]),
            "_author": author,
        }
    return out
