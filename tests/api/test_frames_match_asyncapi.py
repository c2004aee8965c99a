"""Every frame a client receives in a realistic session matches docs/asyncapi.yaml, in both encodings."""

from __future__ import annotations

from typing import Any

import msgpack
import pytest

from tests.api.realtime_helpers import emit
from tests.asyncapi_frames import check_frame
from tests.conftest import Server
from tests.support import WsClient


@pytest.mark.parametrize("fmt", ["json", "msgpack"])
async def test_every_frame_received_matches_the_asyncapi_document(
    server: Server, make_api: Any, register: Any, fmt: str
) -> None:
    api, other_api = make_api("json"), make_api("json")
    user = await register(api)
    other = await register(other_api)
    first = (await emit(api, user["user"]["id"]))[0]
    ws = await WsClient.connect(server.base_url, api.token, fmt=fmt, since="18446744073709551615-0")
    await ws.next_of("resync_required")  # a since after everything kept
    assert (await ws.request("ping"))["ok"]
    assert (await ws.request("subscribe", {"topic": f"presence:{other['username']}"}))["ok"]
    await ws.next_of("presence")  # the snapshot
    peer = await WsClient.connect(server.base_url, other_api.token)
    await ws.next_of("presence")  # online
    await peer.close()
    await ws.next_of("presence")  # offline, with last_seen
    assert not (await ws.request("subscribe", {"topic": "presence:nobody_at_all"}))["ok"]
    assert not (await ws.request("no.such.action"))["ok"]
    assert not (await ws.request("subscribe", {"topic": "presence:x", "extra": 1}))["ok"]
    await ws.send_raw(b"\xc1" if fmt == "msgpack" else "{")
    await ws.next_of("ack")
    await ws.send_raw(
        msgpack.packb({"ref": "big", "action": "ping", "data": {"p": "x" * 70_000}})
        if fmt == "msgpack"
        else '{"ref": "big", "action": "ping", "data": {"p": "' + "x" * 70_000 + '"}}'
    )
    await ws.next_of("ack")
    assert (await ws.request("unsubscribe", {"topic": f"presence:{other['username']}"}))["ok"]
    await ws.close()
    assert first
    types = {f["type"] for f in ws.seen}
    assert {"ack", "presence", "resync_required"} <= types
    for frame in ws.seen:
        check_frame(frame)
