"""Interests, explore, feedback, knobs, the feed past its timeline and who-to-follow (issue 14), over real HTTP.

Stories: an interest's fresh post reaches its follower's explore with an ``interest`` reason; a post two people I
follow reacted to shows with an ``engaged_by_following`` reason naming them; "less" on an author removes them from
the next page; a caught-up feed continues with reasoned items; friends of friends are suggested with the mutual
follower named, never me or people I follow; every bad input gets its documented error and writes nothing.
"""

from __future__ import annotations

from typing import Any

import asyncpg
import msgpack
import redis.asyncio as aioredis

from storage.redis import Keys
from tests.api.test_search import post, word
from tests.conftest import REDIS_URL
from tests.support import Api, assert_error, wait_until

EXPLORE = "/api/v1/explore"
SUGGEST = "/api/v1/suggestions/users"


async def explore_items(api: Api, **params: Any) -> list[dict[str, Any]]:
    reply = await api.get(EXPLORE, params={"limit": 100, **params})
    assert reply.status == 200, reply.body
    assert set(reply.body) == {"items", "next_cursor"}
    return list(reply.body["items"])


def by_post(items: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {item["post"]["id"]: item for item in items}


def reason(item: dict[str, Any], type_: str) -> dict[str, Any] | None:
    return next((r for r in item["reasons"] if r["type"] == type_), None)


async def test_the_catalogue_lists_every_interest_and_following_one_is_idempotent_and_counted(
    make_api: Any, register: Any
) -> None:
    alice, anon = make_api(), make_api("msgpack")
    await register(alice)
    seen: list[dict[str, Any]] = []
    cursor = None
    while True:
        page = await anon.get("/api/v1/interests", params={"limit": 7, **({"cursor": cursor} if cursor else {})})
        assert page.status == 200, page.body
        seen += page.body["items"]
        cursor = page.body["next_cursor"]
        if cursor is None:
            break
    assert len(seen) >= 30 and len({i["slug"] for i in seen}) == len(seen)
    assert all(set(i) == {"slug", "name", "followers_count", "followed_by_me"} for i in seen)
    assert all(i["followed_by_me"] is False for i in seen)
    before = (await anon.get("/api/v1/interests/travel")).body["followers_count"]

    for _ in range(2):  # following twice counts once
        reply = await alice.put("/api/v1/interests/Travel/follow")
        assert reply.status == 200 and reply.body == {"following": True}
    mine = (await alice.get("/api/v1/interests/travel")).body
    assert mine == {"slug": "travel", "name": "Travel", "followers_count": before + 1, "followed_by_me": True}
    assert [i["slug"] for i in (await alice.get("/api/v1/me/interests")).body["items"]] == ["travel"]
    listed = (await alice.get("/api/v1/interests", params={"limit": 100})).body["items"]
    assert [i["slug"] for i in listed if i["followed_by_me"]] == ["travel"]

    for _ in range(2):
        reply = await alice.delete("/api/v1/interests/travel/follow")
        assert reply.status == 200 and reply.body == {"following": False}
    assert (await anon.get("/api/v1/interests/travel")).body["followers_count"] == before
    assert (await alice.get("/api/v1/me/interests")).body == {"items": [], "next_cursor": None}


async def test_a_post_is_tagged_with_its_interests_by_hashtag_and_keyword_and_leaves_with_the_post(
    make_api: Any, register: Any
) -> None:
    bob = make_api()
    await register(bob)
    by_tag = await post(bob, f"Made it to the top #hiking {word()}")
    by_keyword = await post(bob, f"Our CAMPFIRE under the stars {word()}")
    by_other_tag = await post(bob, f"Sunday #Sourdough {word()} #homecooking")
    untagged = await post(bob, f"nothing in particular {word()}")

    async def ids_of(slug: str) -> list[str]:
        reply = await bob.get(f"/api/v1/interests/{slug}/posts", params={"limit": 100})
        assert reply.status == 200, reply.body
        return [p["id"] for p in reply.body["items"]]

    hiking = await ids_of("hiking")
    assert by_tag["id"] in hiking and by_keyword["id"] in hiking and untagged["id"] not in hiking
    assert by_other_tag["id"] in await ids_of("cooking")
    assert (await bob.delete(f"/api/v1/posts/{by_tag['id']}")).status == 204
    assert by_tag["id"] not in await ids_of("hiking")


async def test_a_user_who_follows_an_interest_sees_a_fresh_post_of_it_in_explore_with_an_interest_reason(
    make_api: Any, register: Any
) -> None:
    alice, bob = make_api(), make_api("msgpack")
    await register(alice)
    await register(bob)
    assert (await alice.put("/api/v1/interests/space/follow")).status == 200
    fresh = await post(bob, f"The nebula through my telescope {word()}")
    off_topic = await post(bob, f"Lunch was fine {word()}")
    mine = await post(alice, f"My own #space shot {word()}")

    items = by_post(await explore_items(alice))
    assert fresh["id"] in items, "the interest's fresh post is in explore"
    item = items[fresh["id"]]
    assert reason(item, "interest") == {"type": "interest", "interest": "space", "score": 1.0}
    assert item["score"] > 0 and item["post"]["author"]["username"] == bob.username
    assert item["post"]["my"] == {"reaction": None, "reposted": False, "saved": False}
    assert mine["id"] not in items, "never my own posts"
    if off_topic["id"] in items:  # only as a newest post, never for the interest
        assert reason(items[off_topic["id"]], "interest") is None

    # Reacting takes a post out of my explore; msgpack gives the same shapes.
    assert (await alice.put(f"/api/v1/posts/{fresh['id']}/reaction", {"emoji": "🚀"})).status == 200
    assert fresh["id"] not in by_post(await explore_items(alice))
    bob_view = await bob.get(EXPLORE)
    assert bob_view.status == 200 and isinstance(bob_view.body["items"], list)


async def test_a_post_reacted_to_by_two_people_i_follow_shows_with_an_engaged_by_following_reason_naming_them(
    make_api: Any, register: Any
) -> None:
    alice, bob, carol, dave = make_api(), make_api(), make_api(), make_api()
    for api in (alice, bob, carol, dave):
        await register(api)
    for friend in (bob, carol):
        assert (await alice.put(f"/api/v1/users/{friend.username}/follow")).status == 200
    target = await post(dave, f"A stranger's post {word()}")
    assert (await bob.put(f"/api/v1/posts/{target['id']}/reaction", {"emoji": "🔥"})).status == 200
    reply = await carol.post(f"/api/v1/posts/{target['id']}/comments", {"text": "great"})
    assert reply.status == 201, reply.body

    item = by_post(await explore_items(alice))[target["id"]]
    engaged = reason(item, "engaged_by_following")
    assert engaged is not None and engaged["count"] == 2 and engaged["score"] > 0
    assert sorted(u["username"] for u in engaged["users"]) == sorted([bob.username, carol.username])
    assert set(engaged["users"][0]) >= {"id", "username", "name", "avatar"}


async def test_a_post_popular_with_people_who_react_like_me_shows_with_a_similar_users_reason(
    make_api: Any, register: Any
) -> None:
    alice, zed, yan, author = make_api(), make_api(), make_api(), make_api()
    for api in (alice, zed, yan, author):
        await register(api)
    shared = await post(author, f"We all liked this {word()}")
    other = await post(author, f"And they liked this {word()}")
    for api in (alice, zed, yan):
        assert (await api.put(f"/api/v1/posts/{shared['id']}/reaction", {"emoji": "👍"})).status == 200
    for api in (zed, yan):
        assert (await api.put(f"/api/v1/posts/{other['id']}/reaction", {"emoji": "❤️"})).status == 200
    item = by_post(await explore_items(alice))[other["id"]]
    similar = reason(item, "similar_users")
    assert similar is not None and similar["count"] == 2


async def test_less_on_an_author_removes_them_from_the_next_explore_page_and_more_raises_an_author(
    make_api: Any, register: Any, db: asyncpg.Pool
) -> None:
    alice, eve, frank = make_api(), make_api(), make_api()
    for api in (alice, eve, frank):
        await register(api)
    assert (await alice.put("/api/v1/interests/coffee/follow")).status == 200
    eves = [await post(eve, f"Espresso number {i} {word()}") for i in range(3)]
    franks = [await post(frank, f"Latte art {i} {word()}") for i in range(2)]

    items = await explore_items(alice)
    authors = [i["post"]["author"]["username"] for i in items]
    assert authors.count(eve.username) == 2, "at most 2 posts of one author in a ranking"
    assert authors.count(frank.username) == 2
    frank_before = max(i["score"] for i in items if i["post"]["author"]["username"] == frank.username)

    # A cursor taken before the feedback.
    first = await alice.get(EXPLORE, params={"limit": 1})
    assert first.status == 200 and first.body["next_cursor"]

    shown = next(i for i in items if i["post"]["author"]["username"] == eve.username)
    assert (
        await alice.post("/api/v1/explore/feedback", {"post_id": shown["post"]["id"], "signal": "less"})
    ).status == 204
    after = await explore_items(alice)
    assert eve.username not in [i["post"]["author"]["username"] for i in after]
    rest = await alice.get(EXPLORE, params={"limit": 100, "cursor": first.body["next_cursor"]})
    assert rest.status == 200 and eve.username not in [i["post"]["author"]["username"] for i in rest.body["items"]]
    assert {p["id"] for p in eves}.isdisjoint(i["post"]["id"] for i in after)

    liked = next(i for i in after if i["post"]["author"]["username"] == frank.username)
    assert (
        await alice.post("/api/v1/explore/feedback", {"post_id": liked["post"]["id"], "signal": "more"})
    ).status == 204
    later = [i for i in await explore_items(alice) if i["post"]["author"]["username"] == frank.username]
    assert [i["post"]["id"] for i in later] == [p["id"] for p in franks if p["id"] != liked["post"]["id"]]
    assert later[0]["score"] > frank_before, "more raises the author"

    # The knob: one post per author.
    reply = await alice.put("/api/v1/me/recommendations", {"per_author_cap": 1})
    assert reply.status == 200 and reply.body == {"recency_weight": 0.3, "hide_reposts": False, "per_author_cap": 1}
    authors = [i["post"]["author"]["username"] for i in await explore_items(alice)]
    assert len(authors) == len(set(authors))
    rows = await db.fetch(
        "SELECT signal FROM explore_feedback f JOIN users u ON u.id = f.user_id WHERE u.username = $1", alice.username
    )
    assert sorted(r["signal"] for r in rows) == [-1, 1]


async def test_explore_pages_walk_one_ranking_without_repeats(make_api: Any, register: Any) -> None:
    alice, bob = make_api(), make_api()
    await register(alice)
    await register(bob)
    assert (await alice.put("/api/v1/interests/books/follow")).status == 200
    assert (await alice.put("/api/v1/me/recommendations", {"per_author_cap": 10})).status == 200
    made = {(await post(bob, f"Chapter {i} of my novel {word()}"))["id"] for i in range(7)}
    seen: list[str] = []
    cursor = None
    for n in range(50):
        reply = await alice.get(EXPLORE, params={"limit": 3, **({"cursor": cursor} if cursor else {})})
        assert reply.status == 200, reply.body
        assert len(reply.body["items"]) <= 3
        seen += [i["post"]["id"] for i in reply.body["items"]]
        if n == 0:
            await post(bob, f"A late chapter {word()}")  # not in this ranking: pages never shift
        cursor = reply.body["next_cursor"]
        if cursor is None:
            break
    assert len(seen) == len(set(seen)) and made <= set(seen)


async def first_page_snapshot(api: Api) -> str:
    """The snapshot id of the ranking a first page came from (its cursor's)."""
    reply = await api.get(EXPLORE, params={"limit": 1})
    assert reply.status == 200, reply.body
    assert reply.body["next_cursor"], "more than one candidate"
    return str(reply.body["next_cursor"]).split(".")[0]


async def kept_snapshot(api: Api) -> str:
    """Two first pages in a row from one kept ranking. A write less than CLOCK_MARGIN_S (2 s) before a ranking
    counts as after it, and a refresh that changed the trending tables re-ranks: so within a few seconds."""

    async def twice() -> str | None:
        first = await first_page_snapshot(api)
        return first if await first_page_snapshot(api) == first else None

    return await wait_until(twice, timeout=15, interval=0.5)


async def test_a_first_page_comes_from_the_kept_ranking_until_something_it_came_from_changes(
    make_api: Any, register: Any
) -> None:
    alice, bob, carol = make_api(), make_api(), make_api()
    for api in (alice, bob, carol):
        await register(api)
    assert (await alice.put(f"/api/v1/users/{bob.username}/follow")).status == 200
    for i in range(2):
        await post(carol, f"A stranger's post {i} {word()}")

    # Someone I follow reacts: the next first page is a new ranking, and shows why.
    kept = await kept_snapshot(alice)
    target = await post(carol, f"Bob will like this {word()}")
    assert (await bob.put(f"/api/v1/posts/{target['id']}/reaction", {"emoji": "🔥"})).status == 200
    assert await first_page_snapshot(alice) != kept
    engaged = reason(by_post(await explore_items(alice))[target["id"]], "engaged_by_following")
    assert engaged is not None and [u["username"] for u in engaged["users"]] == [bob.username]

    # ... or comments, or reposts.
    kept = await kept_snapshot(alice)
    assert (await bob.post(f"/api/v1/posts/{target['id']}/comments", {"text": "so good"})).status == 201
    assert await first_page_snapshot(alice) != kept
    kept = await kept_snapshot(alice)
    assert (await bob.put(f"/api/v1/posts/{target['id']}/repost")).status in (200, 201)
    assert await first_page_snapshot(alice) != kept

    # I follow an interest, then a fresh post of it appears: each is a new ranking.
    kept = await kept_snapshot(alice)
    assert (await alice.put("/api/v1/interests/gardening/follow")).status == 200
    assert await first_page_snapshot(alice) != kept
    kept = await kept_snapshot(alice)
    fresh = await post(carol, f"My tomatoes are ripe #gardening {word()}")
    assert await first_page_snapshot(alice) != kept
    item = by_post(await explore_items(alice))[fresh["id"]]
    assert reason(item, "interest") == {"type": "interest", "interest": "gardening", "score": 1.0}

    # My own reaction takes the post out at once.
    kept = await kept_snapshot(alice)
    assert (await alice.put(f"/api/v1/posts/{fresh['id']}/reaction", {"emoji": "🍅"})).status == 200
    assert await first_page_snapshot(alice) != kept
    assert fresh["id"] not in by_post(await explore_items(alice))

    # Knobs, feedback, unfollowing an interest or a person (a deleted row: the stamp's counts tell).
    steps = [
        lambda: alice.put("/api/v1/me/recommendations", {"recency_weight": 0.8}),
        lambda: alice.post("/api/v1/explore/feedback", {"post_id": target["id"], "signal": "more"}),
        lambda: alice.delete("/api/v1/interests/gardening/follow"),
        lambda: alice.delete(f"/api/v1/users/{bob.username}/follow"),
    ]
    for step in steps:
        kept = await kept_snapshot(alice)
        assert (await step()).status in (200, 204)
        assert await first_page_snapshot(alice) != kept


async def test_a_caught_up_feed_continues_with_reasoned_items(make_api: Any, register: Any) -> None:
    alice, bob, carol, stranger = make_api(), make_api(), make_api(), make_api()
    for api in (alice, bob, carol, stranger):
        await register(api)
    assert (await alice.put(f"/api/v1/users/{bob.username}/follow")).status == 200
    assert (await alice.put(f"/api/v1/users/{carol.username}/follow")).status == 200
    assert (await alice.put("/api/v1/interests/gardening/follow")).status == 200
    followed = [await post(bob, f"Bob's post {i} {word()}") for i in range(2)]
    suggested = await post(stranger, f"My tomato seedlings {word()}")
    reposted = await post(stranger, f"Worth a repost {word()}")
    assert (await carol.put(f"/api/v1/posts/{reposted['id']}/repost")).status == 200

    async def whole_feed(limit: int) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = []
        cursor = None
        for _ in range(30):
            reply = await alice.get("/api/v1/feed", params={"limit": limit, **({"cursor": cursor} if cursor else {})})
            assert reply.status == 200, reply.body
            items += reply.body["items"]
            cursor = reply.body["next_cursor"]
            if cursor is None:
                break
        return items

    for limit in (2, 100):
        items = await whole_feed(limit)
        timeline = [i for i in items if "reasons" not in i]
        recommended = [i for i in items if "reasons" in i]
        assert [i["post"]["id"] for i in timeline][:3] == [reposted["id"], followed[1]["id"], followed[0]["id"]]
        assert items[: len(timeline)] == timeline, "recommended items come after the timeline"
        assert recommended, "a caught-up feed keeps going"
        item = next(i for i in recommended if i["post"]["id"] == suggested["id"])
        assert item["reposted_by"] is None and reason(item, "interest") == {
            "type": "interest",
            "interest": "gardening",
            "score": 1.0,
        }
        assert all(i["post"]["author"]["username"] not in (bob.username, carol.username) for i in recommended)
        assert all(i["reasons"] for i in recommended)
        ids = [i["post"]["id"] for i in items]
        assert len(ids) == len(set(ids))

    # hide_reposts leaves carol's repost out of the timeline part.
    assert (await alice.put("/api/v1/me/recommendations", {"hide_reposts": True})).status == 200
    timeline = [i for i in await whole_feed(100) if "reasons" not in i]
    assert [i["post"]["id"] for i in timeline][:2] == [followed[1]["id"], followed[0]["id"]]
    assert all(i["reposted_by"] is None for i in timeline)
    knobs = await alice.get("/api/v1/me/recommendations")
    assert knobs.body == {"recency_weight": 0.3, "hide_reposts": True, "per_author_cap": 2}


async def test_a_post_with_engagement_in_the_last_day_trends_for_everyone(make_api: Any, register: Any) -> None:
    author, newcomer = make_api(), make_api()
    await register(author)
    await register(newcomer)
    hot = await post(author, f"Everyone is talking about this {word()}")
    fans = [make_api() for _ in range(3)]
    for fan in fans:
        await register(fan)
        assert (await fan.put(f"/api/v1/posts/{hot['id']}/reaction", {"emoji": "🔥"})).status == 200

    async def trending() -> dict[str, Any] | None:  # the worker recomputes trending every second in tests
        item = by_post(await explore_items(newcomer)).get(hot["id"])
        return item if item is not None and reason(item, "trending") is not None else None

    item = await wait_until(trending, timeout=20, interval=0.5)
    assert 0 < reason(item, "trending")["score"] <= 0.6  # type: ignore[index]


async def test_friends_of_friends_are_suggested_with_the_mutual_follower_named_never_myself_or_people_i_follow(
    make_api: Any, register: Any
) -> None:
    alice, bob, carol, dan = make_api(), make_api(), make_api(), make_api()
    for api in (alice, bob, carol, dan):
        await register(api)
    assert (await alice.put(f"/api/v1/users/{bob.username}/follow")).status == 200
    assert (await bob.put(f"/api/v1/users/{carol.username}/follow")).status == 200
    assert (await dan.put(f"/api/v1/users/{alice.username}/follow")).status == 200

    reply = await alice.get(SUGGEST, params={"limit": 100})
    assert reply.status == 200 and set(reply.body) == {"items"}
    items = {i["user"]["username"]: i for i in reply.body["items"]}
    assert alice.username not in items and bob.username not in items
    fof = reason(items[carol.username], "followed_by_following")
    assert fof is not None and fof["count"] == 1 and [u["username"] for u in fof["users"]] == [bob.username]
    assert items[carol.username]["user"]["followed_by_me"] is False
    assert reason(items[dan.username], "follows_you") == {"type": "follows_you", "score": 1.0}
    assert items[dan.username]["user"]["follows_me"] is True
    scores = [i["score"] for i in reply.body["items"]]
    assert scores == sorted(scores, reverse=True)
    assert len((await alice.get(SUGGEST, params={"limit": 1})).body["items"]) == 1

    assert (await alice.put(f"/api/v1/users/{carol.username}/follow")).status == 200
    after = [i["user"]["username"] for i in (await alice.get(SUGGEST, params={"limit": 100})).body["items"]]
    assert carol.username not in after


async def suggested(api: Api) -> dict[str, dict[str, Any]]:
    reply = await api.get(SUGGEST, params={"limit": 100})
    assert reply.status == 200, reply.body
    return {i["user"]["username"]: i for i in reply.body["items"]}


async def test_suggestions_are_kept_until_something_they_came_from_changes(
    make_api: Any, register: Any, redis_prefix: str
) -> None:
    alice, bob, carol, dave, erin = (make_api() for _ in range(5))
    for api in (alice, bob, carol, dave, erin):
        await register(api)
    me = await alice.get("/api/v1/me")
    key = Keys(redis_prefix).latest_suggestions(int(me.body["id"]), 100)
    client = aioredis.Redis.from_url(REDIS_URL)

    async def made() -> float | None:
        raw = await client.get(key)
        return None if raw is None else float(msgpack.unpackb(raw)["made"])

    async def kept() -> float:
        """Two requests in a row answered from one kept list (a write less than 2 s before it counts as after)."""

        async def twice() -> float | None:
            await suggested(alice)
            first = await made()
            await suggested(alice)
            return first if first is not None and await made() == first else None

        return await wait_until(twice, timeout=15, interval=0.5)

    try:
        assert (await alice.put(f"/api/v1/users/{bob.username}/follow")).status == 200
        # Someone I follow follows someone: suggested at once, with who links us.
        before = await kept()
        assert (await bob.put(f"/api/v1/users/{carol.username}/follow")).status == 200
        fof = reason((await suggested(alice))[carol.username], "followed_by_following")
        assert fof is not None and [u["username"] for u in fof["users"]] == [bob.username]
        assert await made() != before
        # Someone follows me.
        before = await kept()
        assert (await dave.put(f"/api/v1/users/{alice.username}/follow")).status == 200
        assert reason((await suggested(alice))[dave.username], "follows_you") is not None
        assert await made() != before
        # Someone follows a person I follow (similar follows), or an interest of mine.
        before = await kept()
        assert (await erin.put(f"/api/v1/users/{bob.username}/follow")).status == 200
        assert reason((await suggested(alice))[erin.username], "similar_follows") is not None
        assert await made() != before
        assert (await alice.put("/api/v1/interests/history/follow")).status == 200
        before = await kept()
        assert (await carol.put("/api/v1/interests/history/follow")).status == 200
        assert reason((await suggested(alice))[carol.username], "shared_interests") is not None
        assert await made() != before
        # I react to a post; I follow someone suggested (gone at once); I unfollow someone.
        target = await post(dave, f"Dave's post {word()}")
        before = await kept()
        assert (await alice.put(f"/api/v1/posts/{target['id']}/reaction", {"emoji": "👍"})).status == 200
        assert reason((await suggested(alice))[dave.username], "engaged_with") is not None
        assert await made() != before
        before = await kept()
        assert (await alice.put(f"/api/v1/users/{carol.username}/follow")).status == 200
        assert carol.username not in await suggested(alice)
        assert await made() != before
        before = await kept()
        assert (await alice.delete(f"/api/v1/users/{bob.username}/follow")).status in (200, 204)
        assert bob.username in await suggested(alice)
        assert await made() != before
    finally:
        await client.aclose()


async def test_a_kept_list_this_code_cannot_read_is_made_anew(make_api: Any, register: Any, redis_prefix: str) -> None:
    """Another version's (or a damaged) kept ranking or suggestions, e.g. during a deploy: a new one, never a 500."""
    alice, bob = make_api(), make_api()
    await register(alice)
    await register(bob)
    assert (await bob.put(f"/api/v1/users/{alice.username}/follow")).status == 200  # someone to suggest
    user_id = int((await alice.get("/api/v1/me")).body["id"])
    keys = Keys(redis_prefix)
    client = aioredis.Redis.from_url(REDIS_URL)
    try:
        for junk in (b"\xc1", msgpack.packb({"mode": "explore"}), msgpack.packb([1, 2]), msgpack.packb({"rows": [1]})):
            await client.set(keys.latest_recommendations(user_id, "explore"), junk)
            await client.set(keys.latest_suggestions(user_id, 20), junk)
            assert (await alice.get(EXPLORE)).status == 200
            assert (await alice.get(SUGGEST)).status == 200
            assert await client.get(keys.latest_suggestions(user_id, 20)) != junk
    finally:
        await client.aclose()


async def test_shared_interests_and_engagement_make_suggestions_too(make_api: Any, register: Any) -> None:
    alice, twin, author = make_api(), make_api(), make_api()
    for api in (alice, twin, author):
        await register(api)
    for api in (alice, twin):
        assert (await api.put("/api/v1/interests/pets/follow")).status == 200
        assert (await api.put("/api/v1/interests/cycling/follow")).status == 200
    made = await post(author, f"Look at this {word()}")
    assert (await alice.put(f"/api/v1/posts/{made['id']}/reaction", {"emoji": "😍"})).status == 200
    items = {i["user"]["username"]: i for i in (await alice.get(SUGGEST, params={"limit": 100})).body["items"]}
    shared = reason(items[twin.username], "shared_interests")
    assert shared is not None and shared["count"] == 2 and sorted(shared["interests"]) == ["cycling", "pets"]
    assert reason(items[author.username], "engaged_with") is not None


async def test_bad_recommendation_requests_get_their_documented_errors_and_write_nothing(
    make_api: Any, register: Any, db: asyncpg.Pool
) -> None:
    alice, anon = make_api(), make_api()
    me = await register(alice)
    uid = int(me["user"]["id"])
    for method, path in (("put", "nosuch"), ("delete", "nosuch"), ("put", "a\u00e9b"), ("put", "x" * 60)):
        assert_error(await getattr(alice, method)(f"/api/v1/interests/{path}/follow"), 404, "not_found")
    assert_error(await alice.get("/api/v1/interests/nosuch"), 404, "not_found")
    assert_error(await alice.get("/api/v1/interests/nosuch/posts"), 404, "not_found")
    for limit in ("0", "101", "abc"):
        assert_error(await alice.get(SUGGEST, params={"limit": limit}), 422, "validation_failed")
    for params in ({"limit": 0}, {"limit": 101}, {"cursor": "nope"}, {"cursor": "r0123456789abcdef.x"}):
        assert_error(await alice.get(EXPLORE, params=params), 422, "validation_failed")
    assert_error(await alice.get("/api/v1/feed", params={"cursor": "r0123456789abcdef.x"}), 422, "validation_failed")
    for path in ("/api/v1/interests", "/api/v1/me/interests", "/api/v1/interests/travel/posts"):
        for cursor in ("193-935801", "999999999999999999-9223372036854775807", "0-0"):
            reply = await alice.get(path, params={"cursor": cursor})  # any position: past the end, or before it
            assert reply.status == 200 and isinstance(reply.body["items"], list), (path, cursor, reply.body)
    # A well-formed cursor whose ranking expired (or never was) starts a new ranking from its top.
    for path in (EXPLORE, "/api/v1/feed"):
        reply = await alice.get(path, params={"cursor": "r0123456789abcdef.5"})
        assert reply.status == 200 and isinstance(reply.body["items"], list)
    feedback = "/api/v1/explore/feedback"
    assert_error(await alice.post(feedback, {"post_id": "999999999", "signal": "less"}), 404, "not_found")
    for body in (
        {"post_id": "1", "signal": "meh"},
        {"post_id": "abc", "signal": "less"},
        {"signal": "less"},
        {"post_id": "1", "signal": "less", "extra": 1},
        {"post_id": "1\x00", "signal": "less"},
    ):
        assert_error(await alice.post(feedback, body), 422, "validation_failed")
    knobs = "/api/v1/me/recommendations"
    for body in (
        {"recency_weight": 2},
        {"recency_weight": -0.1},
        {"per_author_cap": 0},
        {"per_author_cap": 11},
        {"hide_reposts": "yes"},
        {"surprise": True},
    ):
        assert_error(await alice.put(knobs, body), 422, "validation_failed")
    for path in (EXPLORE, SUGGEST, knobs, "/api/v1/me/interests", "/api/v1/feed"):
        assert_error(await anon.get(path), 401, "unauthenticated")
    assert_error(await anon.put("/api/v1/interests/travel/follow"), 401, "unauthenticated")
    assert_error(await anon.post(feedback, {"post_id": "1", "signal": "less"}), 401, "unauthenticated")
    assert await db.fetchval("SELECT count(*) FROM interest_follows WHERE user_id = $1", uid) == 0
    assert await db.fetchval("SELECT count(*) FROM explore_feedback WHERE user_id = $1", uid) == 0
    assert await db.fetchval("SELECT count(*) FROM recommendation_settings WHERE user_id = $1", uid) == 0
    assert (await alice.get(knobs)).body == {"recency_weight": 0.3, "hide_reposts": False, "per_author_cap": 2}
