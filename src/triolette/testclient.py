"""Test clients built on httpx.

``TestClient`` is Starlette's synchronous client: ``with TestClient(app) as client:`` runs
the lifespan, ``client.get("/")`` runs the app in a trio run on a helper thread. Its
responses stream: ``with client.stream("GET", "/events") as r:`` yields chunks as the app
sends them, and leaving the block early sends ``http.disconnect`` to the app.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Iterator, Sequence
from types import TracebackType
from typing import Any, Literal
from urllib.parse import unquote

import httpx
import trio

from triolette._testclient_ws import WebSocketDenialResponse, WebSocketTestSession
from triolette._testing import HTTPExchange, LifespanRunner, Portal
from triolette.types import ASGIApp, Scope

__all__ = ["TestClient", "WebSocketDenialResponse", "WebSocketTestSession"]


def _scope_for(
    request: httpx.Request, *, root_path: str, client: tuple[str, int], state: dict[str, Any]
) -> tuple[Scope, bool]:
    """The ASGI scope for an httpx request, and whether it is a WebSocket upgrade."""
    url = request.url
    scheme = url.scheme
    host = url.raw_host.decode("ascii")
    port = url.port or {"http": 80, "ws": 80, "https": 443, "wss": 443}[scheme]
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
        extensions={"http.response.debug": {}},
    )
    return scope, False


async def _chunks_of(content: bytes) -> AsyncIterator[bytes]:
    if content:
        yield content


class _Upgrade(Exception):
    def __init__(self, session: Any) -> None:
        self.session = session


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
        try:
            self._portal.call(self._exchange.aclose)
        finally:
            self._on_close()


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
        headers = [(key.decode("latin-1"), value.decode("latin-1")) for key, value in exchange.headers]
        stream = _PortalStream(portal, exchange, request.method, lambda: portal_context.__exit__(None, None, None))
        return httpx.Response(status_code=exchange.status, headers=headers, stream=stream, request=request)


class TestClient(httpx.Client):
    """Starlette's TestClient, running the app under trio (there is no ``backend`` option)."""

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
        self.app = app
        self.app_state: dict[str, Any] = {}
        self.portal: Portal | None = None
        self._lifespan: LifespanRunner | None = None
        self._exit_stack: contextlib.ExitStack | None = None
        transport = _TestClientTransport(
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
            with Portal() as portal:
                yield portal

    def websocket_connect(self, url: str, subprotocols: Sequence[str] | None = None, **kwargs: Any) -> Any:
        """Open a WebSocket session: ``with client.websocket_connect("/ws") as ws:``."""
        url = self._merge_url(url).copy_with(scheme="wss" if self.base_url.scheme == "https" else "ws").__str__()
        headers = kwargs.pop("headers", {})
        headers.setdefault("connection", "upgrade")
        headers.setdefault("sec-websocket-key", "testserver==")
        headers.setdefault("sec-websocket-version", "13")
        if subprotocols is not None:
            headers.setdefault("sec-websocket-protocol", ", ".join(subprotocols))
        try:
            super().request("GET", url, headers=headers, **kwargs)
        except _Upgrade as upgrade:
            return upgrade.session
        raise RuntimeError("Expected WebSocket upgrade")  # pragma: no cover

    def __enter__(self) -> TestClient:
        with contextlib.ExitStack() as stack:
            self.portal = stack.enter_context(Portal())

            def reset_portal() -> None:
                self.portal = None

            stack.callback(reset_portal)
            runner = self._lifespan = LifespanRunner(self.app)
            runner.state = self.app_state
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
        if self._exit_stack is not None:
            self._exit_stack.close()
            self._exit_stack = None
        self.close()

    async def lifespan(self) -> None:  # pragma: no cover - Starlette's internal, kept for the API
        """Starlette's API: the lifespan is driven by ``__enter__``/``__exit__`` here."""
        raise RuntimeError("Use 'with TestClient(app) as client:' to run the lifespan.")

    async def wait_startup(self) -> None:  # pragma: no cover
        """Starlette's API: see ``lifespan``."""
        raise RuntimeError("Use 'with TestClient(app) as client:' to run the lifespan.")

    async def wait_shutdown(self) -> None:  # pragma: no cover
        """Starlette's API: see ``lifespan``."""
        raise RuntimeError("Use 'with TestClient(app) as client:' to run the lifespan.")


_ = (trio, Literal)
