"""The logical per-user actor: state and operations of one user, hosted in a UserShard.

Plain Python (no Ray import). Every operation is ``check_*`` then ``do_*`` and runs under the entity's lock.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from actors import rules
from actors.context import Services
from actors.errors import Conflict, NotFound, ValidationFailed
from storage import auth as auth_store
from storage import db
from storage import users as user_store
from storage.errors import RowNotFound, UniqueViolation


@dataclass
class UserState:
    user_id: int
    # Filled by the realtime core: where the user's sockets are, who watches their presence.
    connections: dict[str, set[str]] = field(default_factory=dict)

    def holds_anything(self) -> bool:
        return bool(self.connections)


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

    async def logout(self, state: UserState, session_id: int) -> bool:
        async with db.transaction(self.services.pool) as conn:
            changed = await auth_store.revoke_session(conn, session_id, "logout")
        await self.services.deny_sessions([session_id])
        return changed

    async def update_profile(self, state: UserState, raw: dict[str, Any]) -> dict[str, Any]:
        changes = check_profile_changes(raw)
        try:
            async with db.transaction(self.services.pool) as conn:
                row = await user_store.update_profile(conn, state.user_id, changes)
        except UniqueViolation as exc:
            raise Conflict("This username is taken.", code="username_taken") from exc
        except RowNotFound as exc:
            raise NotFound("No such user.") from exc
        return dict(row)

    async def touch(self, state: UserState) -> str:
        """Trivial op used by tests and health checks: proves the entity is reachable and serialized."""
        return dt.datetime.now(dt.UTC).isoformat()
