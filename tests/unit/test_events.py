"""The WebSocket wire contract in-process: client frames in, server frames out, in JSON and MessagePack."""

from __future__ import annotations

from typing import Any

import msgpack
import msgspec
import orjson
import pytest

from domain.events import (
    ACTION_DATA,
    MAX_FRAME_BYTES,
    Ack,
    ChatProgressAction,
    ChatSendImage,
    ChatSendText,
    ChatTypingAction,
    ClientFrame,
    FrameError,
    Message,
    PingAction,
    PresenceEvent,
    SubscribeAction,
    UserSummary,
    ack_error,
    ack_ok,
    decode_action,
    decode_client_frame,
    decode_server_frame,
)
from tests.asyncapi_frames import server_frame

FORMATS = ["json", "msgpack"]


def _raw(obj: Any, fmt: str) -> bytes:
    return orjson.dumps(obj) if fmt == "json" else msgpack.packb(obj, use_bin_type=True)


def _frame_error(raw: bytes | str, fmt: str) -> FrameError:
    with pytest.raises(FrameError) as caught:
        decode_action(decode_client_frame(raw, fmt))
    return caught.value


VALID_ACTIONS: list[tuple[str, dict[str, Any], Any]] = [
    ("subscribe", {"topic": "post:123"}, SubscribeAction(topic="post:123")),
    ("unsubscribe", {"topic": "presence:bob"}, SubscribeAction(topic="presence:bob")),
    (
        "chat.send",
        {"chat_id": "7", "client_id": "c1", "type": "text", "text": "hi", "reply_to": None},
        ChatSendText(chat_id="7", client_id="c1", type="text", text="hi"),
    ),
    (
        "chat.send",
        {"chat_id": "7", "client_id": "c2", "type": "image", "media_id": "9", "caption": "look"},
        ChatSendImage(chat_id="7", client_id="c2", type="image", media_id="9", caption="look"),
    ),
    ("chat.typing", {"chat_id": "7", "typing": False}, ChatTypingAction(chat_id="7", typing=False)),
    ("chat.delivered", {"chat_id": "7", "seq": 3}, ChatProgressAction(chat_id="7", seq=3)),
    ("chat.read", {"chat_id": "7", "seq": 0}, ChatProgressAction(chat_id="7", seq=0)),
    ("ping", {}, PingAction()),
]


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize(("action", "data", "expected"), VALID_ACTIONS)
def test_valid_frames_decode_to_typed_actions(fmt: str, action: str, data: dict[str, Any], expected: Any) -> None:
    frame = decode_client_frame(_raw({"ref": "r1", "action": action, "data": data}, fmt), fmt)
    assert frame == ClientFrame(ref="r1", action=action, data=data)
    assert decode_action(frame) == expected


def test_every_action_has_a_valid_example() -> None:
    assert {action for action, _, _ in VALID_ACTIONS} == set(ACTION_DATA)


def test_json_frames_may_be_text_and_ref_and_data_are_optional() -> None:
    frame = decode_client_frame('{"action": "ping"}', "json")
    assert frame == ClientFrame(action="ping")
    assert frame.ref is None and frame.data == {}
    assert decode_action(frame) == PingAction()


@pytest.mark.parametrize(
    ("raw", "fmt"),
    [
        (b"{nope", "json"),
        (b"", "json"),
        ('{"action": "ping"', "json"),
        (b"\xc1", "msgpack"),
        (b"", "msgpack"),
        ('{"action": "ping"}', "msgpack"),
    ],
)
def test_undecodable_frames_are_malformed(raw: bytes | str, fmt: str) -> None:
    error = _frame_error(raw, fmt)
    assert error.code == "malformed_frame"
    assert error.ref is None


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize(
    "envelope",
    [
        [],
        "ping",
        42,
        None,
        {},
        {"ref": "r1"},
        {"ref": "r1", "action": 5},
        {"ref": 5, "action": "ping"},
        {"ref": "r1", "action": "ping", "data": []},
        {"ref": "r1", "action": "ping", "data": None},
        {"ref": "r1", "action": "ping", "data": {}, "extra": 1},
    ],
)
def test_bad_envelopes_are_malformed(fmt: str, envelope: Any) -> None:
    error = _frame_error(_raw(envelope, fmt), fmt)
    assert error.code == "malformed_frame"
    assert error.message


@pytest.mark.parametrize("fmt", FORMATS)
def test_malformed_frame_keeps_the_ref_when_it_can_be_read(fmt: str) -> None:
    error = _frame_error(_raw({"ref": "r9", "action": "ping", "extra": True}, fmt), fmt)
    assert error.code == "malformed_frame"
    assert error.ref == "r9"
    assert "extra" in error.message
    assert error.ack() == {"ref": "r9", "ok": False, "error": {"code": "malformed_frame", "message": error.message}}


@pytest.mark.parametrize("fmt", FORMATS)
def test_unknown_action(fmt: str) -> None:
    error = _frame_error(_raw({"ref": "r2", "action": "chat.explode", "data": {}}, fmt), fmt)
    assert error.code == "unknown_action"
    assert error.ref == "r2"
    assert error.details["action"] == "chat.explode"
    assert "chat.send" in error.details["known"]


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize(
    ("action", "data", "field", "reason"),
    [
        ("chat.read", {"chat_id": "7", "seq": "3"}, "seq", "expected `int`, got `str`"),
        ("chat.read", {"chat_id": "7", "seq": -1}, "seq", "expected `int` >= 0"),
        ("chat.read", {"chat_id": 7, "seq": 3}, "chat_id", "expected `str`, got `int`"),
        ("chat.delivered", {"seq": 3}, "chat_id", "is required"),
        ("chat.typing", {"chat_id": "7", "typing": "yes"}, "typing", "expected `bool`, got `str`"),
        ("chat.send", {"chat_id": "7", "client_id": "c", "type": "gif"}, "type", None),
        ("subscribe", {}, "topic", "is required"),
        ("subscribe", {"topic": "post:1", "since": "x"}, "since", "is not a known field"),
        ("ping", {"hello": 1}, "hello", "is not a known field"),
    ],
)
def test_bad_action_data_fails_validation_naming_the_field(
    fmt: str, action: str, data: dict[str, Any], field: str, reason: str | None
) -> None:
    error = _frame_error(_raw({"ref": "r3", "action": action, "data": data}, fmt), fmt)
    assert error.code == "validation_failed"
    assert error.ref == "r3"
    assert list(error.details["fields"]) == [field]
    if reason is not None:
        assert error.details["fields"][field] == reason
    assert error.ack()["error"]["details"] == error.details


def test_oversized_frames_are_rejected_with_their_ref() -> None:
    big = "x" * MAX_FRAME_BYTES
    for fmt in FORMATS:
        error = _frame_error(_raw({"ref": "r4", "action": "chat.send", "data": {"text": big}}, fmt), fmt)
        assert error.code == "payload_too_large"
        assert error.ref == "r4"
        assert error.details == {"limit": MAX_FRAME_BYTES}
    # A text frame is measured in UTF-8 bytes, not characters.
    emoji = orjson.dumps({"action": "ping", "data": {"t": "😀" * (MAX_FRAME_BYTES // 4)}}).decode()
    assert len(emoji) < MAX_FRAME_BYTES
    assert _frame_error(emoji, "json").code == "payload_too_large"


BOB = UserSummary(id="2", username="bob", name="Bob", avatar=None)
MESSAGE = Message(
    id="10",
    chat_id="7",
    seq=1,
    client_id="c1",
    sender=BOB,
    type="text",
    text="hi",
    media=None,
    caption=None,
    reply_to=None,
    reactions={"👍": ["alice"]},
    deleted=False,
    created_at="2025-06-01T19:00:00.000Z",
    edited_at=None,
)


encode_frame = server_frame  # the gateway's encoder (api/ws/frames.py)


def _loads(raw: bytes, fmt: str) -> Any:
    return orjson.loads(raw) if fmt == "json" else msgpack.unpackb(raw, raw=False)


@pytest.mark.parametrize("fmt", FORMATS)
def test_encode_frame_round_trips_structs(fmt: str) -> None:
    raw = encode_frame("55", "chat.message", MESSAGE, fmt)
    plain = _loads(raw, fmt)
    assert list(plain) == ["id", "type", "data"]
    assert plain["id"] == "55" and plain["type"] == "chat.message"
    assert plain["data"] == msgspec.to_builtins(MESSAGE)
    assert plain["data"]["sender"] == {"id": "2", "username": "bob", "name": "Bob", "avatar": None}
    assert plain["data"]["edited_at"] is None  # nullable fields are always present
    frame = decode_server_frame(raw, fmt)
    assert (frame.id, frame.type, frame.data) == ("55", "chat.message", MESSAGE)


@pytest.mark.parametrize("fmt", FORMATS)
def test_encode_frame_round_trips_plain_data_and_acks(fmt: str) -> None:
    presence: dict[str, Any] = {"username": "bob", "online": True, "last_seen": None}
    frame = decode_server_frame(encode_frame(None, "presence", presence, fmt), fmt)
    assert (frame.id, frame.type, frame.data) == (None, "presence", PresenceEvent(**presence))

    ok = ack_ok("r1", {"message": msgspec.to_builtins(MESSAGE)})
    assert _loads(encode_frame(None, "ack", ok, fmt), fmt) == {"id": None, "type": "ack", "data": ok}
    assert decode_server_frame(encode_frame(None, "ack", ok, fmt), fmt).data == Ack(
        ref="r1", ok=True, result=ok["result"]
    )

    err = ack_error("r2", "not_found", "No such post.")
    assert _loads(encode_frame(None, "ack", err, fmt), fmt)["data"] == {
        "ref": "r2",
        "ok": False,
        "error": {"code": "not_found", "message": "No such post."},
    }

    unknown = decode_server_frame(encode_frame("1", "x.future", {"a": [1, 2]}, fmt), fmt)
    assert unknown.data == {"a": [1, 2]}


def test_ack_helpers() -> None:
    assert ack_ok("r") == {"ref": "r", "ok": True, "result": {}}
    assert ack_ok(None, {"a": 1}) == {"ref": None, "ok": True, "result": {"a": 1}}
    assert ack_error("r", "validation_failed", "Bad.", {"fields": {"seq": "is required"}}) == {
        "ref": "r",
        "ok": False,
        "error": {"code": "validation_failed", "message": "Bad.", "details": {"fields": {"seq": "is required"}}},
    }


def test_unknown_format_is_a_programming_error() -> None:
    with pytest.raises(ValueError):
        decode_client_frame(b"{}", "xml")
