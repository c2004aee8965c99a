"""APP_ENV=production refuses unsafe settings: the file mail backend, a generated JWT secret, CORS_ORIGINS=*.
Checked in Settings itself (every process) and by ``python -m api`` before uvicorn starts (non-zero exit)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from storage.config import ConfigError, Settings, load_settings

REPO = Path(__file__).resolve().parent.parent.parent
SECRET = "p" * 48
SAFE = {"APP_ENV": "production", "SMTP_URL": "smtp://mail.internal:25", "JWT_SECRET": SECRET}


def _env(tmp_path: Path, **values: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in {"SMTP_URL", "JWT_SECRET", "CORS_ORIGINS", "WS_ORIGINS"}}
    # An unreachable database: a run that got past the settings check would fail there instead, differently.
    env.update(VAR_DIR=str(tmp_path / "var"), DATABASE_URL="postgresql://nobody@127.0.0.1:1/none", **values)
    return env


@pytest.mark.parametrize(
    ("unset", "extra", "reason"),
    [
        ("SMTP_URL", {}, "SMTP_URL is unset"),
        ("JWT_SECRET", {}, "JWT_SECRET is unset"),
        (None, {"CORS_ORIGINS": "https://app.example.com,*"}, "CORS_ORIGINS=*"),
        (None, {"WS_ORIGINS": "*"}, "WS_ORIGINS=*"),
        (None, {"JWT_SECRET": "short"}, "shorter than 32"),
    ],
    ids=["file_mail", "generated_secret", "cors_star", "ws_star", "short_secret"],
)
def test_the_server_refuses_to_start_in_production_with_an_unsafe_setting(
    tmp_path: Path, unset: str | None, extra: dict[str, str], reason: str
) -> None:
    values = {k: v for k, v in SAFE.items() if k != unset} | extra
    done = subprocess.run(
        [sys.executable, "-m", "api"],
        env=_env(tmp_path, **values),
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2, (done.returncode, done.stderr[-2000:])
    assert "APP_ENV=production refuses to start" in done.stderr and reason in done.stderr, done.stderr[-2000:]
    assert "Started server process" not in done.stderr  # stopped before uvicorn
    assert not (tmp_path / "var" / "jwt_secret").exists()  # no secret was generated on the way


def test_settings_themselves_refuse_production_with_the_file_mail_backend_or_a_generated_secret() -> None:
    with pytest.raises(ConfigError, match="SMTP_URL"):
        Settings(env="production", jwt_secret=SECRET)
    with pytest.raises(ConfigError, match="JWT_SECRET is unset"):
        Settings(env="production", smtp_url="smtp://x", jwt_secret=SECRET, jwt_secret_generated=True)
    with pytest.raises(ConfigError, match="CORS_ORIGINS"):
        Settings(env="production", smtp_url="smtp://x", jwt_secret=SECRET, cors_origins=("*",))
    # A safe production configuration, and development with everything defaulted, are fine.
    Settings(env="production", smtp_url="smtp://x", jwt_secret=SECRET, cors_origins=("https://app.example.com",))
    Settings(env="dev", cors_origins=("*",))


def test_outside_production_a_missing_secret_is_generated_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for key in ("JWT_SECRET", "SMTP_URL", "APP_ENV"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("VAR_DIR", str(tmp_path))
    first, second = load_settings(), load_settings()
    assert first.jwt_secret_generated and first.jwt_secret == second.jwt_secret and len(first.jwt_secret) >= 32
    monkeypatch.setenv("APP_ENV", "production")
    monkeypatch.setenv("SMTP_URL", "smtp://x")
    with pytest.raises(ConfigError, match="JWT_SECRET is unset"):
        load_settings()  # a secret left under var/ by development does not count in production


def test_rate_limits_override_only_the_buckets_they_name(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RATE_LIMITS", "auth=100000/60")  # the old way to open up logins for a load test
    limits = load_settings().rate_limits
    assert limits["auth"] == (100000, 60)
    # The others, the per-account and per-address ones included, keep their defaults: none goes unlimited.
    assert limits["login_account"] == (10, 900) and limits["code_email"] == (10, 3600)
    assert limits["auth_email"] == (5, 600) and limits["ws_connect"] == (120, 60)
