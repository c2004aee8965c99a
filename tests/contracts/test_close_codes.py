"""The close codes documented in AsyncAPI (domain.events.CLOSE_CODES) are exactly those the server sends."""

from __future__ import annotations

import ast
from pathlib import Path

from domain import events as ev

REPO = Path(__file__).resolve().parents[2]
# Sent without a call of ours: 1000 by the endpoint's final websocket.close(), 1009 and 1011 by uvicorn
# (frame over ws_max_size, keepalive ping timeout).
IMPLICIT = {ev.CLOSE_NORMAL, ev.CLOSE_TOO_BIG, ev.CLOSE_PING_TIMEOUT}


def _codes_sent() -> dict[int, list[str]]:
    """Every close code passed to close_soon(...) or close(code=...) in api/ and actors/, with where."""
    found: dict[int, list[str]] = {}
    for path in sorted([*(REPO / "api").rglob("*.py"), *(REPO / "actors").rglob("*.py")]):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if not isinstance(node, ast.Call) or not isinstance(node.func, ast.Attribute):
                continue
            arg: ast.expr | None = None
            if node.func.attr == "close_soon" and node.args:
                arg = node.args[0]
            elif node.func.attr == "close":
                arg = next((k.value for k in node.keywords if k.arg == "code"), None)
            if arg is None or (isinstance(arg, ast.Name) and arg.id == "code"):
                continue  # a pass-through parameter, not a code chosen here
            where = f"{path.relative_to(REPO)}:{node.lineno}"
            assert not isinstance(arg, ast.Constant), f"{where}: use an domain.events.CLOSE_* constant"
            name = arg.attr if isinstance(arg, ast.Attribute) else getattr(arg, "id", "")
            value = getattr(ev, name, None)
            if value is None and name == "CLOSE_SLOW":
                value = ev.CLOSE_TOO_SLOW
            assert isinstance(value, int), f"{where}: {ast.unparse(arg)} is not a known close code"
            found.setdefault(value, []).append(where)
    return found


def test_every_close_code_sent_is_documented_and_every_documented_one_is_sent() -> None:
    sent = _codes_sent()
    assert set(sent) <= set(ev.CLOSE_CODES), {c: w for c, w in sent.items() if c not in ev.CLOSE_CODES}
    assert set(ev.CLOSE_CODES) - IMPLICIT == set(sent) - IMPLICIT
