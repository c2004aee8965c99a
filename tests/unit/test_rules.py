from __future__ import annotations

import datetime as dt

import pytest

from actors.runtime.registry import shard_index
from domain import rules


@pytest.mark.parametrize("value", ["abc", "a_b.c", "user_123", "x" * 30, "  MiXeD  "])
def test_good_usernames_are_normalized(value: str) -> None:
    assert rules.normalize_username(value) == value.strip().lower()


@pytest.mark.parametrize("value", ["ab", "x" * 31, "has space", "emoji🙂", "dash-name", "", "tab\tname"])
def test_bad_usernames_are_refused(value: str) -> None:
    with pytest.raises(rules.RuleError):
        rules.normalize_username(value)


def test_email_is_lowercased_and_validated() -> None:
    assert rules.normalize_email("  Alice@Example.COM ") == "alice@example.com"
    for bad in ("no-at-sign", "a@", "@b.com", "a b@c.com", "x" * 250 + "@e.com"):
        with pytest.raises(rules.RuleError):
            rules.normalize_email(bad)


@pytest.mark.parametrize(
    ("password", "ok"),
    [
        ("short1!", False),
        ("password123", False),
        ("aaaaaaaaaaaa", False),
        ("alllowercaseletters", True),  # 16+ characters may be a passphrase
        ("lowercase", False),
        ("Mixed-Case9", True),
        ("x" * 129, False),
    ],
)
def test_password_strength(password: str, ok: bool) -> None:
    if ok:
        assert rules.check_password(password) == password
    else:
        with pytest.raises(rules.RuleError):
            rules.check_password(password)


def test_password_must_not_contain_the_username_or_email() -> None:
    with pytest.raises(rules.RuleError):
        rules.check_password("harvey-Spec1", username="harvey")
    with pytest.raises(rules.RuleError):
        rules.check_password("Mike.ross99!", email="mike.ross@example.com")


def test_birthday_needs_thirteen_years_to_the_day() -> None:
    today = dt.date(2026, 11, 28)
    assert rules.check_birthday(dt.date(2013, 11, 28), today) == dt.date(2013, 11, 28)
    with pytest.raises(rules.RuleError):
        rules.check_birthday(dt.date(2013, 11, 29), today)
    with pytest.raises(rules.RuleError):
        rules.check_birthday(dt.date(2027, 1, 1), today)
    with pytest.raises(rules.RuleError):
        rules.check_birthday(dt.date(1850, 1, 1), today)


def test_names_are_single_line_and_bounded() -> None:
    assert rules.check_name("  Ada Lovelace ") == "Ada Lovelace"
    for bad in ("", "   ", "two\nlines", "x" * 51, "bell\x07"):
        with pytest.raises(rules.RuleError):
            rules.check_name(bad)
    assert rules.check_bio("") == ""
    assert rules.check_bio("line one\nline two") == "line one\nline two"


def test_shard_routing_is_stable_and_spread() -> None:
    from storage.ids import IdGenerator

    gen = IdGenerator(5)
    ids = [gen.next_id() for _ in range(40_000)]
    counts = [0] * 4
    for value in ids:
        k = shard_index(value, 4)
        assert k == shard_index(value, 4)
        counts[k] += 1
    assert min(counts) > 0.2 * len(ids), counts


def test_ids_minted_milliseconds_apart_spread_evenly_over_shards() -> None:
    from storage.ids import EPOCH_MS, NODE_BITS, SEQ_BITS

    # One id per chat created one after another: sequence 0, one node, a few milliseconds apart.
    ms = 1_800_000_000_000 - EPOCH_MS
    ids = [((ms + 7 * i) << (NODE_BITS + SEQ_BITS)) | (3 << SEQ_BITS) for i in range(4_000)]
    counts = [0] * 4
    for value in ids:
        counts[shard_index(value, 4)] += 1
    assert min(counts) > 0.22 * len(ids) and max(counts) < 0.28 * len(ids), counts


def test_variants_of_one_mailbox_share_one_throttle_key() -> None:
    from domain.throttle import address_key, login_key

    base = address_key(rules.normalize_email("victim@example.com"))
    for variant in (
        "victim@ｅｘａｍｐｌｅ.ｃｏｍ",  # fullwidth domain
        "victim@example。com",  # ideographic full stop
        "victim@example．com",  # fullwidth full stop
        "victim@example｡com",  # halfwidth ideographic full stop
        "ｖｉｃｔｉｍ@example.com",  # fullwidth local part: another string, the same quota
        " VICTIM@Example.COM ",
    ):
        assert address_key(rules.normalize_email(variant)) == base, variant
    assert address_key(rules.normalize_email("other@example.com")) != base
    # Logins that name no account: the same text in any case or width is one subject.
    assert login_key("Ghost@ｅｘａｍｐｌｅ.com") == login_key(" ghost@example.com") == "email:ghost@example.com"
    assert login_key("ＧＨＯＳＴ") == login_key("ghost") == "login:ghost"
