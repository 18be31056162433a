"""Server-sent events: ``EventSourceResponse`` streams ``ServerSentEvent`` items.

The wire format (the HTML standard's ``text/event-stream``) is produced by plain
functions with no I/O (``encode_event``, ``encode_comment``). The response streams what an
(async or sync) iterable yields, on the request's RequestScope:

- a comment every ``ping`` seconds without traffic keeps proxies from closing the stream;
- a client that does not take a send within ``send_timeout`` seconds is disconnected;
- a disconnect cancels the source, and its generator is closed in the task that iterated
  it, so its ``finally`` blocks run before the ASGI call returns;
- when the application drains (``app.draining``), the source is stopped and the response
  ends cleanly; clients reconnect, sending ``Last-Event-ID``, to a server that is up.
"""

from __future__ import annotations

import heapq
import itertools
import json
import math
import re
import weakref
from collections.abc import AsyncIterable, Iterable, Mapping
from typing import Any

import trio

from triolette._scope import EVENT_STREAM_KEY, RequestScope, check_timeout, get_request_scope, run_in_request_scope
from triolette._utils import aclosing_if_closable
from triolette.background import BackgroundTask
from triolette.concurrency import iterate_in_threadpool
from triolette.responses import Response, run_background
from triolette.types import Receive, Scope, Send

__all__ = ["EventSourceResponse", "ServerSentEvent", "encode_comment", "encode_event"]

_LINE_BREAK = re.compile(r"\r\n|\r|\n")
_SEPARATORS = ("\r\n", "\n", "\r")


def _lines(text: str) -> list[str]:
    """Split on the line breaks the standard recognises (CRLF, LF, CR) and on nothing else."""
    return _LINE_BREAK.split(text)


def _check_sep(sep: str) -> str:
    if sep not in _SEPARATORS:
        raise ValueError(f"sep must be one of '\\r\\n', '\\n' or '\\r', got {sep!r}")
    return sep


def _data_text(data: Any) -> str | None:
    if data is None or isinstance(data, str):
        return data
    if isinstance(data, bytes | bytearray | memoryview):
        return bytes(data).decode("utf-8")
    return json.dumps(data, ensure_ascii=False, separators=(",", ":"))


def encode_comment(text: str, sep: str = "\r\n") -> str:
    """A comment block: one ``:`` line per line of ``text`` (clients ignore it)."""
    return "".join(f": {line}{sep}" if line else f":{sep}" for line in _lines(text))


def encode_event(
    data: str | None = None,
    *,
    event: str | None = None,
    id: str | None = None,
    retry: int | None = None,
    comment: str | None = None,
    sep: str = "\r\n",
) -> str:
    """One event in ``text/event-stream`` form, ended by a blank line; ``""`` if it has no field.

    Multi-line ``data`` and ``comment`` become one line each, whatever the line break
    (CRLF, LF or CR). The fields must already be valid (``ServerSentEvent`` checks them).
    """
    parts: list[str] = []
    if comment is not None:
        parts.append(encode_comment(comment, sep))
    if id is not None:
        parts.append(f"id: {id}{sep}" if id else f"id{sep}")
    if event is not None:
        parts.append(f"event: {event}{sep}")
    if retry is not None:
        parts.append(f"retry: {retry}{sep}")
    if data is not None:
        parts.extend(f"data: {line}{sep}" for line in _lines(data))
    if not parts:
        return ""
    if data is None and id is None and event is None and retry is None:
        return "".join(parts)  # a comment alone dispatches nothing: no blank line needed
    parts.append(sep)
    return "".join(parts)


class ServerSentEvent:
    """One event: ``data`` (a string, bytes as UTF-8, or any other value as compact JSON),
    an ``event`` type, an ``id`` (the client's ``Last-Event-ID`` on reconnection), a
    ``retry`` delay in milliseconds, and a ``comment``."""

    __slots__ = ("comment", "data", "event", "id", "retry")

    def __init__(
        self,
        data: Any = None,
        *,
        event: str | None = None,
        id: str | int | None = None,
        retry: int | None = None,
        comment: str | None = None,
    ) -> None:
        if event is not None and _LINE_BREAK.search(event):
            raise ValueError(f"The event type must be one line, got {event!r}")
        if id is not None:
            id = str(id)
            if "\0" in id or _LINE_BREAK.search(id):
                raise ValueError(f"The event id must be one line without NUL characters, got {id!r}")
        if retry is not None and (isinstance(retry, bool) or not isinstance(retry, int) or retry < 0):
            raise ValueError(f"retry must be a whole number of milliseconds >= 0, got {retry!r}")
        self.data = _data_text(data)
        self.event = event
        self.id = id
        self.retry = retry
        self.comment = comment

    def encode(self, sep: str = "\r\n") -> bytes:
        """The event on the wire, UTF-8."""
        text = encode_event(self.data, event=self.event, id=self.id, retry=self.retry, comment=self.comment, sep=sep)
        return text.encode("utf-8")

    def __repr__(self) -> str:
        fields = ", ".join(
            f"{name}={getattr(self, name)!r}" for name in self.__slots__ if getattr(self, name) is not None
        )
        return f"ServerSentEvent({fields})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ServerSentEvent):
            return NotImplemented
        return all(getattr(self, name) == getattr(other, name) for name in self.__slots__)

    __hash__ = None  # type: ignore[assignment]  # mutable, compared by value


def _as_event(item: Any) -> ServerSentEvent:
    if isinstance(item, ServerSentEvent):
        return item
    if isinstance(item, Mapping):
        return ServerSentEvent(**item)
    return ServerSentEvent(item)


class EventSourceResponse(Response):
    """A ``text/event-stream`` response streaming the events that ``content`` yields.

    ``content`` is an async iterable (or a sync one, run in a worker thread) of
    ``ServerSentEvent``, mappings of its fields, or plain data. Keyword-only options:

    - ``ping``: seconds without a send after which a comment is sent (None: never);
    - ``send_timeout``: seconds a client may take to accept a send before it is
      disconnected (None: no limit);
    - ``sep``: the line break written, ``"\\r\\n"`` (default), ``"\\n"`` or ``"\\r"``.
    """

    media_type = "text/event-stream"

    def __init__(
        self,
        content: AsyncIterable[Any] | Iterable[Any],
        status_code: int = 200,
        headers: Mapping[str, str] | None = None,
        media_type: str | None = None,
        background: BackgroundTask | None = None,
        *,
        ping: float | None = 15,
        send_timeout: float | None = 30,
        sep: str = "\r\n",
    ) -> None:
        self.body_iterator: AsyncIterable[Any] = (
            content if isinstance(content, AsyncIterable) else iterate_in_threadpool(content)
        )
        self.status_code = status_code
        self.media_type = self.media_type if media_type is None else media_type
        self.background = background
        self.ping = check_timeout("ping", ping)
        self.send_timeout = check_timeout("send_timeout", send_timeout)
        self.sep = _check_sep(sep)
        self.init_headers(headers)
        self.headers.setdefault("cache-control", "no-cache")
        self.headers.setdefault("x-accel-buffering", "no")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            raise RuntimeError(f"EventSourceResponse answers HTTP requests, got a {scope['type']!r} scope")
        rs = get_request_scope(scope)
        if rs is None:  # called without a triolette app around it: it still needs a RequestScope
            await run_in_request_scope(self._stream_only, scope, receive, send)
        else:
            await self._stream(scope, rs, send)
        if self.background is not None:
            await run_background(scope, self.background)

    async def _stream_only(self, scope: Scope, receive: Receive, send: Send) -> None:
        rs = get_request_scope(scope)
        assert rs is not None
        await self._stream(scope, rs, send)

    async def _stream(self, scope: Scope, rs: RequestScope, send: Send) -> None:
        rs.send_timeout = self.send_timeout
        rs.asgi_scope[EVENT_STREAM_KEY] = True  # the inspector lists it among the event streams
        await send({"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers})
        stream = _EventStream(rs, send, self.sep, self.ping)
        app = scope.get("app")
        draining: trio.Event | None = getattr(app, "draining", None)
        pings = _shared_pings(app, draining)
        keep_alive = trio.CancelScope()
        if pings is not None:
            pings.add(stream)
        elif self.ping is not None or draining is not None:
            rs.nursery.start_soon(stream.keep_alive, keep_alive, draining)
        try:
            with stream.source_scope:
                async with aclosing_if_closable(self.body_iterator) as events:
                    async for item in events:
                        chunk = _as_event(item).encode(self.sep)
                        if chunk and not await stream.send(chunk):
                            return
        finally:
            keep_alive.cancel(reason="event stream ended")
            stream.end()
        if not rs.disconnected:
            async with stream.lock:  # after a ping that is being written, if one is
                await send({"type": "http.response.body", "body": b"", "more_body": False})


class _EventStream:
    """One stream's sends, serialised between the source and the pings, and when the last was."""

    __slots__ = ("_send", "ended", "entry", "last_send", "lock", "ping", "ping_comment", "rs", "source_scope")

    def __init__(self, rs: RequestScope, send: Send, sep: str, ping: float | None) -> None:
        self.rs = rs
        self._send = send
        self.ping = ping
        self.lock = trio.Lock()
        self.last_send = trio.current_time()
        self.source_scope = trio.CancelScope()
        self.ping_comment = encode_comment("ping", sep).encode()
        self.ended = False
        self.entry: list[Any] | None = None  # its place in the app's ping heap, if it has one

    async def send(self, chunk: bytes) -> bool:
        """Send ``chunk``; False once the client has gone (with ``cancel_on_disconnect=False``)."""
        async with self.lock:
            if self.rs.disconnected or self.ended:
                return False
            await self._send({"type": "http.response.body", "body": chunk, "more_body": True})
            self.last_send = trio.current_time()
        return True

    def end(self) -> None:
        self.ended = True
        if self.entry is not None:
            self.entry[3].remove(self.entry)
            self.entry = None

    async def ping_once(self, pings: _Pings) -> None:
        """One ping, in a task of the request; then the next one is due ``ping`` seconds on."""
        if await self.send(self.ping_comment) and not self.ended:
            pings.add(self)

    async def keep_alive(self, scope: trio.CancelScope, draining: trio.Event | None) -> None:
        """Ping after ``ping`` seconds without a send; stop the source when the application drains.
        (A stream's own task, for an app without a running lifespan; see ``_Pings``.)"""
        ping = self.ping
        with scope:
            while True:
                due = math.inf if ping is None else self.last_send + ping
                if draining is None:
                    await trio.sleep_until(due)
                else:
                    with trio.move_on_at(due):
                        await draining.wait()
                        self.source_scope.cancel(reason="server shutting down")
                        return
                if ping is None or trio.current_time() < self.last_send + ping:
                    continue  # something was sent meanwhile: the ping is due later
                if not await self.send(self.ping_comment):
                    return


class _Pings:
    """The pings and the drain stop of every event stream of one running app, from one task
    in ``app.nursery`` instead of one task per stream: a heap of ``[due, order, stream]``.

    A stream is in the heap while it waits for its next ping. When that is due and nothing
    was sent meanwhile, a short task of the stream's request writes the ping (a client that
    does not read holds up only its own stream) and puts the stream back. The task runs
    while some stream waits for a ping, and is started again by the next one.
    """

    __slots__ = ("_heap", "_order", "_running", "_wait", "draining", "live", "nursery")

    def __init__(self, draining: trio.Event, nursery: trio.Nursery) -> None:
        self.draining = draining
        self.nursery = nursery
        self.live = 0  # heap entries that still hold a stream
        self._heap: list[list[Any]] = []
        self._order = itertools.count()
        self._wait: trio.CancelScope | None = None
        self._running = False

    def add(self, stream: _EventStream) -> None:
        if self.draining.is_set():
            stream.source_scope.cancel(reason="server shutting down")
            return
        if stream.ping is None:
            return
        due = stream.last_send + stream.ping
        stream.entry = entry = [due, next(self._order), stream, self]
        heapq.heappush(self._heap, entry)
        self.live += 1
        if not self._running:
            self._running = True
            self.nursery.start_soon(self.run)
        elif self._wait is not None and due < self._wait.deadline:
            self._wait.deadline = due

    def remove(self, entry: list[Any]) -> None:
        """A stream ended: the heap lets go of it (and its request) now."""
        entry[2] = None
        self.live -= 1
        if self.live == 0 and self._wait is not None:
            self._wait.cancel(reason="no event stream left")

    async def run(self) -> None:
        heap = self._heap
        while self.live:
            with trio.CancelScope(deadline=heap[0][0]) as self._wait:
                await self.draining.wait()
                self._stop_all()
                break
            self._wait = None
            now = trio.current_time()
            while heap and heap[0][0] <= now:
                stream = heapq.heappop(heap)[2]
                if stream is not None:  # None: that stream has ended
                    self._due(stream, now)
        heap.clear()
        self._wait = None
        self._running = False

    def _due(self, stream: _EventStream, now: float) -> None:
        self.live -= 1
        stream.entry = None
        if now < stream.last_send + stream.ping:  # type: ignore[operator]  # in the heap: it pings
            self.add(stream)  # something was sent meanwhile: the ping is due later
        else:
            stream.rs.nursery.start_soon(stream.ping_once, self)

    def _stop_all(self) -> None:
        while self._heap:
            stream = heapq.heappop(self._heap)[2]
            if stream is not None:
                stream.entry = None
                stream.source_scope.cancel(reason="server shutting down")
        self.live = 0


_running_pings: weakref.WeakKeyDictionary[trio.Nursery, _Pings] = weakref.WeakKeyDictionary()


def _shared_pings(app: object, draining: trio.Event | None) -> _Pings | None:
    """The app's shared pings, or None when the app has no running lifespan (``app.nursery``)
    to hold their task: then each stream has a task of its own."""
    nursery = getattr(app, "_nursery", None)
    if not isinstance(nursery, trio.Nursery) or draining is None:
        return None
    pings = _running_pings.get(nursery)
    if pings is None:
        pings = _running_pings[nursery] = _Pings(draining, nursery)
    return pings
