"""Media attached by other entities (posts, comments, chat messages, avatars): ``check_attachable`` runs inside
the attaching op's own transaction: the media must exist, be the caller's, be ready, be meant for that purpose and
be of an allowed kind; anything else is the same 422 for every case that would otherwise reveal someone else's
upload. Uploads themselves are api/uploads.py.
"""

from __future__ import annotations

from collections.abc import Iterable

import asyncpg

from domain.errors import ValidationFailed
from storage.media import store as media_store


async def check_attachable(
    conn: asyncpg.Connection,
    owner_id: int,
    media_ids: Iterable[int],
    *,
    purposes: frozenset[str],
    kinds: frozenset[str],
    field: str = "media_ids",
) -> list[asyncpg.Record]:
    """Lock and return these media rows (in the order given) if the caller may attach every one of them here.

    Someone else's media id and a missing one give the same answer, so nobody learns what others uploaded.
    """
    wanted = list(media_ids)
    rows = {int(r["id"]): r for r in await media_store.lock_media(conn, wanted)}
    out = []
    for media_id in wanted:
        row = rows.get(media_id)
        if row is None or row["owner_id"] != owner_id:
            raise ValidationFailed(fields={field: f"media {media_id} is not one of your uploads"}, code="invalid_media")
        if row["state"] != "ready":
            raise ValidationFailed(fields={field: f"media {media_id} is not complete"}, code="media_not_ready")
        if row["purpose"] not in purposes or row["kind"] not in kinds:
            raise ValidationFailed(
                fields={field: f"media {media_id} is a {row['kind']} uploaded for {row['purpose']}"},
                code="invalid_media",
            )
        out.append(row)
    return out
