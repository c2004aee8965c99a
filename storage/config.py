"""Settings read from environment variables, with safe local defaults.

Lives in ``storage`` (the bottom layer) so that the api processes and the Ray actors read configuration the
same way; it imports nothing else of ours.
"""

from __future__ import annotations

import ipaddress
import os
import secrets
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent


def _env(name: str, default: str) -> str:
    value = os.environ.get(name)
    return value if value not in (None, "") else default


def _env_int(name: str, default: int) -> int:
    return int(_env(name, str(default)))


def _env_list(name: str, default: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in _env(name, default).split(",") if part.strip())


def parse_rate_limits(spec: str) -> dict[str, tuple[int, int]]:
    """Parse ``"auth=20/60,auth_code=10/600"`` into ``{"auth": (20, 60), ...}`` (requests per seconds)."""
    limits: dict[str, tuple[int, int]] = {}
    for item in spec.split(","):
        item = item.strip()
        if not item:
            continue
        name, _, rule = item.partition("=")
        count, _, window = rule.partition("/")
        if not name or not count.isdigit() or not window.isdigit() or int(window) <= 0:
            raise ValueError(f"bad RATE_LIMITS entry {item!r}; expected name=COUNT/SECONDS")
        limits[name.strip()] = (int(count), int(window))
    return limits


# name=COUNT/SECONDS (.env.example says what each counts): per IP auth, auth_refresh, auth_code, ws_connect; per
# address auth_email, code_email; per account login_account; per user write.
DEFAULT_RATE_LIMITS = (
    "auth=30/60,auth_refresh=300/60,auth_email=5/600,auth_code=20/600,code_email=10/3600,login_account=10/900,"
    "ws_connect=120/60,write=120/60"
)


PRODUCTION_ENVS = frozenset({"production", "prod"})


class ConfigError(ValueError):
    """The configuration is unsafe or inconsistent; the message says what to set."""


def production_problems(settings: Settings) -> list[str]:
    """Why this configuration must not serve production (empty outside APP_ENV=production)."""
    if settings.env not in PRODUCTION_ENVS:
        return []
    problems = []
    if not settings.smtp_url:
        problems.append("SMTP_URL is unset, so signup and reset codes would go to .eml files, not to users")
    if settings.jwt_secret_generated or not settings.jwt_secret:
        problems.append("JWT_SECRET is unset; set a long random value, the same on every node")
    elif len(settings.jwt_secret) < 32:
        problems.append("JWT_SECRET is shorter than 32 characters")
    if "*" in settings.cors_origins:
        problems.append("CORS_ORIGINS=* lets any web site call the API; list the allowed origins")
    if "*" in settings.ws_origins:
        problems.append("WS_ORIGINS=* lets any web site open sockets; list the allowed origins")
    return problems


def _jwt_secret(var_dir: Path, env: str) -> tuple[str, bool]:
    """JWT_SECRET, or (outside production) one generated once under var/: (secret, generated)."""
    secret = os.environ.get("JWT_SECRET")
    if secret:
        return secret, False
    if env in PRODUCTION_ENVS:
        return "", True  # refused by Settings validation; never written to disk
    # Development only: generate once and keep it under var/ so restarts keep sessions valid.
    path = var_dir / "jwt_secret"
    try:
        return path.read_text().strip(), True
    except FileNotFoundError:
        var_dir.mkdir(parents=True, exist_ok=True)
        value = secrets.token_urlsafe(48)
        path.write_text(value)
        path.chmod(0o600)
        return value, True


@dataclass(frozen=True)
class Settings:
    host: str = "127.0.0.1"
    port: int = 8000
    workers: int = 2
    env: str = "dev"
    database_url: str = "postgresql://postgres@127.0.0.1:5432/i9lyfe"
    db_pool_min: int = 1
    db_pool_max: int = 10
    redis_url: str = "redis://127.0.0.1:6379/0"
    redis_prefix: str = "i9:"
    ray_address: str = ""
    ray_namespace: str = "i9lyfe"
    user_shards: int = 4
    chat_shards: int = 4
    jwt_secret: str = ""
    jwt_secret_generated: bool = False  # made up under VAR_DIR because JWT_SECRET was unset (development)
    jwt_issuer: str = "i9lyfe"
    access_ttl_s: int = 900
    refresh_ttl_s: int = 30 * 24 * 3600
    smtp_url: str = ""
    mail_from: str = "i9lyfe <no-reply@i9lyfe.local>"
    mail_dir: str = "var/mail"
    media_backend: str = "local"
    media_dir: str = "var/media"
    gcs_bucket: str = ""
    gcs_project: str = ""
    gcs_credentials_file: str = ""  # service-account JSON whose key signs V4 URLs (GCS_CREDENTIALS_FILE)
    storage_emulator_host: str = ""
    public_base_url: str = "http://127.0.0.1:8000"
    cors_origins: tuple[str, ...] = ()
    ws_origins: tuple[str, ...] = ()
    rate_limits: dict[str, tuple[int, int]] = field(default_factory=lambda: parse_rate_limits(DEFAULT_RATE_LIMITS))
    trusted_proxies: tuple[str, ...] = ()
    max_body_bytes: int = 1024 * 1024
    log_level: str = "INFO"
    hash_concurrency: int = 2
    var_dir: str = "var"
    drain_s: float = 10.0  # on SIGTERM: seconds to close sockets (1012) and finish requests before exiting
    # An idle keep-alive connection is closed after this: longer than a proxy's or client's own idle timeout (AWS
    # ALB 60 s), so the server never closes one the other side is sending a request on at that moment.
    http_keepalive_s: float = 75.0
    redis_pool_max: int = 64  # Redis connections per process; a command waits up to 2 s for one, then 503
    ws_max_sockets_per_user: int = 20  # open sockets per user across every gateway; one more is refused (429)
    metrics_allow: tuple[str, ...] = ("127.0.0.1/32", "::1/128")  # client networks (CIDR) GET /metrics answers
    fanout_max_followers: int = 10_000  # authors with more followers are merged into feeds at read time
    feed_active_days: int = 14  # a timeline unread (and without a socket) this long expires: no fan-out to it
    fanout_batch: int = 1000  # followers per fan-out step (one query, one Redis script, one push per shard)
    recs_refresh_s: int = 300  # trending posts and each interest's top posts and authors are recomputed this often

    def __post_init__(self) -> None:
        problems = production_problems(self)
        if problems:
            raise ConfigError(f"APP_ENV={self.env} refuses to start: " + "; ".join(problems) + ".")

    def to_dict(self) -> dict[str, Any]:
        """Plain dict, for handing the configuration to Ray actors (whose environment is not ours)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Settings:
        fixed = dict(data)
        for key in ("cors_origins", "ws_origins", "trusted_proxies"):
            fixed[key] = tuple(fixed.get(key, ()))
        fixed["rate_limits"] = {k: tuple(v) for k, v in fixed.get("rate_limits", {}).items()}
        return cls(**fixed)


def load_settings() -> Settings:
    var_dir = Path(_env("VAR_DIR", str(REPO_ROOT / "var")))
    port = _env_int("PORT", 8000)
    host = _env("HOST", "127.0.0.1")
    env = _env("APP_ENV", "dev")
    jwt_secret, jwt_secret_generated = _jwt_secret(var_dir, env)
    return Settings(
        host=host,
        port=port,
        workers=_env_int("WORKERS", 2),
        env=env,
        database_url=_env("DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/i9lyfe"),
        db_pool_min=_env_int("DB_POOL_MIN", 1),
        db_pool_max=_env_int("DB_POOL_MAX", 10),
        redis_url=_env("REDIS_URL", "redis://127.0.0.1:6379/0"),
        redis_prefix=_env("REDIS_PREFIX", "i9:"),
        ray_address=_env("RAY_ADDRESS", ""),
        ray_namespace=_env("RAY_NAMESPACE", "i9lyfe"),
        user_shards=_env_int("USER_SHARDS", 4),
        chat_shards=_env_int("CHAT_SHARDS", 4),
        jwt_secret=jwt_secret,
        jwt_secret_generated=jwt_secret_generated,
        jwt_issuer=_env("JWT_ISSUER", "i9lyfe"),
        access_ttl_s=_env_int("ACCESS_TOKEN_TTL", 900),
        refresh_ttl_s=_env_int("REFRESH_TOKEN_TTL", 30 * 24 * 3600),
        smtp_url=_env("SMTP_URL", ""),
        mail_from=_env("MAIL_FROM", "i9lyfe <no-reply@i9lyfe.local>"),
        mail_dir=_env("MAIL_DIR", str(var_dir / "mail")),
        media_backend=_env("MEDIA_BACKEND", "local"),
        media_dir=_env("MEDIA_DIR", str(var_dir / "media")),
        gcs_bucket=_env("GCS_BUCKET", ""),
        gcs_project=_env("GCS_PROJECT", ""),
        gcs_credentials_file=_env("GCS_CREDENTIALS_FILE", ""),
        storage_emulator_host=_env("STORAGE_EMULATOR_HOST", ""),
        public_base_url=_env("PUBLIC_BASE_URL", f"http://{host}:{port}"),
        cors_origins=_env_list("CORS_ORIGINS", ""),
        ws_origins=_env_list("WS_ORIGINS", ""),
        # RATE_LIMITS changes the buckets it names; the others keep their defaults (never silently unlimited).
        rate_limits={**parse_rate_limits(DEFAULT_RATE_LIMITS), **parse_rate_limits(_env("RATE_LIMITS", ""))},
        trusted_proxies=_env_list("TRUSTED_PROXIES", ""),
        max_body_bytes=_env_int("MAX_BODY_BYTES", 1024 * 1024),
        log_level=_env("LOG_LEVEL", "INFO").upper(),
        hash_concurrency=_env_int("HASH_CONCURRENCY", 2),
        var_dir=str(var_dir),
        drain_s=float(_env("DRAIN_S", "10")),
        http_keepalive_s=float(_env("HTTP_KEEPALIVE_S", "75")),
        redis_pool_max=_env_int("REDIS_POOL_MAX", 64),
        ws_max_sockets_per_user=_env_int("WS_MAX_SOCKETS_PER_USER", 20),
        metrics_allow=_networks("METRICS_ALLOW", _env_list("METRICS_ALLOW", "127.0.0.1/32,::1/128")),
        fanout_max_followers=_env_int("FANOUT_MAX_FOLLOWERS", 10_000),
        feed_active_days=_env_int("FEED_ACTIVE_DAYS", 14),
        fanout_batch=max(1, _env_int("FANOUT_BATCH", 1000)),
        recs_refresh_s=max(1, _env_int("RECS_REFRESH_S", 300)),
    )


def _networks(name: str, values: tuple[str, ...]) -> tuple[str, ...]:
    """CIDRs (or single addresses), checked now: a typo stops the server (exit 2), not every request."""
    for value in values:
        try:
            ipaddress.ip_network(value, strict=False)
        except ValueError as exc:
            raise ConfigError(f"{name}: {value!r} is not a network (CIDR such as 10.0.0.0/8)") from exc
    return values
