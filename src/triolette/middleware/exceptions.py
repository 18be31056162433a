"""ExceptionMiddleware: answers HTTPException, WebSocketException and registered exceptions."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from triolette._exception_handler import HANDLERS_KEY, ExceptionHandlers, StatusHandlers, wrap_app_handling_exceptions
from triolette._utils import ConfigurationError
from triolette.exceptions import HTTPException, WebSocketException
from triolette.requests import Request
from triolette.responses import PlainTextResponse, Response
from triolette.types import ASGIApp, ExceptionHandler, Receive, Scope, Send

__all__ = ["ExceptionMiddleware"]


class ExceptionMiddleware:
    """The innermost middleware: exception handlers keyed by class or by status code."""

    def __init__(
        self, app: ASGIApp, handlers: Mapping[Any, ExceptionHandler] | None = None, debug: bool = False
    ) -> None:
        self.app = app
        self.debug = debug
        self._status_handlers: StatusHandlers = {}
        self._exception_handlers: ExceptionHandlers = {
            HTTPException: self.http_exception,
            WebSocketException: self.websocket_exception,
        }
        if handlers is not None:
            for key, value in handlers.items():
                self.add_exception_handler(key, value)
        self._handlers = (self._exception_handlers, self._status_handlers)

    def add_exception_handler(self, exc_class_or_status_code: int | type[Exception], handler: ExceptionHandler) -> None:
        if isinstance(exc_class_or_status_code, int):
            self._status_handlers[exc_class_or_status_code] = handler
        elif isinstance(exc_class_or_status_code, type) and issubclass(exc_class_or_status_code, Exception):
            self._exception_handlers[exc_class_or_status_code] = handler
        else:
            raise ConfigurationError(
                "Exception handlers are keyed by an Exception subclass or a status code, "
                f"got {exc_class_or_status_code!r}"
            )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind != "http" and kind != "websocket":
            await self.app(scope, receive, send)
            return
        scope[HANDLERS_KEY] = self._handlers
        await wrap_app_handling_exceptions(self.app, None)(scope, receive, send)  # conn built if needed

    async def http_exception(self, request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        if exc.status_code in {204, 304}:
            return Response(status_code=exc.status_code, headers=exc.headers)
        return PlainTextResponse(exc.detail, status_code=exc.status_code, headers=exc.headers)

    async def websocket_exception(self, websocket: Any, exc: Exception) -> None:
        assert isinstance(exc, WebSocketException)
        await websocket.close(code=exc.code, reason=exc.reason)
