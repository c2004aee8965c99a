"""Write docs/asyncapi.yaml from the structs of domain/events.py; tests/contracts/test_asyncapi.py checks it is current.

Run: ``.venv/bin/python scripts/gen_asyncapi.py``.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, get_args

import msgspec
import yaml

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from domain import events as ev  # noqa: E402
from domain.wire import schema  # noqa: E402

OUT = REPO / "docs" / "asyncapi.yaml"
SCHEMAS = "#/components/schemas/{name}"
CHANNEL = "#/channels/ws"

EVENT_SUMMARIES: dict[str, str] = {
    "notification": "A notification for me is created.",
    "feed.post": (
        "A followee posts or reposts (fetch the post with GET /posts/{post_id}; `reposted_by` names the reposter). "
        "Stored and replayable (a string id), except for authors with more than FANOUT_MAX_FOLLOWERS followers "
        "(default 10,000): their posts reach connected followers live only (id null) and are merged into "
        "GET /feed at read time."
    ),
    "post.counts": "A subscribed post's counts change (topic `post:<id>`).",
    "comment.counts": "A comment of a subscribed post changes (topic `post:<id>`).",
    "presence": "A subscribed user comes online or goes offline; sent once on subscribe (topic `presence:<username>`).",
    "chat.message": "A message is sent in one of my chats (to all my devices, mine included).",
    "chat.message_edited": "A message in one of my chats is edited.",
    "chat.message_deleted": "A message in one of my chats is deleted for everyone (`deleted: true`, content cleared).",
    "chat.reaction": "A message in one of my chats gets (`added: true`) or loses (`added: false`) a reaction.",
    "chat.receipt": "The peer's delivered/read progress in a chat.",
    "chat.typing": "The peer is typing (or stopped). Not stored.",
    "resync_required": (
        "Events after your position are no longer kept (on connect: `since` older than retention or lost; "
        "mid-stream: the socket fell behind retention): refetch over HTTP, keep the live events."
    ),
    "ack": "The answer to every client frame, echoing its `ref`.",
}

ACTION_SUMMARIES: dict[str, str] = {
    "subscribe": "Start live `post.counts`/`comment.counts` (`post:<id>`) or `presence` (`presence:<username>`) "
    "events. An unknown post or user acks `ok: false` with `not_found`.",
    "unsubscribe": "Stop the events of a topic.",
    "chat.send": "Send a message, as POST /chats/{id}/messages plus `chat_id`. The ack `result` is the Message; the "
    "same `client_id` again returns the same Message.",
    "chat.typing": "Tell the peer I am typing (or stopped); relayed as `chat.typing`, never stored.",
    "chat.delivered": "Messages up to `seq` reached this device; the peer gets `chat.receipt`.",
    "chat.read": "Messages up to `seq` were read; the peer gets `chat.receipt`.",
    "ping": "Application-level liveness check; acks with an empty result.",
}

DESCRIPTION = """\
The realtime side of the i9lyfe API: one socket per device at `ws://{host}/api/v1/ws` (`wss://` behind TLS).

## Connecting
- **Auth**: `Authorization: Bearer <access_token>` header, or `?access_token=<access_token>` for browsers.
- **Handshake refusals** happen before the upgrade, as an HTTP response in the API error shape
  `{"error": {"code", "message", "details"}}`: 401 `unauthenticated` (`details.reason`: `token_expired`,
  `invalid_token`, `session_revoked`), 403 `origin_not_allowed` (the `Origin` header, when sent, must be a
  configured origin), 400 `bad_subprotocol`, 422 `validation_failed` (malformed `since`), 429 `rate_limited`
  (handshakes per address) or `too_many_sockets` (open sockets per user), and 503 `unavailable` (overloaded,
  restarting or draining); 429 and 503 carry `Retry-After`. A live socket is closed with 4401 when its access
  token expires or its session is revoked; the table below lists every close code the server sends.
- **Encoding** by subprotocol: `i9.json` (JSON in text frames) or `i9.msgpack` (MessagePack in binary frames). Without
  a subprotocol the socket speaks JSON. Both encodings carry the same shapes.
- **Heartbeat**: the server sends a WebSocket ping every 25 s; a socket that stops answering is closed. The `ping`
  action is an application-level check.

## Frames
- Server: `{"id": "<event id>" | null, "type": "<event>", "data": {...}}`.
- Client: `{"ref": "<client ref>", "action": "<action>", "data": {...}}`. `ref` is optional and echoed in the ack;
  unknown fields are rejected.
- Every client frame gets exactly one `ack`: `{"ref", "ok": true, "result": {...}}` or
  `{"ref", "ok": false, "error": {"code", "message", "details"?}}`. Frame-level error codes: `malformed_frame` (not
  decodable, not an object, bad envelope), `payload_too_large`, `unknown_action`, `validation_failed`
  (`details.fields = {"<field>": "<reason>"}`); actions add their own (`not_found`, `forbidden`, `rate_limited`, ...).
  The socket stays open after an error ack.

## Replay
Events with an id (`x-stored: true` on the message: `notification`, `feed.post` and `chat.*` except `chat.typing`)
are stored per user. Connect with `?since=<last seen id>` to receive every missed event in order, then the live ones.
Events are kept at least 24 h and at least the last 1,000 per user; when `since` is older, the first frame is
`resync_required` (refetch over HTTP, then carry on with the live events). The same holds when the events after
`since` were lost (the server's store was reset): a `since` that names an event no longer kept, or one after the
newest kept, gives `resync_required`. `since=0-0` asks for everything kept; it gives `resync_required` only once
older events were dropped. A connected socket that fell behind retention (its position trimmed away) gets
`resync_required` too, mid-stream, then carries on live. A malformed `since` is refused (422).
Delivery is at-least-once: de-duplicate by id. `presence`, `post.counts`, `comment.counts`, `chat.typing`, `ack` and
`resync_required` have `id: null` and are never replayed. `feed.post` is stored for authors who are fanned out and
live only (`id: null`) for authors above FANOUT_MAX_FOLLOWERS followers (their posts are merged into GET /feed at read
time); de-duplicate it by `feed_item_id`.

## Presence
A user is online while any of their sockets is open; `last_seen` is set when the last one closes.
"""


def _close_codes_markdown() -> str:
    rows = "".join(f"| {code} | {meaning} |\n" for code, meaning in sorted(ev.CLOSE_CODES.items()))
    return "\n## Close codes\n| Code | Meaning |\n|---|---|\n" + rows


def _limits_markdown() -> str:
    return (
        "\n## Limits\n"
        f"- A client frame over {ev.MAX_FRAME_BYTES} bytes is answered with an ack error `payload_too_large`; "
        "the socket stays open.\n"
        f"- A frame over {ev.PROTOCOL_MAX_BYTES} bytes closes the socket with 1009.\n"
        "- A client that does not read fast enough overflows its send queue and is closed with 4008; reconnect with "
        "`since`.\n"
    )


# --- Examples (also validated against the schemas by the contract test) ----------------------------------------------

ALICE = ev.UserSummary(id="1100000000000000001", username="alice", name="Alice", avatar=None)
BOB = ev.UserSummary(
    id="1100000000000000002",
    username="bob",
    name="Bob",
    avatar="/api/v1/media/1100000000000000090",
    followed_by_me=True,
    follows_me=True,
)
PHOTO = ev.Media(
    id="1100000000000000100",
    kind="image",
    content_type="image/jpeg",
    size=48213,
    url="/api/v1/media/1100000000000000100",
    state="ready",
    width=1080,
    height=1350,
    blurhash="LEHV6nWB2yk8pyo0adR*.7kCMdnj",
)
POST = ev.Post(
    id="1100000000000000200",
    author=ALICE,
    type="photo",
    caption="Sunset with @bob #beach",
    media=[PHOTO],
    mentions=["bob"],
    hashtags=["beach"],
    counts=ev.PostCounts(reactions=3, comments=1, reposts=0, saves=1),
    reactions_summary={"🔥": 2, "❤️": 1},
    my=ev.PostMy(reaction=None, reposted=False, saved=False),
    created_at="2025-06-01T18:30:00.000Z",
)
COMMENT = ev.Comment(
    id="1100000000000000300",
    post_id=POST.id,
    parent_id=None,
    author=BOB,
    text="Wow 👏",
    media=None,
    mentions=[],
    counts=ev.CommentCounts(reactions=0, replies=0),
    my=ev.CommentMy(reaction=None),
    created_at="2025-06-01T18:31:02.120Z",
)
MESSAGE = ev.Message(
    id="1100000000000000400",
    chat_id="1100000000000000050",
    seq=42,
    client_id="6f1c2a9e-3b1d-4c55-9d0e-5a7e2c1b8f00",
    sender=BOB,
    type="text",
    text="See you at 8?",
    media=None,
    caption=None,
    reply_to=None,
    reactions={"👍": ["alice"]},
    deleted=False,
    created_at="2025-06-01T19:00:00.000Z",
    edited_at=None,
)
EDITED_AT = "2025-06-01T19:01:00.000Z"


def example_events() -> dict[str, tuple[str | None, msgspec.Struct]]:
    """Event type -> (event id, data) of one plausible frame."""
    msg = MESSAGE
    return {
        "notification": (
            "1100000000000001001",
            ev.Notification(
                id="1100000000000000500",
                type="comment_post",
                actor=BOB,
                post=POST,
                comment=COMMENT,
                created_at=COMMENT.created_at,
                read=False,
            ),
        ),
        "feed.post": (
            "1100000000000001002",
            ev.FeedPostEvent(feed_item_id="1100000000000000600", post_id=POST.id, author=ALICE),
        ),
        "post.counts": (None, ev.PostCountsEvent(post_id=POST.id, counts=POST.counts, reactions_summary={"🔥": 3})),
        "comment.counts": (
            None,
            ev.CommentCountsEvent(
                comment_id=COMMENT.id, post_id=POST.id, counts=ev.CommentCounts(reactions=1, replies=2)
            ),
        ),
        "presence": (None, ev.PresenceEvent(username="bob", online=False, last_seen="2025-06-01T19:05:00.000Z")),
        "chat.message": ("1100000000000001003", msg),
        "chat.message_edited": (
            "1100000000000001004",
            msgspec.structs.replace(msg, text="See you at 9?", edited_at=EDITED_AT),
        ),
        "chat.message_deleted": (
            "1100000000000001005",
            msgspec.structs.replace(msg, text=None, reactions={}, deleted=True, edited_at=EDITED_AT),
        ),
        "chat.reaction": (
            "1100000000000001006",
            ev.ChatReactionEvent(chat_id=msg.chat_id, message_id=msg.id, emoji="👍", username="alice", added=True),
        ),
        "chat.receipt": (
            "1100000000000001007",
            ev.ChatReceiptEvent(chat_id=msg.chat_id, username="bob", delivered_seq=42, read_seq=40),
        ),
        "chat.typing": (None, ev.ChatTypingEvent(chat_id=msg.chat_id, username="bob", typing=True)),
        "resync_required": (None, ev.ResyncRequired(reason="since_too_old", oldest_id="1100000000000000900")),
        "ack": (None, msgspec.convert(ev.ack_ok("c-17", {"subscribed": "post:1100000000000000200"}), ev.Ack)),
    }


def example_actions() -> dict[str, tuple[str | None, msgspec.Struct]]:
    """Action -> (ref, data) of one plausible client frame."""
    chat_id = MESSAGE.chat_id
    return {
        "subscribe": ("c-17", ev.SubscribeAction(topic=f"post:{POST.id}")),
        "unsubscribe": ("c-18", ev.SubscribeAction(topic="presence:bob")),
        "chat.send": (
            "c-19",
            ev.ChatSendText(chat_id=chat_id, client_id="0b7e4f1a-8d2c-4e6b-a1f3-9c5d7e2b4a60", type="text", text="Hi"),
        ),
        "chat.typing": ("c-20", ev.ChatTypingAction(chat_id=chat_id, typing=True)),
        "chat.delivered": ("c-21", ev.ChatProgressAction(chat_id=chat_id, seq=42)),
        "chat.read": ("c-22", ev.ChatProgressAction(chat_id=chat_id, seq=42)),
        "ping": ("c-23", ev.PingAction()),
    }


# --- Document -------------------------------------------------------------------------------------------------------


def _ref(pointer: str) -> dict[str, str]:
    return {"$ref": pointer}


# A union of structs (``chat.send``'s data) gets a component of its own under this name.
UNION_NAMES: dict[Any, str] = {ev.ChatSendAction: "ChatSendAction"}


def name_of(data_type: Any) -> str:
    return UNION_NAMES.get(data_type) or data_type.__name__


def _schemas() -> tuple[dict[str, str], dict[str, Any]]:
    """Struct name -> $ref, and every component schema (sorted), from msgspec. A union of structs (``chat.send``'s
    data) is a ``oneOf`` of its members, told apart by their ``type``."""
    wanted: list[Any] = list(
        dict.fromkeys([ev.ServerFrame, ev.ClientFrame, *ev.EVENT_DATA.values(), *ev.ACTION_DATA.values()])
    )
    unions = [t for t in wanted if t in UNION_NAMES]
    types = list(dict.fromkeys([t for t in wanted if t not in UNION_NAMES] + [m for u in unions for m in get_args(u)]))
    refs, components = schema.components(types, ref_template=SCHEMAS)
    by_name = {cls.__name__: ref["$ref"] for cls, ref in zip(types, refs, strict=True)}
    for union in unions:
        members = {
            msgspec.structs.fields(m)[[f.name for f in msgspec.structs.fields(m)].index("type")].type: m
            for m in get_args(union)
        }
        components[name_of(union)] = {
            "oneOf": [{"$ref": by_name[m.__name__]} for m in get_args(union)],
            "discriminator": {
                "propertyName": "type",
                "mapping": {get_args(kind)[0]: by_name[m.__name__] for kind, m in members.items()},
            },
        }
        by_name[name_of(union)] = SCHEMAS.format(name=name_of(union))
    return by_name, dict(sorted(components.items()))


def event_key(type_: str) -> str:
    return f"event.{type_}"


def action_key(action: str) -> str:
    return f"action.{action}"


def _event_message(type_: str, ref: str, examples: dict[str, tuple[str | None, msgspec.Struct]]) -> dict[str, Any]:
    stored = type_ in ev.STORED_EVENTS
    event_id: dict[str, Any] = (
        {"type": "string", "description": "Opaque event id; pass the last one seen as `since` to replay."}
        if stored
        else {"type": "null"}
    )
    if type_ in ev.SOMETIMES_LIVE_ONLY:
        event_id = {
            "type": ["string", "null"],
            "description": "Opaque event id (replayable), or null for a live-only event (see the summary).",
        }
    event_id_value, data = examples[type_]
    return {
        "name": type_,
        "title": type_,
        "summary": EVENT_SUMMARIES[type_],
        "x-stored": stored,
        "payload": {
            "type": "object",
            "required": ["id", "type", "data"],
            "properties": {"id": event_id, "type": {"const": type_}, "data": _ref(ref)},
        },
        "examples": [
            {"name": type_, "payload": {"id": event_id_value, "type": type_, "data": msgspec.to_builtins(data)}}
        ],
    }


def _action_message(action: str, ref: str, examples: dict[str, tuple[str | None, msgspec.Struct]]) -> dict[str, Any]:
    cls = ev.ACTION_DATA[action]
    data_required = cls in UNION_NAMES or any(f.required for f in msgspec.structs.fields(cls))
    client_ref, data = examples[action]
    return {
        "name": action,
        "title": action,
        "summary": ACTION_SUMMARIES[action],
        "payload": {
            "type": "object",
            "required": ["action", "data"] if data_required else ["action"],
            "additionalProperties": False,
            "properties": {
                "ref": {
                    "anyOf": [{"type": "string"}, {"type": "null"}],
                    "description": "Client-chosen reference, echoed in the ack.",
                },
                "action": {"const": action},
                "data": _ref(ref),
            },
        },
        "examples": [
            {"name": action, "payload": {"ref": client_ref, "action": action, "data": msgspec.to_builtins(data)}}
        ],
    }


def _binding() -> dict[str, Any]:
    return {
        "ws": {
            "method": "GET",
            "query": {
                "type": "object",
                "properties": {
                    "access_token": {
                        "type": "string",
                        "description": "Access token, for clients that cannot set headers.",
                    },
                    "since": {
                        "type": "string",
                        "description": "Last event id seen; the server replays every later stored event first. Too "
                        "old: the first frame is `resync_required`. Malformed: refused with 422.",
                    },
                },
            },
            "headers": {
                "type": "object",
                "properties": {
                    "Authorization": {"type": "string", "pattern": "^Bearer .+$"},
                    "Sec-WebSocket-Protocol": {
                        "type": "string",
                        "description": "`" + "` or `".join(ev.SUBPROTOCOLS) + "`; JSON when absent.",
                    },
                },
            },
            "bindingVersion": "0.1.0",
        }
    }


def build() -> dict[str, Any]:
    by_name, schemas = _schemas()
    events, actions = example_events(), example_actions()
    messages: dict[str, Any] = {}
    for type_, cls in sorted(ev.EVENT_DATA.items()):
        messages[event_key(type_)] = _event_message(type_, by_name[name_of(cls)], events)
    for action, cls in sorted(ev.ACTION_DATA.items()):
        messages[action_key(action)] = _action_message(action, by_name[name_of(cls)], actions)
    ack = _ref(f"{CHANNEL}/messages/{event_key('ack')}")
    operations: dict[str, Any] = {}
    for type_ in sorted(ev.EVENT_DATA):
        if type_ != "ack":
            operations[f"send.{type_}"] = {
                "action": "send",
                "channel": _ref(CHANNEL),
                "summary": EVENT_SUMMARIES[type_],
                "messages": [_ref(f"{CHANNEL}/messages/{event_key(type_)}")],
            }
    for action in sorted(ev.ACTION_DATA):
        operations[f"receive.{action}"] = {
            "action": "receive",
            "channel": _ref(CHANNEL),
            "summary": ACTION_SUMMARIES[action],
            "messages": [_ref(f"{CHANNEL}/messages/{action_key(action)}")],
            "reply": {"channel": _ref(CHANNEL), "messages": [ack]},
        }
    return {
        "asyncapi": "3.0.0",
        "info": {
            "title": "i9lyfe WebSocket API",
            "version": "1.0.0",
            "description": DESCRIPTION + _close_codes_markdown() + _limits_markdown(),
        },
        "defaultContentType": "application/json",
        "servers": {
            "api": {
                "host": "{host}",
                "protocol": "ws",
                "pathname": "/api/v1",
                "description": "The API server; the socket is `ws://{host}/api/v1/ws`.",
                "variables": {"host": {"default": "localhost:8000", "description": "Host and port of the API."}},
                "security": [_ref("#/components/securitySchemes/bearer"), _ref("#/components/securitySchemes/query")],
            }
        },
        "channels": {
            "ws": {
                "address": "/ws",
                "title": "The socket",
                "description": "All events and actions flow over one socket per device.",
                "messages": {key: _ref(f"#/components/messages/{key}") for key in messages},
                "bindings": _binding(),
            }
        },
        "operations": operations,
        "components": {
            "schemas": schemas,
            "messages": messages,
            "securitySchemes": {
                "bearer": {
                    "type": "http",
                    "scheme": "bearer",
                    "bearerFormat": "JWT",
                    "description": "`Authorization: Bearer <access_token>` on the upgrade request.",
                },
                "query": {
                    "type": "httpApiKey",
                    "in": "query",
                    "name": "access_token",
                    "description": "`?access_token=<access_token>` for browsers, which cannot set headers.",
                },
            },
        },
        "x-close-codes": {str(code): meaning for code, meaning in sorted(ev.CLOSE_CODES.items())},
        "x-limits": {"max_frame_bytes": ev.MAX_FRAME_BYTES, "protocol_max_bytes": ev.PROTOCOL_MAX_BYTES},
        "x-subprotocols": dict(ev.SUBPROTOCOLS),
    }


class _Dumper(yaml.SafeDumper):
    def ignore_aliases(self, data: Any) -> bool:
        return True


def _str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _str)


def render() -> str:
    header = "# Generated by scripts/gen_asyncapi.py from domain/events.py. Do not edit.\n"
    return header + yaml.dump(build(), Dumper=_Dumper, sort_keys=False, allow_unicode=True, width=120)


if __name__ == "__main__":
    OUT.parent.mkdir(exist_ok=True)
    OUT.write_text(render(), encoding="utf-8")
    print(f"wrote {OUT}")
