"""The synchronous TestClient: requests, cookies, redirects, errors, scope options, lifespan, streaming."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
import trio

from triolette._conversation import ProtocolError
from triolette._testing import ResponseProtocolError
from triolette.applications import Triolette
from triolette.requests import Request
from triolette.responses import JSONResponse, PlainTextResponse, RedirectResponse, Response, StreamingResponse
from triolette.routing import Route
from triolette.testclient import TestClient
from triolette.types import Message, Receive, Scope, Send


async def scope_app(scope: Scope, receive: Receive, send: Send) -> None:
    request = Request(scope, receive)
    body = await request.body()
    await JSONResponse(
        {
            "method": scope["method"],
            "path": scope["path"],
            "raw_path": scope["raw_path"].decode(),
            "root_path": scope["root_path"],
            "query": scope["query_string"].decode(),
            "scheme": scope["scheme"],
            "server": list(scope["server"]),
            "client": list(scope["client"]),
            "http_version": scope["http_version"],
            "headers": {key.decode(): value.decode() for key, value in scope["headers"]},
            "body": body.decode(),
        }
    )(scope, receive, send)


client = TestClient(scope_app)


@pytest.mark.parametrize("method", ["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"])
def test_every_method(method: str) -> None:
    response = client.request(method, "/path")
    assert response.json()["method"] == method
    shortcut = getattr(client, method.lower())("/path")
    assert shortcut.json()["method"] == method


def test_head_has_no_body() -> None:
    response = client.head("/")
    assert response.status_code == 200
    assert response.content == b""
    assert int(response.headers["content-length"]) > 0


def test_the_scope_it_builds() -> None:
    data = client.get("/a%20b/c?x=1&y=%20").json()
    assert data["path"] == "/a b/c"
    assert data["raw_path"] == "/a%20b/c"
    assert data["query"] == "x=1&y=%20"
    assert data["scheme"] == "http"
    assert data["server"] == ["testserver", 80]
    assert data["client"] == ["testclient", 50000]
    assert data["http_version"] == "1.1"
    assert data["headers"]["host"] == "testserver"
    assert data["headers"]["user-agent"] == "testclient"


def test_request_bodies() -> None:
    assert client.post("/", content=b"raw").json()["body"] == "raw"
    assert client.post("/", json={"a": 1}).json()["body"] == '{"a":1}'
    assert client.post("/", data={"k": "v"}).json()["body"] == "k=v"
    files = client.post("/", files={"f": ("a.txt", b"file data")}).json()
    assert "file data" in files["body"]
    assert files["headers"]["content-type"].startswith("multipart/form-data; boundary=")


def test_base_url_root_path_client_and_headers() -> None:
    custom = TestClient(
        scope_app,
        base_url="https://example.org:8443",
        root_path="/api",
        client=("10.1.2.3", 1234),
        headers={"x-default": "1", "user-agent": "mine"},
    )
    data = custom.get("/api/items", headers={"x-extra": "2"}).json()
    assert data["scheme"] == "https"
    assert data["server"] == ["example.org", 8443]
    assert data["root_path"] == "/api"
    assert data["path"] == "/api/items"
    assert data["client"] == ["10.1.2.3", 1234]
    assert data["headers"]["host"] == "example.org:8443"
    assert data["headers"]["x-default"] == "1"
    assert data["headers"]["x-extra"] == "2"
    assert data["headers"]["user-agent"] == "mine"
    assert TestClient(scope_app, base_url="https://secure").get("/").json()["server"] == ["secure", 443]


def test_explicit_host_header_is_kept() -> None:
    assert client.get("/", headers={"host": "other.example"}).json()["headers"]["host"] == "other.example"


def cookie_app() -> Triolette:
    def set_cookie(request: Request) -> Response:
        response = PlainTextResponse("set")
        response.set_cookie("flavour", "oatmeal")
        return response

    def show(request: Request) -> Response:
        return JSONResponse(request.cookies)

    return Triolette(routes=[Route("/set", set_cookie), Route("/show", show)])


def test_cookies_persist_and_can_be_given() -> None:
    cookie_client = TestClient(cookie_app())
    cookie_client.get("/set")
    assert cookie_client.cookies["flavour"] == "oatmeal"
    assert cookie_client.get("/show").json() == {"flavour": "oatmeal"}
    given = TestClient(cookie_app(), cookies={"given": "1"})
    assert given.get("/show").json() == {"given": "1"}


def test_redirects_followed_or_not() -> None:
    def start(request: Request) -> Response:
        return RedirectResponse("/end", status_code=302)

    def end(request: Request) -> Response:
        return PlainTextResponse("end")

    app = Triolette(routes=[Route("/start", start), Route("/end", end)])
    response = TestClient(app).get("/start")
    assert (response.status_code, response.text, response.url.path) == (200, "end", "/end")
    assert [r.status_code for r in response.history] == [302]
    assert TestClient(app, follow_redirects=False).get("/start").status_code == 302
    assert TestClient(app).get("/start", follow_redirects=False).headers["location"] == "/end"


async def broken(scope: Scope, receive: Receive, send: Send) -> None:
    raise RuntimeError("server side")


def test_raise_server_exceptions() -> None:
    with pytest.raises(RuntimeError, match="server side"):
        TestClient(broken).get("/")
    response = TestClient(broken, raise_server_exceptions=False).get("/")
    assert response.status_code == 500


def test_error_after_the_response_started() -> None:
    async def fails_late(scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"partial", "more_body": True})
        raise RuntimeError("late failure")

    with pytest.raises(RuntimeError, match="late failure"):
        TestClient(fails_late).get("/")
    response = TestClient(fails_late, raise_server_exceptions=False).get("/")
    assert (response.status_code, response.content) == (200, b"partial")


def test_protocol_errors_of_the_app_are_reported() -> None:
    async def twice(scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.start", "status": 200, "headers": []})

    async def body_first(scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.body", "body": b"x"})

    with pytest.raises(RuntimeError, match=r'Received multiple "http\.response\.start" messages'):
        TestClient(twice).get("/")
    with pytest.raises(RuntimeError, match=r'Received "http\.response\.body" without "http\.response\.start"'):
        TestClient(body_first).get("/")


def test_lifespan_runs_with_the_client_and_state_reaches_requests() -> None:
    events: list[str] = []

    @asynccontextmanager
    async def lifespan(app: Triolette) -> AsyncIterator[dict[str, Any]]:
        events.append("startup")
        yield {"db": "connected"}
        events.append("shutdown")

    def show(request: Request) -> Response:
        return PlainTextResponse(request.state.db)

    app = Triolette(routes=[Route("/", show)], lifespan=lifespan)
    with TestClient(app) as lifespan_client:
        assert events == ["startup"]
        assert lifespan_client.get("/").text == "connected"
        assert lifespan_client.get("/").text == "connected"
    assert events == ["startup", "shutdown"]
    # Without the with-block, no lifespan runs.
    plain = TestClient(Triolette(lifespan=lifespan))
    assert plain.get("/nowhere").status_code == 404
    assert events == ["startup", "shutdown"]


def test_requests_in_a_with_block_share_one_trio_run() -> None:
    tokens: list[Any] = []

    async def atoken(request: Request) -> Response:
        tokens.append(trio.lowlevel.current_trio_token())
        return PlainTextResponse("")

    app = Triolette(routes=[Route("/", atoken)])
    with TestClient(app) as shared:
        shared.get("/")
        shared.get("/")
    assert tokens[0] is tokens[1]
    separate = TestClient(app)
    separate.get("/")
    separate.get("/")
    assert tokens[2] is not tokens[3]


def test_stream_yields_chunks_as_the_app_sends_them() -> None:
    produced: list[int] = []
    finished: list[str] = []

    async def numbers() -> AsyncIterator[bytes]:
        try:
            for n in range(1000):
                produced.append(n)
                yield b"%d," % n
        finally:
            finished.append("closed")

    stream_client = TestClient(Triolette(routes=[Route("/", lambda request: StreamingResponse(numbers()))]))
    with stream_client.stream("GET", "/") as response:
        assert response.status_code == 200
        chunks = response.iter_raw()
        assert next(chunks) == b"0,"
        assert next(chunks) == b"1,"
    assert finished == ["closed"]  # the app's generator was closed before the block was left
    assert produced[:2] == [0, 1]


def test_stream_read_to_the_end() -> None:
    async def body() -> AsyncIterator[bytes]:
        yield b"a"
        yield b"b"

    stream_client = TestClient(Triolette(routes=[Route("/", lambda request: StreamingResponse(body()))]))
    with stream_client.stream("GET", "/") as response:
        assert response.read() == b"ab"


def test_the_app_sees_a_disconnect_after_the_response() -> None:
    seen: list[Message] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await receive()  # the request body
        await PlainTextResponse("done")(scope, receive, send)
        seen.append(await receive())

    assert TestClient(app).get("/").text == "done"
    assert seen == [{"type": "http.disconnect"}]


def test_testclient_is_not_collected_by_pytest() -> None:
    assert TestClient.__test__ is False


# -- the order of the app's messages: the Outbox table, in Starlette's client's words --------------

START: Message = {"type": "http.response.start", "status": 200, "headers": []}
START_WITH_TRAILERS: Message = {**START, "trailers": True}
BODY: Message = {"type": "http.response.body", "body": b"x"}
MORE: Message = {"type": "http.response.body", "body": b"x", "more_body": True}
TRAILERS: Message = {"type": "http.response.trailers", "headers": []}

RESPONSE_OUT_OF_ORDER = [
    ([START, START], 'Received multiple "http.response.start" messages.'),
    ([START, BODY, START], 'Received multiple "http.response.start" messages.'),
    ([BODY], 'Received "http.response.body" without "http.response.start".'),
    ([START, BODY, BODY], 'Received "http.response.body" after response completed.'),
    ([START_WITH_TRAILERS, BODY, BODY], 'Received "http.response.body" after body completed.'),
    ([START_WITH_TRAILERS, BODY, TRAILERS, BODY], 'Received "http.response.body" after response completed.'),
    ([TRAILERS], 'Received "http.response.trailers" without declaring trailers.'),
    ([START, TRAILERS], 'Received "http.response.trailers" without declaring trailers.'),
    ([START, BODY, TRAILERS], 'Received "http.response.trailers" without declaring trailers.'),
    ([START_WITH_TRAILERS, MORE, TRAILERS], 'Received "http.response.trailers" before body completed.'),
    ([START_WITH_TRAILERS, BODY, TRAILERS, TRAILERS], 'Received "http.response.trailers" after response completed.'),
    (  # Starlette's client has no words for these: the table's own, naming the state
        [START, BODY, {"type": "http.response.debug", "info": {}}],
        "Unexpected ASGI message 'http.response.debug' after the response is complete: nothing more may be sent.",
    ),
    (
        [{"type": "http.response.zerocopysend", "file": 3}],
        'Expected ASGI message "http.response.start", "http.response.early_hint", "http.response.debug" or '
        """"http.response.push" before the response start, but got 'http.response.zerocopysend'""",
    ),
]


def sends(*messages: Message) -> Any:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        for message in messages:
            await send(message)

    return app


@pytest.mark.parametrize(("messages", "text"), RESPONSE_OUT_OF_ORDER)
def test_testclient_refuses_each_response_message_out_of_order(messages: list[Message], text: str) -> None:
    with pytest.raises(ResponseProtocolError) as info:
        TestClient(sends(*messages)).get("/")
    assert str(info.value) == text
    assert isinstance(info.value, ProtocolError)  # as the server's RequestScope raises
    assert isinstance(info.value, RuntimeError)
    assert isinstance(info.value, AssertionError)  # as Starlette's client asserts


def test_testclient_reports_a_response_in_order_to_the_end() -> None:
    app = sends(
        {"type": "http.response.debug", "info": {"template": "t.html"}},
        START_WITH_TRAILERS,
        MORE,
        {"type": "http.response.early_hint", "links": []},
        BODY,
        {"type": "http.response.trailers", "headers": [(b"x-one", b"1")], "more_trailers": True},
        {"type": "http.response.trailers", "headers": [(b"x-two", b"2")]},
    )
    response = TestClient(app).get("/")
    assert response.content == b"xx"
    assert response.extensions["http.response.trailers"] == [(b"x-one", b"1"), (b"x-two", b"2")]
    assert response.extensions["http.response.debug"] == {"template": "t.html"}
