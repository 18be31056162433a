"""The RequestScope: one per ASGI call, a small trio driver over the sans-IO conversation.

It owns, for one HTTP request or WebSocket connection (DESIGN.md sections 2-3):

- the request nursery (``request.nursery``), whose cancel scope carries the request's
  deadline and is cancelled with reason ``"client disconnected"``;
- the server's ``receive()``: exactly one task reads it at a time. The endpoint reads
  directly while it consumes the body; a disconnect watcher task listens only while
  nobody else reads, and keeps what it had to take (a small, capped buffer) for the app;
- the server's ``send()``: it drops messages once the client has gone, and wakes the
  watcher to time long sends (``send_timeout``).

What each message means, the body limit and the deadlines are decided in
``_conversation.py`` (plain synchronous code); the lazy start of the watcher lives in
``_lazystart.py``; the WebSocket side in ``_scope_websocket.py``. This module only moves
messages and runs tasks.

The watcher is an explicit state machine: ``IDLE`` (not started; it starts the first time
the app yields to trio while there is something to watch), ``RUNNING``, ``STOPPING`` (the
response is over: its cancel scope is cancelled) and ``DONE``.
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable, Mapping
from typing import Final

import trio

from triolette import _lazystart
from triolette._conversation import (
    BODY,
    BODY_TIMEOUT,
    CLOSING,
    DEFAULT_BUFFER_BYTES,
    DEFAULT_BUFFER_MESSAGES,
    DROP,
    GONE,
    SEND_TIMEOUT,
    SENDING,
    BodyTooLarge,
    Inbox,
    Outbox,
    check_size,
    check_timeout,
    expired,
    watch_deadline,
)
from triolette._scope_websocket import UNHANDLED_DISCONNECT_KEY, ClientGone, WebSocketSide
from triolette._utils import exception_leaves, raise_as_itself
from triolette.exceptions import ClientDisconnect, HTTPException
from triolette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = [
    "DEFAULT_BODY_TIMEOUT",
    "DEFAULT_BUFFER_BYTES",
    "DEFAULT_MAX_BODY_SIZE",
    "DEFAULT_SEND_TIMEOUT",
    "DEFAULT_WS_MAX_MESSAGE_SIZE",
    "EVENT_STREAM_KEY",
    "INTERNAL_EXCEPTIONS",
    "SCOPE_KEY",
    "UNHANDLED_DISCONNECT_KEY",
    "ClientGone",
    "RequestScope",
    "RequestSettings",
    "ResponseReplaced",
    "check_size",
    "check_timeout",
    "get_request_scope",
    "run_in_request_scope",
]

SCOPE_KEY = "triolette.request_scope"
CONNECTION_KEY = "triolette.connection"  # the ASGI scope extension triolette's driver sets (see _driver.py)
EVENT_STREAM_KEY = "triolette.event_stream"  # set in the ASGI scope of a request answered with server-sent events

DEFAULT_MAX_BODY_SIZE = 16 * 1024 * 1024
DEFAULT_BODY_TIMEOUT = 60.0
DEFAULT_SEND_TIMEOUT = 30.0
DEFAULT_WS_MAX_MESSAGE_SIZE = 16 * 1024 * 1024

_LONG_SEND = 64 * 1024  # a body chunk at least this big, or with more to come, is timed

# The watcher's states
IDLE: Final = "idle"
RUNNING: Final = "running"
STOPPING: Final = "stopping"
DONE: Final = "done"

# Who is reading the server's receive() right now
APP: Final = "app"
WATCHER: Final = "watcher"

_NOTHING: Final[Message] = {"type": "triolette.nothing"}  # what the watcher read, when it kept nothing
# ``_sending_since`` of a send under way while no watcher runs: nobody times it (yet)
_UNTIMED: Final = -math.inf

# What the watcher's read of receive() raises and does not keep for the app (unless it is an
# Exception: an ExceptionGroup is kept, a BaseExceptionGroup, which may hold Cancelled, is not)
_NOT_KEPT_FOR_THE_APP = (trio.Cancelled, KeyboardInterrupt, SystemExit, BaseExceptionGroup)

LateErrorHandler = Callable[["RequestScope", BaseException], Awaitable[bool]]


class RequestSettings:
    """What an application decides for each of its requests; built once, at startup.

    ``max_buffered_body`` caps what the disconnect watcher holds of a body the app has not
    read yet; past it the client is held back (backpressure), not buffered.
    """

    __slots__ = (
        "body_timeout",
        "cancel_on_disconnect",
        "late_error_handler",
        "max_body_size",
        "max_buffered_body",
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
        max_buffered_body: int = DEFAULT_BUFFER_BYTES,
        late_error_handler: LateErrorHandler | None = None,
    ) -> None:
        self.cancel_on_disconnect = cancel_on_disconnect
        self.timeout = check_timeout("timeout", timeout)
        limit = check_size("max_body_size", max_body_size)  # None: not set, as everywhere: the default
        self.max_body_size = DEFAULT_MAX_BODY_SIZE if limit is None else limit
        self.body_timeout = check_timeout("body_timeout", body_timeout)
        self.send_timeout = check_timeout("send_timeout", send_timeout)
        self.ws_max_message_size = check_size("ws_max_message_size", ws_max_message_size)
        buffered = check_size("max_buffered_body", max_buffered_body)
        if buffered is None:
            raise ValueError("max_buffered_body must be a non-negative number of bytes, got None")
        self.max_buffered_body = buffered
        self.late_error_handler = late_error_handler


def _same_leaves(exc: BaseException, group: BaseExceptionGroup[BaseException]) -> bool:
    """Whether ``exc`` is a copy of ``group``: a group holding the very same exceptions."""
    copied, original = exception_leaves(exc), exception_leaves(group)
    return len(copied) == len(original) and all(a is b for a, b in zip(copied, original, strict=True))


def get_request_scope(scope: Scope) -> RequestScope | None:
    """The RequestScope running this ASGI scope, if any."""
    rs: RequestScope | None = scope.get(SCOPE_KEY)
    return rs


class ResponseReplaced(Exception):
    """Internal: the response was replaced by a 413 because Content-Length is over the limit."""


INTERNAL_EXCEPTIONS = (ClientGone, ResponseReplaced)

_TOO_LARGE_START: Message = {
    "type": "http.response.start",
    "status": 413,
    "headers": [(b"content-type", b"text/plain; charset=utf-8"), (b"content-length", b"17")],
}
_TOO_LARGE_BODY: Message = {"type": "http.response.body", "body": b"Content Too Large"}


class RequestScope(WebSocketSide):
    """The task group and receive/send control for one ASGI call; see the module docstring.

    Other modules use: ``nursery``, ``receive``/``send`` (hand these to the app),
    ``owns(fn)``, ``read_body()``, ``begin_reading()``/``end_reading()``, ``send_chunk()``,
    ``disconnected``, ``response_started``/``response_complete``, ``body_cache``/
    ``body_consumed``, ``enter_body_limit()``, ``enter_settings()``, ``set_timeout()``,
    ``run_background()``, ``cancel()``, ``stop_watching()``.
    """

    __slots__ = (
        "_body_deadline",
        "_read_done",
        "_reader",
        "_request_nursery",
        "_sending_since",
        "_sending_start",
        "_server_receive",
        "_server_send",
        "_stopped",
        "_wake_watcher",
        "_watch_deadline",
        "_watcher_scope",
        "asgi_receive",
        "asgi_scope",
        "asgi_send",
        "body_cache",
        "body_consumed",
        "body_timeout",
        "cancel_on_disconnect",
        "cut_short",
        "holdoff",
        "inbox",
        "outbox",
        "send_timeout",
        "settings",
        "start_time",
        "watcher",
        "ws_max_message_size",
    )

    nursery: trio.Nursery  # where the request's own tasks go (for a WebSocket, not the handler's scope)
    # The receive and send handed to the app, bound once by run() (None after it):
    # ``receive is rs.asgi_receive`` says no middleware wrapped it (see ``owns``).
    asgi_receive: Receive | None
    asgi_send: Send | None
    _request_nursery: trio.Nursery  # the request's cancel scope: deadline, disconnect, shutdown

    def __init__(self, scope: Scope, receive: Receive, send: Send, settings: RequestSettings) -> None:
        self.asgi_scope = scope
        self.settings = settings
        websocket = self.is_websocket = scope["type"] == "websocket"
        self._server_receive = receive
        self._server_send = send
        self.cancel_on_disconnect = settings.cancel_on_disconnect
        self.send_timeout = settings.send_timeout
        self.ws_max_message_size = limit = settings.ws_max_message_size
        if websocket:
            self.body_timeout = None  # a connection waits for messages as long as it likes
            self.inbox = Inbox(True, math.inf if limit is None else limit)
        else:
            self.body_timeout = settings.body_timeout
            limit, headers = settings.max_body_size, scope.get("headers", ())
            self.inbox = Inbox(False, settings.max_buffered_body, DEFAULT_BUFFER_MESSAGES, limit, headers)
        self.outbox = Outbox(websocket)
        self.watcher: str = IDLE
        self.holdoff = 0  # readers that asked the watcher to stay out of receive()
        self._reader: str | None = None
        self._read_done: trio.Event | None = None
        self._wake_watcher: trio.Event | None = None
        self._watcher_scope: trio.CancelScope | None = None
        self._watch_deadline = math.inf  # the watcher's cancel scope's deadline, while it listens
        self._sending_since: float | None = None
        self._sending_start = False
        self._body_deadline = math.inf
        self.start_time: float | None = None
        self.body_cache: bytes | None = None
        self.body_consumed = False
        self.cut_short: str | None = None  # BODY_TIMEOUT or SEND_TIMEOUT, when the watcher ended it
        self._background_scope: trio.CancelScope | None = None
        self._stopped: str | None = None  # the reason cancel() gave

    # -- what other modules ask ---------------------------------------------------------

    def owns(self, fn: object) -> bool:
        """Whether ``fn`` is this scope's own ``receive`` or ``send`` (no middleware wraps it),
        so that a caller may use the scope's fast paths (``read_body``, ``send_chunk``).

        On the per-request path, a caller holding what it was handed compares it with the
        one attribute instead, ``send is rs.asgi_send`` (``receive is rs.asgi_receive``):
        the bound methods the scope handed to the app. That also says no middleware wrapped
        it, without a call; ``owns`` answers True for any bound method of the scope's too.
        """
        return getattr(fn, "__self__", None) is self

    @property
    def disconnected(self) -> bool:
        """The client has gone (or was dropped for not reading within send_timeout); body
        chunks it sent before may still wait for the app (the connection closed, CLOSING)."""
        state = self.inbox.state
        return state is GONE or state is CLOSING

    @property
    def response_started(self) -> bool:
        return self.outbox.started

    @property
    def response_complete(self) -> bool:
        return self.outbox.complete

    @property
    def phase(self) -> str:
        """What the request is doing now, for the inspector: ``"reading body"``, ``"in handler"``,
        ``"streaming"`` (the response, or an accepted WebSocket, is under way) or ``"background"``
        (the response is over; background work or the request's own tasks still run)."""
        if self._background_scope is not None or self.outbox.complete:
            return "background"
        if self.outbox.started:
            return "streaming"
        if self.holdoff or self._reader is APP:
            return "reading body"
        return "in handler"

    @property
    def buffered_bytes(self) -> int:
        """Bytes the watcher holds for the app (never negative)."""
        return self.inbox.buffered

    @property
    def max_body_size(self) -> int | None:
        """The body limit in force; set it with ``enter_body_limit``."""
        return self.inbox.limit

    def enter_body_limit(self, limit: int | None, *, stricter_only: bool = False) -> None:
        """Put a layer's body limit in force (the innermost applies; ``stricter_only`` for a
        mounted app's). Raises ``BodyTooLarge`` (413) at once if what was read is over it; a
        declared length over it is refused at the next read or the response start."""
        if not self.is_websocket:
            self.inbox.enter(limit, stricter_only=stricter_only)

    def enter_settings(self, settings: RequestSettings) -> None:
        """A mounted app's settings, for a request that enters it: its stricter limit and
        earlier deadline win; its cancel_on_disconnect and send_timeout apply."""
        self.cancel_on_disconnect = settings.cancel_on_disconnect
        if settings.send_timeout is not None:
            timeout = self.send_timeout
            self.send_timeout = settings.send_timeout if timeout is None else min(timeout, settings.send_timeout)
        if settings.timeout is not None:
            self.set_timeout(settings.timeout, earlier_only=True)
        self.enter_body_limit(settings.max_body_size, stricter_only=True)

    # -- running the call ------------------------------------------------------------

    async def run(self, app: ASGIApp) -> None:
        """Run ``app`` for this ASGI call inside the request nursery; see DESIGN.md section 3."""
        scope = self.asgi_scope
        scope[SCOPE_KEY] = self
        receive = self.asgi_receive = self.receive
        send = self.asgi_send = self.send
        timeout = self.settings.timeout
        app_cancelled = False
        app_group: BaseExceptionGroup[BaseException] | None = None
        try:
            try:
                async with trio.open_nursery() as nursery:
                    self.nursery = self._request_nursery = nursery
                    if timeout is not None:
                        self.start_time = trio.current_time()
                        nursery.cancel_scope.deadline = self.start_time + timeout
                    try:
                        if self.is_websocket:
                            await self._run_websocket(app, receive, send)
                        else:
                            await _lazystart.drive(app(scope, receive, send), self)
                    except trio.Cancelled:
                        app_cancelled = True
                        raise
                    except INTERNAL_EXCEPTIONS:
                        pass
                    except BaseExceptionGroup as group:
                        app_group = group  # the nursery hands back a copy of it (see _fail)
                        raise
                    if self.watcher is IDLE:
                        self.watcher = DONE  # never started: it never will
                    elif len(nursery.child_tasks) == int(self.watcher is RUNNING):  # no task left but the watcher
                        watching = self.watcher is RUNNING
                        self.stop_watching()
                        if watching:
                            nursery.cancel_scope.cancel(reason="request complete")
                    else:
                        self.stop_watching()
            except BaseExceptionGroup as group:
                await self._fail(group, app_group)
            finally:
                app_group = None  # it refers to this frame through its traceback
                self.body_cache = None
                inbox = self.inbox
                if inbox.buffer:
                    inbox.buffer.clear()
                inbox.error = None
            if app_cancelled and not self.disconnected:
                await self._after_cancel()
        finally:
            # The scope and its RequestScope refer to each other, and so do the RequestScope and
            # its bound receive and send: part them now, so that the request's objects (its body
            # among them) are freed at once, not by the GC later.
            del scope[SCOPE_KEY]
            self.asgi_receive = self.asgi_send = None

    async def _after_cancel(self) -> None:
        cs = self._request_nursery.cancel_scope
        if self.is_websocket and self._ws_handler_scope.cancel_called:  # cancel(): the server shuts down
            await self._close_websocket(1001, "Server shutting down")
            return
        if self.cut_short is BODY_TIMEOUT:
            if not self.response_started and not self.is_websocket:
                await self._send_plain(408, f"Request body not received within body_timeout ({self.body_timeout:g} s)")
            return
        if not cs.cancelled_caught or trio.current_time() < cs.deadline:
            return
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
        self.outbox.send(message)
        with trio.move_on_after(self.send_timeout or DEFAULT_SEND_TIMEOUT):
            try:
                await self._server_send(message)
            except OSError:  # pragma: no cover - the server closed the connection meanwhile
                return

    async def _fail(
        self, group: BaseExceptionGroup[BaseException], app_group: BaseExceptionGroup[BaseException] | None = None
    ) -> None:
        """Re-raise a single failure as itself (invariant 5); answer it if nobody did.

        ``app_group`` is an exception group the app itself raised. The nursery, whose scope
        the failure cancelled, takes ``Cancelled`` out of what it collected with
        ``split()``, and that rebuilds every group inside as a copy (a plain
        ``ExceptionGroup`` for a subclass without ``derive``): when the copy holds the very
        same exceptions, the app's own group is raised, with its class and identity.
        """
        if group.subgroup(trio.Cancelled) is not None:
            raise group  # cancellation from outside travels on untouched
        if self.disconnected and all(isinstance(leaf, ClientDisconnect) for leaf in exception_leaves(group)):
            return  # a request task read the body the client cut short: the request is over
        exc: BaseException = group.exceptions[0] if len(group.exceptions) == 1 else group
        if app_group is not None and exc is not app_group and _same_leaves(exc, app_group):
            exc = app_group
        if isinstance(exc, INTERNAL_EXCEPTIONS):
            return
        handler = self.settings.late_error_handler
        if handler is not None and not self.response_started and await handler(self, exc):
            return
        if isinstance(exc, HTTPException) and not self.response_started and not self.is_websocket:
            # No exception middleware around (a Router or Route used on its own): answer it here.
            await self._send_plain(exc.status_code, exc.detail, exc.headers)
            return
        del group
        raise_as_itself(exc)

    def set_timeout(self, timeout: float, *, earlier_only: bool = False) -> None:
        """Give the request a deadline ``timeout`` seconds after it started (a route's
        ``timeout=``; ``earlier_only``: unless it already has an earlier one)."""
        if self.start_time is None:
            self.start_time = trio.current_time()
        deadline = self.start_time + timeout
        cs = self._request_nursery.cancel_scope
        if not earlier_only or deadline < cs.deadline:
            cs.deadline = deadline

    async def run_background(self, background: Callable[[], Awaitable[None]]) -> None:
        """Run a response's background work, out of reach of the disconnect and the deadline.

        Once the response is complete a disconnect cancels nothing (``_on_disconnect``), so
        a request without a deadline runs the work unshielded: a cancel scope around the
        ASGI call (a server that shuts down, hypercorn's own worker among them) cancels it
        at its next checkpoint, as on Starlette. A request with a deadline runs it shielded,
        so that the deadline stays with the request's other tasks; a task beside it in the
        request nursery, cancelled by whatever the shield keeps out, then passes on a
        cancellation from outside the request (one scheduling step later). A request already
        cancelled (the client left mid-response) runs it shielded. Shutdown reaches it in
        every case: ``cancel()`` cancels the work's scope, also before the work starts.
        """
        request = self._request_nursery.cancel_scope
        shielded = request.cancel_called or request.deadline != math.inf
        with trio.CancelScope(shield=shielded) as cs:
            self._background_scope = cs
            if self._stopped is not None:  # cancel() came before the background work started
                cs.cancel(reason=self._stopped)
            relay: trio.CancelScope | None = None
            relayed = trio.Event()
            if shielded and not request.cancel_called:
                relay = trio.CancelScope()
                self._request_nursery.start_soon(self._pass_on_outer_cancellation, relay, relayed, cs)
            try:
                await background()
            finally:
                self._background_scope = None
                if relay is not None:
                    relay.cancel()
                    with trio.CancelScope(shield=True):
                        await relayed.wait()  # at once: no task of ours outlives the work

    async def _pass_on_outer_cancellation(
        self, relay: trio.CancelScope, relayed: trio.Event, background: trio.CancelScope
    ) -> None:
        """Beside the background work: a cancellation of the call from outside the request
        (not the work's end, not the request's own) cancels the work as well."""
        try:
            with relay:
                await trio.sleep_forever()
        finally:
            if not relay.cancel_called and not self._request_nursery.cancel_scope.cancel_called:
                background.cancel(reason="cancelled from outside the request")
            relayed.set()

    def cancel(self, reason: str) -> None:
        """Cancel everything this request runs, background work included (the drain's last step),
        also background work that has yet to start."""
        self._stopped = reason
        self._request_nursery.cancel_scope.cancel(reason=reason)
        if self._background_scope is not None:
            self._background_scope.cancel(reason=reason)
        if self.is_websocket:  # tells _after_cancel that the server shuts down
            self._ws_handler_scope.cancel(reason=reason)

    def stop_watching(self) -> None:
        """End the disconnect watcher; the response is over, the request's tasks go on."""
        state = self.watcher
        if state is IDLE:
            self.watcher = DONE  # never started: it never will
        elif state is RUNNING:
            self.watcher = STOPPING
            if self._watcher_scope is not None:
                self._watcher_scope.cancel(reason="request complete")
            self._wake()

    # -- the disconnect watcher --------------------------------------------------------

    def start_watcher(self) -> None:
        if self.watcher is IDLE:
            self.watcher = RUNNING
            if self._sending_since is not None:  # the send that blocks now is timed from now
                self._sending_since = trio.current_time()
            self._request_nursery.start_soon(self._watch)

    def watcher_needed(self, trap: object) -> bool:
        """Whether the app, about to yield ``trap`` to trio, leaves the watcher a job.

        The one yield that needs no watcher before the response is complete is a pure
        schedule point in the app's send of the response start (a socket write that went
        through at once); if that send blocks (a client that does not read), it does.
        """
        if self.watcher is not IDLE or self.disconnected:
            return False
        if self.outbox.complete:
            return self._sending_since is not None  # a long last chunk: the send timeout
        return not (self._sending_start and _lazystart.is_schedule_point(trap))

    async def _watch(self) -> None:
        try:
            await self._watch_until_done()
        except trio.Cancelled:
            if self._request_nursery.cancel_scope.cancel_called and self.watcher is not STOPPING:
                raise  # the request's own cancellation: disconnect, deadline, drain
            # Either the request is complete (we stopped the watcher), or a cancel scope around
            # the whole ASGI call, in the caller's task, was cancelled: the app meets that at
            # its own next checkpoint, and this task only stops listening. Re-raising here
            # would replace a response that the app completes without another checkpoint
            # (Starlette, with no task waiting then, returns it) with this task's Cancelled.
            return
        finally:
            self.watcher = DONE

    async def _watch_until_done(self) -> None:
        # Once the response is complete there is nothing left to watch for: a disconnect
        # then cancels nothing, and no send or body read is left to time. Stopping there
        # (rather than when the app returns) spares the watcher most of its steps.
        # The watcher starts as the app yields; when that yield is a schedule point, both are
        # runnable at once and trio picks either first. One schedule point here lets the app's
        # next step always come first, so what the app sees (is_disconnected(), a disconnect
        # cancelling it there or later) does not depend on that pick.
        await trio.lowlevel.cancel_shielded_checkpoint()
        if self._done_watching():
            return  # the app answered before the watcher first read: nothing to watch
        if not (self.holdoff or self._reader or self.inbox.state is not BODY or self._may_have_body()):
            # A request without a body: the server already holds its one (empty) http.request
            # message, so this first read returns at once and needs no cancel scope around it.
            message = await self._read(WATCHER)
            if message is _NOTHING or message is self.inbox.disconnect:
                return
            self.inbox.push(message)  # the loop below stops at once if that was all (GONE)
        while not self._done_watching():
            stop = False
            deadline = self._watch_deadline = self._watchdog_deadline()
            with trio.CancelScope(deadline=deadline) as cs:
                self._watcher_scope = cs
                stop = await self._listen()
            self._watcher_scope = None
            self._watch_deadline = math.inf
            if stop:
                return
            if cs.cancelled_caught and self.watcher is RUNNING:
                self._check_timeouts()

    async def _listen(self) -> bool:
        """Read for the app while nobody else does; True when the watcher must stop."""
        inbox = self.inbox
        while True:
            while self.holdoff or self._reader or inbox.full():
                if not (self.holdoff or self._reader):
                    self._watch_connection()  # held back by its full buffer: nobody reads for now
                    if not inbox.full():
                        break  # the connection had closed already: read on to the disconnect
                event = self._wake_watcher = trio.Event()
                await event.wait()
            if self._done_watching():  # the endpoint read the disconnect itself, or the response is over
                return True
            message = await self._read(WATCHER)
            if message is _NOTHING:
                if inbox.error is not None:
                    return True  # receive() failed: the app learns of it on its next read
                await trio.lowlevel.checkpoint()  # a stray message dropped: let the others run
                continue
            if message is inbox.disconnect:
                return True
            inbox.push(message)  # a body chunk (perhaps the last one the client sent before it left)

    def _may_have_body(self) -> bool:
        """Whether a body may follow: announced (Content-Length other than 0, Transfer-Encoding),
        or possible without either (HTTP/2 and HTTP/3 frame it themselves)."""
        if self.asgi_scope.get("http_version", "1.1") not in ("1.1", "1.0"):
            return True
        for key, value in self.asgi_scope.get("headers", ()):
            key = key.lower()
            if key == b"transfer-encoding" or (key == b"content-length" and value.strip() not in (b"0", b"")):
                return True
        return False

    def _wake(self) -> None:
        event = self._wake_watcher
        if event is not None:
            self._wake_watcher = None
            event.set()

    def _done_watching(self) -> bool:
        """The client has gone, the watcher was stopped, or the response is sent (the last
        chunk included: while it is being sent, its send timeout is still watched)."""
        return (
            self.inbox.state is GONE  # not CLOSING: what is queued before the disconnect is read first
            or self.watcher is not RUNNING
            or (self.outbox.complete and self._sending_since is None)
            or self.inbox.error is not None
        )

    def _watch_connection(self) -> None:
        """Ask the serving layer, if it can (the ``triolette.connection`` extension), to call
        ``_connection_closed`` when the connection closes. Only while the watcher does not
        read: then a disconnect may wait unseen behind body chunks nobody reads. Asking again
        replaces the callback; it is called at once if the connection has closed."""
        extensions = self.asgi_scope.get("extensions")
        if extensions and CONNECTION_KEY in extensions:
            extensions[CONNECTION_KEY].on_close(self._connection_closed)

    def _connection_closed(self) -> None:
        """The serving layer's word that the connection closed (the ``triolette.connection``
        extension): the disconnect message may wait behind body chunks nobody read, and the
        server reads no more. The request is cancelled as for a disconnect, and the watcher
        stops holding the client back: it reads on to the disconnect."""
        self.inbox.closed()
        self._wake()
        self._on_disconnect()

    def _on_disconnect(self) -> None:
        # Background work runs once its response is sent; if a middleware still holds the
        # response's last message, the client leaving does not cancel that work either.
        if self.cancel_on_disconnect and not self.outbox.complete and self._background_scope is None:
            if self.is_websocket and self._ws_handler_told():
                return  # it gets WebSocketDisconnect and a bounded grace for its cleanup
            self._request_nursery.cancel_scope.cancel(reason="client disconnected")

    # -- deadlines: decided in _conversation, enforced here ------------------------------

    def _watchdog_deadline(self) -> float:
        """When the watcher must wake up to check the send and body timeouts."""
        body = self._body_deadline if self.holdoff and not self.inbox.complete else math.inf
        return watch_deadline(self._sending_since, self.send_timeout, body)

    def _rearm_watchdog(self) -> None:
        cs = self._watcher_scope
        if cs is not None:
            deadline = self._watchdog_deadline()
            if deadline < self._watch_deadline:
                cs.deadline = self._watch_deadline = deadline

    def _check_timeouts(self) -> None:
        body = self._body_deadline if self.holdoff and not self.inbox.complete else math.inf
        which = expired(trio.current_time(), self._sending_since, self.send_timeout, body)
        if which is SEND_TIMEOUT:
            self.inbox.lost()
            self.cut_short = SEND_TIMEOUT
            reason = f"client did not read within send_timeout ({self.send_timeout:g} s)"
            self._request_nursery.cancel_scope.cancel(reason=reason)
        elif which is BODY_TIMEOUT:
            self.cut_short = BODY_TIMEOUT
            self._request_nursery.cancel_scope.cancel(
                reason=f"request body not received within body_timeout ({self.body_timeout:g} s)"
            )

    def _start_body_clock(self) -> None:
        """The endpoint starts reading the body: from now on it has body_timeout seconds
        (called when the clock has not started yet and there is a body_timeout)."""
        timeout = self.body_timeout
        if timeout is not None and not self.inbox.complete:
            self._body_deadline = trio.current_time() + timeout
            self._rearm_watchdog()

    # -- receive -----------------------------------------------------------------------

    async def _read(self, reader: str) -> Message:
        """One message from the server. ``_NOTHING`` (the watcher's reads only): a stray
        message was dropped, or the read failed (the error is kept in the inbox for the app)."""
        self._reader = reader
        try:
            message = await self._server_receive()
        except BaseException as exc:
            # The watcher reads on the app's behalf: what receive() raised is the app's, at its
            # next read (an app that never reads never sees it, as on Starlette, where nothing
            # would have called receive()). Cancellation and a request to stop travel on.
            if reader is APP or (isinstance(exc, _NOT_KEPT_FOR_THE_APP) and not isinstance(exc, Exception)):
                raise
            self.inbox.fail(exc)
            return _NOTHING
        finally:
            self._release_reader()
        if reader is APP:
            self.inbox.received(message, True)  # the app's own read is counted at once
        elif self.inbox.received(message) is DROP:
            return _NOTHING
        if self.inbox.state is GONE:
            self._on_disconnect()
        return message

    def _release_reader(self) -> None:
        """The read in progress is over: wake whoever waits for it."""
        self._reader = None
        done = self._read_done
        if done is not None:
            self._read_done = None
            done.set()

    async def receive(self) -> Message:
        """The app's ``receive``: one reader at a time, nothing lost, limits applied."""
        inbox = self.inbox
        if inbox.buffer:
            message = inbox.pop()
            self._wake()
            return self._account(message)
        if inbox.error is not None:
            inbox.raise_error()
        if inbox.state is GONE:
            if not self.is_websocket:  # a WebSocket handler gets its WebSocketDisconnect before any cancellation
                await trio.lowlevel.checkpoint()
            return dict(inbox.disconnect)
        if inbox.declared_over:
            raise BodyTooLarge
        self.holdoff += 1
        if self._body_deadline == math.inf and self.body_timeout is not None:
            self._start_body_clock()  # also while waiting below for the watcher's read to end
        try:
            while self._reader:
                done = self._read_done
                if done is None:
                    done = self._read_done = trio.Event()
                if self.is_websocket:
                    await self._ws_wait(done)  # notes whether the handler itself is waiting
                else:
                    await done.wait()
                if inbox.buffer:
                    return self._account(inbox.pop())
                if inbox.error is not None:
                    inbox.raise_error()
                if self._client_gone():
                    return dict(inbox.disconnect)
            message = await self._read(APP)
        finally:
            self.holdoff -= 1
            if not self.holdoff:
                self._wake()
        if message["type"] == "http.request" and not message.get("more_body", False):
            self.body_consumed = True
        return message

    async def read_body(self) -> bytes | None:
        """The rest of the body in one piece, or None if the client left first.

        ``Request.body()``'s fast path: the same rules as ``receive()``, but the watcher is
        held off once for the whole body rather than once per chunk, and the chunks the
        server hands out are read in one loop that holds the reader's place throughout.
        """
        chunks: list[bytes] = []
        inbox = self.inbox
        self.holdoff += 1
        try:
            # What the watcher took, or is taking, comes first; so do a client that has gone
            # and an error receive() raised while the watcher read.
            while inbox.buffer or self._reader or inbox.state is GONE or inbox.error is not None:
                message = await self.receive()
                kind = message["type"]
                if kind == "http.request":
                    chunks.append(message.get("body", b""))
                    if not message.get("more_body", False):
                        return chunks[0] if len(chunks) == 1 else b"".join(chunks)
                elif kind == "http.disconnect":
                    return None
            if inbox.declared_over:
                raise BodyTooLarge
            if self._body_deadline == math.inf and self.body_timeout is not None:
                self._start_body_clock()
            server_receive = self._server_receive
            self._reader = APP
            try:
                while True:
                    message = await server_receive()
                    inbox.received(message, True)  # counts the chunk: BodyTooLarge past the limit
                    kind = message["type"]
                    if kind == "http.request":
                        chunks.append(message.get("body", b""))
                        if not message.get("more_body", False):
                            self.body_consumed = True
                            break
                    elif kind == "http.disconnect":
                        self._on_disconnect()
                        return None
            finally:
                self._release_reader()
        finally:
            self.holdoff -= 1
            if not self.holdoff:
                self._wake()
        return chunks[0] if len(chunks) == 1 else b"".join(chunks)

    def _client_gone(self) -> bool:
        return self.inbox.state is GONE  # a method, so type checkers do not assume it unchanged across awaits

    def _account(self, message: Message) -> Message:
        if message["type"] == "http.request":
            if not message.get("more_body", False):
                self.body_consumed = True
            self.inbox.count(len(message.get("body", b"")))
        return message

    def begin_reading(self) -> None:
        """An endpoint starts consuming the body: the watcher holds off until end_reading()."""
        self.holdoff += 1

    def end_reading(self) -> None:
        self.holdoff -= 1
        if not self.holdoff:
            self._wake()

    # -- send --------------------------------------------------------------------------

    async def send(self, message: Message) -> None:
        """The app's ``send``: checks the message against the response's state, drops it
        once the client is gone, and times long sends."""
        if self.inbox.state is GONE:
            if self.is_websocket:
                raise ClientGone  # at once: the handler gets WebSocketDisconnect before any cancellation
            await trio.lowlevel.checkpoint()
            return
        if self.is_websocket:
            await self._send_websocket(message)
            return
        kind = message["type"]
        if kind == "http.response.body":
            if self.outbox.body(message) or len(message.get("body", b"")) >= _LONG_SEND:
                await self._timed_send(message)
                return
        elif kind == "http.response.start":
            self.outbox.start(message)
            if self.inbox.declared_over:
                # Starlette answers 413 to an over-long Content-Length even if the body was never
                # read (or the watcher read it all, uncounted, for an app that never asked).
                self.outbox.send({"type": "http.response.body"})
                await self._server_send(_TOO_LARGE_START)
                await self._server_send(_TOO_LARGE_BODY)
                raise ResponseReplaced
            self._sending_start = True
            try:
                await self._server_send(message)
            finally:
                self._sending_start = False
            return
        else:
            self.outbox.send(message)  # early hints, trailers, pathsend, debug
        await self._server_send(message)

    async def send_chunk(self, body: bytes | memoryview) -> bool:
        """Send one chunk of a streaming HTTP body (``more_body``): ``send()``'s fast path,
        one coroutine per chunk. Answers False, having sent nothing, once the client has gone."""
        if self.inbox.state is GONE:
            await trio.lowlevel.checkpoint()
            return False
        message = {"type": "http.response.body", "body": body, "more_body": True}
        outbox = self.outbox
        if outbox.state is not SENDING:  # a chunk with more to come leaves SENDING as it is
            outbox.send(message)
        self._start_send_clock()  # _timed_send's steps, in this coroutine: one coroutine per chunk
        try:
            await self._server_send(message)
        finally:
            self._sending_since = None
        return True

    async def _timed_send(self, message: Message) -> None:
        """Send, with the watcher timing the send (``send_timeout``)."""
        self._start_send_clock()
        try:
            await self._server_send(message)
        finally:
            self._sending_since = None

    def _start_send_clock(self) -> None:
        """A send begins. While the watcher runs, it is timed from now. Otherwise it is marked
        ``_UNTIMED``: most sends go through at once, and one that blocks starts the watcher
        (``watcher_needed``), which times it from that moment (``start_watcher``)."""
        if self.watcher is RUNNING:
            self._sending_since = trio.current_time()
            if self._watcher_scope is not None and self._watch_deadline == math.inf:  # else armed already
                self._rearm_watchdog()
        else:
            self._sending_since = _UNTIMED


async def run_in_request_scope(app: ASGIApp, scope: Scope, receive: Receive, send: Send) -> None:
    """Run ``app`` in a RequestScope of its own, with default settings (a Router or a
    response called without the application around it)."""
    await RequestScope(scope, receive, send, _DEFAULTS).run(app)


_DEFAULTS = RequestSettings()
