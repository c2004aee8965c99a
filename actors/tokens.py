"""Access tokens (JWT, HS256 only) and opaque refresh tokens."""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time
import uuid
from dataclasses import dataclass

import jwt

from actors.errors import Unauthenticated

ALGORITHMS = ["HS256"]  # explicit allow-list: "none" and asymmetric confusion are refused
REQUIRED_CLAIMS = ["exp", "iat", "sub", "jti", "sid", "typ", "iss"]


@dataclass(frozen=True)
class Principal:
    user_id: int
    session_id: int
    token_id: str
    expires_at: int


class TokenService:
    def __init__(self, secret: str, issuer: str, access_ttl_s: int) -> None:
        if len(secret) < 32:
            raise ValueError("JWT_SECRET must be at least 32 characters")
        self._secret = secret
        self._issuer = issuer
        self.access_ttl_s = access_ttl_s

    def issue_access(self, user_id: int, session_id: int, now: float | None = None) -> str:
        issued = int(now if now is not None else time.time())
        claims = {
            "iss": self._issuer,
            "sub": str(user_id),
            "sid": str(session_id),
            "jti": uuid.uuid4().hex,
            "typ": "access",
            "iat": issued,
            "exp": issued + self.access_ttl_s,
        }
        return jwt.encode(claims, self._secret, algorithm="HS256")

    def decode_access(self, token: str) -> Principal:
        try:
            claims = jwt.decode(
                token,
                self._secret,
                algorithms=ALGORITHMS,
                issuer=self._issuer,
                options={"require": REQUIRED_CLAIMS},
                leeway=5,
            )
        except jwt.ExpiredSignatureError as exc:
            raise Unauthenticated("The access token has expired.", reason="token_expired") from exc
        except jwt.PyJWTError as exc:
            raise Unauthenticated("The access token is invalid.", reason="invalid_token") from exc
        if claims.get("typ") != "access":
            raise Unauthenticated("The access token is invalid.", reason="invalid_token")
        try:
            return Principal(int(claims["sub"]), int(claims["sid"]), str(claims["jti"]), int(claims["exp"]))
        except (TypeError, ValueError) as exc:
            raise Unauthenticated("The access token is invalid.", reason="invalid_token") from exc

    def hmac_digest(self, *parts: str) -> bytes:
        """Keyed hash for codes and refresh tokens stored server-side (never the plain value)."""
        return hmac.new(self._secret.encode(), "\x1f".join(parts).encode(), hashlib.sha256).digest()


def new_refresh_token() -> str:
    return base64.urlsafe_b64encode(secrets.token_bytes(32)).rstrip(b"=").decode()


def new_code() -> str:
    """A 6-digit code from the OS CSPRNG."""
    return f"{secrets.randbelow(1_000_000):06d}"
