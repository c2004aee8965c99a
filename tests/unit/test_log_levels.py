"""uvicorn's report of a refused handshake is not an error: it is kept at DEBUG; real errors stay errors."""

from __future__ import annotations

import logging

from api.logs import DenialNoise


def _record(message: str, level: int = logging.ERROR) -> logging.LogRecord:
    return logging.LogRecord("uvicorn.error", level, __file__, 1, message, None, None)


def test_a_refused_handshake_is_logged_at_debug_not_error() -> None:
    noise = DenialNoise()
    logging.getLogger("uvicorn.error").setLevel(logging.INFO)
    record = _record(DenialNoise.MESSAGE)
    assert noise.filter(record) is False  # below the logger's level now: not written
    assert record.levelname == "DEBUG"
    other = _record("Exception in ASGI application")
    assert noise.filter(other) is True and other.levelname == "ERROR"
    logging.getLogger("uvicorn.error").setLevel(logging.DEBUG)
    assert noise.filter(_record(DenialNoise.MESSAGE)) is True
    logging.getLogger("uvicorn.error").setLevel(logging.NOTSET)
