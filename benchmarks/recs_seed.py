"""A synthetic social network with planted communities and interests, for measuring recommendations (issue 14).

100k users by default in ~800 communities (sizes 20-400, Zipf-like). Each community has two interests of the
catalogue; its members follow each with probability 0.5, and one random interest with 0.2. Every user has a
popularity (Pareto, alpha 1.5). Follows: out-degrees are log-normal (about ``follows`` in all); a follow goes to
someone of the same community with probability 0.75 and to anyone with 0.25, chosen in proportion to popularity;
a follow inside the community is returned with probability 0.25. Posts (1M) are spread over the last 10 days,
written by users in proportion to popularity^0.5; a post carries one of its author's community interests as a
hashtag with probability 0.75 (a random interest: 0.1). Each post has a quality (Pareto). Reactions (~30 per user,
log-normal): 45% to a post of someone the user follows, 30% to a post of the user's community, 15% to a post of one
of the user's interests, 10% to a globally popular post; within each pool in proportion to quality; a reaction
comes a few hours (exponential, mean 6 h) after its post.

Then 10% of the follows and 10% of the reactions (of users with at least 5 of them) are held out: they are not
written, and are what the recommendations are measured against (``benchmarks/recs.py``). Everything else is
written with COPY (session_replication_role = replica: no per-row foreign-key triggers; the search trigger off),
with every counter equal to its rows, then the precomputed recommendation tables are refreshed and the database is
ANALYZEd (this machine's PostgreSQL runs without autovacuum).

    .venv/bin/python benchmarks/recs_seed.py postgresql://postgres@127.0.0.1:5432/<migrated, empty db>

``recover`` gives the network of a database seeded so earlier (``benchmarks/recs.py --database``), held-out sets
included, without writing it again.
"""

from __future__ import annotations

import os
import sys

if __name__ == "__main__":  # as a script: import from the repository root (benchmarks/actors.py shadows `actors`)
    sys.path.remove(os.path.dirname(os.path.realpath(__file__)))
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.realpath(__file__))))

import argparse
import asyncio
import bisect
import datetime as dt
import itertools
import math
import random
import time
from collections import defaultdict
from dataclasses import dataclass, field

import asyncpg

from storage.ids import EPOCH_MS

PASSWORD_HASH = "$argon2id$v=19$m=19456,t=2,p=1$aTlncmFwaHNlZWQwMDAwMA$CTckm6oDB9jU42KLCzx4YuTydgeFBPfWJBYzFWnS3FI"  # noqa: S105 (a hash)
DAYS = 10
WORDS = "sunny day with friends great view new favourite place what a moment love this weekend again today".split()
EMOJI = ["👍", "❤️", "😂", "🔥"]


@dataclass
class Network:
    users: int
    user_ids: list[int]
    community: list[int]  # user index -> community
    interests_of: list[list[str]]  # user index -> followed slugs
    held_follows: dict[int, set[int]] = field(default_factory=dict)  # user index -> held-out followee indexes
    held_reactions: dict[int, set[int]] = field(default_factory=dict)  # user index -> held-out post ids
    follows: int = 0
    posts: int = 0
    reactions: int = 0
    seconds: dict[str, float] = field(default_factory=dict)


class Picker:
    """Draws items in proportion to their weights (cumulative sums and bisect)."""

    def __init__(self, items: list[int], weights: list[float]) -> None:
        self.items = items
        self.cum = list(itertools.accumulate(weights))

    def __len__(self) -> int:
        return len(self.items)

    def pick(self, rng: random.Random) -> int:
        return self.items[bisect.bisect_left(self.cum, rng.random() * self.cum[-1])]


def _id(at: dt.datetime, n: int) -> int:
    """A Snowflake id of ``at`` (node 1023, sequence from ``n``): time-ordered like the app's, never minted live."""
    return ((int(at.timestamp() * 1000) - EPOCH_MS) << 22) | (1023 << 12) | (n % 4096)


def _communities(users: int, rng: random.Random) -> list[int]:
    sizes: list[int] = []
    while sum(sizes) < users:
        sizes.append(min(400, max(20, int(20 / rng.random() ** 0.6))))
    out = [c for c, size in enumerate(sizes) for _ in range(size)][:users]
    rng.shuffle(out)
    return out


def generate(
    users: int, follows: int, posts: int, reactions_per_user: float, slugs: list[str], seed: int
) -> tuple[Network, list[tuple[int, int]], list[tuple[int, int, float]], list[tuple[int, int, float]]]:
    """The network: (network, follows as (follower, followee) indexes, posts as (author, slug index or -1,
    seconds ago), reactions as (user, post index, seconds ago)); held-out rows are in the network, not the lists."""
    rng = random.Random(seed)
    community = _communities(users, rng)
    n_comm = max(community) + 1
    comm_interests = [rng.sample(range(len(slugs)), 2) for _ in range(n_comm)]
    popularity = [rng.paretovariate(1.5) for _ in range(users)]
    members: dict[int, list[int]] = defaultdict(list)
    for u, c in enumerate(community):
        members[c].append(u)
    in_comm = {c: Picker(m, [popularity[u] for u in m]) for c, m in members.items()}
    everyone = Picker(list(range(users)), popularity)
    interests_of = []
    for u in range(users):
        mine = [slugs[i] for i in comm_interests[community[u]] if rng.random() < 0.5]
        if rng.random() < 0.2:
            mine.append(rng.choice(slugs))
        interests_of.append(sorted(set(mine)))

    mean_out = 1.2 * follows / users  # duplicates and self-follows are dropped, returned follows added: ~follows
    sigma = 1.0
    mu = math.log(mean_out) - sigma * sigma / 2
    edges: set[tuple[int, int]] = set()
    for u in range(users):
        for _ in range(max(1, int(rng.lognormvariate(mu, sigma)))):
            local = rng.random() < 0.75 and len(in_comm[community[u]]) > 1
            v = (in_comm[community[u]] if local else everyone).pick(rng)
            if v != u:
                edges.add((u, v))
                if local and rng.random() < 0.25:
                    edges.add((v, u))

    activity = Picker(list(range(users)), [p**0.5 + 0.1 for p in popularity])
    post_rows: list[tuple[int, int, float]] = []
    for _ in range(posts):
        author = activity.pick(rng)
        roll = rng.random()
        slug = (
            rng.choice(comm_interests[community[author]])
            if roll < 0.75
            else (rng.randrange(len(slugs)) if roll < 0.85 else -1)
        )
        post_rows.append((author, slug, rng.random() * DAYS * 86400))
    quality = [rng.paretovariate(1.2) for _ in range(posts)]
    by_author: dict[int, list[int]] = defaultdict(list)
    by_comm: dict[int, list[int]] = defaultdict(list)
    by_slug: dict[int, list[int]] = defaultdict(list)
    for p, (author, slug, _) in enumerate(post_rows):
        by_author[author].append(p)
        by_comm[community[author]].append(p)
        if slug >= 0:
            by_slug[slug].append(p)
    author_pick = {a: Picker(ps, [quality[p] for p in ps]) for a, ps in by_author.items()}
    comm_pick = {c: Picker(ps, [quality[p] for p in ps]) for c, ps in by_comm.items()}
    slug_pick = {s: Picker(ps, [quality[p] for p in ps]) for s, ps in by_slug.items()}
    viral = sorted(range(posts), key=lambda p: -quality[p])[:2000]
    viral_pick = Picker(viral, [quality[p] for p in viral])
    followees: dict[int, list[int]] = defaultdict(list)
    for u, v in edges:
        if v in author_pick:
            followees[u].append(v)
    slug_index = {s: i for i, s in enumerate(slugs)}

    sigma_r = 0.8
    mu_r = math.log(reactions_per_user) - sigma_r * sigma_r / 2
    reaction_rows: list[tuple[int, int, float]] = []
    for u in range(users):
        seen: set[int] = set()
        mine = [slug_index[s] for s in interests_of[u] if slug_index[s] in slug_pick]
        for _ in range(max(1, int(rng.lognormvariate(mu_r, sigma_r)))):
            roll = rng.random()
            if roll < 0.45 and followees[u]:
                p = author_pick[rng.choice(followees[u])].pick(rng)
            elif roll < 0.75 and community[u] in comm_pick:
                p = comm_pick[community[u]].pick(rng)
            elif roll < 0.9 and mine:
                p = slug_pick[rng.choice(mine)].pick(rng)
            else:
                p = viral_pick.pick(rng)
            if p in seen or post_rows[p][0] == u:
                continue
            seen.add(p)
            ago = max(0.0, post_rows[p][2] - rng.expovariate(1 / (6 * 3600)))
            reaction_rows.append((u, p, ago))

    network = Network(users, [], community, interests_of)
    # Hold out 10% of the follows and reactions of users who have at least 5 of them.
    out_degree: dict[int, int] = defaultdict(int)
    for u, _ in edges:
        out_degree[u] += 1
    kept_follows = []
    for u, v in sorted(edges):
        if out_degree[u] >= 5 and rng.random() < 0.1:
            network.held_follows.setdefault(u, set()).add(v)
        else:
            kept_follows.append((u, v))
    per_user: dict[int, int] = defaultdict(int)
    for u, _, _ in reaction_rows:
        per_user[u] += 1
    kept_reactions = []
    for u, p, ago in reaction_rows:
        if per_user[u] >= 5 and rng.random() < 0.1:
            network.held_reactions.setdefault(u, set()).add(p)
        else:
            kept_reactions.append((u, p, ago))
    return network, kept_follows, post_rows, kept_reactions


def _name(
    network: Network, post_rows: list[tuple[int, int, float]], now: dt.datetime
) -> tuple[list[dt.datetime], list[int]]:
    """The users' and posts' ids (and the posts' times) of a network written at ``now``; the held-out reactions are
    indexed by post id from here on."""
    made = now - dt.timedelta(days=400)
    network.user_ids = [_id(made + dt.timedelta(seconds=i), i) for i in range(network.users)]
    post_at = [now - dt.timedelta(seconds=ago) for _, _, ago in post_rows]
    post_ids = [_id(at, i) for i, at in enumerate(post_at)]
    network.held_reactions = {u: {post_ids[p] for p in ps} for u, ps in network.held_reactions.items()}
    return post_at, post_ids


async def recover(
    dsn: str,
    users: int = 100_000,
    follows: int = 2_000_000,
    posts: int = 1_000_000,
    reactions_per_user: float = 30.0,
    seed_: int = 14,
) -> Network:
    """The network that ``seed`` with these sizes wrote into ``dsn`` earlier, with its held-out follows and
    reactions, without writing anything: generated again (the generator is deterministic) and named with the ids
    the seed gave (from the time it ran, which the follows' time tells). A database seeded with other sizes is
    refused."""
    conn = await asyncpg.connect(dsn)
    try:
        slugs = [r["slug"] for r in await conn.fetch("SELECT slug FROM interests ORDER BY position")]
        phase = time.monotonic()
        network, follow_rows, post_rows, reaction_rows = generate(
            users, follows, posts, reactions_per_user, slugs, seed_
        )
        network.seconds["generate"] = time.monotonic() - phase
        follow_at = await conn.fetchval("SELECT min(created_at) FROM follows")
        if follow_at is None:
            raise ValueError(f"{dsn} holds no seeded network")
        _, post_ids = _name(network, post_rows, follow_at + dt.timedelta(days=30))
        sample = post_ids[:: max(1, len(post_ids) // 1000)]
        found = await conn.fetchval("SELECT count(*) FROM posts WHERE id = ANY($1)", sample)
        stored = await conn.fetchval("SELECT count(*) FROM users WHERE id = ANY($1)", network.user_ids)
        if found != len(sample) or stored != users or await conn.fetchval("SELECT count(*) FROM posts") != posts:
            raise ValueError(f"{dsn} was not seeded with {users} users, {follows} follows and {posts} posts")
        network.follows, network.posts, network.reactions = len(follow_rows), len(post_rows), len(reaction_rows)
    finally:
        await conn.close()
    return network


async def seed(
    dsn: str,
    users: int = 100_000,
    follows: int = 2_000_000,
    posts: int = 1_000_000,
    reactions_per_user: float = 30.0,
    seed_: int = 14,
) -> Network:
    conn = await asyncpg.connect(dsn)
    try:
        slugs = [r["slug"] for r in await conn.fetch("SELECT slug FROM interests ORDER BY position")]
        phase = time.monotonic()
        network, follow_rows, post_rows, reaction_rows = generate(
            users, follows, posts, reactions_per_user, slugs, seed_
        )
        seconds = network.seconds
        seconds["generate"] = time.monotonic() - phase
        now = dt.datetime.now(dt.UTC)
        made = now - dt.timedelta(days=400)
        post_at, post_ids = _name(network, post_rows, now)
        user_ids = network.user_ids

        phase = time.monotonic()
        await conn.execute("SET session_replication_role = replica")  # no per-row FK or search triggers
        followers = [0] * users
        following = [0] * users
        for u, v in follow_rows:
            following[u] += 1
            followers[v] += 1
        authored = [0] * users
        for author, _, _ in post_rows:
            authored[author] += 1
        await conn.copy_records_to_table(
            "users",
            records=[
                (
                    user_ids[i], f"rec{i:06d}", f"rec{i:06d}@recs.example", f"Rec User {i}", dt.date(1995, 5, 5),
                    PASSWORD_HASH, followers[i], following[i], authored[i], made,
                )
                for i in range(users)
            ],
            columns=["id", "username", "email", "name", "birthday", "password_hash", "followers_count",
                     "following_count", "posts_count", "created_at"],
        )  # fmt: skip
        follow_at = now - dt.timedelta(days=30)
        await conn.copy_records_to_table(
            "follows",
            records=[(user_ids[u], user_ids[v], follow_at) for u, v in follow_rows],
            columns=["follower_id", "followee_id", "created_at"],
        )
        await conn.copy_records_to_table(
            "interest_follows",
            records=[(user_ids[u], s, follow_at) for u, mine in enumerate(network.interests_of) for s in mine],
            columns=["user_id", "slug", "created_at"],
        )
        seconds["COPY users, follows"] = time.monotonic() - phase

        phase = time.monotonic()
        rng = random.Random(seed_ + 1)
        tags_used: dict[str, int] = defaultdict(int)
        for start in range(0, len(post_rows), 100_000):
            batch = range(start, min(start + 100_000, len(post_rows)))
            rows, tagged, hashtags = [], [], []
            for i in batch:
                author, slug, _ = post_rows[i]
                caption = " ".join(rng.sample(WORDS, 5))
                if slug >= 0:
                    caption += f" #{slugs[slug]}"
                    tagged.append((post_ids[i], slugs[slug], user_ids[author]))
                    hashtags.append((post_ids[i], slugs[slug], post_at[i]))
                    tags_used[slugs[slug]] += 1
                rows.append((post_ids[i], user_ids[author], "photo", caption, post_at[i]))
            await conn.copy_records_to_table(
                "posts", records=rows, columns=["id", "author_id", "type", "caption", "created_at"]
            )
            await conn.copy_records_to_table("post_interests", records=tagged, columns=["post_id", "slug", "author_id"])
            if start == 0:
                await conn.copy_records_to_table(
                    "hashtags", records=[(s, 0) for s in slugs], columns=["tag", "posts_count"]
                )
            await conn.copy_records_to_table(
                "post_hashtags", records=hashtags, columns=["post_id", "tag", "created_at"]
            )
        for tag, n in tags_used.items():
            await conn.execute("UPDATE hashtags SET posts_count = $2 WHERE tag = $1", tag, n)
        seconds["COPY posts"] = time.monotonic() - phase

        phase = time.monotonic()
        counts: dict[tuple[int, str], int] = defaultdict(int)
        rows = []
        for u, p, ago in reaction_rows:
            emoji = EMOJI[(u + p) % len(EMOJI)]
            rows.append((post_ids[p], user_ids[u], emoji, now - dt.timedelta(seconds=ago)))
            counts[(post_ids[p], "reactions")] += 1
            counts[(post_ids[p], f"emoji:{emoji}")] += 1
        await conn.copy_records_to_table(
            "post_reactions", records=rows, columns=["post_id", "user_id", "emoji", "created_at"]
        )
        await conn.copy_records_to_table(
            "post_counts",
            records=[(pid, counter, 0, n) for (pid, counter), n in counts.items()],
            columns=["post_id", "counter", "shard", "n"],
        )
        await conn.execute(
            """UPDATE interests i SET followers_count = c.n
               FROM (SELECT slug, count(*) AS n FROM interest_follows GROUP BY slug) c WHERE c.slug = i.slug"""
        )
        await conn.execute("SET session_replication_role = DEFAULT")
        seconds["COPY reactions, counters"] = time.monotonic() - phase
        network.follows, network.posts, network.reactions = len(follow_rows), len(post_rows), len(rows)

        phase = time.monotonic()
        await conn.execute("VACUUM ANALYZE")
        seconds["VACUUM ANALYZE"] = time.monotonic() - phase
    finally:
        await conn.close()
    return network


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("dsn")
    parser.add_argument("--users", type=int, default=100_000)
    parser.add_argument("--follows", type=int, default=2_000_000)
    parser.add_argument("--posts", type=int, default=1_000_000)
    args = parser.parse_args()
    network = asyncio.run(seed(args.dsn, args.users, args.follows, args.posts))
    print(f"{network.follows} follows, {network.posts} posts, {network.reactions} reactions written")
    print(f"held out: {sum(map(len, network.held_follows.values()))} follows, "
          f"{sum(map(len, network.held_reactions.values()))} reactions")  # fmt: skip
    for name, value in network.seconds.items():
        print(f"{name}: {value:.1f} s")


if __name__ == "__main__":
    main()
