"""schemathesis over every operation of the live test server's /openapi.json, in JSON and in MessagePack, with a
real user's token and every check on: zero failures.

A bounded, reproducible run (``st run``: examples, coverage, fuzzing and stateful phases; at most MAX_EXAMPLES
cases per operation and mode, a fixed seed, no example database), so it costs well under a minute per format.
It covers whatever the schema lists, so each new route is fuzzed as soon as it exists. What the hooks do
(per-request client IP, msgpack (de)serializers, a session of its own for each logout) is in
``tests/contracts/schemathesis_hooks.py``.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import REPO, Server
from tests.support import Api

ST = Path(sys.executable).parent / "st"
MAX_EXAMPLES = 20  # per operation; 63 operations now, so a run of one format takes about a minute
SEED = 20261201
TIME_LIMIT_S = 160  # the whole run of one format (under pytest's 180 s per test)


@pytest.mark.parametrize("fmt", ["json", "msgpack"])
async def test_schemathesis_finds_nothing_on_any_operation(
    server: Server, make_api: Callable[..., Api], register: Any, tmp_path: Path, fmt: str
) -> None:
    user = await register(make_api())
    env = dict(
        os.environ,
        PYTHONPATH=str(REPO),
        SCHEMATHESIS_HOOKS="tests.contracts.schemathesis_hooks",
        I9_ST_FORMAT=fmt,
        I9_ST_BASE_URL=server.base_url,
        I9_ST_EMAIL=user["email"],
        I9_ST_PASSWORD=user["password"],
        I9_ST_TOKEN=user["tokens"]["access_token"],
        NO_COLOR="1",
    )
    cmd = [
        str(ST),
        "run",
        f"{server.base_url}/openapi.json",
        "--checks",
        "all",
        "--max-examples",
        str(MAX_EXAMPLES),
        "--seed",
        str(SEED),
        "--generation-database",
        "none",
        "--workers",
        "2",
        "--request-timeout",
        "20",
        "--no-color",
        "--report",
        "junit",
        "--report-dir",
        str(tmp_path),
    ]
    started = time.monotonic()
    process = await asyncio.create_subprocess_exec(
        *cmd, env=env, cwd=tmp_path, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    try:
        out, _ = await asyncio.wait_for(process.communicate(), TIME_LIMIT_S)
    except TimeoutError:
        process.kill()
        await process.wait()
        pytest.fail(f"schemathesis ({fmt}) did not finish within {TIME_LIMIT_S} s")
    text = out.decode(errors="replace")
    elapsed = time.monotonic() - started
    (tmp_path / "schemathesis.log").write_text(text)
    assert process.returncode == 0, f"schemathesis ({fmt}, {elapsed:.0f} s) failed:\n{text[-20000:]}"
    assert "No issues found" in text or " 0 failures" in text or "passed" in text, text[-3000:]
