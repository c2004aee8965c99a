"""The chat entity against real PostgreSQL and Redis, in-process (no Ray): two holders of one chat (a restarted
shard next to a stale one) never write the same seq nor leave a gap: the stale one's guarded UPDATE fails, it
reloads and writes the next seq. Receipts only move forward and never past the last seq."""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator
from typing import Any

import msgspec
import pytest

from actors.chat import ChatOps, ChatState
from actors.runtime.services import Services
from domain.chat import send_op
from domain.errors import NotFound, ValidationFailed
from domain.ops import ReportProgress
from storage import chats as chat_store
from storage import db, ids
from storage import users as user_store
from tests.storage.fresh_db import fresh_database, private_services


@pytest.fixture(scope="module")
async def chat_dsn() -> AsyncIterator[str]:
    async with fresh_database("i9chat") as dsn:
        yield dsn


@pytest.fixture
async def services(chat_dsn: str) -> AsyncIterator[Services]:
    async with private_services(chat_dsn) as made:
        yield made


async def _nothing(*_args: Any) -> None:
    return None


def ops_of(services: Services) -> ChatOps:
    return ChatOps(services, _nothing)


async def send(ops: ChatOps, state: ChatState, user_id: int, client_id: str) -> dict[str, Any]:
    """A text message through the op handler (the host would publish its events after it)."""
    done = await ops.send(state, send_op(state.chat_id, user_id, text(client_id)))
    message, created = done.result
    return {"message": msgspec.to_builtins(message), "created": created}


async def progress(ops: ChatOps, state: ChatState, user_id: int, kind: str, seq: int) -> dict[str, Any]:
    op = ReportProgress(chat_id=state.chat_id, user_id=user_id, kind=kind, seq=seq)  # type: ignore[arg-type]
    done = await ops.progress(state, op)
    receipt: dict[str, Any] = msgspec.to_builtins(done.result)
    return receipt


async def a_chat(services: Services) -> tuple[int, int, int]:
    async with db.transaction(services.pool) as conn:
        people = []
        for _ in range(2):
            uid = ids.new_id()
            name = f"u{uid}"[-20:]
            await user_store.insert_user(
                conn,
                user_id=uid,
                username=name,
                email=f"{name}@example.com",
                name="U",
                bio="",
                birthday=dt.date(2000, 1, 31),
                password_hash="x",
            )
            people.append(uid)
        row, created = await chat_store.get_or_create_chat(conn, ids.new_id(), people[0], people[1])
        assert created
    return int(row["id"]), people[0], people[1]


def text(client_id: str) -> dict[str, Any]:
    return {"client_id": client_id, "type": "text", "text": client_id}


async def test_a_stale_second_holder_reloads_and_writes_the_next_seq(services: Services) -> None:
    chat_id, a, b = await a_chat(services)
    first, second = ops_of(services), ops_of(services)
    old, new = ChatState(chat_id), ChatState(chat_id)
    assert (await send(first, old, a, "one"))["message"]["seq"] == 1
    assert (await send(second, new, b, "two"))["message"]["seq"] == 2  # the restarted holder loads seq 1
    assert old.last_seq == 1  # the stale holder still thinks 1 is the last
    assert (await send(first, old, a, "three"))["message"]["seq"] == 3
    assert (await send(second, new, b, "four"))["message"]["seq"] == 4
    rows = await services.pool.fetch("SELECT seq, client_id FROM messages WHERE chat_id = $1 ORDER BY seq", chat_id)
    assert [(r["seq"], r["client_id"]) for r in rows] == [(1, "one"), (2, "two"), (3, "three"), (4, "four")]
    # A retry on the other holder is still the same message.
    again = await send(second, new, a, "one")
    assert again["created"] is False and again["message"]["seq"] == 1


async def test_receipts_move_forward_only_and_never_past_the_last_seq(services: Services) -> None:
    chat_id, a, b = await a_chat(services)
    ops = ops_of(services)
    state = ChatState(chat_id)
    for n in range(3):
        await send(ops, state, a, f"m{n}")
    assert await progress(ops, state, b, "delivered", 2) == {
        "chat_id": str(chat_id),
        "username": state.members[b].username,
        "delivered_seq": 2,
        "read_seq": 0,
    }
    assert (await progress(ops, state, b, "read", 3))["delivered_seq"] == 3  # reading implies delivery
    assert (await progress(ops, state, b, "read", 1))["read_seq"] == 3  # never backwards
    with pytest.raises(ValidationFailed):
        await progress(ops, state, b, "read", 4)
    with pytest.raises(NotFound):
        await progress(ops, state, ids.new_id(), "read", 1)  # not a member
    stored = await services.pool.fetchrow(
        "SELECT delivered_seq, read_seq FROM chat_members WHERE chat_id = $1 AND user_id = $2", chat_id, b
    )
    assert (stored["delivered_seq"], stored["read_seq"]) == (3, 3)
