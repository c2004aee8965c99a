"""Follow and unfollow: ops of the follower's logical actor.

Each op is one PostgreSQL transaction: the follows row, both users' counters (storage/graph.py) and, for a new
follow, the ``follow`` notification row and the outbox row of its realtime ``notification`` event. A repeated
follow or unfollow changes nothing and notifies nobody. After commit (actors/after_commit.py): the follower's
cached feed pages go stale, their timeline takes in or lets go of the followee, and the gateways holding the
follower's sockets start or stop forwarding a big account's live posts.
"""

from __future__ import annotations

import asyncpg

from actors.after_commit import Effect, FeedFollow, follows_changed
from actors.runtime.delivery import OutboxEvent
from actors.runtime.host import Done
from actors.runtime.services import Services
from actors.user import UserState
from domain.errors import NotFound, ValidationFailed
from domain.events import NOTIFICATION_EVENT
from domain.ops import Follow, Unfollow
from domain.present import rfc3339, user_summary
from domain.wire.notifications import Notification
from storage import db, ids
from storage import graph as graph_store
from storage import notifications as notification_store
from storage import outbox as outbox_store
from storage import users as user_store


async def check_followee(conn: asyncpg.Connection, follower_id: int, username: str) -> int:
    """The followee's id (``username`` normalized at the edge): 404 when unknown, 422 when it is the follower."""
    row = await user_store.find_user_by_username(conn, username)
    if row is None:
        raise NotFound("No such user.")
    if int(row["id"]) == follower_id:
        raise ValidationFailed({"username": "you cannot follow yourself"}, "You cannot follow yourself.")
    return int(row["id"])


class FollowOps:
    def __init__(self, services: Services) -> None:
        self.services = services

    def _after(self, state: UserState, followee_id: int, on: bool) -> list[Effect]:
        gateways = tuple(state.presence.gateways())
        return [follows_changed(self.services, state.user_id), FeedFollow(state.user_id, followee_id, on, gateways)]

    async def follow(self, state: UserState, op: Follow) -> Done[bool]:
        """Follow (idempotent); a new follow notifies the followee."""
        follower_id = state.user_id
        async with db.transaction(self.services.pool) as conn:
            followee_id = await check_followee(conn, follower_id, op.username)
            if await graph_store.add_follow(conn, follower_id, followee_id) is None:
                return Done(True)
            actor = await user_store.get_user(conn, follower_id)
            note = await notification_store.insert_notification(
                conn, notification_id=ids.new_id(), owner_id=followee_id, type_="follow", actor_id=follower_id
            )
            data = Notification(
                id=str(note["id"]),
                type="follow",
                actor=user_summary(actor, self.services.settings.public_base_url),
                created_at=rfc3339(note["created_at"]),
                read=False,
            )
            event = OutboxEvent.make([followee_id], NOTIFICATION_EVENT, data)
            await outbox_store.insert_events(conn, [(event.id, event.recipients, event.type, event.data)])
        return Done(True, events=[event], effects=self._after(state, followee_id, True))

    async def unfollow(self, state: UserState, op: Unfollow) -> Done[bool]:
        async with db.transaction(self.services.pool) as conn:
            followee_id = await check_followee(conn, state.user_id, op.username)
            removed = await graph_store.remove_follow(conn, state.user_id, followee_id)
        return Done(False, effects=self._after(state, followee_id, False) if removed else [])
