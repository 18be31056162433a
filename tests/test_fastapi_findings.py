"""Differences from Starlette that FastAPI 0.165's own test suite found, each shown here with a
plain triolette app (FastAPI is not needed to see them): exception groups that leave the app
as themselves, body limits read by a middleware or loosened further in, what the watcher's
read of ``receive()`` raises, and background work that a cancel scope around the call reaches.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest
import trio

from tests.conftest import call, http_scope
from triolette.applications import Triolette
from triolette.background import BackgroundTask
from triolette.exceptions import HTTPException
from triolette.middleware import Middleware, body_limit
from triolette.middleware.base import BaseHTTPMiddleware, RequestResponseEndpoint
from triolette.middleware.body_limit import RequestBodyLimitMiddleware
from triolette.requests import Request
from triolette.responses import PlainTextResponse, Response
from triolette.routing import Route, WebSocketRoute
from triolette.types import ASGIApp, Message, Receive, Scope, Send
from triolette.websockets import WebSocket


class Server:
    """The server side of one raw ASGI call: ``first`` is handed out once, then ``receive``
    waits (a client that says nothing more); ``send`` records what the app sends."""

    def __init__(self, first: Message) -> None:
        self.first: Message | None = first
        self.sent: list[Message] = []

    async def receive(self) -> Message:
        if self.first is None:
            await trio.sleep_forever()
        message, self.first = self.first, None
        assert message is not None
        return message

    async def send(self, message: Message) -> None:
        self.sent.append(message)


# -- exception groups keep their class and identity (invariant 5) --------------------------------


class Problems(ExceptionGroup[Exception]):
    """An app's own exception group class; without a ``derive`` of its own, a copy made by
    ``split()`` is a plain ``ExceptionGroup``."""


async def test_an_exception_group_raised_by_an_endpoint_leaves_the_app_as_itself() -> None:
    problems = Problems("two problems", [ValueError("a"), KeyError("b")])

    async def endpoint(request: Request) -> Response:
        raise problems

    with pytest.raises(Problems) as info:
        await call(Triolette(routes=[Route("/", endpoint)]))
    assert info.value is problems


async def test_an_exception_group_raised_by_a_websocket_handler_leaves_the_app_as_itself() -> None:
    problems = Problems("one problem", [ValueError("a")])

    async def handler(websocket: WebSocket) -> None:
        await websocket.accept()
        raise problems

    scope: Scope = {**http_scope(), "type": "websocket", "scheme": "ws", "subprotocols": []}
    server = Server({"type": "websocket.connect"})
    with pytest.raises(Problems) as info:
        await Triolette(routes=[WebSocketRoute("/", handler)])(scope, server.receive, server.send)
    assert info.value is problems
    assert [m["type"] for m in server.sent] == ["websocket.accept", "websocket.close"]
    assert server.sent[-1]["code"] == 1011


# -- what receive() raises while the watcher reads belongs to the app's next read ------------------


class HarnessSaysNo(BaseException):
    """Like pytest.fail()'s exception: a BaseException, not an Exception."""


def refusing_receive(calls: list[str]) -> Receive:
    async def receive() -> Message:
        calls.append("receive")
        raise HarnessSaysNo("this request has no body to read")

    return receive


async def test_an_app_that_never_reads_never_sees_what_receive_raised_for_the_watcher(
    autojump_clock: trio.abc.Clock,
) -> None:
    async def endpoint(request: Request) -> Response:
        await trio.sleep(1)  # the watcher starts meanwhile and reads
        return PlainTextResponse("fine")

    calls: list[str] = []
    server = Server({"type": "http.request"})
    await Triolette(routes=[Route("/", endpoint)])(http_scope(), refusing_receive(calls), server.send)
    assert calls == ["receive"]
    assert (server.sent[0]["status"], server.sent[1]["body"]) == (200, b"fine")


async def test_an_app_that_reads_gets_what_receive_raised_for_the_watcher(autojump_clock: trio.abc.Clock) -> None:
    async def endpoint(request: Request) -> Response:
        await trio.sleep(1)
        await request.body()
        raise AssertionError("not reached")  # pragma: no cover

    calls: list[str] = []
    server = Server({"type": "http.request"})
    with pytest.raises(HarnessSaysNo, match="no body to read"):
        await Triolette(routes=[Route("/", endpoint)])(http_scope(), refusing_receive(calls), server.send)
    assert calls == ["receive"]


async def test_system_exit_from_receive_for_the_watcher_is_not_kept_for_the_app(autojump_clock: trio.abc.Clock) -> None:
    async def endpoint(request: Request) -> Response:
        await trio.sleep(1)
        return PlainTextResponse("never sent")  # pragma: no cover

    async def receive() -> Message:
        raise SystemExit(3)

    server = Server({"type": "http.request"})
    with pytest.raises(SystemExit):
        await Triolette(routes=[Route("/", endpoint)])(http_scope(), receive, server.send)


async def test_a_base_exception_group_from_receive_for_the_watcher_is_not_kept_for_the_app(
    autojump_clock: trio.abc.Clock,
) -> None:
    async def endpoint(request: Request) -> Response:
        await trio.sleep(1)
        return PlainTextResponse("never sent")  # pragma: no cover

    stop = BaseExceptionGroup("the server stops", [SystemExit(3)])  # it might have held Cancelled

    async def receive() -> Message:
        raise stop

    server = Server({"type": "http.request"})
    with pytest.raises(BaseExceptionGroup) as info:
        await Triolette(routes=[Route("/", endpoint)])(http_scope(), receive, server.send)
    assert info.value.message == stop.message
    assert info.value.exceptions == stop.exceptions  # the very SystemExit


# -- body limits -------------------------------------------------------------------------------------


class ReadsTheBody(BaseHTTPMiddleware):
    async def dispatch(self, request: Request, call_next: RequestResponseEndpoint) -> Response:
        await request.body()
        return await call_next(request)


async def length(request: Request) -> Response:
    return PlainTextResponse(str(len(await request.body())))


@pytest.mark.parametrize("content_length", [True, False], ids=["content-length", "chunked"])
async def test_a_middleware_reading_past_the_limit_of_body_limit_middleware_gets_413(content_length: bool) -> None:
    app = Triolette(
        routes=[Route("/", length, methods=["POST"])],
        middleware=[Middleware(RequestBodyLimitMiddleware, max_body_size=5), Middleware(ReadsTheBody)],
    )
    headers = [(b"content-length", b"6")] if content_length else []
    answer = await call(app, method="POST", body=b"123456", headers=headers)
    assert (answer.status, answer.text) == (413, "Content Too Large")


async def test_a_middleware_reading_past_the_apps_max_body_size_gets_413() -> None:
    routes = [Route("/", length, methods=["POST"])]
    app = Triolette(routes=routes, middleware=[Middleware(ReadsTheBody)], max_body_size=5)
    answer = await call(app, method="POST", body=b"123456")
    assert (answer.status, answer.text) == (413, "Content Too Large")
    assert (await call(app, method="POST", body=b"12345")).text == "5"


class StartsThenReads:
    """A middleware that starts its response, then reads the body (where no handler answers)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        while (await receive()).get("more_body", False):
            pass
        raise AssertionError("not reached")  # pragma: no cover


@pytest.mark.parametrize("limit", ["middleware", "app"])
async def test_a_body_read_past_the_limit_after_the_response_started_is_an_error(limit: str) -> None:
    routes = [Route("/", length, methods=["POST"])]
    if limit == "middleware":
        middleware = [Middleware(RequestBodyLimitMiddleware, max_body_size=5), Middleware(StartsThenReads)]
        app = Triolette(routes=routes, middleware=middleware)
    else:
        app = Triolette(routes=routes, middleware=[Middleware(StartsThenReads)], max_body_size=5)
    with pytest.raises(HTTPException) as info:  # too late for a 413: the error goes on to the server
        await call(app, method="POST", body=b"123456")
    assert info.value.status_code == 413


@pytest.mark.parametrize("inner", ["route", "middleware"])
async def test_an_inner_looser_limit_admits_a_content_length_over_the_outer_one(inner: str) -> None:
    middleware = [Middleware(RequestBodyLimitMiddleware, max_body_size=1000)]
    if inner == "middleware":
        middleware.append(Middleware(RequestBodyLimitMiddleware, max_body_size=10_000))
        route = Route("/", length, methods=["POST"])
    else:
        route = Route("/", length, methods=["POST"], max_body_size=10_000)
    app = Triolette(routes=[route], middleware=middleware)
    answer = await call(app, method="POST", body=b"x" * 2000, headers=[(b"content-length", b"2000")])
    assert (answer.status, answer.text) == (200, "2000")
    answer = await call(app, method="POST", body=b"x" * 10_001, headers=[(b"content-length", b"10001")])
    assert answer.status == 413


async def test_a_content_length_over_the_limit_is_413_when_the_watcher_read_the_whole_body(
    autojump_clock: trio.abc.Clock,
) -> None:
    async def never_reads(request: Request) -> Response:
        await trio.sleep(1)  # the watcher reads the whole (short) body meanwhile, for nobody
        return PlainTextResponse("answered without reading")

    app = Triolette(routes=[Route("/", never_reads, methods=["POST"], max_body_size=0)])
    answer = await call(app, method="POST", body=b"x", headers=[(b"content-length", b"1")])
    assert (answer.status, answer.text) == (413, "Content Too Large")


def test_body_limit_keeps_starlettes_private_names_for_its_two_exceptions() -> None:
    # FastAPI looks these up with getattr to tell the limit's own errors from the app's.
    too_large = body_limit._RequestBodyTooLarge()
    assert isinstance(too_large, HTTPException)
    assert (too_large.status_code, too_large.detail) == (413, "Content Too Large")
    assert issubclass(body_limit._RequestBodyLimitResponseSent, Exception)


# -- background work -----------------------------------------------------------------------------


@pytest.mark.parametrize("request_timeout", [None, 30.0], ids=["no-deadline", "with-a-deadline"])
async def test_a_cancel_scope_around_the_asgi_call_cancels_a_background_task(
    request_timeout: float | None, autojump_clock: trio.abc.Clock
) -> None:
    events: list[str] = []
    around = trio.CancelScope()

    async def work() -> None:
        events.append("started")
        around.cancel(reason="the server shuts down")
        await trio.sleep(1)
        events.append("finished")  # pragma: no cover

    async def endpoint(request: Request) -> Response:
        return PlainTextResponse("ok", background=BackgroundTask(work))

    server = Server({"type": "http.request"})
    with around:
        app = Triolette(routes=[Route("/", endpoint)], timeout=request_timeout)
        await app(http_scope(), server.receive, server.send)
    assert around.cancelled_caught
    assert events == ["started"]
    assert server.sent[1]["body"] == b"ok"


async def test_without_a_deadline_an_outer_cancellation_reaches_background_work_at_its_next_checkpoint() -> None:
    events: list[str] = []

    async def endpoint(request: Request) -> Response:
        return PlainTextResponse("ok", background=BackgroundTask(work))

    app = Triolette(routes=[Route("/", endpoint)])
    for _ in range(30):  # trio shuffles the order of runnable tasks: try many orders
        around = trio.CancelScope()

        async def work(around: trio.CancelScope = around) -> None:
            around.cancel(reason="the server shuts down")
            await trio.lowlevel.checkpoint()
            events.append("ran on past its next checkpoint")  # pragma: no cover

        server = Server({"type": "http.request"})
        with around:
            await app(http_scope(), server.receive, server.send)
        assert around.cancelled_caught
    assert events == []


async def test_a_background_task_outlives_a_disconnect_while_a_middleware_holds_the_last_message(
    autojump_clock: trio.abc.Clock,
) -> None:
    events: list[str] = []
    gone = trio.Event()

    async def work() -> None:
        gone.set()
        await trio.sleep(1)  # the watcher reads the disconnect meanwhile
        events.append("finished")

    async def endpoint(request: Request) -> Response:
        return PlainTextResponse("ok", background=BackgroundTask(work))

    def holds_the_last_message(app: ASGIApp) -> ASGIApp:
        async def held(scope: Scope, receive: Receive, send: Send) -> None:
            last: list[Message] = []

            async def send_later(message: Message) -> None:
                if message["type"] == "http.response.body" and not message.get("more_body", False):
                    last.append(message)
                    return
                await send(message)

            await app(scope, receive, send_later)
            for message in last:
                await send(message)

        return held

    messages: list[Message] = [{"type": "http.request"}]

    async def receive() -> Message:
        if messages:
            return messages.pop()
        await gone.wait()
        return {"type": "http.disconnect"}

    server = Server({"type": "http.request"})
    app = Triolette(routes=[Route("/", endpoint)], middleware=[Middleware(holds_the_last_message)])
    await app(http_scope(), receive, server.send)
    assert events == ["finished"]
    assert trio.current_time() == 1


async def test_a_background_task_outlives_the_request_deadline(autojump_clock: trio.abc.Clock) -> None:
    events: list[float] = []

    async def work() -> None:
        await trio.sleep(5)
        events.append(trio.current_time())

    async def endpoint(request: Request) -> Response:
        return PlainTextResponse("ok", background=BackgroundTask(work))

    answer = await call(Triolette(routes=[Route("/", endpoint)], timeout=1))
    assert answer.text == "ok"
    assert events == [5]


# -- the same, through FastAPI itself ------------------------------------------------------------

# FastAPI's tutorial for body limits: the app's limit is small, its uploads router's larger.
# Run in a process of its own, since the starlette alias stays for the rest of a process.
FASTAPI_LIMITS = """
from triolette.compat import install_starlette_alias

install_starlette_alias()

from fastapi import APIRouter, FastAPI, Request
from fastapi.testclient import TestClient


async def size(request: Request) -> dict:
    return {"size": len(await request.body())}


app = FastAPI(max_body_size=1000)
uploads = APIRouter(prefix="/uploads", max_body_size=10_000)
uploads.post("/")(size)
app.include_router(uploads)
app.post("/items")(size)
client = TestClient(app)
assert client.post("/uploads/", content=b"x" * 2000).json() == {"size": 2000}
assert client.post("/uploads/", content=b"x" * 10_001).status_code == 413
assert client.post("/items", content=b"x" * 2000).status_code == 413

reading = FastAPI(max_body_size=5)
reading.post("/")(size)


@reading.middleware("http")
async def read_first(request: Request, call_next):
    await request.body()
    return await call_next(request)


response = TestClient(reading).post("/", content=iter([b"123", b"456"]))
assert (response.status_code, response.text) == (413, "Content Too Large"), response
print("ok")
"""


@pytest.mark.skipif(importlib.util.find_spec("fastapi") is None, reason="FastAPI is a dev dependency")
def test_a_fastapi_router_with_a_looser_limit_takes_uploads_over_the_apps_limit() -> None:
    src = Path(__file__).resolve().parents[1] / "src"
    result = subprocess.run(
        [sys.executable, "-c", FASTAPI_LIMITS],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONPATH": str(src)},
        check=False,
    )
    assert (result.returncode, result.stdout) == (0, "ok\n"), result.stderr


async def test_the_requests_own_tasks_keep_its_deadline_while_background_work_runs(
    autojump_clock: trio.abc.Clock,
) -> None:
    events: list[str] = []

    async def straggler() -> None:
        try:
            await trio.sleep(10)
        finally:
            events.append(f"straggler ended at {trio.current_time():g}")

    async def work() -> None:
        await trio.sleep(5)
        events.append(f"background finished at {trio.current_time():g}")

    async def endpoint(request: Request) -> Response:
        request.nursery.start_soon(straggler)
        return PlainTextResponse("ok", background=BackgroundTask(work))

    answer = await call(Triolette(routes=[Route("/", endpoint)], timeout=2))
    assert answer.text == "ok"
    assert events == ["straggler ended at 2", "background finished at 5"]
