"""Request heads are capped over real sockets: 16 KiB of request line and headers and 100 header fields; past
either, 431 ``headers_too_large`` in the API error shape and the connection closed, without the worker reading
the rest (a 256 MiB header used to be read whole and answered 200). Normal requests are unaffected."""

from __future__ import annotations

import select
import socket
import time
from typing import Any

import orjson
import psutil

from api.http_protocol import MAX_HEAD_BYTES, MAX_HEADERS
from tests.conftest import Server

PIECE = 16 * 1024


def _address(server: Server) -> tuple[str, int]:
    host, port = server.base_url.removeprefix("http://").split(":")
    return host, int(port)


def _workers_rss(server: Server) -> int:
    return sum(p.memory_info().rss for p in psutil.Process(server.process.pid).children(recursive=True))


def _read_response(sock: socket.socket, timeout: float = 10.0) -> bytes:
    """Everything the server sends until it closes the connection (or the response is complete)."""
    sock.settimeout(timeout)
    data = b""
    while True:
        try:
            chunk = sock.recv(65536)
        except (ConnectionResetError, TimeoutError):
            return data
        if not chunk:
            return data
        data += chunk
        head, sep, body = data.partition(b"\r\n\r\n")
        if sep and b"content-length:" in head.lower():
            length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
            if len(body) >= length:
                return data


def _parse(response: bytes) -> tuple[int, dict[str, str], Any]:
    head, _, body = response.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    return status, headers, orjson.loads(body) if body else None


def _assert_error(response: bytes, status: int, code: str) -> dict[str, Any]:
    got, headers, body = _parse(response)
    assert got == status, response[:300]
    assert headers["connection"] == "close"
    assert headers["content-type"] == "application/json"
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message", "details"}
    assert body["error"]["code"] == code
    return dict(body["error"]["details"])


def _assert_431(response: bytes) -> None:
    assert _assert_error(response, 431, "headers_too_large") == {
        "max_bytes": MAX_HEAD_BYTES,
        "max_headers": MAX_HEADERS,
    }


def _send_huge_header(server: Server, start: bytes, total: int) -> tuple[bytes, int, float]:
    """Send ``start`` then one header value of ``total`` bytes in pieces, stopping once the server answers:
    (the answer, bytes of the value sent, seconds until the answer)."""
    sock = socket.create_connection(_address(server), timeout=10)
    try:
        began = time.monotonic()
        sock.sendall(start + b"X-Huge: ")
        sent = 0
        while sent < total:
            readable, _, _ = select.select([sock], [], [], 0.02)
            if readable:
                break
            try:
                sock.sendall(b"a" * PIECE)
            except (BrokenPipeError, ConnectionResetError):
                break
            sent += PIECE
        response = _read_response(sock)
        return response, sent, time.monotonic() - began
    finally:
        sock.close()


def test_a_one_mib_header_gets_431_at_once_and_is_never_read_whole(server: Server) -> None:
    before = _workers_rss(server)
    response, sent, took = _send_huge_header(server, b"GET /healthz HTTP/1.1\r\nHost: t\r\n", 1024 * 1024)
    grown = _workers_rss(server) - before
    print(f"\n1 MiB header: 431 after {sent} bytes of it, {took:.2f} s; workers' RSS grew {grown / 2**20:.1f} MiB")
    _assert_431(response)
    assert sent <= 256 * 1024, f"the server read {sent} bytes of the header before answering"
    assert took < 5
    assert grown < 16 * 2**20


def test_a_websocket_upgrade_with_a_huge_header_gets_431_before_the_upgrade(server: Server) -> None:
    start = (
        b"GET /api/v1/ws HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
    )
    response, sent, _ = _send_huge_header(server, start, 1024 * 1024)
    _assert_431(response)
    assert sent <= 256 * 1024


def _request(server: Server, head: bytes) -> bytes:
    with socket.create_connection(_address(server), timeout=10) as sock:
        sock.sendall(head)
        return _read_response(sock)


def test_101_headers_get_431_and_a_head_just_under_both_caps_is_served(server: Server) -> None:
    many = b"".join(b"X-H%d: v\r\n" % i for i in range(MAX_HEADERS))  # 100, plus Host: 101
    _assert_431(_request(server, b"GET /healthz HTTP/1.1\r\nHost: t\r\n" + many + b"\r\n"))

    # 99 fields besides Host, about 15.5 KiB in all, in one piece with a body: served as usual.
    value = b"v" * ((MAX_HEAD_BYTES - 1024) // 98)
    fields = b"".join(b"X-H%d: %s\r\n" % (i, value) for i in range(97))
    head = b"POST /api/v1/auth/login HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
    body = orjson.dumps({"login": "nobody-here", "password": "x" * 20_000})  # head + body > 16 KiB in one write
    response = _request(server, head + fields + b"Content-Length: %d\r\n\r\n" % len(body) + body)
    status, _, _ = _parse(response)
    assert status in (401, 422, 429), response[:300]  # answered by the app, not by the head cap
    assert len(head + fields) < MAX_HEAD_BYTES


def test_a_request_line_over_16_kib_gets_431(server: Server) -> None:
    target = b"/healthz?" + b"q" * MAX_HEAD_BYTES
    _assert_431(_request(server, b"GET " + target + b" HTTP/1.1\r\nHost: t\r\n\r\n"))


def test_pipelined_requests_each_get_their_own_head_budget(server: Server) -> None:
    one = b"GET /healthz HTTP/1.1\r\nHost: t\r\nX-Pad: " + b"p" * (MAX_HEAD_BYTES // 2) + b"\r\n\r\n"
    with socket.create_connection(_address(server), timeout=10) as sock:
        sock.sendall(one * 3)  # 24 KiB in one write: three heads of 8 KiB each, all served
        sock.settimeout(10)
        data = b""
        while data.count(b"HTTP/1.1 200") < 3:
            chunk = sock.recv(65536)
            assert chunk, data
            data += chunk


def test_a_request_that_is_not_http_gets_400_in_the_error_shape(server: Server) -> None:
    _assert_error(
        _request(server, b"GET /healthz HTTP/1.1\r\nHost: t\r\nX-Bad: a\x00b\r\n\r\n"), 400, "malformed_request"
    )
    _assert_error(_request(server, b"GET /healthz HTTP/9.x\r\n\r\n"), 400, "malformed_request")


def test_an_idle_keep_alive_connection_outlives_a_proxys_idle_timeout(server: Server) -> None:
    """A connection left idle longer than uvicorn's default (5 s) still serves its next request: the server keeps
    idle connections HTTP_KEEPALIVE_S (75 s), longer than the proxies and clients in front of it, so it never
    closes one just as a request goes out on it (the client would see a reset)."""
    request = b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: keep-alive\r\n\r\n"
    with socket.create_connection(_address(server)) as sock:
        sock.sendall(request)
        assert _parse(_read_response(sock))[0] == 200
        time.sleep(6.5)
        readable, _, _ = select.select([sock], [], [], 0)
        assert not readable, "the server closed the idle connection"
        sock.sendall(request)
        assert _parse(_read_response(sock))[0] == 200
