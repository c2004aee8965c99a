"""GET /search: posts, users and hashtags, ranked and typo-tolerant, in PostgreSQL (issue 13).

Straight to storage (no shard hop), one ranked query per page plus one query per kind to hydrate it, encoded once.
The query language, the ranking formulas and the typo correction: api/reads/search.py and storage/search.py; the
OpenAPI description below repeats them for clients.
"""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Query, Request

from api.contract import operation
from api.deps import Ctx, MaybeUser
from api.pagination import DEFAULT_LIMIT, Limit
from api.reads import search_pages
from api.reads.search import CURSOR_PATTERN, MAX_QUERY, Cursor
from api.responses import Encoded, encoded
from api.routes.users import OPTIONAL_BEARER
from domain.errors import Unauthenticated, ValidationFailed
from domain.wire.search import SearchPage

router = APIRouter(tags=["search"])

DESCRIPTION = """Search posts, users or hashtags. Every page is ranked (best first) and each item carries its `score`
and its `kind` (`post`, `user` or `hashtag`, as `type` asked: a client switches on it to read the item).

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
    **operation("search", ok=SearchPage, errors=(401, 422, 503), extra=OPTIONAL_BEARER),
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
        page = await search_pages.posts(
            ctx.search, ctx.posts, ctx.services.pool, text, scope, viewer_id, position, limit
        )
    elif type == "users":
        base = ctx.services.settings.public_base_url
        page = await search_pages.users(ctx.planned_pool, base, text, viewer_id, position, limit)
    else:
        page = await search_pages.hashtags(ctx.planned_pool, text, position, limit)
    return encoded(request, page)
