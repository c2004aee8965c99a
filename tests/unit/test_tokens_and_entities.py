from __future__ import annotations

import asyncio
import time

import jwt
import pytest

from actors.runtime.entities import EntityTable
from domain.errors import DomainError, Unauthenticated, ValidationFailed
from domain.tokens import (
    CODE_DIGEST,
    JWT_SIGNING,
    REFRESH_DIGEST,
    TokenService,
    derive_key,
    new_code,
    new_refresh_token,
)

SECRET = "s" * 40
KEY = derive_key(SECRET, JWT_SIGNING)


def test_access_token_round_trip_and_claims() -> None:
    tokens = TokenService(SECRET, "i9lyfe", 900)
    raw = tokens.issue_access(42, 7)
    principal = tokens.decode_access(raw)
    assert (principal.user_id, principal.session_id) == (42, 7)
    claims = jwt.decode(raw, KEY, algorithms=["HS256"], issuer="i9lyfe")
    assert {"exp", "iat", "sub", "jti", "sid", "typ", "iss"} <= set(claims)
    assert claims["exp"] - claims["iat"] == 900


@pytest.mark.parametrize(
    "kind", ["expired", "none", "other-secret", "raw-secret", "wrong-typ", "garbage", "wrong-issuer"]
)
def test_bad_access_tokens_are_refused(kind: str) -> None:
    tokens = TokenService(SECRET, "i9lyfe", 900)
    now = int(time.time())
    claims = {"iss": "i9lyfe", "sub": "1", "sid": "2", "jti": "j", "typ": "access", "iat": now, "exp": now + 60}
    if kind == "expired":
        raw = jwt.encode({**claims, "iat": now - 1000, "exp": now - 100}, KEY, algorithm="HS256")
    elif kind == "none":
        raw = jwt.encode(claims, None, algorithm="none")  # type: ignore[arg-type]
    elif kind == "other-secret":
        raw = jwt.encode(claims, derive_key("o" * 40, JWT_SIGNING), algorithm="HS256")
    elif kind == "raw-secret":  # JWT_SECRET itself is no key: only the key derived for signing is
        raw = jwt.encode(claims, SECRET, algorithm="HS256")
    elif kind == "wrong-typ":
        raw = jwt.encode({**claims, "typ": "refresh"}, KEY, algorithm="HS256")
    elif kind == "wrong-issuer":
        raw = jwt.encode({**claims, "iss": "evil"}, KEY, algorithm="HS256")
    else:
        raw = "not.a.jwt"
    with pytest.raises(Unauthenticated) as info:
        tokens.decode_access(raw)
    assert info.value.code == "unauthenticated"
    assert info.value.details == {"reason": "token_expired" if kind == "expired" else "invalid_token"}


def test_hkdf_matches_rfc_5869_and_each_use_gets_its_own_key() -> None:
    # RFC 5869 test case 3 (SHA-256, empty salt and info): the first 32 bytes of its OKM.
    okm = "8da4e775a563c18f715f802a063c5a31b8a11f5c5ee1879ec3454e5f3c738d2d9d201395faa4b61a96c8"
    assert derive_key("\x0b" * 22, "").hex() == okm[:64]
    keys = {derive_key(SECRET, purpose) for purpose in (JWT_SIGNING, REFRESH_DIGEST, CODE_DIGEST)}
    assert len(keys) == 3 and SECRET.encode() not in keys and all(len(k) == 32 for k in keys)
    tokens = TokenService(SECRET, "i9lyfe", 900)
    # The digests are keyed (not plain hashes) and separated: the same input under each key differs.
    assert tokens.refresh_digest("1\x1f123456") != tokens.code_digest(1, "123456")
    assert tokens.code_digest(1, "123456") != tokens.code_digest(2, "123456")  # bound to the flow
    assert TokenService("t" * 40, "i9lyfe", 900).refresh_digest("x") != tokens.refresh_digest("x")


def test_codes_and_refresh_tokens_are_random_and_well_formed() -> None:
    codes = {new_code() for _ in range(200)}
    assert all(len(c) == 6 and c.isdigit() for c in codes)
    assert len(codes) > 150
    refresh = {new_refresh_token() for _ in range(100)}
    assert len(refresh) == 100
    assert all(len(r) >= 40 for r in refresh)


def test_domain_errors_survive_the_wire_form() -> None:
    err = ValidationFailed({"email": "is required"})
    back = DomainError.from_wire(err.to_wire())
    assert (back.code, back.http_status, back.details) == (
        "validation_failed",
        422,
        {"fields": {"email": "is required"}},
    )


async def test_entity_work_is_serialized_per_entity_and_concurrent_across_entities() -> None:
    table: EntityTable[list[int]] = EntityTable(lambda _id: [], idle_seconds=0.0)
    running: dict[int, int] = {1: 0, 2: 0}
    peak: dict[int, int] = {1: 0, 2: 0}

    async def work(entity: int, state: list[int], n: int) -> None:
        running[entity] += 1
        peak[entity] = max(peak[entity], running[entity])
        await asyncio.sleep(0.001)
        state.append(n)
        running[entity] -= 1

    jobs = [table.run(e, lambda s, e=e, n=n: work(e, s, n)) for n in range(20) for e in (1, 2)]
    await asyncio.gather(*jobs)
    assert peak == {1: 1, 2: 1}
    assert table.peek(1) == list(range(20))  # FIFO per entity
    assert table.evict_idle() == 2
    assert len(table) == 0
