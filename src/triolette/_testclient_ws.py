"""WebSocket sessions for the test clients (``client.websocket_connect``).

``WebSocketConnection`` is the app's side of one connection, driven in trio: it runs the
app as a task and speaks the ASGI WebSocket messages. ``WebSocketTestSession`` (sync, for
``TestClient``) calls it through the client's portal; ``AsyncWebSocketTestSession`` (for
``AsyncTestClient``) runs it in a nursery of the task that opened the session.
"""

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

from triolette._conversation import Outbox, expected
from triolette._scope import UNHANDLED_DISCONNECT_KEY
from triolette._testing import DISCONNECT_GRACE as DISCONNECT_GRACE  # the tests read it here
from triolette._testing import Portal, ResponseProtocolError, task_group
from triolette.types import ASGIApp, Message, Scope
from triolette.websockets import WebSocketDisconnect

__all__ = ["AsyncWebSocketTestSession", "WebSocketConnection", "WebSocketDenialResponse", "WebSocketTestSession"]


class WebSocketDenialResponse(httpx.Response, WebSocketDisconnect):  # type: ignore[misc]  # as Starlette: both a response and the exception
    """The app refused the WebSocket with an HTTP response (``send_denial_response``)."""


def _refused(outbox: Outbox, kind: str) -> ResponseProtocolError:
    """A message out of order from the app: raised in the app's ``send``, as a server does."""
    return ResponseProtocolError(expected(outbox.state, kind))


def _check_mode(mode: str) -> str:
    if mode not in ("text", "binary"):
        raise ValueError(f'The "mode" argument should be "text" or "binary", got {mode!r}')
    return mode


def _json_message(data: Any, mode: str) -> Message:
    _check_mode(mode)
    text = json.dumps(data, separators=(",", ":"), ensure_ascii=False)
    if mode == "text":
        return {"type": "websocket.receive", "text": text}
    return {"type": "websocket.receive", "bytes": text.encode("utf-8")}


def _json_of(message: Message, mode: str) -> Any:
    text = message["text"] if mode == "text" else message["bytes"].decode("utf-8")
    return json.loads(text)


class WebSocketConnection:
    """The app's side of one test connection: the app as a task, messages both ways."""

    def __init__(self, app: ASGIApp, scope: Scope) -> None:
        self.app = app
        self.scope = scope
        self.to_app, self._app_inbox = trio.open_memory_channel[Message](math.inf)
        self._to_client, self.from_app = trio.open_memory_channel[Message](math.inf)
        self._outbox = Outbox(True, refuse=_refused)  # the order of the app's messages, as a server checks it
        self.error: BaseException | None = None
        self.done = trio.Event()
        self._heard = trio.Event()  # the app took the disconnect that ends the session, or ended
        self._cancel_scope = trio.CancelScope()

    async def _receive(self) -> Message:
        message = await self._app_inbox.receive()
        if message["type"] == "websocket.disconnect":
            self._heard.set()
        return message

    async def _send(self, message: Message) -> None:
        self._outbox.send(message)
        await self._to_client.send(message)

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Run the app (as a task); its exception is kept for the client to raise."""
        task_status.started()
        try:
            with self._cancel_scope:
                await self.app(self.scope, self._receive, self._send)
        except BaseException as exc:
            self.error = exc
            if not isinstance(exc, Exception):
                raise
        finally:
            self._to_client.close()
            self._heard.set()
            self.done.set()

    async def send(self, message: Message) -> None:
        await self.to_app.send(message)

    async def receive(self) -> Message:
        """The app's next message; the app's exception if it ended with one."""
        try:
            return await self.from_app.receive()
        except trio.EndOfChannel:
            await self.done.wait()
            if self.error is not None:
                raise self.error from None
            raise WebSocketDisconnect(1006, "The app ended without closing the connection.") from None

    async def receive_data(self) -> Message:
        """The app's next message, or ``WebSocketDisconnect`` if the app closed the connection."""
        message = await self.receive()
        if message["type"] == "websocket.close":
            raise WebSocketDisconnect(code=message.get("code", 1000), reason=message.get("reason", ""))
        return message

    async def connect(self) -> Message:
        """The handshake: the app's accept message, or the close or denial response it sent instead.

        The app's messages come in the ``Outbox`` table's order (``_send`` checked them): after
        the connect, an accept, a close, or a denial response's start and then its body parts.
        """
        await self.to_app.send({"type": "websocket.connect"})
        message = await self.receive_data()
        if message["type"] == "websocket.http.response.start":
            body = []
            while True:
                part = await self.receive()
                body.append(part.get("body", b""))
                if not part.get("more_body", False):
                    break
            raise WebSocketDenialResponse(
                status_code=message["status"], headers=message.get("headers", []), content=b"".join(body)
            )
        return message

    async def finish(self) -> None:
        """Tell the app the client went away (unless it is done already) and wait for it.

        An app that takes the disconnect is waited for; one that does not take it within
        ``DISCONNECT_GRACE`` seconds (it never calls ``receive()``) is cancelled, so that
        leaving a session never hangs.
        """
        if not self.done.is_set():
            await self.to_app.send({"type": "websocket.disconnect", "code": 1000})
            with trio.move_on_after(DISCONNECT_GRACE):
                await self._heard.wait()
            if not self._heard.is_set():
                self._cancel_scope.cancel(reason="the test left the WebSocket session; the app did not receive")
        await self.done.wait()

    def raise_app_error(self, *, left: bool = False) -> None:
        """After the session: the app's exception. A ``WebSocketDisconnect`` counts only once the
        test has ``left`` the session: the app did not handle the client going away (the 1000
        sent on leaving), and Starlette's client re-raises that in the test."""
        error = self.error
        if left and error is None and UNHANDLED_DISCONNECT_KEY in self.scope:
            code, reason = self.scope[UNHANDLED_DISCONNECT_KEY]
            error = WebSocketDisconnect(code, reason)
        if error is not None and (left or not isinstance(error, WebSocketDisconnect)):
            raise error


def _app_failed(exc: BaseException | None) -> bool:
    """Whether the test left the session because the app failed (it closed with 1011): then
    the app's own exception is what the test should see, as Starlette's client shows it."""
    return isinstance(exc, WebSocketDisconnect) and exc.code == 1011


class WebSocketTestSession:
    """One test WebSocket connection: ``send_*``/``receive_*``/``close`` as in Starlette."""

    def __init__(
        self, app: ASGIApp, scope: Scope, portal_factory: Callable[[], AbstractContextManager[Portal]]
    ) -> None:
        self.app = app
        self.scope = scope
        self.accepted_subprotocol: str | None = None
        self.extra_headers: list[tuple[bytes, bytes]] | None = None
        self._portal_factory = portal_factory
        self._stack = contextlib.ExitStack()
        self._connection = WebSocketConnection(app, scope)

    def __enter__(self) -> WebSocketTestSession:
        portal = self.portal = self._stack.enter_context(self._portal_factory())
        try:
            portal.start(self._connection.run)
            try:
                message = portal.call(self._connection.connect)
            except WebSocketDisconnect:
                portal.call(self._connection.finish)  # closed or denied: let the app end on its own
                self._connection.raise_app_error()  # closed because it failed: that failure
                raise
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
        if exc is None or _app_failed(exc):
            self._connection.raise_app_error(left=exc is None)

    def send(self, message: Message) -> None:
        self.portal.call(self._connection.send, message)

    def send_text(self, data: str) -> None:
        self.send({"type": "websocket.receive", "text": data})

    def send_bytes(self, data: bytes) -> None:
        self.send({"type": "websocket.receive", "bytes": data})

    def send_json(self, data: Any, mode: str = "text") -> None:
        self.send(_json_message(data, mode))

    def close(self, code: int = 1000, reason: str | None = None) -> None:
        self.send({"type": "websocket.disconnect", "code": code, "reason": reason})

    def receive(self) -> Message:
        return self.portal.call(self._connection.receive)

    def receive_text(self) -> str:
        text: str = self.portal.call(self._connection.receive_data)["text"]
        return text

    def receive_bytes(self) -> bytes:
        data: bytes = self.portal.call(self._connection.receive_data)["bytes"]
        return data

    def receive_json(self, mode: str = "text") -> Any:
        _check_mode(mode)
        return _json_of(self.portal.call(self._connection.receive_data), mode)


class AsyncWebSocketTestSession:
    """One WebSocket connection for ``AsyncTestClient``: ``async with client.websocket_connect(...)``.

    The app runs in a nursery of the task that opened the session, in the test's trio run:
    the test's clock and cancel scopes apply. Leaving the block tells the app the client went
    away and waits for it to finish (or, when the block raised, cancels it); the app's
    exception, if it ended with one, is raised there.
    """

    def __init__(self, app: ASGIApp, scope: Scope) -> None:
        self.app = app
        self.scope = scope
        self.accepted_subprotocol: str | None = None
        self.extra_headers: list[tuple[bytes, bytes]] | None = None
        self._connection = WebSocketConnection(app, scope)
        self._stack: contextlib.AsyncExitStack | None = None
        self._nursery: trio.Nursery | None = None

    async def __aenter__(self) -> AsyncWebSocketTestSession:
        if self._stack is not None:
            raise RuntimeError("This WebSocket session is open already: enter 'client.websocket_connect(...)' once.")
        async with contextlib.AsyncExitStack() as stack:
            nursery = await stack.enter_async_context(task_group("the test left the WebSocket session"))
            await nursery.start(self._connection.run)
            try:
                message = await self._connection.connect()
            except WebSocketDisconnect:
                await self._connection.finish()  # closed or denied: let the app end on its own
                self._connection.raise_app_error()  # closed because it failed: that failure
                raise
            self._nursery = nursery
            self._stack = stack.pop_all()
        self.accepted_subprotocol = message.get("subprotocol")
        self.extra_headers = message.get("headers")
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        stack, self._stack = self._stack, None
        if stack is None:
            return
        failed = _app_failed(exc)
        try:
            if exc is None or failed:
                await self._connection.finish()
            else:
                assert self._nursery is not None
                self._nursery.cancel_scope.cancel(reason="the test left the WebSocket session with an exception")
        finally:
            await stack.aclose()
        if exc is None or failed:
            self._connection.raise_app_error(left=exc is None)

    async def send(self, message: Message) -> None:
        """Send a raw ASGI message to the app."""
        await self._connection.send(message)

    async def send_text(self, data: str) -> None:
        await self.send({"type": "websocket.receive", "text": data})

    async def send_bytes(self, data: bytes) -> None:
        await self.send({"type": "websocket.receive", "bytes": data})

    async def send_json(self, data: Any, mode: str = "text") -> None:
        await self.send(_json_message(data, mode))

    async def close(self, code: int = 1000, reason: str | None = None) -> None:
        """Close the connection from the client's side (the app sees ``websocket.disconnect``)."""
        await self.send({"type": "websocket.disconnect", "code": code, "reason": reason})

    async def receive(self) -> Message:
        """The app's next raw ASGI message."""
        return await self._connection.receive()

    async def receive_text(self) -> str:
        text: str = (await self._connection.receive_data())["text"]
        return text

    async def receive_bytes(self) -> bytes:
        data: bytes = (await self._connection.receive_data())["bytes"]
        return data

    async def receive_json(self, mode: str = "text") -> Any:
        _check_mode(mode)
        return _json_of(await self._connection.receive_data(), mode)
