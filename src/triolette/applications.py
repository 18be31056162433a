"""Triolette: the application, Starlette's ``Starlette`` on trio's structured concurrency.

Each HTTP request or WebSocket connection runs in a RequestScope opened here, at the
outermost layer, so that every middleware runs inside the request's task group. The
lifespan runs inside the application's own nursery (``app.nursery``), and shutdown
drains in-flight requests before it leaves the lifespan context (DESIGN.md invariant 7).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from functools import cached_property
from typing import Any, ParamSpec, TypeVar

import sniffio
import trio

from triolette._exception_handler import call_handler, lookup_handler
from triolette._lifespan import registered, walk_apps
from triolette._scope import (
    DEFAULT_BODY_TIMEOUT,
    DEFAULT_MAX_BODY_SIZE,
    DEFAULT_SEND_TIMEOUT,
    DEFAULT_WS_MAX_MESSAGE_SIZE,
    SCOPE_KEY,
    RequestScope,
    RequestSettings,
    check_timeout,
)
from triolette._utils import raise_single
from triolette.datastructures import State, URLPath
from triolette.middleware import Middleware, _MiddlewareFactory
from triolette.middleware.errors import ServerErrorMiddleware
from triolette.middleware.exceptions import ExceptionMiddleware
from triolette.requests import Request
from triolette.responses import Response
from triolette.routing import BaseRoute, Router
from triolette.types import ASGIApp, ExceptionHandler, Lifespan, Message, Receive, Scope, Send

__all__ = ["Triolette"]

AppType = TypeVar("AppType", bound="Triolette")
P = ParamSpec("P")

DEFAULT_GRACEFUL_TIMEOUT = 30.0
# After the graceful timeout, requests are cancelled; this is how long drain() then waits for them.
CANCELLED_GRACE = 5.0


class Triolette:
    """A trio-native ASGI application with Starlette's API.

    Arguments beyond Starlette's (all keyword-only):

    - ``max_body_size``: the request body limit in bytes (default 16 MiB); over it, 413.
    - ``timeout``: seconds before a request's deadline (default none); expired before the
      response started, 503; after, the response is abandoned.
    - ``cancel_on_disconnect``: cancel the handler when the client goes away (default True).
    - ``body_timeout``: seconds to receive the whole request body (default 60); over it, 408.
    - ``send_timeout``: seconds a client may take to accept one send (default 30); over it,
      the connection is closed.
    - ``graceful_timeout``: seconds in-flight requests get to finish at shutdown (default 30).
    - ``websocket_max_message_size``: bytes in one incoming WebSocket message (default 16 MiB);
      over it, the connection is closed with 1009.

    A subclass may set Starlette's public attributes itself instead of calling ``__init__``
    (FastAPI does): the private state below has class-level defaults or is derived from those
    attributes on first use. Such a subclass sets ``timeout``, ``cancel_on_disconnect`` and
    ``max_body_size`` as class attributes (read at the first request); the other settings
    take their defaults.
    """

    debug: bool = False
    max_body_size: int | None = DEFAULT_MAX_BODY_SIZE
    timeout: float | None = None
    cancel_on_disconnect: bool = True
    graceful_timeout: float = DEFAULT_GRACEFUL_TIMEOUT
    middleware_stack: ASGIApp | None = None
    _error_middleware: ServerErrorMiddleware | None = None
    _nursery: trio.Nursery | None = None
    _idle: trio.Event | None = None
    _on_trio = False
    _refusal_logged = False  # the asyncio refusal has been logged (once per app)

    def __init__(
        self: AppType,
        debug: bool = False,
        routes: Sequence[BaseRoute] | None = None,
        middleware: Sequence[Middleware] | None = None,
        exception_handlers: Mapping[Any, ExceptionHandler] | None = None,
        lifespan: Lifespan[AppType] | None = None,
        *,
        max_body_size: int | None = None,
        timeout: float | None = None,
        cancel_on_disconnect: bool = True,
        body_timeout: float | None = DEFAULT_BODY_TIMEOUT,
        send_timeout: float | None = DEFAULT_SEND_TIMEOUT,
        graceful_timeout: float = DEFAULT_GRACEFUL_TIMEOUT,
        websocket_max_message_size: int | None = DEFAULT_WS_MAX_MESSAGE_SIZE,
    ) -> None:
        self.debug = debug
        self.state = State()
        self.router = Router(routes, lifespan=lifespan)
        self.exception_handlers: dict[Any, ExceptionHandler] = (
            {} if exception_handlers is None else dict(exception_handlers)
        )
        self.user_middleware = [] if middleware is None else list(middleware)
        self.middleware_stack = None
        self.max_body_size = DEFAULT_MAX_BODY_SIZE if max_body_size is None else max_body_size
        self.timeout = timeout
        self.cancel_on_disconnect = cancel_on_disconnect
        self.graceful_timeout = check_timeout("graceful_timeout", graceful_timeout) or DEFAULT_GRACEFUL_TIMEOUT
        self._settings = RequestSettings(
            cancel_on_disconnect=cancel_on_disconnect,
            timeout=timeout,
            max_body_size=self.max_body_size,
            body_timeout=body_timeout,
            send_timeout=send_timeout,
            ws_max_message_size=websocket_max_message_size,
            late_error_handler=self._answer_late_error,
        )
        self.draining = trio.Event()
        self._in_flight = set()

    # State derived on first use when a subclass did not call __init__ (which sets each one).

    @cached_property
    def _settings(self) -> RequestSettings:
        return RequestSettings(
            cancel_on_disconnect=self.cancel_on_disconnect,
            timeout=check_timeout("timeout", self.timeout),
            max_body_size=DEFAULT_MAX_BODY_SIZE if self.max_body_size is None else self.max_body_size,
            body_timeout=DEFAULT_BODY_TIMEOUT,
            send_timeout=DEFAULT_SEND_TIMEOUT,
            ws_max_message_size=DEFAULT_WS_MAX_MESSAGE_SIZE,
            late_error_handler=self._answer_late_error,
        )

    @cached_property
    def draining(self) -> trio.Event:
        """Set when the application starts to drain (shutdown): SSE and WebSocket loops may say goodbye."""
        return trio.Event()

    @cached_property
    def _in_flight(self) -> set[RequestScope]:
        return set()

    @property
    def send_timeout(self) -> float | None:
        """Seconds a client may take to accept one send (``send_timeout=``), or None."""
        return self._settings.send_timeout

    # -- Starlette's API ------------------------------------------------------------------

    def build_middleware_stack(self) -> ASGIApp:
        debug = self.debug
        error_handler = None
        exception_handlers: dict[Any, ExceptionHandler] = {}
        for key, value in self.exception_handlers.items():
            if key in (500, Exception):
                error_handler = value
            else:
                exception_handlers[key] = value
        middleware = [
            Middleware(ServerErrorMiddleware, handler=error_handler, debug=debug),
            *self.user_middleware,
            Middleware(ExceptionMiddleware, handlers=exception_handlers, debug=debug),
        ]
        app: ASGIApp = self.router
        for cls, args, kwargs in reversed(middleware):
            app = cls(app, *args, **kwargs)
        assert isinstance(app, ServerErrorMiddleware)
        self._error_middleware = app
        return app

    @property
    def routes(self) -> list[BaseRoute]:
        return self.router.routes

    def url_path_for(self, name: str, /, **path_params: Any) -> URLPath:
        return self.router.url_path_for(name, **path_params)

    def mount(self, path: str, app: ASGIApp, name: str | None = None) -> None:
        self.router.mount(path, app=app, name=name)

    def host(self, host: str, app: ASGIApp, name: str | None = None) -> None:
        self.router.host(host, app=app, name=name)

    def add_middleware(self, middleware_class: _MiddlewareFactory[P], *args: P.args, **kwargs: P.kwargs) -> None:
        if self.middleware_stack is not None:
            raise RuntimeError("Cannot add middleware after an application has started")
        self.user_middleware.insert(0, Middleware(middleware_class, *args, **kwargs))

    def add_exception_handler(self, exc_class_or_status_code: int | type[Exception], handler: ExceptionHandler) -> None:
        self.exception_handlers[exc_class_or_status_code] = handler

    def add_route(
        self,
        path: str,
        route: Callable[[Request], Awaitable[Response] | Response],
        methods: list[str] | None = None,
        name: str | None = None,
        include_in_schema: bool = True,
    ) -> None:
        self.router.add_route(path, route, methods=methods, name=name, include_in_schema=include_in_schema)

    def add_websocket_route(self, path: str, route: Callable[[Any], Awaitable[None]], name: str | None = None) -> None:
        self.router.add_websocket_route(path, route, name=name)

    # -- what only triolette has -------------------------------------------------------------

    @property
    def nursery(self) -> trio.Nursery:
        """The application's task group, open from lifespan startup until after shutdown.

        Start services here at startup (``await app.nursery.start(service)``); they are
        cancelled, with their ``finally`` blocks run, when the lifespan ends.
        """
        if self._nursery is None:
            raise RuntimeError(
                "app.nursery is open only while the lifespan runs: serve the app with "
                "'python -m triolette module:app', or use 'with TestClient(app)' / "
                "'async with AsyncTestClient(app)' in tests."
            )
        return self._nursery

    @property
    def in_flight(self) -> int:
        """How many requests and WebSocket connections are being handled now."""
        return len(self._in_flight)

    async def drain(self, graceful_timeout: float | None = None) -> None:
        """Shut down gracefully: set ``app.draining`` (here and in the Triolette apps mounted
        in this one), give in-flight requests (and their background tasks) ``graceful_timeout``
        seconds to finish (default: the app's ``graceful_timeout``), then cancel the rest with
        reason ``"server shutting down"`` and wait for them to end.

        Safe to call more than once and from several tasks at a time; a call with a shorter
        timeout cancels sooner. ``serve()`` calls it on SIGTERM/SIGINT, and the lifespan calls
        it when ``lifespan.shutdown`` arrives, before leaving the lifespan context.
        """
        timeout = self.graceful_timeout if graceful_timeout is None else graceful_timeout
        if isinstance(timeout, bool) or not isinstance(timeout, int | float) or not timeout >= 0:
            raise ValueError(f"graceful_timeout must be a number of seconds >= 0, got {timeout!r}")
        self.draining.set()
        for app in walk_apps(self.router):
            if isinstance(app, Triolette):
                app.draining.set()
        with trio.move_on_after(timeout):
            await self._wait_idle()
        if self._in_flight:
            for rs in list(self._in_flight):
                rs.cancel(reason="server shutting down")
            # Cancelled requests end at their next checkpoint; a shielded section may take a moment.
            with trio.move_on_after(CANCELLED_GRACE):
                await self._wait_idle()

    async def _wait_idle(self) -> None:
        """Wait until no request is in flight. Any number of tasks may wait at once."""
        while self._in_flight:
            idle = self._idle
            if idle is None or idle.is_set():
                idle = self._idle = trio.Event()
            await idle.wait()

    # -- the ASGI entry point -------------------------------------------------------------

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        scope["app"] = self
        stack = self.middleware_stack
        if stack is None:
            stack = self.middleware_stack = self.build_middleware_stack()
        if not self._on_trio:
            await self._check_trio(scope, receive, send)
        kind = scope["type"]
        if kind == "lifespan":
            await self._run_lifespan(stack, scope, receive, send)
        elif SCOPE_KEY in scope:  # mounted inside another triolette app: its RequestScope serves both
            await stack(scope, receive, send)
        else:
            rs = RequestScope(scope, receive, send, self._settings)
            in_flight = self._in_flight
            in_flight.add(rs)
            try:
                await rs.run(stack)
            finally:
                in_flight.discard(rs)
                if self._idle is not None and not in_flight:
                    self._idle.set()

    async def _check_trio(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Fail the first ASGI call made outside trio, saying how to run the app right.

        A lifespan call first reports the error to the server as ``lifespan.startup.failed``
        (so that a server on another event loop stops with the message instead of carrying
        on without a lifespan), then raises it.
        """
        try:
            library: str | None = sniffio.current_async_library()
        except sniffio.AsyncLibraryNotFoundError:
            library = None
        if library == "trio":
            self._on_trio = True
            return
        error = RuntimeError(
            f"triolette runs under trio only, but was called from {library or 'outside any event loop'}. "
            "Serve it with 'python -m triolette module:app' or 'hypercorn --worker-class trio module:app'."
        )
        # The server's log shows the error as the last line of a long traceback, if at all: say
        # it first, in one line of our own (once per app).
        if not self._refusal_logged:
            self._refusal_logged = True
            logging.getLogger("triolette").error("%s", error)
        if scope["type"] == "lifespan":
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.failed", "message": str(error)})
        raise error

    async def _run_lifespan(self, stack: ASGIApp, scope: Scope, receive: Receive, send: Send) -> None:
        held: list[Message] = []

        async def lifespan_receive() -> Message:
            message = await receive()
            if message["type"] == "lifespan.shutdown":
                await self.drain()
            return message

        async def lifespan_send(message: Message) -> None:
            if message["type"] == "lifespan.shutdown.complete":
                held.append(message)  # sent once the app nursery has closed
                return
            await send(message)

        if self.draining.is_set():
            self.draining = trio.Event()
        with registered(self):
            try:
                async with trio.open_nursery() as nursery:
                    self._nursery = nursery
                    try:
                        await stack(scope, lifespan_receive, lifespan_send)
                    finally:
                        nursery.cancel_scope.cancel(reason="server shutting down")
                        self._nursery = None
            except BaseExceptionGroup as group:
                raise_single(group)  # the lifespan's own error, with its class
        for message in held:
            await send(message)

    def _error_responder(self) -> ServerErrorMiddleware:
        """The ServerErrorMiddleware that answers errors: the one the middleware stack starts with,
        or, for a subclass that built its own stack without one at the top, one of our own."""
        if self._error_middleware is None:
            stack = self.middleware_stack
            if not isinstance(stack, ServerErrorMiddleware):
                stack = ServerErrorMiddleware(self.router, debug=self.debug)
            self._error_middleware = stack
        return self._error_middleware

    async def _answer_late_error(self, rs: RequestScope, exc: BaseException) -> bool:
        """Answer an exception that surfaced from the request nursery (a child task failed)
        before any response started. Returns True when a handler dealt with it."""
        scope = rs.asgi_scope
        if scope["type"] != "http":
            return False
        handler = lookup_handler(scope, exc)
        request = Request(scope, rs.receive, rs.send)
        if handler is not None and isinstance(exc, Exception):
            response = await call_handler(handler, request, exc)
            if response is not None:
                await response(scope, rs.receive, rs.send)
            return True
        response = await self._error_responder().build_response(request, exc)
        if response is not None:
            await response(scope, rs.receive, rs.send)
        return False
