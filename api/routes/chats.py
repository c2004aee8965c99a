"""/chats: 1:1 chats and their messages (issue 10).

Writes go to the chat's ChatShard entity (actors/chat.py), the chat's single writer: one Ray hop, which commits,
appends the events to both members' streams in ``seq`` order and pushes them live before answering. Starting a
chat needs no entity (one chat per pair, by a unique constraint); reads go straight to storage with the
membership check in the same round trip or the one before it (api/reads/chats.py). Everything about a chat the
caller is not a member of is 404.
"""

from __future__ import annotations

from typing import Annotated

import msgspec
from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.responses import Response

from api.contract import PathId, body, decode_body, operation, ref
from api.deps import Ctx, User, WriteLimit
from api.pagination import DEFAULT_LIMIT, Cursor, Limit
from api.reads.chats import ChatReader
from api.responses import Encoded, encoded, no_content
from domain import chat as chat_rules
from domain import ops
from domain.chat import send_op
from domain.errors import ValidationFailed
from domain.wire.chats import (
    NEW_MESSAGE,
    Chat,
    ChatPage,
    Message,
    MessageEdit,
    MessagePage,
    NewChat,
    NewMessageOfType,
    ReadUpTo,
    new_message_type,
)
from domain.wire.posts import NewReaction

router = APIRouter(tags=["chats"])

ChatId = Annotated[PathId, Path(description="A chat id")]
MessageId = Annotated[PathId, Path(description="A message id")]
Seq = Annotated[int | None, Query(ge=0, le=1 << 62)]


def _reader(ctx: Ctx) -> ChatReader:
    return ChatReader(ctx.services.pool, ctx.services.settings.public_base_url, ctx.media_signer)


# ------------------------------------------------------------ the body of a send: one shape per message type


class _Kind(msgspec.Struct):
    type: str | None = None


_KIND = msgspec.json.Decoder(_Kind)


def _kind(raw: bytes) -> str | None:
    try:
        return _KIND.decode(raw).type
    except (msgspec.DecodeError, UnicodeDecodeError, RecursionError):  # decode_body says what is wrong with it
        return None


def decode_new_message(raw: bytes) -> NewMessageOfType:
    """A send's body as the struct of its ``type`` (``NEW_MESSAGE``), naming every bad field at once (422); a body
    without a known ``type`` is 422 on ``type`` (400 when it is no JSON object)."""
    kind = _kind(raw)
    cls = NEW_MESSAGE.get(kind or "")
    if cls is None:
        decode_body(raw, _Kind)  # 400 for a body that is no JSON object
        raise ValidationFailed({"type": new_message_type(kind) or "is invalid"})
    return decode_body(raw, cls)


async def _new_message(request: Request) -> NewMessageOfType:
    return decode_new_message(await request.body())


NEW_MESSAGE_BODY = {
    "required": True,
    "content": {
        "application/json": {
            "schema": {
                "oneOf": [ref(cls) for cls in NEW_MESSAGE.values()],
                "discriminator": {
                    "propertyName": "type",
                    "mapping": {kind: ref(cls)["$ref"] for kind, cls in NEW_MESSAGE.items()},
                },
            }
        }
    },
}


# ------------------------------------------------------------ chats


@router.get("/chats", **operation("listChats", ok=ChatPage, errors=(401, 422)))
async def list_chats(
    request: Request, user: User, ctx: Ctx, limit: Limit = DEFAULT_LIMIT, cursor: Cursor = None
) -> Encoded:
    """My chats, most recent activity first, each with the peer, the last message I can see and my exact
    unread count."""
    return encoded(request, await _reader(ctx).page(user.user_id, limit, cursor))


@router.post(
    "/chats",
    **operation(
        "startChat",
        ok=Chat,
        status=201,
        description="The chat, made now",
        request=NewChat,
        also={200: (Chat, "The chat already existed")},
        errors=(401, 404, 422, 429),
    ),
    dependencies=[WriteLimit],
)
async def start_chat(request: Request, user: User, ctx: Ctx, payload: NewChat = body(NewChat)) -> Encoded:
    """Get or create the chat with this user: one chat per pair, whoever starts it (201 when made, 200 when it
    existed); 422 with yourself."""
    chat, created = await _reader(ctx).start(user.user_id, payload.username)
    return encoded(request, chat, status_code=201 if created else 200)


# ------------------------------------------------------------ messages


@router.get("/chats/{chat_id}/messages", **operation("listMessages", ok=MessagePage, errors=(401, 404, 422)))
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
    page = await _reader(ctx).history(user.user_id, chat_id, before_seq=before_seq, after_seq=after_seq, limit=limit)
    return encoded(request, page)


@router.post(
    "/chats/{chat_id}/messages",
    **operation(
        "sendMessage",
        ok=Message,
        status=201,
        description="The message, sent now",
        also={200: (Message, "This client_id was sent before: the same message")},
        errors=(401, 403, 404, 422, 429, 503),
        extra={"requestBody": NEW_MESSAGE_BODY},
    ),
    dependencies=[WriteLimit],
)
async def send_message(
    request: Request, chat_id: ChatId, user: User, ctx: Ctx, payload: NewMessageOfType = Depends(_new_message)
) -> Encoded:
    """Send a message (201); the same `client_id` again (a retry, over HTTP or the socket) returns the same
    message (200), and with a different body 422 `idempotency_key_reused`. Which fields a message takes depends
    on its `type`."""
    message, created = await ctx.chats.call(send_op(chat_id, user.user_id, msgspec.structs.asdict(payload)))
    return encoded(request, message, status_code=201 if created else 200)


@router.patch(
    "/chats/{chat_id}/messages/{message_id}",
    **operation("editMessage", ok=Message, request=MessageEdit, errors=(401, 403, 404, 422, 429)),
    dependencies=[WriteLimit],
)
async def edit_message(
    request: Request,
    chat_id: ChatId,
    message_id: MessageId,
    user: User,
    ctx: Ctx,
    payload: MessageEdit = body(MessageEdit),
) -> Encoded:
    """Edit a text message (sender only); `edited_at` is set and both members get `chat.message_edited`."""
    text = chat_rules.text(payload.text, "text", chat_rules.MAX_TEXT)
    op = ops.EditMessage(chat_id=chat_id, user_id=user.user_id, message_id=message_id, text=text)
    return encoded(request, await ctx.chats.call(op))


@router.delete(
    "/chats/{chat_id}/messages/{message_id}",
    **operation("deleteMessage", status=204, description="Deleted", errors=(401, 403, 404, 422, 429)),
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
    **operation("reactToMessage", ok=Message, request=NewReaction, errors=(401, 404, 422, 429)),
    dependencies=[WriteLimit],
)
async def react(
    request: Request,
    chat_id: ChatId,
    message_id: MessageId,
    user: User,
    ctx: Ctx,
    payload: NewReaction = body(NewReaction),
) -> Encoded:
    """React with one emoji (one per member per message; a new one replaces mine)."""
    emoji = chat_rules.check_emoji(payload.emoji)
    op = ops.ReactToMessage(chat_id=chat_id, user_id=user.user_id, message_id=message_id, emoji=emoji)
    return encoded(request, await ctx.chats.call(op))


@router.delete(
    "/chats/{chat_id}/messages/{message_id}/reaction",
    **operation("unreactToMessage", status=204, description="Removed (or there was none)", errors=(401, 404, 422, 429)),
    dependencies=[WriteLimit],
)
async def unreact(chat_id: ChatId, message_id: MessageId, user: User, ctx: Ctx) -> Response:
    """Remove my reaction (nothing happens when there is none)."""
    await ctx.chats.call(ops.UnreactToMessage(chat_id=chat_id, user_id=user.user_id, message_id=message_id))
    return no_content()


@router.post(
    "/chats/{chat_id}/read",
    **operation("markChatRead", status=204, description="Recorded", request=ReadUpTo, errors=(401, 404, 422, 429)),
    dependencies=[WriteLimit],
)
async def mark_read(chat_id: ChatId, user: User, ctx: Ctx, payload: ReadUpTo = body(ReadUpTo)) -> Response:
    """I have read up to `seq` (never past the last message: 422 `seq_out_of_range`); the peer gets
    `chat.receipt`."""
    await ctx.chats.call(ops.ReportProgress(chat_id=chat_id, user_id=user.user_id, kind="read", seq=payload.seq))
    return no_content()
