"""Search over real HTTP (issue 13): posts by a word of the caption, by a misspelled word (two letters swapped,
one dropped: corrected, and the page says so), by hashtag and by ``from:``; ``-word`` excludes; a deleted post
is gone at once; users by a username prefix and a misspelled name, with the caller's flags; hashtags by prefix
with their counts; scopes; pages stable while posts arrive; every bad or hostile query a 4xx or a page."""

from __future__ import annotations

import asyncio
import random
import string
from typing import Any

from tests import media_samples as samples
from tests.api.test_posts import upload
from tests.support import Api, assert_error

SEARCH = "/api/v1/search"


def word(n: int = 9) -> str:
    """A made-up word no other test uses (letters only, so that it is one token)."""
    return "".join(random.choice(string.ascii_lowercase) for _ in range(n))


async def post(api: Api, caption: str) -> dict[str, Any]:
    media = await upload(api, "image/png", samples.png())
    made = await api.post("/api/v1/posts", {"type": "photo", "caption": caption, "media_ids": [media]})
    assert made.status == 201, made.body
    return dict(made.body)


async def find(api: Api, q: str, **params: Any) -> dict[str, Any]:
    reply = await api.get(SEARCH, params={"q": q, **params})
    assert reply.status == 200, reply.body
    return dict(reply.body)


def ids(page: dict[str, Any]) -> list[str]:
    return [item["id"] for item in page["items"]]


async def test_a_post_is_found_by_a_word_a_misspelling_its_hashtag_and_its_author_then_not_once_deleted(
    make_api: Any, register: Any
) -> None:
    alice, bob = make_api(), make_api("msgpack")
    a = await register(alice)
    await register(bob)
    key, tag = "mediterranean" + word(5), "tag" + word(6)
    sunset = await post(alice, f"Sunset over the {key.capitalize()} #{tag} #Travel")
    rainy = await post(alice, f"A rainy {key} morning")
    other = await post(bob, f"Coffee at dawn #{tag}")

    page = await find(bob, key)
    assert sorted(ids(page)) == sorted([sunset["id"], rainy["id"]]) and page["corrected_query"] is None
    assert all(isinstance(item["score"], float) and item["score"] > 0 for item in page["items"])
    assert page["items"][0]["author"]["username"] == a["username"] and "my" in page["items"][0]
    assert ids(await find(bob, key.upper())) != []  # case folded

    swapped = key[:3] + key[4] + key[3] + key[5:]  # two neighbouring letters swapped
    page = await find(bob, swapped)
    assert page["corrected_query"] == key and sorted(ids(page)) == sorted([sunset["id"], rainy["id"]])
    dropped = key[:6] + key[7:]  # one letter dropped
    page = await find(bob, f"{dropped} -rainy")
    assert page["corrected_query"] == f"{key} -rainy" and ids(page) == [sunset["id"]]

    assert ids(await find(bob, f"{key} -rainy")) == [sunset["id"]]  # -word excludes
    assert ids(await find(bob, f'"rainy {key}"')) == [rainy["id"]]  # a phrase
    assert sorted(ids(await find(bob, f"#{tag}"))) == sorted([sunset["id"], other["id"]])  # hashtag
    assert ids(await find(bob, f"#{tag} from:{a['username']}")) == [sunset["id"]]  # and author
    assert ids(await find(bob, f"from:{a['username'].upper()} {key}", limit=1)) != []
    assert ids(await find(bob, f"from:nobody_{word()} {key}")) == []
    assert ids(await find(bob, a["username"])) != []  # the author's username is in the document

    assert (await alice.delete(f"/api/v1/posts/{rainy['id']}")).status == 204
    assert ids(await find(bob, key)) == [sunset["id"]]  # gone at once
    assert ids(await find(bob, f'"rainy {key}"')) == []


async def test_users_are_found_by_a_username_prefix_and_a_misspelled_name_with_the_callers_flags(
    make_api: Any, register: Any
) -> None:
    me, target, stranger = make_api(), make_api(), make_api()
    stem = "srch" + word(6)
    await register(me)
    t = await register(target, username=f"{stem}_target", name="Xanthippe Oakenshield")
    await register(stranger, username=f"{stem}_other", name="Somebody Else")
    assert (await me.put(f"/api/v1/users/{t['username']}/follow")).status == 200

    page = await find(me, stem[:7], type="users")  # typeahead: a prefix of the username
    names = [item["username"] for item in page["items"]]
    assert names[:2] == [f"{stem}_target", f"{stem}_other"]  # the one I follow ranks first
    first = page["items"][0]
    assert first["followed_by_me"] is True and first["follows_me"] is False and first["score"] > 2
    assert page["items"][1]["followed_by_me"] is False

    page = await find(me, "Xanthipe Oakenshild", type="users")  # misspelled: letters dropped
    assert page["items"] and page["items"][0]["username"] == t["username"]
    anonymous = await find(make_api(), f"{stem}_target", type="users")
    assert anonymous["items"][0]["username"] == t["username"] and anonymous["items"][0].get("followed_by_me") is None


async def test_hashtags_are_found_by_prefix_with_their_counts_and_scopes_narrow_posts(
    make_api: Any, register: Any
) -> None:
    alice, bob, carol = make_api(), make_api(), make_api()
    a = await register(alice)
    await register(bob)
    await register(carol)
    tag, key = "hike" + word(6), "trail" + word(6)
    await post(alice, f"Up the hill #{tag} {key}")
    mine = await post(bob, f"Down the hill #{tag} {key}")
    page = await find(carol, tag[:7], type="hashtags")
    hit = next(item for item in page["items"] if item["tag"] == tag)
    assert hit["posts_count"] == 2 and hit["score"] > 0
    assert (await find(carol, "#" + tag.upper(), type="hashtags"))["items"][0]["tag"] == tag
    assert (await carol.get(f"/api/v1/hashtags/{tag}")).body == {"tag": tag, "posts_count": 2}

    assert len(ids(await find(carol, key))) == 2
    assert ids(await find(bob, key, scope="mine")) == [mine["id"]]
    assert ids(await find(carol, key, scope="following")) == []
    assert (await carol.put(f"/api/v1/users/{a['username']}/follow")).status == 200
    following = await find(carol, key, scope="following")
    assert [item["author"]["username"] for item in following["items"]] == [a["username"]]
    assert_error(await make_api().get(SEARCH, params={"q": key, "scope": "mine"}), 401, "unauthenticated")


async def test_pages_of_a_search_are_stable_while_new_posts_arrive(make_api: Any, register: Any) -> None:
    alice = make_api()
    await register(alice)
    key = "paging" + word(6)
    made = [await post(alice, f"{key} number {i}") for i in range(23)]
    seen: list[str] = []
    cursor = None
    for n in range(10):
        params: dict[str, Any] = {"limit": 10, **({"cursor": cursor} if cursor else {})}
        page = await find(alice, key, **params)
        seen += ids(page)
        if n == 0:
            await asyncio.gather(post(alice, f"{key} late one"), post(alice, f"{key} late two"))
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert sorted(seen) == sorted(p["id"] for p in made) and len(seen) == len(set(seen))


async def test_bad_and_hostile_queries_are_refused_or_answered_never_500(make_api: Any, register: Any) -> None:
    api = make_api()
    await register(api)
    for params in (
        {"q": ""},
        {"q": "x" * 201},
        {"q": "   "},
        {"q": "a\x00b"},
        {"q": "ok", "type": "people"},
        {"q": "ok", "scope": "world"},
        {"q": "ok", "limit": 0},
        {"q": "ok", "limit": 101},
        {"q": "ok", "cursor": "nope"},
        {"q": "ok", "cursor": "1.zz.1.0"},
        {},
    ):
        assert_error(await api.get(SEARCH, params=params), 422, "validation_failed")
    hostile = [
        "'); DROP TABLE posts; --",
        "!!!&&|<->:*",
        '"unclosed phrase',
        "(((((",
        "-",
        "from:",
        "from:@@@",
        "#",
        "##",
        "a:* & b:*",
        "\\' OR 1=1",
        "%_%",
        "é" * 50,
        "🔥🔥",
        "OR OR OR",
    ]
    for q in hostile:
        for type_ in ("posts", "users", "hashtags"):
            reply = await api.get(SEARCH, params={"q": q, "type": type_})
            assert reply.status == 200, (q, type_, reply.body)
            assert isinstance(reply.body["items"], list)
    assert (await api.get("/api/v1/posts/1")).status == 404  # the table is still there
