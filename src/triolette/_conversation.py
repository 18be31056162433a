"""The ASGI conversation of one request, sans-IO: plain synchronous state, no trio, no await.

The RequestScope (``_scope.py``) moves messages between the server and the app; every
decision about what a message means is taken here, from explicit state:

- ``BodyLimit``: the request body's size limit, one object for the app, Router, Mount,
  Route and RequestBodyLimitMiddleware. Content-Length is parsed once; bytes are counted as
  they are read; a stricter limit entered late re-checks what was already read.
- ``Inbox``: the request side. What a message from the server means in each state, the
  buffer of messages the disconnect watcher had to take (capped by bytes and by count),
  and an error ``receive()`` raised while the watcher read, kept for the app.
- ``Outbox``: the response side, one transition table for HTTP and one for WebSocket (and
  one for the messages a WebSocket app receives); a message the table does not allow raises
  ``ProtocolError`` naming the message and the state, or the exception its owner words
  (``WebSocket`` and the test clients keep Starlette's wording, from the same table).
- ``watch_deadline`` and ``expired``: when the watcher must wake up for the send and
  body timeouts, and which of them has run out, as pure functions of the state and the clock.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable, Iterable
from typing import Final

from triolette.exceptions import HTTPException
from triolette.types import Message

DEFAULT_BUFFER_BYTES: Final = 128 * 1024
DEFAULT_BUFFER_MESSAGES: Final = 64


class ProtocolError(RuntimeError):
    """An ASGI message was sent that the conversation's state does not allow."""


class BodyTooLarge(HTTPException):
    """The request body is over the size limit in force: answered ``413 Content Too Large``."""

    def __init__(self) -> None:
        super().__init__(status_code=413, detail="Content Too Large")


def check_size(name: str, value: int | None) -> int | None:
    """Validate a size option: None (no limit) or a non-negative whole number of bytes."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{name} must be a non-negative number of bytes or None, got {value!r}")
    return value


def check_timeout(name: str, value: float | None) -> float | None:
    """Validate a timeout option: None (no limit) or a positive number of seconds."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0 or math.isnan(value):
        raise ValueError(f"{name} must be a positive number of seconds or None, got {value!r}")
    return float(value)


def content_length(headers: Iterable[tuple[bytes, bytes]]) -> int | None:
    """The Content-Length header as a number; None when absent or not a plain number."""
    for key, value in headers:
        if key.lower() == b"content-length":
            return int(value) if value.isdigit() else None
    return None


# -- the body limit ----------------------------------------------------------------------------


class BodyLimit:
    """The size limit on one request's body, and the bytes read so far.

    ``limit`` is None for no limit. ``enter()`` is how a layer (Route, Mount, Router, a
    mounted app, RequestBodyLimitMiddleware) puts its own limit in force.
    """

    __slots__ = ("bytes_read", "declared", "declared_over", "limit")

    def __init__(self, limit: int | None, declared: int | None) -> None:
        self.limit = limit
        self.declared = declared
        self.bytes_read = 0
        # Whether Content-Length announces more than the limit (kept up to date by enter()).
        self.declared_over = limit is not None and declared is not None and declared > limit

    def enter(self, limit: int | None, *, stricter_only: bool = False) -> None:
        """Put ``limit`` in force: the innermost layer's limit applies (``stricter_only``:
        only if it is stricter, as a mounted app's). Raises ``BodyTooLarge`` at once if the
        bytes already read are over it. A declared length over it is refused later, at the
        next read or at the response start (``declared_over``), as Starlette does: a layer
        further in may still put a looser limit in force."""
        if stricter_only and (limit is None or (self.limit is not None and self.limit <= limit)):
            return
        self.limit = limit
        declared = self.declared
        self.declared_over = limit is not None and declared is not None and declared > limit
        if limit is not None and self.bytes_read > limit:
            raise BodyTooLarge

    def count(self, size: int) -> None:
        """Count ``size`` more bytes read; raises ``BodyTooLarge`` past the limit."""
        self.bytes_read += size
        limit = self.limit
        if limit is not None and self.bytes_read > limit:
            raise BodyTooLarge


# -- the request side ----------------------------------------------------------------------------

# Inbox states
BODY: Final = "receiving the body"
CLOSING: Final = "connection closed, messages still queued"  # the server said so outside the messages
COMPLETE: Final = "body complete"
OPEN: Final = "open"  # a WebSocket connection, before the client leaves
GONE: Final = "client gone"

_HTTP_DISCONNECT: Final[Message] = {"type": "http.disconnect"}
_WS_DISCONNECT: Final[Message] = {"type": "websocket.disconnect"}

# What to do with a message the server handed out
DELIVER: Final = "deliver"
DROP: Final = "drop"


# The buffer of every Inbox that has not buffered anything yet; never appended to.
_NO_BUFFER: Final[deque[Message]] = deque(maxlen=0)


class Inbox(BodyLimit):
    """What the server has said on the request side, and what the watcher holds for the app.

    It is the request's ``BodyLimit`` too (``limit``, ``declared``, ``bytes_read``, ``enter``,
    ``count``): Content-Length is parsed once, from ``headers``, and the body the app reads
    itself is counted in the same step that records it (``received(message, count=True)``).

    The states, and what moves between them (``received`` for a message, ``closed`` for the
    serving layer's word that the connection is gone, ``lost`` for a client that stopped
    reading):

    ==========  ===================  ==============  ==========  ========
    state       chunk, more_body     last chunk      disconnect  closed()
    ==========  ===================  ==============  ==========  ========
    BODY        BODY                 COMPLETE        GONE        CLOSING
    CLOSING     CLOSING              GONE            GONE        CLOSING
    COMPLETE    dropped              dropped         GONE        GONE
    OPEN (ws)   -                    -               GONE        CLOSING
    GONE        dropped              dropped         GONE        GONE
    ==========  ===================  ==============  ==========  ========

    CLOSING: the client has gone, but body chunks (or WebSocket messages) it sent before wait
    in the server's queue ahead of its disconnect message; they are delivered, in order,
    then the disconnect (a WebSocket message leaves CLOSING as it is). Once
    the client has gone (CLOSING or GONE) it never comes back. After the body is complete
    only the disconnect can follow, so ``closed()`` there is as good as the message.

    A full buffer holds the client back (``full()``) only while the body still comes (BODY)
    or a WebSocket is OPEN: in CLOSING nothing more arrives than the server has queued
    already, after the body is COMPLETE only the disconnect can follow, and once GONE
    nothing is read.
    """

    __slots__ = ("buffer", "buffered", "disconnect", "error", "max_bytes", "max_messages", "state")

    def __init__(
        self,
        websocket: bool,
        max_bytes: float = DEFAULT_BUFFER_BYTES,
        max_messages: int = DEFAULT_BUFFER_MESSAGES,
        limit: int | None = None,
        headers: Iterable[tuple[bytes, bytes]] = (),
    ) -> None:
        # BodyLimit's fields, set here rather than through its __init__: one call less per request
        self.limit = limit
        self.declared = declared = content_length(headers) if headers else None
        self.bytes_read = 0
        self.declared_over = declared is not None and limit is not None and declared > limit
        self.state: str = OPEN if websocket else BODY
        self.buffer: deque[Message] = _NO_BUFFER  # most requests never buffer: made on the first push
        self.buffered = 0  # bytes in ``buffer``
        self.max_bytes = max_bytes
        self.max_messages = max_messages
        self.disconnect: Message = _WS_DISCONNECT if websocket else _HTTP_DISCONNECT  # never mutated
        self.error: BaseException | None = None  # raised by receive() while the watcher read

    def received(self, message: Message, count: bool = False) -> str:
        """Record ``message`` from the server: ``DELIVER`` it (to its reader or the buffer)
        or ``DROP`` it (an ``http.request`` after the body was complete: a protocol
        violation by the server, never buffered).

        With ``count`` (the app reads the message itself, nothing is buffered), a body chunk
        is counted against the limit at once, in the same step: ``BodyTooLarge`` past it.
        """
        try:
            kind = message["type"]
        except (TypeError, KeyError, IndexError):
            raise TypeError(f"receive() returned {message!r}, not an ASGI message: a dict with a 'type'") from None
        if kind == "http.request":
            state = self.state
            if state is not BODY and state is not CLOSING:
                return DROP
            if not message.get("more_body", False):
                self.state = COMPLETE if state is BODY else GONE
            if count:  # BodyLimit.count(), in this step: one call per chunk
                self.bytes_read += len(message.get("body", b""))
                if self.limit is not None and self.bytes_read > self.limit:
                    raise BodyTooLarge
        elif kind == "http.disconnect" or kind == "websocket.disconnect":
            self.state = GONE
            self.disconnect = message
        return DELIVER

    def push(self, message: Message) -> None:
        """Keep a message the watcher took, for the app's next read."""
        buffer = self.buffer
        if buffer is _NO_BUFFER:
            buffer = self.buffer = deque()
        buffer.append(message)
        self.buffered += message_size(message)

    def pop(self) -> Message:
        message = self.buffer.popleft()
        self.buffered -= message_size(message)
        return message

    def full(self) -> bool:
        """Whether the watcher must stop reading and hold the client back: while the body
        (or a WebSocket's messages) still comes, and the buffer is at its cap."""
        state = self.state
        if state is not BODY and state is not OPEN:
            return False
        buffer = self.buffer
        return bool(buffer) and (self.buffered >= self.max_bytes or len(buffer) >= self.max_messages)

    def closed(self) -> None:
        """The serving layer says the connection is gone, though its disconnect message may
        wait behind body chunks not read yet (the server's queue holds no more than it has)."""
        state = self.state
        if state is BODY or state is OPEN:
            self.state = CLOSING
        elif state is COMPLETE:
            self.state = GONE

    def watch_only_for_disconnect(self) -> bool:
        """After the body is complete, the only message worth reading is the disconnect."""
        return self.state is COMPLETE

    @property
    def gone(self) -> bool:
        """The client has gone (its disconnect message may still wait behind body chunks)."""
        state = self.state
        return state is GONE or state is CLOSING

    @property
    def complete(self) -> bool:
        """The whole body has been read from the server (or the client left)."""
        return self.state is not BODY and self.state is not OPEN

    def lost(self) -> None:
        """The connection is lost without a disconnect message (a client that stopped reading)."""
        self.state = GONE

    def fail(self, error: BaseException) -> None:
        """``receive()`` raised while the watcher read: keep it for the app's next read."""
        self.error = error

    def raise_error(self) -> None:
        """Raise, once, the error ``receive()`` raised while the watcher read (if any)."""
        error = self.error
        if error is not None:
            self.error = None
            raise error


def message_size(message: Message) -> int:
    """The payload size of a request or WebSocket message, in bytes (characters for text)."""
    body = message.get("body")
    if body is not None:
        return len(body)
    data = message.get("bytes") or message.get("text") or b""
    return len(data)


# -- the response side -----------------------------------------------------------------------------

# Outbox states, HTTP
START: Final = "before the response start"
SENDING: Final = "while the body is sent"
TRAILERS: Final = "while trailers are sent"
DONE: Final = "after the response is complete"
# Outbox states, WebSocket
CONNECTING: Final = "before accept"
CONNECTED: Final = "while the connection is open"
DENIAL: Final = "while a denial response is sent"
CLOSED: Final = "after the connection is closed"
# Outbox states, the client's side of a WebSocket (what the server hands the app: ``WebSocket.receive``)
HANDSHAKE: Final = "before the connect message"
LISTENING: Final = "while the client is connected"
LEFT: Final = "after the client disconnected"

# (state, message type) -> next state. "body" and "trailers" entries depend on more_body /
# more_trailers and on whether the start announced trailers: see Outbox._follow.
_HTTP: Final[dict[tuple[str, str], str]] = {
    (START, "http.response.start"): SENDING,
    (START, "http.response.early_hint"): START,
    (START, "http.response.debug"): START,
    (SENDING, "http.response.body"): SENDING,
    (SENDING, "http.response.pathsend"): SENDING,
    (SENDING, "http.response.debug"): SENDING,
    (SENDING, "http.response.early_hint"): SENDING,  # servers may pass a late one on, or drop it
    (START, "http.response.push"): START,  # HTTP/2 server push (extension)
    (SENDING, "http.response.push"): SENDING,
    (TRAILERS, "http.response.trailers"): TRAILERS,
}
_WEBSOCKET: Final[dict[tuple[str, str], str]] = {
    (CONNECTING, "websocket.accept"): CONNECTED,
    (CONNECTING, "websocket.close"): CLOSED,
    (CONNECTING, "websocket.http.response.start"): DENIAL,
    (CONNECTED, "websocket.send"): CONNECTED,
    (CONNECTED, "websocket.close"): CLOSED,
    (DENIAL, "websocket.http.response.body"): DENIAL,
}
_WEBSOCKET_CLIENT: Final[dict[tuple[str, str], str]] = {
    (HANDSHAKE, "websocket.connect"): LISTENING,
    (LISTENING, "websocket.receive"): LISTENING,
    (LISTENING, "websocket.disconnect"): LEFT,
}
# Messages whose next state also depends on their fields (more_body, more_trailers, trailers).
_FOLLOW_UP: Final = frozenset(
    {
        "http.response.start",
        "http.response.body",
        "http.response.pathsend",
        "http.response.trailers",
        "websocket.http.response.body",
    }
)
_ALLOWED: Final[dict[str, list[str]]] = {}
for _state, _kind in (*_HTTP, *_WEBSOCKET, *_WEBSOCKET_CLIENT):
    _ALLOWED.setdefault(_state, []).append(_kind)
_ALLOWED[DONE] = _ALLOWED[CLOSED] = _ALLOWED[LEFT] = []
del _state, _kind

# Each table with its first and its last state.
_HTTP_KIND: Final = (_HTTP, START, DONE)
_WEBSOCKET_KIND: Final = (_WEBSOCKET, CONNECTING, CLOSED)
_CLIENT_KIND: Final = (_WEBSOCKET_CLIENT, HANDSHAKE, LEFT)

Refusal = Callable[["Outbox", str], Exception]
"""What an ``Outbox`` raises for a message its state does not allow: called with the
outbox (still in the state the message found) and the message type."""


def protocol_error(outbox: Outbox, kind: str) -> ProtocolError:
    """The default ``Refusal``: a ``ProtocolError`` naming the message and the state."""
    return ProtocolError(expected(outbox.state, kind))


class Outbox:
    """The order of one side's ASGI messages: one transition table for an HTTP response,
    one for a WebSocket's app side, and one for a WebSocket's client side (``client=True``:
    what the server hands the app, for ``WebSocket.receive``).

    ``refuse`` makes the exception for a message out of order (``protocol_error`` by
    default): a caller with its own wording (Starlette's, for ``WebSocket`` and the test
    clients) chooses it here, and the table stays the one decision about order.
    """

    __slots__ = ("_kind", "_refuse", "state", "status", "trailers")

    # Keyword options that are not keyword-only: filling keyword-only defaults costs more on
    # each call, and the RequestScope makes one Outbox per request.
    def __init__(self, websocket: bool, client: bool = False, refuse: Refusal = protocol_error) -> None:
        kind = self._kind = _CLIENT_KIND if client else _WEBSOCKET_KIND if websocket else _HTTP_KIND
        self.state: str = kind[1]
        self._refuse = refuse
        self.trailers = False  # the response start announced trailers
        self.status: int | None = None  # the HTTP response's status, once started

    def send(self, message: Message) -> str:
        """Advance over ``message`` (one the app sends, or, for ``client=True``, one it
        receives); returns the new state. Raises ``refuse(self, type)`` (a ``ProtocolError``
        by default) for a message the current state does not allow, leaving the state as it was."""
        kind = message["type"]
        state = self._kind[0].get((self.state, kind))
        if state is None:
            raise self._refuse(self, kind)
        if kind in _FOLLOW_UP:
            state = self._follow(kind, message, state)
        self.state = state
        return state

    def _follow(self, kind: str, message: Message, state: str) -> str:
        """The next state after a message whose fields decide it (see ``_FOLLOW_UP``)."""
        if kind == "http.response.start":
            self.trailers = bool(message.get("trailers", False))
            self.status = message.get("status")
        elif kind == "http.response.trailers":
            if not message.get("more_trailers", False):
                return DONE
        elif not message.get("more_body", False):  # a body: HTTP, pathsend or a denial response's
            if kind == "websocket.http.response.body":
                return CLOSED
            return TRAILERS if self.trailers else DONE
        return state

    def allows(self, kind: str) -> bool:
        """Whether a message of type ``kind`` may come now."""
        return (self.state, kind) in self._kind[0]

    def lost(self) -> None:
        """The conversation ended without a message for it (a send that failed, a client
        dropped for a message over the size limit): nothing more may come."""
        self.state = self._kind[2]

    def start(self, message: Message) -> None:
        """``send()`` for an ``http.response.start`` (the table's entry, taken directly)."""
        if self.state is START:
            self.state = SENDING
            if "trailers" in message:  # rare: without it, trailers stays False and no call is made
                self.trailers = bool(message["trailers"])
            self.status = message.get("status")
        else:
            self.send(message)  # raises

    def body(self, message: Message) -> bool:
        """``send()`` for an ``http.response.body`` (the table's entry, taken directly);
        returns whether more body follows."""
        more: bool = message.get("more_body", False)  # truthy or not, as the table reads it
        if self.state is SENDING:
            if not more:
                self.state = TRAILERS if self.trailers else DONE
        else:
            self.send(message)  # raises
        return more

    @property
    def started(self) -> bool:
        """The response (or the WebSocket accept, close, or denial; or the client's connect) has begun."""
        return self.state is not self._kind[1]

    @property
    def complete(self) -> bool:
        """Nothing more may be sent: the response is complete, or the connection closed."""
        return self.state is self._kind[2]


def expected(state: str, kind: str, *, name_state: bool = True) -> str:
    """The error for ``kind`` sent in ``state``, in the words Starlette uses; with
    ``name_state`` the state is named too (``False``: exactly Starlette's sentence)."""
    allowed = _ALLOWED[state]
    where = f" {state}" if name_state else ""
    if not allowed:
        return f"Unexpected ASGI message {kind!r}{where}: nothing more may be sent."
    names = [f'"{name}"' for name in allowed]
    listed = names[0] if len(names) == 1 else ", ".join(names[:-1]) + " or " + names[-1]
    return f"Expected ASGI message {listed}{where}, but got {kind!r}"


# -- deadlines -----------------------------------------------------------------------------------

SEND_TIMEOUT: Final = "send_timeout"
BODY_TIMEOUT: Final = "body_timeout"


def watch_deadline(sending_since: float | None, send_timeout: float | None, body_deadline: float) -> float:
    """When the watcher must next wake up: the end of the send in progress
    (``sending_since + send_timeout``) or of the body read (``body_deadline``; ``inf`` when
    nobody is waiting for the body), whichever comes first."""
    deadline = body_deadline
    if sending_since is not None and send_timeout is not None:
        deadline = min(deadline, sending_since + send_timeout)
    return deadline


def expired(now: float, sending_since: float | None, send_timeout: float | None, body_deadline: float) -> str | None:
    """Which timeout has run out at ``now``: ``SEND_TIMEOUT``, ``BODY_TIMEOUT`` or None."""
    if sending_since is not None and send_timeout is not None and now - sending_since >= send_timeout:
        return SEND_TIMEOUT
    if now >= body_deadline:
        return BODY_TIMEOUT
    return None
