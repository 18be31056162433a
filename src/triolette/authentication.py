"""Authentication: users, credentials, backends, and the ``requires`` decorator for endpoints.

``AuthenticationMiddleware`` (in ``triolette.middleware.authentication``) runs an
``AuthenticationBackend`` on each connection; endpoints then read ``request.user`` and
``request.auth`` and guard themselves with ``@requires("scope")``.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Sequence
from typing import Any, ParamSpec
from urllib.parse import urlencode

from triolette._utils import is_async_callable
from triolette.exceptions import HTTPException
from triolette.requests import HTTPConnection, Request
from triolette.responses import RedirectResponse
from triolette.websockets import WebSocket

__all__ = [
    "AuthCredentials",
    "AuthenticationBackend",
    "AuthenticationError",
    "BaseUser",
    "SimpleUser",
    "UnauthenticatedUser",
    "has_required_scope",
    "requires",
]

_P = ParamSpec("_P")


def has_required_scope(conn: HTTPConnection, scopes: Sequence[str]) -> bool:
    """Whether the connection's credentials (``conn.auth.scopes``) include every one of ``scopes``."""
    granted = conn.auth.scopes
    return all(scope in granted for scope in scopes)


def requires(
    scopes: str | Sequence[str],
    status_code: int = 403,
    redirect: str | None = None,
) -> Callable[[Callable[_P, Any]], Callable[_P, Any]]:
    """Guard an endpoint: it runs only for connections whose credentials hold all of ``scopes``.

    Otherwise an HTTP endpoint raises ``HTTPException(status_code)``, or, with ``redirect``
    (a route name), answers with a 303 to that route and ``?next=<this URL>``; a WebSocket
    endpoint closes the connection. The endpoint must have a parameter named ``request`` or
    ``websocket``; sync and async endpoints and methods are supported.
    """
    scope_list = [scopes] if isinstance(scopes, str) else list(scopes)

    def decorator(func: Callable[_P, Any]) -> Callable[_P, Any]:
        position, kind = _connection_parameter(func)

        def connection_of(args: tuple[Any, ...], kwargs: dict[str, Any], expected: type[Any]) -> Any:
            conn = kwargs[kind] if kind in kwargs else args[position] if position < len(args) else None
            if not isinstance(conn, expected):
                raise TypeError(
                    f"{func.__qualname__}() was called with {kind}={conn!r}; "
                    f"@requires needs its {kind!r} argument to be a {expected.__name__}"
                )
            return conn

        def denied(request: Request) -> RedirectResponse:
            if redirect is None:
                raise HTTPException(status_code=status_code)
            next_url = f"{request.url_for(redirect)}?{urlencode({'next': str(request.url)})}"
            return RedirectResponse(url=next_url, status_code=303)

        if kind == "websocket":

            @functools.wraps(func)
            async def websocket_wrapper(*args: _P.args, **kwargs: _P.kwargs) -> None:
                websocket: WebSocket = connection_of(args, kwargs, WebSocket)
                if has_required_scope(websocket, scope_list):
                    await func(*args, **kwargs)
                else:
                    await websocket.close()

            return websocket_wrapper

        if is_async_callable(func):

            @functools.wraps(func)
            async def async_wrapper(*args: _P.args, **kwargs: _P.kwargs) -> Any:
                request: Request = connection_of(args, kwargs, Request)
                if not has_required_scope(request, scope_list):
                    return denied(request)
                return await func(*args, **kwargs)

            return async_wrapper

        @functools.wraps(func)
        def sync_wrapper(*args: _P.args, **kwargs: _P.kwargs) -> Any:
            request: Request = connection_of(args, kwargs, Request)
            if not has_required_scope(request, scope_list):
                return denied(request)
            return func(*args, **kwargs)

        return sync_wrapper

    return decorator


def _connection_parameter(func: Callable[..., Any]) -> tuple[int, str]:
    for position, name in enumerate(inspect.signature(func).parameters):
        if name in ("request", "websocket"):
            return position, name
    raise TypeError(
        f'No "request" or "websocket" argument on function "{func.__qualname__}": @requires needs the '
        "endpoint's connection parameter named 'request' (HTTP) or 'websocket'."
    )


class AuthenticationError(Exception):
    """Raised by an ``AuthenticationBackend`` when credentials are present but invalid."""


class AuthenticationBackend:
    """Base class for backends: ``authenticate(conn)`` returns ``(AuthCredentials, BaseUser)`` or None."""

    async def authenticate(self, conn: HTTPConnection) -> tuple[AuthCredentials, BaseUser] | None:
        raise NotImplementedError()


class AuthCredentials:
    """What an authenticated connection may do: a list of scope names."""

    def __init__(self, scopes: Sequence[str] | None = None):
        self.scopes = [] if scopes is None else list(scopes)


class BaseUser:
    """Base class for ``request.user``."""

    @property
    def is_authenticated(self) -> bool:
        raise NotImplementedError()

    @property
    def display_name(self) -> str:
        raise NotImplementedError()

    @property
    def identity(self) -> str:
        raise NotImplementedError()


class SimpleUser(BaseUser):
    """An authenticated user known by a username."""

    def __init__(self, username: str) -> None:
        self.username = username

    @property
    def is_authenticated(self) -> bool:
        return True

    @property
    def display_name(self) -> str:
        return self.username

    @property
    def identity(self) -> str:
        return self.username


class UnauthenticatedUser(BaseUser):
    """``request.user`` when no backend authenticated the connection."""

    @property
    def is_authenticated(self) -> bool:
        return False

    @property
    def display_name(self) -> str:
        return ""

    @property
    def identity(self) -> str:
        return ""
