"""Rows to wire objects (API.md section 2): ids become strings, times RFC 3339 UTC, media get their URLs."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any

from domain.signing import UrlSigner
from domain.wire.media import Media
from domain.wire.users import Me, Profile, UserSummary

Fields = dict[str, Any]
PRIVATE_URL_TTL_S = 24 * 3600  # a signed download URL of not-yet-public media works for a day


def rfc3339(value: dt.datetime) -> str:
    """An aware datetime as RFC 3339 UTC with milliseconds and ``Z``."""
    return value.astimezone(dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def rfc3339_or_none(value: dt.datetime | None) -> str | None:
    return None if value is None else rfc3339(value)


def public_media_url(base_url: str, media_id: int) -> str:
    """The stable URL of public media (an avatar): the same for every reader, never re-signed."""
    return f"{base_url.rstrip('/')}/api/v1/media/{media_id}"


def media_url(base_url: str, signer: UrlSigner, row: Any, variant: str = "original") -> str:
    """The URL a client GETs: stable once the media is public; signed and expiring (a day) before that, and
    always for chat media (issued to the chat's members only)."""
    path = public_media_url(base_url, int(row["id"])) + ("/thumbnail" if variant == "thumb" else "")
    if row["public"]:
        return path
    expires = int(dt.datetime.now(dt.UTC).timestamp()) + PRIVATE_URL_TTL_S
    expires += 3600 - expires % 3600  # the same URL for an hour: clients and caches can reuse it
    return f"{path}?expires={expires}&signature={signer.sign('GET', int(row['id']), variant, expires)}"


# ------------------------------------------------------------ the wire structs of shared objects (domain/wire)


def _person(row: Mapping[str, Any], base_url: str, followed_by_me: bool | None, follows_me: bool | None) -> Fields:
    """The UserSummary fields of a row with ``id, username, name, avatar_media_id`` (the flags only when the reader
    is known: then both are set)."""
    media_id = row["avatar_media_id"]
    return {
        "id": str(row["id"]),
        "username": row["username"],
        "name": row["name"],
        "avatar": None if media_id is None else public_media_url(base_url, int(media_id)),
        "followed_by_me": followed_by_me,
        "follows_me": None if followed_by_me is None else bool(follows_me),
    }


def _account(row: Mapping[str, Any]) -> Fields:
    """What a Profile adds to a UserSummary (a users row: storage/users.py columns)."""
    return {
        "bio": row["bio"],
        "followers_count": row["followers_count"],
        "following_count": row["following_count"],
        "posts_count": row["posts_count"],
        "created_at": rfc3339(row["created_at"]),
    }


def user_summary(
    row: Mapping[str, Any], base_url: str, *, followed_by_me: bool | None = None, follows_me: bool | None = None
) -> UserSummary:
    return UserSummary(**_person(row, base_url, followed_by_me, follows_me))


def profile(
    row: Mapping[str, Any], base_url: str, *, followed_by_me: bool | None = None, follows_me: bool | None = None
) -> Profile:
    return Profile(**_person(row, base_url, followed_by_me, follows_me), **_account(row))


def me(row: Mapping[str, Any], base_url: str) -> Me:
    """The caller's own account (a users row with ``email`` and ``birthday``)."""
    return Me(
        **_person(row, base_url, False, False),
        **_account(row),
        email=row["email"],
        birthday=row["birthday"].isoformat(),
    )


def media(base_url: str, signer: UrlSigner, row: Any) -> Media:
    """The Media of a media row (storage/media/store.py columns)."""
    return Media(
        id=str(row["id"]),
        kind=row["kind"],
        content_type=row["content_type"],
        size=row["size"] if row["size"] is not None else row["declared_size"],
        url=media_url(base_url, signer, row),
        state=row["state"],
        width=row["width"],
        height=row["height"],
        duration_ms=row["duration_ms"],
        blurhash=row["blurhash"],
        name=row["name"],
        thumbnail_url=None if row["thumb_key"] is None else media_url(base_url, signer, row, "thumb"),
    )
