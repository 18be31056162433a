"""End to end: a real hypercorn trio server on 127.0.0.1, real sockets, real time.

Each test starts the server in-process on a port the OS picks, talks to it, and stops
it through hypercorn's shutdown trigger. Every wait is bounded by ``trio.fail_after``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
import trio

from tests.e2e.servers import running as serve_on_loopback
from triolette.applications import Triolette
from triolette.requests import Request
from triolette.responses import PlainTextResponse, Response, StreamingResponse
from triolette.routing import Route

pytestmark = pytest.mark.e2e


@asynccontextmanager
async def running(app: Any) -> AsyncIterator[tuple[str, int]]:
    """Serve ``app`` on 127.0.0.1 (port picked by the OS); yield (host, port)."""
    async with serve_on_loopback(app) as base:
        host, _, port = base.removeprefix("http://").rpartition(":")
        yield host, int(port)


async def test_a_request_is_answered_over_a_real_socket() -> None:
    async def hello(request: Request) -> Response:
        return PlainTextResponse(f"hello {request.query_params['name']}, you sent {len(await request.body())} bytes")

    app = Triolette(routes=[Route("/hello", hello, methods=["POST"])])
    with trio.fail_after(5):
        async with running(app) as (host, port), httpx.AsyncClient() as client:
            response = await client.post(f"http://{host}:{port}/hello?name=trio", content=b"x" * 1000)
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/plain; charset=utf-8"
    assert response.text == "hello trio, you sent 1000 bytes"


async def test_a_client_disconnect_cancels_the_handler() -> None:
    started = trio.Event()
    cancelled = trio.Event()
    finally_ran = trio.Event()
    reasons: list[str] = []

    async def slow(request: Request) -> Response:
        started.set()
        try:
            await trio.sleep(30)
        except trio.Cancelled as exc:
            reasons.append(str(exc.reason))
            cancelled.set()
            raise
        finally:
            finally_ran.set()
        return PlainTextResponse("too late")  # pragma: no cover

    app = Triolette(routes=[Route("/slow", slow)])
    async with running(app) as (host, port):
        with trio.fail_after(5):
            stream = await trio.open_tcp_stream(host, port)
            await stream.send_all(b"GET /slow HTTP/1.1\r\nHost: e2e\r\n\r\n")
            await started.wait()
            await stream.aclose()  # the client goes away before the response
            await cancelled.wait()
            await finally_ran.wait()
    assert reasons == ["client disconnected"]
    assert app.in_flight == 0


async def test_a_stream_stops_and_closes_its_generator_when_the_client_leaves() -> None:
    closed = trio.Event()
    sent: list[int] = []

    async def ticks() -> AsyncIterator[bytes]:
        try:
            for n in range(1000):
                sent.append(n)
                yield b"tick %d\n" % n
                await trio.sleep(0.01)
        finally:
            closed.set()

    async def endless(request: Request) -> Response:
        return StreamingResponse(ticks())

    app = Triolette(routes=[Route("/ticks", endless)])
    async with running(app) as (host, port):
        with trio.fail_after(5):
            stream = await trio.open_tcp_stream(host, port)
            await stream.send_all(b"GET /ticks HTTP/1.1\r\nHost: e2e\r\n\r\n")
            received = b""
            for _ in range(100):  # bounded: a few reads bring the head and the first tick
                received += await stream.receive_some()
                if b"tick 0\n" in received:
                    break
            await stream.aclose()  # the client leaves mid-stream
            await closed.wait()
    assert received.startswith(b"HTTP/1.1 200 ")
    assert b"tick 0\n" in received
    assert 1 <= len(sent) < 1000
