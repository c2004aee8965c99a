"""Access tokens (JWT, HS256 only) and opaque refresh tokens.

JWT_SECRET is never used as a key itself: HKDF-SHA256 (RFC 5869) derives one independent 32-byte key per use
(JWT signing, refresh-token digests, code digests), so no output of one use helps with another.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time
import uuid
from collections import OrderedDict
from dataclasses import dataclass

import jwt
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from domain.errors import Unauthenticated

ALGORITHMS = ["HS256"]  # explicit allow-list: "none" and asymmetric confusion are refused
REQUIRED_CLAIMS = ["exp", "iat", "sub", "jti", "sid", "typ", "iss"]
VERIFIED_CACHE_MAX = 10_000  # verified access tokens kept per process (about 3 MB at most)

# HKDF ``info`` labels, one per key use. Changing one invalidates what that key made (tokens, stored digests).
JWT_SIGNING = "i9lyfe/v1/jwt-hs256"
REFRESH_DIGEST = "i9lyfe/v1/refresh-token-digest"
CODE_DIGEST = "i9lyfe/v1/code-digest"
MEDIA_URL = "i9lyfe/v1/media-url-hmac"


def derive_key(secret: str, purpose: str) -> bytes:
    """The 32-byte key for ``purpose`` derived from ``secret`` (HKDF-SHA256, no salt, info = purpose)."""
    hkdf = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=purpose.encode())
    return hkdf.derive(secret.encode())


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
        self._jwt_key = derive_key(secret, JWT_SIGNING)
        self._refresh_key = derive_key(secret, REFRESH_DIGEST)
        self._code_key = derive_key(secret, CODE_DIGEST)
        self._issuer = issuer
        self.access_ttl_s = access_ttl_s
        # Verified access tokens -> their principal, until they expire: a client sends the same token with every
        # request, and the signature check is a tenth of a GET /me. Only successful decodes are kept; the session
        # denylist is still checked on every request (api/deps.py). Bounded: the oldest entry goes first.
        self._verified: OrderedDict[str, Principal] = OrderedDict()

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
        return jwt.encode(claims, self._jwt_key, algorithm="HS256")

    def decode_access(self, token: str) -> Principal:
        cached = self._verified.get(token)
        if cached is not None:
            if time.time() < cached.expires_at:
                self._verified.move_to_end(token)
                return cached
            del self._verified[token]
        principal = self._decode_access(token)
        self._verified[token] = principal
        if len(self._verified) > VERIFIED_CACHE_MAX:
            self._verified.popitem(last=False)
        return principal

    def _decode_access(self, token: str) -> Principal:
        try:
            claims = jwt.decode(
                token,
                self._jwt_key,
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

    def refresh_digest(self, token: str) -> bytes:
        """What is stored for a refresh token (never the token): HMAC-SHA256 under the refresh-digest key."""
        return hmac.new(self._refresh_key, token.encode(), hashlib.sha256).digest()

    def code_digest(self, flow_id: int, code: str) -> bytes:
        """What is stored for an emailed code, bound to its flow: HMAC-SHA256 under the code-digest key."""
        return hmac.new(self._code_key, f"{flow_id}\x1f{code}".encode(), hashlib.sha256).digest()


def new_refresh_token() -> str:
    return base64.urlsafe_b64encode(secrets.token_bytes(32)).rstrip(b"=").decode()


def new_code() -> str:
    """A 6-digit code from the OS CSPRNG."""
    return f"{secrets.randbelow(1_000_000):06d}"
