"""WebSocketEndpoint: on_connect / on_receive / on_disconnect, decoding, as in Starlette."""

from __future__ import annotations

from typing import Any, Literal

import pytest

from triolette import status
from triolette.applications import Triolette
from triolette.endpoints import WebSocketEndpoint
from triolette.routing import WebSocketRoute
from triolette.testclient import TestClient
from triolette.websockets import WebSocket, WebSocketDisconnect


def client_for(endpoint: type[WebSocketEndpoint]) -> TestClient:
    return TestClient(Triolette(routes=[WebSocketRoute("/ws", endpoint)]))


class Echo(WebSocketEndpoint):
    async def on_receive(self, websocket: WebSocket, data: Any) -> None:
        await websocket.send_json({"type": type(data).__name__, "data": data if isinstance(data, str) else None})


def test_no_encoding_passes_text_and_bytes_through() -> None:
    with client_for(Echo) as client, client.websocket_connect("/ws") as session:
        session.send_text("hi")
        assert session.receive_json() == {"type": "str", "data": "hi"}
        session.send_bytes(b"\x01")
        assert session.receive_json() == {"type": "bytes", "data": None}


class Text(WebSocketEndpoint):
    encoding = "text"

    async def on_receive(self, websocket: WebSocket, data: str) -> None:
        await websocket.send_text(f"Message text was: {data}")


def test_text_encoding() -> None:
    with client_for(Text) as client, client.websocket_connect("/ws") as session:
        session.send_text("Hello, world!")
        assert session.receive_text() == "Message text was: Hello, world!"


def test_text_encoding_refuses_bytes_with_1003() -> None:
    with client_for(Text) as client:
        session = client.websocket_connect("/ws").__enter__()
        session.send_bytes(b"Hello world")
        with pytest.raises(WebSocketDisconnect) as closed:
            session.receive_text()
        assert closed.value.code == status.WS_1003_UNSUPPORTED_DATA
        with pytest.raises(RuntimeError, match="Expected text websocket messages, but got bytes"):
            session.__exit__(None, None, None)


class Bytes(WebSocketEndpoint):
    encoding = "bytes"

    async def on_receive(self, websocket: WebSocket, data: bytes) -> None:
        await websocket.send_bytes(b"Message bytes was: " + data)


def test_bytes_encoding() -> None:
    with client_for(Bytes) as client, client.websocket_connect("/ws") as session:
        session.send_bytes(b"Hello, world!")
        assert session.receive_bytes() == b"Message bytes was: Hello, world!"


def test_bytes_encoding_refuses_text() -> None:
    with client_for(Bytes) as client:
        session = client.websocket_connect("/ws").__enter__()
        session.send_text("Hello world")
        with pytest.raises(RuntimeError, match="Expected bytes websocket messages, but got text"):
            session.__exit__(None, None, None)


class Json(WebSocketEndpoint):
    encoding = "json"

    async def on_receive(self, websocket: WebSocket, data: Any) -> None:
        await websocket.send_json({"message": data})


def test_json_encoding_text_and_binary() -> None:
    with client_for(Json) as client, client.websocket_connect("/ws") as session:
        session.send_json({"hello": "world"})
        assert session.receive_json() == {"message": {"hello": "world"}}
        session.send_json({"hello": "binary"}, mode="binary")
        assert session.receive_json() == {"message": {"hello": "binary"}}


def test_json_encoding_refuses_malformed_json() -> None:
    with client_for(Json) as client:
        session = client.websocket_connect("/ws").__enter__()
        session.send_text("{not json")
        with pytest.raises(RuntimeError, match=r"^Malformed JSON data received\.$"):
            session.__exit__(None, None, None)


def test_on_connect_can_refuse_and_on_disconnect_gets_the_code() -> None:
    codes: list[int] = []

    class Picky(WebSocketEndpoint):
        async def on_connect(self, websocket: WebSocket) -> None:
            if websocket.query_params.get("token") != "secret":
                await websocket.close(code=status.WS_1008_POLICY_VIOLATION)
                return
            await websocket.accept()

        async def on_disconnect(self, websocket: WebSocket, close_code: int) -> None:
            codes.append(close_code)

    with client_for(Picky) as client:
        with pytest.raises(WebSocketDisconnect) as refused, client.websocket_connect("/ws"):
            pass  # pragma: no cover
        assert refused.value.code == status.WS_1008_POLICY_VIOLATION
        with client.websocket_connect("/ws?token=secret") as session:
            session.close(code=status.WS_1001_GOING_AWAY)
    assert codes[-1] == status.WS_1001_GOING_AWAY


def test_an_error_in_on_receive_gives_on_disconnect_1011_and_closes_with_1011() -> None:
    codes: list[int] = []

    class Broken(WebSocketEndpoint):
        async def on_receive(self, websocket: WebSocket, data: Any) -> None:
            raise LookupError("no such room")

        async def on_disconnect(self, websocket: WebSocket, close_code: int) -> None:
            codes.append(close_code)

    with client_for(Broken) as client:
        session = client.websocket_connect("/ws").__enter__()
        session.send_text("join")
        with pytest.raises(WebSocketDisconnect) as closed:
            session.receive_text()
        assert closed.value.code == status.WS_1011_INTERNAL_ERROR
        with pytest.raises(LookupError, match="no such room"):
            session.__exit__(None, None, None)
    assert codes == [status.WS_1011_INTERNAL_ERROR]


def test_the_endpoint_alone_as_an_asgi_app() -> None:
    client = TestClient(Text)  # no lifespan: the class only speaks WebSocket
    with client.websocket_connect("/anything") as session:
        session.send_text("bare")
        assert session.receive_text() == "Message text was: bare"


def test_the_endpoint_needs_a_websocket_scope() -> None:
    async def receive() -> Any:
        raise AssertionError("unreachable")  # pragma: no cover

    async def send(message: Any) -> None:
        raise AssertionError("unreachable")  # pragma: no cover

    with pytest.raises(ValueError, match="WebSocketEndpoint handles 'websocket' scopes, got 'http'"):
        Text({"type": "http"}, receive, send)


class _ClosingSocket:
    """Records the close code ``decode`` sends."""

    def __init__(self) -> None:
        self.closed: list[int] = []

    async def close(self, code: int = 1000, reason: str | None = None) -> None:
        self.closed.append(code)


def _endpoint(encoding: Literal["text", "bytes", "json"] | None) -> WebSocketEndpoint:
    async def never(*args: Any) -> Any:  # pragma: no cover - decode does not receive or send
        raise AssertionError("not called")

    endpoint = WebSocketEndpoint({"type": "websocket"}, never, never)
    endpoint.encoding = encoding
    return endpoint


@pytest.mark.parametrize(
    ("encoding", "message", "error"),
    [
        ("text", {"text": None, "bytes": b"hi"}, "Expected text websocket messages, but got bytes"),
        ("bytes", {"text": "hi", "bytes": None}, "Expected bytes websocket messages, but got text"),
    ],
)
async def test_decode_treats_a_key_whose_value_is_none_as_absent(
    encoding: Literal["text", "bytes"], message: dict[str, Any], error: str
) -> None:
    socket = _ClosingSocket()
    with pytest.raises(RuntimeError, match=f"^{error}$"):
        await _endpoint(encoding).decode(socket, {"type": "websocket.receive", **message})
    assert socket.closed == [status.WS_1003_UNSUPPORTED_DATA]


@pytest.mark.parametrize(
    ("message", "expected"),
    [
        ({"text": ""}, ""),
        ({"text": "", "bytes": None}, ""),
        ({"text": None, "bytes": b""}, b""),
        ({"bytes": b"\x00"}, b"\x00"),
    ],
)
async def test_decode_without_encoding_returns_empty_text_as_text(message: dict[str, Any], expected: Any) -> None:
    socket = _ClosingSocket()
    assert await _endpoint(None).decode(socket, {"type": "websocket.receive", **message}) == expected
    assert socket.closed == []


async def test_decode_json_reads_bytes_when_text_is_none() -> None:
    socket = _ClosingSocket()
    message = {"type": "websocket.receive", "text": None, "bytes": b'{"a": 1}'}
    assert await _endpoint("json").decode(socket, message) == {"a": 1}
