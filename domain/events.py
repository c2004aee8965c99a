"""The WebSocket wire contract (API.md section 4): typed event and action structs, one encoder per format.

Server frames are ``{"id": <event id> | null, "type": <event>, "data": <struct>}``; ``EVENT_DATA`` maps each event
type to its data struct and ``STORED_EVENTS`` names the ones that carry an id and are replayed on ``?since=``.
Client frames are ``{"ref", "action", "data"}``; ``decode_client_frame`` checks the envelope and ``decode_action``
the action's data, both raising ``FrameError`` (answered with an ``ack`` error, the socket stays open).
``scripts/gen_asyncapi.py`` generates docs/asyncapi.yaml from these structs. Plain Python: no Ray, no pydantic.
"""

from __future__ import annotations

from typing import Annotated, Any

import msgspec

from domain.wire.base import Count, Id, Inbound, Seq, Timestamp, Username, Wire
from domain.wire.chats import (
    Message,
    MessageType,
    NewAudioMessage,
    NewFileMessage,
    NewImageMessage,
    NewTextMessage,
    NewVideoMessage,
    NewVoiceMessage,
    new_message_type,
)
from domain.wire.errors import AT, field_error
from domain.wire.media import Media, MediaKind
from domain.wire.notifications import Notification, NotificationType
from domain.wire.posts import Comment, CommentCounts, CommentMy, Post, PostCounts, PostMy, PostType
from domain.wire.users import UserSummary

# --- Limits and close codes -----------------------------------------------------------------------------------------

MAX_FRAME_BYTES = 64 * 1024  # app-level: a larger client frame gets an ack error `payload_too_large`, socket stays open
PROTOCOL_MAX_BYTES = 1024 * 1024  # transport-level: a larger frame closes the socket with 1009

# Every close code the server sends, and only those (handshake refusals are HTTP responses, not close codes).
CLOSE_NORMAL = 1000
CLOSE_GOING_AWAY = 1001
CLOSE_TOO_BIG = 1009
CLOSE_PING_TIMEOUT = 1011  # sent by uvicorn when a socket stops answering pings
CLOSE_SERVICE_RESTART = 1012
CLOSE_TRY_AGAIN = 1013
CLOSE_UNAUTHENTICATED = 4401
CLOSE_TOO_SLOW = 4008
CLOSE_INTERNAL = 4500

CLOSE_CODES: dict[int, str] = {
    CLOSE_NORMAL: "Normal closure (after the client's close, or the end of the session).",
    CLOSE_GOING_AWAY: "Server going away (restart or shutdown); reconnect with `since`.",
    CLOSE_TOO_BIG: f"Frame larger than the protocol limit ({PROTOCOL_MAX_BYTES} bytes).",
    CLOSE_PING_TIMEOUT: "The socket stopped answering the server's pings (keepalive timeout).",
    CLOSE_SERVICE_RESTART: "The server is restarting (graceful drain); reconnect with `since`, to it or another "
    "gateway: every stored event is replayed.",
    CLOSE_TRY_AGAIN: "The server is overloaded; reconnect with `since` after a short, jittered delay.",
    CLOSE_UNAUTHENTICATED: "Unauthenticated: the access token expired or the session was revoked; log in or "
    "refresh, then reconnect with `since`.",
    CLOSE_TOO_SLOW: "Too slow: the send queue overflowed or a replay stalled; reconnect with `since` to replay "
    "what was missed.",
    CLOSE_INTERNAL: "Internal error; reconnect with `since`.",
}

FEED_POST_EVENT = "feed.post"  # a followee posted or reposted (stored per follower, or live only for big accounts)
NOTIFICATION_EVENT = "notification"

SUBPROTOCOLS: dict[str, str] = {"i9.json": "json", "i9.msgpack": "msgpack"}  # subprotocol -> fmt; default json

# --- The objects of API.md section 2 are the HTTP ones (domain/wire), re-exported for the socket's users -----------

__all__ = [
    "Comment",
    "CommentCounts",
    "CommentMy",
    "Count",
    "Id",
    "Media",
    "MediaKind",
    "Message",
    "MessageType",
    "Notification",
    "NotificationType",
    "Post",
    "PostCounts",
    "PostMy",
    "PostType",
    "Seq",
    "Timestamp",
    "UserSummary",
    "Username",
]

# --- Event data -----------------------------------------------------------------------------------------------------


class FeedPostEvent(Wire, frozen=True):
    feed_item_id: Id
    post_id: Id
    author: UserSummary
    reposted_by: UserSummary | None = None


class PostCountsEvent(Wire, frozen=True):
    post_id: Id
    counts: PostCounts
    reactions_summary: dict[str, int]


class CommentCountsEvent(Wire, frozen=True):
    comment_id: Id
    post_id: Id
    counts: CommentCounts


class PresenceEvent(Wire, frozen=True):
    username: Username
    online: bool
    last_seen: Timestamp | None


class ChatReactionEvent(Wire, frozen=True):
    chat_id: Id
    message_id: Id
    emoji: str
    username: Username
    added: bool


class ChatReceiptEvent(Wire, frozen=True):
    chat_id: Id
    username: Username
    delivered_seq: Seq
    read_seq: Seq


class ChatTypingEvent(Wire, frozen=True):
    chat_id: Id
    username: Username
    typing: bool


class ResyncRequired(Wire, frozen=True):
    """Events after the socket's position are no longer kept: the first frame when `since` is older than
    retention or was lost, or mid-stream when the socket fell behind retention. Refetch state over HTTP, then
    keep the live events. `oldest_id` is the oldest event still kept (null when none)."""

    reason: str
    oldest_id: str | None


class AckError(Wire, frozen=True, omit_defaults=True):
    code: str
    message: str
    details: dict[str, Any] | None = None


class Ack(Wire, frozen=True, omit_defaults=True):
    """Answer to a client frame: `result` when `ok` is true, `error` when it is false (never both)."""

    ref: str | None
    ok: bool
    result: dict[str, Any] | None = None
    error: AckError | None = None


EventData = (
    Notification
    | FeedPostEvent
    | PostCountsEvent
    | CommentCountsEvent
    | PresenceEvent
    | Message
    | ChatReactionEvent
    | ChatReceiptEvent
    | ChatTypingEvent
    | ResyncRequired
    | Ack
)

EVENT_DATA: dict[str, type[msgspec.Struct]] = {
    "notification": Notification,
    "feed.post": FeedPostEvent,
    "post.counts": PostCountsEvent,
    "comment.counts": CommentCountsEvent,
    "presence": PresenceEvent,
    "chat.message": Message,
    "chat.message_edited": Message,
    "chat.message_deleted": Message,
    "chat.reaction": ChatReactionEvent,
    "chat.receipt": ChatReceiptEvent,
    "chat.typing": ChatTypingEvent,
    "resync_required": ResyncRequired,
    "ack": Ack,
}

# Stored, except when live only: a new post of an author above FANOUT_MAX_FOLLOWERS reaches connected followers
# with id null (their posts are merged into feeds at read time; no event is stored per follower).
SOMETIMES_LIVE_ONLY: frozenset[str] = frozenset({"feed.post"})

STORED_EVENTS: frozenset[str] = frozenset(
    {
        "notification",
        "feed.post",
        "chat.message",
        "chat.message_edited",
        "chat.message_deleted",
        "chat.reaction",
        "chat.receipt",
    }
)

# --- Client frames and action data ----------------------------------------------------------------------------------


class _Inbound(Wire, frozen=True, forbid_unknown_fields=True):
    """Inbound structs reject unknown fields."""


class ClientFrame(Inbound, frozen=True, kw_only=True):
    ref: str | None = None
    action: str
    data: dict[str, Any] = msgspec.field(default_factory=dict)


class SubscribeAction(Inbound, frozen=True):
    topic: Annotated[str, msgspec.Meta(description="`post:<id>` (live counts) or `presence:<username>`.")]


class ChatSendText(NewTextMessage, frozen=True, kw_only=True):
    """`chat.send` of a text message: the body of POST /chats/{id}/messages (NewTextMessage) plus `chat_id`."""

    chat_id: str


class ChatSendVoice(NewVoiceMessage, frozen=True, kw_only=True):
    """`chat.send` of a voice message: NewVoiceMessage plus `chat_id`."""

    chat_id: str


class ChatSendAudio(NewAudioMessage, frozen=True, kw_only=True):
    """`chat.send` of an audio message: NewAudioMessage plus `chat_id`."""

    chat_id: str


class ChatSendImage(NewImageMessage, frozen=True, kw_only=True):
    """`chat.send` of an image message: NewImageMessage plus `chat_id`."""

    chat_id: str


class ChatSendVideo(NewVideoMessage, frozen=True, kw_only=True):
    """`chat.send` of a video message: NewVideoMessage plus `chat_id`."""

    chat_id: str


class ChatSendFile(NewFileMessage, frozen=True, kw_only=True):
    """`chat.send` of a file message: NewFileMessage plus `chat_id`."""

    chat_id: str


# `chat.send`'s data by its `type`: the new message of that type (domain/wire/chats.py NEW_MESSAGE) plus `chat_id`.
CHAT_SEND: dict[str, type[msgspec.Struct]] = {
    "text": ChatSendText,
    "voice": ChatSendVoice,
    "audio": ChatSendAudio,
    "image": ChatSendImage,
    "video": ChatSendVideo,
    "file": ChatSendFile,
}
ChatSendAction = ChatSendText | ChatSendVoice | ChatSendAudio | ChatSendImage | ChatSendVideo | ChatSendFile


class ChatTypingAction(Inbound, frozen=True):
    chat_id: str
    typing: bool


class ChatProgressAction(Inbound, frozen=True):
    """Delivered or read up to and including `seq`."""

    chat_id: str
    seq: Seq


class PingAction(Inbound, frozen=True):
    pass


ActionData = SubscribeAction | ChatSendAction | ChatTypingAction | ChatProgressAction | PingAction

# The data of each action: a struct, or (`chat.send`) a union of structs told apart by their `type`.
ACTION_DATA: dict[str, Any] = {
    "subscribe": SubscribeAction,
    "unsubscribe": SubscribeAction,
    "chat.send": ChatSendAction,
    "chat.typing": ChatTypingAction,
    "chat.delivered": ChatProgressAction,
    "chat.read": ChatProgressAction,
    "ping": PingAction,
}


class ServerFrame(Wire, frozen=True):
    id: str | None
    type: str
    data: Any


# --- Decoding -------------------------------------------------------------------------------------------------------


class FrameError(Exception):
    """A client frame that cannot be acted on; answer with ``ack_error(ref, code, message, details)``."""

    def __init__(self, code: str, message: str, details: dict[str, Any] | None = None, *, ref: str | None = None):
        super().__init__(message)
        self.code = code
        self.message = message
        self.details: dict[str, Any] = details or {}
        self.ref = ref  # the frame's ref when it could be read, for the ack

    def ack(self) -> dict[str, Any]:
        return ack_error(self.ref, self.code, self.message, self.details or None)


class _RefOnly(msgspec.Struct):
    ref: str | None = None


_JSON_FRAME = msgspec.json.Decoder(ClientFrame)
_MSGPACK_FRAME = msgspec.msgpack.Decoder(ClientFrame)
_JSON_REF = msgspec.json.Decoder(_RefOnly)
_MSGPACK_REF = msgspec.msgpack.Decoder(_RefOnly)


def _size(raw: bytes | str) -> int:
    if not isinstance(raw, str) or len(raw) > MAX_FRAME_BYTES or len(raw) * 4 <= MAX_FRAME_BYTES:
        return len(raw)  # a str of n chars is n to 4n UTF-8 bytes: encode only when it matters
    return len(raw.encode())


def salvage_ref(raw: bytes | str, fmt: str) -> str | None:
    """The ``ref`` of a frame that will not be decoded in full (too large, rate-limited), when readable."""
    if _size(raw) > MAX_FRAME_BYTES * 16:
        return None  # not worth parsing
    try:
        if fmt == "msgpack" and not isinstance(raw, str):
            return _MSGPACK_REF.decode(raw).ref
        return _JSON_REF.decode(raw).ref
    except (msgspec.DecodeError, TypeError, RecursionError):
        return None


def decode_client_frame(raw: bytes | str, fmt: str) -> ClientFrame:
    """The envelope of a client frame (fmt "json" or "msgpack"); any problem with the bytes raises FrameError."""
    if _size(raw) > MAX_FRAME_BYTES:
        raise FrameError(
            "payload_too_large",
            f"The frame is larger than {MAX_FRAME_BYTES} bytes.",
            {"limit": MAX_FRAME_BYTES},
            ref=salvage_ref(raw, fmt),
        )
    try:
        if fmt == "json":
            return _JSON_FRAME.decode(raw)
        if fmt == "msgpack":
            if isinstance(raw, str):
                raise FrameError("malformed_frame", "A MessagePack frame must be binary.")
            return _MSGPACK_FRAME.decode(raw)
    except msgspec.ValidationError as exc:
        reason = AT.sub("", str(exc))
        raise FrameError(
            "malformed_frame", f"The frame is not a valid envelope: {reason}.", ref=salvage_ref(raw, fmt)
        ) from None
    except msgspec.DecodeError:
        name = "JSON" if fmt == "json" else "MessagePack"
        raise FrameError("malformed_frame", f"The frame is not valid {name}.") from None
    except RecursionError:
        raise FrameError("malformed_frame", "The frame is nested too deeply.") from None
    raise ValueError(f"unknown frame format {fmt!r}")


def decode_action(frame: ClientFrame) -> Any:
    """The typed data of ``frame.action`` (an ``ActionData`` struct); raises FrameError."""
    cls = ACTION_DATA.get(frame.action)
    if cls is None:
        raise FrameError(
            "unknown_action",
            f"Unknown action {frame.action!r}.",
            {"action": frame.action, "known": sorted(ACTION_DATA)},
            ref=frame.ref,
        )
    if frame.action == "chat.send":  # the struct of the message's `type`
        kind = frame.data.get("type")
        why = new_message_type(kind)
        if why is not None:
            raise FrameError(
                "validation_failed", "The action data is invalid.", {"fields": {"type": why}}, ref=frame.ref
            )
        cls = CHAT_SEND[str(kind)]
    try:
        return msgspec.convert(frame.data, cls, strict=True)
    except RecursionError:
        raise FrameError("malformed_frame", "The frame is nested too deeply.", ref=frame.ref) from None
    except msgspec.ValidationError as exc:
        name, reason = field_error(exc, prefix=".data", whole="data")
        raise FrameError(
            "validation_failed", "The action data is invalid.", {"fields": {name: reason}}, ref=frame.ref
        ) from None


# --- Decoding server frames (the gateway encodes them with api/ws/frames.py) ----------------------------------------


def decode_server_frame(raw: bytes | str, fmt: str) -> ServerFrame:
    """For clients and tests: a server frame whose data is converted to its struct when the type is known."""
    if fmt == "json":
        frame = msgspec.json.decode(raw, type=ServerFrame)
    elif fmt == "msgpack" and not isinstance(raw, str):
        frame = msgspec.msgpack.decode(raw, type=ServerFrame)
    else:
        raise ValueError(f"cannot decode a {type(raw).__name__} as {fmt!r}")
    cls = EVENT_DATA.get(frame.type)
    if cls is None:
        return frame
    return ServerFrame(id=frame.id, type=frame.type, data=msgspec.convert(frame.data, cls, strict=True))


def ack_ok(ref: str | None, result: dict[str, Any] | None = None) -> dict[str, Any]:
    """The data of a successful ack frame."""
    return {"ref": ref, "ok": True, "result": {} if result is None else result}


def ack_error(ref: str | None, code: str, message: str, details: dict[str, Any] | None = None) -> dict[str, Any]:
    """The data of a failed ack frame; ``details`` only when given."""
    error: dict[str, Any] = {"code": code, "message": message}
    if details is not None:
        error["details"] = details
    return {"ref": ref, "ok": False, "error": error}
