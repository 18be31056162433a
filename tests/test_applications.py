"""The application: its routes, middleware stack, exception handlers, lifespan, nursery and drain."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
import trio
import trio.testing

from triolette._lifespan import run_lifespan
from triolette.applications import Triolette
from triolette.datastructures import State
from triolette.exceptions import HTTPException, WebSocketException
from triolette.middleware import Middleware
from triolette.requests import Request
from triolette.responses import JSONResponse, PlainTextResponse, Response
from triolette.routing import Host, Mount, Route, Router, WebSocketRoute
from triolette.testclient import TestClient
from triolette.types import ASGIApp, Message, Receive, Scope, Send
from triolette.websockets import WebSocket, WebSocketDisconnect


def homepage(request: Request) -> Response:
    return PlainTextResponse("Hello, world!")


async def ws_endpoint(websocket: WebSocket) -> None:
    await websocket.accept()
    await websocket.send_text("Hello, world!")
    await websocket.close()


def http_scope(path: str = "/") -> dict[str, Any]:
    return {"type": "http", "method": "GET", "path": path, "headers": [], "query_string": b"", "root_path": ""}


async def wait_forever() -> Message:
    await trio.sleep_forever()
    raise AssertionError("unreachable")  # pragma: no cover


class Collect:
    def __init__(self) -> None:
        self.messages: list[Message] = []

    async def __call__(self, message: Message) -> None:
        self.messages.append(message)

    @property
    def status(self) -> int:
        return int(self.messages[0]["status"])

    @property
    def body(self) -> bytes:
        return b"".join(m.get("body", b"") for m in self.messages if m["type"] == "http.response.body")


# --------------------------------------------------------------------------- routes and Starlette's API


def test_routes_url_path_for_mount_host_add_route() -> None:
    app = Triolette(routes=[Route("/", homepage, name="home")])
    app.add_route("/func", homepage, methods=["GET"], name="func")
    app.add_websocket_route("/ws", ws_endpoint, name="ws")
    app.mount("/sub", Router([Route("/", homepage, name="inner")]), name="sub")
    app.host("api.example.org", Router([Route("/", homepage, name="api-home")]), name="api")
    assert [type(route) for route in app.routes] == [Route, Route, WebSocketRoute, Mount, Host]
    assert app.routes is app.router.routes
    assert app.url_path_for("home") == "/"
    assert app.url_path_for("func") == "/func"
    assert app.url_path_for("sub:inner") == "/sub/"
    assert app.url_path_for("api:api-home").host == "api.example.org"

    client = TestClient(app)
    assert client.get("/func").text == "Hello, world!"
    assert client.get("/sub/").text == "Hello, world!"
    assert TestClient(app, base_url="http://api.example.org").get("/").text == "Hello, world!"
    with client.websocket_connect("/ws") as session:
        assert session.receive_text() == "Hello, world!"


def test_app_state_and_debug() -> None:
    app = Triolette(debug=True)
    assert isinstance(app.state, State)
    app.state.config = "x"
    assert app.state.config == "x"
    assert app.debug is True


def test_request_app_is_the_application() -> None:
    def which(request: Request) -> Response:
        return PlainTextResponse(type(request.app).__name__)

    assert TestClient(Triolette(routes=[Route("/", which)])).get("/").text == "Triolette"


def test_middleware_order_and_add_middleware() -> None:
    order: list[str] = []

    class Mark:
        def __init__(self, app: ASGIApp, name: str) -> None:
            self.app, self.name = app, name

        async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
            if scope["type"] == "http":
                order.append(self.name)
            await self.app(scope, receive, send)

    app = Triolette(routes=[Route("/", homepage)], middleware=[Middleware(Mark, "a"), Middleware(Mark, name="b")])
    app.add_middleware(Mark, "added")
    client = TestClient(app)
    assert client.get("/").status_code == 200
    assert order == ["added", "a", "b"]
    with pytest.raises(RuntimeError, match="Cannot add middleware after an application has started"):
        app.add_middleware(Mark, "late")


def test_build_middleware_stack_puts_errors_outside_and_exceptions_inside() -> None:
    from triolette.middleware.errors import ServerErrorMiddleware
    from triolette.middleware.exceptions import ExceptionMiddleware

    app = Triolette()
    stack = app.build_middleware_stack()
    assert isinstance(stack, ServerErrorMiddleware)
    assert isinstance(stack.app, ExceptionMiddleware)
    assert stack.app.app is app.router


# --------------------------------------------------------------------------- exception handlers


class TeapotError(Exception):
    pass


def raiser(exc: Exception) -> Any:
    def endpoint(request: Request) -> Response:
        raise exc

    return endpoint


def test_exception_handlers_by_class_and_status() -> None:
    async def teapot(request: Request, exc: Exception) -> Response:
        return PlainTextResponse(f"teapot: {exc}", status_code=418)

    def not_found(request: Request, exc: Exception) -> Response:  # a sync handler runs in a thread
        return JSONResponse({"missing": request.url.path}, status_code=404)

    async def server_error(request: Request, exc: Exception) -> Response:
        return PlainTextResponse("custom 500", status_code=500)

    app = Triolette(
        routes=[
            Route("/teapot", raiser(TeapotError("brewing"))),
            Route("/http", raiser(HTTPException(404, "no such thing"))),
            Route("/boom", raiser(RuntimeError("boom"))),
        ],
        exception_handlers={TeapotError: teapot, 404: not_found},
    )
    app.add_exception_handler(500, server_error)
    client = TestClient(app, raise_server_exceptions=False)
    assert (client.get("/teapot").status_code, client.get("/teapot").text) == (418, "teapot: brewing")
    assert client.get("/http").json() == {"missing": "/http"}
    assert client.get("/nowhere").json() == {"missing": "/nowhere"}
    response = client.get("/boom")
    assert (response.status_code, response.text) == (500, "custom 500")


def test_exception_class_handler_for_exception_is_the_500_handler() -> None:
    async def handle(request: Request, exc: Exception) -> Response:
        return PlainTextResponse(f"handled {type(exc).__name__}", status_code=500)

    app = Triolette(routes=[Route("/", raiser(KeyError("k")))], exception_handlers={Exception: handle})
    with pytest.raises(KeyError, match="k"):
        TestClient(app).get("/")  # the 500 is answered, then the error re-raised for the server log
    response = TestClient(app, raise_server_exceptions=False).get("/")
    assert (response.status_code, response.text) == (500, "handled KeyError")


def test_unhandled_error_is_a_plain_500() -> None:
    client = TestClient(Triolette(routes=[Route("/", raiser(RuntimeError("x")))]), raise_server_exceptions=False)
    response = client.get("/")
    assert (response.status_code, response.text) == (500, "Internal Server Error")


def test_websocket_exception_closes_with_its_code() -> None:
    async def refuse(websocket: WebSocket) -> None:
        raise WebSocketException(code=1008, reason="policy")

    client = TestClient(Triolette(routes=[WebSocketRoute("/ws", refuse)]))
    with pytest.raises(WebSocketDisconnect) as info, client.websocket_connect("/ws"):
        pass  # pragma: no cover - the connect fails
    assert (info.value.code, info.value.reason) == (1008, "policy")


# --------------------------------------------------------------------------- failures in the request nursery


def test_a_failing_child_task_keeps_its_class_for_the_handler() -> None:
    async def endpoint(request: Request) -> Response:
        async def child() -> None:
            raise TeapotError("from a child")

        request.nursery.start_soon(child)
        await trio.sleep_forever()
        raise AssertionError("unreachable")  # pragma: no cover

    async def teapot(request: Request, exc: Exception) -> Response:
        return PlainTextResponse(f"{type(exc).__name__}: {exc}", status_code=418)

    app = Triolette(routes=[Route("/", endpoint)], exception_handlers={TeapotError: teapot})
    response = TestClient(app).get("/")
    assert (response.status_code, response.text) == (418, "TeapotError: from a child")


def test_an_unhandled_child_failure_is_a_500_and_reraised() -> None:
    async def endpoint(request: Request) -> Response:
        async def child() -> None:
            raise LookupError("child failed")

        request.nursery.start_soon(child)
        await trio.sleep_forever()
        raise AssertionError("unreachable")  # pragma: no cover

    app = Triolette(routes=[Route("/", endpoint)])
    with pytest.raises(LookupError, match="child failed"):
        TestClient(app).get("/")
    response = TestClient(app, raise_server_exceptions=False).get("/")
    assert (response.status_code, response.text) == (500, "Internal Server Error")


def test_several_child_failures_are_an_exception_group_500() -> None:
    async def endpoint(request: Request) -> Response:
        async def child(n: int) -> None:
            await trio.lowlevel.checkpoint()
            raise ValueError(n)

        request.nursery.start_soon(child, 1)
        request.nursery.start_soon(child, 2)
        await trio.sleep_forever()
        raise AssertionError("unreachable")  # pragma: no cover

    response = TestClient(Triolette(routes=[Route("/", endpoint)]), raise_server_exceptions=False).get("/")
    assert response.status_code == 500


# --------------------------------------------------------------------------- lifespan and app.nursery


def test_lifespan_state_reaches_requests_and_nursery_is_open() -> None:
    events: list[str] = []

    async def service(*, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        try:
            await trio.sleep_forever()
        finally:
            events.append("service stopped")

    @asynccontextmanager
    async def lifespan(app: Triolette) -> AsyncIterator[dict[str, Any]]:
        await app.nursery.start(service)
        events.append("startup")
        yield {"counter": [0]}
        events.append("shutdown")

    def count(request: Request) -> Response:
        request.state.counter[0] += 1
        return PlainTextResponse(str(request.state.counter[0]))

    app = Triolette(routes=[Route("/", count)], lifespan=lifespan)
    with pytest.raises(RuntimeError, match=r"app\.nursery is open only while the lifespan runs"):
        _ = app.nursery
    with TestClient(app) as client:
        assert events == ["startup"]
        assert client.get("/").text == "1"
        assert client.get("/").text == "2"
    assert events == ["startup", "shutdown", "service stopped"]
    with pytest.raises(RuntimeError, match=r"app\.nursery is open only while the lifespan runs"):
        _ = app.nursery


def test_lifespan_startup_failure_is_raised() -> None:
    @asynccontextmanager
    async def lifespan(app: Triolette) -> AsyncIterator[None]:
        raise OSError("no database")
        yield  # type: ignore[unreachable]  # pragma: no cover - the yield only makes this a generator

    with pytest.raises(OSError, match="no database"), TestClient(Triolette(lifespan=lifespan)):
        pass  # pragma: no cover - startup fails


def test_lifespan_shutdown_failure_is_raised() -> None:
    @asynccontextmanager
    async def lifespan(app: Triolette) -> AsyncIterator[None]:
        yield
        raise OSError("could not flush")

    with pytest.raises(OSError, match="could not flush"), TestClient(Triolette(lifespan=lifespan)):
        pass


def test_lifespan_can_run_twice() -> None:
    runs: list[bool] = []

    @asynccontextmanager
    async def lifespan(app: Triolette) -> AsyncIterator[None]:
        runs.append(app.draining.is_set())
        yield

    app = Triolette(lifespan=lifespan)
    for _ in range(2):
        with TestClient(app):
            pass
    assert runs == [False, False]  # draining is reset for the second run


async def test_lifespan_messages_and_state_without_server_support() -> None:
    @asynccontextmanager
    async def stateful(app: Any) -> AsyncIterator[dict[str, int]]:
        yield {"a": 1}

    sent = Collect()
    inbox = [{"type": "lifespan.startup"}, {"type": "lifespan.shutdown"}]

    async def receive() -> Message:
        await trio.lowlevel.checkpoint()
        return inbox.pop(0)

    with pytest.raises(RuntimeError, match='The server does not support "state" in the lifespan scope'):
        await run_lifespan(stateful, {"type": "lifespan"}, receive, sent)
    assert sent.messages[0]["type"] == "lifespan.startup.failed"
    assert "does not support" in sent.messages[0]["message"]


async def test_lifespan_shutdown_complete_is_sent_after_the_nursery_closes() -> None:
    events: list[str] = []

    async def service() -> None:
        try:
            await trio.sleep_forever()
        finally:
            events.append("service done")

    @asynccontextmanager
    async def lifespan(app: Triolette) -> AsyncIterator[None]:
        app.nursery.start_soon(service)
        yield

    inbox = [{"type": "lifespan.startup"}, {"type": "lifespan.shutdown"}]

    async def receive() -> Message:
        await trio.testing.wait_all_tasks_blocked()
        return inbox.pop(0)

    async def send(message: Message) -> None:
        events.append(message["type"])

    scope = {"type": "lifespan", "state": {}}
    with trio.fail_after(5):
        await Triolette(lifespan=lifespan)(scope, receive, send)
    assert events == ["lifespan.startup.complete", "service done", "lifespan.shutdown.complete"]


# --------------------------------------------------------------------------- the trio check, drain, timeouts


def test_called_from_asyncio_says_how_to_serve() -> None:
    app = Triolette()

    async def call() -> None:
        await app(http_scope(), wait_forever, Collect())

    with pytest.raises(RuntimeError, match="triolette runs under trio only, but was called from asyncio"):
        asyncio.run(call())


async def test_drain_waits_for_in_flight_requests(autojump_clock: trio.abc.Clock) -> None:
    finished: list[float] = []

    async def slow(request: Request) -> Response:
        await trio.sleep(3)
        finished.append(trio.current_time())
        return PlainTextResponse("done")

    app = Triolette(routes=[Route("/", slow)], graceful_timeout=10)
    sent = Collect()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(app, http_scope(), wait_forever, sent)
        await trio.testing.wait_all_tasks_blocked()
        assert app.in_flight == 1
        await app.drain()
        assert app.draining.is_set()
    assert finished == [3]
    assert app.in_flight == 0
    assert sent.body == b"done"


async def test_drain_cancels_what_outlives_the_grace_period(autojump_clock: trio.abc.Clock) -> None:
    reasons: list[str] = []

    async def stuck(request: Request) -> Response:
        try:
            await trio.sleep_forever()
        except trio.Cancelled:
            reasons.append("cancelled")
            raise
        raise AssertionError("unreachable")  # pragma: no cover

    app = Triolette(routes=[Route("/", stuck)])
    async with trio.open_nursery() as nursery:
        nursery.start_soon(app, http_scope(), wait_forever, Collect())
        await trio.testing.wait_all_tasks_blocked()
        await app.drain(graceful_timeout=2)
    assert reasons == ["cancelled"]
    assert trio.current_time() == 2
    assert app.in_flight == 0


async def test_app_timeout_answers_503(autojump_clock: trio.abc.Clock) -> None:
    async def slow(request: Request) -> Response:
        await trio.sleep(10)
        return PlainTextResponse("late")  # pragma: no cover - cancelled

    sent = Collect()
    with trio.fail_after(60):
        await Triolette(routes=[Route("/", slow)], timeout=1.5)(http_scope(), wait_forever, sent)
    assert sent.status == 503
    assert sent.body == b"Request timed out after 1.5 s"
    assert trio.current_time() == 1.5


def test_option_validation() -> None:
    with pytest.raises(ValueError, match=r"graceful_timeout must be a positive number of seconds or None, got 0"):
        Triolette(graceful_timeout=0)
    with pytest.raises(ValueError, match="max_body_size must be a non-negative number of bytes or None, got -1"):
        Triolette(max_body_size=-1)


def test_app_max_body_size() -> None:
    async def echo(request: Request) -> Response:
        return PlainTextResponse(str(len(await request.body())))

    client = TestClient(Triolette(routes=[Route("/", echo, methods=["POST"])], max_body_size=5))
    assert client.post("/", content=b"12345").text == "5"
    response = client.post("/", content=b"123456")
    assert (response.status_code, response.text) == (413, "Content Too Large")


def test_mounted_triolette_shares_the_outer_request_scope() -> None:
    def inner_endpoint(request: Request) -> Response:
        return PlainTextResponse(request.url.path + " " + request.scope["root_path"])

    inner = Triolette(routes=[Route("/page", inner_endpoint)])
    outer = Triolette(routes=[Mount("/inner", app=inner)])
    assert TestClient(outer).get("/inner/page").text == "/inner/page /inner"


async def test_drain_refuses_a_negative_timeout() -> None:
    with pytest.raises(ValueError, match=r"graceful_timeout must be a number of seconds >= 0, got -1"):
        await Triolette().drain(graceful_timeout=-1)


def test_drain_sets_mounted_apps_draining() -> None:
    inner = Triolette()
    outer = Triolette(routes=[Mount("/inner", app=inner)])
    trio.run(outer.drain)
    assert outer.draining.is_set()
    assert inner.draining.is_set()


def test_lifespan_from_asyncio_reports_startup_failed() -> None:
    sent: list[Message] = []

    async def receive() -> Message:
        return {"type": "lifespan.startup"}

    async def send(message: Message) -> None:
        sent.append(message)

    with pytest.raises(RuntimeError, match="triolette runs under trio only, but was called from asyncio"):
        asyncio.run(Triolette()({"type": "lifespan"}, receive, send))
    assert sent[0]["type"] == "lifespan.startup.failed"
    assert "hypercorn --worker-class trio" in sent[0]["message"]


def test_the_refusal_under_asyncio_is_logged_first_and_once(caplog: pytest.LogCaptureFixture) -> None:
    app = Triolette()

    async def call() -> None:
        await app(http_scope(), wait_forever, Collect())

    for _ in range(2):
        with pytest.raises(RuntimeError, match="triolette runs under trio only"):
            asyncio.run(call())
    records = [record for record in caplog.records if record.name == "triolette"]
    assert [(record.levelname, record.getMessage()) for record in records] == [
        (
            "ERROR",
            "triolette runs under trio only, but was called from asyncio. "
            "Serve it with 'python -m triolette module:app' or 'hypercorn --worker-class trio module:app'.",
        )
    ]


def test_called_outside_any_event_loop() -> None:
    coroutine = Triolette()(http_scope(), wait_forever, Collect())
    with pytest.raises(RuntimeError, match="called from outside any event loop"):
        coroutine.send(None)
    coroutine.close()


def test_a_child_failure_whose_handler_returns_nothing() -> None:
    handled: list[str] = []

    async def endpoint(request: Request) -> Response:
        async def child() -> None:
            raise TeapotError("quiet")

        request.nursery.start_soon(child)
        await trio.sleep_forever()
        raise AssertionError("unreachable")  # pragma: no cover

    async def swallow(request: Request, exc: Exception) -> None:  # returns no response: the point of the test
        handled.append(str(exc))

    app = Triolette(routes=[Route("/", endpoint)], exception_handlers={TeapotError: swallow})  # type: ignore[dict-item]
    response = TestClient(app, raise_server_exceptions=False).get("/")
    assert handled == ["quiet"]
    assert response.status_code == 500  # nothing was sent: the test client reports a 500


def test_middleware_declaration_repr_and_unpacking() -> None:
    from triolette.middleware import Middleware
    from triolette.middleware.gzip import GZipMiddleware

    declared = Middleware(GZipMiddleware, 10, minimum_size=500)  # type: ignore[misc]  # never built: only unpacked
    cls, args, kwargs = declared
    assert (cls, args, kwargs) == (GZipMiddleware, (10,), {"minimum_size": 500})
    assert repr(declared) == "Middleware(GZipMiddleware, 10, minimum_size=500)"
