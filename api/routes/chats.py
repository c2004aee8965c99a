"""/chats: 1:1 chats and their messages (issue 10).

Writes go to the chat's ChatShard entity (actors/chat.py), the chat's single writer: one Ray hop, which commits,
appends the events to both members' streams in ``seq`` order and pushes them live before answering. Starting a
chat needs no entity (one chat per pair, by a unique constraint); reads go straight to storage with the
membership check in the same round trip or the one before it. Everything about a chat the caller is not a member
of is 404.
"""

from __future__ import annotations

from typing import Annotated, Any

import asyncpg
from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import Response

from actors.chat import message_view
from api import presenters
from api.deps import Ctx, User, WriteLimit
from api.pagination import DEFAULT_LIMIT, Cursor, Limit, decode_cursor, encode_cursor
from api.responses import Encoded, encoded, no_content
from api.schemas.chats import Chat, ChatPage, EditMessage, Message, MessagePage, React, ReadUpTo, SendMessage, StartChat
from api.schemas.common import error_responses
from domain import chat as chat_rules
from domain import ops
from domain.chat import send_op
from domain.errors import NotFound, ValidationFailed
from domain.rules import RuleError, normalize_username
from storage import chats as chat_store
from storage import db, ids
from storage import users as user_store
from storage.media import store as media_store

router = APIRouter(tags=["chats"])

ChatId = Annotated[int, Path(ge=1, le=(1 << 63) - 1, description="A chat id")]
MessageId = Annotated[int, Path(ge=1, le=(1 << 63) - 1, description="A message id")]
Seq = Annotated[int | None, Query(ge=0, le=1 << 62)]


def _with_200(description: str, model: Any, *statuses: int) -> dict[int | str, dict[str, Any]]:
    out: dict[int | str, dict[str, Any]] = {200: {"description": description, "model": model}}
    out.update(error_responses(*statuses))
    return out


def _signer(ctx: Ctx) -> Any:
    return ctx.media_signer


async def _messages(ctx: Ctx, conn: Any, rows: list[Any]) -> list[dict[str, Any]]:
    """Message views for rows, their media in one query."""
    media_ids = [int(r["media_id"]) for r in rows if r["media_id"] is not None]
    media = {int(m["id"]): m for m in await media_store.list_media(conn, media_ids)} if media_ids else {}
    base = ctx.services.settings.public_base_url
    signer = _signer(ctx)
    return [
        message_view(r, None if r["media_id"] is None else media.get(int(r["media_id"])), base, signer) for r in rows
    ]


async def _chats(ctx: Ctx, conn: Any, rows: list[Any]) -> list[dict[str, Any]]:
    last_ids = [int(r["last_message_id"]) for r in rows if r["last_message_id"] is not None]
    messages = await _messages(ctx, conn, await chat_store.list_messages_by_id(conn, last_ids)) if last_ids else []
    by_id = {m["id"]: m for m in messages}
    out = []
    for r in rows:
        peer = {
            "id": r["peer_id"],
            "username": r["peer_username"],
            "name": r["peer_name"],
            "avatar_media_id": r["peer_avatar_media_id"],
        }
        last = None if r["last_message_id"] is None else by_id.get(str(r["last_message_id"]))
        out.append(
            {
                "id": str(r["chat_id"]),
                "peer": presenters.user_summary(peer),
                "last_message": last,
                "unread_count": int(r["unread_count"]),
                "updated_at": presenters.rfc3339(r["updated_at"]),
            }
        )
    return out


async def _chat(ctx: Ctx, conn: Any, user_id: int, chat_id: int) -> dict[str, Any]:
    rows = await chat_store.list_chats(conn, user_id, 1, None, chat_id=chat_id)
    if not rows:
        raise NotFound("No such chat.")
    return (await _chats(ctx, conn, rows))[0]


@router.get("/chats", response_model=ChatPage, responses=error_responses(401, 422))
async def list_chats(
    request: Request, user: User, ctx: Ctx, limit: Limit = DEFAULT_LIMIT, cursor: Cursor = None
) -> Encoded:
    """My chats, most recent activity first, each with the peer, the last message I can see and my exact
    unread count."""
    pool = ctx.services.pool
    rows = await chat_store.list_chats(pool, user.user_id, limit + 1, decode_cursor(cursor))
    more, rows = len(rows) > limit, rows[:limit]
    next_cursor = encode_cursor(rows[-1]["updated_at"], int(rows[-1]["chat_id"])) if more and rows else None
    return encoded(request, {"items": await _chats(ctx, pool, rows), "next_cursor": next_cursor})


@router.post(
    "/chats",
    status_code=201,
    response_model=Chat,
    responses=_with_200("The chat already existed", Chat, 401, 404, 422, 429),
    dependencies=[WriteLimit],
)
async def start_chat(request: Request, body: StartChat, user: User, ctx: Ctx) -> Encoded:
    """Get or create the chat with this user: one chat per pair, whoever starts it (201 when made, 200 when it
    existed); 422 with yourself."""
    pool: asyncpg.Pool = ctx.services.pool
    try:
        name = normalize_username(body.username)
    except RuleError as exc:
        raise NotFound("No such user.") from exc
    peer = await user_store.find_user_by_username(pool, name)
    if peer is None:
        raise NotFound("No such user.")
    if int(peer["id"]) == user.user_id:
        raise ValidationFailed({"username": "you cannot chat with yourself"}, "You cannot chat with yourself.")
    async with db.transaction(pool) as conn:
        row, created = await chat_store.get_or_create_chat(conn, ids.new_id(), user.user_id, int(peer["id"]))
    chat = await _chat(ctx, pool, user.user_id, int(row["id"]))
    return encoded(request, chat, status_code=201 if created else 200)


@router.get("/chats/{chat_id}/messages", response_model=MessagePage, responses=error_responses(401, 404, 422))
async def history(
    request: Request,
    chat_id: ChatId,
    user: User,
    ctx: Ctx,
    before_seq: Seq = None,
    after_seq: Seq = None,
    limit: Limit = DEFAULT_LIMIT,
) -> Encoded:
    """The chat's messages: the newest ones (or those before `before_seq`), newest first; or those after
    `after_seq` (and before `before_seq`, if given too), oldest first. Messages deleted for me are left out;
    deleted for everyone show `deleted: true`."""
    pool = ctx.services.pool
    if not await chat_store.is_member(pool, chat_id, user.user_id):
        raise NotFound("No such chat.")
    rows = await chat_store.list_messages(
        pool, chat_id, user.user_id, before_seq=before_seq, after_seq=after_seq, limit=limit + 1
    )
    more, rows = len(rows) > limit, rows[:limit]
    return encoded(request, {"items": await _messages(ctx, pool, rows), "has_more": more})


@router.post(
    "/chats/{chat_id}/messages",
    status_code=201,
    response_model=Message,
    responses=_with_200("This client_id was sent before: the same message", Message, 401, 403, 404, 422, 429, 503),
    dependencies=[WriteLimit],
)
async def send_message(request: Request, chat_id: ChatId, body: SendMessage, user: User, ctx: Ctx) -> Encoded:
    """Send a message (201); the same `client_id` again (a retry, over HTTP or the socket) returns the same
    message (200), and with a different body 422 `idempotency_key_reused`."""
    result = await ctx.chats.call(send_op(chat_id, user.user_id, body.model_dump(exclude_none=True)))
    return encoded(request, result["message"], status_code=201 if result["created"] else 200)


@router.patch(
    "/chats/{chat_id}/messages/{message_id}",
    response_model=Message,
    responses=error_responses(401, 403, 404, 422, 429),
    dependencies=[WriteLimit],
)
async def edit_message(
    request: Request, chat_id: ChatId, message_id: MessageId, body: EditMessage, user: User, ctx: Ctx
) -> Encoded:
    """Edit a text message (sender only); `edited_at` is set and both members get `chat.message_edited`."""
    text = chat_rules.text(body.text, "text", chat_rules.MAX_TEXT)
    view = await ctx.chats.call(
        ops.EditMessage(chat_id=chat_id, user_id=user.user_id, message_id=message_id, text=text)
    )
    return encoded(request, view)


@router.delete(
    "/chats/{chat_id}/messages/{message_id}",
    status_code=204,
    responses=error_responses(401, 403, 404, 422, 429),
    dependencies=[WriteLimit],
)
async def delete_message(
    chat_id: ChatId,
    message_id: MessageId,
    user: User,
    ctx: Ctx,
    scope: Annotated[str, Query(alias="for", pattern="^(me|everyone)$")] = "me",
) -> Response:
    """`?for=me` hides the message from me only (either member's message); `?for=everyone` (sender only) leaves
    `deleted: true` with no text, media or caption for both."""
    op = ops.DeleteMessage(chat_id=chat_id, user_id=user.user_id, message_id=message_id, scope=scope)  # type: ignore[arg-type]
    await ctx.chats.call(op)
    return no_content()


@router.put(
    "/chats/{chat_id}/messages/{message_id}/reaction",
    response_model=Message,
    responses=error_responses(401, 404, 422, 429),
    dependencies=[WriteLimit],
)
async def react(request: Request, chat_id: ChatId, message_id: MessageId, body: React, user: User, ctx: Ctx) -> Encoded:
    """React with one emoji (one per member per message; a new one replaces mine)."""
    emoji = chat_rules.check_emoji(body.emoji)
    op = ops.ReactToMessage(chat_id=chat_id, user_id=user.user_id, message_id=message_id, emoji=emoji)
    view = await ctx.chats.call(op)
    return encoded(request, view)


@router.delete(
    "/chats/{chat_id}/messages/{message_id}/reaction",
    status_code=204,
    responses=error_responses(401, 404, 422, 429),
    dependencies=[WriteLimit],
)
async def unreact(chat_id: ChatId, message_id: MessageId, user: User, ctx: Ctx) -> Response:
    """Remove my reaction (nothing happens when there is none)."""
    await ctx.chats.call(ops.UnreactToMessage(chat_id=chat_id, user_id=user.user_id, message_id=message_id))
    return no_content()


@router.post(
    "/chats/{chat_id}/read",
    status_code=204,
    responses=error_responses(401, 404, 422, 429),
    dependencies=[WriteLimit],
)
async def mark_read(chat_id: ChatId, body: ReadUpTo, user: User, ctx: Ctx) -> Response:
    """I have read up to `seq` (never past the last message: 422 `seq_out_of_range`); the peer gets
    `chat.receipt`."""
    await ctx.chats.call(ops.ReportProgress(chat_id=chat_id, user_id=user.user_id, kind="read", seq=body.seq))
    return no_content()
