"""The log filter blanks secrets wherever they sit in a record: message, arguments, structured fields."""

from __future__ import annotations

import io
import logging

import orjson

from api.logs import JsonFormatter, RedactSecrets, redact
from domain.tokens import new_refresh_token

JWT = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxIiwic2lkIjoiMiJ9.c2lnbmF0dXJlLWJ5dGVzLWhlcmU"


def _logged(msg: str, *args: object, **fields: object) -> str:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    handler.addFilter(RedactSecrets())
    logger = logging.getLogger("test.redaction")
    logger.handlers[:] = [handler]
    logger.propagate = False
    logger.setLevel(logging.INFO)
    logger.info(msg, *args, extra={"fields": fields} if fields else None)
    return stream.getvalue()


def test_sensitive_query_values_are_blanked_and_others_kept() -> None:
    line = redact("/api/v1/ws?since=1-0&access_token=abc&Code=123456&x=1&password=hunter2&refresh_token=r&token=t")
    assert line == (
        "/api/v1/ws?since=1-0&access_token=[redacted]&Code=[redacted]&x=1&password=[redacted]"
        "&refresh_token=[redacted]&token=[redacted]"
    )
    assert redact("/ws?access%5Ftoken=abc") == "/ws?access%5Ftoken=[redacted]"


def test_token_shaped_strings_are_blanked_anywhere() -> None:
    refresh = new_refresh_token()
    assert redact(f"Bearer {JWT} and {refresh}.") == "Bearer [redacted] and [redacted]."
    assert redact(JWT.rsplit(".", 1)[0] + ".") == "[redacted]"  # alg none: an empty signature
    ordinary = "GET /api/v1/users/alice posted 384000000000000000 in i9lyfe.accounts"
    assert redact(ordinary) == ordinary


def test_a_secret_in_arguments_fields_or_straddling_the_format_is_blanked() -> None:
    out = _logged('%s - "WebSocket %s" [accepted]', "127.0.0.1:5", f"/api/v1/ws?access_token={JWT}")
    assert JWT not in out and "access_token=[redacted]" in out
    out = _logged("url ?access_token=%s done", JWT)
    assert JWT not in out and orjson.loads(out)["msg"] == "url ?access_token=[redacted] done"
    out = _logged("request", path=f"/x?code=123456&token={JWT}", nested={"t": [JWT]})
    entry = orjson.loads(out)
    assert entry["path"] == "/x?code=[redacted]&token=[redacted]" and entry["nested"] == {"t": ["[redacted]"]}
