"""Requests: the connection's URL, headers, cookies and state; the body read once, through the scope."""

from __future__ import annotations

import json
from typing import Any

import pytest
import trio

from tests.conftest import minimal_http_scope as http_scope
from triolette._scope import run_in_request_scope
from triolette.applications import Triolette
from triolette.background import BackgroundTask
from triolette.datastructures import Address, State
from triolette.formparsers import MultiPartException
from triolette.requests import (
    ClientDisconnect,
    HTTPConnection,
    JSONNestingError,
    Request,
    cookie_parser,
    empty_receive,
    empty_send,
)
from triolette.responses import JSONResponse, PlainTextResponse, Response
from triolette.routing import Mount, Route, Router
from triolette.testclient import TestClient
from triolette.types import Message, Receive, Scope, Send


def receiving(*messages: Message) -> Receive:
    """A fake ``receive`` that hands out ``messages`` in order, then waits forever."""
    pending = list(messages)

    async def receive() -> Message:
        if pending:
            await trio.lowlevel.checkpoint()
            return pending.pop(0)
        await trio.sleep_forever()
        raise AssertionError("unreachable")  # pragma: no cover

    return receive


def echo_app(handler: Any) -> Any:
    """An ASGI app answering with ``await handler(request)`` as JSON."""

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        request = Request(scope, receive, send)
        await JSONResponse(await handler(request))(scope, receive, send)

    return app


# --------------------------------------------------------------------------- cookie_parser


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("", {}),
        ("chips=ahoy; vienna=finger", {"chips": "ahoy", "vienna": "finger"}),
        ("keebler=E=mc2", {"keebler": "E=mc2"}),
        ("key:term=value:term", {"key:term": "value:term"}),
        ("a=b; ; c=d", {"a": "b", "c": "d"}),
        ("novalue", {"": "novalue"}),
        ("  spaced  =  out  ", {"spaced": "out"}),
        ('quoted="a\\"b"', {"quoted": 'a"b'}),
        ('octal="\\012"', {"octal": "\n"}),
        ("a=1; a=2", {"a": "2"}),
        ("=", {}),
        ("name=", {"name": ""}),
        ("ünïcode=välue", {"ünïcode": "välue"}),
    ],
)
def test_cookie_parser(header: str, expected: dict[str, str]) -> None:
    assert cookie_parser(header) == expected


# --------------------------------------------------------------------------- HTTPConnection


def test_connection_refuses_other_scope_types() -> None:
    with pytest.raises(ValueError, match="'http' or 'websocket' scope, got 'lifespan'"):
        HTTPConnection({"type": "lifespan"})
    with pytest.raises(ValueError, match="Request needs an 'http' scope, got 'websocket'"):
        Request({"type": "websocket"})


def test_connection_is_a_read_only_mapping_of_its_scope() -> None:
    scope = http_scope()
    conn = HTTPConnection(scope)
    assert conn["method"] == "GET"
    assert len(conn) == len(scope)
    assert set(conn) == set(scope)
    assert dict(conn) == scope
    # Equality is identity, as in Starlette; connections hash.
    assert conn != HTTPConnection(scope)
    assert conn == conn
    assert hash(conn) == hash(conn)


def test_url_parts() -> None:
    scope = http_scope(
        scheme="https",
        server=("example.org", 443),
        path="/sub/users/7",
        root_path="/sub",
        query_string=b"a=1&a=2&b=%20x",
        headers=[(b"host", b"example.org"), (b"x-multi", b"1"), (b"x-multi", b"2")],
        client=("10.0.0.1", 1234),
        path_params={"id": 7},
        app="the app",
    )
    conn = HTTPConnection(scope)
    assert conn.app == "the app"
    assert str(conn.url) == "https://example.org/sub/users/7?a=1&a=2&b=%20x"
    assert conn.url is conn.url  # computed once
    assert str(conn.base_url) == "https://example.org/sub/"
    assert conn.base_url is conn.base_url
    assert conn.query_params.getlist("a") == ["1", "2"]
    assert conn.query_params["b"] == " x"
    assert conn.query_params is conn.query_params
    assert conn.headers.getlist("x-multi") == ["1", "2"]
    assert conn.headers is conn.headers
    assert conn.client == Address("10.0.0.1", 1234)
    assert conn.client.host == "10.0.0.1"
    assert conn.client.port == 1234
    assert conn.path_params == {"id": 7}


def test_base_url_uses_app_root_path_when_mounted() -> None:
    scope = http_scope(path="/mount/inner/x", root_path="/mount/inner", app_root_path="/mount")
    assert str(HTTPConnection(scope).base_url) == "http://testserver/mount/"
    assert str(HTTPConnection(http_scope(root_path="/trailing/")).base_url) == "http://testserver/trailing/"


def test_missing_optional_parts() -> None:
    conn = HTTPConnection(http_scope())
    assert conn.client is None
    assert conn.path_params == {}
    assert conn.cookies == {}
    with pytest.raises(RuntimeError, match="url_for` method can only be used inside a Triolette application"):
        conn.url_for("home")
    with pytest.raises(RuntimeError, match=r"request.nursery is only available while a triolette app handles"):
        _ = conn.nursery


def test_cookies_come_from_the_cookie_header() -> None:
    conn = HTTPConnection(http_scope(headers=[(b"cookie", b"a=1; b=two")]))
    assert conn.cookies == {"a": "1", "b": "two"}
    assert conn.cookies is conn.cookies


@pytest.mark.parametrize(
    ("attribute", "middleware"),
    [("session", "SessionMiddleware"), ("auth", "AuthenticationMiddleware"), ("user", "AuthenticationMiddleware")],
)
def test_middleware_dependent_attributes_say_what_to_install(attribute: str, middleware: str) -> None:
    with pytest.raises(AssertionError, match=f"{middleware} must be installed to access request.{attribute}"):
        getattr(HTTPConnection(http_scope()), attribute)
    scope = http_scope(**{attribute: "present"})
    assert getattr(HTTPConnection(scope), attribute) == "present"


def test_state_is_shared_through_the_scope() -> None:
    scope = http_scope()
    first = HTTPConnection(scope)
    first.state.colour = "red"
    assert isinstance(first.state, State)
    assert first.state is first.state
    assert HTTPConnection(scope).state.colour == "red"
    assert scope["state"] == {"colour": "red"}


def test_url_for_through_the_router_or_the_app() -> None:
    def user(request: Request) -> Response:
        return PlainTextResponse(str(request.url_for("user", id=request.path_params["id"] + 1)))

    app = Triolette(routes=[Mount("/api", routes=[Route("/users/{id:int}", user)])])
    client = TestClient(app, base_url="https://example.org")
    # The outermost router resolves the name, so the mount prefix is included.
    assert client.get("/api/users/1").text == "https://example.org/api/users/2"

    router_only = Router([Route("/users/{id:int}", user)])
    assert TestClient(router_only).get("/users/5").text == "http://testserver/users/6"


async def test_empty_receive_and_send_say_there_is_no_channel() -> None:
    with pytest.raises(RuntimeError, match="Receive channel has not been made available"):
        await empty_receive()
    with pytest.raises(RuntimeError, match="Send channel has not been made available"):
        await empty_send({"type": "http.response.start"})
    request = Request(http_scope())
    assert request.receive is empty_receive
    with pytest.raises(RuntimeError, match="Receive channel has not been made available"):
        await request.body()


# --------------------------------------------------------------------------- the body, without an app


async def test_stream_yields_chunks_then_an_empty_end() -> None:
    receive = receiving(
        {"type": "http.request", "body": b"ab", "more_body": True},
        {"type": "http.request", "body": b"", "more_body": True},
        {"type": "http.request", "body": b"cd", "more_body": False},
    )
    request = Request(http_scope(method="POST"), receive)
    assert request.method == "POST"
    assert [chunk async for chunk in request.stream()] == [b"ab", b"cd", b""]
    with pytest.raises(RuntimeError, match="Stream consumed"):
        [chunk async for chunk in request.stream()]


DEEP_JSON = {"arrays": b"[" * 100_000 + b"]" * 100_000, "objects": b'{"a":' * 100_000 + b"1" + b"}" * 100_000}


@pytest.mark.parametrize("kind", DEEP_JSON)
async def test_json_nested_100k_deep_is_a_value_error(kind: str) -> None:
    """Issue 13, item 4: a JSONDecodeError (a ValueError) with a clear message, not a RecursionError."""
    request = Request(http_scope(method="POST"), receiving({"type": "http.request", "body": DEEP_JSON[kind]}))
    with pytest.raises(JSONNestingError, match=r"^JSON body nested too deeply: .* send a flatter document\.$") as info:
        await request.json()
    assert isinstance(info.value, json.JSONDecodeError)
    assert isinstance(info.value, ValueError)
    assert info.value.__cause__ is None


@pytest.mark.parametrize("kind", DEEP_JSON)
def test_json_nested_100k_deep_is_400_where_the_endpoint_catches_value_error(kind: str) -> None:
    async def endpoint(request: Request) -> Response:
        try:
            return JSONResponse(await request.json())
        except ValueError as exc:
            return PlainTextResponse(str(exc), status_code=400)

    client = TestClient(Triolette(routes=[Route("/", endpoint, methods=["POST"])]))
    response = client.post("/", content=DEEP_JSON[kind], headers={"content-type": "application/json"})
    assert response.status_code == 400
    assert response.text.startswith("JSON body nested too deeply: Python parses arrays and objects at most about ")


async def test_body_then_stream_replays_the_body() -> None:
    receive = receiving({"type": "http.request", "body": b'{"a": [1, 2]}'})
    request = Request(http_scope(method="POST"), receive)
    assert await request.json() == {"a": [1, 2]}
    assert await request.json() is await request.json()
    assert await request.body() == b'{"a": [1, 2]}'
    assert [chunk async for chunk in request.stream()] == [b'{"a": [1, 2]}', b""]


async def test_disconnect_while_reading_raises_client_disconnect() -> None:
    receive = receiving(
        {"type": "http.request", "body": b"partial", "more_body": True},
        {"type": "http.disconnect"},
    )
    request = Request(http_scope(method="POST"), receive)
    with pytest.raises(ClientDisconnect):
        await request.body()
    assert await request.is_disconnected()


async def test_is_disconnected_without_a_scope_does_not_block() -> None:
    with trio.fail_after(1):
        assert not await Request(http_scope(), receiving()).is_disconnected()
        assert await Request(http_scope(), receiving({"type": "http.disconnect"})).is_disconnected() is False
        # A receive that answers without a checkpoint is seen.

        async def instant() -> Message:
            return {"type": "http.disconnect"}

        assert await Request(http_scope(), instant).is_disconnected()


# --------------------------------------------------------------------------- the body, through the RequestScope


class Exchange:
    """A fake server: feeds body messages, then disconnects when told; collects what is sent."""

    def __init__(self, *body: bytes, declared: int | None = None) -> None:
        self.body = list(body)
        self.sent: list[Message] = []
        self.gone = trio.Event()
        self.receive_calls = 0
        self.headers = [(b"host", b"testserver")]
        if declared is not None:
            self.headers.append((b"content-length", str(declared).encode()))

    async def receive(self) -> Message:
        self.receive_calls += 1
        if self.body:
            chunk = self.body.pop(0)
            await trio.lowlevel.checkpoint()
            return {"type": "http.request", "body": chunk, "more_body": bool(self.body)}
        await self.gone.wait()
        return {"type": "http.disconnect"}

    async def send(self, message: Message) -> None:
        self.sent.append(message)
        if message["type"] == "http.response.body" and not message.get("more_body", False):
            self.gone.set()

    @property
    def status(self) -> int:
        return int(self.sent[0]["status"])

    @property
    def response_body(self) -> bytes:
        return b"".join(m.get("body", b"") for m in self.sent if m["type"] == "http.response.body")

    async def run(self, app: Any, **scope: Any) -> None:
        with trio.fail_after(5):
            scope = http_scope(method="POST", headers=self.headers, **scope)
            await run_in_request_scope(app, scope, self.receive, self.send)


async def test_body_is_read_once_for_every_request_object() -> None:
    seen: list[bytes] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        first = Request(scope, receive, send)
        seen.append(await first.body())
        second = Request(scope, receive, send)
        seen.append(await second.body())
        seen.append(b"|".join([chunk async for chunk in Request(scope, receive, send).stream()]))
        await Response(b"ok")(scope, receive, send)

    exchange = Exchange(b"one", b"two")
    await exchange.run(app)
    assert seen == [b"onetwo", b"onetwo", b"onetwo|"]
    assert exchange.receive_calls == 2  # the two chunks, each once (the watcher stops with the response)


async def test_stream_then_body_elsewhere_is_refused() -> None:
    errors: list[str] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        streamed = [chunk async for chunk in Request(scope, receive, send).stream()]
        assert streamed == [b"a", b"b", b""]
        other = Request(scope, receive, send)
        with pytest.raises(RuntimeError, match="Stream consumed") as info:
            await other.body()
        errors.append(str(info.value))
        await Response(b"ok")(scope, receive, send)

    exchange = Exchange(b"a", b"b")
    await exchange.run(app)
    assert errors == ["Stream consumed"]
    assert exchange.status == 200


async def test_body_through_a_wrapped_receive_reads_messages_itself() -> None:
    wrapped_calls = 0

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        async def wrapped() -> Message:
            nonlocal wrapped_calls
            wrapped_calls += 1
            return await receive()

        request = Request(scope, wrapped, send)
        await PlainTextResponse((await request.body()).decode())(scope, receive, send)

    exchange = Exchange(b"x", b"y", b"z")
    await exchange.run(app)
    assert exchange.response_body == b"xyz"
    assert wrapped_calls == 3


async def test_client_disconnect_through_the_scope() -> None:
    outcome: list[str] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        request = Request(scope, receive, send)
        try:
            await request.body()
        except ClientDisconnect:
            outcome.append("disconnect")
            outcome.append(str(await request.is_disconnected()))

    class Leaving(Exchange):
        async def receive(self) -> Message:
            self.receive_calls += 1
            await trio.lowlevel.checkpoint()
            if self.receive_calls == 1:
                return {"type": "http.request", "body": b"part", "more_body": True}
            return {"type": "http.disconnect"}

    exchange = Leaving()
    await exchange.run(app)
    assert outcome == ["disconnect", "True"]


async def test_stream_disconnect_through_the_scope() -> None:
    outcome: list[str] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        request = Request(scope, receive, send)
        with pytest.raises(ClientDisconnect):
            async for _ in request.stream():
                pass
        outcome.append("raised")

    async def receive() -> Message:
        await trio.lowlevel.checkpoint()
        return {"type": "http.disconnect"}

    async def send(message: Message) -> None:
        raise AssertionError("nothing is sent")  # pragma: no cover

    with trio.fail_after(5):
        await run_in_request_scope(app, http_scope(method="POST"), receive, send)
    assert outcome == ["raised"]


async def test_is_disconnected_answers_from_the_watcher(autojump_clock: trio.abc.Clock) -> None:
    answers: list[bool] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        request = Request(scope, receive, send)
        answers.append(await request.is_disconnected())
        with trio.CancelScope(shield=True):
            await trio.sleep(1)  # the client leaves meanwhile
            answers.append(await request.is_disconnected())

    async def receive() -> Message:
        await trio.sleep(0.5)
        return {"type": "http.disconnect"}

    async def send(message: Message) -> None:  # pragma: no cover - nothing is sent
        pass

    with trio.fail_after(5):
        await run_in_request_scope(app, http_scope(), receive, send)
    assert answers == [False, True]


# --------------------------------------------------------------------------- forms, push, early hints


def form_app(**limits: Any) -> Any:
    async def handler(request: Request) -> Any:
        async with request.form(**limits) as form:
            return {key: str(value) if isinstance(value, str) else value.filename for key, value in form.multi_items()}

    return echo_app(handler)


def test_form_urlencoded_and_multipart_and_other() -> None:
    client = TestClient(form_app())
    assert client.post("/", data={"a": "1", "b": "x y"}).json() == {"a": "1", "b": "x y"}
    response = client.post("/", data={"field": "v"}, files={"upload": ("f.txt", b"data", "text/plain")})
    assert response.json() == {"field": "v", "upload": "f.txt"}
    assert client.post("/", content=b"{}", headers={"content-type": "application/json"}).json() == {}
    assert client.post("/", content=b"a=1").json() == {}


def test_form_limit_inside_an_app_is_a_400() -> None:
    app = Triolette(routes=[Mount("/", app=form_app(max_files=0))])
    response = TestClient(app).post("/", files={"f": ("f.txt", b"x")})
    assert response.status_code == 400
    assert response.text == "Too many files. Maximum number of files is 0."


def test_form_limit_outside_an_app_raises() -> None:
    client = TestClient(form_app(max_fields=1))
    with pytest.raises(MultiPartException, match=r"Too many fields\. Maximum number of fields is 1\."):
        client.post("/", files={"f": ("f.txt", b"x")}, data={"a": "1", "b": "2"})


async def test_form_is_parsed_once_and_closed() -> None:
    receive = receiving({"type": "http.request", "body": b"a=1"})
    request = Request(http_scope(headers=[(b"content-type", b"application/x-www-form-urlencoded")]), receive)
    form = await request.form()
    assert await request.form() is form
    assert form["a"] == "1"
    await request.close()
    await Request(http_scope()).close()  # nothing parsed: nothing to close


async def test_push_promise_and_early_hints_only_where_supported() -> None:
    sent: list[Message] = []

    async def send(message: Message) -> None:
        sent.append(message)

    plain = Request(http_scope(headers=[(b"accept", b"text/html")]), receiving(), send)
    await plain.send_push_promise("/style.css")
    await plain.send_early_hints("</style.css>; rel=preload")
    assert sent == []

    extensions: dict[str, dict[str, Any]] = {"http.response.push": {}, "http.response.early_hint": {}}
    headers = [(b"accept", b"text/html"), (b"accept-language", b"fr"), (b"cookie", b"secret=1")]
    capable = Request(http_scope(headers=headers, extensions=extensions), receiving(), send)
    await capable.send_push_promise("/style.css")
    await capable.send_early_hints("</a.css>; rel=preload", "</b.js>; rel=preload")
    push, hint = sent
    assert push["type"] == "http.response.push"
    assert push["path"] == "/style.css"
    assert sorted(push["headers"]) == [(b"accept", b"text/html"), (b"accept-language", b"fr")]
    assert hint == {"type": "http.response.early_hint", "links": [b"</a.css>; rel=preload", b"</b.js>; rel=preload"]}


def test_request_nursery_runs_tasks_inside_the_request() -> None:
    finished: list[str] = []

    async def handler(request: Request) -> Response:
        async def job() -> None:
            await trio.lowlevel.checkpoint()
            finished.append("job")

        request.nursery.start_soon(job)
        return PlainTextResponse("started")

    client = TestClient(Triolette(routes=[Route("/", handler)]))
    assert client.get("/").text == "started"
    assert finished == ["job"]


async def test_uppercase_ipvfuture_host_header_falls_back_to_the_server_address() -> None:
    # Security: "[V1.foo]" made urllib raise ValueError, so any endpoint touching request.url answered 500.
    async def endpoint(request: Request) -> Response:
        return PlainTextResponse(f"{request.url} {request.url.path} {request.base_url}")

    app = Triolette(routes=[Route("/p", endpoint)])
    sent: list[Message] = []

    async def send(message: Message) -> None:
        sent.append(message)

    scope = http_scope(path="/p", headers=[(b"host", b"[V1.foo]")], server=("example.com", 80))
    await app(scope, receiving({"type": "http.request", "body": b""}), send)
    assert sent[0]["status"] == 200
    assert sent[1]["body"] == b"http://example.com/p /p http://example.com/"


def test_cookies_merge_every_cookie_header_later_names_override() -> None:
    scope = http_scope(headers=[(b"cookie", b"a=1; b=2"), (b"host", b"testserver"), (b"cookie", b"b=3; c=4")])
    assert Request(scope).cookies == {"a": "1", "b": "3", "c": "4"}
    assert Request(http_scope(headers=[])).cookies == {}


def test_request_is_disconnected_once_the_response_is_complete() -> None:
    # As in Starlette: the request is over for the app once its response is complete (a
    # server's receive() then answers http.disconnect), also in the response's background work.
    seen: list[bool] = []

    async def check(request: Request) -> None:
        seen.append(await request.is_disconnected())

    async def endpoint(request: Request) -> Response:
        seen.append(await request.is_disconnected())
        return PlainTextResponse("ok", background=BackgroundTask(check, request))

    client = TestClient(Triolette(routes=[Route("/", endpoint)]))
    assert client.get("/").text == "ok"
    assert seen == [False, True]


async def test_a_receive_that_returns_no_message_is_a_type_error_that_says_so() -> None:
    async def endpoint(request: Request) -> Response:
        await request.body()
        return Response("unreachable")  # pragma: no cover

    async def receive() -> Any:
        return None  # a broken server or test harness

    sent: list[Message] = []

    async def send(message: Message) -> None:
        sent.append(message)

    app = Triolette(routes=[Route("/", endpoint, methods=["POST"])])
    with trio.fail_after(5), pytest.raises(TypeError, match=r"^receive\(\) returned None, not an ASGI message"):
        await app(http_scope(method="POST", headers=[(b"content-length", b"1")]), receive, send)
    assert sent[0]["status"] == 500
