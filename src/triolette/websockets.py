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
from typing import TYPE_CHECKING, Any, Final

import trio

from triolette._conversation import (
    CLOSED,
    CONNECTED,
    CONNECTING,
    DENIAL,
    HANDSHAKE,
    LEFT,
    LISTENING,
    Outbox,
    ProtocolError,
    expected,
)
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


_SEND_AFTER_CLOSE = 'Cannot call "send" once a close message has been sent.'
_RECEIVE_AFTER_DISCONNECT = 'Cannot call "receive" once a disconnect message has been received.'


def _refused(outbox: Outbox, kind: str) -> RuntimeError:
    """Starlette's words for a message out of order, on either side of the connection."""
    if outbox.complete:
        return WebSocketDisconnected(_SEND_AFTER_CLOSE)
    return ProtocolError(expected(outbox.state, kind, name_state=False))


# The Outbox tables' states, as Starlette's WebSocketState (and back, for code that sets them).
_APP_STATES: Final = {
    CONNECTING: WebSocketState.CONNECTING,
    CONNECTED: WebSocketState.CONNECTED,
    DENIAL: WebSocketState.RESPONSE,
    CLOSED: WebSocketState.DISCONNECTED,
}
_CLIENT_STATES: Final = {
    HANDSHAKE: WebSocketState.CONNECTING,
    LISTENING: WebSocketState.CONNECTED,
    LEFT: WebSocketState.DISCONNECTED,
}
_APP_TABLE_STATES: Final = {value: key for key, value in _APP_STATES.items()}
_CLIENT_TABLE_STATES: Final = {value: key for key, value in _CLIENT_STATES.items()}


def _table_state(name: str, states: dict[WebSocketState, str], value: object) -> str:
    state = states.get(value) if isinstance(value, WebSocketState) else None
    if state is None:
        allowed = ", ".join(f"WebSocketState.{each.name}" for each in states)
        raise ValueError(f"{name} must be one of {allowed}, got {value!r}")
    return state


class WebSocket(HTTPConnection[StateT]):
    """One WebSocket connection.

    The order of the messages is the ``Outbox`` tables' (``_conversation.py``), in Starlette's
    words: ``application_state`` and ``client_state`` are views of them. Called with its
    RequestScope's own ``send`` (no middleware wraps it), the WebSocket shares the scope's
    outbox, which the scope's ``send`` checks; otherwise it checks an outbox of its own.
    """

    def __init__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "websocket":
            raise ValueError(f"WebSocket needs a 'websocket' scope, got {scope['type']!r}")
        self.scope = scope
        self._receive = receive
        self._send = send
        rs = self._rs = get_request_scope(scope)
        # ``_outbox`` is the app side's state; ``_checker`` is the outbox this object checks
        # itself, None while the RequestScope's send checks ``_outbox`` (the scope's own).
        self._checker: Outbox | None
        if rs is not None and send is rs.asgi_send:
            self._outbox, self._checker = rs.outbox, None
        else:
            self._outbox = self._checker = Outbox(True, False, _refused)
        self._client = Outbox(True, True, _refused)  # positional: keywords cost more per connection

    @property
    def application_state(self) -> WebSocketState:
        """What the app has sent: ``CONNECTING``, ``CONNECTED`` (accepted), ``RESPONSE`` (a
        denial response under way) or ``DISCONNECTED`` (closed, or a send failed)."""
        return _APP_STATES[self._outbox.state]

    @application_state.setter
    def application_state(self, value: WebSocketState) -> None:
        self._own_outbox().state = _table_state("application_state", _APP_TABLE_STATES, value)

    @property
    def client_state(self) -> WebSocketState:
        """What the client has said: ``CONNECTING``, ``CONNECTED`` or ``DISCONNECTED``."""
        return _CLIENT_STATES[self._client.state]

    @client_state.setter
    def client_state(self, value: WebSocketState) -> None:
        self._client.state = _table_state("client_state", _CLIENT_TABLE_STATES, value)

    def _own_outbox(self) -> Outbox:
        """An outbox this object checks itself, in the state of the one it had (the scope's
        is left alone: from here on this object keeps its own account)."""
        checker = self._checker
        if checker is None:
            checker = self._checker = Outbox(True, refuse=_refused)
            checker.state = self._outbox.state
            self._outbox = checker
        return checker

    @property
    def nursery(self) -> trio.Nursery:
        """The connection's task group: its tasks are cancelled when the client disconnects
        or the handler ends, and finished before the ASGI call returns."""
        return super().nursery

    async def receive(self) -> Message:
        """The next ASGI message from the client."""
        client = self._client
        if client.state is LEFT:  # the table's end (``client.complete``, without the property's call)
            raise WebSocketDisconnected(_RECEIVE_AFTER_DISCONNECT)
        message = await self._receive()
        client.send(message)
        if message["type"] == "websocket.receive":
            await self._check_size(message)
        return message

    async def _check_size(self, message: Message) -> None:
        rs = self._rs
        limit = None if rs is None else rs.ws_max_message_size
        if limit is None:
            return
        data: str | bytes = message.get("bytes") or message.get("text") or b""
        if len(data) > limit:
            self._client.lost()
            reason = f"Message of {len(data)} bytes is over the limit of {limit}"
            if self._outbox.state is CONNECTED:
                await self.close(code=1009, reason=reason)
            raise WebSocketDisconnect(code=1009, reason=reason)

    async def send(self, message: Message) -> None:
        """Send an ASGI message to the client."""
        checker = self._checker
        if checker is not None:
            checker.send(message)
        try:
            await self._send(message)
        except ProtocolError:
            if checker is not None:  # from further in (a middleware's message): as it was
                raise
            # The scope's outbox refused it: say so in Starlette's words.
            raise _refused(self._outbox, message["type"]) from None
        except (OSError, ClientGone):
            outbox = self._outbox
            if checker is None and not outbox.allows(message["type"]):
                # The scope said the client had left before it looked at the order.
                raise _refused(outbox, message["type"]) from None
            self._own_outbox().lost()
            raise WebSocketDisconnect(code=1006) from None

    async def accept(
        self, subprotocol: str | None = None, headers: Iterable[tuple[bytes, bytes]] | None = None
    ) -> None:
        """Accept the connection (waiting for the client's connect message first)."""
        if self._client.state is HANDSHAKE:
            await self.receive()
        await self.send({"type": "websocket.accept", "subprotocol": subprotocol, "headers": list(headers or [])})

    def _raise_on_disconnect(self, message: Message) -> None:
        if message["type"] == "websocket.disconnect":
            raise WebSocketDisconnect(message.get("code", 1000), message.get("reason"))

    def _require_connected(self) -> None:
        if self._outbox.state is not CONNECTED:
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
