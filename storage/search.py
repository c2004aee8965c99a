"""Search queries (migration 0012, DESIGN.md 5): posts by full text, users and hashtags by prefix and trigrams.

Every query takes a snapshot time ``now`` (Unix seconds) carried in its cursor, so that the scores of a ranked
list are the same on every page (recency is measured from the snapshot) and posts made after the snapshot are
not in it: a page never shifts while new posts arrive. Keyset pages on (score, id).

Post score (documented in the OpenAPI description of GET /search):

    score = (0.1 + ts_rank_cd(document, query)) * (1 + ln(1 + engagement)) / (1 + age_hours / 72)

with engagement = reactions + 2 x comments + 3 x reposts, the rank 0 for a query of filters only (``from:``,
``#tag``), and age measured from the snapshot. The caption weighs more than the author's name (weights A, B).
The ranked set is the newest ``CANDIDATES`` (2,000) matches: a word in most posts would otherwise mean scoring
hundreds of thousands of rows per page, and with recency in the score an older match rarely outranks them.
"""

from __future__ import annotations

from typing import Any

import asyncpg

MAX_SCORE = 1e300

USER_CANDIDATES = 200  # a user search ranks the first 200 usernames with the prefix and the 200 nearest names
CANDIDATES = 2000  # a post search ranks the newest this many matches (see the module docstring)

_POST_SCORE = """
    (0.1 + CASE WHEN $1 = '' THEN 0 ELSE ts_rank_cd(c.search, websearch_to_tsquery('simple', i9_fold($1))) END)
    * (1 + ln(1 + coalesce((SELECT sum(CASE pc.counter WHEN 'reactions' THEN pc.n WHEN 'comments' THEN 2 * pc.n
                                                  WHEN 'reposts' THEN 3 * pc.n ELSE 0 END)
                            FROM post_counts pc WHERE pc.post_id = c.id
                              AND pc.counter IN ('reactions', 'comments', 'reposts')), 0)::float8))
    / (1 + greatest(0, $7 - extract(epoch FROM c.created_at)) / 3600.0 / 72)
"""


async def posts(
    conn: Any,
    *,
    text: str,
    author_id: int | None,
    tags: list[str],
    scope: str,
    viewer_id: int | None,
    now: float,
    snapshot_id: int,
    after: tuple[float, int] | None,
    limit: int,
) -> list[asyncpg.Record]:
    """Posts matching ``text`` (websearch_to_tsquery syntax: quotes, -word, OR) written by ``author_id`` and
    tagged with every one of ``tags``, in ``scope`` (all, following, mine) for the viewer, with id below
    ``snapshot_id``: the newest ``CANDIDATES`` of them, ranked; rows ``(id, score)`` after the position ``after``.

    The query is written out in the statement (not in a CTE) so that a custom plan sees it: PostgreSQL then
    estimates how many posts match and walks the newest posts for a frequent word, or the GIN index for a rare
    one. Run it on a connection with ``plan_cache_mode = force_custom_plan`` (``search_pool``)."""
    score_after, id_after = after if after is not None else (MAX_SCORE, (1 << 63) - 1)
    # With #tags, the candidates come from the hashtag index (posts with every tag), joined to their posts.
    tagged = (
        """JOIN (SELECT ph.post_id FROM post_hashtags ph WHERE ph.tag = ANY($3::text[])
                 GROUP BY ph.post_id HAVING count(*) = cardinality($3::text[])) t ON t.post_id = p.id"""
        if tags
        else ""
    )
    rows: list[asyncpg.Record] = await conn.fetch(
        f"""WITH c AS (
                SELECT p.id, p.search, p.created_at
                FROM posts p {tagged}
                WHERE ($1 = '' OR p.search @@ websearch_to_tsquery('simple', i9_fold($1)))
                  AND ($2::bigint IS NULL OR p.author_id = $2)
                  AND cardinality($3::text[]) >= 0
                  AND ($4 = 'all'
                       OR ($4 = 'mine' AND p.author_id = $5)
                       OR ($4 = 'following' AND EXISTS (SELECT 1 FROM follows f
                                                        WHERE f.follower_id = $5 AND f.followee_id = p.author_id)))
                  AND p.id < $6
                ORDER BY p.id DESC LIMIT {CANDIDATES}
            )
            SELECT id, score FROM (SELECT c.id, ({_POST_SCORE})::float8 AS score FROM c) s
            WHERE (score, id) < ($8::float8, $9::bigint)
            ORDER BY score DESC, id DESC LIMIT $10""",
        text,
        author_id,
        tags,
        scope,
        viewer_id,
        snapshot_id,
        now,
        score_after,
        id_after,
        limit,
    )
    return rows


async def known_words(conn: Any, words: list[str]) -> dict[str, int]:
    """How many posts use each of these (folded) words."""
    rows = await conn.fetch("SELECT word, n FROM search_words WHERE word = ANY($1::text[]) AND n > 0", words)
    return {r["word"]: int(r["n"]) for r in rows}


async def fold(conn: Any, words: list[str]) -> list[str]:
    """Words as the index holds them: lower-case, accents folded."""
    value = await conn.fetchval(
        "SELECT array_agg(i9_fold(w) ORDER BY o) FROM unnest($1::text[]) WITH ORDINALITY AS t (w, o)", words
    )
    return list(value or [])


async def nearest_words(conn: Any, word: str, limit: int = 30) -> list[tuple[str, int]]:
    """The vocabulary's nearest words by trigram distance (the GiST index's KNN order)."""
    rows = await conn.fetch("SELECT word, n FROM search_words WHERE n > 0 ORDER BY word <-> $1 LIMIT $2", word, limit)
    return [(r["word"], int(r["n"])) for r in rows]


async def users(
    conn: Any, *, text: str, viewer_id: int | None, after: tuple[float, int] | None, limit: int
) -> list[asyncpg.Record]:
    """Users by username prefix first (typeahead), then trigram word similarity of username and name; people
    the viewer follows and people who follow the viewer ranked up. Rows ``(id, score)``.

    score = 2 (username starts with the text) + 1 (a name word starts with it) + word_similarity
            + 0.5 (the viewer follows them) + 0.3 (they follow the viewer)"""
    score_after, id_after = after if after is not None else (MAX_SCORE, (1 << 63) - 1)
    rows: list[asyncpg.Record] = await conn.fetch(
        f"""WITH c AS (
               (SELECT u.id, u.username, i9_fold(u.name) AS name FROM users u
                WHERE u.username ~>=~ $7 AND u.username ~<~ $8
                ORDER BY u.username LIMIT {USER_CANDIDATES})
               UNION
               (SELECT u.id, u.username, i9_fold(u.name) FROM users u
                WHERE $2 <% (u.username || ' ' || i9_fold(u.name))
                ORDER BY (u.username || ' ' || i9_fold(u.name)) <->> $2 LIMIT {USER_CANDIDATES})
           )
           SELECT id, score FROM (
               SELECT c.id,
                      (CASE WHEN c.username LIKE $1 || '%' THEN 2 ELSE 0 END
                       + CASE WHEN c.name LIKE $2 || '%' OR c.name LIKE '% ' || $2 || '%' THEN 1 ELSE 0 END
                       + word_similarity($2, c.username || ' ' || c.name)
                       + CASE WHEN EXISTS (SELECT 1 FROM follows f WHERE f.follower_id = $3 AND f.followee_id = c.id)
                              THEN 0.5 ELSE 0 END
                       + CASE WHEN EXISTS (SELECT 1 FROM follows f WHERE f.follower_id = c.id AND f.followee_id = $3)
                              THEN 0.3 ELSE 0 END)::float8 AS score
               FROM c
           ) s
           WHERE (score, id) < ($4::float8, $5::bigint)
           ORDER BY score DESC, id DESC LIMIT $6""",
        _like_prefix(text.lower()),
        text.lower(),
        viewer_id,
        score_after,
        id_after,
        limit,
        *prefix_range(text.lower()),
    )
    return rows


async def hashtags(
    conn: Any, *, text: str, now: float, after: tuple[float, int] | None, limit: int
) -> list[asyncpg.Record]:
    """Hashtags by prefix, then trigram similarity, ranked by use with recent use weighted up. Rows
    ``(tag, posts_count, score)``; the keyset tie-breaker is the tag's position in (score, tag).

    score = (1 if the tag starts with the text, else its similarity) * ln(2 + posts_count)
            * (1 + 1 / (1 + days since last use))"""
    score_after, tag_after = after if after is not None else (MAX_SCORE, 1 << 62)
    rows: list[asyncpg.Record] = await conn.fetch(
        """SELECT tag, posts_count, score, tiebreak FROM (
               SELECT h.tag, h.posts_count,
                      ((CASE WHEN h.tag LIKE $1 || '%' THEN 1 ELSE similarity(h.tag, $2) END)
                       * ln(2 + h.posts_count)
                       * (1 + 1 / (1 + greatest(0, $3 - extract(epoch FROM h.last_used_at)) / 86400.0))
                      )::float8 AS score,
                      hashtext(h.tag)::bigint AS tiebreak
               FROM hashtags h
               WHERE h.posts_count > 0 AND ((h.tag ~>=~ $7 AND h.tag ~<~ $8) OR h.tag % $2)
           ) s
           WHERE (score, tiebreak) < ($4::float8, $5::bigint)
           ORDER BY score DESC, tiebreak DESC LIMIT $6""",
        _like_prefix(text),
        text,
        now,
        score_after,
        tag_after,
        limit,
        *prefix_range(text),
    )
    return rows


def prefix_range(prefix: str) -> tuple[str, str]:
    """Bounds [low, high) of the strings that start with ``prefix``, for an index range scan (text_pattern_ops
    compares byte-wise: ``~>=~``, ``~<~``)."""
    if not prefix:
        return "", "\U0010ffff"
    return prefix, prefix[:-1] + chr(min(ord(prefix[-1]) + 1, 0x10FFFF))


def _like_prefix(text: str) -> str:
    """``text`` with LIKE's wildcards escaped (the default escape character is backslash)."""
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
