"""Prometheus metrics of the front door: HTTP requests, sockets, frames and delivery latency.

Exposed at ``GET /metrics`` (api/routes/metrics.py) with the shard client's (actors/runtime/metrics.py) and what is
read at scrape time. In ``python -m api`` prometheus-client runs in multiprocess mode (api/metrics_dir.py): each
worker writes its values to memory-mapped files and the worker serving a scrape sums them all.

Cheap on the hot paths (DESIGN.md 9): every child (labelled series) a hot path touches is bound once (module
constants, or a small cache keyed by bounded label values), so a request or a frame costs one or two
increments, never a label lookup.

* ``HttpMetrics`` (pure ASGI, outermost): ``i9lyfe_http_request_duration_seconds`` by method, route template
  and status. The template (``/api/v1/users/{username}``, never the raw path; ``unmatched`` when no route
  matched) is only known after routing, inside layers that may copy the scope (the codec does), so
  ``RouteProbe`` (innermost) writes it into a slot the outer layer put in the scope. A request the codec
  refuses before routing (400 malformed body, 413, 415) never reaches it and counts as ``unmatched``.
* ``i9lyfe_ws_connections`` (open sockets, summed over live workers) and ``i9lyfe_ws_frames_total`` are counted by
  the socket writer (api/ws/connection.py) and the read loop (api/ws/route.py).
* ``i9lyfe_delivery_latency_seconds``: from the stream append (storage/streams.py: the entry id's milliseconds are
  Redis's clock at the XADD, which follows the outbox commit at once) to the socket write, for frames that
  carry an event id, observed by the writer; events appended before the socket opened (a ``since`` replay of
  what happened while the client was away) are not delivery latency and are left out.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Sequence

from fastapi.routing import iter_route_contexts
from prometheus_client import Counter, Gauge, Histogram
from starlette.routing import BaseRoute
from starlette.types import ASGIApp, Message, Receive, Scope, Send

HTTP_SECONDS = Histogram(
    "i9lyfe_http_request_duration_seconds",
    "HTTP request duration, seconds, by method, route template (unmatched: no route) and status",
    ["method", "route", "status"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)
WS_CONNECTIONS = Gauge(
    "i9lyfe_ws_connections", "Open WebSocket connections (all live workers)", multiprocess_mode="livesum"
)
WS_FRAMES = Counter("i9lyfe_ws_frames", "WebSocket data frames, by direction: in (from clients) or out", ["direction"])
WS_FRAMES_IN = WS_FRAMES.labels(direction="in")
WS_FRAMES_OUT = WS_FRAMES.labels(direction="out")
DELIVERY_SECONDS = Histogram(
    "i9lyfe_delivery_latency_seconds",
    "Seconds from an event's stream append (right after its outbox commit) to its write on a socket",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0),
)

METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})  # any other: "other"
UNMATCHED = "unmatched"
ROUTE_SLOT = "i9lyfe.route"  # scope key: a one-item list the RouteProbe fills with the route template


class RouteTemplates:
    """The full path template of each route object the router can put in ``scope["route"]``.

    FastAPI (0.165) keeps an included router's routes with their own paths (``/me``) and applies the include
    prefix (``/api/v1``) in a route context; ``fastapi.routing.iter_route_contexts`` lists every route with its
    full template, from which this table is built once, at the first request (every route is included by then).
    A route object included under several prefixes is told apart by the full path regexes."""

    def __init__(self, routes: Sequence[BaseRoute]) -> None:
        self._routes = routes
        self._by_id: dict[int, list[tuple[re.Pattern[str] | None, str]]] | None = None

    def _build(self) -> dict[int, list[tuple[re.Pattern[str] | None, str]]]:
        table: dict[int, list[tuple[re.Pattern[str] | None, str]]] = {}
        for context in iter_route_contexts(self._routes):
            template = getattr(context, "path_format", None)
            if isinstance(template, str) and template:
                table.setdefault(id(context.original_route), []).append(
                    (getattr(context, "path_regex", None), template)
                )
        return table

    def of(self, scope: Scope) -> str:
        """The matched route's template (a Mount's is ``<prefix>/{path}``), or ``unmatched``."""
        route = scope.get("route")
        if route is None:
            return UNMATCHED
        if self._by_id is None:
            self._by_id = self._build()
        candidates = self._by_id.get(id(route))
        if not candidates:
            return UNMATCHED
        if len(candidates) > 1:
            path = scope.get("path", "")
            for regex, template in candidates:
                if regex is not None and regex.match(path):
                    return template
        return candidates[0][1]


class RouteProbe:
    """Innermost layer: records the template of the route the router picked into the outer layer's slot."""

    def __init__(self, app: ASGIApp, routes: Sequence[BaseRoute]) -> None:
        self.app = app
        self.templates = RouteTemplates(routes)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        slot = scope.get(ROUTE_SLOT)
        if slot is None:
            await self.app(scope, receive, send)
            return
        try:
            await self.app(scope, receive, send)
        finally:
            slot[0] = self.templates.of(scope)


class HttpMetrics:
    """Outermost layer: times every HTTP request to its end and observes it by method, template and status
    (a request that ends without a response, the app having raised, counts as 500)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self._observe: dict[tuple[str, str, int], Callable[[float], None]] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        slot: list[str] = [UNMATCHED]
        scope[ROUTE_SLOT] = slot
        status = 500

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            self.observe(scope["method"], slot[0], status, time.perf_counter() - started)

    def observe(self, method: str, route: str, status: int, seconds: float) -> None:
        key = (method, route, status)
        observe = self._observe.get(key)
        if observe is None:  # label values are bounded: known methods, route templates, statuses
            label = method if method in METHODS else "other"
            observe = self._observe[key] = HTTP_SECONDS.labels(label, route, str(status)).observe
        observe(seconds)


# ---------------------------------------------------------------- delivery latency

_JSON_ID = b'{"id":"'  # api/ws/frames.py json_frame: orjson keeps the key order id, type, data
_MSGPACK_ID = b"\x83\xa2id"  # packed_frame: a fixmap of 3, then "id" ...
_FIXSTR_MIN, _FIXSTR_MAX = 0xA1, 0xBF  # ... and the id as a fixstr ("<ms>-<seq>" is at most 31 bytes)


def appended_ms(frame: bytes) -> int | None:
    """The stream append time (ms) of a server frame that carries an event id, read from its first bytes
    without decoding it (the envelope of api/ws/frames.py); None for frames without an id (acks, presence)."""
    if frame.startswith(_JSON_ID):
        start, end = 7, frame.find(b"-", 7, 40)
    elif frame.startswith(_MSGPACK_ID) and len(frame) > 5 and _FIXSTR_MIN <= frame[4] <= _FIXSTR_MAX:
        start, end = 5, frame.find(b"-", 5, 5 + (frame[4] & 0x1F))
    else:
        return None
    digits = frame[start:end]
    return int(digits) if end > start and digits.isdigit() else None


def observe_delivery(frame: bytes, opened_ms: float) -> None:
    """After a frame was written: its delivery latency, when it carries an event appended since ``opened_ms``
    (this socket's start; Unix ms)."""
    at = appended_ms(frame)
    if at is not None and at >= opened_ms:
        DELIVERY_SECONDS.observe(max(0.0, time.time() - at / 1000.0))
