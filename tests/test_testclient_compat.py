"""What Starlette's test client does that test suites written for it (FastAPI's) rely on:
``backend=``/``backend_options=``, and a WebSocket session left while the app still waits."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

import pytest
import trio

from triolette.applications import Triolette
from triolette.routing import WebSocketRoute
from triolette.testclient import AsyncTestClient, TestClient
from triolette.types import Receive, Scope, Send
from triolette.websockets import WebSocket, WebSocketDisconnect


def echo_app(seen: list[str], *, handle: bool = False) -> Triolette:
    async def echo(websocket: WebSocket) -> None:
        await websocket.accept()
        try:
            while True:
                text = await websocket.receive_text()
                await websocket.send_text(f"echo {text}")
        except WebSocketDisconnect as exc:
            seen.append(f"disconnect {exc.code}")
            if not handle:
                raise

    return Triolette(routes=[WebSocketRoute("/ws", echo)])


def test_leaving_websocket_connect_while_app_waits_raises_websocket_disconnect_1000() -> None:
    seen: list[str] = []
    client = TestClient(echo_app(seen))
    with pytest.raises(WebSocketDisconnect) as info, client.websocket_connect("/ws") as ws:  # noqa: PT012
        ws.send_text("hi")
        assert ws.receive_text() == "echo hi"
    assert info.value.code == 1000
    assert seen == ["disconnect 1000"]


def test_leaving_websocket_connect_when_app_handles_the_disconnect_raises_nothing() -> None:
    seen: list[str] = []
    client = TestClient(echo_app(seen, handle=True))
    with client.websocket_connect("/ws") as ws:
        ws.send_text("hi")
        assert ws.receive_text() == "echo hi"
    assert seen == ["disconnect 1000"]


def test_leaving_websocket_connect_with_an_error_raises_the_error_not_the_disconnect() -> None:
    seen: list[str] = []
    client = TestClient(echo_app(seen))
    with pytest.raises(KeyError, match="the test's own"), client.websocket_connect("/ws"):
        raise KeyError("the test's own")
    assert seen == ["disconnect 1000"]


async def test_async_leaving_websocket_connect_while_app_waits_raises_websocket_disconnect_1000() -> None:
    seen: list[str] = []
    client = AsyncTestClient(echo_app(seen))
    with trio.fail_after(5), pytest.raises(WebSocketDisconnect) as info:  # noqa: PT012
        async with client.websocket_connect("/ws") as ws:
            await ws.send_text("hi")
            assert await ws.receive_text() == "echo hi"
    assert info.value.code == 1000
    assert seen == ["disconnect 1000"]


def test_leaving_websocket_connect_of_a_plain_asgi_app_raises_its_websocket_disconnect() -> None:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await receive()
        await send({"type": "websocket.accept"})
        message = await receive()
        raise WebSocketDisconnect(message["code"])

    with pytest.raises(WebSocketDisconnect) as info, TestClient(app).websocket_connect("/"):
        pass
    assert info.value.code == 1000


def hello_app() -> Triolette:
    from triolette.responses import PlainTextResponse
    from triolette.routing import Route

    async def hello(request: Any) -> PlainTextResponse:
        return PlainTextResponse("hello")

    return Triolette(routes=[Route("/", hello)])


def test_testclient_backend_trio_is_accepted_with_backend_options() -> None:
    runs: list[str] = []

    class Counting(trio.abc.Instrument):
        def before_run(self) -> None:
            runs.append("run")

    client = TestClient(hello_app(), backend="trio", backend_options={"instruments": [Counting()]})
    assert (client.backend, list(client.backend_options)) == ("trio", ["instruments"])
    assert client.get("/").text == "hello"
    with client:  # the lifespan's trio run, which this request shares
        assert client.get("/").text == "hello"
    assert runs == ["run", "run"]


def test_testclient_backend_is_in_starlettes_position() -> None:
    client = TestClient(hello_app(), "http://testserver", True, "", "trio", {"strict_exception_groups": True})
    assert (client.backend, client.backend_options) == ("trio", {"strict_exception_groups": True})
    assert client.get("/").text == "hello"


def test_testclient_backend_asyncio_is_refused() -> None:
    with pytest.raises(ValueError, match=r"triolette runs on trio only, so TestClient\(backend='asyncio'\) cannot"):
        TestClient(hello_app(), backend="asyncio")  # type: ignore[arg-type]  # the refused backend is the point


def test_testclient_backend_options_trio_run_does_not_take_are_refused() -> None:
    with pytest.raises(ValueError, match=r"backend_options are passed to trio\.run, which has no option 'use_uvloop'"):
        TestClient(hello_app(), backend_options={"use_uvloop": True})


def test_leaving_with_testclient_keeps_the_client_usable() -> None:
    events: list[str] = []

    @contextlib.asynccontextmanager
    async def lifespan(app: Triolette) -> AsyncIterator[None]:
        events.append("startup")
        yield
        events.append("shutdown")

    app = hello_app()
    app.router.lifespan_context = lifespan
    client = TestClient(app)
    with client:
        assert client.get("/").text == "hello"
    assert events == ["startup", "shutdown"]
    assert not client.is_closed
    assert client.get("/").text == "hello"  # FastAPI's tests reuse a module-level client this way
    with client:  # and run its lifespan again
        assert client.get("/").text == "hello"
    assert events == ["startup", "shutdown", "startup", "shutdown"]
