"""Chats, the read side in api processes: my chats and a chat's history, straight from storage (no actor hop),
with the membership check in the same round trip or the one before it; and starting a chat, the one chat write
that needs no chat entity (one chat per pair of users, by a unique constraint: a get-or-create).
"""

from __future__ import annotations

from typing import Any

import asyncpg

from actors.chat import message_view
from api.pagination import decode_cursor, keyset, page_of
from domain.errors import NotFound, ValidationFailed
from domain.present import public_media_url, rfc3339
from domain.rules import RuleError, normalize_username
from domain.wire.chats import Chat, ChatPage, Message, MessagePage
from domain.wire.users import UserSummary
from storage import chats as chat_store
from storage import db, ids
from storage import users as user_store
from storage.media import store as media_store


class ChatReader:
    """Reads of chats for one api process: ``base_url`` and ``signer`` make the media URLs (chat media are signed:
    issued to the chat's members only)."""

    def __init__(self, pool: asyncpg.Pool, base_url: str, signer: Any) -> None:
        self.pool = pool
        self.base_url = base_url
        self.signer = signer

    async def messages(self, conn: Any, rows: list[Any]) -> list[Message]:
        """The Messages of message rows, their media in one query."""
        media_ids = [int(r["media_id"]) for r in rows if r["media_id"] is not None]
        media = {int(m["id"]): m for m in await media_store.list_media(conn, media_ids)} if media_ids else {}
        base, signer = self.base_url, self.signer
        return [
            message_view(r, None if r["media_id"] is None else media.get(int(r["media_id"])), base, signer)
            for r in rows
        ]

    async def chats(self, conn: Any, rows: list[Any]) -> list[Chat]:
        """The Chats of chat rows (storage/chats.py ``list_chats``), their last messages in one query."""
        last_ids = [int(r["last_message_id"]) for r in rows if r["last_message_id"] is not None]
        last = await self.messages(conn, await chat_store.list_messages_by_id(conn, last_ids)) if last_ids else []
        by_id = {m.id: m for m in last}
        out = []
        for r in rows:
            avatar_id = r["peer_avatar_media_id"]
            peer = UserSummary(
                id=str(r["peer_id"]),
                username=r["peer_username"],
                name=r["peer_name"],
                avatar=None if avatar_id is None else public_media_url(self.base_url, int(avatar_id)),
            )
            out.append(
                Chat(
                    id=str(r["chat_id"]),
                    peer=peer,
                    last_message=None if r["last_message_id"] is None else by_id.get(str(r["last_message_id"])),
                    unread_count=int(r["unread_count"]),
                    updated_at=rfc3339(r["updated_at"]),
                )
            )
        return out

    async def chat(self, user_id: int, chat_id: int) -> Chat:
        """One of my chats; 404 when I am not in it."""
        rows = await chat_store.list_chats(self.pool, user_id, 1, None, chat_id=chat_id)
        if not rows:
            raise NotFound("No such chat.")
        return (await self.chats(self.pool, rows))[0]

    async def page(self, user_id: int, limit: int, cursor: str | None) -> ChatPage:
        """My chats, most recent activity first."""
        rows = await chat_store.list_chats(self.pool, user_id, limit + 1, decode_cursor(cursor))
        rows, next_cursor = page_of(rows, limit, "updated_at", "chat_id")
        return ChatPage(items=await self.chats(self.pool, rows), next_cursor=next_cursor)

    async def history(
        self, user_id: int, chat_id: int, *, before_seq: int | None, after_seq: int | None, limit: int
    ) -> MessagePage:
        """A chat's messages as I see them (those deleted for me left out); 404 when I am not in it."""
        if not await chat_store.is_member(self.pool, chat_id, user_id):
            raise NotFound("No such chat.")
        rows = await chat_store.list_messages(
            self.pool, chat_id, user_id, before_seq=before_seq, after_seq=after_seq, limit=limit + 1
        )
        page, last = keyset(rows, limit, lambda row: int(row["seq"]))
        return MessagePage(items=await self.messages(self.pool, page), has_more=last is not None)

    async def start(self, user_id: int, username: str) -> tuple[Chat, bool]:
        """My chat with ``username``, made when there was none (and whether it was): 404 for no such user, 422
        with myself."""
        try:
            name = normalize_username(username)
        except RuleError as exc:
            raise NotFound("No such user.") from exc
        peer = await user_store.find_user_by_username(self.pool, name)
        if peer is None:
            raise NotFound("No such user.")
        if int(peer["id"]) == user_id:
            raise ValidationFailed({"username": "you cannot chat with yourself"}, "You cannot chat with yourself.")
        async with db.transaction(self.pool) as conn:
            row, created = await chat_store.get_or_create_chat(conn, ids.new_id(), user_id, int(peer["id"]))
        return await self.chat(user_id, int(row["id"])), created
