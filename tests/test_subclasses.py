"""Subclasses that set Starlette's public attributes themselves and never call our ``__init__``.

FastAPI writes ``FastAPI(Starlette)`` and ``APIRoute(Route)`` this way: their ``__init__``
assigns ``debug``, ``state``, ``router``, ``exception_handlers``, ``user_middleware`` and
``middleware_stack`` (or ``path``, ``endpoint``, ``name``, ``methods``, ``path_regex``,
``path_format``, ``param_convertors`` and ``app``), then builds its own middleware stack.
The small classes here do the same, without FastAPI, so that each piece of private state
triolette needs is shown to be derived or defaulted.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import pytest
import trio
import trio.testing

from tests.conftest import call, http_scope
from triolette._scope import DEFAULT_MAX_BODY_SIZE
from triolette.applications import Triolette
from triolette.datastructures import State
from triolette.middleware import Middleware
from triolette.middleware.errors import ServerErrorMiddleware
from triolette.middleware.exceptions import ExceptionMiddleware
from triolette.requests import Request
from triolette.responses import JSONResponse, PlainTextResponse, Response
from triolette.routing import (
    BaseRoute,
    Mount,
    Route,
    Router,
    WebSocketRoute,
    compile_path,
    get_name,
    request_response,
    websocket_session,
)
from triolette.testclient import AsyncTestClient, TestClient
from triolette.types import ASGIApp, Lifespan, Message, Receive, Scope, Send
from triolette.websockets import WebSocket


class PlainApp(Triolette):
    """An application class written as FastAPI writes ``FastAPI``: no call to ``Triolette.__init__``."""

    def __init__(
        self,
        routes: list[BaseRoute] | None = None,
        *,
        debug: bool = False,
        lifespan: Lifespan[Any] | None = None,
        exception_handlers: dict[Any, Any] | None = None,
        middleware: list[Middleware] | None = None,
    ) -> None:
        self.debug = debug
        self.state = State()
        self.router = Router(routes, lifespan=lifespan)
        self.exception_handlers = {} if exception_handlers is None else dict(exception_handlers)
        self.user_middleware = [] if middleware is None else list(middleware)
        self.middleware_stack = None


class OwnStackApp(PlainApp):
    """As FastAPI: its own ``build_middleware_stack``, with a layer of its own inside the others."""

    def build_middleware_stack(self) -> ASGIApp:
        middleware = [
            Middleware(ServerErrorMiddleware, debug=self.debug),
            *self.user_middleware,
            Middleware(ExceptionMiddleware, handlers=self.exception_handlers, debug=self.debug),
            Middleware(Tagging),
        ]
        app: ASGIApp = self.router
        for cls, args, kwargs in reversed(middleware):
            app = cls(app, *args, **kwargs)
        return app


class Tagging:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        scope["tagged"] = True
        await self.app(scope, receive, send)


class PlainRoute(Route):
    """A route class written as FastAPI writes ``APIRoute``: public attributes only."""

    def __init__(self, path: str, endpoint: Callable[..., Any], *, methods: list[str] | None = None) -> None:
        self.path = path
        self.endpoint = endpoint
        self.name = get_name(endpoint)
        self.include_in_schema = True
        self.path_regex, self.path_format, self.param_convertors = compile_path(path)
        self.methods = {method.upper() for method in methods or ["GET"]}
        self.app = request_response(endpoint)


class PlainWebSocketRoute(WebSocketRoute):
    """FastAPI's ``APIWebSocketRoute`` shape: public attributes only."""

    def __init__(self, path: str, endpoint: Callable[..., Any]) -> None:
        self.path = path
        self.endpoint = endpoint
        self.name = get_name(endpoint)
        self.path_regex, self.path_format, self.param_convertors = compile_path(path)
        self.app = websocket_session(endpoint)


class PlainMount(Mount):
    """A mount with Starlette's public attributes only (``path``, ``app``, ``name``, the compiled path)."""

    def __init__(self, path: str, app: ASGIApp, name: str | None = None) -> None:
        self.path = path.rstrip("/")
        self.app = app
        self.name = name
        self.path_regex, self.path_format, self.param_convertors = compile_path(self.path + "/{path:path}")


class PlainRouter(Router):
    """A router with Starlette's public attributes only."""

    def __init__(self, routes: list[BaseRoute]) -> None:
        self.routes = routes
        self.redirect_slashes = True
        self.default = self.not_found
        self.lifespan_context = _quiet_lifespan
        self.middleware_stack = self.app


@asynccontextmanager
async def _quiet_lifespan(app: Any) -> AsyncIterator[None]:
    yield


async def hello(request: Request) -> Response:
    return PlainTextResponse(f"hello {request.scope.get('tagged', False)}")


async def test_app_subclass_that_skips_init_serves_requests() -> None:
    app = PlainApp([Route("/", hello)])
    answer = await call(app, "/")
    assert (answer.status, answer.text) == (200, "hello False")
    missing = await call(app, "/nowhere")
    assert (missing.status, missing.text) == (404, "Not Found")


async def test_app_subclass_that_skips_init_uses_its_own_middleware_stack() -> None:
    app = OwnStackApp([Route("/", hello)])
    answer = await call(app, "/")
    assert (answer.status, answer.text) == (200, "hello True")


async def test_app_subclass_that_skips_init_runs_exception_handlers() -> None:
    async def boom(request: Request) -> Response:
        raise KeyError("gone")

    async def on_key_error(request: Request, exc: Exception) -> Response:
        return JSONResponse({"missing": str(exc)}, status_code=404)

    app = OwnStackApp([Route("/", boom)], exception_handlers={KeyError: on_key_error})
    answer = await call(app, "/")
    assert (answer.status, answer.body) == (404, b'{"missing":"\'gone\'"}')


async def test_app_subclass_that_skips_init_gets_the_default_body_limit() -> None:
    async def echo(request: Request) -> Response:
        return PlainTextResponse(str(len(await request.body())))

    app = PlainApp([Route("/", echo, methods=["POST"])])
    assert app.max_body_size == DEFAULT_MAX_BODY_SIZE
    fits = await call(app, "/", "POST", b"x" * 10)
    assert (fits.status, fits.text) == (200, "10")
    too_long = [(b"content-length", str(DEFAULT_MAX_BODY_SIZE + 1).encode())]
    refused = await call(app, "/", "POST", b"x", headers=too_long)
    assert refused.status == 413


async def test_app_subclass_that_sets_max_body_size_none_gets_the_default() -> None:
    app = PlainApp([Route("/", hello, methods=["POST"])])
    app.max_body_size = None  # FastAPI assigns its argument as given: None by default
    too_long = [(b"content-length", str(DEFAULT_MAX_BODY_SIZE + 1).encode())]
    refused = await call(app, "/", "POST", b"x", headers=too_long)
    assert refused.status == 413


async def test_app_subclass_that_sets_max_body_size_keeps_it() -> None:
    async def echo(request: Request) -> Response:
        return PlainTextResponse(str(len(await request.body())))

    app = PlainApp([Route("/", echo, methods=["POST"])])
    app.max_body_size = 4
    assert (await call(app, "/", "POST", b"x" * 4)).text == "4"
    assert (await call(app, "/", "POST", b"x" * 5)).status == 413


async def test_app_subclass_that_skips_init_cancels_the_endpoint_when_the_client_leaves() -> None:
    finished: list[str] = []
    gone = trio.Event()

    async def slow(request: Request) -> Response:
        try:
            await trio.sleep_forever()
        finally:
            finished.append("cleanup")

    async def receive() -> dict[str, Any]:
        await gone.wait()
        return {"type": "http.disconnect"}

    async def send(message: Message) -> None:  # pragma: no cover - nothing is sent
        raise AssertionError(message)

    app = PlainApp([Route("/", slow)])
    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(app, http_scope("/"), receive, send)
            await trio.testing.wait_all_tasks_blocked()
            assert app.in_flight == 1
            gone.set()
    assert finished == ["cleanup"]
    assert app.in_flight == 0


async def test_app_subclass_with_its_own_stack_answers_a_failed_request_task_with_500() -> None:
    async def spawns(request: Request) -> Response:
        async def fail() -> None:
            raise RuntimeError("background part failed")

        request.nursery.start_soon(fail)
        await trio.sleep_forever()

    class NoErrorLayerApp(PlainApp):
        def build_middleware_stack(self) -> ASGIApp:
            return ExceptionMiddleware(self.router, handlers=self.exception_handlers)

    for app in (OwnStackApp([Route("/", spawns)]), NoErrorLayerApp([Route("/", spawns)])):
        client = AsyncTestClient(app, raise_server_exceptions=False)
        with trio.fail_after(5):
            response = await client.get("/")
        assert (response.status_code, response.text) == (500, "Internal Server Error")


async def test_app_subclass_that_skips_init_runs_lifespan_nursery_and_drain() -> None:
    events: list[str] = []

    @asynccontextmanager
    async def lifespan(app: Triolette) -> AsyncIterator[None]:
        events.append(f"nursery open: {app.nursery is not None}")
        yield
        events.append(f"draining: {app.draining.is_set()}")

    app = PlainApp([Route("/", hello)], lifespan=lifespan)
    with pytest.raises(RuntimeError, match=r"app\.nursery is open only while the lifespan runs"):
        _ = app.nursery
    with trio.fail_after(5):
        async with AsyncTestClient(app) as client:
            response = await client.get("/")
            assert response.text == "hello False"
    assert events == ["nursery open: True", "draining: True"]
    assert app.graceful_timeout == 30.0
    assert app.send_timeout == 30.0


def test_app_subclass_that_skips_init_works_with_the_sync_test_client() -> None:
    app = OwnStackApp([Route("/", hello)])
    with TestClient(app) as client:
        assert client.get("/").text == "hello True"


async def test_route_subclass_that_skips_init_inherits_the_app_timeout(autojump_clock: trio.abc.Clock) -> None:
    seen: list[float] = []

    async def deadline(request: Request) -> Response:
        seen.append(trio.current_effective_deadline() - trio.current_time())
        await trio.sleep(10)
        return PlainTextResponse("late")  # pragma: no cover - the deadline comes first

    app = Triolette(routes=[PlainRoute("/", deadline)], timeout=3)
    answer = await call(app, "/")
    assert answer.status == 503
    assert seen == [3]
    assert trio.current_time() == 3


async def test_route_subclass_that_skips_init_inherits_the_app_body_limit() -> None:
    async def echo(request: Request) -> Response:
        return PlainTextResponse(str(len(await request.body())))

    app = Triolette(routes=[PlainRoute("/", echo, methods=["POST"])], max_body_size=4)
    assert PlainRoute("/", echo).max_body_size is None
    assert (await call(app, "/", "POST", b"1234")).text == "4"
    assert (await call(app, "/", "POST", b"12345")).status == 413


async def test_route_subclass_that_skips_init_inherits_cancel_on_disconnect() -> None:
    finished: list[str] = []
    gone = trio.Event()

    async def runs_on(request: Request) -> Response:
        gone.set()
        await trio.testing.wait_all_tasks_blocked()
        finished.append("ran to the end")
        return PlainTextResponse("done")

    async def receive() -> dict[str, Any]:
        await gone.wait()
        return {"type": "http.disconnect"}

    async def send(message: Message) -> None:
        pass

    route = PlainRoute("/", runs_on)
    assert (route.timeout, route.cancel_on_disconnect) == (None, None)
    app = Triolette(routes=[route], cancel_on_disconnect=False)
    with trio.fail_after(5):
        await app(http_scope("/"), receive, send)
    assert finished == ["ran to the end"]


async def test_route_subclass_that_skips_init_answers_405_with_allow() -> None:
    app = Triolette(routes=[PlainRoute("/", hello, methods=["GET", "POST"])])
    answer = await call(app, "/", "DELETE")
    assert (answer.status, answer.headers["allow"]) == (405, "GET, POST")


async def test_route_subclass_that_sets_a_timeout_applies_it(autojump_clock: trio.abc.Clock) -> None:
    async def slow(request: Request) -> Response:
        await trio.sleep(10)
        return PlainTextResponse("late")  # pragma: no cover - the deadline comes first

    route = PlainRoute("/", slow)
    route.timeout = 2
    answer = await call(Triolette(routes=[route]), "/")
    assert answer.status == 503
    assert trio.current_time() == 2


async def test_route_subclass_on_its_own_answers_405_plainly() -> None:
    answer = await call(PlainRoute("/", hello, methods=["POST"]), "/", "GET")
    assert (answer.status, answer.text, answer.headers["allow"]) == (405, "Method Not Allowed", "POST")


def test_websocket_route_subclass_that_skips_init_echoes() -> None:
    async def echo(websocket: WebSocket) -> None:
        await websocket.accept()
        await websocket.send_text("echo " + await websocket.receive_text())
        await websocket.close()

    app = PlainApp([PlainWebSocketRoute("/ws", echo)])
    with TestClient(app) as client, client.websocket_connect("/ws") as ws:
        ws.send_text("hi")
        assert ws.receive_text() == "echo hi"


async def test_mount_subclass_that_skips_init_routes_and_builds_urls() -> None:
    inner = Router([Route("/hello", hello, name="hello")])
    mount = PlainMount("/inner", inner, name="inner")
    app = PlainApp([mount])
    assert mount.routes == inner.routes
    assert mount.max_body_size is None
    assert app.url_path_for("inner:hello") == "/inner/hello"
    answer = await call(app, "/inner/hello")
    assert (answer.status, answer.text) == (200, "hello False")


async def test_mount_subclass_that_skips_init_inherits_the_app_body_limit() -> None:
    async def echo(request: Request) -> Response:
        return PlainTextResponse(str(len(await request.body())))

    app = Triolette(routes=[PlainMount("/m", Router([Route("/", echo, methods=["POST"])]))], max_body_size=3)
    assert (await call(app, "/m/", "POST", b"123")).text == "3"
    assert (await call(app, "/m/", "POST", b"1234")).status == 413


async def test_router_subclass_that_skips_init_routes_and_answers_404() -> None:
    router = PlainRouter([Route("/", hello)])
    assert router.max_body_size is None
    app = PlainApp([Mount("/r", router)])
    assert (await call(app, "/r/")).text == "hello False"
    assert (await call(app, "/r/missing")).status == 404
    on_its_own = await call(router, "/")
    assert on_its_own.text == "hello False"


async def test_app_subclass_that_skips_init_takes_timeout_from_a_class_attribute(
    autojump_clock: trio.abc.Clock,
) -> None:
    class WithDeadline(PlainApp):
        timeout = 3

    async def slow(request: Request) -> Response:
        await trio.sleep(10)
        return PlainTextResponse("late")  # pragma: no cover - the deadline comes first

    answer = await call(WithDeadline([Route("/", slow)]), "/")
    assert (answer.status, answer.text) == (503, "Request timed out after 3 s")
    assert trio.current_time() == 3


async def test_app_subclass_that_skips_init_takes_cancel_on_disconnect_from_a_class_attribute() -> None:
    class Patient(PlainApp):
        cancel_on_disconnect = False

    finished: list[str] = []
    gone = trio.Event()

    async def runs_on(request: Request) -> Response:
        gone.set()
        await trio.testing.wait_all_tasks_blocked()
        finished.append("ran to the end")
        return PlainTextResponse("done")

    async def receive() -> dict[str, Any]:
        await gone.wait()
        return {"type": "http.disconnect"}

    async def send(message: Message) -> None:
        pass

    with trio.fail_after(5):
        await Patient([Route("/", runs_on)])(http_scope("/"), receive, send)
    assert finished == ["ran to the end"]


async def test_app_subclass_with_a_bad_timeout_class_attribute_says_so() -> None:
    class Broken(PlainApp):
        timeout = -1

    with pytest.raises(ValueError, match=r"timeout must be a positive number of seconds or None, got -1"):
        await call(Broken([Route("/", hello)]), "/")


def test_triolette_keeps_its_timeout_and_cancel_on_disconnect_as_attributes() -> None:
    app = Triolette(timeout=5, cancel_on_disconnect=False)
    assert (app.timeout, app.cancel_on_disconnect) == (5, False)
    assert (Triolette().timeout, Triolette().cancel_on_disconnect) == (None, True)


async def test_app_subclass_that_skips_init_takes_graceful_timeout_from_a_class_attribute(
    autojump_clock: trio.abc.Clock,
) -> None:
    class QuickDrain(PlainApp):
        graceful_timeout = 2

    ended: list[float] = []

    async def stuck(request: Request) -> Response:
        try:
            await trio.sleep_forever()
        finally:
            ended.append(trio.current_time())

    app = QuickDrain([Route("/", stuck)])

    async def receive() -> dict[str, Any]:
        await trio.sleep_forever()

    async def send(message: Message) -> None:
        pass

    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(app, http_scope("/"), receive, send)
            await trio.testing.wait_all_tasks_blocked()
            await app.drain()
    assert ended == [2]
    assert app.draining.is_set()
