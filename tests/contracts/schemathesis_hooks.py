"""schemathesis hooks for tests/contracts/test_schemathesis.py (loaded by the ``st`` CLI via SCHEMATHESIS_HOOKS).

Set by the test through the environment:
- ``I9_ST_FORMAT`` ``json`` or ``msgpack``: the run keeps only that media type in every request and response body of
  the schema it loaded (the live server documents both), so a run is all JSON or all MessagePack;
- ``I9_ST_BASE_URL``, ``I9_ST_EMAIL``, ``I9_ST_PASSWORD``, ``I9_ST_TOKEN``: a real user signed up by the test and
  its access token, used for every operation that takes one. ``POST /auth/logout`` ends the session it is called
  with, so each logout case gets a session of its own (a fresh login) and the shared token stays alive.

One check cannot apply as written to the emailed-code flows: ``positive_data_acceptance`` wants a schema-valid
request accepted, but a well-formed code that is simply wrong must be refused with 422 ``invalid_code``, and a
flow that is used up (schemathesis finds real flow ids and burns them with wrong codes) with 410
``flow_expired`` (both fixed by API.md section 3; no schema can know a secret or a flow's state).
``filter_failure`` drops exactly those failures (that status with that ``error.code`` on a flow operation) and
nothing else, plus more of the same kind: the fuzzer's user following itself or starting a chat with itself
(422, API.md "self 422"; which username is the caller's changes as PATCH /me renames it: ``SELF_REFUSALS``),
and media refused for the upload's state (nothing uploaded, wrong size or bytes; an avatar that is not a ready
avatar image of the caller's) or for a rule across two fields (a purpose's kinds, a kind's size limit:
``MEDIA_REFUSALS``).

Every request comes from a fresh client IP (``X-Forwarded-For``, believed from 127.0.0.1 by the test server): the
per-IP auth limits are for people, not for a fuzzer sending thousands of requests from one address; the per-user
write limit still applies and its 429 is documented.
"""

from __future__ import annotations

import itertools
import os
import threading
from typing import Any

import httpx
import msgpack
import orjson
import schemathesis
from hypothesis.internal import lambda_sources
from schemathesis import AuthContext, Case, DeserializationContext, HookContext, Response, SerializationContext
from schemathesis.core.failures import Failure
from schemathesis.openapi.checks import RejectedPositiveData

MSGPACK = "application/msgpack"
JSON = "application/json"
FORMAT = os.environ.get("I9_ST_FORMAT", "json")
KEEP = MSGPACK if FORMAT == "msgpack" else JSON
LOGOUT = "/api/v1/auth/logout"
FLOW_OPERATIONS = {
    "/api/v1/auth/signup/verify",
    "/api/v1/auth/signup/complete",
    "/api/v1/auth/password-reset/verify",
    "/api/v1/auth/password-reset/complete",
}
FLOW_REFUSALS = {(422, "invalid_code"), (410, "flow_expired")}
FOLLOW = "/api/v1/users/{username}/follow"
# The caller naming itself where another user is needed: the exact 422 fields each operation answers.
SELF_REFUSALS = {
    FOLLOW: {"username": "you cannot follow yourself"},
    "/api/v1/chats": {"username": "you cannot chat with yourself"},
}
# Refusals for the state of an upload or for a rule across two fields, which no schema can know (issue 9).
MEDIA_REFUSALS = {
    "/api/v1/media": {(413, "payload_too_large"), (422, "unsupported_content_type")},
    "/api/v1/me/avatar": {(422, "invalid_media"), (422, "media_not_ready")},
    "/api/v1/media/{media_id}/complete": {
        (422, "upload_missing"),
        (422, "size_mismatch"),
        (422, "content_type_mismatch"),
        (422, "invalid_image"),
    },
    # Creates that attach an upload (whose state and owner no schema knows) or carry an Idempotency-Key (the fuzzer
    # sends one key with several bodies: refused by API.md 1), and receipts past the chat's last message.
    "/api/v1/posts": {(422, "invalid_media"), (422, "media_not_ready"), (422, "idempotency_key_reused")},
    "/api/v1/posts/{post_id}/comments": {
        (422, "invalid_media"),
        (422, "media_not_ready"),
        (422, "idempotency_key_reused"),
    },
    "/api/v1/comments/{comment_id}/replies": {
        (422, "invalid_media"),
        (422, "media_not_ready"),
        (422, "idempotency_key_reused"),
    },
    "/api/v1/chats/{chat_id}/messages": {
        (422, "invalid_media"),
        (422, "media_not_ready"),
        (422, "idempotency_key_reused"),
    },
    "/api/v1/chats/{chat_id}/read": {(422, "seq_out_of_range")},
}

_ips = itertools.count(1)


# hypothesis describes a filter lambda (for a strategy's repr only) by parsing its module's source with ast.parse.
# On CPython 3.11 that parse fails now and then inside schemathesis's worker threads ("SystemError: AST constructor
# recursion depth mismatch"), turning an operation into a runtime error. Describe lambdas one at a time, and fall
# back to a plain description when the parse fails: nothing but the repr depends on it.
_describe_lock = threading.Lock()
_describe = lambda_sources.lambda_description


def _describe_safely(f: Any) -> str:
    with _describe_lock:
        try:
            return str(_describe(f))
        except SystemError:
            return "lambda: <source not parsed>"


lambda_sources.lambda_description = _describe_safely


def _fresh_ip() -> str:
    n = next(_ips)
    return f"10.{200 + (n >> 16) % 50}.{(n >> 8) & 255}.{n & 255}"


def _packable(value: Any) -> Any:
    """MessagePack has no integers past 64 bits: such a generated (invalid) value goes as a float, still invalid."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and not -(1 << 63) <= value < (1 << 64):
        return float(value)
    if isinstance(value, dict):
        return {k: _packable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_packable(v) for v in value]
    return value


@schemathesis.serializer(MSGPACK)
def _to_msgpack(ctx: SerializationContext, value: Any) -> bytes | None:
    packed: bytes = msgpack.packb(_packable(value), use_bin_type=True)
    return packed


@schemathesis.deserializer(MSGPACK)
def _from_msgpack(ctx: DeserializationContext, response: Response) -> Any:
    return msgpack.unpackb(response.content, raw=False)


def _keep_one_media_type(content: dict[str, Any]) -> None:
    if KEEP in content:
        for media_type in [m for m in content if m != KEEP]:
            del content[media_type]


@schemathesis.hook
def before_load_schema(context: HookContext, raw_schema: dict[str, Any]) -> None:
    for item in raw_schema.get("paths", {}).values():
        for op in item.values():
            if not isinstance(op, dict):
                continue
            if "requestBody" in op:
                _keep_one_media_type(op["requestBody"].get("content", {}))
            for response in op.get("responses", {}).values():
                _keep_one_media_type(response.get("content", {}))


@schemathesis.hook
def before_call(context: HookContext, case: Case, kwargs: dict[str, Any]) -> None:
    headers = case.headers if case.headers is not None else {}
    headers["X-Forwarded-For"] = _fresh_ip()
    headers.setdefault("Accept", KEEP)
    case.headers = headers


def _error_code(response: Response) -> str | None:
    try:
        body = (msgpack.unpackb if FORMAT == "msgpack" else orjson.loads)(response.content)
        return str(body["error"]["code"])
    except Exception:
        return None


@schemathesis.hook
def filter_failure(context: HookContext, failure: Failure, case: Case, response: Response) -> bool:
    """False drops the failure: a well-formed request refused for the flow's state (wrong code, used-up flow)."""
    refused_for_state = (
        isinstance(failure, RejectedPositiveData)
        and case.operation.path in FLOW_OPERATIONS
        and (response.status_code, _error_code(response)) in FLOW_REFUSALS
    )
    refused_media = isinstance(failure, RejectedPositiveData) and (
        response.status_code,
        _error_code(response),
    ) in MEDIA_REFUSALS.get(case.operation.path, set())
    return not (
        refused_for_state or refused_media or _self_follow(failure, case, response) or _rule(failure, case, response)
    )


def _rule(failure: Failure, case: Case, response: Response) -> bool:
    """A rule no JSON Schema states: an emoji field (a reaction's, or a reactor list's ``?emoji=`` filter) takes
    exactly one emoji (a grapheme cluster), a video or reel takes exactly one media id (a photo up to ten), and a
    message's ``reply_to`` names a message of its chat (which messages a chat holds is state no schema knows)."""
    if not isinstance(failure, RejectedPositiveData) or response.status_code != 422:
        return False
    try:
        body = (msgpack.unpackb if FORMAT == "msgpack" else orjson.loads)(response.content)
        fields = set(body["error"]["details"]["fields"])
    except Exception:
        return False
    if case.operation.path.endswith(("/reaction", "/reactions")):
        return fields == {"emoji"}
    if case.operation.path == "/api/v1/chats/{chat_id}/messages":
        # Which fields each message type takes is the body's schema (one shape per `type`); what remains is
        # `reply_to`: a message of this chat, and an id no message can have (0, past 2^63 - 1) is answered alike,
        # at the edge (domain/chat.py object_id) before the chat is looked up.
        return fields == {"reply_to"}
    return case.operation.path == "/api/v1/posts" and fields == {"media_ids"}


def _self_follow(failure: Failure, case: Case, response: Response) -> bool:
    """The fuzzer's own user (whose username PATCH /me may have set to anything) following itself, or starting
    a chat with itself: refused with 422 (API.md "self 422"; one chat per pair of users), and no schema can say
    which username is the caller's."""
    expected = SELF_REFUSALS.get(case.operation.path)
    if not (isinstance(failure, RejectedPositiveData) and expected is not None):
        return False
    try:
        body = (msgpack.unpackb if FORMAT == "msgpack" else orjson.loads)(response.content)
        fields = body["error"]["details"]["fields"]
    except Exception:
        return False
    return response.status_code == 422 and fields == expected


def _login() -> str:
    reply = httpx.post(
        os.environ["I9_ST_BASE_URL"] + "/api/v1/auth/login",
        json={"login": os.environ["I9_ST_EMAIL"], "password": os.environ["I9_ST_PASSWORD"]},
        headers={"X-Forwarded-For": _fresh_ip()},
        timeout=30,
    )
    reply.raise_for_status()
    token: str = reply.json()["tokens"]["access_token"]
    return token


@schemathesis.auth(refresh_interval=None)
class RealUser:
    def get(self, case: Case, ctx: AuthContext) -> str:
        return _login() if case.operation.path == LOGOUT else os.environ["I9_ST_TOKEN"]

    def set(self, case: Case, data: str, ctx: AuthContext) -> None:
        case.headers = case.headers or {}
        case.headers["Authorization"] = f"Bearer {data}"
