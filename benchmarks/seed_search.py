"""Seed a search data set straight into PostgreSQL: 100k users and 1M posts by default (issue 13).

Captions are 6-14 words drawn from a 5,000-word vocabulary with a Zipf-like distribution (so some words are in
tens of thousands of posts and most in a few dozen), a third of the posts carry one or two of 300 hashtags, and
names come from 400 first and 600 last names with accents here and there. The rows are written with COPY with the
search trigger off and the full-text index dropped; then the documents, the typo vocabulary, the hashtag counts
and the index are built in bulk (what the triggers and migration 0012 would have written, row by row), and the
tables are ANALYZEd (this machine's PostgreSQL runs without autovacuum).

    .venv/bin/python benchmarks/seed_search.py postgresql://postgres@127.0.0.1:5432/<db> [--users N] [--posts N]
"""

from __future__ import annotations

import os
import sys

if os.path.dirname(os.path.realpath(__file__)) in sys.path:
    sys.path.remove(os.path.dirname(os.path.realpath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.realpath(__file__))))

import argparse
import asyncio
import datetime as dt
import random
import string
import time
from dataclasses import dataclass

import asyncpg

from storage.ids import EPOCH_MS

SYLLABLES = ["ka", "lo", "mi", "ne", "ra", "to", "vi", "su", "de", "po", "ba", "ri", "an", "el", "or", "un", "sa", "te"]
ACCENTED = {"e": "é", "a": "á", "o": "ö", "u": "ü"}


@dataclass
class Dataset:
    users: int
    posts: int
    vocabulary: list[str]
    tags: list[str]
    first_user: int
    seconds: dict[str, float]


def _word(rng: random.Random, n: int) -> str:
    return "".join(rng.choice(SYLLABLES) for _ in range(n))


def vocabulary(rng: random.Random, size: int = 5000) -> list[str]:
    words: set[str] = set()
    while len(words) < size:
        words.add(_word(rng, rng.choice((2, 3, 3, 4))))
    return sorted(words)


def entry_id(at: dt.datetime, n: int) -> int:
    return ((int(at.timestamp() * 1000) - EPOCH_MS) << 22) + (n % (1 << 22))


async def seed(dsn: str, users: int = 100_000, posts: int = 1_000_000, seed_: int = 13) -> Dataset:
    rng = random.Random(seed_)
    words = vocabulary(rng)
    weights = [1 / (i + 1) ** 1.07 for i in range(len(words))]
    tags = [f"{_word(rng, 2)}{i}" for i in range(300)]
    firsts = [_word(rng, 2).capitalize() for _ in range(400)]
    lasts = [_word(rng, 3).capitalize() for _ in range(600)]
    seconds: dict[str, float] = {}
    conn = await asyncpg.connect(dsn)
    try:
        phase = time.monotonic()
        base = entry_id(dt.datetime(2024, 3, 1, tzinfo=dt.UTC), 0)
        user_rows = []
        for i in range(users):
            first, last = rng.choice(firsts), rng.choice(lasts)
            if rng.random() < 0.1:
                first = "".join(ACCENTED.get(c, c) if rng.random() < 0.3 else c for c in first)
            name = f"{first} {last}"
            username = f"{first.lower()[:8]}{last.lower()[:8]}{i}"
            username = "".join(c for c in username if c in string.ascii_lowercase + string.digits)[:30]
            user_rows.append((base + i, username, f"{username}@example.com", name, dt.date(1990, 1, 1), "x"))
        await conn.copy_records_to_table(
            "users", records=user_rows, columns=["id", "username", "email", "name", "birthday", "password_hash"]
        )
        seconds["COPY users"] = time.monotonic() - phase

        phase = time.monotonic()
        await conn.execute("ALTER TABLE posts DISABLE TRIGGER posts_search_insert")
        await conn.execute("DROP INDEX IF EXISTS posts_search_idx")
        start = dt.datetime.now(dt.UTC) - dt.timedelta(days=365)
        span = 365 * 24 * 3600.0
        post_rows = []
        tag_rows = []
        for i in range(posts):
            at = start + dt.timedelta(seconds=span * i / posts)
            pid = entry_id(at, i)
            caption = " ".join(rng.choices(words, weights, k=rng.randrange(6, 15)))
            if rng.random() < 0.33:
                chosen = rng.sample(tags, rng.choice((1, 1, 2)))
                caption += " " + " ".join(f"#{t}" for t in chosen)
                tag_rows += [(pid, t, at) for t in chosen]
            post_rows.append((pid, base + rng.randrange(users), "photo", caption, at))
            if len(post_rows) >= 100_000:
                await conn.copy_records_to_table(
                    "posts", records=post_rows, columns=["id", "author_id", "type", "caption", "created_at"]
                )
                post_rows = []
        if post_rows:
            await conn.copy_records_to_table(
                "posts", records=post_rows, columns=["id", "author_id", "type", "caption", "created_at"]
            )
        await conn.execute("ALTER TABLE posts ENABLE TRIGGER posts_search_insert")
        seconds["COPY posts"] = time.monotonic() - phase

        phase = time.monotonic()
        counts: dict[str, int] = {}
        last_used: dict[str, dt.datetime] = {}
        for _pid, tag, at in tag_rows:
            counts[tag] = counts.get(tag, 0) + 1
            last_used[tag] = max(last_used.get(tag, at), at)
        await conn.copy_records_to_table(
            "hashtags",
            records=[(t, n, last_used[t]) for t, n in counts.items()],
            columns=["tag", "posts_count", "last_used_at"],
        )
        await conn.copy_records_to_table("post_hashtags", records=tag_rows, columns=["post_id", "tag", "created_at"])
        await conn.execute(
            """UPDATE users u SET posts_count = c.n
               FROM (SELECT author_id, count(*) AS n FROM posts GROUP BY author_id) c WHERE c.author_id = u.id"""
        )
        seconds["hashtags, counters"] = time.monotonic() - phase

        phase = time.monotonic()
        await conn.execute(
            "UPDATE posts p SET search = i9_post_document(p.caption, u.name, u.username) FROM users u "
            "WHERE u.id = p.author_id AND p.search IS NULL"
        )
        await conn.execute(
            """INSERT INTO search_words (word, n)
               SELECT w, count(*) FROM posts p,
                      unnest(tsvector_to_array(to_tsvector('simple', i9_fold(p.caption)))) AS w
               WHERE length(w) BETWEEN 2 AND 40 GROUP BY w
               ON CONFLICT (word) DO UPDATE SET n = EXCLUDED.n"""
        )
        seconds["documents, vocabulary"] = time.monotonic() - phase
        phase = time.monotonic()
        await conn.execute("CREATE INDEX posts_search_idx ON posts USING gin (search)")
        seconds["GIN index"] = time.monotonic() - phase
        phase = time.monotonic()
        await conn.execute("VACUUM ANALYZE posts")
        await conn.execute("ANALYZE")
        seconds["VACUUM ANALYZE"] = time.monotonic() - phase
    finally:
        await conn.close()
    return Dataset(users, posts, words, tags, base, seconds)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("dsn")
    parser.add_argument("--users", type=int, default=100_000)
    parser.add_argument("--posts", type=int, default=1_000_000)
    args = parser.parse_args()
    data = asyncio.run(seed(args.dsn, args.users, args.posts))
    for name, value in data.seconds.items():
        print(f"{name}: {value:.1f} s")


if __name__ == "__main__":
    main()
