"""Profile edits, run in the user's logical actor: PATCH /me (name, bio, birthday, username) and the avatar.

Each is one transaction; after it, every api process drops its cached posts by this user (their author summary
changed) and cached responses that show people go stale (actors/after_commit.py ``summary_changed``).
"""

from __future__ import annotations

from typing import Any

from actors.after_commit import summary_changed
from actors.media import check_attachable
from actors.runtime.host import Done
from actors.runtime.services import Services
from actors.user import UserState
from domain.errors import Conflict, NotFound
from domain.ops import SetAvatar, UpdateProfile
from storage import db
from storage import users as user_store
from storage.errors import RowNotFound, UniqueViolation
from storage.media import store as media_store

AVATAR_PURPOSES = frozenset({"avatar"})
AVATAR_KINDS = frozenset({"image"})


class ProfileOps:
    def __init__(self, services: Services) -> None:
        self.services = services

    async def update_profile(self, state: UserState, op: UpdateProfile) -> Done[dict[str, Any]]:
        """The changes were checked at the edge (domain/rules.py ``check_profile_changes``)."""
        try:
            async with db.transaction(self.services.pool) as conn:
                row = await user_store.update_profile(conn, state.user_id, op.changes)
        except UniqueViolation as exc:
            raise Conflict("This username is taken.", code="username_taken") from exc
        except RowNotFound as exc:
            raise NotFound("No such user.") from exc
        state.username = row["username"]  # later presence events carry the new name
        return Done(dict(row), effects=summary_changed(self.services, state.user_id))

    async def set_avatar(self, state: UserState, op: SetAvatar) -> Done[dict[str, Any]]:
        """Make one of the user's own ready avatar images the avatar (it becomes public), or clear it (None)."""
        async with db.transaction(self.services.pool) as conn:
            if op.media_id is not None:
                await check_attachable(
                    conn, state.user_id, [op.media_id], purposes=AVATAR_PURPOSES, kinds=AVATAR_KINDS, field="media_id"
                )
                await media_store.make_public(conn, [op.media_id])
            try:
                row = await user_store.update_profile(conn, state.user_id, {"avatar_media_id": op.media_id})
            except RowNotFound as exc:
                raise NotFound("No such user.") from exc
        return Done(dict(row), effects=summary_changed(self.services, state.user_id))
