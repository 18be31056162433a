"""Class-based endpoints: HTTP methods dispatched by name, WebSocket callbacks and decoding."""

from __future__ import annotations

from typing import Any

import pytest

from triolette.applications import Triolette
from triolette.endpoints import HTTPEndpoint, WebSocketEndpoint
from triolette.requests import Request
from triolette.responses import PlainTextResponse, Response
from triolette.routing import Route, Router, WebSocketRoute
from triolette.testclient import TestClient
from triolette.types import Message
from triolette.websockets import WebSocket, WebSocketDisconnect


class Homepage(HTTPEndpoint):
    async def get(self, request: Request) -> Response:
        username = request.path_params.get("username")
        return PlainTextResponse("Hello, world!" if username is None else f"Hello, {username}!")

    def post(self, request: Request) -> Response:  # a sync handler runs in a worker thread
        return PlainTextResponse("posted")


router = Router([Route("/", Homepage), Route("/{username}", Homepage)])
client = TestClient(router)


def test_http_endpoint_dispatches_by_method() -> None:
    assert client.get("/").text == "Hello, world!"
    assert client.get("/tomchristie").text == "Hello, tomchristie!"
    assert client.post("/").text == "posted"


def test_head_falls_back_to_get() -> None:
    response = client.head("/")
    assert response.status_code == 200
    assert response.headers["content-length"] == str(len("Hello, world!"))


def test_head_handler_is_used_when_defined() -> None:
    class WithHead(HTTPEndpoint):
        async def get(self, request: Request) -> Response:  # pragma: no cover - HEAD has its own
            return PlainTextResponse("get")

        async def head(self, request: Request) -> Response:
            return PlainTextResponse("", headers={"x-head": "1"})

    assert TestClient(Router([Route("/", WithHead)])).head("/").headers["x-head"] == "1"


def test_method_not_allowed_standalone_and_in_an_app() -> None:
    response = client.put("/")
    assert response.status_code == 405
    assert response.text == "Method Not Allowed"
    assert response.headers["allow"] == "GET, HEAD, POST"
    app_client = TestClient(Triolette(routes=[Route("/", Homepage)]))
    response = app_client.delete("/")
    assert (response.status_code, response.text) == (405, "Method Not Allowed")
    assert response.headers["allow"] == "GET, HEAD, POST"


@pytest.mark.parametrize("method", ["DISPATCH", "__INIT__", "METHOD_NOT_ALLOWED", "__AWAIT__", "RECEIVE"])
def test_only_http_methods_are_looked_up(method: str) -> None:
    """A method named after an attribute (DISPATCH, __INIT__) is a 405, never a call of it."""
    for test_client in (client, TestClient(Triolette(routes=[Route("/", Homepage)]))):
        response = test_client.request(method, "/")
        assert response.status_code == 405
        assert response.headers["allow"] == "GET, HEAD, POST"


async def test_lowercase_method_is_not_a_handler_name() -> None:
    sent: list[Message] = []

    async def send(message: Message) -> None:
        sent.append(message)

    async def receive() -> Message:  # pragma: no cover - the body is never read
        return {"type": "http.request", "body": b""}

    scope = {"type": "http", "method": "get", "path": "/", "headers": [], "query_string": b""}
    await Homepage(scope, receive, send)
    assert sent[0]["status"] == 405


def test_query_method_and_allow_header() -> None:
    class Searchable(HTTPEndpoint):
        async def query(self, request: Request) -> Response:
            return PlainTextResponse("query " + (await request.body()).decode())

    search = TestClient(Router([Route("/", Searchable)]))
    assert search.request("QUERY", "/", content=b"q=1").text == "query q=1"
    response = search.get("/")
    assert (response.status_code, response.headers["allow"]) == (405, "QUERY")
    assert client.options("/").headers["allow"] == "GET, HEAD, POST"


def test_http_endpoint_refuses_a_websocket_scope() -> None:
    with pytest.raises(ValueError, match="HTTPEndpoint handles 'http' scopes, got 'websocket'"):
        Homepage({"type": "websocket"}, None, None)  # type: ignore[arg-type]  # never called
    with pytest.raises(ValueError, match="WebSocketEndpoint handles 'websocket' scopes, got 'http'"):
        WebSocketEndpoint({"type": "http"}, None, None)  # type: ignore[arg-type]  # never called


def ws_client(endpoint: type[WebSocketEndpoint]) -> TestClient:
    return TestClient(Router([WebSocketRoute("/ws", endpoint)]))


def test_websocket_endpoint_bytes() -> None:
    class Echo(WebSocketEndpoint):
        encoding = "bytes"

        async def on_receive(self, websocket: WebSocket, data: Any) -> None:
            await websocket.send_bytes(b"Message bytes was: " + data)

    with ws_client(Echo).websocket_connect("/ws") as session:
        session.send_bytes(b"Hello, world!")
        assert session.receive_bytes() == b"Message bytes was: Hello, world!"

    session_context = ws_client(Echo).websocket_connect("/ws")
    expected = "Expected bytes websocket messages, but got text"
    with pytest.raises(RuntimeError, match=expected), session_context as session:  # noqa: PT012
        session.send_text("Hello world")
        session.receive()


def test_websocket_endpoint_text() -> None:
    class Echo(WebSocketEndpoint):
        encoding = "text"

        async def on_receive(self, websocket: WebSocket, data: Any) -> None:
            await websocket.send_text(f"Message text was: {data}")

    with ws_client(Echo).websocket_connect("/ws") as session:
        session.send_text("Hello, world!")
        assert session.receive_text() == "Message text was: Hello, world!"

    session_context = ws_client(Echo).websocket_connect("/ws")
    expected = "Expected text websocket messages, but got bytes"
    with pytest.raises(RuntimeError, match=expected), session_context as session:  # noqa: PT012
        session.send_bytes(b"Hello world")
        session.receive()


def test_websocket_endpoint_json() -> None:
    class Echo(WebSocketEndpoint):
        encoding = "json"

        async def on_receive(self, websocket: WebSocket, data: Any) -> None:
            await websocket.send_json({"message": data})

    with ws_client(Echo).websocket_connect("/ws") as session:
        session.send_json({"hello": "world"})
        assert session.receive_json() == {"message": {"hello": "world"}}
        session.send_json({"as": "bytes"}, mode="binary")
        assert session.receive_json() == {"message": {"as": "bytes"}}

    session_context = ws_client(Echo).websocket_connect("/ws")
    with pytest.raises(RuntimeError, match="Malformed JSON data received"), session_context as session:  # noqa: PT012
        session.send_text("{not json")
        session.receive()


def test_websocket_endpoint_without_encoding_passes_text_or_bytes() -> None:
    class Echo(WebSocketEndpoint):
        async def on_receive(self, websocket: WebSocket, data: Any) -> None:
            await websocket.send_text(repr(data))

    with ws_client(Echo).websocket_connect("/ws") as session:
        session.send_text("text")
        assert session.receive_text() == "'text'"
        session.send_bytes(b"raw")
        assert session.receive_text() == "b'raw'"


def test_websocket_endpoint_connect_and_disconnect_callbacks() -> None:
    codes: list[int] = []

    class Tracked(WebSocketEndpoint):
        async def on_connect(self, websocket: WebSocket) -> None:
            await websocket.accept(subprotocol="chat")

        async def on_disconnect(self, websocket: WebSocket, close_code: int) -> None:
            codes.append(close_code)

    with ws_client(Tracked).websocket_connect("/ws", subprotocols=["chat"]) as session:
        assert session.accepted_subprotocol == "chat"
        session.close(code=1001)
    assert codes == [1001]


def test_websocket_endpoint_error_reports_1011_to_on_disconnect() -> None:
    codes: list[int] = []

    class Failing(WebSocketEndpoint):
        encoding = "text"

        async def on_receive(self, websocket: WebSocket, data: Any) -> None:
            raise KeyError(data)

        async def on_disconnect(self, websocket: WebSocket, close_code: int) -> None:
            codes.append(close_code)

    with pytest.raises(KeyError, match="boom"), ws_client(Failing).websocket_connect("/ws") as session:  # noqa: PT012
        session.send_text("boom")
        session.receive()
    assert codes == [1011]


def test_websocket_endpoint_on_connect_can_refuse() -> None:
    class Refusing(WebSocketEndpoint):
        async def on_connect(self, websocket: WebSocket) -> None:
            await websocket.close(code=1008)

    with pytest.raises(WebSocketDisconnect) as info, ws_client(Refusing).websocket_connect("/ws"):
        pass  # pragma: no cover - the connect fails
    assert info.value.code == 1008


async def test_http_endpoint_request_can_send_early_hints() -> None:
    from tests.conftest import http_scope

    class Hinting(HTTPEndpoint):
        async def get(self, request: Request) -> Response:
            await request.send_early_hints("</style.css>; rel=preload")
            return PlainTextResponse("ok")

    scope = http_scope("/")
    scope["extensions"] = {"http.response.early_hint": {}}
    sent: list[Message] = []

    async def receive() -> Message:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Message) -> None:
        sent.append(message)

    await Router([Route("/", Hinting)])(scope, receive, send)
    assert sent[0] == {"type": "http.response.early_hint", "links": [b"</style.css>; rel=preload"]}
    assert sent[1]["status"] == 200
