"""Write docs/openapi.json from the app (``make openapi``); tests/contracts/test_openapi.py checks it is current."""

from __future__ import annotations

import sys
from pathlib import Path

import orjson

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

OUT = REPO / "docs" / "openapi.json"


def render() -> bytes:
    from api.app import create_app
    from storage.config import Settings

    # Fixed settings so the document does not depend on the local environment.
    app = create_app(Settings(jwt_secret="x" * 32))
    return orjson.dumps(app.openapi(), option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS) + b"\n"


if __name__ == "__main__":
    OUT.parent.mkdir(exist_ok=True)
    OUT.write_bytes(render())
    print(f"wrote {OUT}")
