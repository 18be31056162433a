"""Test clients built on httpx.

``TestClient`` is Starlette's synchronous client: ``with TestClient(app) as client:`` runs
the lifespan, ``client.get("/")`` runs the app in a trio run on a helper thread.

``AsyncTestClient`` is an ``httpx.AsyncClient`` for pytest-trio: it runs the app in the
test's own trio run, so the test's clock (``autojump_clock``), nurseries and cancel scopes
apply to the app. ``async with AsyncTestClient(app) as client:`` runs the lifespan.

Responses of both stream: ``client.stream("GET", "/events")`` yields each chunk as the app
sends it, and leaving the block early sends ``http.disconnect`` to the app, then waits for
it to finish. The app's exceptions are raised in the test (``raise_server_exceptions``).
"""

from __future__ import annotations

import contextlib
import inspect
import warnings
from collections import deque
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Iterable, Iterator, Sequence
from types import TracebackType
from typing import Any, Generic, Literal, Protocol, Self, TypeVar
from urllib.parse import unquote

import httpx
import trio
from httpx._decoders import ByteChunker, LineDecoder, TextChunker, TextDecoder

from triolette._testclient_ws import AsyncWebSocketTestSession, WebSocketDenialResponse, WebSocketTestSession
from triolette._testing import HTTPExchange, LifespanRunner, Portal, task_group
from triolette._utils import is_async_callable
from triolette.exceptions import TrioletteDeprecationWarning
from triolette.types import ASGIApp, Receive, Scope, Send

__all__ = [
    "ASGI2App",
    "ASGIInstance",
    "AsyncTestClient",
    "AsyncWebSocketTestSession",
    "TestClient",
    "WebSocketDenialResponse",
    "WebSocketTestSession",
]

ASGIInstance = Callable[[Receive, Send], Awaitable[None]]
"""What an ASGI 2 app returns for a scope: the instance that is called with ``receive`` and ``send``."""
ASGI2App = Callable[[Scope], ASGIInstance]
"""An ASGI 2 ("double callable") app: ``app(scope)`` returns ``instance(receive, send)``."""

S = TypeVar("S")
T = TypeVar("T")
T_co = TypeVar("T_co", covariant=True)


def _is_asgi3(app: object) -> bool:
    """An ASGI 3 app is a coroutine function (or an object whose ``__call__`` is one); a class is
    ASGI 3 only if its instances are awaitable. Anything else is taken for an ASGI 2 app."""
    if inspect.isclass(app):
        return hasattr(app, "__await__")
    return is_async_callable(app)


class _WrapASGI2:
    """An ASGI 2 app, called as ASGI 3: ``app(scope)`` gives the instance, then ``instance(receive, send)``."""

    def __init__(self, app: ASGI2App) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        instance = self.app(scope)
        await instance(receive, send)


def as_asgi3(app: ASGIApp | ASGI2App) -> ASGIApp:
    """``app`` itself if it is an ASGI 3 app, else ``app`` wrapped to be called as one."""
    if _is_asgi3(app):
        return app  # type: ignore[return-value]  # checked just above
    return _WrapASGI2(app)  # type: ignore[arg-type]  # not ASGI 3, so ASGI 2


def _scope_for(
    request: httpx.Request, *, root_path: str, client: tuple[str, int], state: dict[str, Any]
) -> tuple[Scope, bool]:
    """The ASGI scope for an httpx request, and whether it is a WebSocket upgrade."""
    url = request.url
    scheme = url.scheme
    host = url.raw_host.decode("ascii")
    port = url.port if url.port is not None else {"http": 80, "ws": 80, "https": 443, "wss": 443}[scheme]
    headers = [] if "host" in request.headers else [(b"host", url.netloc)]
    headers += [(key.lower().encode(), value.encode()) for key, value in request.headers.multi_items()]
    scope: Scope = {
        "path": unquote(url.path),
        "raw_path": url.raw_path.split(b"?", 1)[0],
        "root_path": root_path,
        "scheme": scheme,
        "query_string": url.query,
        "headers": headers,
        "client": client,
        "server": [host, port],
        "state": state.copy(),
    }
    if scheme in ("ws", "wss"):
        protocols = request.headers.get("sec-websocket-protocol")
        scope.update(
            type="websocket",
            asgi={"version": "3.0", "spec_version": "2.4"},
            subprotocols=[] if protocols is None else [value.strip() for value in protocols.split(",")],
            extensions={"websocket.http.response": {}},
        )
        return scope, True
    scope.update(
        type="http",
        asgi={"version": "3.0", "spec_version": "2.4"},
        http_version="1.1",
        method=request.method,
        extensions={"http.response.debug": {}, "http.response.trailers": {}},
    )
    return scope, False


def _warn_if_timeout(kwargs: dict[str, Any]) -> None:
    if kwargs.get("timeout", httpx.USE_CLIENT_DEFAULT) is not httpx.USE_CLIENT_DEFAULT:
        warnings.warn(
            "You should not use the 'timeout' argument with the TestClient: it ignores timeouts, as the app "
            "runs in-process with no network to wait for. Put a trio.fail_after() around the call instead.",
            TrioletteDeprecationWarning,
            stacklevel=3,
        )


def _websocket_request(
    client: httpx.Client | httpx.AsyncClient, url: str, subprotocols: Sequence[str] | None, kwargs: dict[str, Any]
) -> str:
    """The ws:// URL for ``url``; the upgrade headers go into ``kwargs["headers"]``."""
    ws_url = str(client._merge_url(url).copy_with(scheme="wss" if client.base_url.scheme == "https" else "ws"))
    headers = kwargs["headers"] = dict(kwargs.get("headers") or {})
    headers.setdefault("connection", "upgrade")
    headers.setdefault("sec-websocket-key", "testserver==")
    headers.setdefault("sec-websocket-version", "13")
    if subprotocols is not None:
        headers.setdefault("sec-websocket-protocol", ", ".join(subprotocols))
    return ws_url


def _headers(exchange: HTTPExchange) -> list[tuple[str, str]]:
    return [(key.decode("latin-1"), value.decode("latin-1")) for key, value in exchange.headers]


def _with_extensions(response: httpx.Response, exchange: HTTPExchange) -> httpx.Response:
    """As Starlette's client: the trailers and the debug info in ``response.extensions``.

    ``extensions["http.response.trailers"]`` is there when the response declared trailers: a
    list of ``(name, value)`` byte pairs, filled as the app sends them. ``response.template``
    and ``response.context`` are set from the debug info when it has them.
    """
    if exchange.trailers_expected:
        response.extensions["http.response.trailers"] = exchange.trailers
    info = exchange.debug_info
    if info is not None:
        response.extensions["http.response.debug"] = info
        for key in ("template", "context"):
            if key in info:
                setattr(response, key, info[key])
    return response


async def _chunks_of(content: bytes) -> AsyncIterator[bytes]:
    if content:
        yield content


class _Upgrade(Exception):
    """Carries a WebSocket session out of the transport, past httpx, to ``websocket_connect``."""

    def __init__(self, session: Any) -> None:
        self.session = session


# -- the synchronous client -------------------------------------------------------------------


class _PortalStream(httpx.SyncByteStream):
    """A response body read from an exchange running in the portal's trio run."""

    def __init__(self, portal: Portal, exchange: HTTPExchange, method: str, on_close: Any) -> None:
        self._portal = portal
        self._exchange = exchange
        self._method = method
        self._on_close = on_close

    def __iter__(self) -> Iterator[bytes]:
        while True:
            chunk = self._portal.call(self._exchange.next_chunk)
            if chunk is None:
                return
            if self._method != "HEAD":
                yield chunk

    def close(self) -> None:
        """Leave the response: the app hears a disconnect, and the client waits for it to end."""
        self._close(self._exchange.aclose)

    def abort(self) -> None:
        """The client closed: as ``close``, and the app is cancelled (background work included)."""
        self._close(self._exchange.abort)

    def _close(self, how: Callable[[], Awaitable[None]]) -> None:
        try:
            self._portal.call(how)
        finally:
            self._on_close(self)


class _TestClientTransport(httpx.BaseTransport):
    def __init__(
        self,
        app: ASGIApp,
        portal_factory: Any,
        raise_server_exceptions: bool,
        root_path: str,
        *,
        client: tuple[str, int],
        app_state: dict[str, Any],
    ) -> None:
        self.app = app
        self.portal_factory = portal_factory
        self.raise_server_exceptions = raise_server_exceptions
        self.root_path = root_path
        self.client = client
        self.app_state = app_state
        self._open: list[_PortalStream] = []

    def close_streams(self) -> None:
        """Abort the streamed responses still open (newest first); raise the first app error."""
        error: BaseException | None = None
        while self._open:
            try:
                self._open[-1].abort()
            except BaseException as exc:
                error = error or exc
        if error is not None:
            raise error

    def close(self) -> None:
        self.close_streams()

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        scope, is_websocket = _scope_for(request, root_path=self.root_path, client=self.client, state=self.app_state)
        if is_websocket:
            raise _Upgrade(WebSocketTestSession(self.app, scope, self.portal_factory))
        content = request.read()
        portal_context = self.portal_factory()
        portal: Portal = portal_context.__enter__()
        exchange = HTTPExchange(
            self.app, scope, _chunks_of(content), raise_server_exceptions=self.raise_server_exceptions
        )
        try:
            portal.start(exchange.run)
            portal.call(exchange.start)
        except BaseException:
            portal_context.__exit__(None, None, None)
            raise

        def on_close(stream: _PortalStream) -> None:
            self._open.remove(stream)
            portal_context.__exit__(None, None, None)

        stream = _PortalStream(portal, exchange, request.method, on_close)
        self._open.append(stream)
        response = httpx.Response(exchange.status, headers=_headers(exchange), stream=stream, request=request)
        return _with_extensions(response, exchange)


_TRIO_RUN_OPTIONS = frozenset(
    name
    for name, parameter in inspect.signature(trio.run).parameters.items()
    if parameter.kind is inspect.Parameter.KEYWORD_ONLY
)


def _check_backend(backend: str, backend_options: dict[str, Any] | None) -> dict[str, Any]:
    """Starlette's ``backend=`` and ``backend_options=``: trio only, with ``trio.run``'s options."""
    if backend != "trio":
        raise ValueError(
            f"triolette runs on trio only, so TestClient(backend={backend!r}) cannot run the app; "
            "leave backend out or pass backend='trio'"
        )
    options = {} if backend_options is None else dict(backend_options)
    unknown = sorted(set(options) - _TRIO_RUN_OPTIONS)
    if unknown:
        raise ValueError(
            f"backend_options are passed to trio.run, which has no option {unknown[0]!r}; "
            f"it takes {', '.join(sorted(_TRIO_RUN_OPTIONS))}"
        )
    return options


class TestClient(httpx.Client):
    """Starlette's TestClient, running the app under trio.

    ``backend`` can only be ``"trio"``; ``backend_options`` are keyword arguments for the
    ``trio.run`` that runs the app (``clock``, ``instruments``,
    ``restrict_keyboard_interrupt_to_checkpoints``, ``strict_exception_groups``), as anyio
    passes them on Starlette.
    """

    __test__ = False

    def __init__(
        self,
        app: ASGIApp,
        base_url: str = "http://testserver",
        raise_server_exceptions: bool = True,
        root_path: str = "",
        backend: Literal["trio"] = "trio",
        backend_options: dict[str, Any] | None = None,
        cookies: httpx._types.CookieTypes | None = None,
        headers: dict[str, str] | None = None,
        follow_redirects: bool = True,
        client: tuple[str, int] = ("testclient", 50000),
    ) -> None:
        self.backend = backend
        self.backend_options = _check_backend(backend, backend_options)
        self.app = app = as_asgi3(app)  # an ASGI 2 app is called as ASGI 3
        self.app_state: dict[str, Any] = {}
        self.portal: Portal | None = None
        self._lifespan: LifespanRunner | None = None
        self._exit_stack: contextlib.ExitStack | None = None
        transport = self._test_transport = _TestClientTransport(
            app,
            portal_factory=self._portal_factory,
            raise_server_exceptions=raise_server_exceptions,
            root_path=root_path,
            client=client,
            app_state=self.app_state,
        )
        headers = {} if headers is None else dict(headers)
        headers.setdefault("user-agent", "testclient")
        super().__init__(
            base_url=base_url,
            headers=headers,
            transport=transport,
            follow_redirects=follow_redirects,
            cookies=cookies,
        )

    @contextlib.contextmanager
    def _portal_factory(self) -> Iterator[Portal]:
        if self.portal is not None:
            yield self.portal
        else:
            with Portal(self.backend_options) as portal:
                yield portal

    def websocket_connect(
        self, url: str, subprotocols: Sequence[str] | None = None, **kwargs: Any
    ) -> WebSocketTestSession:
        """Open a WebSocket session: ``with client.websocket_connect("/ws") as ws:``."""
        ws_url = _websocket_request(self, url, subprotocols, kwargs)
        try:
            super().request("GET", ws_url, **kwargs)
        except _Upgrade as upgrade:
            session: WebSocketTestSession = upgrade.session
            return session
        raise RuntimeError("Expected WebSocket upgrade")  # pragma: no cover - the transport always upgrades

    def __enter__(self) -> TestClient:
        with contextlib.ExitStack() as stack:
            self.portal = stack.enter_context(Portal(self.backend_options))

            def reset_portal() -> None:
                self.portal = None

            stack.callback(reset_portal)
            runner = self._lifespan = LifespanRunner(self.app, self.app_state)
            self.portal.start(runner.run)
            self.portal.call(runner.startup)

            def shutdown() -> None:
                assert self.portal is not None
                self.portal.call(runner.shutdown)

            stack.callback(shutdown)
            self._exit_stack = stack.pop_all()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None = None,
        exc_value: BaseException | None = None,
        traceback: TracebackType | None = None,
    ) -> None:
        """End the lifespan; streamed responses still open are aborted first. The client stays
        usable (requests then run without the lifespan) and may be entered again."""
        stack, self._exit_stack = self._exit_stack, None
        try:
            self._test_transport.close_streams()
        finally:
            if stack is not None:
                stack.close()

    def request(self, method: str, url: httpx._types.URLTypes, **kwargs: Any) -> httpx.Response:
        """As ``httpx.Client.request``; a ``timeout`` is ignored, with a warning."""
        _warn_if_timeout(kwargs)
        return super().request(method, url, **kwargs)

    async def lifespan(self) -> None:  # pragma: no cover - Starlette's internal, kept for the API
        """Starlette's API: the lifespan is driven by ``__enter__``/``__exit__`` here."""
        raise RuntimeError("Use 'with TestClient(app) as client:' to run the lifespan.")

    async def wait_startup(self) -> None:  # pragma: no cover
        """Starlette's API: see ``lifespan``."""
        raise RuntimeError("Use 'with TestClient(app) as client:' to run the lifespan.")

    async def wait_shutdown(self) -> None:  # pragma: no cover
        """Starlette's API: see ``lifespan``."""
        raise RuntimeError("Use 'with TestClient(app) as client:' to run the lifespan.")


# -- the async client -------------------------------------------------------------------------


async def _request_body(stream: httpx.AsyncByteStream) -> AsyncIterator[bytes]:
    """The request body as httpx produces it, chunk by chunk (a slow upload stays slow)."""
    chunks = aiter(stream)
    try:
        async for chunk in chunks:
            yield chunk
    finally:
        if isinstance(chunks, AsyncGenerator):
            await chunks.aclose()


class _ExchangeStream(httpx.AsyncByteStream):
    """A response body read from an exchange that runs in a nursery of the requesting task.

    The nursery opens when the request is sent and closes with the response, so it must be
    closed in that task, in the reverse order of opening (``async with client.stream(...)``
    and ``client.get(...)`` always do).
    """

    def __init__(
        self,
        transport: _AsyncTestClientTransport,
        exchange: HTTPExchange,
        stack: contextlib.AsyncExitStack,
        method: str,
    ) -> None:
        self.task = trio.lowlevel.current_task()
        self._transport = transport
        self._exchange = exchange
        self._stack = stack
        self._method = method
        self._closed = False

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self

    async def __anext__(self) -> bytes:
        while True:
            chunk = await self._exchange.next_chunk()
            if chunk is None:
                raise StopAsyncIteration
            if self._method != "HEAD":
                return chunk

    async def aclose(self, *, abort: bool = False) -> None:
        """Leave the response (the app hears a disconnect); ``abort`` also cancels the app, as
        closing the client does."""
        if self._closed:
            return
        self._transport.forget(self)
        self._closed = True
        try:
            await self._exchange.aclose(abort=abort)
        finally:
            await self._stack.aclose()


class _Source(Protocol[T_co]):
    async def __anext__(self) -> T_co: ...
    async def aclose(self) -> None: ...


class _Items(Generic[T]):
    """Items already in memory, as an async iterator."""

    def __init__(self, items: Iterable[T]) -> None:
        self._items = iter(items)

    def __aiter__(self) -> AsyncIterator[T]:
        return self

    async def __anext__(self) -> T:
        await trio.lowlevel.checkpoint()
        try:
            return next(self._items)
        except StopIteration:
            raise StopAsyncIteration from None

    async def aclose(self) -> None:
        self._items = iter(())


class _RawChunks:
    """The body chunks of a ``_TestResponse`` as they arrive; the response closes at the end."""

    def __init__(self, response: _TestResponse) -> None:
        self._response = response

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self

    async def __anext__(self) -> bytes:
        try:
            chunk = await anext(self._response.body_stream)
        except StopAsyncIteration:
            await self._response.aclose()
            raise
        self._response._num_bytes_downloaded += len(chunk)
        return chunk

    async def aclose(self) -> None:
        """Stop iterating (as ``aclosing()`` does); the response stays open until it is closed."""


class _Stage(Generic[S, T]):
    """One decoding stage of a response iterator: items of ``source`` in, decoded items out."""

    def __init__(
        self, source: _Source[S], decode: Callable[[S], Sequence[T]], flush: Callable[[], Sequence[T]]
    ) -> None:
        self._source: _Source[S] | None = source
        self._decode = decode
        self._flush = flush
        self._pending: deque[T] = deque()

    def __aiter__(self) -> AsyncIterator[T]:
        return self

    async def __anext__(self) -> T:
        while not self._pending:
            if self._source is None:
                raise StopAsyncIteration
            try:
                item = await anext(self._source)
            except StopAsyncIteration:
                self._source = None
                self._pending.extend(self._flush())
            else:
                self._pending.extend(self._decode(item))
        return self._pending.popleft()

    async def aclose(self) -> None:
        """Stop iterating (as ``aclosing()`` does); the response stays open until it is closed."""
        source, self._source = self._source, None
        self._pending.clear()
        if source is not None:
            await source.aclose()


class _TestResponse(httpx.Response):
    """An httpx response whose ``aiter_*`` iterators are plain objects, not async generators.

    Under trio, an async generator dropped before it is exhausted (a test that reads three
    events of an endless stream, then leaves) is finalized with a ResourceWarning, an error
    in a test suite run with ``-W error``; httpx 0.28 builds its iterators from nested
    generators that ``aclosing()`` cannot reach (encode/httpx#3686). These decode exactly as
    httpx's do, with httpx's own decoders and chunkers.
    """

    def __init__(self, status_code: int, *, headers: Any, stream: _ExchangeStream, request: httpx.Request) -> None:
        super().__init__(status_code, headers=headers, stream=stream, request=request)
        self.body_stream = stream  # httpx wraps .stream; the chunks are read from this one directly

    def aiter_raw(self, chunk_size: int | None = None) -> _Stage[bytes, bytes]:
        if self.is_stream_consumed:
            raise httpx.StreamConsumed()
        if self.is_closed:
            raise httpx.StreamClosed()
        self.is_stream_consumed = True
        self._num_bytes_downloaded = 0
        chunker = ByteChunker(chunk_size=chunk_size)
        return _Stage(_RawChunks(self), chunker.decode, chunker.flush)

    def aiter_bytes(self, chunk_size: int | None = None) -> _Stage[bytes, bytes] | _Items[bytes]:
        if hasattr(self, "_content"):
            content: bytes = self._content
            size = max(len(content) if chunk_size is None else chunk_size, 1)
            return _Items(content[i : i + size] for i in range(0, len(content), size))
        decoder = self._get_content_decoder()
        chunker = ByteChunker(chunk_size=chunk_size)
        return _Stage(
            self.aiter_raw(),
            lambda raw: chunker.decode(decoder.decode(raw)),
            lambda: chunker.decode(decoder.flush()) + chunker.flush(),
        )

    def aiter_text(self, chunk_size: int | None = None) -> _Stage[bytes, str]:
        decoder = TextDecoder(encoding=self.encoding or "utf-8")
        chunker = TextChunker(chunk_size=chunk_size)
        return _Stage(
            self.aiter_bytes(),
            lambda data: chunker.decode(decoder.decode(data)),
            lambda: chunker.decode(decoder.flush()) + chunker.flush(),
        )

    def aiter_lines(self) -> _Stage[str, str]:
        decoder = LineDecoder()
        return _Stage(self.aiter_text(), decoder.decode, decoder.flush)


class _AsyncTestClientTransport(httpx.AsyncBaseTransport):
    """Runs each request through the app in the caller's trio run, in a nursery of the caller."""

    def __init__(
        self,
        app: ASGIApp,
        raise_server_exceptions: bool,
        root_path: str,
        *,
        client: tuple[str, int],
        app_state: dict[str, Any],
    ) -> None:
        self.app = app
        self.raise_server_exceptions = raise_server_exceptions
        self.root_path = root_path
        self.client = client
        self.app_state = app_state
        self._open: list[_ExchangeStream] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        scope, is_websocket = _scope_for(request, root_path=self.root_path, client=self.client, state=self.app_state)
        if is_websocket:
            raise _Upgrade(AsyncWebSocketTestSession(self.app, scope))
        assert isinstance(request.stream, httpx.AsyncByteStream)  # httpx.AsyncClient checked it
        exchange = HTTPExchange(
            self.app, scope, _request_body(request.stream), raise_server_exceptions=self.raise_server_exceptions
        )
        async with contextlib.AsyncExitStack() as stack:
            nursery = await stack.enter_async_context(task_group("the request was abandoned"))
            await nursery.start(exchange.run)
            await exchange.start()
            stream = _ExchangeStream(self, exchange, stack.pop_all(), request.method)
        self._open.append(stream)
        response = _TestResponse(exchange.status, headers=_headers(exchange), stream=stream, request=request)
        return _with_extensions(response, exchange)

    def forget(self, stream: _ExchangeStream) -> None:
        """Check that ``stream`` may close now (its nursery is the innermost one), then forget it."""
        task = trio.lowlevel.current_task()
        if stream.task is not task:
            raise RuntimeError(
                f"A streamed response must be closed in the task that sent its request ({stream.task.name!r}), "
                f"not in {task.name!r}: the app runs in a nursery of that task. "
                "Use 'async with client.stream(...)' in the task that reads the response."
            )
        if [other for other in self._open if other.task is task][-1] is not stream:
            raise RuntimeError(
                "Streamed responses must be closed in the reverse order of opening them, as nested "
                "'async with client.stream(...)' blocks do: each one runs the app in a nursery nested "
                "in the ones opened before it."
            )
        self._open.remove(stream)

    async def close_streams(self) -> None:
        """Abort the responses this task left open (newest first): each app hears a disconnect
        and is cancelled (a complete response's background work too)."""
        task = trio.lowlevel.current_task()
        error: BaseException | None = None
        for stream in reversed([stream for stream in self._open if stream.task is task]):
            try:
                await stream.aclose(abort=True)
            except BaseException as exc:
                error = error or exc
        if error is not None:
            raise error
        if self._open:
            raise RuntimeError(
                f"{len(self._open)} streamed response(s) opened in another task are still open: "
                "close them there, before the client closes."
            )

    async def aclose(self) -> None:
        await self.close_streams()


class AsyncTestClient(httpx.AsyncClient):
    """An ``httpx.AsyncClient`` that runs the app in the test's own trio run (for pytest-trio).

    Each request runs the app in a nursery of the task that sends it, opened with the request
    and closed with the response: the test's clock, cancel scopes and deadlines apply to the
    app, and nothing the client starts outlives the ``async with`` around it.

    - ``async with AsyncTestClient(app) as client:`` runs the lifespan (startup failures are
      raised there); without ``async with``, requests work and the lifespan does not run.
    - ``async with client.stream("GET", "/events") as r:`` yields chunks as the app sends
      them; leaving the block early sends ``http.disconnect`` and waits for the app.
    - ``async with client.websocket_connect("/ws") as ws:`` opens a WebSocket session.
    - ``raise_server_exceptions=True`` raises the app's exception in the test.
    """

    __test__ = False

    def __init__(
        self,
        app: ASGIApp,
        base_url: str = "http://testserver",
        raise_server_exceptions: bool = True,
        root_path: str = "",
        cookies: httpx._types.CookieTypes | None = None,
        headers: dict[str, str] | None = None,
        follow_redirects: bool = True,
        client: tuple[str, int] = ("testclient", 50000),
    ) -> None:
        self.app = app = as_asgi3(app)  # an ASGI 2 app is called as ASGI 3
        self.app_state: dict[str, Any] = {}
        self._exit_stack: contextlib.AsyncExitStack | None = None
        self._test_transport = _AsyncTestClientTransport(
            app,
            raise_server_exceptions=raise_server_exceptions,
            root_path=root_path,
            client=client,
            app_state=self.app_state,
        )
        headers = {} if headers is None else dict(headers)
        headers.setdefault("user-agent", "testclient")
        super().__init__(
            base_url=base_url,
            headers=headers,
            transport=self._test_transport,
            follow_redirects=follow_redirects,
            cookies=cookies,
        )

    async def request(self, method: str, url: httpx._types.URLTypes, **kwargs: Any) -> httpx.Response:
        """As ``httpx.AsyncClient.request``; a ``timeout`` is ignored, with a warning."""
        _warn_if_timeout(kwargs)
        return await super().request(method, url, **kwargs)

    @contextlib.asynccontextmanager
    async def websocket_connect(
        self, url: str, subprotocols: Sequence[str] | None = None, **kwargs: Any
    ) -> AsyncIterator[AsyncWebSocketTestSession]:
        """Open a WebSocket session: ``async with client.websocket_connect("/ws") as ws:``.

        The app's close or denial response during the handshake raises
        ``WebSocketDisconnect`` or ``WebSocketDenialResponse`` here.
        """
        ws_url = _websocket_request(self, url, subprotocols, kwargs)
        try:
            await super().request("GET", ws_url, **kwargs)
        except _Upgrade as upgrade:
            session: AsyncWebSocketTestSession = upgrade.session
        else:  # pragma: no cover - the transport always upgrades
            raise RuntimeError("Expected WebSocket upgrade")
        async with session:
            yield session

    async def __aenter__(self) -> Self:
        async with contextlib.AsyncExitStack() as stack:
            await super().__aenter__()
            stack.push_async_exit(super().__aexit__)
            nursery = await stack.enter_async_context(task_group("the test client closed"))
            runner = LifespanRunner(self.app, self.app_state)
            await nursery.start(runner.run)
            await runner.startup()
            stack.push_async_callback(runner.shutdown)
            stack.push_async_callback(self._test_transport.close_streams)
            self._exit_stack = stack.pop_all()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None = None,
        exc_value: BaseException | None = None,
        traceback: TracebackType | None = None,
    ) -> None:
        stack, self._exit_stack = self._exit_stack, None
        if stack is None:
            await super().__aexit__(exc_type, exc_value, traceback)
        else:
            await stack.__aexit__(exc_type, exc_value, traceback)
