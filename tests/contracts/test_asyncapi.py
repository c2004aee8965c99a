"""docs/asyncapi.yaml is generated from domain/events.py, covers exactly API.md section 4, and real frames match it."""

from __future__ import annotations

import datetime as dt
import functools
import importlib.util
import typing
from pathlib import Path
from types import ModuleType
from typing import Any

import jsonschema
import msgpack
import msgspec
import orjson
import pytest
import yaml

from domain import events as ev
from domain.wire import schema as wire_schema
from tests.asyncapi_frames import server_frame

REPO = Path(__file__).resolve().parents[2]

# API.md section 4, verbatim, plus the two protocol events every socket needs.
API_MD_EVENTS = {
    "notification",
    "feed.post",
    "post.counts",
    "comment.counts",
    "presence",
    "chat.message",
    "chat.message_edited",
    "chat.message_deleted",
    "chat.reaction",
    "chat.receipt",
    "chat.typing",
}
PROTOCOL_EVENTS = {"ack", "resync_required"}
API_MD_ACTIONS = {"subscribe", "unsubscribe", "chat.send", "chat.typing", "chat.delivered", "chat.read", "ping"}
NOT_STORED = {"presence", "post.counts", "comment.counts", "chat.typing", "ack", "resync_required"}


@functools.cache
def _generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("gen_asyncapi", REPO / "scripts" / "gen_asyncapi.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@functools.cache
def _doc() -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load(_generator().render())
    return doc


_FORMATS = jsonschema.FormatChecker()


@_FORMATS.checks("date-time", raises=ValueError)
def _is_rfc3339_utc(value: object) -> bool:
    if not isinstance(value, str):
        return True
    return "T" in value and dt.datetime.fromisoformat(value).utcoffset() == dt.timedelta(0)


def _validator(schema: dict[str, Any]) -> jsonschema.Draft202012Validator:
    """A validator whose `#/components/schemas/...` refs resolve against the document's components."""
    root = {**schema, "components": {"schemas": _doc()["components"]["schemas"]}}
    jsonschema.Draft202012Validator.check_schema(root)
    return jsonschema.Draft202012Validator(root, format_checker=_FORMATS)


def _event_message(type_: str) -> dict[str, Any]:
    message: dict[str, Any] = _doc()["components"]["messages"][_generator().event_key(type_)]
    return message


def _action_message(action: str) -> dict[str, Any]:
    message: dict[str, Any] = _doc()["components"]["messages"][_generator().action_key(action)]
    return message


def test_committed_asyncapi_matches_the_structs() -> None:
    committed = (REPO / "docs" / "asyncapi.yaml").read_text(encoding="utf-8")
    assert committed == _generator().render(), (
        "docs/asyncapi.yaml is stale: run `.venv/bin/python scripts/gen_asyncapi.py` and commit it"
    )


def test_events_and_actions_are_exactly_those_of_api_md() -> None:
    assert set(ev.EVENT_DATA) == API_MD_EVENTS | PROTOCOL_EVENTS
    assert set(ev.ACTION_DATA) == API_MD_ACTIONS
    assert set(ev.STORED_EVENTS) == set(ev.EVENT_DATA) - NOT_STORED


def test_document_describes_the_socket() -> None:
    doc = _doc()
    assert doc["asyncapi"] == "3.0.0"
    server = doc["servers"]["api"]
    assert (server["protocol"], server["host"], server["pathname"]) == ("ws", "{host}", "/api/v1")
    channel = doc["channels"]["ws"]
    assert channel["address"] == "/ws"
    schemes = doc["components"]["securitySchemes"]
    assert schemes["bearer"]["scheme"] == "bearer"
    assert (schemes["query"]["in"], schemes["query"]["name"]) == ("query", "access_token")
    assert {"since", "access_token"} <= set(channel["bindings"]["ws"]["query"]["properties"])
    description = doc["info"]["description"]
    for needle in ("ws://{host}/api/v1/ws", "i9.json", "i9.msgpack", "?since=", "resync_required", "ack"):
        assert needle in description, needle
    assert doc["x-close-codes"] == {str(code): meaning for code, meaning in ev.CLOSE_CODES.items()}
    for code in ev.CLOSE_CODES:
        assert f"| {code} |" in description
    assert doc["x-limits"] == {"max_frame_bytes": ev.MAX_FRAME_BYTES, "protocol_max_bytes": ev.PROTOCOL_MAX_BYTES}
    assert set(doc["x-subprotocols"]) == {"i9.json", "i9.msgpack"}


def _assert_data_schema(message: dict[str, Any], cls: Any) -> None:
    """The message's data is the struct's schema; for a union of structs (``chat.send``), a ``oneOf`` of its
    members' schemas, told apart by ``type``."""
    members = list(typing.get_args(cls)) or [cls]
    refs, components = wire_schema.components(members, ref_template="#/components/schemas/{name}")
    schemas = _doc()["components"]["schemas"]
    data = message["payload"]["properties"]["data"]
    if len(members) == 1:
        assert data == refs[0]
    else:
        union = schemas[data["$ref"].rsplit("/", 1)[1]]
        assert union["oneOf"] == refs
        assert union["discriminator"]["propertyName"] == "type"
    for name, schema in components.items():
        assert schemas[name] == schema, name


@pytest.mark.parametrize("type_", sorted(ev.EVENT_DATA))
def test_every_event_is_a_message_with_its_struct_schema(type_: str) -> None:
    message = _event_message(type_)
    assert message["name"] == type_
    assert message["payload"]["properties"]["type"] == {"const": type_}
    assert message["x-stored"] is (type_ in ev.STORED_EVENTS)
    _assert_data_schema(message, ev.EVENT_DATA[type_])
    key = _generator().event_key(type_)
    assert key in _doc()["channels"]["ws"]["messages"]
    if type_ != "ack":
        operation = _doc()["operations"][f"send.{type_}"]
        assert operation["action"] == "send"
        assert operation["messages"] == [{"$ref": f"#/channels/ws/messages/{key}"}]


@pytest.mark.parametrize("action", sorted(ev.ACTION_DATA))
def test_every_action_is_a_message_with_its_struct_schema_answered_by_ack(action: str) -> None:
    message = _action_message(action)
    assert message["name"] == action
    assert message["payload"]["properties"]["action"] == {"const": action}
    _assert_data_schema(message, ev.ACTION_DATA[action])
    key = _generator().action_key(action)
    assert key in _doc()["channels"]["ws"]["messages"]
    operation = _doc()["operations"][f"receive.{action}"]
    assert operation["action"] == "receive"
    assert operation["messages"] == [{"$ref": f"#/channels/ws/messages/{key}"}]
    assert operation["reply"]["messages"] == [{"$ref": "#/channels/ws/messages/event.ack"}]


def _samples() -> list[tuple[str, str | None, Any]]:
    """The document's example of every event, plus the shapes an example cannot show at once."""
    gen = _generator()
    samples: list[tuple[str, str | None, Any]] = [(t, i, d) for t, (i, d) in gen.example_events().items()]
    follow = ev.Notification(id="5", type="follow", actor=gen.BOB, created_at="2025-06-01T10:00:00Z", read=True)
    reaction = ev.Notification(
        id="6",
        type="reaction_post",
        actor=gen.ALICE,
        post=gen.POST,
        emoji="🏳️‍🌈",
        created_at="2025-06-01T10:00:00Z",
        read=False,
    )
    with_media = msgspec.structs.replace(
        gen.MESSAGE, type="image", text=None, media=gen.PHOTO, caption="look", reply_to="3"
    )
    samples += [
        ("notification", "101", follow),
        ("notification", "102", reaction),
        ("chat.message", "103", with_media),
        ("presence", None, ev.PresenceEvent(username="bob", online=True, last_seen=None)),
        ("resync_required", None, ev.ResyncRequired(reason="since_too_old", oldest_id=None)),
        ("ack", None, ev.ack_error("r1", "not_found", "No such post.")),
        ("ack", None, ev.ack_error(None, "validation_failed", "Bad.", {"fields": {"seq": "is required"}})),
        ("ack", None, ev.ack_ok("r2")),
        ("ack", None, ev.ack_ok("r3", msgspec.to_builtins(gen.MESSAGE))),
    ]
    return samples


def test_every_event_has_a_sample() -> None:
    assert {type_ for type_, _, _ in _samples()} == set(ev.EVENT_DATA)


@pytest.mark.parametrize("fmt", ["json", "msgpack"])
def test_encoded_sample_frames_match_the_document(fmt: str) -> None:
    for type_, event_id, data in _samples():
        raw = server_frame(event_id, type_, data, fmt)  # the encoder the gateway uses
        plain = orjson.loads(raw) if fmt == "json" else msgpack.unpackb(raw, raw=False)
        _validator(_event_message(type_)["payload"]).validate(plain)
        decoded = ev.decode_server_frame(raw, fmt)
        expected = data if isinstance(data, msgspec.Struct) else msgspec.convert(data, ev.EVENT_DATA[type_])
        assert (decoded.id, decoded.type, decoded.data) == (event_id, type_, expected)


def test_document_examples_match_their_messages_and_decode() -> None:
    for type_ in ev.EVENT_DATA:
        message = _event_message(type_)
        for example in message["examples"]:
            _validator(message["payload"]).validate(example["payload"])
    for action in ev.ACTION_DATA:
        message = _action_message(action)
        for example in message["examples"]:
            _validator(message["payload"]).validate(example["payload"])
            for fmt in ("json", "msgpack"):
                raw = orjson.dumps(example["payload"]) if fmt == "json" else msgpack.packb(example["payload"])
                assert isinstance(ev.decode_action(ev.decode_client_frame(raw, fmt)), ev.ACTION_DATA[action])


@pytest.mark.parametrize(
    ("type_", "event_id", "data"),
    [
        ("presence", None, {"username": "bob", "online": "yes", "last_seen": None}),
        ("presence", "1", {"username": "bob", "online": True, "last_seen": None}),
        ("chat.typing", None, {"chat_id": "7", "username": "Bob!", "typing": True}),
        ("chat.receipt", "1", {"chat_id": "7", "username": "bob", "delivered_seq": 1}),
        ("notification", "1", {"id": "1", "type": "poke", "actor": {}, "created_at": "x", "read": False}),
        ("chat.message_deleted", "1", {**msgspec.to_builtins(_generator().MESSAGE), "created_at": "yesterday"}),
        ("feed.post", "1", {"feed_item_id": "1", "post_id": 2, "author": msgspec.to_builtins(_generator().BOB)}),
    ],
)
def test_the_schemas_reject_wrong_frames(type_: str, event_id: str | None, data: Any) -> None:
    plain = orjson.loads(server_frame(event_id, type_, data, "json"))
    with pytest.raises(jsonschema.ValidationError):
        _validator(_event_message(type_)["payload"]).validate(plain)
