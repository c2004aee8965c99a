"""Server frames on the hot path: stored events arrive as msgpack ``data`` and are framed without decoding for
msgpack sockets (the envelope is written around the packed bytes) and decoded once per event for JSON ones."""

from __future__ import annotations

from typing import Any

import msgpack
import orjson

_ENVELOPE = b"\x83"  # fixmap of 3 entries: id, type, data
_K_ID = msgpack.packb("id")
_K_TYPE = msgpack.packb("type")
_K_DATA = msgpack.packb("data")


def packed_frame(event_id: str | None, type_: str, packed_data: bytes) -> bytes:
    """``{"id", "type", "data"}`` as msgpack, around already-packed ``data``."""
    return b"".join((_ENVELOPE, _K_ID, msgpack.packb(event_id), _K_TYPE, msgpack.packb(type_), _K_DATA, packed_data))


def json_frame(event_id: str | None, type_: str, data: Any) -> bytes:
    return orjson.dumps({"id": event_id, "type": type_, "data": data})


class FrameCache:
    """One event's frame in each encoding, built at most once however many sockets receive it."""

    __slots__ = ("_json", "_msgpack", "event_id", "packed", "prev", "type")

    def __init__(self, event_id: str | None, type_: str, packed: bytes, prev: str | None = None) -> None:
        self.event_id = event_id
        self.type = type_
        self.packed = packed
        self.prev = prev  # the stream entry before this one (live events only): detects overtaking
        self._json: bytes | None = None
        self._msgpack: bytes | None = None

    def get(self, fmt: str) -> bytes:
        if fmt == "msgpack":
            if self._msgpack is None:
                self._msgpack = packed_frame(self.event_id, self.type, self.packed)
            return self._msgpack
        if self._json is None:
            self._json = json_frame(self.event_id, self.type, msgpack.unpackb(self.packed, raw=False))
        return self._json


def plain_frame(event_id: str | None, type_: str, data: Any, fmt: str) -> bytes:
    if fmt == "msgpack":
        return packed_frame(event_id, type_, msgpack.packb(data, use_bin_type=True))
    return json_frame(event_id, type_, data)
