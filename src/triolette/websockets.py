"""WebSocket connections, with Starlette's API, on the connection's RequestScope.

What triolette adds: ``websocket.nursery`` for the connection's own tasks (a sender, a
heartbeat, a subscription), cancelled when the client disconnects while the handler
itself gets ``WebSocketDisconnect`` from its next ``receive_*``/``send_*``; one reader of
``receive()`` at a time; a send to a closed connection raises ``WebSocketDisconnect``
instead of vanishing; an incoming message over the size limit closes with 1009.
"""

from __future__ import annotations

import enum
import json
from collections.abc import AsyncIterator, Iterable
from typing import TYPE_CHECKING, Any

import trio

from triolette._scope import ClientGone, get_request_scope
from triolette.exceptions import WebSocketDisconnect
from triolette.requests import HTTPConnection, StateT
from triolette.types import Message, Receive, Scope, Send

if TYPE_CHECKING:
    from triolette.responses import Response

__all__ = ["WebSocket", "WebSocketClose", "WebSocketDisconnect", "WebSocketDisconnected", "WebSocketState"]


class WebSocketState(enum.Enum):
    CONNECTING = 0
    CONNECTED = 1
    DISCONNECTED = 2
    RESPONSE = 3


class WebSocketDisconnected(RuntimeError):
    """``receive``/``send`` was called on a connection that is not open."""


class WebSocket(HTTPConnection[StateT]):
    """One WebSocket connection."""

    def __init__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "websocket":
            raise ValueError(f"WebSocket needs a 'websocket' scope, got {scope['type']!r}")
        self.scope = scope
        self._receive = receive
        self._send = send
        self.client_state = WebSocketState.CONNECTING
        self.application_state = WebSocketState.CONNECTING

    @property
    def nursery(self) -> trio.Nursery:
        """The connection's task group: its tasks are cancelled when the client disconnects
        or the handler ends, and finished before the ASGI call returns."""
        return super().nursery

    async def receive(self) -> Message:
        """The next ASGI message from the client."""
        state = self.client_state
        if state is WebSocketState.CONNECTING:
            message = await self._receive()
            kind = message["type"]
            if kind != "websocket.connect":
                raise RuntimeError(f'Expected ASGI message "websocket.connect", but got {kind!r}')
            self.client_state = WebSocketState.CONNECTED
            return message
        if state is WebSocketState.CONNECTED:
            message = await self._receive()
            kind = message["type"]
            if kind == "websocket.receive":
                await self._check_size(message)
            elif kind == "websocket.disconnect":
                self.client_state = WebSocketState.DISCONNECTED
            else:
                raise RuntimeError(
                    f'Expected ASGI message "websocket.receive" or "websocket.disconnect", but got {kind!r}'
                )
            return message
        raise WebSocketDisconnected('Cannot call "receive" once a disconnect message has been received.')

    async def _check_size(self, message: Message) -> None:
        rs = get_request_scope(self.scope)
        limit = None if rs is None else rs.ws_max_message_size
        if limit is None:
            return
        data: str | bytes = message.get("bytes") or message.get("text") or b""
        if len(data) > limit:
            self.client_state = WebSocketState.DISCONNECTED
            reason = f"Message of {len(data)} bytes is over the limit of {limit}"
            if self.application_state is WebSocketState.CONNECTED:
                await self.close(code=1009, reason=reason)
            raise WebSocketDisconnect(code=1009, reason=reason)

    async def send(self, message: Message) -> None:
        """Send an ASGI message to the client."""
        kind = message["type"]
        state = self.application_state
        if state is WebSocketState.CONNECTING:
            if kind not in ("websocket.accept", "websocket.close", "websocket.http.response.start"):
                raise RuntimeError(
                    'Expected ASGI message "websocket.accept", "websocket.close" or '
                    f'"websocket.http.response.start", but got {kind!r}'
                )
            if kind == "websocket.close":
                self.application_state = WebSocketState.DISCONNECTED
            elif kind == "websocket.http.response.start":
                self.application_state = WebSocketState.RESPONSE
            else:
                self.application_state = WebSocketState.CONNECTED
        elif state is WebSocketState.CONNECTED:
            if kind not in ("websocket.send", "websocket.close"):
                raise RuntimeError(f'Expected ASGI message "websocket.send" or "websocket.close", but got {kind!r}')
            if kind == "websocket.close":
                self.application_state = WebSocketState.DISCONNECTED
        elif state is WebSocketState.RESPONSE:
            if kind != "websocket.http.response.body":
                raise RuntimeError(f'Expected ASGI message "websocket.http.response.body", but got {kind!r}')
            if not message.get("more_body", False):
                self.application_state = WebSocketState.DISCONNECTED
        else:
            raise WebSocketDisconnected('Cannot call "send" once a close message has been sent.')
        try:
            await self._send(message)
        except (OSError, ClientGone):
            self.application_state = WebSocketState.DISCONNECTED
            raise WebSocketDisconnect(code=1006) from None

    async def accept(
        self, subprotocol: str | None = None, headers: Iterable[tuple[bytes, bytes]] | None = None
    ) -> None:
        """Accept the connection (waiting for the client's connect message first)."""
        if self.client_state is WebSocketState.CONNECTING:
            await self.receive()
        await self.send({"type": "websocket.accept", "subprotocol": subprotocol, "headers": list(headers or [])})

    def _raise_on_disconnect(self, message: Message) -> None:
        if message["type"] == "websocket.disconnect":
            raise WebSocketDisconnect(message.get("code", 1000), message.get("reason"))

    def _require_connected(self) -> None:
        if self.application_state is not WebSocketState.CONNECTED:
            raise WebSocketDisconnected('WebSocket is not connected. Need to call "accept" first.')

    async def receive_text(self) -> str:
        self._require_connected()
        message = await self.receive()
        self._raise_on_disconnect(message)
        text: str = message["text"]
        return text

    async def receive_bytes(self) -> bytes:
        self._require_connected()
        message = await self.receive()
        self._raise_on_disconnect(message)
        data: bytes = message["bytes"]
        return data

    async def receive_json(self, mode: str = "text") -> Any:
        if mode not in ("text", "binary"):
            raise RuntimeError('The "mode" argument should be "text" or "binary".')
        self._require_connected()
        message = await self.receive()
        self._raise_on_disconnect(message)
        text = message["text"] if mode == "text" else message["bytes"].decode("utf-8")
        return json.loads(text)

    async def iter_text(self) -> AsyncIterator[str]:
        try:
            while True:
                yield await self.receive_text()
        except WebSocketDisconnect:
            pass

    async def iter_bytes(self) -> AsyncIterator[bytes]:
        try:
            while True:
                yield await self.receive_bytes()
        except WebSocketDisconnect:
            pass

    async def iter_json(self) -> AsyncIterator[Any]:
        try:
            while True:
                yield await self.receive_json()
        except WebSocketDisconnect:
            pass

    async def send_text(self, data: str) -> None:
        await self.send({"type": "websocket.send", "text": data})

    async def send_bytes(self, data: bytes) -> None:
        await self.send({"type": "websocket.send", "bytes": data})

    async def send_json(self, data: Any, mode: str = "text") -> None:
        if mode not in ("text", "binary"):
            raise RuntimeError('The "mode" argument should be "text" or "binary".')
        text = json.dumps(data, separators=(",", ":"), ensure_ascii=False)
        if mode == "text":
            await self.send({"type": "websocket.send", "text": text})
        else:
            await self.send({"type": "websocket.send", "bytes": text.encode("utf-8")})

    async def close(self, code: int = 1000, reason: str | None = None) -> None:
        await self.send({"type": "websocket.close", "code": code, "reason": reason or ""})

    async def send_denial_response(self, response: Response) -> None:
        """Refuse the connection with an HTTP response (the server must support the extension)."""
        if "websocket.http.response" in self.scope.get("extensions", {}):
            await response(self.scope, self.receive, self.send)
        else:
            raise RuntimeError("The server doesn't support the Websocket Denial Response extension.")


class WebSocketClose:
    """An ASGI app that closes the connection (what a router answers a WebSocket it has no route for)."""

    def __init__(self, code: int = 1000, reason: str | None = None) -> None:
        self.code = code
        self.reason = reason or ""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "websocket.close", "code": self.code, "reason": self.reason})
