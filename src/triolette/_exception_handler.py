"""Finding and running the exception handler for an exception an endpoint raised."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from triolette._scope import INTERNAL_EXCEPTIONS, SCOPE_KEY, RequestScope, get_request_scope
from triolette._utils import is_async_callable
from triolette.concurrency import run_in_threadpool
from triolette.exceptions import HTTPException
from triolette.types import ASGIApp, ExceptionHandler, Message, Receive, Scope, Send

if TYPE_CHECKING:
    from triolette.requests import Request
    from triolette.websockets import WebSocket

ExceptionHandlers = dict[Any, ExceptionHandler]
StatusHandlers = dict[int, ExceptionHandler]

HANDLERS_KEY = "triolette.exception_handlers"


class ResponseWatch:
    """Tells whether an HTTP response has started through ``send``.

    When ``send`` is the RequestScope's own, the RequestScope already knows, and ``send``
    is used as it is; otherwise (a middleware wrapped it) the watch wraps it to see. Only
    an HTTP response counts: a WebSocket handler may close an accepted socket, so for a
    WebSocket ``send`` is never wrapped and ``started`` stays False.
    """

    __slots__ = ("_inner", "_rs", "_started", "_tracks")

    def __init__(self, scope: Scope, send: Send) -> None:
        self._started = False
        self._inner = send
        self._rs: RequestScope | None = None
        self._tracks = False
        if scope["type"] != "websocket":
            rs = get_request_scope(scope)
            if rs is not None and send is rs.asgi_send:
                self._rs = rs
            else:
                self._tracks = True

    @property
    def send(self) -> Send:
        """The ``send`` to pass on (a property: a stored bound method would be a reference cycle)."""
        return self._tracking_send if self._tracks else self._inner

    @property
    def started(self) -> bool:
        rs = self._rs
        return rs.response_started if rs is not None else self._started

    async def _tracking_send(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            self._started = True
        await self._inner(message)


def _http_started(scope: Scope, rs: RequestScope) -> bool:
    return scope["type"] != "websocket" and rs.response_started


def _connection(scope: Scope, receive: Receive, send: Send) -> Request | WebSocket:
    if scope["type"] == "websocket":
        from triolette.websockets import WebSocket

        return WebSocket(scope, receive, send)
    from triolette.requests import Request

    return Request(scope, receive, send)


def lookup_handler(scope: Scope, exc: BaseException) -> ExceptionHandler | None:
    """The handler registered for ``exc``: by status code for HTTPException, then by class."""
    handlers = scope.get(HANDLERS_KEY)
    if handlers is None or not isinstance(exc, Exception):
        return None
    exception_handlers, status_handlers = handlers
    if isinstance(exc, HTTPException):
        handler = status_handlers.get(exc.status_code)
        if handler is not None:
            return handler  # type: ignore[no-any-return]
    for cls in type(exc).__mro__:
        if cls in exception_handlers:
            return exception_handlers[cls]  # type: ignore[no-any-return]
    return None


async def call_handler(handler: ExceptionHandler, conn: Request | WebSocket, exc: Exception) -> Any:
    if is_async_callable(handler):
        return await handler(conn, exc)  # type: ignore[arg-type,misc]  # HTTP and WebSocket handlers share the alias
    return await run_in_threadpool(handler, conn, exc)  # type: ignore[arg-type]


def wrap_app_handling_exceptions(app: ASGIApp, conn: Request | WebSocket | None) -> ASGIApp:
    """Run ``app``; answer an exception it raises with the handler registered for it.

    ``conn`` is what the handler is given; None builds it from the scope, and only when an
    exception is handled (nothing to build on the way of a request that succeeds).
    """

    async def wrapped_app(scope: Scope, receive: Receive, send: Send) -> None:
        # The RequestScope knows whether its own send started a response: a watch is needed
        # only when a middleware wrapped send (nothing to build on the way of most requests).
        rs: RequestScope | None = scope.get(SCOPE_KEY)
        watch = None if rs is not None and (rs.is_websocket or send is rs.asgi_send) else ResponseWatch(scope, send)
        try:
            await app(scope, receive, send if watch is None else watch.send)
        except Exception as exc:
            if isinstance(exc, INTERNAL_EXCEPTIONS):
                raise
            handler = lookup_handler(scope, exc)
            if handler is None:
                raise
            # As in Starlette, only an HTTP response counts: a WebSocket handler may close an accepted socket.
            if watch.started if watch is not None else rs is not None and _http_started(scope, rs):
                raise RuntimeError("Caught handled exception, but response already started.") from exc
            response = await call_handler(handler, conn or _connection(scope, receive, send), exc)
            if response is not None:
                await response(scope, receive, send if watch is None else watch.send)
            exc.__traceback__ = None  # a reused exception instance would collect tracebacks

    return wrapped_app
