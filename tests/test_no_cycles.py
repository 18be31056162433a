"""A request leaves no reference cycles behind: what it allocated (its body among it) is
freed by reference counting when the call returns, not later by the garbage collector."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from typing import Any

import pytest
import trio

from tests.conftest import call, http_scope
from tests.test_scope import FakeServer
from triolette.applications import Triolette
from triolette.middleware import Middleware
from triolette.middleware.cors import CORSMiddleware
from triolette.middleware.gzip import GZipMiddleware
from triolette.middleware.sessions import SessionMiddleware
from triolette.middleware.trustedhost import TrustedHostMiddleware
from triolette.requests import Request
from triolette.responses import PlainTextResponse, Response, StreamingResponse
from triolette.routing import Route
from triolette.types import Message


@pytest.fixture
def collector_off() -> Iterator[None]:
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


async def echo(request: Request) -> Response:
    return PlainTextResponse(await request.body())


async def stream(request: Request) -> Response:
    async def chunks() -> Any:
        for _ in range(3):
            yield b"x"

    return StreamingResponse(chunks())


app = Triolette(
    routes=[Route("/echo", echo, methods=["POST"]), Route("/stream", stream)],
    middleware=[
        Middleware(TrustedHostMiddleware, allowed_hosts=["*"]),
        Middleware(CORSMiddleware, allow_origins=["*"]),
        Middleware(GZipMiddleware, minimum_size=500),
        Middleware(SessionMiddleware, secret_key="k" * 32),
    ],
)


@pytest.mark.usefixtures("collector_off")
async def test_requests_leave_no_cyclic_garbage() -> None:
    for _ in range(3):  # warm up: first calls build the middleware stack and caches
        await call(app, "/echo", "POST", body=b"hello")
    gc.collect()
    for _ in range(10):
        assert (await call(app, "/echo", "POST", body=b"x" * 100_000)).body == b"x" * 100_000
        assert (await call(app, "/stream")).body == b"xxx"
        assert (await call(app, "/missing")).status == 404
    assert gc.collect() == 0


async def _slow(request: Request) -> Response:
    await trio.sleep(10)
    return PlainTextResponse("late")


@pytest.mark.usefixtures("collector_off")
async def test_a_cancelled_request_leaves_no_cyclic_garbage(autojump_clock: trio.abc.Clock) -> None:
    """A request cancelled by its deadline (answered 503) is freed by reference counting
    like any other: _drive's frame must not keep trio's Error outcome (whose Cancelled's
    traceback holds that same frame)."""
    app = Triolette(routes=[Route("/", _slow, timeout=1)])
    for _ in range(3):  # warm up
        assert (await call(app, "/")).status == 503
    gc.collect()
    for _ in range(5):
        assert (await call(app, "/")).status == 503
    assert gc.collect() == 0


async def _endless(request: Request) -> Response:
    async def ticks() -> Any:
        while True:
            await trio.sleep(1)
            yield b"x"

    return StreamingResponse(ticks())


@pytest.mark.usefixtures("collector_off")
async def test_a_request_cancelled_by_a_disconnect_leaves_no_cyclic_garbage(autojump_clock: trio.abc.Clock) -> None:
    app = Triolette(routes=[Route("/", _endless)])

    async def one() -> None:
        server = FakeServer()
        server.request()
        with trio.fail_after(100):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(app, http_scope(), server.receive, server.send)
                await trio.sleep(2.5)
                server.disconnect()
        assert server.body == b"xx"

    for _ in range(3):  # warm up
        await one()
    gc.collect()
    for _ in range(3):
        await one()
    assert gc.collect() == 0


async def _echo_until_gone(websocket: Any) -> None:
    await websocket.accept()
    while True:  # the client's disconnect escapes as WebSocketDisconnect, unhandled
        await websocket.send_text(await websocket.receive_text())


@pytest.mark.usefixtures("collector_off")
async def test_a_websocket_whose_handler_leaves_the_disconnect_unhandled_leaves_no_cyclic_garbage() -> None:
    from triolette.routing import WebSocketRoute

    app = Triolette(routes=[WebSocketRoute("/ws", _echo_until_gone)])

    async def one() -> dict[str, Any]:
        incoming: Iterator[Message] = iter(
            [
                {"type": "websocket.connect"},
                {"type": "websocket.receive", "text": "hi"},
                {"type": "websocket.disconnect", "code": 1000},
            ]
        )
        sent: list[Message] = []

        async def receive() -> Message:
            await trio.lowlevel.checkpoint()
            return next(incoming)

        async def send(message: Message) -> None:
            sent.append(message)

        scope = {**http_scope("/ws"), "type": "websocket", "subprotocols": []}
        with trio.fail_after(5):
            await app(scope, receive, send)
        assert [message["type"] for message in sent] == ["websocket.accept", "websocket.send"]
        return scope

    for _ in range(3):  # warm up
        await one()
    gc.collect()
    for _ in range(3):
        scope = await one()
    assert scope["triolette.unhandled_disconnect"] == (1000, "")
    assert gc.collect() == 0
