"""The test clients as Starlette 1.10's: ASGI 2 apps, trailers, debug info, lifespan re-entry, closing (issue 12)."""

from __future__ import annotations

from typing import Any

import pytest

from triolette import testclient
from triolette.testclient import ASGI2App, ASGIInstance, AsyncTestClient, TestClient
from triolette.types import Message, Receive, Scope, Send


def test_testclient_exports_asgi_instance_and_asgi2_app() -> None:
    assert {"ASGI2App", "ASGIInstance"} <= set(testclient.__all__)
    assert testclient.ASGIInstance is ASGIInstance
    assert testclient.ASGI2App is ASGI2App


# -- ASGI 2 apps --------------------------------------------------------------------------------


class ASGI2Echo:
    """An ASGI 2 app: constructed with the scope, then called with receive and send."""

    def __init__(self, scope: Scope) -> None:
        self.scope = scope

    async def __call__(self, receive: Receive, send: Send) -> None:
        if self.scope["type"] == "lifespan":
            for step in ("startup", "shutdown"):
                await receive()
                await send({"type": f"lifespan.{step}.complete"})
            return
        if self.scope["type"] == "websocket":
            await receive()  # websocket.connect
            await send({"type": "websocket.accept"})
            message = await receive()
            await send({"type": "websocket.send", "text": "asgi2: " + message["text"]})
            await send({"type": "websocket.close", "code": 1000})
            return
        body = b"asgi2 " + self.scope["path"].encode()
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
        await send({"type": "http.response.body", "body": body})


def asgi2_function(scope: Scope) -> ASGIInstance:
    async def instance(receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 201, "headers": []})
        await send({"type": "http.response.body", "body": b"function"})

    return instance


def test_asgi2_apps_work_in_the_test_client_http_and_websocket() -> None:
    client = TestClient(ASGI2Echo)
    response = client.get("/path")
    assert (response.status_code, response.text) == (200, "asgi2 /path")
    with client.websocket_connect("/ws") as websocket:
        websocket.send_text("hi")
        assert websocket.receive_text() == "asgi2: hi"
    response = TestClient(asgi2_function).get("/")  # type: ignore[arg-type]
    assert (response.status_code, response.text) == (201, "function")


async def test_asgi2_apps_work_in_the_async_test_client_http_and_websocket() -> None:
    async with AsyncTestClient(ASGI2Echo) as client:
        response = await client.get("/async")
        assert (response.status_code, response.text) == (200, "asgi2 /async")
        async with client.websocket_connect("/ws") as websocket:
            await websocket.send_text("hey")
            assert await websocket.receive_text() == "asgi2: hey"
    response = await AsyncTestClient(asgi2_function).get("/")  # type: ignore[arg-type]
    assert (response.status_code, response.text) == (201, "function")


_ = (Any, Message, pytest)
