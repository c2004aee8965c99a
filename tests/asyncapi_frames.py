"""Validating frames against the committed docs/asyncapi.yaml (the file clients read, not the generator)."""

from __future__ import annotations

import datetime as dt
import functools
from pathlib import Path
from typing import Any

import jsonschema
import msgpack
import msgspec
import yaml

from api.ws.frames import FrameCache, plain_frame

DOC = Path(__file__).resolve().parent.parent / "docs" / "asyncapi.yaml"
TEST_ONLY_TYPES = {"test.event"}  # emitted by the APP_ENV=test route only; not part of the contract

_FORMATS = jsonschema.FormatChecker()


@_FORMATS.checks("date-time", raises=ValueError)
def _is_rfc3339_utc(value: object) -> bool:
    if not isinstance(value, str):
        return True
    return "T" in value and dt.datetime.fromisoformat(value).utcoffset() == dt.timedelta(0)


@functools.cache
def _document() -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load(DOC.read_text(encoding="utf-8"))
    return doc


@functools.cache
def _validator(type_: str) -> jsonschema.Draft202012Validator:
    doc = _document()
    message = doc["components"]["messages"].get(f"event.{type_}")
    assert message is not None, f"server frame type {type_!r} is not in docs/asyncapi.yaml"
    root = {**message["payload"], "components": {"schemas": doc["components"]["schemas"]}}
    return jsonschema.Draft202012Validator(root, format_checker=_FORMATS)


def check_frame(frame: dict[str, Any]) -> None:
    """Raise unless ``frame`` (a decoded server frame) matches its message in docs/asyncapi.yaml."""
    if frame.get("type") in TEST_ONLY_TYPES:
        return
    _validator(str(frame.get("type"))).validate(frame)


def server_frame(event_id: str | None, type_: str, data: Any, fmt: str) -> bytes:
    """A server frame made by the encoder the gateway really uses (api/ws/frames.py): stored events as a
    ``FrameCache`` around their packed data, everything else with ``plain_frame``."""
    plain = msgspec.to_builtins(data)
    if event_id is not None:
        return FrameCache(event_id, type_, msgpack.packb(plain, use_bin_type=True)).get(fmt)
    return plain_frame(None, type_, plain, fmt)
