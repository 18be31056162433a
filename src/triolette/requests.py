"""The incoming side of a connection: HTTPConnection, and Request for HTTP.

The body is read through the request's RequestScope (DESIGN.md invariant 2): one
reader at a time, nothing read twice however many Request objects look at it, the
size and time limits applied while reading. ``await request.is_disconnected()`` answers
from what the disconnect watcher saw, without blocking and without consuming a message.
"""

from __future__ import annotations

import json
import sys
from collections.abc import AsyncGenerator, Iterator, Mapping
from http import cookies as http_cookies
from typing import TYPE_CHECKING, Any, Generic, NoReturn, cast

import trio
from typing_extensions import TypeVar

from triolette._scope import RequestScope, get_request_scope
from triolette._utils import AwaitableOrContextManagerWrapper
from triolette.datastructures import URL, Address, FormData, Headers, QueryParams, State
from triolette.exceptions import ClientDisconnect, HTTPException
from triolette.types import Message, Receive, Scope, Send

if TYPE_CHECKING:
    from triolette.routing import Router

__all__ = [
    "ClientDisconnect",
    "HTTPConnection",
    "JSONNestingError",
    "Request",
    "cookie_parser",
    "empty_receive",
    "empty_send",
]

StateT = TypeVar("StateT", bound=State | Mapping[str, Any], default=State)

SERVER_PUSH_HEADERS_TO_COPY = {"accept", "accept-encoding", "accept-language", "cache-control", "user-agent"}


def cookie_parser(cookie_string: str) -> dict[str, str]:
    """Parse a ``Cookie`` header the way browsers send it, not by RFC 2109's stricter rules.

    Pairs are split on ``;``; a chunk without ``=`` is a value with an empty name.
    """
    cookie_dict: dict[str, str] = {}
    for chunk in cookie_string.split(";"):
        key, sep, val = chunk.partition("=")
        if not sep:
            key, val = "", key
        key, val = key.strip(), val.strip()
        if key or val:
            cookie_dict[key] = http_cookies._unquote(val)
    return cookie_dict


class JSONNestingError(json.JSONDecodeError):
    """`Request.json` on a body whose arrays and objects nest deeper than Python can parse.

    A `ValueError`, like any other JSON error, so an endpoint's ``except ValueError`` (or
    ``except json.JSONDecodeError``) answers it, rather than the `RecursionError` escaping.
    """

    def __init__(self) -> None:
        message = (
            f"JSON body nested too deeply: Python parses arrays and objects at most about "
            f"{sys.getrecursionlimit()} levels deep (sys.getrecursionlimit()); send a flatter document."
        )
        super().__init__(message, "", 0)
        self.args = (message,)


class HTTPConnection(Mapping[str, Any], Generic[StateT]):
    """What HTTP requests and WebSocket connections share: URL, headers, cookies, state."""

    def __init__(self, scope: Scope, receive: Receive | None = None) -> None:
        if scope["type"] not in ("http", "websocket"):
            raise ValueError(f"HTTPConnection needs an 'http' or 'websocket' scope, got {scope['type']!r}")
        self.scope = scope

    def __getitem__(self, key: str) -> Any:
        return self.scope[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self.scope)

    def __len__(self) -> int:
        return len(self.scope)

    __eq__ = object.__eq__
    __hash__ = object.__hash__

    @property
    def app(self) -> Any:
        return self.scope["app"]

    @property
    def url(self) -> URL:
        if not hasattr(self, "_url"):
            self._url = URL(scope=self.scope)
        return self._url

    @property
    def base_url(self) -> URL:
        if not hasattr(self, "_base_url"):
            base_url_scope = dict(self.scope)
            # The base URL is the root of the app: the mount point, with a trailing slash.
            app_root_path = base_url_scope.get("app_root_path", base_url_scope.get("root_path", ""))
            path = app_root_path
            if not path.endswith("/"):
                path += "/"
            base_url_scope["path"] = path
            base_url_scope["query_string"] = b""
            base_url_scope["root_path"] = app_root_path
            self._base_url = URL(scope=base_url_scope)
        return self._base_url

    @property
    def headers(self) -> Headers:
        if not hasattr(self, "_headers"):
            self._headers = Headers(scope=self.scope)
        return self._headers

    @property
    def query_params(self) -> QueryParams:
        if not hasattr(self, "_query_params"):
            self._query_params = QueryParams(self.scope["query_string"])
        return self._query_params

    @property
    def path_params(self) -> dict[str, Any]:
        params: dict[str, Any] = self.scope.get("path_params", {})
        return params

    @property
    def cookies(self) -> dict[str, str]:
        if not hasattr(self, "_cookies"):
            # Every Cookie header counts (HTTP/2 may split them), in order: a later name overrides an earlier one.
            cookies: dict[str, str] = {}
            for cookie_header in self.headers.getlist("cookie"):
                cookies.update(cookie_parser(cookie_header))
            self._cookies = cookies
        return self._cookies

    @property
    def client(self) -> Address | None:
        host_port = self.scope.get("client")
        if host_port is not None:
            return Address(*host_port)
        return None

    @property
    def session(self) -> dict[str, Any]:
        if "session" not in self.scope:
            raise AssertionError("SessionMiddleware must be installed to access request.session")
        session: dict[str, Any] = self.scope["session"]
        mark_accessed = getattr(session, "mark_accessed", None)  # SessionMiddleware then sends Vary: Cookie
        if mark_accessed is not None:
            mark_accessed()
        return session

    @property
    def auth(self) -> Any:
        if "auth" not in self.scope:
            raise AssertionError("AuthenticationMiddleware must be installed to access request.auth")
        return self.scope["auth"]

    @property
    def user(self) -> Any:
        if "user" not in self.scope:
            raise AssertionError("AuthenticationMiddleware must be installed to access request.user")
        return self.scope["user"]

    @property
    def state(self) -> StateT:
        if not hasattr(self, "_state"):
            self.scope.setdefault("state", {})
            self._state = State(self.scope["state"])
        return cast(StateT, self._state)

    @property
    def nursery(self) -> trio.Nursery:
        """The request's task group: tasks started here are cancelled with the request
        (client disconnect, deadline) and finished before the ASGI call returns."""
        rs = get_request_scope(self.scope)
        if rs is None:
            raise RuntimeError(
                "request.nursery is only available while a triolette app handles the request; "
                "this connection has no RequestScope (was the Request built by hand?)."
            )
        return rs.nursery

    def url_for(self, name: str, /, **path_params: Any) -> URL:
        provider: Router | None = self.scope.get("router") or self.scope.get("app")
        if provider is None:
            raise RuntimeError("The `url_for` method can only be used inside a Triolette application or with a router.")
        url_path = provider.url_path_for(name, **path_params)
        return url_path.make_absolute_url(base_url=self.base_url)


async def empty_receive() -> NoReturn:
    raise RuntimeError("Receive channel has not been made available")


async def empty_send(message: Message) -> NoReturn:
    raise RuntimeError("Send channel has not been made available")


class Request(HTTPConnection[StateT]):
    """An HTTP request: method, body, JSON, forms."""

    _form: FormData | None

    def __init__(self, scope: Scope, receive: Receive = empty_receive, send: Send = empty_send) -> None:
        if scope["type"] != "http":
            raise ValueError(f"Request needs an 'http' scope, got {scope['type']!r}")
        self.scope = scope
        self._receive = receive
        self._send = send
        self._stream_consumed = False
        self._is_disconnected = False
        self._form = None

    @property
    def method(self) -> str:
        method: str = self.scope["method"]
        return method

    @property
    def receive(self) -> Receive:
        return self._receive

    def _direct_scope(self) -> RequestScope | None:
        """The RequestScope, when this Request reads straight from it (no middleware wrapper)."""
        rs = get_request_scope(self.scope)
        return rs if rs is not None and self._receive is rs.asgi_receive else None

    async def stream(self) -> AsyncGenerator[bytes, None]:
        """Yield the body chunk by chunk as it arrives, then ``b""``."""
        if hasattr(self, "_body"):
            yield self._body
            yield b""
            return
        if self._stream_consumed:
            raise RuntimeError("Stream consumed")
        rs = self._direct_scope()
        if rs is not None:
            if rs.body_cache is not None:
                self._stream_consumed = True
                yield rs.body_cache
                yield b""
                return
            if rs.body_consumed:
                raise RuntimeError("Stream consumed")
            rs.begin_reading()
        try:
            receive = self._receive
            while not self._stream_consumed:
                message = await receive()
                kind = message["type"]
                if kind == "http.request":
                    body = message.get("body", b"")
                    if not message.get("more_body", False):
                        self._stream_consumed = True
                    if body:
                        yield body
                elif kind == "http.disconnect":
                    self._is_disconnected = True
                    raise ClientDisconnect()
        finally:
            if rs is not None:
                rs.end_reading()
        yield b""

    async def body(self) -> bytes:
        """The whole body, read once and kept."""
        if not hasattr(self, "_body"):
            rs = self._direct_scope()
            if rs is not None and rs.body_cache is not None:
                self._body = rs.body_cache
            elif rs is not None and not rs.body_consumed and not self._stream_consumed:
                self._body = rs.body_cache = await self._read_all(rs)
            else:
                chunks = [chunk async for chunk in self.stream()]
                self._body = b"".join(chunks)
        return self._body

    async def _read_all(self, rs: RequestScope) -> bytes:
        body = await rs.read_body()
        if body is None:
            self._is_disconnected = True
            raise ClientDisconnect()
        self._stream_consumed = True
        return body

    async def json(self) -> Any:
        """The body parsed as JSON.

        Raises `json.JSONDecodeError` (a `ValueError`) for a body that is not JSON, and its
        subclass `JSONNestingError` for one nested too deeply for Python to parse.
        """
        if not hasattr(self, "_json"):
            body = await self.body()
            try:
                self._json = json.loads(body)
            except RecursionError:
                raise JSONNestingError() from None
        return self._json

    async def _get_form(
        self,
        *,
        max_files: int | float = 1000,
        max_fields: int | float = 1000,
        max_part_size: int = 1024 * 1024,
    ) -> FormData:
        if self._form is None:
            from triolette import formparsers

            content_type = self.headers.get("content-type", "").partition(";")[0].strip().lower()
            parser: formparsers.FormParser | formparsers.MultiPartParser
            if content_type == "multipart/form-data":
                parser = formparsers.MultiPartParser(
                    self.headers,
                    self.stream(),
                    max_files=max_files,
                    max_fields=max_fields,
                    max_part_size=max_part_size,
                )
            elif content_type == "application/x-www-form-urlencoded":
                parser = formparsers.FormParser(
                    self.headers, self.stream(), max_fields=max_fields, max_part_size=max_part_size
                )
            else:
                self._form = FormData()
                return self._form
            try:
                self._form = await parser.parse()
            except formparsers.MultiPartException as exc:
                if "app" in self.scope:
                    raise HTTPException(status_code=400, detail=exc.message) from None
                raise
        return self._form

    def form(
        self,
        *,
        max_files: int | float = 1000,
        max_fields: int | float = 1000,
        max_part_size: int = 1024 * 1024,
    ) -> AwaitableOrContextManagerWrapper:
        """The parsed form: ``await request.form()`` or ``async with request.form() as form:``."""
        return AwaitableOrContextManagerWrapper(
            self._get_form(max_files=max_files, max_fields=max_fields, max_part_size=max_part_size)
        )

    async def close(self) -> None:
        """Close the uploaded files of a parsed form."""
        if self._form is not None:
            await self._form.close()

    async def is_disconnected(self) -> bool:
        """Whether the client has gone (true once the response is complete); answers at once
        and consumes nothing."""
        if not self._is_disconnected:
            rs = get_request_scope(self.scope)
            if rs is not None:
                # What the scope knows now, read before the checkpoint: the answer does not
                # depend on whether the watcher happens to run first (it never blocks, nor reads).
                # Once the response is complete the request is over for the app, as a server's
                # receive() then says with http.disconnect.
                self._is_disconnected = rs.disconnected or rs.response_complete
                await trio.lowlevel.checkpoint()
            else:
                message: Message = {}
                with trio.CancelScope() as cs:
                    cs.cancel()
                    message = await self._receive()
                if message.get("type") == "http.disconnect":
                    self._is_disconnected = True
        return self._is_disconnected

    async def send_push_promise(self, path: str) -> None:
        """Ask an HTTP/2 server to push ``path`` (ignored where the server cannot)."""
        if "http.response.push" in self.scope.get("extensions", {}):
            raw_headers: list[tuple[bytes, bytes]] = []
            for name in SERVER_PUSH_HEADERS_TO_COPY:
                for value in self.headers.getlist(name):
                    raw_headers.append((name.encode("latin-1"), value.encode("latin-1")))
            await self._send({"type": "http.response.push", "path": path, "headers": raw_headers})

    async def send_early_hints(self, link: str, /, *additional_links: str) -> None:
        """Send a 103 Early Hints with ``Link`` headers (ignored where the server cannot)."""
        if "http.response.early_hint" in self.scope.get("extensions", {}):
            links = [value.encode("latin-1") for value in (link, *additional_links)]
            await self._send({"type": "http.response.early_hint", "links": links})
