"""WebSocket sessions for the synchronous TestClient (``client.websocket_connect``)."""

from __future__ import annotations

import contextlib
import json
import math
from collections.abc import Callable
from contextlib import AbstractContextManager
from types import TracebackType
from typing import Any

import httpx
import trio

from triolette._testing import Portal
from triolette.types import ASGIApp, Message, Scope
from triolette.websockets import WebSocketDisconnect


class WebSocketDenialResponse(httpx.Response, WebSocketDisconnect):  # type: ignore[misc]  # as Starlette: both a response and the exception
    """The app refused the WebSocket with an HTTP response (``send_denial_response``)."""


class _Connection:
    """The app's side of one connection, run in the portal's trio run."""

    def __init__(self, app: ASGIApp, scope: Scope) -> None:
        self.app = app
        self.scope = scope
        self.to_app, self._app_inbox = trio.open_memory_channel[Message](math.inf)
        self._to_client, self.from_app = trio.open_memory_channel[Message](math.inf)
        self.error: BaseException | None = None
        self.done = trio.Event()

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        try:
            await self.app(self.scope, self._app_inbox.receive, self._to_client.send)
        except BaseException as exc:
            self.error = exc
            if not isinstance(exc, Exception):
                raise
        finally:
            self._to_client.close()
            self.done.set()

    async def receive(self) -> Message:
        try:
            return await self.from_app.receive()
        except trio.EndOfChannel:
            await self.done.wait()
            if self.error is not None:
                raise self.error from None
            raise WebSocketDisconnect(1006, "The app ended without closing the connection.") from None

    async def finish(self) -> None:
        if not self.done.is_set():
            await self.to_app.send({"type": "websocket.disconnect", "code": 1000})
        await self.done.wait()


class WebSocketTestSession:
    """One test WebSocket connection: ``send_*``/``receive_*``/``close`` as in Starlette."""

    def __init__(self, app: ASGIApp, scope: Scope, portal_factory: Callable[[], AbstractContextManager[Portal]]) -> None:
        self.app = app
        self.scope = scope
        self.accepted_subprotocol: str | None = None
        self.extra_headers: list[tuple[bytes, bytes]] | None = None
        self._portal_factory = portal_factory
        self._stack = contextlib.ExitStack()
        self._connection = _Connection(app, scope)

    def __enter__(self) -> WebSocketTestSession:
        portal = self.portal = self._stack.enter_context(self._portal_factory())
        try:
            portal.start(self._connection.run)
            self.send({"type": "websocket.connect"})
            message = self.receive()
            self._raise_on_close(message)
        except BaseException:
            self._stack.close()
            raise
        self.accepted_subprotocol = message.get("subprotocol")
        self.extra_headers = message.get("headers")
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        try:
            self.portal.call(self._connection.finish)
        finally:
            self._stack.close()
        error = self._connection.error
        if error is not None and exc is None and not isinstance(error, WebSocketDisconnect):
            raise error

    def _raise_on_close(self, message: Message) -> None:
        if message["type"] == "websocket.close":
            raise WebSocketDisconnect(code=message.get("code", 1000), reason=message.get("reason", ""))
        if message["type"] == "websocket.http.response.start":
            status: int = message["status"]
            headers: list[tuple[bytes, bytes]] = message.get("headers", [])
            body = []
            while True:
                part = self.receive()
                if part["type"] != "websocket.http.response.body":
                    raise RuntimeError(f"Expected 'websocket.http.response.body', got {part['type']!r}")
                body.append(part.get("body", b""))
                if not part.get("more_body", False):
                    break
            raise WebSocketDenialResponse(status_code=status, headers=headers, content=b"".join(body))

    def send(self, message: Message) -> None:
        self.portal.call(self._connection.to_app.send, message)

    def send_text(self, data: str) -> None:
        self.send({"type": "websocket.receive", "text": data})

    def send_bytes(self, data: bytes) -> None:
        self.send({"type": "websocket.receive", "bytes": data})

    def send_json(self, data: Any, mode: str = "text") -> None:
        text = json.dumps(data, separators=(",", ":"), ensure_ascii=False)
        if mode == "text":
            self.send({"type": "websocket.receive", "text": text})
        else:
            self.send({"type": "websocket.receive", "bytes": text.encode("utf-8")})

    def close(self, code: int = 1000, reason: str | None = None) -> None:
        self.send({"type": "websocket.disconnect", "code": code, "reason": reason})

    def receive(self) -> Message:
        return self.portal.call(self._connection.receive)

    def receive_text(self) -> str:
        message = self.receive()
        self._raise_on_close(message)
        text: str = message["text"]
        return text

    def receive_bytes(self) -> bytes:
        message = self.receive()
        self._raise_on_close(message)
        data: bytes = message["bytes"]
        return data

    def receive_json(self, mode: str = "text") -> Any:
        message = self.receive()
        self._raise_on_close(message)
        text = message["text"] if mode == "text" else message["bytes"].decode("utf-8")
        return json.loads(text)
