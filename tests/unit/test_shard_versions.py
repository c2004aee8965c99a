"""Shard fingerprints: equal settings and code give equal shard names; anything a shard depends on changes
them; gateway-only settings do not; no setting ever shows through a name."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from actors.runtime.registry import chat_shard_name, user_shard_name
from actors.runtime.versioning import (
    FINGERPRINT_LENGTH,
    code_version,
    is_shard_name,
    shard_fingerprint,
    shard_name_fingerprint,
    stale_shard_names,
)
from storage.config import Settings

SECRET = "s3cret-" + "k" * 40
BASE = Settings(
    jwt_secret=SECRET, database_url="postgresql://app:pa55word@db.internal:5432/i9", user_shards=4, chat_shards=4
)


def test_equal_settings_and_code_give_the_same_fingerprint() -> None:
    fingerprint = shard_fingerprint(BASE)
    assert len(fingerprint) == FINGERPRINT_LENGTH
    assert int(fingerprint, 16) >= 0
    assert shard_fingerprint(Settings.from_dict(BASE.to_dict())) == fingerprint
    assert shard_fingerprint(replace(BASE)) == fingerprint


def test_settings_the_shards_use_change_the_fingerprint() -> None:
    fingerprint = shard_fingerprint(BASE)
    changed = [
        replace(BASE, jwt_secret=SECRET + "2"),
        replace(BASE, database_url="postgresql://app:pa55word@db.internal:5432/other"),
        replace(BASE, user_shards=8),
        replace(BASE, chat_shards=8),
        replace(BASE, redis_url="redis://127.0.0.1:6379/1"),
        replace(BASE, redis_prefix="other:"),
        replace(BASE, rate_limits={"write": (1, 1)}),
    ]
    fingerprints = {shard_fingerprint(s) for s in changed}
    assert fingerprint not in fingerprints
    assert len(fingerprints) == len(changed)


def test_settings_of_the_front_door_only_keep_the_fingerprint() -> None:
    # The processes of one deploy differ in these (each gateway its own port and base URL).
    same = replace(
        BASE,
        host="0.0.0.0",
        port=9999,
        workers=8,
        log_level="DEBUG",
        public_base_url="https://i9.example.com",
        cors_origins=("https://app.example.com",),
        max_body_bytes=1,
        ray_address="ray://head:10001",
    )
    assert shard_fingerprint(same) == shard_fingerprint(BASE)


def test_new_code_changes_the_fingerprint(tmp_path: Path) -> None:
    for package in ("actors", "storage"):
        (tmp_path / package).mkdir()
        (tmp_path / package / "__init__.py").write_text("")
    before = code_version(tmp_path)
    (tmp_path / "storage" / "users.py").write_text("X = 1\n")
    after = code_version.__wrapped__(tmp_path)  # the cached value is per process; recompute for the test
    assert after != before
    assert shard_fingerprint(BASE, code=before) != shard_fingerprint(BASE, code=after)
    assert code_version() == code_version()  # the real packages: computed once, stable


def test_shard_names_carry_the_fingerprint_and_no_setting() -> None:
    fingerprint = shard_fingerprint(BASE)
    names = [user_shard_name(fingerprint, k) for k in range(4)] + [chat_shard_name(fingerprint, 0)]
    assert names[0] == f"user-shard-{fingerprint}-0"
    for name in names:
        assert is_shard_name(name)
        assert shard_name_fingerprint(name) == fingerprint
        for text in (SECRET, "s3cret", "pa55word", "db.internal"):
            assert text not in name


def test_stale_names_are_the_shards_of_other_versions_and_the_unversioned_ones() -> None:
    ours, theirs = "0123456789", "abcdefabcd"
    names = [
        user_shard_name(ours, 0),
        user_shard_name(ours, 1),
        user_shard_name(theirs, 0),
        chat_shard_name(theirs, 3),
        "user-shard-2",  # named before shard names carried a version
        "fanout-worker",
        "user-shard-notahash-0",
    ]
    assert stale_shard_names(names, ours) == [chat_shard_name(theirs, 3), "user-shard-2", user_shard_name(theirs, 0)]
