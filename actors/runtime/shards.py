"""Ray shells around the shard host (actors/runtime/host.py): named, detached, async shard actors, one kind each.

A UserShard hosts many logical per-user actors: the shard host with the user kind (``USER_KIND``: the plain
``UserState`` and the handlers of the user ops: presence, profile, posts, engagement, follows, recommendations).
Entity ops (typed structs, domain/ops.py) arrive in batches (``call_batch``) from each api
process's ShardClient and run under their entity's lock. Shard-level calls: ``heartbeat``/``register``
(gateways keep their socket lists in sync; a restarted shard has a new ``epoch`` and gateways re-register), and
background jobs: the outbox relay, the retention purge and the refresh of the users' routes (storage/routes.py:
committed events reach gateways through Redis, never through another shard).
"""

from __future__ import annotations

import logging
import signal
import time
from collections.abc import Sequence
from typing import Any

import msgpack
import ray
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from actors import recommendations, retention
from actors.after_commit import AfterCommit
from actors.chat import ChatOps, ChatState
from actors.engagement import EngagementOps
from actors.fanout import FanoutWorker
from actors.follows import FollowOps
from actors.posts import PostOps
from actors.profile import ProfileOps
from actors.recommendations import RecommendationOps
from actors.runtime.delivery import Delivery
from actors.runtime.host import Done, Result, ShardHost, ShardKind
from actors.runtime.registry import shard_name
from actors.runtime.services import Services
from actors.runtime.topology import retire_stale_shards
from actors.runtime.versioning import shard_fingerprint
from actors.user import PresenceOps, UserState
from domain.ops import ChatOp, Op, UserOp
from storage.config import Settings
from storage.routes import ROUTE_REFRESH_S

log = logging.getLogger("i9lyfe.shard")

RELAY_INTERVAL_S = 2.0
# A shard reserves no CPU, but Ray's soft node affinity is not honoured for a request of no resources at all
# (measured on a two-node cluster: 3-4 of 6 actors on the asked node); 1 MiB of logical memory, which blocks no
# CPU task, makes it honoured (6 of 6).
PLACEMENT_MEMORY = 2**20

USER_KIND: ShardKind[UserState] = ShardKind(
    name="user",
    state=UserState,
    keep=UserState.holds_anything,
    ops=UserOp,
    handlers=lambda host: [
        PresenceOps(host.services),
        ProfileOps(host.services),
        PostOps(host.services),
        EngagementOps(host.services),
        FollowOps(host.services),
        RecommendationOps(host.services),
    ],
    sockets_of=lambda state, gateway: state.presence.socket_count(gateway),
    count=lambda settings: settings.user_shards,
)


class UserShardCore(ShardHost[UserState]):
    """Everything a UserShard does, without the Ray decorator (so it can run in-process in tests)."""

    KIND = USER_KIND

    def __init__(self, index: int, settings: Settings, *, fanout: bool = False) -> None:
        super().__init__(USER_KIND, index, settings)
        self._consume_fanout = fanout  # the Ray shard is a feed fan-out consumer; an in-process core (tests) is not
        self.delivery: Delivery | None = None
        self.after: AfterCommit | None = None
        self.fanout: FanoutWorker | None = None
        self.every("outbox relay", RELAY_INTERVAL_S, self._relay)
        self.every("retention purge", retention.PURGE_INTERVAL_S, self._purge)
        self.every("recommendations refresh", settings.recs_refresh_s, self._refresh_recommendations)
        self.every("routes refresh", ROUTE_REFRESH_S, self._refresh_routes)

    async def on_ready(self, services: Services) -> None:
        self.delivery = Delivery(services)
        self.after = AfterCommit(services, self.delivery)
        # Every UserShard is a consumer of the feed fan-out queue, under a stable name: restarted, it resumes
        # its own unfinished jobs (actors/fanout.py).
        if self._consume_fanout:
            # One consumer name per shard and deploy (a restart keeps it; another version's shards are others).
            consumer = f"user-shard-{self.index}-{shard_fingerprint(self.settings)}"
            self.fanout = FanoutWorker(services, consumer, self.delivery.push)
            self.daemon("feed fan-out", self.fanout.run)

    async def finish(self, dones: Sequence[Done[Any]]) -> None:
        assert self.after is not None, "made in on_ready"
        await self.after.run(dones)

    @property
    def gateway_users(self) -> dict[str, set[int]]:
        return self.gateway_entities

    async def _relay(self) -> None:
        assert self.delivery is not None
        await self.delivery.relay_once()

    async def _purge(self) -> None:
        """Purge sent outbox rows, ended sessions and finished auth flows (one shard at a time, by lock)."""
        await retention.purge_once(self.services)

    async def _refresh_recommendations(self) -> None:
        """Trending posts, each interest's top posts and authors (actors/recommendations.py); one shard at a time."""
        await recommendations.refresh(self.services.pool, self.settings.recs_refresh_s)

    async def _refresh_routes(self) -> None:
        """Rewrite the routes of every user with open sockets here: their expiry is pushed back, and a route lost
        with Redis's data comes back (storage/routes.py)."""
        routes = {}
        for user_id in self.table.ids():
            state = self.table.peek(user_id)
            if state is not None and state.presence.online:
                routes[user_id] = state.presence.gateways()
        if routes:
            assert self.delivery is not None
            await self.delivery.routes.mirror_all(routes)


CHAT_KIND: ShardKind[ChatState] = ShardKind(
    name="chat",
    state=ChatState,
    keep=ChatState.holds_anything,
    ops=ChatOp,
    handlers=lambda host: [host.chat_ops()],
    count=lambda settings: settings.chat_shards,
    stale=ChatState.unload,
)
TYPING_CHECK_S = 1.0


class ChatShardCore(ShardHost[ChatState]):
    """Everything a ChatShard does, without the Ray decorator: the chat entities (actors/chat.py), delivery of
    their committed events to the members' streams and gateways (storage/routes.py), and the typing expiry."""

    KIND = CHAT_KIND

    def __init__(self, index: int, settings: Settings) -> None:
        super().__init__(CHAT_KIND, index, settings)
        self.delivery: Delivery | None = None
        self.ops: ChatOps | None = None
        self.after: AfterCommit | None = None
        self.every("typing expiry", TYPING_CHECK_S, self._expire_typing)

    async def on_ready(self, services: Services) -> None:
        self.delivery = Delivery(services)
        self.after = AfterCommit(services, self.delivery, self._ephemeral)
        self.ops = ChatOps(services, self._ephemeral)

    async def finish(self, dones: Sequence[Done[Any]]) -> None:
        assert self.after is not None, "made in on_ready"
        await self.after.run(dones)

    def chat_ops(self) -> ChatOps:
        assert self.ops is not None, "made in on_ready"
        return self.ops

    async def _ephemeral(self, user_id: int, type_: str, data: dict[str, Any]) -> None:
        """A live-only event (no stream entry, no id) to one user's sockets, through the user's route."""
        assert self.delivery is not None, "made in on_ready"
        await self.delivery.push([(user_id, None, type_, msgpack.packb(data, use_bin_type=True), None)])

    async def _expire_typing(self) -> None:
        if self.ops is None:
            return
        now = time.monotonic()
        for chat_id in self.table.ids():
            state = self.table.peek(chat_id)
            if state is not None and state.typing and min(state.typing.values()) <= now:
                await self.table.run(chat_id, lambda st: self.ops.expire_typing(st, now))  # type: ignore[union-attr]


# The shard cores by kind: one Ray actor class (``Shard``) hosts any of them.
CORES: dict[str, Any] = {"user": UserShardCore, "chat": ChatShardCore}


@ray.remote
class Shard:
    """A named, detached shard actor of one kind: the Ray shell around that kind's shard host."""

    def __init__(
        self,
        kind: str,
        index: int,
        settings: dict[str, Any],
    ) -> None:
        logging.basicConfig(level=settings.get("log_level", "INFO"))
        parsed = Settings.from_dict(settings)
        self.core: UserShardCore | ChatShardCore
        if kind == "chat":
            self.core = ChatShardCore(index, parsed)
        else:
            self.core = UserShardCore(index, parsed, fanout=True)
        self._node = ray.get_runtime_context().get_node_id()

    async def ping(self) -> dict[str, Any]:
        return await self.core.ping(node=self._node)

    async def call_batch(self, ops: list[Op[Any]]) -> list[Result]:
        return await self.core.call_batch(ops)

    async def heartbeat(self, gateway: str, sockets: int) -> dict[str, Any]:
        return await self.core.heartbeat(gateway, sockets)

    async def register(
        self, gateway: str, sockets: dict[int, list[str]], seq: int, departed: dict[int, float] | None = None
    ) -> dict[str, Any]:
        return await self.core.register(gateway, sockets, seq, departed)


def connect_ray(settings: Settings) -> None:
    if ray.is_initialized():
        return
    # ray.init installs its own SIGTERM handler; keep uvicorn's so shutdown runs the lifespan cleanly.
    saved = signal.getsignal(signal.SIGTERM)
    try:
        ray.init(
            address=settings.ray_address or "auto",
            namespace=settings.ray_namespace,
            log_to_driver=False,
            configure_logging=False,
        )
    finally:
        signal.signal(signal.SIGTERM, saved)


def disconnect_ray() -> None:
    ray.shutdown()


def alive_nodes() -> list[str]:
    """The ids of the cluster's alive nodes, sorted: every process placing shards sees the same order."""
    return sorted(node["NodeID"] for node in ray.nodes() if node.get("Alive"))  # type: ignore[no-untyped-call]


def placement(nodes: list[str], k: int) -> NodeAffinitySchedulingStrategy | str:
    """Shard ``k`` on the k-th node modulo the node count, softly: if that node dies (or is full), Ray restarts
    the shard on another one. A shard that already exists stays where it is (``get_if_exists``)."""
    if not nodes:
        return "DEFAULT"
    return NodeAffinitySchedulingStrategy(node_id=nodes[k % len(nodes)], soft=True)


def get_or_create_shards(kind: str, settings: Settings, ready_timeout_s: float = 60.0) -> list[Any]:
    """Handles to the K shards of ``kind`` of this version, creating any that do not exist (races between
    processes are fine); once they answer, shards of other versions in the namespace are retired
    (actors/runtime/topology.py)."""
    fingerprint = shard_fingerprint(settings)
    count = CORES[kind].KIND.count(settings)
    names = [shard_name(kind, fingerprint, k) for k in range(count)]
    nodes = alive_nodes()
    handles = []
    for k, name in enumerate(names):
        handles.append(
            Shard.options(  # type: ignore[attr-defined]
                name=name,
                namespace=settings.ray_namespace,
                lifetime="detached",
                get_if_exists=True,
                max_restarts=-1,
                num_cpus=0,
                memory=PLACEMENT_MEMORY,
                max_concurrency=1000,
                scheduling_strategy=placement(nodes, k),
            ).remote(kind, k, settings.to_dict())
        )
    ray.get([handle.ping.remote() for handle in handles], timeout=ready_timeout_s)
    retire_stale_shards(settings.ray_namespace, fingerprint)
    return handles


def get_or_create_user_shards(settings: Settings, ready_timeout_s: float = 60.0) -> list[Any]:
    return get_or_create_shards("user", settings, ready_timeout_s)


def get_or_create_chat_shards(settings: Settings, ready_timeout_s: float = 60.0) -> list[Any]:
    return get_or_create_shards("chat", settings, ready_timeout_s)
