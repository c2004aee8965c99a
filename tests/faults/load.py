"""A write load for the outage tests: writers creating posts with an Idempotency-Key, retrying a 503 with the same
key (as API.md tells a client to), and reading each post back once it is acknowledged; every answer recorded."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import asyncpg
import httpx
import orjson

from tests import media_samples as samples
from tests.api.test_posts import upload
from tests.support import Api, Reply, assert_error

POSTS = "/api/v1/posts"
RETRY_S = 0.2  # sooner than Retry-After, so that the test sees the moment service resumes
PACE_S = 0.3  # between one writer's posts: a steady load that a few dozen uploads per writer last through
CAPTION = "outage load "
FINISH_S = 30.0  # a key still unacknowledged when the load stops is retried at most this long


@dataclass
class Answer:
    at: float  # time.monotonic() when the answer arrived
    method: str
    status: int  # 0: no HTTP answer at all (connection refused or reset)
    reply: Reply | None
    error: str = ""


@dataclass
class WriteLoad:
    writers: list[tuple[Api, list[str]]]  # a signed-in client and its completed image uploads (one per post)
    answers: list[Answer] = field(default_factory=list)
    acked: dict[str, str] = field(default_factory=dict)  # idempotency key -> post id of its first 201/200
    duplicates: list[tuple[str, str, str]] = field(default_factory=list)  # a key answered with two post ids
    abandoned: list[str] = field(default_factory=list)  # keys still refused when the load had to end
    stop: asyncio.Event = field(default_factory=asyncio.Event)

    async def run(self) -> None:
        await asyncio.gather(*(self._writer(api, media) for api, media in self.writers))

    async def _call(self, api: Api, method: str, path: str, body: Any = None, key: str | None = None) -> Answer:
        headers = {"Idempotency-Key": key} if key else None
        try:
            reply = await api.request(method, path, body, headers=headers)
        except httpx.HTTPError as exc:
            answer = Answer(time.monotonic(), method, 0, None, repr(exc))
        else:
            answer = Answer(time.monotonic(), method, reply.status, reply)
        self.answers.append(answer)
        return answer

    async def _writer(self, api: Api, media: list[str]) -> None:
        for media_id in media:
            if self.stop.is_set():
                return
            key = uuid.uuid4().hex
            body = {"type": "photo", "caption": CAPTION + key, "media_ids": [media_id]}
            finish_by = None
            while True:
                answer = await self._call(api, "POST", POSTS, body, key)
                if answer.status in (200, 201):
                    assert answer.reply is not None
                    post_id = str(answer.reply.body["id"])
                    if self.acked.setdefault(key, post_id) != post_id:
                        self.duplicates.append((key, self.acked[key], post_id))
                    await self._call(api, "GET", f"{POSTS}/{post_id}")  # read-your-writes, or a 503
                    await asyncio.sleep(PACE_S)
                    break
                if answer.status not in (0, 503):
                    return  # recorded; the test fails on it
                if self.stop.is_set():
                    finish_by = finish_by or time.monotonic() + FINISH_S
                    if time.monotonic() > finish_by:
                        self.abandoned.append(key)
                        return
                await asyncio.sleep(RETRY_S)

    # ------------------------------------------------------------ what the test asserts

    async def acked_at_least(self, count: int) -> bool:
        """For wait_until: ``count`` posts acknowledged; fails at once on an answer the test would fail on."""
        self.check_answers()
        return len(self.acked) >= count

    async def failed_since(self, since: float) -> bool:
        """For wait_until: an answer after ``since`` was not a success (the outage is seen)."""
        return any(a.at >= since and a.status not in (200, 201) for a in self.answers)

    def statuses(self, since: float = 0.0, until: float = float("inf")) -> Counter[int]:
        return Counter(a.status for a in self.answers if since <= a.at < until)

    def check_posts(self, rows: list[tuple[int, str]]) -> None:
        """``rows``: (id, caption) of every load post in the database. Each acknowledged post is there once, with
        the id its answers gave, and nothing else is (no post of a key that was never acknowledged)."""
        assert not self.duplicates and not self.abandoned, (self.duplicates, self.abandoned)
        stored: dict[str, list[str]] = {}
        for post_id, caption in rows:
            stored.setdefault(caption.removeprefix(CAPTION), []).append(str(post_id))
        assert stored == {key: [post_id] for key, post_id in self.acked.items()}

    def check_outage(self, what: str, stopped_at: float, back_at: float, resume_s: float) -> float:
        """What every outage test checks of the load: some 503s while ``what`` was down, only successes and
        well-formed 503s throughout, and service back within ``resume_s`` of its return; the seconds it took."""
        during = self.statuses(since=stopped_at, until=back_at)
        resumed_s = self.resumed_at(back_at) - back_at
        print(f"\nanswers while {what} was down: {dict(during)}; after: {dict(self.statuses(since=back_at))}")
        print(f"resumed {resumed_s:.2f} s after {what}'s return; {len(self.acked)} posts acknowledged")
        self.check_answers()
        assert during[503] > 0, during
        assert resumed_s <= resume_s
        return resumed_s

    async def check_stored(self, database_url: str) -> None:
        """Every acknowledged post is in the database once (``check_posts``), read from ``database_url``."""
        conn = await asyncpg.connect(database_url)
        try:
            rows = await conn.fetch("SELECT id, caption FROM posts WHERE starts_with(caption, $1)", CAPTION)
        finally:
            await conn.close()
        self.check_posts([(row["id"], row["caption"]) for row in rows])

    def check_answers(self) -> None:
        """Every answer is a success or a 503 ``unavailable`` in the API.md error shape with Retry-After."""
        for answer in self.answers:
            assert answer.status in (200, 201, 503), (answer.method, answer.status, answer.error, answer.reply)
            if answer.status == 503:
                assert answer.reply is not None
                assert_error(answer.reply, 503, "unavailable")
                retry_after = answer.reply.headers.get("retry-after", "")
                assert retry_after.isdigit() and int(retry_after) >= 1, answer.reply.headers
                assert answer.reply.headers.get("x-request-id"), answer.reply.headers

    def resumed_at(self, after: float) -> float:
        """When the load resumed after ``after``: the first success past which nothing failed any more."""
        last_failure = max((a.at for a in self.answers if a.status not in (200, 201)), default=after)
        later = [a.at for a in self.answers if a.at >= max(after, last_failure) and a.status in (200, 201)]
        assert later, "no success after the outage"
        return min(later)


async def make_writers(base_url: str, register: Any, count: int, posts: int = 30) -> list[tuple[Api, list[str]]]:
    """``count`` signed-in clients, each with ``posts`` completed image uploads (an upload goes in one post)."""
    image = samples.png(64, 48)

    async def one() -> tuple[Api, list[str]]:
        api = Api(base_url)
        await register(api)
        return api, [await upload(api, "image/png", image) for _ in range(posts)]

    return list(await asyncio.gather(*(one() for _ in range(count))))


def log_entries(lines: list[str]) -> list[dict[str, Any]]:
    """The server's JSON log lines as dicts (a line that is not JSON, such as a bare traceback, as level "raw")."""
    entries = []
    for line in lines:
        try:
            entry = orjson.loads(line)
        except orjson.JSONDecodeError:
            entry = None
        entries.append(entry if isinstance(entry, dict) else {"level": "raw", "msg": line})
    return entries
