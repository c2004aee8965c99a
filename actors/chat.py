"""The logical per-chat actor: state and operations of one 1:1 chat, hosted in a ChatShard (DESIGN.md 1-2).

Plain Python (no Ray import). The entity is the chat's single writer: every op runs under the entity's lock, so
``seq`` is gap-free and in commit order, and the chat's events are appended to both members' streams in ``seq``
order (the append happens inside the op, before the next one starts). Each write is one PostgreSQL transaction
with its outbox rows (commit first, then publish); ``seq`` moves with a guarded UPDATE (``last_seq`` must be what
this entity holds), so a stale second holder of the chat cannot write: it reloads and tries once more.

State: the two members (username, receipts), ``last_seq``, and typing (never persisted; expires after
``TYPING_TTL_S`` without a refresh, when the ChatShard tells the peer it stopped).
"""

from __future__ import annotations

import datetime as dt
import logging
import time
import unicodedata
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import emoji as emoji_lib
import msgpack

from actors.media import check_attachable
from actors.runtime.delivery import Delivery, OutboxEvent
from domain.errors import Forbidden, NotFound, ValidationFailed
from domain.present import media_view, summary
from domain.rules import RuleError, clean_text
from storage import chats as chat_store
from storage import db, ids
from storage import outbox as outbox_store
from storage.errors import UniqueViolation
from storage.media import store as media_store
from storage.media.backends import url_signer

log = logging.getLogger("i9lyfe.chat")

MAX_TEXT = 4000
MAX_CAPTION = 1000
MAX_CLIENT_ID = 64
TYPING_TTL_S = 6.0
MESSAGE_TYPES = ("text", "voice", "image", "video", "audio", "file")
# The media kinds each message type takes (a file message takes any upload: a photo sent as a document).
KINDS_OF_TYPE: dict[str, frozenset[str]] = {
    "voice": frozenset({"audio"}),
    "image": frozenset({"image"}),
    "video": frozenset({"video"}),
    "audio": frozenset({"audio"}),
    "file": frozenset({"file", "image", "video", "audio"}),
}
CHAT_PURPOSES = frozenset({"chat"})

EphemeralPush = Callable[[int, str, dict[str, Any]], Awaitable[None]]  # (user id, type, data): live only


@dataclass
class Member:
    user_id: int
    username: str
    delivered: int = 0
    read: int = 0


@dataclass
class ChatState:
    chat_id: int
    loaded: bool = False
    last_seq: int = 0
    members: dict[int, Member] = field(default_factory=dict)
    typing: dict[int, float] = field(default_factory=dict)  # user id -> monotonic expiry

    def holds_anything(self) -> bool:
        return bool(self.typing)  # kept until its typing expires (someone must send typing: false)

    def peer_of(self, user_id: int) -> Member:
        (peer,) = [m for uid, m in self.members.items() if uid != user_id]
        return peer


def _rfc3339(value: dt.datetime | None) -> str | None:
    if value is None:
        return None
    return value.astimezone(dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def message_view(row: Any, media: Any | None, base_url: str, signer: Any) -> dict[str, Any]:
    """The Message wire object (API.md 2) of a message row (storage/chats.py columns) and its media row."""
    deleted = bool(row["deleted"])
    media_out = None
    if media is not None and not deleted:
        media_out = media_view(base_url, signer, media)
        if row["duration_ms"] is not None and "duration_ms" not in media_out:
            media_out["duration_ms"] = row["duration_ms"]
    sender = summary(
        {
            "id": row["sender_id"],
            "username": row["sender_username"],
            "name": row["sender_name"],
            "avatar_media_id": row["sender_avatar_media_id"],
        },
        base_url,
    )
    return {
        "id": str(row["id"]),
        "chat_id": str(row["chat_id"]),
        "seq": int(row["seq"]),
        "client_id": row["client_id"],
        "sender": sender,
        "type": row["type"],
        "text": None if deleted else row["text"],
        "media": media_out,
        "caption": None if deleted else row["caption"],
        "reply_to": None if row["reply_to"] is None else str(row["reply_to"]),
        "reactions": {} if deleted else chat_store.reactions_of(row),
        "deleted": deleted,
        "created_at": _rfc3339(row["created_at"]),
        "edited_at": _rfc3339(row["edited_at"]),
    }


def _id(value: Any, name: str) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        number = value
    elif isinstance(value, str) and value.isdigit() and len(value) <= 19:
        number = int(value)
    else:
        raise ValidationFailed({name: "must be an id"})
    if not 0 < number < (1 << 63):
        raise ValidationFailed({name: "must be an id"})
    return number


def _text(value: Any, name: str, limit: int) -> str:
    if not isinstance(value, str):
        raise ValidationFailed({name: "must be a string"})
    try:
        return clean_text(value, field_max=limit, allow_empty=False)
    except RuleError as exc:
        raise ValidationFailed({name: str(exc)}) from exc


def check_emoji(value: Any) -> str:
    if not isinstance(value, str) or not emoji_lib.is_emoji(unicodedata.normalize("NFC", value)):
        raise ValidationFailed({"emoji": "must be exactly one emoji"})
    return unicodedata.normalize("NFC", value)


@dataclass(frozen=True)
class Draft:
    """A send, checked for shape (not yet for what it refers to)."""

    client_id: str
    type: str
    text: str | None
    media_id: int | None
    caption: str | None
    duration_ms: int | None
    reply_to: int | None

    def same_as(self, row: Any) -> bool:
        """Whether a stored message is this send (a retry), not another send under the same client_id."""
        return (
            row["type"] == self.type
            and (row["text"] or None) == self.text
            and row["caption"] == self.caption
            and row["reply_to"] == self.reply_to
            and (row["media_id"] == self.media_id or row["deleted"])
        )


def check_draft(body: dict[str, Any]) -> Draft:
    client_id = body.get("client_id")
    if not isinstance(client_id, str) or not 1 <= len(client_id) <= MAX_CLIENT_ID or not client_id.isprintable():
        raise ValidationFailed({"client_id": f"1-{MAX_CLIENT_ID} printable characters"})
    type_ = body.get("type")
    if type_ not in MESSAGE_TYPES:
        raise ValidationFailed({"type": f"one of {', '.join(MESSAGE_TYPES)}"})
    text = body.get("text")
    media_id = body.get("media_id")
    caption = body.get("caption")
    duration = body.get("duration_ms")
    reply_to = body.get("reply_to")
    if type_ == "text":
        if text is None:
            raise ValidationFailed({"text": "a text message needs text"})
        for name, value in (("media_id", media_id), ("caption", caption), ("duration_ms", duration)):
            if value is not None:
                raise ValidationFailed({name: "a text message takes only text"})
        text = _text(text, "text", MAX_TEXT)
    else:
        if media_id is None:
            raise ValidationFailed({"media_id": f"a {type_} message needs media"})
        if text is not None:
            raise ValidationFailed({"text": f"a {type_} message takes a caption, not text"})
        media_id = _id(media_id, "media_id")
        caption = None if caption is None else _text(caption, "caption", MAX_CAPTION)
        if duration is not None:
            if type_ not in ("voice", "audio"):
                raise ValidationFailed({"duration_ms": "only voice and audio messages have a duration"})
            if not isinstance(duration, int) or isinstance(duration, bool) or not 0 <= duration <= 24 * 3600 * 1000:
                raise ValidationFailed({"duration_ms": "milliseconds, 0 to 24 hours"})
    return Draft(
        client_id=client_id,
        type=type_,
        text=text,
        media_id=media_id,
        caption=caption,
        duration_ms=duration,
        reply_to=None if reply_to is None else _id(reply_to, "reply_to"),
    )


class ChatOps:
    """The op table of the chat kind. ``delivery`` publishes committed events (streams, then live push);
    ``ephemeral`` pushes a live-only event (typing) to one user's sockets."""

    def __init__(self, services: Any, delivery: Delivery, ephemeral: EphemeralPush) -> None:
        self.services = services
        self.delivery = delivery
        self.ephemeral = ephemeral
        self.base_url = services.settings.public_base_url
        self.signer = url_signer(services.settings)

    def table(self) -> dict[str, Callable[..., Awaitable[Any]]]:
        return {
            "send": self.send,
            "edit": self.edit,
            "delete": self.delete,
            "react": self.react,
            "unreact": self.unreact,
            "progress": self.progress,
            "typing": self.typing,
        }

    # ------------------------------------------------------------ activation, membership, publishing

    async def _load(self, state: ChatState, *, force: bool = False) -> None:
        if state.loaded and not force:
            return
        rows = await chat_store.load_chat(self.services.pool, state.chat_id)
        if not rows:
            raise NotFound("No such chat.")
        state.last_seq = int(rows[0]["last_seq"])
        state.members = {
            int(r["user_id"]): Member(int(r["user_id"]), r["username"], int(r["delivered_seq"]), int(r["read_seq"]))
            for r in rows
        }
        state.loaded = True

    async def _member(self, state: ChatState, user_id: int) -> Member:
        await self._load(state)
        member = state.members.get(user_id)
        if member is None:
            raise NotFound("No such chat.")  # non-members learn nothing, not even that the chat exists
        return member

    async def _publish(self, events: list[OutboxEvent]) -> None:
        """Committed events to the members' streams (in this op, so in seq order) and live to their sockets;
        a failure leaves them to the outbox relay (they are already stored)."""
        try:
            await self.delivery.publish(events, push_later=True)  # appended in seq order; pushed after the lock
        except Exception as exc:
            log.warning("chat events left to the relay", extra={"fields": {"error": repr(exc)}})

    async def _view(self, conn: Any, row: Any) -> dict[str, Any]:
        media = None
        if row["media_id"] is not None:
            media = await media_store.find_media(conn, int(row["media_id"]))
        return message_view(row, media, self.base_url, self.signer)

    async def _message(self, conn: Any, state: ChatState, message_id: Any) -> Any:
        row = await chat_store.get_message(conn, state.chat_id, _id(message_id, "message_id"))
        if row is None:
            raise NotFound("No such message.")
        return row

    # ------------------------------------------------------------ send

    async def send(self, state: ChatState, sender_id: int, body: dict[str, Any]) -> dict[str, Any]:
        """A new message (``created``: true), or the one this ``client_id`` already made (false)."""
        await self._member(state, sender_id)
        draft = check_draft(body)
        pool = self.services.pool
        for attempt in (1, 2):
            try:
                return await self._insert(state, sender_id, draft)
            except _StaleSeq:
                await self._load(state, force=True)  # another holder wrote: take its seq and try once more
                if attempt == 2:
                    raise
            except UniqueViolation as exc:
                # A retry (the client_id is taken): its transaction rolled back, seq included. No lookup before
                # every send: retries are rare, and the unique constraint decides anyway.
                if exc.constraint != "messages_client_key":
                    raise
                existing = await chat_store.find_by_client_id(pool, state.chat_id, sender_id, draft.client_id)
                if existing is None:
                    raise
                return await self._replay_send(pool, existing, draft)
        raise AssertionError("unreachable")

    async def _replay_send(self, conn: Any, existing: Any, draft: Draft) -> dict[str, Any]:
        if not draft.same_as(existing):
            raise ValidationFailed(
                {"client_id": "already used for another message"},
                "This client_id was used for a different message.",
                code="idempotency_key_reused",
            )
        return {"message": await self._view(conn, existing), "created": False}

    async def _insert(self, state: ChatState, sender_id: int, draft: Draft) -> dict[str, Any]:
        now = dt.datetime.now(dt.UTC)
        message_id = ids.new_id()
        async with db.transaction(self.services.pool) as conn:
            media = None
            if draft.media_id is not None:
                (media,) = await check_attachable(
                    conn,
                    sender_id,
                    [draft.media_id],
                    purposes=CHAT_PURPOSES,
                    kinds=KINDS_OF_TYPE[draft.type],
                    field="media_id",
                )
            if draft.reply_to is not None:
                replied = await chat_store.get_message(conn, state.chat_id, draft.reply_to)
                if replied is None:
                    raise ValidationFailed({"reply_to": "not a message of this chat"})
            seq = state.last_seq + 1
            if not await chat_store.advance_seq(conn, state.chat_id, state.last_seq, now):
                raise _StaleSeq()
            await chat_store.insert_message(
                conn,
                id=message_id,
                chat_id=state.chat_id,
                seq=seq,
                sender_id=sender_id,
                client_id=draft.client_id,
                type=draft.type,
                text=draft.text,
                media_id=draft.media_id,
                caption=draft.caption,
                duration_ms=draft.duration_ms,
                reply_to=draft.reply_to,
                created_at=now,
            )
            await chat_store.touch_members(conn, state.chat_id, now)
            sender = await conn.fetchrow("SELECT username, name, avatar_media_id FROM users WHERE id = $1", sender_id)
            row = {
                "id": message_id,
                "chat_id": state.chat_id,
                "seq": seq,
                "sender_id": sender_id,
                "client_id": draft.client_id,
                "type": draft.type,
                "text": draft.text,
                "media_id": draft.media_id,
                "caption": draft.caption,
                "duration_ms": draft.duration_ms,
                "reply_to": draft.reply_to,
                "deleted": False,
                "created_at": now,
                "edited_at": None,
                "sender_username": sender["username"],
                "sender_name": sender["name"],
                "sender_avatar_media_id": sender["avatar_media_id"],
                "reactions": None,
            }
            view = message_view(row, media, self.base_url, self.signer)
            event = await self._stage(conn, list(state.members), "chat.message", view)
        state.last_seq = seq
        await self._publish([event])
        return {"message": view, "created": True}

    async def _stage(self, conn: Any, recipients: list[int], type_: str, data: dict[str, Any]) -> OutboxEvent:
        event = OutboxEvent.make(recipients, type_, data)
        await outbox_store.insert_events(conn, [(event.id, event.recipients, event.type, event.data)])
        return event

    # ------------------------------------------------------------ edit, delete, reactions

    async def edit(self, state: ChatState, user_id: int, message_id: Any, text: Any) -> dict[str, Any]:
        await self._member(state, user_id)
        clean = _text(text, "text", MAX_TEXT)
        async with db.transaction(self.services.pool) as conn:
            row = await self._message(conn, state, message_id)
            if row["sender_id"] != user_id:
                raise Forbidden("Only the sender may edit a message.")
            if row["deleted"]:
                raise ValidationFailed({"message_id": "this message was deleted"}, code="message_deleted")
            if row["type"] != "text":
                raise ValidationFailed({"text": "only text messages can be edited"})
            await chat_store.update_text(conn, int(row["id"]), clean, dt.datetime.now(dt.UTC))
            view = await self._view(conn, await self._message(conn, state, row["id"]))
            event = await self._stage(conn, list(state.members), "chat.message_edited", view)
        await self._publish([event])
        return view

    async def delete(self, state: ChatState, user_id: int, message_id: Any, scope: str) -> None:
        await self._member(state, user_id)
        if scope not in ("me", "everyone"):
            raise ValidationFailed({"for": "me or everyone"})
        async with db.transaction(self.services.pool) as conn:
            row = await self._message(conn, state, message_id)
            if scope == "me":
                await chat_store.hide_for(conn, int(row["id"]), user_id)
                view = dict(await self._view(conn, row), deleted=True, text=None, media=None, caption=None)
                view["reactions"] = {}
                event = await self._stage(conn, [user_id], "chat.message_deleted", view)  # my devices only
            else:
                if row["sender_id"] != user_id:
                    raise Forbidden("Only the sender may delete a message for everyone.")
                if row["deleted"]:
                    return
                await chat_store.delete_for_everyone(conn, int(row["id"]))
                view = await self._view(conn, await self._message(conn, state, row["id"]))
                event = await self._stage(conn, list(state.members), "chat.message_deleted", view)
        await self._publish([event])

    async def react(self, state: ChatState, user_id: int, message_id: Any, emoji: Any) -> dict[str, Any]:
        member = await self._member(state, user_id)
        chosen = check_emoji(emoji)
        async with db.transaction(self.services.pool) as conn:
            row = await self._message(conn, state, message_id)
            if row["deleted"]:
                raise ValidationFailed({"message_id": "this message was deleted"}, code="message_deleted")
            previous = await chat_store.set_reaction(conn, int(row["id"]), user_id, chosen)
            events = []
            if previous != chosen:
                base = {"chat_id": str(state.chat_id), "message_id": str(row["id"]), "username": member.username}
                if previous is not None:
                    events.append(
                        await self._stage(
                            conn, list(state.members), "chat.reaction", {**base, "emoji": previous, "added": False}
                        )
                    )
                events.append(
                    await self._stage(
                        conn, list(state.members), "chat.reaction", {**base, "emoji": chosen, "added": True}
                    )
                )
            view = await self._view(conn, await self._message(conn, state, row["id"]))
        if events:
            await self._publish(events)
        return view

    async def unreact(self, state: ChatState, user_id: int, message_id: Any) -> None:
        member = await self._member(state, user_id)
        async with db.transaction(self.services.pool) as conn:
            row = await self._message(conn, state, message_id)
            removed = await chat_store.remove_reaction(conn, int(row["id"]), user_id)
            if removed is None:
                return
            data = {
                "chat_id": str(state.chat_id),
                "message_id": str(row["id"]),
                "emoji": removed,
                "username": member.username,
                "added": False,
            }
            event = await self._stage(conn, list(state.members), "chat.reaction", data)
        await self._publish([event])

    # ------------------------------------------------------------ receipts and typing

    async def progress(self, state: ChatState, user_id: int, kind: str, seq: Any) -> dict[str, Any]:
        """Delivered or read up to ``seq``: watermarks only move forward, never past the last message; reading
        implies delivery. The peer (and the member's other devices) get ``chat.receipt`` when one moved."""
        member = await self._member(state, user_id)
        if kind not in ("delivered", "read"):
            raise ValidationFailed({"kind": "delivered or read"})
        if not isinstance(seq, int) or isinstance(seq, bool) or seq < 0:
            raise ValidationFailed({"seq": "must be a sequence number"})
        if seq > state.last_seq:
            await self._load(state, force=True)  # a restarted holder may be behind; storage decides
            member = state.members[user_id]
            if seq > state.last_seq:
                raise ValidationFailed({"seq": f"beyond the last message ({state.last_seq})"}, code="seq_out_of_range")
        delivered = max(member.delivered, seq)
        read = max(member.read, seq) if kind == "read" else member.read
        receipt = {
            "chat_id": str(state.chat_id),
            "username": member.username,
            "delivered_seq": delivered,
            "read_seq": read,
        }
        if (delivered, read) == (member.delivered, member.read):
            return receipt
        async with db.transaction(self.services.pool) as conn:
            await chat_store.set_receipts(conn, state.chat_id, user_id, delivered, read)
            event = await self._stage(conn, list(state.members), "chat.receipt", receipt)
        member.delivered, member.read = delivered, read
        await self._publish([event])
        return receipt

    async def typing(self, state: ChatState, user_id: int, typing: Any) -> dict[str, Any]:
        member = await self._member(state, user_id)
        if not isinstance(typing, bool):
            raise ValidationFailed({"typing": "true or false"})
        was = user_id in state.typing
        if typing:
            state.typing[user_id] = time.monotonic() + TYPING_TTL_S
        else:
            state.typing.pop(user_id, None)
        if typing != was:
            await self._tell_typing(state, member, typing)
        return {"chat_id": str(state.chat_id), "typing": typing}

    async def _tell_typing(self, state: ChatState, member: Member, typing: bool) -> None:
        peer = state.peer_of(member.user_id)
        data = {"chat_id": str(state.chat_id), "username": member.username, "typing": typing}
        try:
            await self.ephemeral(peer.user_id, "chat.typing", data)
        except Exception as exc:  # typing is best effort: never stored, never retried
            log.info("typing not relayed", extra={"fields": {"error": repr(exc)}})

    async def expire_typing(self, state: ChatState, now: float) -> None:
        """Tell the peer of everyone whose typing ran out that they stopped."""
        for user_id, until in list(state.typing.items()):
            if until <= now and user_id in state.members:
                state.typing.pop(user_id, None)
                await self._tell_typing(state, state.members[user_id], False)


class _StaleSeq(Exception):
    """The chat's ``last_seq`` in storage is not what this entity holds: another holder wrote."""


def pack(data: dict[str, Any]) -> bytes:
    packed: bytes = msgpack.packb(data, use_bin_type=True)
    return packed
