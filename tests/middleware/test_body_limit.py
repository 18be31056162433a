from __future__ import annotations

from typing import Any

import pytest

from triolette.applications import Triolette
from triolette.middleware import Middleware
from triolette.middleware.body_limit import (
    MAX_BODY_SIZE_SCOPE_KEY,
    RequestBodyLimitMiddleware,
    RequestBodyLimitResponder,
)
from triolette.requests import Request
from triolette.responses import PlainTextResponse, Response
from triolette.routing import Mount, Route
from triolette.testclient import TestClient
from triolette.types import ASGIApp, Message, Receive, Scope, Send


async def echo(request: Request) -> Response:
    body = await request.body()
    return PlainTextResponse(f"{len(body)} bytes")


def client_for(limit: int) -> TestClient:
    app = Triolette(
        routes=[Route("/", echo, methods=["POST"])],
        middleware=[Middleware(RequestBodyLimitMiddleware, max_body_size=limit)],
    )
    return TestClient(app)


def test_within_the_limit() -> None:
    response = client_for(10).post("/", content=b"x" * 10)
    assert response.status_code == 200
    assert response.text == "10 bytes"


def test_declared_content_length_over_the_limit() -> None:
    response = client_for(10).post("/", content=b"x" * 11)
    assert response.status_code == 413
    assert response.text == "Content Too Large"


def test_streamed_body_over_the_limit() -> None:
    def chunks() -> Any:
        yield b"x" * 6
        yield b"x" * 6

    response = client_for(10).post("/", content=chunks())
    assert response.status_code == 413
    assert response.text == "Content Too Large"


def http_scope(headers: list[tuple[bytes, bytes]] | None = None) -> Scope:
    return {"type": "http", "method": "POST", "path": "/", "headers": headers or []}


class Client:
    """Fake server side: body chunks to hand out, messages sent back."""

    def __init__(self, *chunks: bytes) -> None:
        self.chunks = list(chunks)
        self.received = 0
        self.sent: list[Message] = []

    async def receive(self) -> Message:
        self.received += 1
        if not self.chunks:
            return {"type": "http.disconnect"}
        body = self.chunks.pop(0)
        return {"type": "http.request", "body": body, "more_body": bool(self.chunks)}

    async def send(self, message: Message) -> None:
        self.sent.append(message)

    @property
    def status(self) -> int:
        return int(self.sent[0]["status"])


async def read_all(scope: Scope, receive: Receive, send: Send) -> None:
    total = 0
    while True:
        message = await receive()
        total += len(message.get("body", b""))
        if not message.get("more_body", False):
            break
    await PlainTextResponse(str(total))(scope, receive, send)


async def respond_without_reading(scope: Scope, receive: Receive, send: Send) -> None:
    await PlainTextResponse("ignored the body")(scope, receive, send)


async def test_stops_reading_at_the_chunk_that_crosses_the_limit() -> None:
    client = Client(b"a" * 5, b"b" * 5, b"c" * 5, b"d" * 5)
    await RequestBodyLimitMiddleware(read_all, 12)(http_scope(), client.receive, client.send)
    assert client.status == 413
    assert client.received == 3
    assert client.sent[1]["body"] == b"Content Too Large"


async def test_declared_length_refused_before_reading_anything() -> None:
    client = Client(b"a" * 100)
    scope = http_scope([(b"content-length", b"100")])
    await RequestBodyLimitMiddleware(read_all, 10)(scope, client.receive, client.send)
    assert client.status == 413
    assert client.received == 0


async def test_response_of_an_app_that_ignores_a_declared_too_large_body_is_replaced() -> None:
    client = Client(b"a" * 100)
    scope = http_scope([(b"content-length", b"100")])
    await RequestBodyLimitMiddleware(respond_without_reading, 10)(scope, client.receive, client.send)
    assert client.status == 413
    assert [m["type"] for m in client.sent] == ["http.response.start", "http.response.body"]
    assert client.sent[1]["body"] == b"Content Too Large"


@pytest.mark.parametrize("value", [b"abc", b"-1", b""])
async def test_unparseable_content_length_is_ignored(value: bytes) -> None:
    client = Client(b"a" * 5)
    await RequestBodyLimitMiddleware(read_all, 10)(
        http_scope([(b"content-length", value)]), client.receive, client.send
    )
    assert client.status == 200


async def test_too_large_after_the_response_started_propagates() -> None:
    async def stream_then_read(scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await receive()
        await receive()

    client = Client(b"a" * 5, b"b" * 10)
    with pytest.raises(Exception, match="Content Too Large") as info:
        await RequestBodyLimitMiddleware(stream_then_read, 10)(http_scope(), client.receive, client.send)
    assert getattr(info.value, "status_code", None) == 413


async def test_innermost_limit_applies_and_the_scope_is_restored() -> None:
    seen: list[Any] = []

    async def inner_app(scope: Scope, receive: Receive, send: Send) -> None:
        seen.append(scope[MAX_BODY_SIZE_SCOPE_KEY])
        await read_all(scope, receive, send)

    # The outer limit (10) would refuse 15 bytes; the inner one (20) is the one that counts.
    app = RequestBodyLimitMiddleware(RequestBodyLimitMiddleware(inner_app, 20), 10)
    client = Client(b"a" * 8, b"b" * 7)
    scope = http_scope()
    await app(scope, client.receive, client.send)
    assert client.status == 200
    assert seen == [20]
    assert MAX_BODY_SIZE_SCOPE_KEY not in scope

    scope = {**http_scope(), MAX_BODY_SIZE_SCOPE_KEY: 99}
    await RequestBodyLimitMiddleware(read_all, 5)(scope, Client(b"x").receive, Client().send)
    assert scope[MAX_BODY_SIZE_SCOPE_KEY] == 99


async def test_inner_limit_below_what_was_already_read() -> None:
    async def outer_reads_first(scope: Scope, receive: Receive, send: Send) -> None:
        await receive()
        await RequestBodyLimitMiddleware(read_all, 3)(scope, receive, send)

    client = Client(b"a" * 5, b"b")
    await RequestBodyLimitMiddleware(outer_reads_first, 100)(http_scope(), client.receive, client.send)
    assert client.status == 413


async def test_disconnect_passes_through() -> None:
    async def read_once(scope: Scope, receive: Receive, send: Send) -> None:
        message = await receive()
        await PlainTextResponse(message["type"])(scope, receive, send)

    client = Client()
    await RequestBodyLimitMiddleware(read_once, 10)(http_scope(), client.receive, client.send)
    assert client.sent[1]["body"] == b"http.disconnect"


async def test_non_http_scopes_pass_through() -> None:
    seen: list[str] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        seen.append(scope["type"])

    client = Client()
    await RequestBodyLimitMiddleware(app, 1)({"type": "websocket", "headers": []}, client.receive, client.send)
    assert seen == ["websocket"]


def test_negative_limit_is_refused() -> None:
    with pytest.raises(ValueError, match=r"max_body_size must be a non-negative number of bytes, got -1"):
        RequestBodyLimitMiddleware(read_all, -1)


def test_responder_properties_before_the_call() -> None:
    responder = RequestBodyLimitResponder(read_all, 10)
    for name in ("scope", "receive", "send"):
        with pytest.raises(RuntimeError, match=rf"RequestBodyLimitResponder.{name} is not set until"):
            getattr(responder, name)


async def test_responder_properties_during_the_call() -> None:
    responders: list[RequestBodyLimitResponder] = []

    class Recording(RequestBodyLimitResponder):
        async def receive_with_limit(self) -> Message:
            responders.append(self)
            return await super().receive_with_limit()

    client = Client(b"abc")
    scope = http_scope()
    await Recording(read_all, 10)(scope, client.receive, client.send)
    responder = responders[0]
    assert responder.scope is scope
    assert responder.total_size == 3
    assert responder.response_started


# -- one BodyLimit, with and without a RequestScope ------------------------------------------------


class WrapReceive:
    """A pure ASGI middleware that wraps ``receive`` (the limit then counts what the app receives)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def wrapped() -> Message:
            return await receive()

        await self.app(scope, wrapped, send)


class Setup:
    """One way to run ``RequestBodyLimitMiddleware(app, limit)``: its ``call`` returns the server's side."""

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return self.name

    async def call(self, app: ASGIApp, limit: int, client: Client, headers: list[tuple[bytes, bytes]]) -> Client:
        scope = http_scope(headers)
        if self.name == "no request scope":
            await RequestBodyLimitMiddleware(app, limit)(scope, client.receive, client.send)
            return client
        middleware = [Middleware(RequestBodyLimitMiddleware, max_body_size=limit)]
        if self.name == "request scope, receive wrapped":
            middleware.insert(0, Middleware(WrapReceive))
        triolette = Triolette(routes=[Mount("/", app=app)], middleware=middleware)
        await triolette({**scope, "root_path": "", "query_string": b""}, client.receive, client.send)
        return client


SETUPS = [Setup("no request scope"), Setup("request scope"), Setup("request scope, receive wrapped")]


def counted_by(scope: Scope) -> str:
    """Which object counted the body for the app: the RequestScope, or a responder of its own."""
    return "responder" if "triolette._body_limit_responder" in scope else "request scope"


@pytest.mark.parametrize("setup", SETUPS, ids=repr)
async def test_413_when_content_length_is_over_the_limit_before_anything_is_read(setup: Setup) -> None:
    seen: list[str] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        seen.append(counted_by(scope))
        await read_all(scope, receive, send)

    client = await setup.call(app, 10, Client(b"a" * 11), [(b"content-length", b"11")])
    assert client.status == 413
    assert client.sent[1]["body"] == b"Content Too Large"
    assert client.received == 0
    # The app runs and its first read is refused, as in Starlette: a layer further in could
    # still have put a looser limit in force (see test_an_inner_looser_limit_admits_...).
    assert seen == (["request scope"] if setup.name == "request scope" else ["responder"])


@pytest.mark.parametrize("setup", SETUPS, ids=repr)
async def test_413_when_the_counted_bytes_cross_the_limit(setup: Setup) -> None:
    seen: list[str] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        seen.append(counted_by(scope))
        await read_all(scope, receive, send)

    client = await setup.call(app, 12, Client(b"a" * 5, b"b" * 5, b"c" * 5, b"d" * 5), [])
    assert seen == (["request scope"] if setup.name == "request scope" else ["responder"])
    assert client.status == 413
    assert client.sent[1]["body"] == b"Content Too Large"
    assert client.received == 3  # stopped at the chunk that crossed it


@pytest.mark.parametrize("setup", SETUPS, ids=repr)
async def test_a_body_within_the_limit_reaches_the_app(setup: Setup) -> None:
    client = await setup.call(read_all, 12, Client(b"a" * 6, b"b" * 6), [(b"content-length", b"12")])
    assert client.status == 200
    assert client.sent[1]["body"] == b"12"


@pytest.mark.parametrize("setup", SETUPS, ids=repr)
async def test_a_stricter_inner_limit_rechecks_the_bytes_already_read(setup: Setup) -> None:
    ran: list[str] = []

    async def endpoint(scope: Scope, receive: Receive, send: Send) -> None:
        ran.append("endpoint")  # pragma: no cover - the 413 comes first
        await read_all(scope, receive, send)  # pragma: no cover

    async def reads_first(scope: Scope, receive: Receive, send: Send) -> None:
        await receive()  # 5 bytes read, then a layer with a limit of 3
        await RequestBodyLimitMiddleware(endpoint, 3)(scope, receive, send)

    client = await setup.call(reads_first, 100, Client(b"a" * 5, b"b"), [])
    assert client.status == 413
    assert client.sent[1]["body"] == b"Content Too Large"
    assert client.received == 1
    assert ran == []


async def test_a_limit_set_on_a_responder_applies_from_its_next_read() -> None:
    responders: list[RequestBodyLimitResponder] = []

    class Recording(RequestBodyLimitResponder):
        async def receive_with_limit(self) -> Message:
            responders.append(self)
            return await super().receive_with_limit()

    async def lower_the_limit(scope: Scope, receive: Receive, send: Send) -> None:
        await receive()
        responders[0].max_body_size = 3  # as Starlette's attribute: no error here
        assert responders[0].max_body_size == 3
        await receive()

    client = Client(b"a" * 5, b"b")
    await Recording(lower_the_limit, 100)(http_scope(), client.receive, client.send)
    assert client.status == 413
    assert responders[0].total_size == 6
    assert responders[0].content_length is None


async def test_in_an_app_a_limit_behind_a_wrapped_receive_rechecks_what_the_scope_read() -> None:
    ran: list[str] = []

    async def endpoint(scope: Scope, receive: Receive, send: Send) -> None:
        ran.append("endpoint")  # pragma: no cover - the 413 comes first
        await read_all(scope, receive, send)  # pragma: no cover

    async def reads_first(scope: Scope, receive: Receive, send: Send) -> None:
        await receive()  # 5 bytes, through a middleware's receive, before any limit of this layer
        await RequestBodyLimitMiddleware(endpoint, 3)(scope, receive, send)

    # No outer RequestBodyLimitMiddleware: only the RequestScope knows what was read.
    app = Triolette(routes=[Mount("/", app=reads_first)], middleware=[Middleware(WrapReceive)])
    client = Client(b"a" * 5, b"b")
    await app({**http_scope(), "root_path": "", "query_string": b""}, client.receive, client.send)
    assert client.status == 413
    assert client.received == 1
    assert ran == []
