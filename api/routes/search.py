"""GET /search: posts, users and hashtags, ranked and typo-tolerant, in PostgreSQL (issue 13).

Straight to storage (no shard hop), one ranked query per page plus one query per kind to hydrate it, encoded once.
The query language, the ranking formulas and the typo correction: api/reads/search.py and storage/search.py; the
OpenAPI description below repeats them for clients.
"""

from __future__ import annotations

import time
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request

from api import presenters
from api.deps import Ctx, MaybeUser
from api.pagination import DEFAULT_LIMIT, Limit
from api.reads.search import CURSOR_PATTERN, MAX_QUERY, Cursor, Search
from api.responses import Encoded, encoded
from api.routes.users import OPTIONAL_BEARER
from api.schemas.common import error_responses
from api.schemas.search import SearchPage
from domain.errors import Unauthenticated, ValidationFailed
from domain.post_text import normalize_tag
from storage import graph as graph_store
from storage import search as store
from storage import users as user_store
from storage.views import public_post

router = APIRouter(tags=["search"])

DESCRIPTION = """Search posts, users or hashtags. Every page is ranked (best first) and each item carries its `score`.

**Posts** (`type=posts`, the default): full-text search over captions (hashtags included) and the author's name and
username, accents and case folded. The query takes words, `"quoted phrases"`, `-word` to exclude, `OR`, and two
filters: `from:username` (posts by that user) and `#tag` (posts with that hashtag; several must all match). Any
punctuation is fine: a query never fails. `scope`: `all` public posts (default), `following` (posts of people you
follow) or `mine` (your own); the last two need a token. Ranking:

    score = (0.1 + ts_rank_cd(document, query)) * (1 + ln(1 + engagement)) / (1 + age_hours / 72)

with engagement = reactions + 2 x comments + 3 x reposts and the caption weighing more than the author's name. The
ranked set is the 2,000 newest matches (a word in most posts would otherwise mean scoring them all). A post is
findable as soon as its create returns and gone as soon as its delete returns.

**Typo tolerance**: when a query finds fewer than 3 posts, each word the indexed vocabulary does not hold is
replaced by its nearest vocabulary word (within 1 edit for words up to 4 letters, 2 for longer ones; a swap of two
neighbouring letters is one edit). If that finds more, the page is for the corrected query, named in
`corrected_query` ("showing results for ..."); otherwise `corrected_query` is null.

**Users** (`type=users`): username prefix first (typeahead), then trigram similarity of username and name; people you
follow and people who follow you ranked up (`score` = 2 for a username prefix + 1 for a name-word prefix +
word similarity + 0.5 if you follow them + 0.3 if they follow you). Items are UserSummary with your flags.

**Hashtags** (`type=hashtags`): prefix, then trigram match, ranked by use with recent use weighted up (`score` =
(1 for a prefix, else similarity) x ln(2 + posts_count) x (1 + 1 / (1 + days since last use))). A leading `#` is
ignored.

Pages: `limit` (1-100) and `cursor` as every list; a cursor keeps the ranking of its first page (scores are
measured from that moment, and posts made later are not in it), so pages never shift while new posts arrive.
An empty `q` or one over 200 characters is 422."""

Q = Annotated[str, Query(min_length=1, max_length=MAX_QUERY, description="What to search for (1-200 characters)")]
SearchCursor = Annotated[
    str | None, Query(max_length=80, pattern=CURSOR_PATTERN, description="The `next_cursor` of the previous page")
]


@router.get(
    "/search",
    response_model=SearchPage,
    responses=error_responses(401, 422, 503),
    openapi_extra=OPTIONAL_BEARER,
    description=DESCRIPTION,
)
async def search(
    request: Request,
    viewer: MaybeUser,
    ctx: Ctx,
    q: Q,
    type: Literal["posts", "users", "hashtags"] = "posts",
    scope: Literal["all", "following", "mine"] = "all",
    limit: Limit = DEFAULT_LIMIT,
    cursor: SearchCursor = None,
) -> Encoded:
    text = q.strip()
    if not text or "\x00" in text:
        raise ValidationFailed({"q": "must not be blank"})
    position = None
    if cursor is not None:
        position = Cursor.decode(cursor)
        if position is None:
            raise ValidationFailed({"cursor": "is not a cursor of this search"})
    viewer_id = None if viewer is None else viewer.user_id
    if scope != "all" and viewer_id is None:
        raise Unauthenticated(f"scope={scope} searches your own network: send a token.")
    if type == "posts":
        body = await _posts(ctx, text, scope, viewer_id, position, limit)
    elif type == "users":
        body = await _users(ctx, text, viewer_id, position, limit)
    else:
        body = await _hashtags(ctx, text, position, limit)
    return encoded(request, body)


def _searcher(ctx: Ctx) -> Search:
    return ctx.search


async def _posts(
    ctx: Ctx, text: str, scope: str, viewer_id: int | None, position: Cursor | None, limit: int
) -> dict[str, Any]:
    hits, next_cursor, corrected = await _searcher(ctx).posts(text, scope, viewer_id, position, limit)
    services = ctx.services
    views = await ctx.posts.views(services.pool, [pid for pid, _ in hits], viewer_id)
    items = [{**public_post(views[pid]), "score": score} for pid, score in hits if pid in views]
    return {
        "items": items,
        "next_cursor": None if next_cursor is None else next_cursor.encode(),
        "corrected_query": corrected,
    }


async def _users(ctx: Ctx, text: str, viewer_id: int | None, position: Cursor | None, limit: int) -> dict[str, Any]:
    pool = ctx.planned_pool
    name = text.lstrip("@")[:60] or text
    after = None if position is None else (position.score, position.last)
    rows = await store.users(pool, text=name, viewer_id=viewer_id, after=after, limit=limit + 1)
    more, rows = len(rows) > limit, rows[:limit]
    ids = [int(r["id"]) for r in rows]
    people = {int(r["id"]): r for r in await user_store.get_users(pool, ids)} if ids else {}
    flags = await graph_store.viewer_flags(pool, viewer_id, ids) if viewer_id is not None else {}
    items = []
    for row in rows:
        person = people.get(int(row["id"]))
        if person is None:
            continue
        pair = flags.get(int(row["id"]))
        summary = (
            presenters.user_summary(person)
            if pair is None
            else presenters.user_summary(person, followed_by_me=pair[0], follows_me=pair[1])
        )
        items.append({**summary, "score": float(row["score"])})
    last = rows[-1] if rows else None
    now = time.time() if position is None else position.now
    next_cursor = Cursor(now, float(last["score"]), int(last["id"])).encode() if more and last is not None else None
    return {"items": items, "next_cursor": next_cursor, "corrected_query": None}


async def _hashtags(ctx: Ctx, text: str, position: Cursor | None, limit: int) -> dict[str, Any]:
    tag = normalize_tag(text) or text.lstrip("#").lower()
    now = time.time() if position is None else position.now
    after = None if position is None else (position.score, position.last)
    rows = await store.hashtags(ctx.planned_pool, text=tag[:100], now=now, after=after, limit=limit + 1)
    more, rows = len(rows) > limit, rows[:limit]
    items = [{"tag": r["tag"], "posts_count": int(r["posts_count"]), "score": float(r["score"])} for r in rows]
    last = rows[-1] if rows else None
    next_cursor = (
        Cursor(now, float(last["score"]), int(last["tiebreak"])).encode() if more and last is not None else None
    )
    return {"items": items, "next_cursor": next_cursor, "corrected_query": None}
