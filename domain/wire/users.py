"""People: UserSummary, Profile, Me and their pages."""

from __future__ import annotations

from domain.wire.base import Count, Cursor, Day, Id, Timestamp, Username, Wire


class UserSummary(Wire, frozen=True, kw_only=True, omit_defaults=True):
    """A user; `followed_by_me` and `follows_me` are present only when the reader is known (with a token)."""

    id: Id
    username: Username
    name: str
    avatar: str | None
    followed_by_me: bool | None = None
    follows_me: bool | None = None


class Profile(UserSummary, frozen=True, kw_only=True, omit_defaults=True):
    bio: str
    followers_count: Count
    following_count: Count
    posts_count: Count
    created_at: Timestamp


class Me(Profile, frozen=True, kw_only=True, omit_defaults=True):
    """The caller's own account (`followed_by_me` and `follows_me` are false)."""

    email: str
    birthday: Day


class UserPage(Wire, frozen=True, kw_only=True):
    """A page of users, newest first; `next_cursor` is null on the last page."""

    items: list[UserSummary]
    next_cursor: Cursor


class FollowState(Wire, frozen=True, kw_only=True):
    following: bool
