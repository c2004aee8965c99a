"""Interests, explore, feedback, recommendation knobs and who-to-follow (issue 14).

Every recommended item carries ``reasons``: machine-readable whys, one object per reason, tagged by its ``type``
(the discriminator), with the part of the item's ``score`` it contributed (``score``). A post's reasons
(``PostReason``: explore, and the recommended items of the home feed) and a suggested person's (``UserReason``)
are the structs below.
"""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec

from domain.wire.base import Count, Cursor, Id, Inbound, Score, Wire
from domain.wire.posts import Post
from domain.wire.users import UserSummary


class Interest(Wire, frozen=True, kw_only=True):
    slug: Annotated[
        str, msgspec.Meta(description="Lower-case letters, digits and `_`; the slug as a hashtag marks a post with it")
    ]
    name: str
    followers_count: Count
    followed_by_me: Annotated[bool, msgspec.Meta(description="False without a token")]


class InterestPage(Wire, frozen=True, kw_only=True):
    items: list[Interest]
    next_cursor: Cursor


# ------------------------------------------------------------ reasons of a recommended post


class _Reason(Wire, frozen=True, kw_only=True, tag_field="type"):
    """A reason: its ``type`` is the tag (each subclass names its own)."""

    score: Score


class InterestReason(_Reason, frozen=True, kw_only=True, tag="interest"):
    interest: Annotated[str, msgspec.Meta(description="The slug of an interest you follow that the post belongs to")]


class EngagedByFollowingReason(_Reason, frozen=True, kw_only=True, tag="engaged_by_following"):
    users: Annotated[list[UserSummary], msgspec.Meta(description="Up to 3 people you follow who reacted or commented")]
    count: Annotated[int, msgspec.Meta(ge=0, description="How many people you follow reacted or commented")]


class SimilarUsersReason(_Reason, frozen=True, kw_only=True, tag="similar_users"):
    count: Annotated[
        int, msgspec.Meta(ge=0, description="How many people who react to what you react to reacted to it")
    ]


class TrendingReason(_Reason, frozen=True, kw_only=True, tag="trending"):
    pass


class RecentReason(_Reason, frozen=True, kw_only=True, tag="recent"):
    pass


class FollowingReason(_Reason, frozen=True, kw_only=True, tag="following"):
    """By someone you follow (explore only; the feed has their posts already): doubles the other reasons' parts."""


PostReason = (
    InterestReason | EngagedByFollowingReason | SimilarUsersReason | TrendingReason | RecentReason | FollowingReason
)


class ExploreItem(Wire, frozen=True, kw_only=True):
    post: Post
    reasons: list[PostReason]
    score: float


class ExplorePage(Wire, frozen=True, kw_only=True):
    items: list[ExploreItem]
    next_cursor: Cursor


class ExploreFeedback(Inbound, frozen=True, kw_only=True):
    post_id: Annotated[Id, msgspec.Meta(description="A post you were shown")]
    signal: Annotated[Literal["less", "more"], msgspec.Meta(description="Fewer (less) or more (more) posts like it")]


# ------------------------------------------------------------ the knobs


class Knobs(Wire, frozen=True, kw_only=True):
    recency_weight: Annotated[
        float, msgspec.Meta(ge=0, le=1, description="0: engagement only, 1: freshness only (default 0.3)")
    ]
    hide_reposts: Annotated[bool, msgspec.Meta(description="Leave reposts out of your home feed (default false)")]
    per_author_cap: Annotated[
        int, msgspec.Meta(ge=1, le=10, description="At most this many posts of one author per ranking (2)")
    ]


class KnobsUpdate(Inbound, frozen=True, kw_only=True):
    """Any of the knobs; those left out (or null) keep their values. Types are strict ("yes" is no boolean)."""

    recency_weight: Annotated[float, msgspec.Meta(ge=0, le=1)] | None = None
    hide_reposts: bool | None = None
    per_author_cap: Annotated[int, msgspec.Meta(ge=1, le=10)] | None = None


# ------------------------------------------------------------ reasons of a suggested user


class FollowedByFollowingReason(_Reason, frozen=True, kw_only=True, tag="followed_by_following"):
    users: Annotated[list[UserSummary], msgspec.Meta(description="Up to 3 people you follow who follow them")]
    count: Annotated[
        int,
        msgspec.Meta(ge=0, description="How many people you follow follow them (counted over a bounded sample)"),
    ]


class FollowsYouReason(_Reason, frozen=True, kw_only=True, tag="follows_you"):
    pass


class EngagedWithReason(_Reason, frozen=True, kw_only=True, tag="engaged_with"):
    count: Annotated[int, msgspec.Meta(ge=0, description="How often you reacted to or commented on their posts lately")]


class SimilarFollowsReason(_Reason, frozen=True, kw_only=True, tag="similar_follows"):
    users: Annotated[list[UserSummary], msgspec.Meta(description="Up to 3 people you both follow")]
    count: Count


class SharedInterestsReason(_Reason, frozen=True, kw_only=True, tag="shared_interests"):
    interests: Annotated[list[str], msgspec.Meta(description="Slugs of interests you both follow (up to 5)")]
    count: Count


class PopularInInterestReason(_Reason, frozen=True, kw_only=True, tag="popular_in_interest"):
    interest: str


class PopularReason(_Reason, frozen=True, kw_only=True, tag="popular"):
    followers_count: Count


UserReason = (
    FollowedByFollowingReason
    | FollowsYouReason
    | EngagedWithReason
    | SimilarFollowsReason
    | SharedInterestsReason
    | PopularInInterestReason
    | PopularReason
)


class Suggestion(Wire, frozen=True, kw_only=True):
    user: UserSummary
    reasons: list[UserReason]
    score: float


class SuggestionList(Wire, frozen=True, kw_only=True):
    items: list[Suggestion]
