"""End to end: WebSockets and server-sent events through a real hypercorn trio server.

The server runs in-process on 127.0.0.1 (the OS picks the port); the clients are real:
httpx-ws (wsproto over httpx's sockets) for WebSockets, httpx streaming for SSE. Every
wait is bounded by ``trio.fail_after``.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator
from contextlib import AbstractAsyncContextManager, aclosing, asynccontextmanager
from typing import Any, cast

import httpx
import pytest
import trio
from httpx_ws import AsyncWebSocketSession, aconnect_ws
from httpx_ws import WebSocketDisconnect as ClientSawClose

from tests.e2e.servers import running as serve_on_loopback
from triolette.applications import Triolette
from triolette.requests import Request
from triolette.responses import Response
from triolette.routing import Route, WebSocketRoute
from triolette.sse import EventSourceResponse, ServerSentEvent
from triolette.websockets import WebSocket, WebSocketDisconnect

pytestmark = pytest.mark.e2e


@asynccontextmanager
async def running(app: Any) -> AsyncIterator[str]:
    """Serve ``app`` on 127.0.0.1 (port picked by the OS); yield "host:port"."""
    async with serve_on_loopback(app) as base:
        yield base.removeprefix("http://")


def connect_ws(url: str, client: httpx.AsyncClient) -> AbstractAsyncContextManager[AsyncWebSocketSession]:
    """A real WebSocket client connection (httpx-ws: wsproto over httpx's sockets)."""
    return aconnect_ws(url, client)


async def test_websocket_echo() -> None:
    ended: list[int] = []
    handler_done = trio.Event()

    async def echo(websocket: WebSocket) -> None:
        await websocket.accept()
        try:
            while True:
                text = await websocket.receive_text()
                await websocket.send_text(text.upper())
        except WebSocketDisconnect as exc:
            ended.append(exc.code)
        finally:
            handler_done.set()

    app = Triolette(routes=[WebSocketRoute("/echo", echo)])
    with trio.fail_after(10):
        async with running(app) as address, httpx.AsyncClient() as client:
            async with connect_ws(f"http://{address}/echo", client) as ws:
                for word in ("hello", "trio"):
                    await ws.send_text(word)
                    assert await ws.receive_text() == word.upper()
            await handler_done.wait()
    assert ended == [1006]  # hypercorn 0.18 reports every close that it did not start as 1006
    assert app.in_flight == 0


async def test_websocket_broadcast_to_several_clients() -> None:
    members: set[trio.MemorySendChannel[str]] = set()

    async def room(websocket: WebSocket) -> None:
        await websocket.accept()
        inbox_send, inbox = trio.open_memory_channel[str](16)

        async def forward() -> None:  # the connection's sender: a task in websocket.nursery
            async for text in inbox:
                await websocket.send_text(text)

        members.add(inbox_send)
        try:
            websocket.nursery.start_soon(forward)
            await websocket.send_text(f"welcome, {len(members)} here")
            async for text in websocket.iter_text():
                for member in list(members):
                    member.send_nowait(text)
        finally:
            members.discard(inbox_send)

    app = Triolette(routes=[WebSocketRoute("/room", room)])
    with trio.fail_after(10):
        async with running(app) as address, httpx.AsyncClient() as client:
            url = f"http://{address}/room"
            async with connect_ws(url, client) as a, connect_ws(url, client) as b, connect_ws(url, client) as c:
                greetings = [await ws.receive_text() for ws in (a, b, c)]
                await b.send_text("hello, everyone")
                heard = [await ws.receive_text() for ws in (a, b, c)]
    assert greetings == ["welcome, 1 here", "welcome, 2 here", "welcome, 3 here"]
    assert heard == ["hello, everyone"] * 3
    assert members == set()


async def test_a_websocket_client_that_vanishes_cancels_the_connections_tasks() -> None:
    task_cancelled = trio.Event()
    handler_saw: list[int] = []
    handler_done = trio.Event()

    async def handler(websocket: WebSocket) -> None:
        await websocket.accept()

        async def ticker() -> None:
            try:
                await trio.sleep_forever()
            finally:
                task_cancelled.set()

        websocket.nursery.start_soon(ticker)
        try:
            await websocket.receive_text()
        except WebSocketDisconnect as exc:
            handler_saw.append(exc.code)
        finally:
            handler_done.set()

    app = Triolette(routes=[WebSocketRoute("/ws", handler)])
    with trio.fail_after(10):
        async with running(app) as address:
            host, _, port = address.rpartition(":")
            stream = await trio.open_tcp_stream(host, int(port))
            await stream.send_all(
                b"GET /ws HTTP/1.1\r\nHost: e2e\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
            )
            assert (await stream.receive_some()).startswith(b"HTTP/1.1 101 ")
            await stream.aclose()  # gone, without a close frame
            await task_cancelled.wait()
            await handler_done.wait()
    assert handler_saw == [1006]


async def test_a_websocket_error_after_accept_is_a_1011_close() -> None:
    async def handler(websocket: WebSocket) -> None:
        await websocket.accept()
        await websocket.receive_text()
        raise RuntimeError("boom")

    app = Triolette(routes=[WebSocketRoute("/ws", handler)])
    with trio.fail_after(10):
        async with (
            running(app) as address,
            httpx.AsyncClient() as client,
            connect_ws(f"http://{address}/ws", client) as ws,
        ):
            await ws.send_text("go")
            with pytest.raises(ClientSawClose) as closed:
                await ws.receive_text()
    assert closed.value.code == 1011


# httpx chains async generators (aiter_lines > aiter_text > ... > the socket) without closing
# the inner ones when the outer one is closed: trio reports them when they are collected.
# This filter names httpx's and httpcore's generators only; ours are still checked.
_HTTPX_GENERATORS = (
    "ignore:Exception ignored in. <async_generator object "
    "(Response|BoundAsyncStream|AsyncResponseStream|PoolByteStream|HTTP11ConnectionByteStream|AsyncHTTP11Connection)"
    r"\.:pytest.PytestUnraisableExceptionWarning"
)


@pytest.mark.filterwarnings(_HTTPX_GENERATORS)
async def test_sse_stream_read_with_httpx_and_closed_by_the_client() -> None:
    finally_ran = trio.Event()
    produced: list[int] = []

    async def ticks() -> AsyncIterator[ServerSentEvent]:
        try:
            for n in range(1000):
                produced.append(n)
                yield ServerSentEvent({"n": n}, event="tick", id=str(n))
                await trio.sleep(0.01)
        finally:
            finally_ran.set()

    async def events(request: Request) -> Response:
        return EventSourceResponse(ticks())

    app = Triolette(routes=[Route("/events", events)])
    lines: list[str] = []
    with trio.fail_after(10):
        async with running(app) as address, httpx.AsyncClient() as client:
            async with client.stream("GET", f"http://{address}/events") as response:
                assert response.headers["content-type"] == "text/event-stream; charset=utf-8"
                assert response.headers["cache-control"] == "no-cache"
                async with aclosing(cast(AsyncGenerator[str, None], response.aiter_lines())) as stream:
                    async for line in stream:
                        lines.append(line)
                        if len(lines) == 8:  # two events
                            break
            # the client closed the response mid-stream: the server's generator is closed
            await finally_ran.wait()
    assert lines == ["id: 0", "event: tick", 'data: {"n":0}', "", "id: 1", "event: tick", 'data: {"n":1}', ""]
    assert 2 <= len(produced) < 1000
    assert app.in_flight == 0
