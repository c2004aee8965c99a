"""Follow and unfollow, run in the follower's logical actor (actors/user.py routes the ops here).

Each op is one PostgreSQL transaction: the follows row, both users' counters (storage/graph.py) and, for a new
follow, the ``follow`` notification row and the outbox row of its realtime ``notification`` event. A repeated
follow or unfollow changes nothing and notifies nobody. The op returns the staged event; the caller publishes
it after commit (actors/runtime/delivery.py), and the outbox relay re-delivers it if that never happens.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import asyncpg

from actors.runtime.delivery import OutboxEvent
from domain.errors import NotFound, ValidationFailed
from domain.events import NOTIFICATION_EVENT
from domain.present import summary
from domain.rules import RuleError, normalize_username
from storage import db, ids
from storage import graph as graph_store
from storage import notifications as notification_store
from storage import outbox as outbox_store
from storage import users as user_store


@dataclass(frozen=True)
class FollowResult:
    following: bool
    event: OutboxEvent | None  # staged and committed; to publish after commit
    followee_id: int = 0
    changed: bool = False  # the follow was made or removed now (not a repeat)


def _rfc3339(value: dt.datetime) -> str:
    return value.astimezone(dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


async def _target(conn: asyncpg.Connection, follower_id: int, username: str) -> int:
    """The followee's id: 404 when unknown, 422 when it is the follower."""
    try:
        name = normalize_username(username)
    except RuleError as exc:
        raise NotFound("No such user.") from exc
    row = await user_store.find_user_by_username(conn, name)
    if row is None:
        raise NotFound("No such user.")
    if int(row["id"]) == follower_id:
        raise ValidationFailed({"username": "you cannot follow yourself"}, "You cannot follow yourself.")
    return int(row["id"])


async def follow(pool: asyncpg.Pool, follower_id: int, username: str, base_url: str) -> FollowResult:
    async with db.transaction(pool) as conn:
        followee_id = await _target(conn, follower_id, username)
        if await graph_store.add_follow(conn, follower_id, followee_id) is None:
            return FollowResult(True, None, followee_id)
        actor = await user_store.get_user(conn, follower_id)
        note = await notification_store.insert_notification(
            conn, notification_id=ids.new_id(), owner_id=followee_id, type_="follow", actor_id=follower_id
        )
        data = {
            "id": str(note["id"]),
            "type": "follow",
            "actor": summary(actor, base_url),
            "created_at": _rfc3339(note["created_at"]),
            "read": False,
        }
        event = OutboxEvent.make([followee_id], NOTIFICATION_EVENT, data)
        await outbox_store.insert_events(conn, [(event.id, event.recipients, event.type, event.data)])
    return FollowResult(True, event, followee_id, changed=True)


async def unfollow(pool: asyncpg.Pool, follower_id: int, username: str) -> FollowResult:
    async with db.transaction(pool) as conn:
        followee_id = await _target(conn, follower_id, username)
        removed = await graph_store.remove_follow(conn, follower_id, followee_id)
    return FollowResult(False, None, followee_id, changed=removed)
