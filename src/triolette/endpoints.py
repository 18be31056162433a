"""Class-based endpoints: one method per HTTP method, or WebSocket callbacks."""

from __future__ import annotations

import json
from typing import Any, Literal

from triolette._utils import is_async_callable
from triolette.concurrency import run_in_threadpool
from triolette.exceptions import HTTPException
from triolette.requests import Request
from triolette.responses import PlainTextResponse, Response
from triolette.types import Message, Receive, Scope, Send

__all__ = ["HTTPEndpoint", "WebSocketEndpoint"]

_HTTP_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "QUERY")


class HTTPEndpoint:
    """An ASGI app that answers each HTTP method with the method of the same name (``get``, ``post``…).

    Only the standard HTTP methods are looked up: a request with the method ``DISPATCH``
    or ``__INIT__`` gets a 405, never a call of an attribute of that name.
    """

    def __init__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            raise ValueError(f"HTTPEndpoint handles 'http' scopes, got {scope['type']!r}")
        self.scope = scope
        self.receive = receive
        self.send = send
        has_get = getattr(self, "get", None) is not None
        self._allowed_methods = [
            m for m in _HTTP_METHODS if getattr(self, m.lower(), None) is not None or (m == "HEAD" and has_get)
        ]

    def __await__(self) -> Any:
        return self.dispatch().__await__()

    async def dispatch(self) -> None:
        request = Request(self.scope, receive=self.receive, send=self.send)
        method = request.method
        if method == "HEAD" and getattr(self, "head", None) is None:
            method = "GET"
        handler: Any = getattr(self, method.lower(), None) if method in _HTTP_METHODS else None
        if handler is None:
            handler = self.method_not_allowed
        if is_async_callable(handler):
            response = await handler(request)
        else:
            response = await run_in_threadpool(handler, request)
        await response(self.scope, self.receive, self.send)

    async def method_not_allowed(self, request: Request) -> Response:
        headers = {"Allow": ", ".join(self._allowed_methods)}
        if "app" in self.scope:
            raise HTTPException(status_code=405, headers=headers)
        return PlainTextResponse("Method Not Allowed", status_code=405, headers=headers)


class WebSocketEndpoint:
    """An ASGI app for a WebSocket: ``on_connect``, ``on_receive`` per message, ``on_disconnect``.

    ``encoding`` ("text", "bytes", "json" or None) decodes each message for ``on_receive``;
    a message of the wrong kind closes the connection with 1003.
    """

    encoding: Literal["text", "bytes", "json"] | None = None

    def __init__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "websocket":
            raise ValueError(f"WebSocketEndpoint handles 'websocket' scopes, got {scope['type']!r}")
        self.scope = scope
        self.receive = receive
        self.send = send

    def __await__(self) -> Any:
        return self.dispatch().__await__()

    async def dispatch(self) -> None:
        from triolette import status
        from triolette.websockets import WebSocket

        websocket = WebSocket(self.scope, receive=self.receive, send=self.send)
        await self.on_connect(websocket)
        close_code = status.WS_1000_NORMAL_CLOSURE
        try:
            while True:
                message = await websocket.receive()
                if message["type"] == "websocket.receive":
                    data = await self.decode(websocket, message)
                    await self.on_receive(websocket, data)
                elif message["type"] == "websocket.disconnect":
                    close_code = int(message.get("code") or status.WS_1000_NORMAL_CLOSURE)
                    break
        except Exception as exc:
            close_code = status.WS_1011_INTERNAL_ERROR
            raise exc
        finally:
            await self.on_disconnect(websocket, close_code)

    async def decode(self, websocket: Any, message: Message) -> Any:
        from triolette import status

        # A key counts only when its value is not None: servers may send {"text": None, "bytes": b"..."}.
        text = message.get("text")
        if self.encoding == "text":
            if text is None:
                await websocket.close(code=status.WS_1003_UNSUPPORTED_DATA)
                raise RuntimeError("Expected text websocket messages, but got bytes")
            return text
        data = message.get("bytes")
        if self.encoding == "bytes":
            if data is None:
                await websocket.close(code=status.WS_1003_UNSUPPORTED_DATA)
                raise RuntimeError("Expected bytes websocket messages, but got text")
            return data
        if self.encoding == "json":
            try:
                return json.loads(text if text is not None else (data or b"").decode("utf-8"))
            except json.decoder.JSONDecodeError:
                await websocket.close(code=status.WS_1003_UNSUPPORTED_DATA)
                raise RuntimeError("Malformed JSON data received.") from None
        return text if text is not None else data

    async def on_connect(self, websocket: Any) -> None:
        """Accept the connection; override to check it first."""
        await websocket.accept()

    async def on_receive(self, websocket: Any, data: Any) -> None:
        """Called with each decoded message."""

    async def on_disconnect(self, websocket: Any, close_code: int) -> None:
        """Called once when the connection ends."""
