"""Verified access tokens are remembered until they expire; nothing else is."""

from __future__ import annotations

import time

import pytest

from domain import tokens as tokens_module
from domain.errors import Unauthenticated
from domain.tokens import TokenService

SECRET = "s" * 40


def test_a_verified_token_is_remembered_until_it_expires(monkeypatch: pytest.MonkeyPatch) -> None:
    service = TokenService(SECRET, "i9lyfe", 900)
    token = service.issue_access(7, 11)
    first = service.decode_access(token)
    calls: list[str] = []
    original = service._decode_access
    monkeypatch.setattr(service, "_decode_access", lambda t: calls.append(t) or original(t))
    assert service.decode_access(token) == first and calls == []  # no second signature check
    expired = service.issue_access(7, 11, now=time.time() - 2_000)
    with pytest.raises(Unauthenticated):
        service.decode_access(expired)
    with pytest.raises(Unauthenticated):
        service.decode_access(token[:-2] + ("AA" if not token.endswith("AA") else "BB"))  # tampered: verified anew
    assert len(calls) == 2


def test_the_cache_is_bounded_and_drops_an_entry_once_expired(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tokens_module, "VERIFIED_CACHE_MAX", 3)
    service = TokenService(SECRET, "i9lyfe", 900)
    made = [service.issue_access(n, n) for n in range(5)]
    for token in made:
        service.decode_access(token)
    assert list(service._verified) == made[-3:]
    short = TokenService(SECRET, "i9lyfe", 1)
    token = short.issue_access(1, 1, now=time.time() - 100)  # expired (beyond the 5 s leeway)
    short._verified[token] = tokens_module.Principal(1, 1, "x", int(time.time()) - 1)
    with pytest.raises(Unauthenticated):
        short.decode_access(token)
    assert token not in short._verified
