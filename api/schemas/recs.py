"""Shapes of interests, explore, feedback, recommendation knobs and who-to-follow (issue 14).

Every recommended item carries ``reasons``: machine-readable whys, one object per reason with a ``type`` and the
part of the item's ``score`` it contributed (``score``). The reason types are the models below.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, Field, StrictBool, StrictFloat, StrictInt

from api.schemas.common import Strict
from api.schemas.posts import Post
from api.schemas.users import UserSummary

Part = Annotated[float, Field(description="This reason's part of the item's score")]


class Interest(BaseModel):
    slug: str = Field(description="Lower-case letters, digits and `_`; the slug as a hashtag marks a post with it")
    name: str
    followers_count: int
    followed_by_me: bool = Field(description="False without a token")


class InterestPage(BaseModel):
    items: list[Interest]
    next_cursor: str | None


# ------------------------------------------------------------ reasons of a recommended post


class InterestReason(BaseModel):
    type: Literal["interest"]
    interest: str = Field(description="The slug of an interest you follow that the post belongs to")
    score: Part


class EngagedByFollowingReason(BaseModel):
    type: Literal["engaged_by_following"]
    users: list[UserSummary] = Field(description="Up to 3 people you follow who reacted or commented")
    count: int = Field(description="How many people you follow reacted or commented")
    score: Part


class SimilarUsersReason(BaseModel):
    type: Literal["similar_users"]
    count: int = Field(description="How many people who react to what you react to reacted to it")
    score: Part


class TrendingReason(BaseModel):
    type: Literal["trending"]
    score: Part


class RecentReason(BaseModel):
    type: Literal["recent"]
    score: Part


class FollowingReason(BaseModel):
    """By someone you follow (explore only; the feed has their posts already): doubles the other reasons' parts."""

    type: Literal["following"]
    score: Part


PostReason = Annotated[
    InterestReason | EngagedByFollowingReason | SimilarUsersReason | TrendingReason | RecentReason | FollowingReason,
    Field(discriminator="type"),
]


class ExploreItem(BaseModel):
    post: Post
    reasons: list[PostReason]
    score: float


class ExplorePage(BaseModel):
    items: list[ExploreItem]
    next_cursor: str | None


class Feedback(Strict):
    post_id: str = Field(pattern=r"^[0-9]{1,19}$", description="A post you were shown")
    signal: Literal["less", "more"] = Field(description="Fewer (less) or more (more) posts like it")


class Knobs(BaseModel):
    recency_weight: float = Field(ge=0, le=1, description="0: engagement only, 1: freshness only (default 0.3)")
    hide_reposts: bool = Field(description="Leave reposts out of your home feed (default false)")
    per_author_cap: int = Field(ge=1, le=10, description="At most this many posts of one author per ranking (2)")


class KnobsUpdate(Strict):
    """Any of the knobs; those left out keep their values. Types are strict ("yes" is no boolean)."""

    recency_weight: StrictFloat | None = Field(default=None, ge=0, le=1)
    hide_reposts: StrictBool | None = None
    per_author_cap: StrictInt | None = Field(default=None, ge=1, le=10)


# ------------------------------------------------------------ reasons of a suggested user


class FollowedByFollowingReason(BaseModel):
    type: Literal["followed_by_following"]
    users: list[UserSummary] = Field(description="Up to 3 people you follow who follow them")
    count: int = Field(description="How many people you follow follow them (counted over a bounded sample)")
    score: Part


class FollowsYouReason(BaseModel):
    type: Literal["follows_you"]
    score: Part


class EngagedWithReason(BaseModel):
    type: Literal["engaged_with"]
    count: int = Field(description="How often you reacted to or commented on their posts lately")
    score: Part


class SimilarFollowsReason(BaseModel):
    type: Literal["similar_follows"]
    users: list[UserSummary] = Field(description="Up to 3 people you both follow")
    count: int
    score: Part


class SharedInterestsReason(BaseModel):
    type: Literal["shared_interests"]
    interests: list[str] = Field(description="Slugs of interests you both follow (up to 5)")
    count: int
    score: Part


class PopularInInterestReason(BaseModel):
    type: Literal["popular_in_interest"]
    interest: str
    score: Part


class PopularReason(BaseModel):
    type: Literal["popular"]
    followers_count: int
    score: Part


UserReason = Annotated[
    FollowedByFollowingReason
    | FollowsYouReason
    | EngagedWithReason
    | SimilarFollowsReason
    | SharedInterestsReason
    | PopularInInterestReason
    | PopularReason,
    Field(discriminator="type"),
]


class Suggestion(BaseModel):
    user: UserSummary
    reasons: list[UserReason]
    score: float


class SuggestionList(BaseModel):
    items: list[Suggestion]
