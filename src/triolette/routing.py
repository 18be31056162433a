"""Routes and routers: matching a request to the app that answers it.

Starlette's semantics (first full match in declaration order wins; a path match with the
wrong method is remembered for a 405; trailing-slash redirects) on a faster table: a
Router indexes its routes by the first segment of their path, so a request is tested
only against the routes that could match it, in their declared order, instead of
against every route's regex in turn.
"""

from __future__ import annotations

import enum
import functools
import inspect
import re
import warnings
from collections.abc import AsyncIterator, Awaitable, Callable, Collection, Iterator, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager, contextmanager
from typing import Any, TypeVar

from triolette._exception_handler import wrap_app_handling_exceptions
from triolette._host import parse_host
from triolette._lifespan import LIFESPAN_TREE_KEY, run_lifespan
from triolette._scope import SCOPE_KEY, check_size, check_timeout, get_request_scope, run_in_request_scope
from triolette._utils import ConfigurationError, get_route_path, is_async_callable
from triolette.concurrency import run_in_threadpool
from triolette.convertors import CONVERTOR_TYPES, Convertor
from triolette.datastructures import URL, Headers, URLPath
from triolette.exceptions import HTTPException, TrioletteDeprecationWarning
from triolette.middleware import Middleware
from triolette.requests import Request
from triolette.responses import PlainTextResponse, RedirectResponse, Response
from triolette.types import ASGIApp, Lifespan, Receive, Scope, Send

__all__ = [
    "BaseRoute",
    "Host",
    "Match",
    "Mount",
    "NoMatchFound",
    "Route",
    "Router",
    "WebSocketRoute",
    "compile_path",
    "get_name",
    "replace_params",
    "request_response",
    "websocket_session",
]

T = TypeVar("T")


class NoMatchFound(Exception):
    """``url_for`` / ``url_path_for`` found no route with that name and those parameters."""

    def __init__(self, name: str, path_params: dict[str, Any]) -> None:
        params = ", ".join(list(path_params.keys()))
        super().__init__(f'No route exists for name "{name}" and params "{params}".')


class Match(enum.Enum):
    NONE = 0
    PARTIAL = 1
    FULL = 2


def request_response(func: Callable[[Request], Awaitable[Response] | Response]) -> ASGIApp:
    """Turn ``func(request) -> response`` into an ASGI app; a sync ``func`` runs in a worker thread."""
    f: Callable[[Request], Awaitable[Response]] = (
        func  # type: ignore[assignment]  # is_async_callable() checked it returns an awaitable
        if is_async_callable(func)
        else functools.partial(run_in_threadpool, func)  # type: ignore[call-arg]
    )

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        request = Request(scope, receive, send)

        async def endpoint_app(scope: Scope, receive: Receive, send: Send) -> None:
            response = await f(request)
            await response(scope, receive, send)

        await wrap_app_handling_exceptions(endpoint_app, request)(scope, receive, send)

    return app


def websocket_session(func: Callable[[Any], Awaitable[None]]) -> ASGIApp:
    """Turn ``func(websocket)`` into an ASGI app."""
    from triolette.websockets import WebSocket

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        session = WebSocket(scope, receive=receive, send=send)

        async def session_app(scope: Scope, receive: Receive, send: Send) -> None:
            await func(session)

        await wrap_app_handling_exceptions(session_app, session)(scope, receive, send)

    return app


def get_name(endpoint: Callable[..., Any]) -> str:
    return getattr(endpoint, "__name__", endpoint.__class__.__name__)


def replace_params(
    path: str, param_convertors: dict[str, Convertor[Any]], path_params: dict[str, str]
) -> tuple[str, dict[str, str]]:
    """Fill ``{name}`` placeholders of ``path`` from ``path_params``; return the path and the unused params.

    One pass over ``path``: a value that itself looks like a placeholder (``"{id}"``) stays as it is.
    """
    if not path_params or "{" not in path:
        return path, path_params
    used: list[str] = []

    def fill(match: re.Match[str]) -> str:
        key = match[1]
        if key not in path_params:
            return match[0]
        used.append(key)
        return param_convertors[key].to_string(path_params[key])

    path = _PLACEHOLDER.sub(fill, path)
    for key in used:
        path_params.pop(key, None)
    return path, path_params


_PLACEHOLDER = re.compile(r"{([a-zA-Z_][a-zA-Z0-9_]*)}")


PARAM_REGEX = re.compile("{([a-zA-Z_][a-zA-Z0-9_]*)(:[a-zA-Z_][a-zA-Z0-9_]*)?}")


def compile_path(path: str) -> tuple[re.Pattern[str], str, dict[str, Convertor[Any]]]:
    """Compile a route path (``/users/{id:int}``) or host (``{sub}.example.org``).

    Returns the regex that matches it, the format string for ``url_path_for``
    (``/users/{id}``) and the convertor of each parameter.
    """
    is_host = not path.startswith("/")
    regex = "^"
    path_format = ""
    duplicated: set[str] = set()
    convertors: dict[str, Convertor[Any]] = {}
    idx = 0
    for match in PARAM_REGEX.finditer(path):
        name, convertor_type = match.groups("str")
        convertor_type = convertor_type.lstrip(":")
        if convertor_type not in CONVERTOR_TYPES:
            raise ConfigurationError(f"Unknown path convertor '{convertor_type}'")
        convertor = CONVERTOR_TYPES[convertor_type]
        regex += re.escape(path[idx : match.start()]) + f"(?P<{name}>{convertor.regex})"
        path_format += path[idx : match.start()] + "{" + name + "}"
        if name in convertors:
            duplicated.add(name)
        convertors[name] = convertor
        idx = match.end()
    if duplicated:
        names = ", ".join(sorted(duplicated))
        ending = "s" if len(duplicated) > 1 else ""
        raise ValueError(f"Duplicated param name{ending} {names} at path {path}")
    tail = path[idx:]
    if is_host and not tail.endswith("]"):
        tail = tail.rsplit(":", 1)[0]  # Host matching ignores the port
    regex += re.escape(tail) + "$"
    path_format += path[idx:]
    # Host names are case-insensitive (RFC 9110 section 4.2.3); a Host route matches the lowercased host.
    return re.compile(regex, re.IGNORECASE if is_host else 0), path_format, convertors


def _convert(convertors: dict[str, Convertor[Any]], matched: dict[str, str]) -> dict[str, Any] | None:
    """The matched parameters' values, or None when a convertor refuses its text with ValueError
    (an int past Python's 4300-digit limit, a float too large to be finite): then the path does
    not match the route, and the router goes on to the next one (a 404 when none matches)."""
    try:
        return {key: convertors[key].convert(value) for key, value in matched.items()}
    except ValueError:
        return None


def _first_url_path(routes: Sequence[BaseRoute], name: str, path_params: dict[str, Any]) -> URLPath | None:
    """The URL of the first of ``routes`` that knows ``name`` with these parameters, if any."""
    for route in routes:
        try:
            return route.url_path_for(name, **path_params)
        except NoMatchFound:
            continue
    return None


def _wrap_middleware(app: ASGIApp, middleware: Sequence[Middleware] | None) -> ASGIApp:
    if middleware is not None:
        for cls, args, kwargs in reversed(middleware):
            app = cls(app, *args, **kwargs)
    return app


class BaseRoute:
    """What a router asks of a route: does it match, what is its URL, handle the request."""

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        raise NotImplementedError()

    def url_path_for(self, name: str, /, **path_params: Any) -> URLPath:
        raise NotImplementedError()

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        raise NotImplementedError()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """A route used on its own as an ASGI app."""
        if scope["type"] in ("http", "websocket") and SCOPE_KEY not in scope:
            await run_in_request_scope(self, scope, receive, send)
            return
        match, child_scope = self.matches(scope)
        if match is Match.NONE:
            if scope["type"] == "http":
                await PlainTextResponse("Not Found", status_code=404)(scope, receive, send)
            elif scope["type"] == "websocket":
                from triolette.websockets import WebSocketClose

                await WebSocketClose()(scope, receive, send)
            return
        scope.update(child_scope)
        await self.handle(scope, receive, send)

    # For the route index: the literal first path segment, or None when the route may
    # match any path (parameters in the first segment, hosts, custom matches()).
    _index_key: str | None = None


def _first_segment_key(path: str) -> str | None:
    if not path.startswith("/"):
        return None
    first = path[1:].partition("/")[0]
    return None if "{" in first else first


def _unwrap_endpoint(endpoint: Any) -> Any:
    while isinstance(endpoint, functools.partial):
        endpoint = endpoint.func
    return endpoint


class Route(BaseRoute):
    """An HTTP endpoint at a path: a function of the request, or an ASGI app / HTTPEndpoint class.

    triolette adds ``timeout`` (seconds: a deadline for the request, in place of the
    app's) and ``cancel_on_disconnect`` (None: the app's setting).

    A subclass may set Starlette's public attributes itself instead of calling ``__init__``
    (FastAPI's ``APIRoute`` does): the per-route settings then default to None, the app's.
    """

    max_body_size: int | None = None
    timeout: float | None = None
    cancel_on_disconnect: bool | None = None
    # False when __init__ saw no per-route setting; a subclass that skipped __init__ is checked.
    _configures_scope = True

    def __init__(
        self,
        path: str,
        endpoint: Callable[..., Any],
        *,
        methods: Collection[str] | None = None,
        name: str | None = None,
        include_in_schema: bool = True,
        middleware: Sequence[Middleware] | None = None,
        max_body_size: int | None = None,
        timeout: float | None = None,
        cancel_on_disconnect: bool | None = None,
    ) -> None:
        if not path.startswith("/"):
            raise ConfigurationError("Routed paths must start with '/'")
        self.path = path
        self.endpoint = endpoint
        self.name = get_name(endpoint) if name is None else name
        self.include_in_schema = include_in_schema
        self.max_body_size = check_size("max_body_size", max_body_size)
        self.timeout = check_timeout("timeout", timeout)
        self.cancel_on_disconnect = cancel_on_disconnect

        handler = _unwrap_endpoint(endpoint)
        if inspect.isfunction(handler) or inspect.ismethod(handler):
            self.app = request_response(endpoint)
            if methods is None:
                methods = ["GET"]
        else:
            self.app = endpoint
        self.app = _wrap_middleware(self.app, middleware)

        if methods is None:
            self.methods: set[str] | None = None
        else:
            self.methods = {method.upper() for method in methods}
            if "GET" in self.methods:
                self.methods.add("HEAD")
        self.path_regex, self.path_format, self.param_convertors = compile_path(path)
        if type(self).matches is Route.matches:
            self._index_key = _first_segment_key(path)
        self._configures_scope = (
            max_body_size is not None or self.timeout is not None or cancel_on_disconnect is not None
        )

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        if scope["type"] == "http":
            match = self.path_regex.match(get_route_path(scope))
            if match:
                path_params = dict(scope.get("path_params", ()))
                if self.param_convertors:
                    converted = _convert(self.param_convertors, match.groupdict())
                    if converted is None:
                        return Match.NONE, {}
                    path_params.update(converted)
                child_scope = {"endpoint": self.endpoint, "path_params": path_params}
                if self.methods and scope["method"] not in self.methods:
                    return Match.PARTIAL, child_scope
                return Match.FULL, child_scope
        return Match.NONE, {}

    def url_path_for(self, name: str, /, **path_params: Any) -> URLPath:
        if name != self.name or set(path_params) != set(self.param_convertors):
            raise NoMatchFound(name, path_params)
        path, _ = replace_params(self.path_format, self.param_convertors, path_params)
        return URLPath(path=path, protocol="http")

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.methods and scope["method"] not in self.methods:
            headers = {"Allow": ", ".join(sorted(self.methods))}
            if "app" in scope:
                raise HTTPException(status_code=405, headers=headers)
            await PlainTextResponse("Method Not Allowed", status_code=405, headers=headers)(scope, receive, send)
            return
        if self._configures_scope:
            self._configure(scope)
        await self.app(scope, receive, send)

    def _configure(self, scope: Scope) -> None:
        rs = get_request_scope(scope)
        if rs is None:  # pragma: no cover - handle() always runs inside a RequestScope
            return
        if self.max_body_size is not None:
            rs.enter_body_limit(self.max_body_size)
        if self.cancel_on_disconnect is not None:
            rs.cancel_on_disconnect = self.cancel_on_disconnect
        if self.timeout is not None:
            rs.set_timeout(self.timeout)

    def __eq__(self, other: Any) -> bool:
        return (
            isinstance(other, Route)
            and self.path == other.path
            and self.endpoint == other.endpoint
            and self.methods == other.methods
        )

    __hash__ = object.__hash__

    def __repr__(self) -> str:
        methods = sorted(self.methods or [])
        return f"{type(self).__name__}(path={self.path!r}, name={self.name!r}, methods={methods!r})"


class WebSocketRoute(BaseRoute):
    """A WebSocket endpoint at a path: a function of the websocket, or an ASGI app / WebSocketEndpoint."""

    def __init__(
        self,
        path: str,
        endpoint: Callable[..., Any],
        *,
        name: str | None = None,
        middleware: Sequence[Middleware] | None = None,
    ) -> None:
        if not path.startswith("/"):
            raise ConfigurationError("Routed paths must start with '/'")
        self.path = path
        self.endpoint = endpoint
        self.name = get_name(endpoint) if name is None else name
        handler = _unwrap_endpoint(endpoint)
        if inspect.isfunction(handler) or inspect.ismethod(handler):
            self.app = websocket_session(endpoint)
        else:
            self.app = endpoint
        self.app = _wrap_middleware(self.app, middleware)
        self.path_regex, self.path_format, self.param_convertors = compile_path(path)
        if type(self).matches is WebSocketRoute.matches:
            self._index_key = _first_segment_key(path)

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        if scope["type"] == "websocket":
            match = self.path_regex.match(get_route_path(scope))
            if match:
                path_params = dict(scope.get("path_params", ()))
                if self.param_convertors:
                    converted = _convert(self.param_convertors, match.groupdict())
                    if converted is None:
                        return Match.NONE, {}
                    path_params.update(converted)
                return Match.FULL, {"endpoint": self.endpoint, "path_params": path_params}
        return Match.NONE, {}

    def url_path_for(self, name: str, /, **path_params: Any) -> URLPath:
        if name != self.name or set(path_params) != set(self.param_convertors):
            raise NoMatchFound(name, path_params)
        path, _ = replace_params(self.path_format, self.param_convertors, path_params)
        return URLPath(path=path, protocol="websocket")

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.app(scope, receive, send)

    def __eq__(self, other: Any) -> bool:
        return isinstance(other, WebSocketRoute) and self.path == other.path and self.endpoint == other.endpoint

    __hash__ = object.__hash__

    def __repr__(self) -> str:
        return f"{type(self).__name__}(path={self.path!r}, name={self.name!r})"


class Mount(BaseRoute):
    """A sub-application or a list of routes under a path prefix.

    A subclass may set Starlette's public attributes itself instead of calling ``__init__``;
    ``max_body_size`` then defaults to None (the enclosing limit).
    """

    max_body_size: int | None = None
    _base_app: ASGIApp | None = None  # the app or Router under the middleware; else ``app``

    def __init__(
        self,
        path: str,
        app: ASGIApp | None = None,
        routes: Sequence[BaseRoute] | None = None,
        name: str | None = None,
        *,
        middleware: Sequence[Middleware] | None = None,
        max_body_size: int | None = None,
    ) -> None:
        if path != "" and not path.startswith("/"):
            raise ConfigurationError("Routed paths must start with '/'")
        if app is None and routes is None:
            raise ConfigurationError("Either 'app=...', or 'routes=' must be specified")
        self.path = path.rstrip("/")
        self._base_app = app if app is not None else Router(routes=routes)
        self.app = _wrap_middleware(self._base_app, middleware)
        self.name = name
        self.max_body_size = check_size("max_body_size", max_body_size)
        self.path_regex, self.path_format, self.param_convertors = compile_path(self.path + "/{path:path}")
        if type(self).matches is Mount.matches:
            self._index_key = _first_segment_key(self.path) if self.path else None

    @property
    def routes(self) -> list[BaseRoute]:
        base = self.app if self._base_app is None else self._base_app
        return getattr(base, "routes", [])

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        if scope["type"] in ("http", "websocket"):
            root_path = scope.get("root_path", "")
            route_path = get_route_path(scope)
            match = self.path_regex.match(route_path)
            matched = _convert(self.param_convertors, match.groupdict()) if match else None
            if matched is not None:
                remaining_path = "/" + matched.pop("path")
                matched_path = route_path[: -len(remaining_path)]
                path_params = dict(scope.get("path_params", ()))
                path_params.update(matched)
                return Match.FULL, {
                    "path_params": path_params,
                    "app_root_path": scope.get("app_root_path", root_path),
                    "root_path": root_path + matched_path,
                    "endpoint": self.app,
                }
        return Match.NONE, {}

    def url_path_for(self, name: str, /, **path_params: Any) -> URLPath:
        if self.name is not None and name == self.name and "path" in path_params:
            path_params["path"] = path_params["path"].lstrip("/")
            path, remaining = replace_params(self.path_format, self.param_convertors, path_params)
            if not remaining:
                return URLPath(path=path)
        elif self.name is None or name.startswith(self.name + ":"):
            remaining_name = name if self.name is None else name[len(self.name) + 1 :]
            path_kwarg = path_params.get("path")
            path_params["path"] = ""
            prefix, remaining = replace_params(self.path_format, self.param_convertors, path_params)
            if path_kwarg is not None:
                remaining["path"] = path_kwarg
            url = _first_url_path(self.routes or [], remaining_name, remaining)
            if url is not None:
                return URLPath(path=prefix.rstrip("/") + str(url), protocol=url.protocol)
        raise NoMatchFound(name, path_params)

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.max_body_size is not None:
            rs = get_request_scope(scope)
            if rs is not None:
                rs.enter_body_limit(self.max_body_size)
        await self.app(scope, receive, send)

    def __eq__(self, other: Any) -> bool:
        return isinstance(other, Mount) and self.path == other.path and self.app == other.app

    __hash__ = object.__hash__

    def __repr__(self) -> str:
        name = self.name or ""
        return f"{type(self).__name__}(path={self.path!r}, name={name!r}, app={self.app!r})"


class Host(BaseRoute):
    """A sub-application chosen by the request's Host header (``{sub}.example.org``)."""

    def __init__(self, host: str, app: ASGIApp, name: str | None = None) -> None:
        if host.startswith("/"):
            raise ConfigurationError("Host must not start with '/'")
        self.host = host
        self.app = app
        self.name = name
        self.host_regex, self.host_format, self.param_convertors = compile_path(host)

    @property
    def routes(self) -> list[BaseRoute]:
        return getattr(self.app, "routes", [])

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        if scope["type"] in ("http", "websocket"):
            parsed = parse_host(Headers(scope=scope).get("host"))
            if parsed is None:  # a malformed Host header matches no Host route
                return Match.NONE, {}
            match = self.host_regex.match(parsed.host.lower())
            converted = _convert(self.param_convertors, match.groupdict()) if match else None
            if converted is not None:
                path_params = dict(scope.get("path_params", ()))
                path_params.update(converted)
                return Match.FULL, {"path_params": path_params, "endpoint": self.app}
        return Match.NONE, {}

    def url_path_for(self, name: str, /, **path_params: Any) -> URLPath:
        if self.name is not None and name == self.name and "path" in path_params:
            path = path_params.pop("path")
            host, remaining = replace_params(self.host_format, self.param_convertors, path_params)
            if not remaining:
                return URLPath(path=path, host=host)
        elif self.name is None or name.startswith(self.name + ":"):
            remaining_name = name if self.name is None else name[len(self.name) + 1 :]
            host, remaining = replace_params(self.host_format, self.param_convertors, path_params)
            url = _first_url_path(self.routes or [], remaining_name, remaining)
            if url is not None:
                return URLPath(path=str(url), protocol=url.protocol, host=host)
        raise NoMatchFound(name, path_params)

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.app(scope, receive, send)

    def __eq__(self, other: Any) -> bool:
        return isinstance(other, Host) and self.host == other.host and self.app == other.app

    __hash__ = object.__hash__

    def __repr__(self) -> str:
        name = self.name or ""
        return f"{type(self).__name__}(host={self.host!r}, name={name!r}, app={self.app!r})"


class _RouteIndex:
    """Routes grouped by the literal first segment of their path, declared order kept."""

    __slots__ = ("by_key", "fallback", "routes")

    def __init__(self, routes: list[BaseRoute]) -> None:
        self.routes = list(routes)
        keys = {route._index_key for route in routes if route._index_key is not None}
        self.by_key: dict[str, list[BaseRoute]] = {
            key: [route for route in routes if route._index_key in (key, None)] for key in keys
        }
        self.fallback = [route for route in routes if route._index_key is None]

    def candidates(self, route_path: str) -> list[BaseRoute]:
        if route_path.startswith("/"):
            end = route_path.find("/", 1)
            key = route_path[1:] if end == -1 else route_path[1:end]
            return self.by_key.get(key, self.fallback)
        return self.fallback


@asynccontextmanager
async def _no_lifespan(app: Any) -> Any:
    yield


class Router:
    """A list of routes, tried in order; 404, 405 and trailing-slash redirects as in Starlette.

    A subclass may set Starlette's public attributes itself instead of calling ``__init__``;
    ``max_body_size`` then defaults to None (the enclosing limit).
    """

    max_body_size: int | None = None
    _index: _RouteIndex | None = None

    def __init__(
        self,
        routes: Sequence[BaseRoute] | None = None,
        redirect_slashes: bool = True,
        default: ASGIApp | None = None,
        lifespan: Lifespan[Any] | None = None,
        *,
        middleware: Sequence[Middleware] | None = None,
        max_body_size: int | None = None,
    ) -> None:
        self.routes = [] if routes is None else list(routes)
        self.redirect_slashes = redirect_slashes
        self.default = self.not_found if default is None else default
        self.max_body_size = check_size("max_body_size", max_body_size)
        self.lifespan_context: Callable[[Any], AbstractAsyncContextManager[Any]] = (
            _no_lifespan if lifespan is None else _lifespan_context(lifespan)
        )
        self.middleware_stack = _wrap_middleware(self.app, middleware)
        self._index = _RouteIndex(self.routes)

    async def not_found(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket":
            from triolette.websockets import WebSocketClose

            await WebSocketClose()(scope, receive, send)
            return
        # Inside an app, let the exception handlers answer; on its own, answer plainly.
        if "app" in scope:
            raise HTTPException(status_code=404)
        await PlainTextResponse("Not Found", status_code=404)(scope, receive, send)

    def url_path_for(self, name: str, /, **path_params: Any) -> URLPath:
        url = _first_url_path(self.routes, name, path_params)
        if url is None:
            raise NoMatchFound(name, path_params)
        return url

    async def lifespan(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Run the lifespan protocol around ``lifespan_context``, with the lifespans of the
        apps mounted here nested inside it (startup outer to inner, shutdown inner to outer)."""
        await run_lifespan(self.lifespan_context, scope, receive, send, mounted_apps(self, scope))

    def _candidates(self, route_path: str) -> list[BaseRoute]:
        index = self._index
        if index is None or index.routes != self.routes:  # routes were added or replaced after construction
            index = self._index = _RouteIndex(self.routes)
        return index.candidates(route_path)

    async def app(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind not in ("http", "websocket", "lifespan"):
            raise ValueError(f"Router got an ASGI scope of type {kind!r}; it handles 'http', 'websocket', 'lifespan'")
        if "router" not in scope:
            scope["router"] = self
        if kind == "lifespan":
            await self.lifespan(scope, receive, send)
            return
        if self.max_body_size is not None:
            rs = get_request_scope(scope)
            if rs is not None:
                rs.enter_body_limit(self.max_body_size)

        route_path = get_route_path(scope)
        partial: BaseRoute | None = None
        partial_scope: Scope = {}
        for route in self._candidates(route_path):
            match, child_scope = route.matches(scope)
            if match is Match.FULL:
                scope["route"] = route
                scope.update(child_scope)
                await route.handle(scope, receive, send)
                return
            if match is Match.PARTIAL and partial is None:
                partial, partial_scope = route, child_scope
        if partial is not None:
            scope["route"] = partial
            scope.update(partial_scope)
            await partial.handle(scope, receive, send)
            return

        if kind == "http" and self.redirect_slashes and route_path != "/":
            redirect_scope = dict(scope)
            if route_path.endswith("/"):
                redirect_scope["path"] = redirect_scope["path"].rstrip("/")
            else:
                redirect_scope["path"] = redirect_scope["path"] + "/"
            for route in self._candidates(get_route_path(redirect_scope)):
                match, _ = route.matches(redirect_scope)
                if match is not Match.NONE:
                    response = RedirectResponse(url=str(URL(scope=redirect_scope)))
                    await response(scope, receive, send)
                    return
        await self.default(scope, receive, send)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """The router as an ASGI app; on its own it opens a RequestScope per request."""
        if scope["type"] != "lifespan" and SCOPE_KEY not in scope:
            await run_in_request_scope(self.middleware_stack, scope, receive, send)
            return
        await self.middleware_stack(scope, receive, send)

    def __eq__(self, other: Any) -> bool:
        return isinstance(other, Router) and self.routes == other.routes

    __hash__ = object.__hash__

    def mount(self, path: str, app: ASGIApp, name: str | None = None) -> None:
        self.routes.append(Mount(path, app=app, name=name))

    def host(self, host: str, app: ASGIApp, name: str | None = None) -> None:
        self.routes.append(Host(host, app=app, name=name))

    def add_route(
        self,
        path: str,
        endpoint: Callable[[Request], Awaitable[Response] | Response],
        methods: Collection[str] | None = None,
        name: str | None = None,
        include_in_schema: bool = True,
    ) -> None:
        self.routes.append(
            Route(path, endpoint=endpoint, methods=methods, name=name, include_in_schema=include_in_schema)
        )

    def add_websocket_route(
        self, path: str, endpoint: Callable[[Any], Awaitable[None]], name: str | None = None
    ) -> None:
        self.routes.append(WebSocketRoute(path, endpoint=endpoint, name=name))


def _lifespan_context(lifespan: Any) -> Callable[[Any], AbstractAsyncContextManager[Any]]:
    """Accept an async context manager factory; a generator function (async or not) is wrapped, with a warning.

    The warning is issued from this module, as Starlette's is from ``starlette.routing``, so
    that a filter ported by renaming (``...:TrioletteDeprecationWarning:triolette.routing``) matches.
    """
    if inspect.isasyncgenfunction(lifespan):
        warnings.warn(
            "async generator function lifespans are deprecated, "
            "use an @contextlib.asynccontextmanager function instead",
            TrioletteDeprecationWarning,
            stacklevel=1,
        )
        return asynccontextmanager(lifespan)
    if inspect.isgeneratorfunction(lifespan):
        warnings.warn(
            "generator function lifespans are deprecated, use an @contextlib.asynccontextmanager function instead",
            TrioletteDeprecationWarning,
            stacklevel=1,
        )
        return _sync_lifespan(lifespan)
    return lifespan  # type: ignore[no-any-return]


def _sync_lifespan(lifespan: Callable[[Any], Any]) -> Callable[[Any], AbstractAsyncContextManager[Any]]:
    """A sync generator lifespan as an async context manager: before ``yield`` at startup, after it at shutdown."""
    manager = contextmanager(lifespan)

    @asynccontextmanager
    async def context(app: Any) -> AsyncIterator[Any]:
        with manager(app) as state:
            yield state

    return context


# -- the walk over mounted apps, for lifespans and the drain ---------------------------------


def mounted_apps(router: Router, scope: Scope) -> list[ASGIApp]:
    """The apps mounted in ``router`` whose lifespan must run inside its own, in route order.

    A mounted application (a ``Triolette``: an app with a router of its own) always has one
    (its ``app.nursery`` opens with it); a mounted ``Router`` has one when it was given
    ``lifespan=`` or mounts an app that has one (a ``Mount(routes=[...])`` is looked through).
    An app whose lifespan already runs in this lifespan tree (the enclosing apps, an app
    mounted twice) is left out.
    """
    tree: set[int] = scope.setdefault(LIFESPAN_TREE_KEY, set())
    tree.add(id(router))
    if "app" in scope:
        tree.add(id(scope["app"]))
    found: list[ASGIApp] = []
    for app, base in _children(router):
        if id(base) not in tree and _has_lifespan(base, set(tree)):
            tree.add(id(base))
            found.append(app)
    return found


def _children(router: Router) -> Iterator[tuple[ASGIApp, Any]]:
    """(what to call, the app under any mount-level middleware) for each Mount/Host."""
    for route in router.routes:
        if isinstance(route, Mount):
            yield route.app, route._base_app
        elif isinstance(route, Host):
            yield route.app, route.app


def _has_lifespan(app: Any, seen: set[int]) -> bool:
    if _own_router(app) is not None:
        return True
    if not isinstance(app, Router):
        return False  # any other ASGI app is Starlette's business: it gets no lifespan
    if app.lifespan_context is not _no_lifespan:
        return True
    seen = seen | {id(app)}
    return any(id(base) not in seen and _has_lifespan(base, seen) for _, base in _children(app))


def walk_apps(router: Router) -> Iterator[Any]:
    """Every app reachable from ``router`` through Mount/Host (Routers looked through), once each."""
    seen: set[int] = {id(router)}
    stack = [router]
    while stack:
        for _, base in _children(stack.pop()):
            if id(base) in seen:
                continue
            seen.add(id(base))
            yield base
            inner = _own_router(base)
            if inner is not None:
                stack.append(inner)
            elif isinstance(base, Router):
                stack.append(base)


def _own_router(app: Any) -> Router | None:
    """The router of an application mounted here (a ``Triolette``), None for anything else.

    Known by its shape, so that routing need not import applications (which imports routing).
    """
    if isinstance(app, Router):
        return None
    router = getattr(app, "router", None)
    return router if isinstance(router, Router) and callable(getattr(app, "drain", None)) else None
