"""The shard host runs a kind's ops through its explicit op table, in-process (real PostgreSQL and Redis)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any, ClassVar, TypeVar

import pytest

from actors.chat import ChatOps
from actors.runtime.host import Done, ShardHost, ShardKind, op_table
from actors.runtime.services import Services
from actors.runtime.shards import CHAT_KIND, USER_KIND
from domain.errors import DomainError, ValidationFailed
from domain.ops import GATEWAY_OPS, Op, Touch, op_types
from storage.config import Settings
from tests.conftest import REDIS_URL, TEST_JWT_SECRET

R = TypeVar("R")


@dataclass
class Counter:
    entity_id: int
    values: list[int] = field(default_factory=list)


class CounterOp(Op[R], frozen=True, kw_only=True):
    """The ops of a test kind: the entity is ``counter``."""

    KIND: ClassVar[str] = "counter"
    counter: int

    @property
    def entity(self) -> int:
        return self.counter


class Add(CounterOp[list[int]], frozen=True, kw_only=True):
    n: int


class Refuse(CounterOp[None], frozen=True, kw_only=True):
    pass


class Forgotten(CounterOp[None], frozen=True, kw_only=True):
    """An op of the kind that no handler takes: the kind refuses to start."""


class CounterOps:
    async def add(self, state: Counter, op: Add) -> Done[list[int]]:
        state.values.append(op.n)
        return Done(list(state.values), effects=[("added", op.n)])

    async def refuse(self, state: Counter, op: Refuse) -> Done[None]:
        raise ValidationFailed({"n": "is not allowed"})

    async def helper(self, state: Counter, n: int) -> None:
        """Not an op: its ``n`` is no op struct, so it is not in the table."""


class CounterOpsComplete(CounterOps):
    async def forgotten(self, state: Counter, op: Forgotten) -> Done[None]:
        return Done(None)


class CounterHost(ShardHost[Counter]):
    def __init__(self, kind: ShardKind[Counter], index: int, settings: Settings) -> None:
        super().__init__(kind, index, settings)
        self.finished: list[Done[Any]] = []

    async def finish(self, dones: Sequence[Done[Any]]) -> None:
        self.finished.extend(dones)


def counter_kind(handlers: Any) -> ShardKind[Counter]:
    return ShardKind(name="counter", state=Counter, keep=lambda s: False, ops=CounterOp, handlers=handlers)


COUNTER = counter_kind(lambda host: [CounterOpsComplete()])


@pytest.fixture
def settings(database_url: str, redis_prefix: str) -> Settings:
    return Settings(
        database_url=database_url, redis_url=REDIS_URL, redis_prefix=redis_prefix, jwt_secret=TEST_JWT_SECRET
    )


@pytest.fixture
async def host(settings: Settings) -> AsyncIterator[CounterHost]:
    made = CounterHost(COUNTER, 0, settings)
    yield made
    await made.close()


async def test_a_kind_is_its_state_class_plus_its_op_table(host: CounterHost) -> None:
    results = await host.call_batch([Add(counter=7, n=1), Add(counter=7, n=2), Add(counter=8, n=5)])
    assert results == [("ok", [1]), ("ok", [1, 2]), ("ok", [5])]
    # Every committed op's events and effects went through the one after-commit path, the result alone came back.
    assert [d.effects for d in host.finished] == [[("added", 1)], [("added", 2)], [("added", 5)]]
    status, wire = (await host.call_batch([Refuse(counter=7)]))[0]
    assert status == "err" and DomainError.from_wire(wire).code == "validation_failed"
    assert len(host.finished) == 3  # a failed op has nothing to finish
    # Only the table's op types run: an op of another kind is refused, whatever its name.
    status, wire = (await host.call_batch([Touch(user_id=7)]))[0]
    assert (status, DomainError.from_wire(wire).code) == ("err", "internal")
    assert (await host.ping())["kind"] == "counter"


async def test_a_kind_whose_op_has_no_handler_refuses_to_start(settings: Settings) -> None:
    host = CounterHost(counter_kind(lambda host: [CounterOps()]), 0, settings)
    with pytest.raises(TypeError, match="Forgotten"):
        await host.ready()
    await host.close()


async def test_a_kind_that_tracks_gateways_must_have_the_gateway_ops(settings: Settings) -> None:
    lacking = ShardKind(
        name="broken",
        state=Counter,
        keep=lambda s: False,
        ops=CounterOp,
        handlers=lambda host: [CounterOpsComplete()],
        sockets_of=lambda s, g: 0,
    )
    host = ShardHost(lacking, 0, settings)
    with pytest.raises(TypeError, match="gateway"):
        await host.ready()
    await host.close()


@pytest.mark.parametrize("kind", [USER_KIND, CHAT_KIND], ids=lambda k: k.name)
def test_the_op_table_is_derived_from_the_op_types_every_key_a_type(kind: ShardKind[Any]) -> None:
    """The op-table walk: every key is an op struct of the kind, every op struct of the kind has exactly one
    handler, and no string names an op."""
    services: Any = object.__new__(Services)  # the handlers are made without touching any service
    services.settings = Settings(jwt_secret=TEST_JWT_SECRET)
    host: Any = SimpleNamespace(services=services, chat_ops=lambda: ChatOps(services, _nothing))
    table = op_table(kind.handlers(host))
    assert all(isinstance(key, type) and issubclass(key, kind.ops) for key in table)
    assert set(table) == set(op_types(kind.ops))
    assert all(callable(handler) for handler in table.values())
    if kind is USER_KIND:
        assert set(GATEWAY_OPS) <= set(table)


async def _nothing(*_args: Any) -> None:
    return None
