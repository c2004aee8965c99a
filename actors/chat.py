"""The logical per-chat actor: state and ops of one 1:1 chat, hosted in a ChatShard (DESIGN.md 1-2).

Plain Python (no Ray import). The entity is the chat's single writer: every op runs under the entity's lock, so
``seq`` is gap-free and in commit order. Each write is one PostgreSQL transaction with its outbox rows; the host
publishes the events after commit and before the entity's lock is released (actors/after_commit.py), so they reach
the members' streams in ``seq`` order. ``seq`` moves with a guarded UPDATE (``last_seq`` must be what this entity
holds), so a stale second holder of the chat cannot write: it reloads and tries once more.

Ops arrive checked for shape at the edge (domain/chat.py): here is what needs the chat's state or storage:
membership, who sent what, what a reply or a media refers to, how far receipts may go.

State: the two members (username, receipts), ``last_seq``, and typing (never persisted; expires after
``TYPING_TTL_S`` without a refresh, when the ChatShard tells the peer it stopped).
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import msgspec

from actors.after_commit import LiveOnly
from actors.media import check_attachable
from actors.runtime.delivery import OutboxEvent
from actors.runtime.host import Done
from domain import present
from domain.errors import Forbidden, NotFound, ValidationFailed
from domain.events import ChatReactionEvent, ChatReceiptEvent
from domain.ops import (
    DeleteMessage,
    EditMessage,
    ReactToMessage,
    ReportProgress,
    SendMessage,
    SetTyping,
    UnreactToMessage,
)
from domain.present import public_media_url, rfc3339, rfc3339_or_none
from domain.wire.chats import Message, Typing
from domain.wire.users import UserSummary
from storage import chats as chat_store
from storage import db, ids
from storage import outbox as outbox_store
from storage.errors import UniqueViolation
from storage.media import store as media_store
from storage.media.backends import url_signer

log = logging.getLogger("i9lyfe.chat")

TYPING_TTL_S = 6.0
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

    def unload(self) -> None:
        """What memory holds may be ahead of storage (its group commit failed): the next op reloads it."""
        self.loaded = False

    def peer_of(self, user_id: int) -> Member:
        (peer,) = [m for uid, m in self.members.items() if uid != user_id]
        return peer


def message_view(row: Any, media_row: Any | None, base_url: str, signer: Any) -> Message:
    """The Message (API.md 2) of a message row (storage/chats.py columns) and its media row."""
    deleted = bool(row["deleted"])
    attached = None
    if media_row is not None and not deleted:
        attached = present.media(base_url, signer, media_row)
        if row["duration_ms"] is not None and attached.duration_ms is None:
            attached = msgspec.structs.replace(attached, duration_ms=row["duration_ms"])
    avatar_id = row["sender_avatar_media_id"]
    sender = UserSummary(
        id=str(row["sender_id"]),
        username=row["sender_username"],
        name=row["sender_name"],
        avatar=None if avatar_id is None else public_media_url(base_url, int(avatar_id)),
    )
    return Message(
        id=str(row["id"]),
        chat_id=str(row["chat_id"]),
        seq=int(row["seq"]),
        client_id=row["client_id"],
        sender=sender,
        type=row["type"],
        text=None if deleted else row["text"],
        media=attached,
        caption=None if deleted else row["caption"],
        reply_to=None if row["reply_to"] is None else str(row["reply_to"]),
        reactions={} if deleted else chat_store.reactions_of(row),
        deleted=deleted,
        created_at=rfc3339(row["created_at"]),
        edited_at=rfc3339_or_none(row["edited_at"]),
    )


def same_send(op: SendMessage, row: Any) -> bool:
    """Whether a stored message is this send (a retry), not another send under the same client_id."""
    return (
        row["type"] == op.type
        and (row["text"] or None) == op.text
        and row["caption"] == op.caption
        and row["reply_to"] == op.reply_to
        and (row["media_id"] == op.media_id or row["deleted"])
    )


class ChatOps:
    """The op handlers of the chat kind (the op table is derived from their ``op`` types). ``ephemeral`` pushes a
    live-only event (typing) to one user's sockets."""

    def __init__(self, services: Any, ephemeral: EphemeralPush) -> None:
        self.services = services
        self.ephemeral = ephemeral
        self.base_url = services.settings.public_base_url
        self.signer = url_signer(services.settings)

    # ------------------------------------------------------------ activation, membership

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

    async def check_member(self, state: ChatState, user_id: int) -> Member:
        await self._load(state)
        member = state.members.get(user_id)
        if member is None:
            raise NotFound("No such chat.")  # non-members learn nothing, not even that the chat exists
        return member

    async def _view(self, conn: Any, row: Any) -> Message:
        media = None
        if row["media_id"] is not None:
            media = await media_store.find_media(conn, int(row["media_id"]))
        return message_view(row, media, self.base_url, self.signer)

    async def _message(self, conn: Any, state: ChatState, message_id: int) -> Any:
        row = await chat_store.get_message(conn, state.chat_id, message_id)
        if row is None:
            raise NotFound("No such message.")
        return row

    async def _stage(self, conn: Any, recipients: list[int], type_: str, data: msgspec.Struct) -> OutboxEvent:
        event = OutboxEvent.make(recipients, type_, data)
        await outbox_store.insert_events(conn, [(event.id, event.recipients, event.type, event.data)])
        return event

    # ------------------------------------------------------------ send

    async def send(self, state: ChatState, op: SendMessage) -> Done[tuple[Message, bool]]:
        """A new message (and true), or the one this ``client_id`` already made (and false)."""
        await self.check_member(state, op.user_id)
        pool = self.services.pool
        for attempt in (1, 2):
            try:
                return await self._insert(state, op)
            except _StaleSeq:
                await self._load(state, force=True)  # another holder wrote: take its seq and try once more
                if attempt == 2:
                    raise
            except UniqueViolation as exc:
                # A retry (the client_id is taken): its transaction rolled back, seq included. No lookup before
                # every send: retries are rare, and the unique constraint decides anyway.
                if exc.constraint != "messages_client_key":
                    raise
                existing = await chat_store.find_by_client_id(pool, state.chat_id, op.user_id, op.client_id)
                if existing is None:
                    raise
                if not same_send(op, existing):
                    raise ValidationFailed(
                        {"client_id": "already used for another message"},
                        "This client_id was used for a different message.",
                        code="idempotency_key_reused",
                    ) from exc
                return Done((await self._view(pool, existing), False))
        raise AssertionError("unreachable")

    async def _insert(self, state: ChatState, op: SendMessage) -> Done[tuple[Message, bool]]:
        now = dt.datetime.now(dt.UTC)
        message_id = ids.new_id()
        sender_id = op.user_id
        async with db.transaction(self.services.pool) as conn:
            media = None
            if op.media_id is not None:
                (media,) = await check_attachable(
                    conn,
                    sender_id,
                    [op.media_id],
                    purposes=CHAT_PURPOSES,
                    kinds=KINDS_OF_TYPE[op.type],
                    field="media_id",
                )
            if op.reply_to is not None:
                replied = await chat_store.get_message(conn, state.chat_id, op.reply_to)
                if replied is None:
                    raise ValidationFailed({"reply_to": "not a message of this chat"})
            sender = await chat_store.append_message(
                conn,
                state.last_seq,
                id=message_id,
                chat_id=state.chat_id,
                sender_id=sender_id,
                client_id=op.client_id,
                type=op.type,
                text=op.text,
                media_id=op.media_id,
                caption=op.caption,
                duration_ms=op.duration_ms,
                reply_to=op.reply_to,
                created_at=now,
            )
            if sender is None:
                raise _StaleSeq()
            seq = int(sender["seq"])
            row = {
                "id": message_id,
                "chat_id": state.chat_id,
                "seq": seq,
                "sender_id": sender_id,
                "client_id": op.client_id,
                "type": op.type,
                "text": op.text,
                "media_id": op.media_id,
                "caption": op.caption,
                "duration_ms": op.duration_ms,
                "reply_to": op.reply_to,
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
        return Done((view, True), events=[event])

    # ------------------------------------------------------------ edit, delete, reactions

    async def edit(self, state: ChatState, op: EditMessage) -> Done[Message]:
        """The text was cleaned at the edge (domain/chat.py)."""
        await self.check_member(state, op.user_id)
        async with db.transaction(self.services.pool) as conn:
            row = await self._message(conn, state, op.message_id)
            if row["sender_id"] != op.user_id:
                raise Forbidden("Only the sender may edit a message.")
            if row["deleted"]:
                raise ValidationFailed({"message_id": "this message was deleted"}, code="message_deleted")
            if row["type"] != "text":
                raise ValidationFailed({"text": "only text messages can be edited"})
            await chat_store.update_text(conn, int(row["id"]), op.text, dt.datetime.now(dt.UTC))
            view = await self._view(conn, await self._message(conn, state, row["id"]))
            event = await self._stage(conn, list(state.members), "chat.message_edited", view)
        return Done(view, events=[event])

    async def delete(self, state: ChatState, op: DeleteMessage) -> Done[None]:
        await self.check_member(state, op.user_id)
        async with db.transaction(self.services.pool) as conn:
            row = await self._message(conn, state, op.message_id)
            if op.scope == "me":
                await chat_store.hide_for(conn, int(row["id"]), op.user_id)
                view = msgspec.structs.replace(
                    await self._view(conn, row), deleted=True, text=None, media=None, caption=None, reactions={}
                )
                event = await self._stage(conn, [op.user_id], "chat.message_deleted", view)  # my devices only
            else:
                if row["sender_id"] != op.user_id:
                    raise Forbidden("Only the sender may delete a message for everyone.")
                if row["deleted"]:
                    return Done(None)
                await chat_store.delete_for_everyone(conn, int(row["id"]))
                view = await self._view(conn, await self._message(conn, state, row["id"]))
                event = await self._stage(conn, list(state.members), "chat.message_deleted", view)
        return Done(None, events=[event])

    async def react(self, state: ChatState, op: ReactToMessage) -> Done[Message]:
        """The emoji was checked at the edge (domain/chat.py ``check_emoji``)."""
        member = await self.check_member(state, op.user_id)
        chosen = op.emoji
        async with db.transaction(self.services.pool) as conn:
            row = await self._message(conn, state, op.message_id)
            if row["deleted"]:
                raise ValidationFailed({"message_id": "this message was deleted"}, code="message_deleted")
            previous = await chat_store.set_reaction(conn, int(row["id"]), op.user_id, chosen)
            events = []
            if previous != chosen:
                changes = [(previous, False)] if previous is not None else []
                for emoji, added in [*changes, (chosen, True)]:
                    data = ChatReactionEvent(
                        chat_id=str(state.chat_id),
                        message_id=str(row["id"]),
                        emoji=emoji,
                        username=member.username,
                        added=added,
                    )
                    events.append(await self._stage(conn, list(state.members), "chat.reaction", data))
            view = await self._view(conn, await self._message(conn, state, row["id"]))
        return Done(view, events=events)

    async def unreact(self, state: ChatState, op: UnreactToMessage) -> Done[None]:
        member = await self.check_member(state, op.user_id)
        async with db.transaction(self.services.pool) as conn:
            row = await self._message(conn, state, op.message_id)
            removed = await chat_store.remove_reaction(conn, int(row["id"]), op.user_id)
            if removed is None:
                return Done(None)
            data = ChatReactionEvent(
                chat_id=str(state.chat_id),
                message_id=str(row["id"]),
                emoji=removed,
                username=member.username,
                added=False,
            )
            event = await self._stage(conn, list(state.members), "chat.reaction", data)
        return Done(None, events=[event])

    # ------------------------------------------------------------ receipts and typing

    async def progress(self, state: ChatState, op: ReportProgress) -> Done[ChatReceiptEvent]:
        """Delivered or read up to ``seq``: watermarks only move forward, never past the last message; reading
        implies delivery. The peer (and the member's other devices) get ``chat.receipt`` when one moved."""
        member = await self.check_member(state, op.user_id)
        seq = op.seq
        if seq > state.last_seq:
            await self._load(state, force=True)  # a restarted holder may be behind; storage decides
            member = state.members[op.user_id]
            if seq > state.last_seq:
                raise ValidationFailed({"seq": f"beyond the last message ({state.last_seq})"}, code="seq_out_of_range")
        delivered = max(member.delivered, seq)
        read = max(member.read, seq) if op.kind == "read" else member.read
        receipt = ChatReceiptEvent(
            chat_id=str(state.chat_id), username=member.username, delivered_seq=delivered, read_seq=read
        )
        if (delivered, read) == (member.delivered, member.read):
            return Done(receipt)
        async with db.transaction(self.services.pool) as conn:
            await chat_store.set_receipts(conn, state.chat_id, op.user_id, delivered, read)
            event = await self._stage(conn, list(state.members), "chat.receipt", receipt)
        member.delivered, member.read = delivered, read
        return Done(receipt, events=[event])

    async def typing(self, state: ChatState, op: SetTyping) -> Done[Typing]:
        member = await self.check_member(state, op.user_id)
        was = op.user_id in state.typing
        if op.typing:
            state.typing[op.user_id] = time.monotonic() + TYPING_TTL_S
        else:
            state.typing.pop(op.user_id, None)
        effects = [self._tell_typing(state, member, op.typing)] if op.typing != was else []
        return Done(Typing(chat_id=str(state.chat_id), typing=op.typing), effects=effects)

    def _tell_typing(self, state: ChatState, member: Member, typing: bool) -> LiveOnly:
        peer = state.peer_of(member.user_id)
        data = {"chat_id": str(state.chat_id), "username": member.username, "typing": typing}
        return LiveOnly(peer.user_id, "chat.typing", data)

    async def expire_typing(self, state: ChatState, now: float) -> None:
        """Tell the peer of everyone whose typing ran out that they stopped (a ChatShard's periodic job)."""
        for user_id, until in list(state.typing.items()):
            if until <= now and user_id in state.members:
                state.typing.pop(user_id, None)
                told = self._tell_typing(state, state.members[user_id], False)
                try:
                    await self.ephemeral(told.user_id, told.type, told.data)
                except Exception as exc:  # typing is best effort: never stored, never retried
                    log.info("typing not relayed", extra={"fields": {"error": repr(exc)}})


class _StaleSeq(Exception):
    """The chat's ``last_seq`` in storage is not what this entity holds: another holder wrote."""
