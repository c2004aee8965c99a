"""Rows to wire objects (API.md section 2). Ids become strings, times RFC 3339 UTC."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any

from domain.present import public_media_url


def rfc3339(value: dt.datetime | None) -> str | None:
    if value is None:
        return None
    return value.astimezone(dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


_base = {"url": ""}


def configure(public_base_url: str) -> None:
    """Where this api is reached from outside (PUBLIC_BASE_URL): media URLs are absolute."""
    _base["url"] = public_base_url.rstrip("/")


def avatar_url(row: Mapping[str, Any]) -> str | None:
    """An avatar's stable URL (avatars are public media: the same URL for every reader, no signing per read)."""
    media_id = row.get("avatar_media_id")
    return None if media_id is None else public_media_url(_base["url"], int(media_id))


def user_summary(
    row: Mapping[str, Any], *, followed_by_me: bool | None = None, follows_me: bool | None = None
) -> dict[str, Any]:
    out: dict[str, Any] = {
        "id": str(row["id"]),
        "username": row["username"],
        "name": row["name"],
        "avatar": avatar_url(row),
    }
    if followed_by_me is not None:
        out["followed_by_me"] = followed_by_me
        out["follows_me"] = bool(follows_me)
    return out


def profile(row: Mapping[str, Any], **flags: bool | None) -> dict[str, Any]:
    out = user_summary(row, **flags)
    out.update(
        bio=row["bio"],
        followers_count=row["followers_count"],
        following_count=row["following_count"],
        posts_count=row["posts_count"],
        created_at=rfc3339(row["created_at"]),
    )
    return out


def me(row: Mapping[str, Any]) -> dict[str, Any]:
    out = profile(row, followed_by_me=False, follows_me=False)
    out["email"] = row["email"]
    out["birthday"] = row["birthday"].isoformat()
    return out
