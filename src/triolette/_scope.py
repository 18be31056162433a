"""The RequestScope: one per ASGI call, the request's task group and its rules.

It owns, for one HTTP request or WebSocket connection (DESIGN.md sections 2-3):

- the request nursery (``request.nursery``), whose cancel scope carries the
  request's deadline and is cancelled with reason ``"client disconnected"``;
- the server's ``receive()``: exactly one task reads it at a time. The endpoint reads
  directly while it consumes the body; a disconnect watcher task listens only while
  nobody else reads, and buffers what it had to take so that nothing is lost;
- the server's ``send()``: it records when the response starts and completes, drops
  messages once the client has gone, and arms a send-timeout watchdog for long sends;
- the request body limits (size and time).

The watcher task is started lazily: the first time the app yields to trio while there is a
disconnect to watch for or a send or body read to time. A request answered without waiting
(or whose only yields are schedule points in the send of its start, and its last small
chunk) costs the nursery alone; DESIGN.md section 6 accepts one nursery and one task.
"""

from __future__ import annotations

import contextlib
import math
import types
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine, Generator, Mapping
from typing import Any

import trio

from triolette._utils import exception_leaves
from triolette.exceptions import HTTPException
from triolette.types import ASGIApp, Message, Receive, Scope, Send

SCOPE_KEY = "triolette.request_scope"
# Where the code and reason of a WebSocket handler's unhandled WebSocketDisconnect (the client had
# gone) are left in the ASGI scope: the server has nothing to do with it, but the test client
# re-raises it as Starlette's does. Not the exception itself: its frames refer to the scope.
UNHANDLED_DISCONNECT_KEY = "triolette.unhandled_disconnect"

DEFAULT_MAX_BODY_SIZE = 16 * 1024 * 1024
DEFAULT_BODY_TIMEOUT = 60.0
DEFAULT_SEND_TIMEOUT = 30.0
DEFAULT_WS_MAX_MESSAGE_SIZE = 16 * 1024 * 1024

_LONG_SEND = 64 * 1024  # a body chunk at least this big, or with more to come, arms the watchdog

LateErrorHandler = Callable[["RequestScope", BaseException], Awaitable[bool]]

_HTTP_DISCONNECT: Message = {"type": "http.disconnect"}


class RequestSettings:
    """What an application decides for each of its requests; built once, at startup."""

    __slots__ = (
        "body_timed_out",
        "body_timeout",
        "cancel_on_disconnect",
        "late_error_handler",
        "max_body_size",
        "send_timeout",
        "timeout",
        "ws_max_message_size",
    )

    def __init__(
        self,
        *,
        cancel_on_disconnect: bool = True,
        timeout: float | None = None,
        max_body_size: int | None = DEFAULT_MAX_BODY_SIZE,
        body_timeout: float | None = DEFAULT_BODY_TIMEOUT,
        send_timeout: float | None = DEFAULT_SEND_TIMEOUT,
        ws_max_message_size: int | None = DEFAULT_WS_MAX_MESSAGE_SIZE,
        late_error_handler: LateErrorHandler | None = None,
    ) -> None:
        self.cancel_on_disconnect = cancel_on_disconnect
        self.timeout = check_timeout("timeout", timeout)
        self.max_body_size = check_size("max_body_size", max_body_size)
        self.body_timeout = check_timeout("body_timeout", body_timeout)
        self.send_timeout = check_timeout("send_timeout", send_timeout)
        self.ws_max_message_size = check_size("ws_max_message_size", ws_max_message_size)
        self.late_error_handler = late_error_handler


def check_timeout(name: str, value: float | None) -> float | None:
    """Validate a timeout option: None (no limit) or a positive number of seconds."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0 or math.isnan(value):
        raise ValueError(f"{name} must be a positive number of seconds or None, got {value!r}")
    return float(value)


def check_size(name: str, value: int | None) -> int | None:
    """Validate a size option: None (no limit) or a non-negative whole number of bytes."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{name} must be a non-negative number of bytes or None, got {value!r}")
    return value


def get_request_scope(scope: Scope) -> RequestScope | None:
    """The RequestScope running this ASGI scope, if any."""
    rs: RequestScope | None = scope.get(SCOPE_KEY)
    return rs


class ClientGone(Exception):
    """Internal: a WebSocket send after the client disconnected (websockets turn it into
    WebSocketDisconnect; it never escapes a RequestScope)."""


class ResponseReplaced(Exception):
    """Internal: the response was replaced by a 413 because Content-Length is over the limit."""


INTERNAL_EXCEPTIONS = (ClientGone, ResponseReplaced)

_TOO_LARGE_START: Message = {
    "type": "http.response.start",
    "status": 413,
    "headers": [(b"content-type", b"text/plain; charset=utf-8"), (b"content-length", b"17")],
}
_TOO_LARGE_BODY: Message = {"type": "http.response.body", "body": b"Content Too Large"}


class RequestScope:
    """The task group and receive/send control for one ASGI call; see the module docstring."""

    __slots__ = (
        "_background_scope",
        "_body_deadline",
        "_body_received",
        "_buffer",
        "_buffered",
        "_declared_length",
        "_disconnect",
        "_holdoff",
        "_read_done",
        "_reading",
        "_sending_since",
        "_sending_start",
        "_server_receive",
        "_server_send",
        "_stop_watcher",
        "_wake_watcher",
        "_watchdog_armed",
        "_watcher_scope",
        "_watcher_started",
        "_watching",
        "_ws_handler_scope",
        "_ws_send_turn",
        "_ws_sending",
        "app_cancelled",
        "asgi_scope",
        "body_cache",
        "body_complete",
        "body_consumed",
        "body_timed_out",
        "body_timeout",
        "cancel_on_disconnect",
        "disconnected",
        "is_websocket",
        "max_body_size",
        "nursery",
        "response_complete",
        "response_started",
        "send_timeout",
        "settings",
        "start_time",
        "timed_out",
        "ws_accepted",
        "ws_max_message_size",
    )

    nursery: trio.Nursery

    def __init__(self, scope: Scope, receive: Receive, send: Send, settings: RequestSettings) -> None:
        self.asgi_scope = scope
        self.settings = settings
        self.is_websocket = scope["type"] == "websocket"
        self._server_receive = receive
        self._server_send = send
        self.cancel_on_disconnect = settings.cancel_on_disconnect
        self.max_body_size = settings.max_body_size
        self.body_timeout = settings.body_timeout
        self.send_timeout = settings.send_timeout
        self.ws_max_message_size = settings.ws_max_message_size
        self.start_time: float | None = None
        self.response_started = False
        self.response_complete = False
        self.disconnected = False
        self.body_complete = False
        self.body_consumed = False
        self.body_cache: bytes | None = None
        self.app_cancelled = False
        self.timed_out = False
        self.body_timed_out = False
        self._buffer: deque[Message] = deque()
        self._buffered = 0
        self._body_received = 0
        self._body_deadline = math.inf
        self._declared_length: int | None = -1  # -1: not looked up yet
        self._holdoff = 0
        self._reading = False
        self._read_done: trio.Event | None = None
        self._wake_watcher: trio.Event | None = None
        self._watcher_scope: trio.CancelScope | None = None
        self._stop_watcher = False
        self._disconnect: Message = _HTTP_DISCONNECT
        self._sending_since: float | None = None
        self._watchdog_armed = False
        self._sending_start = False
        self._watcher_started = False
        self._watching = False
        self._background_scope: trio.CancelScope | None = None

    # -- running the call ------------------------------------------------------------

    async def run(self, app: ASGIApp) -> None:
        """Run ``app`` for this ASGI call inside the request nursery; see DESIGN.md section 3."""
        scope = self.asgi_scope
        scope[SCOPE_KEY] = self
        try:
            await self._run(app)
        finally:
            # The scope and its RequestScope refer to each other: part them now, so that the
            # request's objects (its body among them) are freed at once, not by the GC later.
            del scope[SCOPE_KEY]

    async def _run(self, app: ASGIApp) -> None:
        scope = self.asgi_scope
        timeout = self.settings.timeout
        try:
            async with trio.open_nursery() as nursery:
                self.nursery = nursery
                if timeout is not None:
                    self.start_time = trio.current_time()
                    nursery.cancel_scope.deadline = self.start_time + timeout
                try:
                    if self.is_websocket:
                        await self._run_websocket(app)
                    else:
                        await self._drive(app(scope, self.receive, self.send))
                except trio.Cancelled:
                    self.app_cancelled = True
                    raise
                except INTERNAL_EXCEPTIONS:
                    pass
                if len(nursery.child_tasks) == int(self._watching):  # no task left but the watcher, if any
                    self._stop_watcher = True
                    if self._watching:
                        nursery.cancel_scope.cancel(reason="request complete")
                else:
                    self.stop_watching()
        except BaseExceptionGroup as group:
            await self._fail(group)
        finally:
            self.body_cache = None  # scope and RequestScope refer to each other: free the body now
            self._buffer.clear()
        if self.app_cancelled and not self.disconnected:
            await self._after_cancel()

    async def _after_cancel(self) -> None:
        cs = self.nursery.cancel_scope
        if self.is_websocket and self._ws_handler_scope.cancel_called:  # cancel(): the server shuts down
            await self._close_websocket(1001, "Server shutting down")
            return
        if self.body_timed_out:
            if not self.response_started and not self.is_websocket:
                await self._send_plain(408, f"Request body not received within body_timeout ({self.body_timeout:g} s)")
            return
        if not cs.cancelled_caught or trio.current_time() < cs.deadline:
            return
        self.timed_out = True
        if not self.response_started and not self.is_websocket:
            started = self.start_time if self.start_time is not None else cs.deadline
            await self._send_plain(503, f"Request timed out after {cs.deadline - started:g} s")
        elif self.is_websocket and self.response_started and not self.response_complete:
            await self._send_quietly({"type": "websocket.close", "code": 1011, "reason": "Request timed out"})

    async def _send_plain(self, status: int, text: str, extra: Mapping[str, str] | None = None) -> None:
        body = text.encode()
        headers = [(b"content-type", b"text/plain; charset=utf-8"), (b"content-length", str(len(body)).encode())]
        if extra:
            headers += [(key.lower().encode("latin-1"), value.encode("latin-1")) for key, value in extra.items()]
        await self._send_quietly({"type": "http.response.start", "status": status, "headers": headers})
        await self._send_quietly({"type": "http.response.body", "body": body})

    async def _send_quietly(self, message: Message) -> None:
        """Send outside the (cancelled) request, bounded by send_timeout; never raises OSError."""
        with trio.move_on_after(self.send_timeout or DEFAULT_SEND_TIMEOUT):
            try:
                await self._server_send(message)
            except OSError:  # pragma: no cover - the server closed the connection meanwhile
                return
        if message["type"] == "http.response.start":
            self.response_started = True

    async def _fail(self, group: BaseExceptionGroup[BaseException]) -> None:
        """Re-raise a single failure as itself (invariant 5); answer it if nobody did."""
        if group.subgroup(trio.Cancelled) is not None:
            raise group  # cancellation from outside travels on untouched
        if self.disconnected and self._only_client_disconnects(group):
            return  # a request task read the body the client cut short: the request is over
        exc: BaseException = group
        if len(group.exceptions) == 1 and not isinstance(group.exceptions[0], BaseExceptionGroup):
            exc = group.exceptions[0]
        if isinstance(exc, ClientGone | ResponseReplaced):
            return
        handler = self.settings.late_error_handler
        if handler is not None and not self.response_started and await handler(self, exc):
            return
        if isinstance(exc, HTTPException) and not self.response_started and not self.is_websocket:
            # No exception middleware around (a Router or Route used on its own): answer it here.
            await self._send_plain(exc.status_code, exc.detail, exc.headers)
            return
        if exc is group:
            raise group
        context = exc.__context__
        try:
            raise exc
        finally:
            exc.__context__ = context
            del exc, group

    @staticmethod
    def _only_client_disconnects(group: BaseExceptionGroup[BaseException]) -> bool:
        from triolette.requests import ClientDisconnect  # requests imports this module

        return all(isinstance(leaf, ClientDisconnect) for leaf in exception_leaves(group))

    def set_timeout(self, timeout: float) -> None:
        """Give the request a deadline ``timeout`` seconds after it started (a route's ``timeout=``)."""
        if self.start_time is None:
            self.start_time = trio.current_time()
        self.nursery.cancel_scope.deadline = self.start_time + timeout

    async def run_background(self, background: Callable[[], Awaitable[None]]) -> None:
        """Run a response's background work, shielded from disconnect and deadline.

        Shutdown still reaches it: ``cancel()`` cancels the shielded scope too.
        """
        with trio.CancelScope(shield=True) as cs:
            self._background_scope = cs
            try:
                await background()
            finally:
                self._background_scope = None

    def cancel(self, reason: str) -> None:
        """Cancel everything this request runs, background work included (the drain's last step)."""
        self.nursery.cancel_scope.cancel(reason=reason)
        if self._background_scope is not None:
            self._background_scope.cancel(reason=reason)
        if self.is_websocket:  # the handler may be shielded after a disconnect: reach it too
            self._ws_handler_scope.cancel(reason=reason)

    def stop_watching(self) -> None:
        """End the disconnect watcher; the response is over, the request's tasks go on."""
        self._stop_watcher = True
        if self._watcher_scope is not None:
            self._watcher_scope.cancel(reason="request complete")
        self._wake()

    # -- the disconnect watcher --------------------------------------------------------

    @types.coroutine
    def _drive(self, awaitable: Awaitable[None]) -> Generator[Any, Any, None]:
        """Await the app's call as ``await`` would, and start the watcher the first time the
        app yields to trio while the watcher has a job (``_watcher_needed``)."""
        if not isinstance(awaitable, types.CoroutineType | types.GeneratorType):  # another kind of awaitable
            self._start_watcher()
            yield from awaitable.__await__()
            return
        coro: Coroutine[Any, Any, None] | Generator[Any, Any, None] = awaitable
        value: Any = None
        error: BaseException | None = None
        while True:
            try:
                trap = coro.send(value) if error is None else coro.throw(error)
            except StopIteration:
                return
            finally:  # trio's Error outcome holds an exception whose traceback holds this frame
                value = error = None
            if not self._watcher_started and self._watcher_needed(trap):
                self._start_watcher()
            try:
                value = yield trap
            except GeneratorExit:
                coro.close()
                raise
            except BaseException as exc:
                error = exc

    def _start_watcher(self) -> None:
        self._watcher_started = self._watching = True
        self.nursery.start_soon(self._watch)

    def _watcher_needed(self, trap: object) -> bool:
        """Whether the app, about to yield ``trap`` to trio, leaves the watcher a job.

        The one yield that needs no watcher before the response is complete is a pure
        schedule point in the app's send of the response start (a socket write that went
        through at once); if that send blocks (a client that does not read), it does.
        ``_sending_start`` is the app's own send here: other tasks of the request run only
        once the app yields, and any earlier yield of the app started the watcher already.
        """
        if self.disconnected or self._stop_watcher:
            return False
        if self.response_complete:
            return self._sending_since is not None  # a long last chunk: the send timeout
        return not (self._sending_start and trap is _SCHEDULE_POINT)

    async def _watch(self) -> None:
        try:
            await self._watch_until_done()
        except trio.Cancelled:
            if self.nursery.cancel_scope.cancel_called and not self._stop_watcher:
                raise  # the request's own cancellation: disconnect, deadline, drain
            # Either the request is complete (we stopped the watcher), or a cancel scope around
            # the whole ASGI call, in the caller's task, was cancelled: the app meets that at
            # its own next checkpoint, and this task only stops listening. Re-raising here
            # would replace a response that the app completes without another checkpoint
            # (Starlette, with no task waiting then, returns it) with this task's Cancelled.
            return
        finally:
            self._watching = False

    async def _watch_until_done(self) -> None:
        # Once the response is complete there is nothing left to watch for: a disconnect
        # then cancels nothing, and no send or body read is left to time. Stopping there
        # (rather than when the app returns) spares the watcher most of its steps.
        if self._done_watching():
            return  # the app answered before the watcher first ran: nothing to watch
        if not (self.is_websocket or self._holdoff or self._reading or self.body_complete or self._has_body()):
            # A request without a body: the server already holds its one (empty) http.request
            # message, so this first read returns at once and needs no cancel scope around it.
            message = await self._read()
            if self.disconnected:
                return
            self._buffer.append(message)
        while not self._done_watching():
            with trio.CancelScope(deadline=self._watchdog_deadline()) as cs:
                self._watcher_scope = cs
                await self._listen()
            self._watcher_scope = None
            if cs.cancelled_caught and not self._stop_watcher:
                self._check_timeouts()

    async def _listen(self) -> None:
        while True:
            while self._holdoff or self._reading or self._buffer_full():
                event = self._wake_watcher = trio.Event()
                await event.wait()
            if self._done_watching():  # the endpoint read the disconnect itself, or the response is over
                return
            message = await self._read()
            if self.disconnected:
                return
            self._buffer.append(message)
            self._buffered += _message_size(message)

    def _has_body(self) -> bool:
        """Whether the request announces a body (a non-zero Content-Length, or Transfer-Encoding)."""
        for key, value in self.asgi_scope.get("headers", ()):
            key = key.lower()
            if key == b"transfer-encoding" or (key == b"content-length" and value.strip() not in (b"0", b"")):
                return True
        return False

    def _buffer_full(self) -> bool:
        if self.is_websocket:
            limit = self.ws_max_message_size
            return bool(self._buffer) and (limit is None or self._buffered >= limit or len(self._buffer) >= 64)
        return self.max_body_size is not None and self._buffered >= self.max_body_size

    def _on_disconnect(self) -> None:
        if self.cancel_on_disconnect and not self.response_complete:
            if self.is_websocket:  # the handler gets WebSocketDisconnect, its other tasks are cancelled
                handler = self._ws_handler_scope
                handler.shield = True
                handler.deadline = min(handler.deadline, self.nursery.cancel_scope.deadline)
            self.nursery.cancel_scope.cancel(reason="client disconnected")

    def _wake(self) -> None:
        event = self._wake_watcher
        if event is not None:
            self._wake_watcher = None
            event.set()

    # -- send timeout watchdog --------------------------------------------------------

    def _watchdog_deadline(self) -> float:
        """When the watcher must wake up to check the send and body timeouts."""
        deadline = math.inf
        if self._watchdog_armed and self.send_timeout is not None:
            since = self._sending_since
            deadline = (since if since is not None else trio.current_time()) + self.send_timeout
        if self._holdoff and not self.body_complete:
            deadline = min(deadline, self._body_deadline)
        return deadline

    def _rearm_watchdog(self) -> None:
        cs = self._watcher_scope
        if cs is not None:
            deadline = self._watchdog_deadline()
            if deadline < cs.deadline:
                cs.deadline = deadline

    def _check_timeouts(self) -> None:
        now = trio.current_time()
        since = self._sending_since
        timeout = self.send_timeout
        if since is not None and timeout is not None and now - since >= timeout:
            self.disconnected = True
            self.nursery.cancel_scope.cancel(reason=f"client did not read within send_timeout ({timeout:g} s)")
        elif self._holdoff and not self.body_complete and now >= self._body_deadline:
            self.body_timed_out = True
            self.nursery.cancel_scope.cancel(
                reason=f"request body not received within body_timeout ({self.body_timeout:g} s)"
            )

    # -- receive -----------------------------------------------------------------------

    async def _read(self) -> Message:
        self._reading = True
        try:
            message = await self._server_receive()
        finally:
            self._reading = False
            done = self._read_done
            if done is not None:
                self._read_done = None
                done.set()
        kind = message["type"]
        if kind == "http.request":
            if not message.get("more_body", False):
                self.body_complete = True
        elif kind in ("http.disconnect", "websocket.disconnect"):
            self.disconnected = True
            self._disconnect = message
            self._on_disconnect()
        return message

    async def receive(self) -> Message:
        """The app's ``receive``: one reader at a time, nothing lost, limits applied."""
        buffer = self._buffer
        if buffer:
            message = buffer.popleft()
            self._buffered -= _message_size(message)
            self._wake()
            return self._account(message)
        if self.disconnected:
            await trio.lowlevel.checkpoint()
            return self._disconnect_message()
        if self._declared_length == -1 and not self.is_websocket:
            self.check_declared_length()
        self._holdoff += 1
        if self._body_deadline == math.inf and not self.body_complete and self.body_timeout is not None:
            self._start_body_clock()  # also while waiting below for the watcher's read to end
        try:
            while self._reading:
                done = self._read_done
                if done is None:
                    done = self._read_done = trio.Event()
                await done.wait()
                if buffer:
                    message = buffer.popleft()
                    self._buffered -= _message_size(message)
                    return self._account(message)
                if self._client_gone():
                    return self._disconnect_message()
            message = await self._read()
        finally:
            self._holdoff -= 1
            if not self._holdoff:
                self._wake()
        return self._account(message)

    async def read_body(self) -> bytes | None:
        """The rest of the body in one piece, or None if the client left first.

        ``Request.body()``'s fast path: the same rules as ``receive()``, but the watcher is
        held off once for the whole body rather than once per chunk.
        """
        chunks: list[bytes] = []
        limit = self.max_body_size
        self._holdoff += 1
        try:
            while True:
                if self._buffer or self._reading or self.disconnected:
                    message = await self.receive()  # buffered, being read by the watcher, or gone
                else:
                    if self._declared_length == -1:
                        self.check_declared_length()
                    if self._body_deadline == math.inf and self.body_timeout is not None:
                        self._start_body_clock()
                    message = await self._read()
                    if message["type"] == "http.request" and limit is not None:
                        self._body_received += len(message.get("body", b""))
                        if self._body_received > limit:
                            raise HTTPException(413, "Content Too Large")
                kind = message["type"]
                if kind == "http.request":
                    chunks.append(message.get("body", b""))
                    if not message.get("more_body", False):
                        self.body_consumed = True
                        break
                elif kind == "http.disconnect":
                    return None
        finally:
            self._holdoff -= 1
            if not self._holdoff:
                self._wake()
        return chunks[0] if len(chunks) == 1 else b"".join(chunks)

    def _start_body_clock(self) -> None:
        """The endpoint starts reading the body: from now on it has body_timeout seconds."""
        assert self.body_timeout is not None
        self._body_deadline = trio.current_time() + self.body_timeout
        self._rearm_watchdog()

    def _done_watching(self) -> bool:
        """The client has gone, the watcher was stopped, or the response is sent (the last
        chunk included: while it is being sent, its send timeout is still watched)."""
        return self.disconnected or self._stop_watcher or (self.response_complete and self._sending_since is None)

    def _client_gone(self) -> bool:
        return self.disconnected  # a method, so type checkers do not assume it unchanged across awaits

    def _disconnect_message(self) -> Message:
        return dict(self._disconnect)

    def _account(self, message: Message) -> Message:
        if message["type"] == "http.request":
            if not message.get("more_body", False):
                self.body_consumed = True
            limit = self.max_body_size
            if limit is not None:
                self._body_received += len(message.get("body", b""))
                if self._body_received > limit:
                    raise HTTPException(413, "Content Too Large")
        return message

    def check_declared_length(self) -> None:
        """Raise 413 before reading anything when Content-Length is over the limit."""
        limit = self.max_body_size
        if limit is not None:
            declared = self.declared_length()
            if declared is not None and declared > limit:
                raise HTTPException(413, "Content Too Large")

    def declared_length(self) -> int | None:
        """The request's Content-Length as a number, or None when absent or malformed."""
        if self._declared_length == -1:
            self._declared_length = None
            for key, value in self.asgi_scope.get("headers", ()):
                if key.lower() == b"content-length":
                    self._declared_length = int(value) if value.isdigit() else None
                    break
        return self._declared_length

    def begin_reading(self) -> None:
        """An endpoint starts consuming the body: the watcher holds off until end_reading()."""
        self._holdoff += 1

    def end_reading(self) -> None:
        self._holdoff -= 1
        if not self._holdoff:
            self._wake()

    # -- send --------------------------------------------------------------------------

    async def send(self, message: Message) -> None:
        """The app's ``send``: tracks the response, drops it once the client is gone."""
        kind = message["type"]
        if self.disconnected:
            await trio.lowlevel.checkpoint()
            if self.is_websocket:
                raise ClientGone
            return
        if kind == "http.response.body":
            more = message.get("more_body", False)
            if not more:
                self.response_complete = True
            if more or len(message.get("body", b"")) >= _LONG_SEND:
                await self._timed_send(message)
                return
        elif kind == "http.response.start":
            if self.response_started:
                raise RuntimeError("The response has already started: 'http.response.start' was sent twice.")
            self.response_started = True
            if self._declared_too_large():
                self.response_complete = True
                await self._server_send(_TOO_LARGE_START)
                await self._server_send(_TOO_LARGE_BODY)
                raise ResponseReplaced
            self._sending_start = True
            try:
                await self._server_send(message)
            finally:
                self._sending_start = False
            return
        elif self.is_websocket:
            await self._send_websocket(message)
            return
        await self._server_send(message)

    def _declared_too_large(self) -> bool:
        """Starlette answers 413 to an over-long Content-Length even if the body was never read."""
        limit = self.max_body_size
        if limit is None or self.body_complete:
            return False
        declared = self.declared_length()
        return declared is not None and declared > limit

    async def send_chunk(self, body: bytes | memoryview) -> None:
        """Send one chunk of a streaming HTTP body (``more_body``): ``send()``'s fast path."""
        if self.disconnected:
            await trio.lowlevel.checkpoint()
            return
        if not self._watchdog_armed and self.send_timeout is not None:
            self._watchdog_armed = True
            self._rearm_watchdog()
        self._sending_since = trio.current_time()
        try:
            await self._server_send({"type": "http.response.body", "body": body, "more_body": True})
        finally:
            self._sending_since = None

    async def _timed_send(self, message: Message) -> None:
        if not self._watchdog_armed and self.send_timeout is not None:
            self._watchdog_armed = True
            self._rearm_watchdog()
        self._sending_since = trio.current_time()
        try:
            await self._server_send(message)
        finally:
            self._sending_since = None

    # -- websockets ----------------------------------------------------------------------

    async def _run_websocket(self, app: ASGIApp) -> None:
        """Run a WebSocket handler: in a cancel scope of its own, so that a disconnect can
        cancel the connection's other tasks while the handler learns of it from its next
        receive or send (``_on_disconnect`` shields it; ``cancel()`` still reaches it)."""
        self.body_timeout = None  # a connection waits for messages as long as it likes
        self.ws_accepted = False
        self._ws_sending = False
        self._ws_send_turn: trio.lowlevel.ParkingLot | None = None  # made when two tasks send at once
        with trio.CancelScope() as self._ws_handler_scope:
            try:
                await self._drive(app(self.asgi_scope, self.receive, self.send))
            except Exception as exc:
                if not self._says_closed(exc):
                    await self._close_websocket(1011)  # as Starlette's servers: 403 before accept
                    raise
                if self._is_client_disconnect(exc):  # the client left and the handler did not catch it
                    code = self._disconnect.get("code", 1000)
                    self.asgi_scope[UNHANDLED_DISCONNECT_KEY] = (code, getattr(exc, "reason", ""))
            else:
                await self._close_websocket(1000)  # the handler returned, the connection ends
        if len(self.nursery.child_tasks) > int(self._watching):  # its tasks end with it (run() ends the watcher)
            self.nursery.cancel_scope.cancel(reason="websocket closed")

    def _is_client_disconnect(self, exc: Exception) -> bool:
        """Whether ``exc`` is the WebSocketDisconnect the handler got for the client's own
        ``websocket.disconnect`` (not, say, a failed send to another closed connection)."""
        return (
            self.disconnected
            and self._disconnect["type"] == "websocket.disconnect"
            and getattr(exc, "code", None) == self._disconnect.get("code", 1000)
        )

    def _says_closed(self, exc: Exception) -> bool:
        """Whether ``exc`` only reports that the connection had closed (nothing to log)."""
        if isinstance(exc, ClientGone):
            return True
        from triolette.websockets import WebSocketDisconnect

        return isinstance(exc, WebSocketDisconnect) and (self.disconnected or self.response_complete)

    async def _close_websocket(self, code: int, reason: str = "") -> None:
        """Close the connection on the handler's behalf, if it is still open or undecided
        (before accept the server answers 403): shielded, bounded, never raises."""
        if self.disconnected or self.response_complete or (self.response_started and not self.ws_accepted):
            return
        timeout = self.send_timeout or DEFAULT_SEND_TIMEOUT
        deadline = trio.current_time() + timeout
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
            kind = message["type"]
            if kind == "websocket.send":
                await self._timed_send(message)
                return
            if kind == "websocket.accept":
                self.response_started = self.ws_accepted = True
            elif kind == "websocket.close":
                self.response_started = self.response_complete = True
            elif kind == "websocket.http.response.start":
                self.response_started = True
            elif kind == "websocket.http.response.body" and not message.get("more_body", False):
                self.response_complete = True
            await self._server_send(message)
        finally:
            turn = self._ws_send_turn
            if turn is None or not turn.unpark():
                self._ws_sending = False


def _schedule_point() -> object:
    """What trio's pure schedule point yields to the scheduler (read once, from trio itself)."""
    checkpoint = trio.lowlevel.cancel_shielded_checkpoint()  # noqa: ASYNC105 - driven by hand, once
    try:
        return checkpoint.send(None)
    finally:
        checkpoint.close()


_SCHEDULE_POINT = _schedule_point()


def _message_size(message: Message) -> int:
    body = message.get("body")
    if body is not None:
        return len(body)
    data = message.get("bytes") or message.get("text") or b""
    return len(data)


async def run_in_request_scope(app: ASGIApp, scope: Scope, receive: Receive, send: Send) -> None:
    """Run ``app`` in a RequestScope of its own, with default settings (a Router or a
    response called without the application around it)."""
    await RequestScope(scope, receive, send, _DEFAULTS).run(app)


_DEFAULTS = RequestSettings()
