"""BaseHTTPMiddleware on the request nursery: streaming, body replay, cancellation both ways."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
import trio
import trio.testing

from tests.conftest import call, http_scope
from triolette.applications import Triolette
from triolette.background import BackgroundTask
from triolette.middleware import Middleware
from triolette.middleware.base import BaseHTTPMiddleware
from triolette.requests import Request
from triolette.responses import PlainTextResponse, Response, StreamingResponse
from triolette.routing import Route
from triolette.testclient import TestClient


class AddHeader(BaseHTTPMiddleware):
    async def dispatch(self, request: Request, call_next: Any) -> Response:
        response = await call_next(request)
        response.headers["x-middleware"] = "yes"
        return response


async def echo(request: Request) -> Response:
    return PlainTextResponse(await request.body())


def test_dispatch_sees_the_response_and_may_change_headers() -> None:
    app = Triolette(routes=[Route("/", echo, methods=["POST"])], middleware=[Middleware(AddHeader)])
    with TestClient(app) as client:
        response = client.post("/", content=b"hello")
    assert response.status_code == 200
    assert response.text == "hello"
    assert response.headers["x-middleware"] == "yes"


def test_downstream_sees_the_body_that_dispatch_read() -> None:
    seen = []

    async def reader(request: Request, call_next: Any) -> Response:
        seen.append(await request.body())
        return await call_next(request)

    app = Triolette(
        routes=[Route("/", echo, methods=["POST"])], middleware=[Middleware(BaseHTTPMiddleware, dispatch=reader)]
    )
    with TestClient(app) as client:
        response = client.post("/", content=b"the body")
    assert seen == [b"the body"]
    assert response.text == "the body"


def test_an_exception_before_the_response_is_raised_from_call_next() -> None:
    caught = []

    async def boom(request: Request) -> Response:
        raise KeyError("downstream")

    async def catcher(request: Request, call_next: Any) -> Response:
        try:
            return await call_next(request)
        except KeyError as exc:
            caught.append(exc)
            return PlainTextResponse("recovered", status_code=502)

    app = Triolette(routes=[Route("/", boom)], middleware=[Middleware(BaseHTTPMiddleware, dispatch=catcher)])
    with TestClient(app) as client:
        response = client.get("/")
    assert response.status_code == 502
    assert response.text == "recovered"
    assert [type(exc) for exc in caught] == [KeyError]


async def test_an_app_that_answers_nothing_is_an_error() -> None:
    async def silent(scope: Any, receive: Any, send: Any) -> None:
        return

    async def passthrough(request: Request, call_next: Any) -> Response:
        return await call_next(request)

    app = BaseHTTPMiddleware(silent, dispatch=passthrough)
    with pytest.raises(RuntimeError, match=r"^No response returned\.$"):
        await call(app, "/")


async def test_body_streams_through_chunk_by_chunk(autojump_clock: trio.abc.Clock) -> None:
    async def ticks(request: Request) -> Response:
        async def numbers() -> AsyncIterator[bytes]:
            for n in range(3):
                yield b"%d" % n
                await trio.sleep(1)

        return StreamingResponse(numbers())

    app = Triolette(routes=[Route("/", ticks)], middleware=[Middleware(AddHeader)])
    answer = await call(app, "/")
    assert answer.chunks == [b"0", b"1", b"2"]
    assert answer.headers["x-middleware"] == "yes"
    assert trio.current_time() == 3


async def test_disconnect_mid_stream_cancels_middleware_and_endpoint(autojump_clock: trio.abc.Clock) -> None:
    cancelled: list[str] = []
    gone = trio.Event()
    sent: list[bytes] = []

    async def forever(request: Request) -> Response:
        async def numbers() -> AsyncIterator[bytes]:
            try:
                n = 0
                while True:
                    yield b"%d" % n
                    n += 1
                    await trio.sleep(1)
            except trio.Cancelled:
                cancelled.append("endpoint")
                raise

        return StreamingResponse(numbers())

    async def watching(request: Request, call_next: Any) -> Response:
        response = await call_next(request)

        async def relay() -> AsyncIterator[bytes]:
            try:
                async for chunk in response.body_iterator:
                    yield chunk
            except trio.Cancelled:
                cancelled.append("middleware")
                raise

        return StreamingResponse(relay())

    app = Triolette(routes=[Route("/", forever)], middleware=[Middleware(BaseHTTPMiddleware, dispatch=watching)])
    messages = [{"type": "http.request", "body": b"", "more_body": False}]

    async def receive() -> dict[str, Any]:
        if messages:
            return messages.pop()
        await gone.wait()
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.body" and message.get("body"):
            sent.append(message["body"])
            if len(sent) == 3:
                gone.set()

    with trio.fail_after(60):
        await app(http_scope("/"), receive, send)
    assert sent == [b"0", b"1", b"2"]
    assert sorted(cancelled) == ["endpoint", "middleware"]
    assert trio.current_time() == 2


async def test_background_task_of_the_downstream_response_runs_to_the_end(autojump_clock: trio.abc.Clock) -> None:
    done: list[float] = []

    async def later() -> None:
        await trio.sleep(5)
        done.append(trio.current_time())

    async def endpoint(request: Request) -> Response:
        return PlainTextResponse("ok", background=BackgroundTask(later))

    app = Triolette(routes=[Route("/", endpoint)], middleware=[Middleware(AddHeader)])
    answer = await call(app, "/")
    assert answer.text == "ok"
    assert done == [5.0]


async def test_a_discarded_downstream_response_stops_its_app(autojump_clock: trio.abc.Clock) -> None:
    stopped: list[str] = []

    async def endless(request: Request) -> Response:
        async def numbers() -> AsyncIterator[bytes]:
            try:
                while True:
                    yield b"x"
                    await trio.sleep(1)
            finally:
                stopped.append("closed")

        return StreamingResponse(numbers())

    async def replace(request: Request, call_next: Any) -> Response:
        await call_next(request)
        return PlainTextResponse("replaced")

    app = Triolette(routes=[Route("/", endless)], middleware=[Middleware(BaseHTTPMiddleware, dispatch=replace)])
    with trio.fail_after(10):
        answer = await call(app, "/")
    assert answer.text == "replaced"
    assert stopped == ["closed"]


async def test_websocket_and_lifespan_pass_straight_through() -> None:
    seen = []

    async def inner(scope: Any, receive: Any, send: Any) -> None:
        seen.append(scope["type"])

    middleware = AddHeader(inner)
    await middleware({"type": "lifespan"}, None, None)  # type: ignore[arg-type]
    assert seen == ["lifespan"]


async def test_used_without_an_app_it_opens_its_own_request_scope() -> None:
    middleware = AddHeader(PlainTextResponse("bare"))
    answer = await call(middleware, "/")
    assert answer.text == "bare"
    assert answer.headers["x-middleware"] == "yes"


async def test_downstream_error_after_the_response_started_reaches_the_server() -> None:
    async def breaks(request: Request) -> Response:
        async def numbers() -> AsyncIterator[bytes]:
            yield b"first"
            await trio.testing.wait_all_tasks_blocked()
            raise ValueError("midway")

        return StreamingResponse(numbers())

    app = Triolette(routes=[Route("/", breaks)], middleware=[Middleware(AddHeader)])
    with pytest.raises(ValueError, match="midway"):
        await call(app, "/")
