"""The home feed's write side (DESIGN.md 3): fan-out on write by workers, hybrid pull for big accounts.

Write side. Creating a post or a repost stages one outbox row of type ``job.feed`` in the same transaction: the
domain event (entry, post, author, reposter), never a list of recipients. Delivery (actors/runtime/delivery.py) turns it
into a job on the ``jobs:feed`` queue (storage/jobs.py). ``FanoutWorker`` consumes the queue in every UserShard
process (a consumer group; stable consumer names, so a restarted shard resumes its own jobs, and jobs another
consumer left idle are claimed). A job:

1. puts the entry in the author's own timeline (a post, not a repost);
2. if the poster has more than ``FANOUT_MAX_FOLLOWERS`` followers, publishes ``feed.post`` once on the
   poster's author channel (gateways holding their followers forward it, live only) and stops: their posts are
   merged into followers' feeds at read time;
3. else pages through the poster's followers (``FANOUT_BATCH`` at a time, by the followers index). Per page, one
   Redis script adds the entry to each existing (active) timeline and, for each user it was new to, stores a
   ``feed.post`` event in their stream; the stored events go live through the recipients' UserShards, one call
   per shard. The position of the last finished page is recorded in ``jobs:feed:progress``; a job that is
   resumed or run twice starts from there, and the entry (ZADD NX) de-duplicates the page that was in flight,
   so no timeline gets the entry twice and nobody gets two events. Nothing is kept per recipient beyond the
   timeline member and the stream entry themselves.

The read side (``FeedReader``) is api/reads/feed.py.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import asyncpg
import msgpack
import msgspec

from actors.runtime.delivery import OutboxEvent, PushItem
from domain.events import FEED_POST_EVENT, FeedPostEvent
from domain.present import user_summary
from storage import feed as feed_store
from storage import users as user_store
from storage.jobs import Job, JobQueue
from storage.outage import OUTAGES, is_outage
from storage.streams import STREAM_MAXLEN, STREAM_TTL_S
from storage.timelines import Entry, Timelines

log = logging.getLogger("i9lyfe.feed")
_PACK = msgspec.msgpack.Encoder()

FEED_JOB = "job.feed"  # outbox type of a fan-out job
FEED_QUEUE = "feed"
FOLLOW_ENTRIES = 50  # a new followee's newest entries go into the follower's timeline at once
MAX_ATTEMPTS = 8  # a job that failed this often is dropped (logged), never retried for ever

PushFn = Callable[[list[PushItem]], Awaitable[None]]


def job_event(entry_id: int, post_id: int, author_id: int, via: int = 0) -> OutboxEvent:
    """The outbox row of a new post (``via`` 0) or repost (``via`` the reposter): no recipients."""
    data = {"entry": entry_id, "post": post_id, "author": author_id, "via": via}
    return OutboxEvent(entry_id, [], FEED_JOB, msgpack.packb(data, use_bin_type=True))


def timelines_of(services: Any) -> Timelines:
    timelines: Timelines = services.timelines
    return timelines


# ------------------------------------------------------------ write side: the fan-out worker


@dataclass(frozen=True)
class Outcome:
    entry_id: int
    timelines: int  # timelines the entry was new to
    events: int  # feed.post events stored
    merged: bool  # big account: published live on the author channel instead


class FanoutWorker:
    """Consumes ``jobs:feed`` as ``consumer``; ``push`` hands stored events to the recipients' gateways (their
    routes in Redis, storage/routes.py: ``Delivery.push``)."""

    def __init__(self, services: Any, consumer: str, push: PushFn) -> None:
        self.services = services
        self.consumer = consumer
        self.push = push
        self.queue = JobQueue(services.redis, services.keys, FEED_QUEUE)
        self.progress_key = services.keys("jobs", FEED_QUEUE, "progress")
        self.timelines = timelines_of(services)
        self.settings = services.settings
        self.jobs_done = 0
        self._stopping = False

    async def run(self) -> None:
        """Resume this consumer's own unfinished jobs, then take new ones and claim abandoned ones, forever."""
        resumed = False
        last_claim = 0.0
        while not self._stopping:
            try:
                if not resumed:
                    for job in await self.queue.read(self.consumer, 50, 0, pending=True):
                        await self.handle(job)
                    resumed = True
                if time.monotonic() - last_claim > 5.0:
                    last_claim = time.monotonic()
                    for job in await self.queue.claim_idle(self.consumer, 20):
                        await self.handle(job)
                for job in await self.queue.read(self.consumer, 10, 1000):
                    await self.handle(job)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if is_outage(exc):  # Redis or PostgreSQL down: one warning per outage per process
                    OUTAGES.note("fan-out loop failed; retrying", exc, log)
                else:
                    log.exception("fan-out loop failed; retrying")
                resumed = False
                await asyncio.sleep(1.0)

    def stop(self) -> None:
        self._stopping = True

    async def handle(self, job: Job) -> Outcome | None:
        """Run one job; a failure leaves it pending (claimed again later) until it has failed MAX_ATTEMPTS."""
        if job.type != FEED_JOB:
            await self.queue.done(job.id)  # deleted while pending, or not ours to know: nothing to do
            return None
        try:
            outcome = await self.fan_out(job)
        except Exception as exc:
            attempts = await self.services.redis.hincrby(self.progress_key, f"{job.id}:attempts", 1)
            if attempts >= MAX_ATTEMPTS:
                log.error(
                    "fan-out job dropped after repeated failures",
                    extra={"fields": {"job": job.id, "attempts": attempts, "error": repr(exc)}},
                )
                await self._finish(job.id)
                return None
            log.warning("fan-out job failed; will retry", extra={"fields": {"job": job.id, "error": repr(exc)}})
            return None
        await self._finish(job.id)
        self.jobs_done += 1
        return outcome

    async def _finish(self, job_id: str) -> None:
        await self.services.redis.hdel(self.progress_key, job_id, f"{job_id}:attempts")
        await self.queue.done(job_id)

    async def fan_out(self, job: Job) -> Outcome:
        data = msgpack.unpackb(job.data, raw=False)
        entry = Entry(int(data["entry"]), int(data["post"]), int(data["author"]), int(data["via"]))
        poster = entry.via or entry.author_id
        pool: asyncpg.Pool = self.services.pool
        people = {int(r["id"]): r for r in await user_store.get_users(pool, list({entry.author_id, poster}))}
        if entry.author_id not in people or poster not in people:
            return Outcome(entry.entry_id, 0, 0, False)  # the account is gone
        base = self.settings.public_base_url
        event = FeedPostEvent(
            feed_item_id=str(entry.entry_id),
            post_id=str(entry.post_id),
            author=user_summary(people[entry.author_id], base),
            reposted_by=user_summary(people[poster], base) if entry.via else None,
        )
        packed = _PACK.encode(event)
        if not entry.via:  # the author's own timeline (no event: the author knows)
            await self.timelines.fan_out(
                entry, [entry.author_id], [False], FEED_POST_EVENT, packed,
                stream_maxlen=STREAM_MAXLEN, stream_ttl_s=STREAM_TTL_S,
            )  # fmt: skip
        if int(people[poster]["followers_count"]) > self.settings.fanout_max_followers:
            frame = _PACK.encode({"type": FEED_POST_EVENT, "data": event})
            await self.services.redis.publish(self.services.keys.author_channel(poster), frame)
            return Outcome(entry.entry_id, 0, 0, True)
        position = _position(await self.services.redis.hget(self.progress_key, job.id))
        added = events = 0
        pushing: asyncio.Task[None] | None = None  # the previous step's live push runs while this step writes
        try:
            while True:
                rows = await feed_store.followers_batch(pool, poster, position, self.settings.fanout_batch)
                if not rows:
                    break
                users = [int(r["follower_id"]) for r in rows if int(r["follower_id"]) != entry.author_id]
                stored = await self.timelines.fan_out(
                    entry, users, [True] * len(users), FEED_POST_EVENT, packed,
                    stream_maxlen=STREAM_MAXLEN, stream_ttl_s=STREAM_TTL_S,
                )  # fmt: skip
                added += len(stored)
                events += len(stored)
                if pushing is not None:
                    await pushing
                pushing = asyncio.get_running_loop().create_task(self._push(stored, packed))
                last = rows[-1]
                position = (last["created_at"], int(last["follower_id"]))
                async with self.services.redis.pipeline(transaction=False) as pipe:
                    pipe.hset(self.progress_key, job.id, _encode_position(position))
                    await pipe.execute()
                await self.queue.keep(self.consumer, job.id)
                if len(rows) < self.settings.fanout_batch:
                    break
        finally:
            if pushing is not None:
                await pushing  # never raises: _push logs its failures
        return Outcome(entry.entry_id, added, events, False)

    async def _push(self, stored: list[tuple[int, str, str]], packed: bytes) -> None:
        """Stored events go live to the recipients' gateways in one script; ``push`` logs its own failures (the
        events are in the streams, and gateways catch their sockets up from there)."""
        await self.push([(user_id, event_id, FEED_POST_EVENT, packed, prev) for user_id, event_id, prev in stored])


def _encode_position(position: tuple[dt.datetime, int]) -> str:
    at, user_id = position
    return f"{at.timestamp():.6f}:{user_id}"


def _position(raw: bytes | None) -> tuple[dt.datetime, int] | None:
    if not raw:
        return None
    at, _, user_id = raw.decode().partition(":")
    return dt.datetime.fromtimestamp(float(at), dt.UTC), int(user_id)


# ------------------------------------------------------------ follows change a timeline


async def into_own_timeline(services: Any, author_id: int, post_id: int) -> None:
    """A committed post into its author's own timeline at once (if the author has one), so the author's next feed
    read shows it; the fan-out job adds it there too (ZADD NX: once) and takes it to the followers."""
    entry = Entry(post_id, post_id, author_id, 0)
    await timelines_of(services).fan_out(
        entry, [author_id], [False], FEED_POST_EVENT, b"", stream_maxlen=STREAM_MAXLEN, stream_ttl_s=STREAM_TTL_S
    )


async def on_follow(services: Any, follower_id: int, followee_id: int) -> None:
    """A new followee's newest entries go into the follower's timeline (when it exists), so the next read
    shows them; if they had more, older entries are read from PostgreSQL past the timeline's end."""
    rows = await feed_store.author_entries(services.pool, followee_id, FOLLOW_ENTRIES)
    entries = [Entry.of_row(r) for r in rows]
    await timelines_of(services).merge(follower_id, entries, complete=False if len(rows) >= FOLLOW_ENTRIES else None)


async def on_unfollow(services: Any, follower_id: int, followee_id: int) -> None:
    """Lazy cleanup (reads already drop entries of people no longer followed)."""
    await timelines_of(services).forget_author(follower_id, followee_id)
