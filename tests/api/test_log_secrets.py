"""No secret reaches the server's log: after every auth path (signup, login by email and by username, failed
logins, refresh, logout, password reset, a socket opened with ``?access_token=``), none of the tokens, codes or
passwords used appears anywhere in the session server's log, uvicorn's lines included, nor in the Ray logs
(drivers, i.e. the api processes, and workers) written meanwhile."""

from __future__ import annotations

import asyncio
import re
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from tests.conftest import Server
from tests.support import Api, Mailbox, WsClient, unique, wait_until

AUTH = "/api/v1/auth"


def _leaks(text: str, secrets: dict[str, str]) -> dict[str, str]:
    """The secrets found in ``text``: tokens and passwords anywhere, 6-digit codes as whole numbers."""
    found = {}
    for label, secret in secrets.items():
        if secret.isdigit():
            if re.search(rf"(?<![0-9A-Za-z]){secret}(?![0-9A-Za-z])", text):
                found[label] = secret
        elif secret in text or (len(secret) > 30 and secret[-20:] in text):  # whole, or a token's tail
            found[label] = secret
    return found


async def test_no_token_code_or_password_used_on_any_auth_path_appears_in_the_server_log(
    server: Server, make_api: Callable[..., Api], mailbox: Mailbox
) -> None:
    began = time.time()
    api = make_api()
    secrets: dict[str, str] = {}
    username = unique("quiet")
    email = f"{username}@example.com"
    password = f"Log-Secret-{unique('pw')}"

    # Signup in three steps.
    started = await api.post(f"{AUTH}/signup", {"email": email})
    assert started.status == 202, started.body
    secrets["signup code"] = code = await mailbox.code(email)
    assert (await api.post(f"{AUTH}/signup/verify", {"flow_id": started.body["flow_id"], "code": code})).status == 200
    done = await api.post(
        f"{AUTH}/signup/complete",
        {
            "flow_id": started.body["flow_id"],
            "username": username,
            "name": "Q",
            "password": password,
            "birthday": "1990-01-01",
        },
    )
    assert done.status == 201, done.body
    secrets["password"] = password
    secrets["signup access"] = done.body["tokens"]["access_token"]
    secrets["signup refresh"] = done.body["tokens"]["refresh_token"]

    # Failed logins (their passwords are secrets too), then logins by email and by username.
    for n, login in enumerate((email, username, unique("nobody"))):
        wrong = f"Wrong-Secret-{n}-{unique('pw')}"
        secrets[f"wrong password {n}"] = wrong
        assert (await api.post(f"{AUTH}/login", {"login": login, "password": wrong})).status == 401
    by_email = await api.post(f"{AUTH}/login", {"login": email, "password": password})
    by_name = await api.post(f"{AUTH}/login", {"login": username, "password": password})
    assert by_email.status == by_name.status == 200, (by_email.body, by_name.body)
    secrets["email login access"] = by_email.body["tokens"]["access_token"]
    secrets["username login access"] = access = by_name.body["tokens"]["access_token"]
    secrets["username login refresh"] = by_name.body["tokens"]["refresh_token"]

    # Refresh, then a reuse of the old refresh token (the theft path logs a warning).
    rotated = await api.post(f"{AUTH}/refresh", {"refresh_token": by_email.body["tokens"]["refresh_token"]})
    assert rotated.status == 200, rotated.body
    secrets["email login refresh"] = by_email.body["tokens"]["refresh_token"]
    secrets["rotated access"] = rotated.body["tokens"]["access_token"]
    secrets["rotated refresh"] = rotated.body["tokens"]["refresh_token"]
    assert (await api.post(f"{AUTH}/refresh", {"refresh_token": secrets["email login refresh"]})).status == 401

    # A socket with the token in the query string (as browsers must), one refused, and HTTP with secrets in
    # the query string.
    ws = await WsClient.connect(server.base_url, access, query_token=True)
    assert (await ws.request("ping"))["ok"]
    refused = httpx.AsyncClient(base_url=server.base_url)
    for query in (f"access_token={secrets['rotated access']}", f"since=1-0&access_token={secrets['signup access']}"):
        await refused.get(f"/api/v1/ws?{query}")  # plain GET, not an upgrade
    await refused.get(f"/api/v1/me?access_token={access}&code={code}&password={password}")
    await refused.aclose()

    # Logout, then a password reset in three steps.
    api.token = secrets["signup access"]
    assert (await api.post(f"{AUTH}/logout")).status == 204
    api.token = None
    reset = await api.post(f"{AUTH}/password-reset", {"email": email})
    assert reset.status == 202, reset.body
    secrets["reset code"] = reset_code = await mailbox.code(email, nth=2)
    verified = await api.post(f"{AUTH}/password-reset/verify", {"flow_id": reset.body["flow_id"], "code": reset_code})
    assert verified.status == 200, verified.body
    secrets["new password"] = new_password = f"New-Secret-{unique('pw')}"
    completed = await api.post(
        f"{AUTH}/password-reset/complete", {"flow_id": reset.body["flow_id"], "new_password": new_password}
    )
    assert completed.status == 200, completed.body
    closed, _ = await asyncio.wait_for(ws.closed, timeout=15)  # the reset revoked the socket's session
    assert closed == 4401

    async def logged() -> str | None:
        text = server.log_path.read_text(errors="replace")
        # uvicorn's lines for these sockets are there (redacted), so the log is complete enough to judge.
        accepted = '"WebSocket /api/v1/ws?access_token=' in text and "[accepted]" in text
        return text if accepted and "/api/v1/auth/password-reset/complete" in text else None

    text: Any = await wait_until(logged, timeout=10)
    assert _leaks(text, secrets) == {}
    assert "[redacted]" in text
    # Ray's own logs (default temp dir) written during this test: the api processes' driver logs among them.
    for path in _ray_logs_since(began):
        assert _leaks(path.read_text(errors="replace"), secrets) == {}, path


def _ray_logs_since(started: float) -> list[Path]:
    found = []
    for path in (Path(tempfile.gettempdir()) / "ray").glob("session_*/logs/*"):
        try:
            stat = path.stat()
        except OSError:
            continue  # a session being cleaned up
        if path.is_file() and stat.st_mtime >= started and stat.st_size < 50 * 2**20:
            found.append(path)
    return found
