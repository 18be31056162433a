"""The synchronous TestClient streams: chunks as the app sends them, a disconnect when the test leaves."""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator

import pytest
import trio

from triolette.applications import Triolette
from triolette.requests import Request
from triolette.responses import StreamingResponse
from triolette.routing import Route, WebSocketRoute
from triolette.testclient import TestClient
from triolette.types import Receive, Scope, Send
from triolette.websockets import WebSocket


def endless_events(log: list[str], produced: list[int]) -> Triolette:
    """An endless text/event-stream (three events, then a quiet wait) that records what it
    produced and how it ended."""

    async def events(request: Request) -> StreamingResponse:
        async def forever() -> AsyncIterator[str]:
            n = 0
            try:
                while True:
                    produced.append(n)
                    yield f"event: tick\ndata: {n}\n\n"
                    n += 1
                    if n == 3:  # the test reads three: the next event is a long way off
                        await trio.sleep_forever()
            except trio.Cancelled as cancelled:
                log.append(f"cancelled: {cancelled.reason}")
                raise
            finally:
                log.append("finally")

        return StreamingResponse(forever(), media_type="text/event-stream")

    return Triolette(routes=[Route("/events", events)])


@pytest.mark.parametrize("in_with_block", [False, True], ids=["own-trio-run", "client-trio-run"])
def test_an_endless_stream_read_for_three_events_then_closed(in_with_block: bool) -> None:
    log: list[str] = []
    produced: list[int] = []
    client = TestClient(endless_events(log, produced))
    if in_with_block:
        client.__enter__()
    try:
        with client.stream("GET", "/events") as response:
            assert response.headers["content-type"] == "text/event-stream; charset=utf-8"
            events: list[bytes] = []
            for chunk in response.iter_bytes():
                # The app is at most one event ahead of the test: it waits for the test to read.
                assert len(produced) <= len(events) + 2
                events.append(chunk)
                if len(events) == 3:
                    break
            assert log == []
        # Leaving the block sent http.disconnect and waited for the handler to finish.
        assert log == ["cancelled: client disconnected", "finally"]
        assert events == [b"event: tick\ndata: %d\n\n" % n for n in range(3)]
    finally:
        if in_with_block:
            client.__exit__()


def test_a_stream_is_read_on_the_test_thread_while_the_app_runs_on_another() -> None:
    threads: list[str] = []

    async def report(request: Request) -> StreamingResponse:
        async def lines() -> AsyncIterator[bytes]:
            for n in range(3):
                threads.append(threading.current_thread().name)
                yield b"line %d\n" % n

        return StreamingResponse(lines())

    with TestClient(Triolette(routes=[Route("/", report)])) as client, client.stream("GET", "/") as response:
        assert list(response.iter_lines()) == ["line 0", "line 1", "line 2"]
    assert threads == ["triolette-testclient"] * 3


def test_an_error_in_the_middle_of_a_stream_is_raised_when_it_is_read() -> None:
    async def broken(request: Request) -> StreamingResponse:
        async def parts() -> AsyncIterator[bytes]:
            yield b"first"
            raise KeyError("the stream broke")

        return StreamingResponse(parts())

    client = TestClient(Triolette(routes=[Route("/", broken)]))
    with client.stream("GET", "/") as response:
        chunks = response.iter_bytes()
        assert next(chunks) == b"first"
        with pytest.raises(KeyError, match="the stream broke"):
            next(chunks)


def test_a_websocket_app_that_fails_during_the_handshake_raises_its_error() -> None:
    async def broken(websocket: WebSocket) -> None:
        raise ValueError("the socket handler broke")

    app = Triolette(routes=[WebSocketRoute("/ws", broken)])
    for client in (TestClient(app), TestClient(app).__enter__()):
        with pytest.raises(ValueError, match="the socket handler broke"), client.websocket_connect("/ws"):
            pytest.fail("not accepted")  # pragma: no cover
        client.__exit__()


def test_template_responses_show_their_template_and_context() -> None:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.debug", "info": {"template": "index.html", "context": {"a": 1}}})
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"page"})

    response = TestClient(app).get("/")
    assert (response.text, response.template, response.context) == ("page", "index.html", {"a": 1})  # type: ignore[attr-defined]  # the test client adds .template/.context, as Starlette's
