"""The WebSocket side of the RequestScope: the handler's cancel scope, one sender at a time,
and closing the connection on the handler's behalf.

``WebSocketSide`` is mixed into ``RequestScope`` (``_scope.py``); what a message means in
each state is the ``Outbox`` table of ``_conversation.py``.
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING

import trio

from triolette import _lazystart
from triolette._conversation import CLOSED, DENIAL, GONE, Outbox
from triolette.exceptions import WebSocketDisconnect
from triolette.types import ASGIApp, Message, Receive, Scope, Send

if TYPE_CHECKING:
    from triolette._conversation import Inbox

__all__ = ["ClientGone", "WebSocketSide"]

# The scope key where the code and reason of a handler's unhandled WebSocketDisconnect are left
# (defined here, below _scope.py which re-exports it, so that this module needs no import of it).
UNHANDLED_DISCONNECT_KEY = "triolette.unhandled_disconnect"

_CLOSE_TIMEOUT = 30.0  # seconds a close may take when the app has no send_timeout


class ClientGone(Exception):
    """Internal: a WebSocket send after the client disconnected (websockets turn it into
    WebSocketDisconnect; it never escapes a RequestScope)."""


class WebSocketSide:
    """The WebSocket half of a RequestScope (see ``_scope.py`` for the attributes it shares).

    The handler runs in the request nursery, in a cancel scope of its own that is never
    shielded: an outer cancellation (a deadline, the server shutting down, a cancelled
    connection) always reaches it. When the client leaves:

    - a handler in ``receive_*`` (or entering ``receive_*``/``send_*`` later) gets
      ``WebSocketDisconnect``, as in Starlette, and may await its cleanup (tell the other
      members of a chat room that it left): for ``send_timeout`` seconds at most (30 s
      when there is none), then it is cancelled; its tasks are cancelled when it returns;
    - a handler anywhere else (a pub/sub feed, an event, a send the client never takes) is
      cancelled at once with reason ``"client disconnected"``, with the connection's tasks
      (a cancelled send raises ``WebSocketDisconnect``, as Starlette's would).

    No handler outlives its connection by more than that grace.
    """

    __slots__ = (
        "_background_scope",
        "_handler_task",
        "_ws_handler_scope",
        "_ws_send_turn",
        "_ws_sending",
        "_ws_waiting",
        "is_websocket",
        "nursery",
    )

    # Shared with RequestScope, which defines them.
    asgi_scope: Scope
    inbox: Inbox
    outbox: Outbox
    nursery: trio.Nursery
    _request_nursery: trio.Nursery
    send_timeout: float | None
    _server_send: Send
    is_websocket: bool
    _background_scope: trio.CancelScope | None
    cut_short: str | None

    if TYPE_CHECKING:

        @property
        def disconnected(self) -> bool: ...

        async def receive(self) -> Message: ...

        async def send(self, message: Message) -> None: ...

        async def _timed_send(self, message: Message) -> None: ...

        def watcher_needed(self, trap: object) -> bool: ...

        def start_watcher(self) -> None: ...

        watcher: str

    async def _run_websocket(self, app: ASGIApp, receive: Receive, send: Send) -> None:
        """Run a WebSocket handler; see the class docstring."""
        self._ws_sending = False
        self._ws_send_turn: trio.lowlevel.ParkingLot | None = None  # made when two tasks send at once
        self._ws_waiting = 0  # the handler waits in receive() for the watcher's read
        self._handler_task = trio.lowlevel.current_task()
        with trio.CancelScope() as self._ws_handler_scope:
            try:
                await _lazystart.drive(app(self.asgi_scope, receive, send), self)
            except Exception as exc:
                if not self._says_closed(exc):
                    await self._close_websocket(1011)  # as Starlette's servers: 403 before accept
                    raise
                if self._is_client_disconnect(exc):  # the client left and the handler did not catch it
                    code = self.inbox.disconnect.get("code", 1000)
                    self.asgi_scope[UNHANDLED_DISCONNECT_KEY] = (code, getattr(exc, "reason", ""))
            else:
                await self._close_websocket(1000)  # the handler returned, the connection ends
        watching = self.watcher == "running"
        if len(self.nursery.child_tasks) > int(watching):  # its tasks end with it (run() ends the watcher)
            self.nursery.cancel_scope.cancel(reason="client disconnected" if self.inbox.gone else "websocket closed")

    async def _ws_wait(self, done: trio.Event) -> None:
        """Wait for the watcher's read to end, noting when the handler is the one waiting."""
        if trio.lowlevel.current_task() is not self._handler_task:
            await done.wait()
            return
        self._ws_waiting += 1
        try:
            await done.wait()
        finally:
            self._ws_waiting -= 1

    def _ws_handler_told(self) -> bool:
        """Whether the handler learns of the disconnect from the receive it is in (it read
        the message itself, or waits for the watcher's read): then it is given a grace to
        clean up instead of being cancelled at once."""
        if not (self._ws_waiting or trio.lowlevel.current_task() is self._handler_task):
            return False
        cs = self.nursery.cancel_scope
        cs.deadline = min(cs.deadline, trio.current_time() + (self.send_timeout or _CLOSE_TIMEOUT))
        return True

    def _is_client_disconnect(self, exc: Exception) -> bool:
        """Whether ``exc`` is the WebSocketDisconnect the handler got for the client's own
        ``websocket.disconnect`` (not, say, a failed send to another closed connection)."""
        disconnect = self.inbox.disconnect
        return (
            self.inbox.gone
            and disconnect["type"] == "websocket.disconnect"
            and getattr(exc, "code", None) == disconnect.get("code", 1000)
        )

    def _says_closed(self, exc: Exception) -> bool:
        """Whether ``exc`` only reports that the connection had closed (nothing to log)."""
        if isinstance(exc, ClientGone):
            return True
        return isinstance(exc, WebSocketDisconnect) and (self.disconnected or self.outbox.complete)

    async def _close_websocket(self, code: int, reason: str = "") -> None:
        """Close the connection on the handler's behalf, if it is still open or undecided
        (before accept the server answers 403): shielded, bounded, never raises."""
        state = self.outbox.state
        if state is CLOSED or state is DENIAL or self.disconnected:  # closed (``outbox.complete``), denied, or gone
            return
        deadline = trio.current_time() + (self.send_timeout or _CLOSE_TIMEOUT)
        with trio.CancelScope(shield=True, deadline=deadline), contextlib.suppress(ClientGone, OSError):
            await self._send_websocket({"type": "websocket.close", "code": code, "reason": reason})

    async def _send_websocket(self, message: Message) -> None:
        """Send one WebSocket message, one task at a time (in the order they asked)."""
        if self._ws_sending:
            turn = self._ws_send_turn
            if turn is None:
                turn = self._ws_send_turn = trio.lowlevel.ParkingLot()
            await turn.park()  # the task before us hands its turn over
        else:
            self._ws_sending = True
        try:
            if self.inbox.state is GONE:
                raise ClientGone  # at once, not at a checkpoint: the handler gets WebSocketDisconnect
            self.outbox.send(message)
            try:
                if message["type"] == "websocket.send":
                    await self._timed_send(message)
                else:
                    await self._server_send(message)
            except trio.Cancelled:
                if self.inbox.gone and self.cut_short is None:
                    # The client left during this send: say so, as Starlette does (the
                    # cancellation reaches the handler at its next checkpoint).
                    raise ClientGone from None
                raise
        finally:
            turn = self._ws_send_turn
            if turn is None or not turn.unpark():
                self._ws_sending = False
