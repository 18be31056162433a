"""Authentication: run a backend on each connection and expose ``request.user`` and ``request.auth``."""

from __future__ import annotations

from collections.abc import Callable

from triolette.authentication import (
    AuthCredentials,
    AuthenticationBackend,
    AuthenticationError,
    UnauthenticatedUser,
)
from triolette.requests import HTTPConnection
from triolette.responses import PlainTextResponse, Response
from triolette.types import ASGIApp, Receive, Scope, Send

__all__ = ["AuthenticationMiddleware"]


class AuthenticationMiddleware:
    """Authenticates each HTTP and WebSocket connection with ``backend`` before the app sees it.

    The backend's ``(AuthCredentials, BaseUser)`` becomes ``scope["auth"]`` and
    ``scope["user"]`` (``request.auth``, ``request.user``); a backend that returns ``None``
    gives no scopes and an ``UnauthenticatedUser``. A backend that raises
    ``AuthenticationError`` ends the request: HTTP gets ``on_error(conn, exc)`` (by default a
    400 with the error's text), a WebSocket is closed with code 1000.
    """

    def __init__(
        self,
        app: ASGIApp,
        backend: AuthenticationBackend,
        on_error: Callable[[HTTPConnection, AuthenticationError], Response] | None = None,
    ) -> None:
        self.app = app
        self.backend = backend
        self.on_error: Callable[[HTTPConnection, AuthenticationError], Response] = (
            on_error if on_error is not None else self.default_on_error
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return

        conn = HTTPConnection(scope)
        try:
            result = await self.backend.authenticate(conn)
        except AuthenticationError as exc:
            if scope["type"] == "websocket":
                await send({"type": "websocket.close", "code": 1000, "reason": ""})
            else:
                await self.on_error(conn, exc)(scope, receive, send)
            return

        scope["auth"], scope["user"] = result if result is not None else (AuthCredentials(), UnauthenticatedUser())
        await self.app(scope, receive, send)

    @staticmethod
    def default_on_error(conn: HTTPConnection, exc: Exception) -> Response:
        """The default answer to a failed authentication: 400 with the error's message."""
        return PlainTextResponse(str(exc), status_code=400)
