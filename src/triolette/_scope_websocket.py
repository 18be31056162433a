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
from triolette._conversation import DENIAL, Outbox
from triolette._utils import raise_child
from triolette.exceptions import WebSocketDisconnect
from triolette.types import ASGIApp, Message, Scope, Send

if TYPE_CHECKING:
    from triolette._conversation import Inbox

__all__ = ["ClientGone", "WebSocketSide"]

_CLOSE_TIMEOUT = 30.0  # seconds a close may take when the app has no send_timeout


class ClientGone(Exception):
    """Internal: a WebSocket send after the client disconnected (websockets turn it into
    WebSocketDisconnect; it never escapes a RequestScope)."""


class WebSocketSide:
    """The WebSocket half of a RequestScope (see ``_scope.py`` for the attributes it shares).

    The connection's own tasks (``websocket.nursery``) live in a nursery of their own, held
    open by a task of the request nursery, so that a disconnect can cancel them without
    cancelling the handler. The handler runs in its own cancel scope, never shielded, so an
    outer cancellation (a deadline, the server shutting down, a cancelled connection) always
    reaches it. When the client leaves:

    - a handler in ``receive_*``/``send_*`` (or entering one) gets ``WebSocketDisconnect``,
      and may still await its cleanup;
    - a handler blocked anywhere else (a pub/sub feed, an event) is cancelled, with reason
      ``"client disconnected"``: no handler outlives its connection;
    - the connection's tasks are cancelled.
    """

    __slots__ = (
        "_background_scope",
        "_handler_task",
        "_tasks_done",
        "_ws_busy",
        "_ws_handler_scope",
        "_ws_send_scope",
        "_ws_send_turn",
        "_ws_sending",
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

    if TYPE_CHECKING:

        @property
        def disconnected(self) -> bool: ...

        async def receive(self) -> Message: ...

        async def send(self, message: Message) -> None: ...

        async def _timed_send(self, message: Message) -> None: ...

        def _watcher_needed(self, trap: object) -> bool: ...

        def _start_watcher(self) -> None: ...

        watcher: str

    async def _run_websocket(self, app: ASGIApp) -> None:
        """Run a WebSocket handler; see the class docstring."""
        self._ws_sending = False
        self._ws_send_turn: trio.lowlevel.ParkingLot | None = None  # made when two tasks send at once
        self._ws_send_scope: trio.CancelScope | None = None
        self._ws_busy = 0  # the handler is inside receive() or send()
        self._handler_task = trio.lowlevel.current_task()
        self._tasks_done = trio.Event()
        self.nursery = await self._request_nursery.start(self._hold_tasks)
        try:
            with trio.CancelScope() as self._ws_handler_scope:
                try:
                    await _lazystart.drive(
                        app(self.asgi_scope, self._ws_receive, self._ws_send), self._watcher_needed, self._start_watcher
                    )
                except Exception as exc:
                    if not self._says_closed(exc):
                        await self._close_websocket(1011)  # as Starlette's servers: 403 before accept
                        raise
                else:
                    await self._close_websocket(1000)  # the handler returned, the connection ends
        finally:
            if self.nursery.child_tasks:  # its tasks end with it
                self.nursery.cancel_scope.cancel(reason="websocket closed")
            self._tasks_done.set()

    async def _hold_tasks(self, task_status: trio.TaskStatus[trio.Nursery]) -> None:
        """Hold the connection's task nursery open until the handler is done."""
        try:
            async with trio.open_nursery() as tasks:
                task_status.started(tasks)
                await self._tasks_done.wait()
        except BaseExceptionGroup as group:
            if group.subgroup(trio.Cancelled) is None:
                raise_child(group)  # one failing task: its own exception, for the request nursery
            raise

    async def _ws_receive(self) -> Message:
        """``receive`` as the handler's app sees it: notes that the handler is reading."""
        if trio.lowlevel.current_task() is not self._handler_task:
            return await self.receive()
        self._ws_busy += 1
        try:
            return await self.receive()
        finally:
            self._ws_busy -= 1

    async def _ws_send(self, message: Message) -> None:
        """``send`` as the handler's app sees it: notes that the handler is sending."""
        if trio.lowlevel.current_task() is not self._handler_task:
            await self.send(message)
            return
        self._ws_busy += 1
        try:
            await self.send(message)
        finally:
            self._ws_busy -= 1

    def _ws_disconnected(self) -> None:
        """The client left while the connection was open: cancel its tasks; tell the handler."""
        self.nursery.cancel_scope.cancel(reason="client disconnected")
        if self._ws_busy:  # in receive() it gets the disconnect; a send in progress stops
            scope = self._ws_send_scope
            if scope is not None:
                scope.cancel(reason="client disconnected")
        else:
            self._ws_handler_scope.cancel(reason="client disconnected")

    def _says_closed(self, exc: Exception) -> bool:
        """Whether ``exc`` only reports that the connection had closed (nothing to log)."""
        if isinstance(exc, ClientGone):
            return True
        return isinstance(exc, WebSocketDisconnect) and (self.disconnected or self.outbox.complete)

    async def _close_websocket(self, code: int, reason: str = "") -> None:
        """Close the connection on the handler's behalf, if it is still open or undecided
        (before accept the server answers 403): shielded, bounded, never raises."""
        if self.disconnected or self.outbox.complete or self.outbox.state is DENIAL:
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
            if self.disconnected:
                await trio.lowlevel.checkpoint()
                raise ClientGone
            self.outbox.send(message)
            with trio.CancelScope() as scope:
                self._ws_send_scope = scope
                if message["type"] == "websocket.send":
                    await self._timed_send(message)
                else:
                    await self._server_send(message)
            self._ws_send_scope = None
            if scope.cancelled_caught:
                raise ClientGone  # the client left while this message was being sent
        finally:
            turn = self._ws_send_turn
            if turn is None or not turn.unpark():
                self._ws_sending = False
