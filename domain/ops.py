"""Typed ops: one msgspec struct per operation a shard runs for a caller (DESIGN.md 2b).

An op names its logical actor by its fields (``entity``): a user op runs in the acting user's entity, a chat op in
the chat's. Its type parameter is what it answers. The shard side derives its op table from the handlers' op types
(actors/runtime/host.py ``op_table``), and the api side calls ``await client.call(SendMessage(...))``: no op is
named by a string anywhere. Fields hold values already validated at the edge (the route or the socket action):
ids are ints, texts are cleaned; the actor checks only what needs its state or storage (membership, ownership,
existence, limits).

Plain structs (no I/O): they cross Ray pickled, in batches (actors/runtime/client.py).
"""

from __future__ import annotations

from typing import Any, ClassVar, Generic, Literal, TypeVar

import msgspec

from domain.events import ChatReceiptEvent
from domain.wire.chats import Message, Typing
from domain.wire.posts import Comment, CommentEngagement, Post, PostEngagement, Reposted, Saved
from domain.wire.recs import Knobs

R = TypeVar("R")

MessageKind = Literal["text", "voice", "image", "video", "audio", "file"]
PostType = Literal["photo", "video", "reel"]
ProgressKind = Literal["delivered", "read"]
DeleteScope = Literal["me", "everyone"]
Signal = Literal["less", "more"]


class Op(msgspec.Struct, Generic[R], frozen=True, kw_only=True):
    """An operation on one logical actor; ``R`` is its answer. ``KIND`` names the shard kind that runs it.
    ``GROUP_COMMIT``: the op writes, and shares its batch's transaction (actors/runtime/host.py); an op that only
    touches the entity's memory or Redis (sockets, presence, typing) runs on its own, at once."""

    KIND: ClassVar[str] = ""
    GROUP_COMMIT: ClassVar[bool] = True

    @property
    def entity(self) -> int:
        raise NotImplementedError


# ------------------------------------------------------------------ the user kind: the acting user's entity


class UserOp(Op[R], frozen=True, kw_only=True):
    """Runs in the entity of ``user_id``, the acting user."""

    KIND: ClassVar[str] = "user"
    user_id: int

    @property
    def entity(self) -> int:
        return self.user_id


# Sockets (a gateway's registrations; ``seq`` is the gateway's operation number, see api/ws/shard_sync.py)


class GatewayOp(UserOp[R], frozen=True, kw_only=True):
    """An op that changes which sockets ``gateway`` holds for the user (the host tracks gateways by them)."""

    GROUP_COMMIT: ClassVar[bool] = False
    gateway: str


class Connect(GatewayOp[dict[str, Any]], frozen=True, kw_only=True):
    """A socket opened on ``gateway``; answers the presence view (429 ``too_many_sockets`` past the cap)."""

    socket_id: str
    seq: int


class Disconnect(GatewayOp[dict[str, Any]], frozen=True, kw_only=True):
    """A socket closed at ``closed_at`` (Unix seconds; a retry keeps the original time)."""

    socket_id: str
    seq: int
    closed_at: float | None = None


class SyncGateway(GatewayOp[bool], frozen=True, kw_only=True):
    """Re-registration: every socket of this user on ``gateway`` as of ``seq``; ``closed_at``: some closed then,
    while the shard could not hear of it. Answers whether presence changed."""

    sockets: list[str]
    seq: int
    closed_at: float | None = None


class ExpireGateway(GatewayOp[bool], frozen=True, kw_only=True):
    """The gateway stopped heartbeating: its sockets are gone."""


GATEWAY_OPS: tuple[type[GatewayOp[Any]], ...] = (Connect, Disconnect, SyncGateway, ExpireGateway)


class GetPresence(UserOp[dict[str, Any]], frozen=True, kw_only=True):
    """The user's presence view (a ``presence`` subscription's first event)."""

    GROUP_COMMIT: ClassVar[bool] = False


class CloseSessions(UserOp[int], frozen=True, kw_only=True):
    """Close the user's sockets of these (already revoked) sessions; answers how many gateways were told."""

    GROUP_COMMIT: ClassVar[bool] = False
    session_ids: list[int]


class Touch(UserOp[str], frozen=True, kw_only=True):
    """Reach the entity and answer the time (tests and benchmarks: proves it is reachable and serialized)."""


# Profile


class UpdateProfile(UserOp[dict[str, Any]], frozen=True, kw_only=True):
    """Column -> value of a checked PATCH /me (domain/rules.py ``check_profile_changes``)."""

    changes: dict[str, Any]


class SetAvatar(UserOp[dict[str, Any]], frozen=True, kw_only=True):
    """One of the user's own ready avatar images as the avatar, or none."""

    media_id: int | None


# Posts


# A post's insert and delete change the search index's word counts (search_words, kept by a trigger on posts:
# storage/migrations/0012): rows nearly every post shares. In a group commit each batch would hold them to its end
# and the shards' batches would wait for each other (measured: creates 74/s alone, 24/s grouped), so these two run
# alone, each in its own short transaction, until those counts move to the end of a batch (storage/db.py
# add_to_counters does that for the other shared counters).


class CreatePost(UserOp[Post], frozen=True, kw_only=True):
    GROUP_COMMIT: ClassVar[bool] = False
    type: PostType
    caption: str
    media_ids: list[int]
    idempotency_key: str | None = None
    body_hash: bytes = b""  # of the request as sent: a retry with another body is 422 idempotency_key_reused


class DeletePost(UserOp[None], frozen=True, kw_only=True):
    GROUP_COMMIT: ClassVar[bool] = False
    post_id: int


class ReactToPost(UserOp[PostEngagement], frozen=True, kw_only=True):
    post_id: int
    emoji: str


class UnreactToPost(UserOp[None], frozen=True, kw_only=True):
    post_id: int


class SetRepost(UserOp[Reposted], frozen=True, kw_only=True):
    post_id: int
    on: bool


class SetSave(UserOp[Saved], frozen=True, kw_only=True):
    post_id: int
    on: bool


class AddComment(UserOp[Comment], frozen=True, kw_only=True):
    """A comment on ``post_id``, or a reply to ``parent_id`` (exactly one is set)."""

    post_id: int | None = None
    parent_id: int | None = None
    text: str
    media_id: int | None = None
    idempotency_key: str | None = None
    body_hash: bytes = b""


class DeleteComment(UserOp[None], frozen=True, kw_only=True):
    comment_id: int


class ReactToComment(UserOp[CommentEngagement], frozen=True, kw_only=True):
    comment_id: int
    emoji: str


class UnreactToComment(UserOp[None], frozen=True, kw_only=True):
    comment_id: int


# Follows and recommendations


class Follow(UserOp[bool], frozen=True, kw_only=True):
    """Follow ``username`` (normalized); answers ``following``."""

    username: str


class Unfollow(UserOp[bool], frozen=True, kw_only=True):
    username: str


class FollowInterest(UserOp[bool], frozen=True, kw_only=True):
    slug: str
    on: bool


class GiveExploreFeedback(UserOp[None], frozen=True, kw_only=True):
    post_id: int
    signal: Signal


class SetRecommendationKnobs(UserOp[Knobs], frozen=True, kw_only=True):
    """The knobs to change (None: keep)."""

    recency_weight: float | None = None
    hide_reposts: bool | None = None
    per_author_cap: int | None = None


# ------------------------------------------------------------------ the chat kind: the chat's entity


class ChatOp(Op[R], frozen=True, kw_only=True):
    """Runs in the entity of ``chat_id`` (the chat's single writer); ``user_id`` is the acting member."""

    KIND: ClassVar[str] = "chat"
    chat_id: int
    user_id: int

    @property
    def entity(self) -> int:
        return self.chat_id


class SendMessage(ChatOp[tuple[Message, bool]], frozen=True, kw_only=True):
    """A checked draft (domain/chat.py ``check_draft``); answers the message and whether this send made it (false:
    the same ``client_id`` was sent before)."""

    client_id: str
    type: MessageKind
    text: str | None = None
    media_id: int | None = None
    caption: str | None = None
    duration_ms: int | None = None
    reply_to: int | None = None


class EditMessage(ChatOp[Message], frozen=True, kw_only=True):
    message_id: int
    text: str


class DeleteMessage(ChatOp[None], frozen=True, kw_only=True):
    message_id: int
    scope: DeleteScope


class ReactToMessage(ChatOp[Message], frozen=True, kw_only=True):
    message_id: int
    emoji: str


class UnreactToMessage(ChatOp[None], frozen=True, kw_only=True):
    message_id: int


class ReportProgress(ChatOp[ChatReceiptEvent], frozen=True, kw_only=True):
    """Delivered or read up to and including ``seq``."""

    kind: ProgressKind
    seq: int


class SetTyping(ChatOp[Typing], frozen=True, kw_only=True):
    GROUP_COMMIT: ClassVar[bool] = False
    typing: bool


def op_types(kind: type[Op[Any]]) -> list[type[Op[Any]]]:
    """Every concrete op of a kind (``UserOp`` or ``ChatOp``): the leaves of its class tree (a base such as
    ``GatewayOp`` is not an op), for the op-table walk."""
    found: list[type[Op[Any]]] = []
    stack: list[type[Any]] = list(kind.__subclasses__())
    while stack:
        cls = stack.pop()
        below = cls.__subclasses__()
        if below:
            stack.extend(below)
        else:
            found.append(cls)
    return sorted(found, key=lambda c: c.__name__)
