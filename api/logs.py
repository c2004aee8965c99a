"""Structured JSON logs, one object per line, with the request id of the request being served.

No secret reaches a log line: ``RedactSecrets`` (on our handler, the root logger and uvicorn's loggers) blanks
the values of sensitive query parameters and anything shaped like an access token (JWT) or a refresh token in
every message, argument and structured field, whoever logs it (uvicorn logs ``WebSocket /api/v1/ws?access_token=``
at INFO, with its access log off).
"""

from __future__ import annotations

import contextvars
import datetime as dt
import logging
import re
import sys
from typing import Any
from urllib.parse import unquote

import orjson

request_id_var: contextvars.ContextVar[str | None] = contextvars.ContextVar("request_id", default=None)

_STD = set(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {
    "message",
    "asctime",
    "fields",
    "color_message",  # uvicorn's ANSI-coloured copy of the message
}


_SCRUBBED_STD = frozenset({"fields", "color_message"})  # extras the formatter knows (or drops) but may carry text
REDACTED = "[redacted]"
SENSITIVE_PARAMS = frozenset({"access_token", "token", "refresh_token", "code", "password"})
_PARAM = re.compile(r"(?P<key>[A-Za-z0-9_.%+-]+)=(?P<value>[^&\s\"'#]*)")
# A JWT: base64url JSON header (always "eyJ...") then payload and (possibly empty) signature; or any three long
# base64url segments. Our refresh tokens: exactly 43 base64url characters (32 random bytes, domain/tokens.py).
_TOKEN = re.compile(
    r"eyJ[A-Za-z0-9_-]*\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*"
    r"|[A-Za-z0-9_-]{16,}\.[A-Za-z0-9_-]{16,}\.[A-Za-z0-9_-]{16,}"
    r"|(?<![A-Za-z0-9_-])[A-Za-z0-9_-]{43}(?![A-Za-z0-9_-])"
)


def _param(match: re.Match[str]) -> str:
    key = match.group("key")
    if unquote(key.replace("+", " ")).lower() in SENSITIVE_PARAMS:
        return f"{key}={REDACTED}"
    return match.group(0)


def redact(text: str) -> str:
    """``text`` with sensitive query values and token-shaped strings blanked."""
    if "=" in text:
        text = _PARAM.sub(_param, text)
    if len(text) >= 40 or "." in text:
        text = _TOKEN.sub(REDACTED, text)
    return text


def _scrub(value: Any) -> Any:
    if isinstance(value, str):
        return redact(value)
    if value is None or isinstance(value, (bool, int, float)):
        return value
    if isinstance(value, dict):
        return {k: _scrub(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_scrub(v) for v in value]
    if isinstance(value, tuple):
        return tuple(_scrub(v) for v in value)
    if isinstance(value, bytes):
        return redact(value.decode("latin-1"))
    text = str(value)
    cleaned = redact(text)
    return value if cleaned == text else cleaned


class RedactSecrets(logging.Filter):
    """Blanks secrets in a record's message, arguments, ``fields`` and other extras (never drops the record)."""

    def filter(self, record: logging.LogRecord) -> bool:
        # Redact the formatted message, not the format and its arguments apart: a secret may straddle them
        # (``"?access_token=%s"``). A record whose arguments do not fit its format keeps them, each redacted, for
        # logging's own report of the bad record.
        try:
            message = record.getMessage()
        except Exception:
            record.msg = _scrub(record.msg)
            if isinstance(record.args, dict):
                record.args = {k: _scrub(v) for k, v in record.args.items()}
            elif record.args:
                record.args = tuple(_scrub(a) for a in record.args)
        else:
            record.msg, record.args = redact(message), None
        for key, value in record.__dict__.items():
            if (key not in _STD or key in _SCRUBBED_STD) and not key.startswith("_"):
                record.__dict__[key] = _scrub(value)
        return True


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": dt.datetime.fromtimestamp(record.created, dt.UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        rid = request_id_var.get()
        if rid:
            entry["request_id"] = rid
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            entry.update(fields)
        for key, value in record.__dict__.items():
            if key not in _STD and not key.startswith("_"):
                entry[key] = value
        if record.exc_info:
            entry["exc"] = redact(self.formatException(record.exc_info))
        if record.stack_info:
            entry["stack"] = redact(self.formatStack(record.stack_info))
        return orjson.dumps(entry, default=str).decode()


class DenialNoise(logging.Filter):
    """uvicorn's websockets-sansio backend logs "ASGI callable returned without completing handshake." at ERROR
    after every handshake we refuse with an HTTP response (401, 403, 429, 503: the denial response extension);
    that is the intended outcome, not an error, so the record is kept at DEBUG."""

    MESSAGE = "ASGI callable returned without completing handshake."

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno >= logging.ERROR and record.getMessage() == self.MESSAGE:
            record.levelno, record.levelname = logging.DEBUG, "DEBUG"
            return logging.getLogger(record.name).isEnabledFor(logging.DEBUG)
        return True


def _install_filter(target: logging.Logger | logging.Handler) -> None:
    if not any(isinstance(f, RedactSecrets) for f in target.filters):
        target.addFilter(RedactSecrets())


def setup_logging(level: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    # On the handler: every record it writes, whichever logger it propagated from (a logger's own filters
    # see only records logged to that logger). On the loggers too, for any handler added to them later.
    _install_filter(handler)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    _install_filter(root)
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access", "uvicorn.asgi"):
        _install_filter(logging.getLogger(name))
    for name in ("uvicorn", "uvicorn.error"):
        logger = logging.getLogger(name)
        logger.handlers[:] = []
        logger.propagate = True
    logging.getLogger("uvicorn.error").addFilter(DenialNoise())
    # Our middleware writes one access line per request; uvicorn's own would duplicate it.
    logging.getLogger("uvicorn.access").disabled = True
