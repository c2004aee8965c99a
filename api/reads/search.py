"""Search (issue 13): the query language, typo correction, and the ranked pages (storage/search.py holds the SQL).

The query of a post search is what people type: words, "quoted phrases", ``-word`` to exclude, ``OR``
(PostgreSQL's ``websearch_to_tsquery``, which never fails whatever punctuation it is given), plus two filters
taken out before: ``from:username`` and ``#tag`` (every one given must match). Accents and case are folded.

Typo tolerance: when the first page of a query finds fewer than ``FEW_HITS`` posts, each plain word of it that
the vocabulary (``search_words``, every caption word with its post count) does not hold is replaced by the
nearest vocabulary word: the 30 nearest by trigram distance (the GiST index's KNN order), then the smallest
optimal-string-alignment distance (a swap of two neighbours counts one edit), then the most used; accepted
within 1 edit for words of up to 4 letters, 2 for longer ones. If that finds more, the page is the corrected
query's and says so in ``corrected_query``.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from typing import Any

from api.pagination import keyset
from domain.post_text import normalize_tag
from domain.rules import RuleError, normalize_username
from storage import search as store
from storage import users as user_store
from storage.ids import EPOCH_MS

FEW_HITS = 3
MAX_QUERY = 200
_TOKEN = re.compile(r'"[^"]*"?|\S+')
_WORD = re.compile(r"^[^\W_]+$")  # a plain word: letters and digits only (no operator, no punctuation)


@dataclass
class Parsed:
    text: str  # for websearch_to_tsquery
    author: str | None = None  # from:
    tags: list[str] = field(default_factory=list)  # #tag
    words: list[str] = field(default_factory=list)  # plain words of ``text`` that may be corrected
    bad_author: bool = False  # from: names no possible username: nothing matches


def parse(query: str) -> Parsed:
    kept: list[str] = []
    out = Parsed("")
    for token in _TOKEN.findall(query):
        lower = token.lower()
        if lower.startswith("from:") and len(token) > 5:
            try:
                out.author = normalize_username(token[5:].lstrip("@"))
            except RuleError:
                out.bad_author = True
            continue
        if token.startswith("#") and len(token) > 1:
            tag = normalize_tag(token)
            if tag is not None:
                out.tags.append(tag)
                continue
        kept.append(token)
        if _WORD.match(token) and token.upper() != "OR":
            out.words.append(token)
    out.text = " ".join(kept)
    return out


def osa_distance(a: str, b: str) -> int:
    """Optimal string alignment distance: insertions, deletions, substitutions and swaps of neighbours."""
    prev2: list[int] = []
    prev = list(range(len(b) + 1))
    for i in range(1, len(a) + 1):
        cur = [i] + [0] * len(b)
        for j in range(1, len(b) + 1):
            cost = 0 if a[i - 1] == b[j - 1] else 1
            cur[j] = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + cost)
            if i > 1 and j > 1 and a[i - 1] == b[j - 2] and a[i - 2] == b[j - 1]:
                cur[j] = min(cur[j], prev2[j - 2] + 1)
        prev2, prev = prev, cur
    return prev[len(b)]


def snapshot_id(now_s: float) -> int:
    """The smallest id minted after ``now_s`` (storage/ids.py layout): posts below it existed at the snapshot."""
    return max(0, min((int(now_s * 1000) - EPOCH_MS + 1) << 22, (1 << 63) - 1))


class Search:
    def __init__(self, pool: Any) -> None:
        self.pool = pool

    async def correct(self, words: list[str]) -> dict[str, str]:
        """Original word -> the vocabulary word it is corrected to (only words that were corrected)."""
        folded = await store.fold(self.pool, words)
        known = await store.known_words(self.pool, folded)
        out: dict[str, str] = {}
        for word, low in zip(words, folded, strict=True):
            if low in known or len(low) < 3:
                continue
            allowed = 1 if len(low) <= 4 else 2
            best: tuple[int, int, str] | None = None
            for candidate, n in await store.nearest_words(self.pool, low):
                distance = osa_distance(low, candidate)
                if distance <= allowed and (best is None or (distance, -n) < (best[0], best[1])):
                    best = (distance, -n, candidate)
            if best is not None:
                out[word] = best[2]
        return out

    async def posts(
        self, query: str, scope: str, viewer_id: int | None, cursor: Cursor | None, limit: int
    ) -> tuple[list[tuple[int, float]], Cursor | None, str | None]:
        """Ranked post ids with scores, the next cursor and the corrected query (None: not corrected). A cursor
        of a corrected search goes on with the corrected query."""
        parsed = parse(query)
        if parsed.bad_author:
            return [], None, None
        author_id = None
        if parsed.author is not None:
            row = await user_store.find_user_by_username(self.pool, parsed.author)
            if row is None:
                return [], None, None
            author_id = int(row["id"])
        now = cursor.now if cursor is not None else time.time()
        after = (cursor.score, cursor.last) if cursor is not None else None

        async def run(text: str) -> list[Any]:
            return await store.posts(
                self.pool,
                text=text,
                author_id=author_id,
                tags=parsed.tags,
                scope=scope,
                viewer_id=viewer_id,
                now=now,
                snapshot_id=snapshot_id(now),
                after=after,
                limit=limit + 1,
            )

        corrected = None
        if cursor is not None and cursor.corrected:
            fixes = await self.correct(parsed.words)
            rows = await run(_apply(parsed.text, fixes))
            corrected = _apply(query, fixes)
        else:
            rows = await run(parsed.text)
            if cursor is None and len(rows) < FEW_HITS and parsed.words:
                fixes = await self.correct(parsed.words)
                if fixes:
                    better = await run(_apply(parsed.text, fixes))
                    if len(better) > len(rows):
                        rows = better
                        corrected = _apply(query, fixes)
        fixed = corrected is not None
        rows, next_cursor = keyset(rows, limit, lambda row: Cursor(now, float(row["score"]), int(row["id"]), fixed))
        hits = [(int(r["id"]), float(r["score"])) for r in rows]
        return hits, next_cursor, corrected


def _apply(text: str, fixes: dict[str, str]) -> str:
    return " ".join(fixes.get(t, t) for t in _TOKEN.findall(text))


@dataclass(frozen=True)
class Cursor:
    """A position in one ranked list: its snapshot time, the last score and id, and whether it was corrected.
    Wire form ``<snapshot ms>.<score as a hex float>.<id>.<0|1>``."""

    now: float
    score: float
    last: int
    corrected: bool = False

    def encode(self) -> str:
        return f"{int(self.now * 1000)}.{self.score.hex()}.{self.last}.{int(self.corrected)}"

    @staticmethod
    def decode(value: str) -> Cursor | None:
        """The position a cursor names; every string matching ``CURSOR_PATTERN`` is one (out-of-range parts are
        clamped, as every list's cursor: the start of the list), anything else is None."""
        match = CURSOR_RE.match(value)
        if match is None:
            return None
        try:
            score = float.fromhex(match.group(2))
        except OverflowError:
            score = store.MAX_SCORE
        last = max(-(1 << 63), min(int(match.group(3)), (1 << 63) - 1))
        return Cursor(int(match.group(1)) / 1000, min(score, store.MAX_SCORE), last, match.group(4) == "1")


_SCORE = r"-?0x[01]\.[0-9a-f]{1,13}p[-+][0-9]{1,4}"  # float.hex() of a finite score
CURSOR_PATTERN = rf"^[0-9]{{1,15}}\.{_SCORE}\.-?[0-9]{{1,20}}\.[01]$"
CURSOR_RE = re.compile(rf"^([0-9]{{1,15}})\.({_SCORE})\.(-?[0-9]{{1,20}})\.([01])$")
