"""The shard host runs a kind's ops through its explicit op table, in-process (real PostgreSQL and Redis)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import pytest

from actors.runtime.host import GATEWAY_OPS, ShardHost, ShardKind
from actors.runtime.services import Services
from actors.runtime.shards import USER_KIND
from domain.errors import DomainError, ValidationFailed
from storage.config import Settings
from tests.conftest import REDIS_URL, TEST_JWT_SECRET


@dataclass
class Counter:
    entity_id: int
    values: list[int] = field(default_factory=list)


async def _add(state: Counter, n: int) -> list[int]:
    state.values.append(n)
    return list(state.values)


async def _refuse(state: Counter) -> None:
    raise ValidationFailed({"n": "is not allowed"})


COUNTER = ShardKind(
    name="counter", state=Counter, keep=lambda s: False, ops=lambda _s: {"add": _add, "refuse": _refuse}
)


@pytest.fixture
def settings(database_url: str, redis_prefix: str) -> Settings:
    return Settings(
        database_url=database_url, redis_url=REDIS_URL, redis_prefix=redis_prefix, jwt_secret=TEST_JWT_SECRET
    )


@pytest.fixture
async def host(settings: Settings) -> AsyncIterator[ShardHost[Counter]]:
    made = ShardHost(COUNTER, 0, settings)
    yield made
    await made.close()


async def test_a_kind_is_its_state_class_plus_its_op_table(host: ShardHost[Counter]) -> None:
    results = await host.call_batch([("add", 7, (1,), {}), ("add", 7, (2,), {}), ("add", 8, (5,), {})])
    assert results == [("ok", [1]), ("ok", [1, 2]), ("ok", [5])]
    status, wire = (await host.call_batch([("refuse", 7, (), {})]))[0]
    assert status == "err" and DomainError.from_wire(wire).code == "validation_failed"
    # Only the table's ops run: no attribute of anything is reachable by name.
    for name in ("values", "__init__", "_load", "append", "ready"):
        status, wire = (await host.call_batch([(name, 7, (), {})]))[0]
        assert (status, DomainError.from_wire(wire).code) == ("err", "internal"), name
    assert (await host.ping())["kind"] == "counter"


async def test_a_kind_that_tracks_gateways_must_have_the_gateway_ops(settings: Settings) -> None:
    lacking = ShardKind(
        name="broken", state=Counter, keep=lambda s: False, ops=lambda _s: {"add": _add}, sockets_of=lambda s, g: 0
    )
    host = ShardHost(lacking, 0, settings)
    with pytest.raises(TypeError, match="connect"):
        await host.ready()
    await host.close()


def test_the_user_kind_routes_exactly_its_public_operations() -> None:
    services: Any = object.__new__(Services)  # the table is built without touching any service
    table = USER_KIND.ops(SimpleNamespace(services=services))
    assert set(GATEWAY_OPS) <= set(table)
    assert set(table) == {
        *GATEWAY_OPS,
        "presence",
        "sessions_revoked",
        "update_profile",
        "set_avatar",
        "create_post",
        "delete_post",
        "react_post",
        "unreact_post",
        "mark_post",
        "comment",
        "delete_comment",
        "react_comment",
        "unreact_comment",
        "follow",
        "unfollow",
        "follow_interest",
        "explore_feedback",
        "set_recommendation_knobs",
        "touch",
    }
