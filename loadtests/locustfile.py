"""Load journeys for i9lyfe: HTTP account traffic and WebSocket users.

    .venv/bin/python loadtests/seed.py --users 200
    .venv/bin/locust -f loadtests/locustfile.py --headless -u 100 -r 20 -t 60s --host http://127.0.0.1:8000

Every simulated user logs in as one of the seeded accounts (load_0000..), so the run needs no mail. The server's
per-IP auth limit applies to logins: run the server with RATE_LIMITS raised (e.g. ``auth=100000/60``) or
TRUSTED_PROXIES=127.0.0.1/32, in which case each simulated user sends its own X-Forwarded-For address.

The media journeys upload the way a client does (declare with ``POST /media``, send the bytes with the method, URL
and headers it answered, complete): a small PNG set as avatar and read back through the profile, and a 1 MiB chat
file. Run the server with the ``write`` limit raised too (e.g. ``write=100000/60``) and PUBLIC_BASE_URL set to the
address locust targets (upload and avatar URLs are absolute).

The chat journeys: an account user starts (or gets) the chat with another seeded user (``POST /chats``), sends
2-4 texts over HTTP with fresh client_ids, reads the history and marks it read up to its last message; a socket
user starts its chat over HTTP once, then sends ``chat.send`` over its socket (the ack is timed) and ``chat.read``.

The posts journeys: an account user uploads the avatar-sized PNG for ``post`` and creates a photo post with a
caption mentioning another seeded user and a #hashtag; then, on a random recent post (of any simulated user in
this process), it reacts with a random emoji, comments (mentioning someone), reads the post and its comments, and
saves and unsaves it.

The discovery journey: an account user now and then follows an interest (the load posts carry one as a hashtag),
reads explore and its next page, gives "less" or "more" feedback on one item, and reads who-to-follow.

One locust process uses one core; to use every core of the load box, run a master and N workers (default:
cores - 1) on 127.0.0.1, each worker with accounts of its own (loadtests/distributed.py), all stopped together:

    .venv/bin/python loadtests/run_distributed.py -u 200 -r 20 -t 60s --host http://127.0.0.1:8000
"""

from __future__ import annotations

import collections
import io
import itertools
import json
import os
import random
import socket
import struct
import time
import uuid
from typing import Any

import websocket  # websocket-client, installed with locust
from locust import HttpUser, User, between, events, task
from PIL import Image

PASSWORD = "Load-test-pass-1"
LOGIN_TRIES = 8  # a login shed with 503/429 is retried after Retry-After (jittered), this many times at most
SEEDED = int(os.environ.get("LOAD_USERS", "200"))
_next = itertools.count()
CHAT_FILE = random.Random(1).randbytes(1024 * 1024)  # 1 MiB application/octet-stream
RECENT_POSTS: collections.deque[str] = collections.deque(maxlen=200)  # ids of posts made in this process
EMOJI = ["👍", "😀", "🔥", "🤔"]
INTERESTS = ["travel", "food", "music", "photography", "fitness", "books", "gaming", "pets"]


def _avatar_png() -> bytes:
    """A 48x48 PNG of seeded noise (about 7 KB: PNG cannot compress noise), made once at import."""
    out = io.BytesIO()
    Image.frombytes("RGB", (48, 48), random.Random(7).randbytes(48 * 48 * 3)).save(out, "PNG")
    return out.getvalue()


AVATAR_PNG = _avatar_png()


def _account() -> tuple[str, str]:
    n = next(_next) % SEEDED
    return f"load_{n:04d}", f"10.77.{n // 256}.{n % 256}"


class AccountUser(HttpUser):
    """Reads its profile often, edits it now and then, reads other profiles and follower lists, follows and
    unfollows seeded users, uploads an avatar or a chat file now and then, refreshes its session, rarely logs in
    again."""

    wait_time = between(0.5, 2)
    weight = 3

    def on_start(self) -> None:
        self.username, self.ip = _account()
        self.client.headers["X-Forwarded-For"] = self.ip
        self.refresh_token = ""
        self._login()

    def _login(self) -> None:
        """Log in; a shed login (503, or 429) is the server working as designed: wait Retry-After and retry."""
        for _ in range(LOGIN_TRIES):
            with self.client.post(
                "/api/v1/auth/login", json={"login": self.username, "password": PASSWORD}, catch_response=True
            ) as reply:
                if reply.status_code in (429, 503) and "Retry-After" in reply.headers:
                    reply.success()  # counted in its own row below, not as a failure
                    events.request.fire(
                        request_type="POST",
                        name=f"login shed ({reply.status_code})",
                        response_time=0,
                        response_length=0,
                        exception=None,
                    )
                    time.sleep(min(float(reply.headers["Retry-After"]), 5.0) * random.uniform(1.0, 1.5))
                    continue
                if reply.status_code != 200:
                    reply.failure(f"login {reply.status_code}: {reply.text[:200]}")
                    return
                body = reply.json()
                self.access = body["tokens"]["access_token"]
                self.refresh_token = body["tokens"]["refresh_token"]
                self.client.headers["Authorization"] = f"Bearer {self.access}"
                return

    @task(20)
    def me(self) -> None:
        self.client.get("/api/v1/me", name="GET /me")

    @task(5)
    def me_msgpack(self) -> None:
        self.client.get("/api/v1/me", headers={"Accept": "application/msgpack"}, name="GET /me (msgpack)")

    @task(2)
    def edit_bio(self) -> None:
        self.client.patch("/api/v1/me", json={"bio": f"load {random.randint(0, 10**6)}"}, name="PATCH /me")

    @task(1)
    def refresh(self) -> None:
        with self.client.post(
            "/api/v1/auth/refresh", json={"refresh_token": self.refresh_token}, catch_response=True
        ) as reply:
            if reply.status_code == 200:
                tokens = reply.json()["tokens"]
                self.refresh_token = tokens["refresh_token"]
                self.client.headers["Authorization"] = f"Bearer {tokens['access_token']}"
            else:
                reply.failure(f"refresh {reply.status_code}")

    @task(1)
    def relogin(self) -> None:
        self._login()

    def _someone_else(self) -> str:
        while True:
            other = f"load_{random.randrange(SEEDED):04d}"
            if other != self.username or SEEDED < 2:
                return other

    @task(4)
    def profile(self) -> None:
        self.client.get(f"/api/v1/users/{self._someone_else()}", name="GET /users/{username}")

    @task(2)
    def followers(self) -> None:
        self.client.get(f"/api/v1/users/{self._someone_else()}/followers", name="GET /users/{username}/followers")

    @task(2)
    def follow_or_unfollow(self) -> None:
        """Follow a random seeded user, or unfollow one (idempotent both ways: 200 whether or not it changed)."""
        path = f"/api/v1/users/{self._someone_else()}/follow"
        if random.random() < 0.6:
            self.client.put(path, name="PUT /users/{username}/follow")
        else:
            self.client.delete(path, name="DELETE /users/{username}/follow")

    def _upload(self, purpose: str, content_type: str, data: bytes) -> dict[str, Any] | None:
        """Declare, send the bytes as ``upload`` says (its method, URL and exactly its headers), complete: the
        Media object, or None after marking the failing step as failed."""
        with self.client.post(
            "/api/v1/media",
            json={"purpose": purpose, "content_type": content_type, "size": len(data)},
            name=f"POST /media ({purpose})",
            catch_response=True,
        ) as reply:
            if reply.status_code != 201:
                reply.failure(f"declare {reply.status_code}: {reply.text[:200]}")
                return None
            made = reply.json()
        upload = made["upload"]
        # Only upload.headers: not this session's Authorization or X-Forwarded-For (a GCS signed URL takes none).
        headers: dict[str, str | None] = {"Authorization": None, "X-Forwarded-For": None, **upload["headers"]}
        with self.client.request(
            upload["method"],
            upload["url"],
            data=data,
            headers=headers,
            name=f"{upload['method']} /media/[id]/upload ({purpose})",
            catch_response=True,
        ) as sent:
            if sent.status_code not in (200, 204):
                sent.failure(f"upload {sent.status_code}: {sent.text[:200]}")
                return None
        with self.client.post(
            f"/api/v1/media/{made['media_id']}/complete",
            name=f"POST /media/[id]/complete ({purpose})",
            catch_response=True,
        ) as done:
            if done.status_code != 200:
                done.failure(f"complete {done.status_code}: {done.text[:200]}")
                return None
            media: dict[str, Any] = done.json()
            return media

    @task(1)
    def avatar(self) -> None:
        """Upload a small PNG, make it the avatar, and fetch the avatar through the profile others see."""
        media = self._upload("avatar", "image/png", AVATAR_PNG)
        if media is None:
            return
        with self.client.put(
            "/api/v1/me/avatar", json={"media_id": media["id"]}, name="PUT /me/avatar", catch_response=True
        ) as reply:
            if reply.status_code != 200 or not reply.json().get("avatar"):
                reply.failure(f"set avatar {reply.status_code}: {reply.text[:200]}")
                return
        with self.client.get(
            f"/api/v1/users/{self.username}", name="GET /users/{username}", catch_response=True
        ) as profile:
            avatar = profile.json().get("avatar") if profile.status_code == 200 else None
            if not avatar:
                profile.failure(f"profile {profile.status_code} without the avatar: {profile.text[:200]}")
                return
        with self.client.get(avatar, name="GET /media/[id] (avatar)", catch_response=True) as image:
            if image.status_code != 200 or image.headers.get("content-type") != "image/png" or not image.content:
                image.failure(f"avatar {image.status_code} {image.headers.get('content-type')}")

    @task(1)
    def chat_file(self) -> None:
        """Upload a 1 MiB file for chat."""
        self._upload("chat", "application/octet-stream", CHAT_FILE)

    @task(2)
    def chat(self) -> None:
        """Start (or get) the chat with a seeded user, send a few texts with fresh client_ids, read the history
        back and mark it read up to the last message sent."""
        with self.client.post(
            "/api/v1/chats", json={"username": self._someone_else()}, name="POST /chats", catch_response=True
        ) as reply:
            if reply.status_code not in (200, 201):
                reply.failure(f"start chat {reply.status_code}: {reply.text[:200]}")
                return
            chat_id = reply.json()["id"]
        last_seq = 0
        for _ in range(random.randint(2, 4)):
            body = {"client_id": uuid.uuid4().hex, "type": "text", "text": f"load {random.randint(0, 10**6)}"}
            with self.client.post(
                f"/api/v1/chats/{chat_id}/messages",
                json=body,
                name="POST /chats/[id]/messages",
                catch_response=True,
            ) as sent:
                if sent.status_code != 201 or sent.json().get("client_id") != body["client_id"]:
                    sent.failure(f"send {sent.status_code}: {sent.text[:200]}")
                    return
                last_seq = max(last_seq, int(sent.json()["seq"]))
        with self.client.get(
            f"/api/v1/chats/{chat_id}/messages", name="GET /chats/[id]/messages", catch_response=True
        ) as history:
            items = history.json().get("items") if history.status_code == 200 else None
            if not items or int(items[0]["seq"]) < last_seq:
                history.failure(f"history {history.status_code} without the last message: {history.text[:200]}")
                return
        with self.client.post(
            f"/api/v1/chats/{chat_id}/read", json={"seq": last_seq}, name="POST /chats/[id]/read", catch_response=True
        ) as read:
            if read.status_code != 204:
                read.failure(f"read {read.status_code}: {read.text[:200]}")

    @task(1)
    def post(self) -> None:
        """Upload a PNG for ``post`` and create a photo post mentioning a seeded user, with a #hashtag."""
        media = self._upload("post", "image/png", AVATAR_PNG)
        if media is None:
            return
        body = {
            "type": "photo",
            "caption": f"load post for @{self._someone_else()} #load #tag{random.randrange(10)} "
            f"#{random.choice(INTERESTS)}",
            "media_ids": [media["id"]],
        }
        with self.client.post("/api/v1/posts", json=body, name="POST /posts", catch_response=True) as reply:
            if reply.status_code != 201 or reply.json().get("media", [{}])[0].get("id") != media["id"]:
                reply.failure(f"create post {reply.status_code}: {reply.text[:200]}")
                return
            RECENT_POSTS.append(reply.json()["id"])

    @task(2)
    def engage(self) -> None:
        """On a random recent post: react, comment, read the post and its comments, save and unsave."""
        if not RECENT_POSTS:
            self.post()
            return
        post_id = random.choice(RECENT_POSTS)
        path = f"/api/v1/posts/{post_id}"
        emoji = random.choice(EMOJI)
        with self.client.put(
            f"{path}/reaction", json={"emoji": emoji}, name="PUT /posts/[id]/reaction", catch_response=True
        ) as reply:
            if reply.status_code != 200 or reply.json().get("my", {}).get("reaction") != emoji:
                reply.failure(f"react {reply.status_code}: {reply.text[:200]}")
                return
        body = {"text": f"load comment for @{self._someone_else()}"}
        with self.client.post(
            f"{path}/comments", json=body, name="POST /posts/[id]/comments", catch_response=True
        ) as reply:
            if reply.status_code != 201 or reply.json().get("post_id") != post_id:
                reply.failure(f"comment {reply.status_code}: {reply.text[:200]}")
                return
            comment_id = reply.json()["id"]
        with self.client.get(path, name="GET /posts/[id]", catch_response=True) as reply:
            if reply.status_code != 200 or reply.json().get("my", {}).get("reaction") != emoji:
                reply.failure(f"read post {reply.status_code}: {reply.text[:200]}")
                return
        with self.client.get(f"{path}/comments", name="GET /posts/[id]/comments", catch_response=True) as reply:
            items = reply.json().get("items") if reply.status_code == 200 else None
            if items is None or (comment_id not in [c["id"] for c in items] and len(items) < 20):
                reply.failure(f"comments {reply.status_code} without the new comment: {reply.text[:200]}")
                return
        for method, saved in (("PUT", True), ("DELETE", False)):
            with self.client.request(
                method, f"{path}/save", name=f"{method} /posts/[id]/save", catch_response=True
            ) as reply:
                if reply.status_code != 200 or reply.json().get("saved") is not saved:
                    reply.failure(f"{method} save {reply.status_code}: {reply.text[:200]}")
                    return

    @task(3)
    def feed(self) -> None:
        """Read the home feed, then its next page: every item a FeedItem, no item twice; now and then repost a
        recent post (it goes into the followers' feeds) and undo it."""
        seen: set[str] = set()
        cursor = None
        for page in (1, 2):
            params = {"limit": "20", **({"cursor": cursor} if cursor else {})}
            with self.client.get(
                "/api/v1/feed", params=params, name=f"GET /feed (page {page})", catch_response=True
            ) as reply:
                body = reply.json() if reply.status_code == 200 else {}
                items = body.get("items")
                if items is None or any("post" not in i or i["id"] in seen for i in items):
                    reply.failure(f"feed {reply.status_code}: {reply.text[:200]}")
                    return
                seen.update(i["id"] for i in items)
                cursor = body.get("next_cursor")
            if not cursor:
                break
        if RECENT_POSTS and random.random() < 0.3:
            post_id = random.choice(RECENT_POSTS)
            for method, reposted in (("PUT", True), ("DELETE", False)):
                with self.client.request(
                    method, f"/api/v1/posts/{post_id}/repost", name=f"{method} /posts/[id]/repost", catch_response=True
                ) as reply:
                    if reply.status_code != 200 or reply.json().get("reposted") is not reposted:
                        reply.failure(f"{method} repost {reply.status_code}: {reply.text[:200]}")
                        return

    @task(2)
    def discover(self) -> None:
        """Follow an interest now and then, read explore and its next page (every item with reasons and a score,
        no post twice), tell it "less" or "more" of one item, come back to explore's first page (no author said
        "less" to), and read who-to-follow (never yourself)."""
        if random.random() < 0.2:
            slug = random.choice(INTERESTS)
            with self.client.put(
                f"/api/v1/interests/{slug}/follow", name="PUT /interests/[slug]/follow", catch_response=True
            ) as reply:
                if reply.status_code != 200 or reply.json().get("following") is not True:
                    reply.failure(f"follow interest {reply.status_code}: {reply.text[:200]}")
                    return
        seen: set[str] = set()
        cursor = None
        items: list[dict[str, Any]] = []
        for page in (1, 2):
            params = {"limit": "10", **({"cursor": cursor} if cursor else {})}
            with self.client.get(
                "/api/v1/explore", params=params, name=f"GET /explore (page {page})", catch_response=True
            ) as reply:
                body = reply.json() if reply.status_code == 200 else {}
                got = body.get("items")
                if got is None or any(not i.get("reasons") or i["post"]["id"] in seen for i in got):
                    reply.failure(f"explore {reply.status_code}: {reply.text[:200]}")
                    return
                seen.update(i["post"]["id"] for i in got)
                items += got
                cursor = body.get("next_cursor")
            if not cursor:
                break
        less = None
        if items and random.random() < 0.3:
            judged = random.choice(items)["post"]
            body = {"post_id": judged["id"], "signal": random.choice(["less", "more"])}
            with self.client.post(
                "/api/v1/explore/feedback", json=body, name="POST /explore/feedback", catch_response=True
            ) as reply:
                if reply.status_code not in (204, 404):  # 404: the post was deleted meanwhile
                    reply.failure(f"feedback {reply.status_code}: {reply.text[:200]}")
                    return
            less = judged["author"]["id"] if body["signal"] == "less" and reply.status_code == 204 else None
        # Back to explore: the latest ranking (kept, and its first page cached whole) unless something changed,
        # e.g. the "less" just said, whose author must be gone at once.
        with self.client.get(
            "/api/v1/explore", params={"limit": "10"}, name="GET /explore (again)", catch_response=True
        ) as reply:
            got = reply.json().get("items") if reply.status_code == 200 else None
            if got is None or any(not i.get("reasons") or i["post"]["author"]["id"] == less for i in got):
                reply.failure(f"explore again {reply.status_code}: {reply.text[:200]}")
                return
        with self.client.get(
            "/api/v1/suggestions/users", params={"limit": "10"}, name="GET /suggestions/users", catch_response=True
        ) as reply:
            people = reply.json().get("items") if reply.status_code == 200 else None
            if people is None or any(p["user"]["username"] == self.username or not p["reasons"] for p in people):
                reply.failure(f"suggestions {reply.status_code}: {reply.text[:200]}")

    @task(2)
    def search(self) -> None:
        """Search posts by a word the load posts carry (and a misspelling of it), a hashtag, users by a prefix of
        a seeded username and hashtags by prefix; every page ranked, with scores."""
        queries = [
            ({"q": "load post", "type": "posts"}, "posts"),
            ({"q": "laod", "type": "posts"}, "posts, misspelled"),
            ({"q": f"#tag{random.randrange(10)}", "type": "posts"}, "posts, #tag"),
            ({"q": self._someone_else()[:4], "type": "users"}, "users"),
            ({"q": "ta", "type": "hashtags"}, "hashtags"),
        ]
        params, label = random.choice(queries)
        with self.client.get(
            "/api/v1/search", params=params, name=f"GET /search ({label})", catch_response=True
        ) as reply:
            items = reply.json().get("items") if reply.status_code == 200 else None
            if items is None or any(not isinstance(i.get("score"), float) for i in items):
                reply.failure(f"search {reply.status_code}: {reply.text[:200]}")


class SocketUser(User):
    """Holds a WebSocket, watches another user's presence, pings now and then (acks are timed); now and then its
    connection vanishes without a close frame (a TCP reset, as a phone losing its network) and it resumes with
    ``since`` (the reconnect and the first ack after it are timed)."""

    wait_time = between(1, 3)
    weight = 1

    def on_start(self) -> None:
        import requests

        self.username, ip = _account()
        for _ in range(LOGIN_TRIES):  # shed logins (503/429) are retried after Retry-After, as a client does
            reply = requests.post(
                f"{self.host}/api/v1/auth/login",
                json={"login": self.username, "password": PASSWORD},
                headers={"X-Forwarded-For": ip},
                timeout=30,
            )
            if reply.status_code not in (429, 503) or "Retry-After" not in reply.headers:
                break
            time.sleep(min(float(reply.headers["Retry-After"]), 5.0) * random.uniform(1.0, 1.5))
        reply.raise_for_status()
        self.token = reply.json()["tokens"]["access_token"]
        self.url = self.host.replace("http", "ws", 1) + "/api/v1/ws"
        self.last_id: str | None = None
        self.refs = itertools.count()
        self._connect("connect")
        self.other = f"load_{random.randrange(SEEDED):04d}"
        self._call("subscribe", {"topic": f"presence:{self.other}"})
        self.chat_id = self._start_chat(requests, ip)

    def _start_chat(self, requests: Any, ip: str) -> str | None:
        """The chat with another seeded user (started over HTTP, as a client does before its first send)."""
        other = self.other if self.other != self.username else f"load_{(int(self.other[5:]) + 1) % SEEDED:04d}"
        started = time.perf_counter()
        reply = requests.post(
            f"{self.host}/api/v1/chats",
            json={"username": other},
            headers={"Authorization": f"Bearer {self.token}", "X-Forwarded-For": ip},
            timeout=30,
        )
        ok = reply.status_code in (200, 201)
        events.request.fire(
            request_type="POST",
            name="POST /chats (socket user)",
            response_time=(time.perf_counter() - started) * 1000,
            response_length=len(reply.content),
            exception=None if ok else RuntimeError(f"start chat {reply.status_code}: {reply.text[:200]}"),
        )
        return str(reply.json()["id"]) if ok else None

    def _connect(self, name: str) -> None:
        url = self.url + (f"?since={self.last_id}" if self.last_id else "")
        started = time.perf_counter()
        self.ws = websocket.create_connection(
            url, header=[f"Authorization: Bearer {self.token}"], subprotocols=["i9.json"]
        )
        self._fire(name, started, 0)

    def on_stop(self) -> None:
        self.ws.close()

    def _fire(self, name: str, started: float, size: int, exc: Exception | None = None) -> None:
        events.request.fire(
            request_type="WS",
            name=name,
            response_time=(time.perf_counter() - started) * 1000,
            response_length=size,
            exception=exc,
        )

    def _call(self, action: str, data: dict[str, Any]) -> Any:
        """Send one action and wait for its ack (events that arrive first are skipped); its result when ok."""
        ref = f"r{next(self.refs)}"
        started = time.perf_counter()
        self.ws.send(json.dumps({"ref": ref, "action": action, "data": data}))
        while True:
            frame = json.loads(self.ws.recv())
            if frame.get("id"):
                self.last_id = frame["id"]  # stored events: resume from the last one seen
            if frame["type"] == "ack" and frame["data"]["ref"] == ref:
                ok = frame["data"]["ok"]
                self._fire(action, started, 0, None if ok else RuntimeError(str(frame["data"].get("error"))))
                return frame["data"].get("result") if ok else None

    @task(10)
    def ping(self) -> None:
        self._call("ping", {})

    @task(3)
    def chat_send(self) -> None:
        """Send a text over the socket (``chat.send``, a fresh client_id) and wait for its ack (timed), then
        mark the chat read up to it (``chat.read``)."""
        if self.chat_id is None:
            return
        client_id = uuid.uuid4().hex
        body = {"chat_id": self.chat_id, "client_id": client_id, "type": "text", "text": "hello over the socket"}
        message = self._call("chat.send", body)
        if message is not None:
            self._call("chat.read", {"chat_id": self.chat_id, "seq": int(message["seq"])})

    @task(1)
    def vanish_and_resume(self) -> None:
        """Drop the connection with a TCP RST (no close frame), then reconnect with since and watch again."""
        sock = self.ws.sock
        if sock is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            sock.close()
        self._connect("reconnect with since")
        self._call("subscribe", {"topic": f"presence:{self.other}"})
