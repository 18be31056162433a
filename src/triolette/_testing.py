"""The engine behind the test clients: one HTTP exchange or one lifespan, driven in trio.

Both clients use it: ``AsyncTestClient`` in the test's own trio run, ``TestClient`` in a
trio run on a helper thread (``Portal``). The app's body chunks come out through a
zero-capacity channel, so a response streams exactly as the app sends it, and leaving a
stream early sends ``http.disconnect`` to the app.

``task_group`` is the nursery of an object whose tasks live longer than one ``async with``
block in its owner's code (a client, a streamed response, a WebSocket session).
"""

from __future__ import annotations

import contextlib
import math
import queue
import threading
from collections.abc import AsyncGenerator, AsyncIterable, AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from typing import Any, Final, TypeVar

import trio

from triolette._conversation import DONE, SENDING, START, TRAILERS, Outbox, ProtocolError, expected
from triolette._scope import get_request_scope
from triolette._utils import exception_leaves
from triolette.types import ASGIApp, Message, Scope

T = TypeVar("T")

DISCONNECT_GRACE = 1.0
"""Seconds an app has, once the test leaves an incomplete response or a WebSocket session, to
take the disconnect (call ``receive()``) before it is cancelled."""


@asynccontextmanager
async def task_group(reason: str) -> AsyncIterator[trio.Nursery]:
    """A nursery for an object that owns tasks between its ``__aenter__`` and ``__aexit__``.

    Entered through an ``AsyncExitStack``. An exception from the body is not wrapped in an
    ExceptionGroup: the tasks are cancelled with ``reason``, and once they have finished the
    body's exception goes on as it was. When the tasks end with nothing but ``Cancelled``
    (an outer cancel scope fired), the group collapses to one ``Cancelled``, as a plain
    ``await`` would have raised.
    """
    error: BaseException | None = None
    try:
        async with trio.open_nursery() as nursery:
            try:
                yield nursery
            except BaseException as exc:
                error = exc
                nursery.cancel_scope.cancel(reason=reason)
    except BaseExceptionGroup as group:
        if error is not None:
            raise error from None
        leaves = exception_leaves(group)
        if len(leaves) == 1 or all(isinstance(leaf, trio.Cancelled) for leaf in leaves):
            raise leaves[0] from None
        raise
    if error is not None:
        raise error


class ResponseProtocolError(ProtocolError, AssertionError):
    """The app broke the order of the ASGI response messages, or sent no response at all.

    A ``ProtocolError`` (so a ``RuntimeError``), as the server's RequestScope raises for the
    same message; an ``AssertionError`` too, for test suites written against Starlette's
    client, which asserts these rules.
    """


def _refused(outbox: Outbox, kind: str) -> ResponseProtocolError:
    """A message out of order, in the words of Starlette's test client where it has them."""
    state = outbox.state
    if kind == "http.response.start":
        text = 'Received multiple "http.response.start" messages.'
    elif kind == "http.response.body":  # refused in every state but SENDING
        text = _BODY_OUT_OF_ORDER[state]
    elif kind == "http.response.trailers":  # refused in every state but TRAILERS, which needs the start's "trailers"
        text = _TRAILERS_OUT_OF_ORDER[state if outbox.trailers else START]
    else:
        text = expected(state, kind)
    return ResponseProtocolError(text)


_BODY_OUT_OF_ORDER: Final = {
    START: 'Received "http.response.body" without "http.response.start".',
    TRAILERS: 'Received "http.response.body" after body completed.',
    DONE: 'Received "http.response.body" after response completed.',
}
_TRAILERS_OUT_OF_ORDER: Final = {
    START: 'Received "http.response.trailers" without declaring trailers.',
    SENDING: 'Received "http.response.trailers" before body completed.',
    DONE: 'Received "http.response.trailers" after response completed.',
}


class HTTPExchange:
    """One request through ``app``: start it, read the response as it comes, close it.

    The order of the app's messages is checked by the ``Outbox`` table (``_conversation.py``),
    as the server's RequestScope checks it; a message out of order raises
    ``ResponseProtocolError`` in the app, in the words of Starlette's test client.

    Every ``http.response.body`` message, empty or not, is handed over through a zero-capacity
    channel, so the app waits for the client at each one. A response that declares trailers
    (``"trailers": True`` in its start) completes with its last ``http.response.trailers``
    message; the trailers are collected in ``trailers`` as they arrive. Once the response is
    complete, or the client has left, the app's ``receive()`` answers ``http.disconnect`` at
    once (with no checkpoint, so also under a cancelled scope, as Starlette's
    ``request.is_disconnected()`` asks it).
    """

    def __init__(
        self, app: ASGIApp, scope: Scope, body: AsyncIterable[bytes], *, raise_server_exceptions: bool
    ) -> None:
        self.app = app
        self.scope = scope
        self._body = aiter(body)
        self.raise_server_exceptions = raise_server_exceptions
        self.status = 0
        self.headers: list[tuple[bytes, bytes]] = []
        self.error: BaseException | None = None
        self.trailers_expected = False
        self.trailers: list[tuple[bytes, bytes]] = []  # filled as the app sends them
        self.debug_info: dict[str, Any] | None = None  # what the app sent in "http.response.debug"
        self._started = trio.Event()
        self._done = trio.Event()
        self._gone = trio.Event()  # the client left (closed the response) or the response completed
        self._heard = trio.Event()  # the app took the disconnect (or ended)
        self._cancel_scope = trio.CancelScope()
        self._outbox = Outbox(False, refuse=_refused)  # the order of the app's messages, as a server checks it
        self._send_chunks, self._chunks = trio.open_memory_channel[bytes](0)
        self._request_complete = False

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Run the app (as a task); ``task_status.started()`` once it is running."""
        task_status.started()
        try:
            # A plain `with`: closing the channel must not be a checkpoint, where a cancellation
            # would replace the app's own exception.
            with self._cancel_scope, self._send_chunks:
                await self.app(self.scope, self._receive, self._send)
        except Exception as exc:
            self.error = exc
        finally:
            if isinstance(self._body, AsyncGenerator) and not self._request_complete:
                with trio.CancelScope(shield=True), trio.move_on_after(1):
                    await self._body.aclose()  # the app left part of the request body unread
            self._done.set()
            self._heard.set()
            self._started.set()

    async def _receive(self) -> Message:
        while not self._request_complete:
            try:
                chunk = await anext(self._body)
            except StopAsyncIteration:
                self._request_complete = True
                return {"type": "http.request", "body": b"", "more_body": False}
            if chunk:
                return {"type": "http.request", "body": bytes(chunk), "more_body": True}
        if not self._gone.is_set():
            await self._gone.wait()
        self._heard.set()
        return {"type": "http.disconnect"}

    def _complete(self) -> None:
        self._send_chunks.close()
        self._gone.set()

    async def _send(self, message: Message) -> None:
        outbox = self._outbox
        kind = message["type"]
        if kind == "http.response.body":
            outbox.body(message)
            last = outbox.complete  # the app has sent all it will send: not to be cancelled while the client reads it
            with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):  # the client stopped reading
                await self._send_chunks.send(bytes(message.get("body", b"")))
            if last:
                self._complete()
            return
        outbox.send(message)
        if kind == "http.response.start":
            self.status = message["status"]
            self.headers = [(bytes(k), bytes(v)) for k, v in message.get("headers", [])]
            self.trailers_expected = outbox.trailers
            self._started.set()
        elif kind == "http.response.trailers":
            self.trailers.extend((bytes(k), bytes(v)) for k, v in message.get("headers", []))
            await trio.lowlevel.checkpoint()
        elif kind == "http.response.debug":
            self.debug_info = message["info"]
        if outbox.complete:  # the last trailers (or a pathsend, whose file this client does not read)
            self._complete()

    async def start(self) -> None:
        """Wait for the response to start (or the app to end); raise the app's error if wanted."""
        await self._started.wait()
        if not self.status:
            await self._done.wait()
            if self.raise_server_exceptions:
                if self.error is not None:
                    raise self.error
                raise ResponseProtocolError("TestClient did not receive any response.")
            self.status = 500
            self._chunks.close()

    async def next_chunk(self) -> bytes | None:
        """The next non-empty body chunk as the app sends it; None at the end of the response.

        Each body message the app sends, an empty one too, is taken here one at a time.
        """
        try:
            while True:
                chunk = await self._chunks.receive()
                if chunk:
                    return chunk
        except (trio.EndOfChannel, trio.ClosedResourceError):
            return None

    async def aclose(self, *, abort: bool = False) -> None:
        """Leave the response: a disconnect for the app if it is not done, then wait for it.

        An app whose response is incomplete and that does not take the disconnect within
        ``DISCONNECT_GRACE`` seconds (it never calls ``receive()``) is cancelled, so that
        leaving a response never hangs; one that takes it is waited for, and so is the
        background work of a complete response. With ``abort`` (the client closed), the app is
        cancelled at once, background work included, after it has been handed the disconnect
        if it was waiting for one.
        """
        self._gone.set()
        self._chunks.close()
        if abort:
            left = "the response incomplete" if not self._outbox.complete else "its background work running"
            reason = f"the test client closed with {left}"
            self._cancel_scope.cancel(reason=reason)
            rs = get_request_scope(self.scope)
            if rs is not None:
                rs.cancel(reason)  # background work is shielded from everything else, as in a server's drain
        elif not self._outbox.complete:
            with trio.move_on_after(DISCONNECT_GRACE):
                await self._heard.wait()
            if not self._heard.is_set():
                self._cancel_scope.cancel(reason="the test left the response; the app did not receive")
        await self._done.wait()
        if self.error is not None and self.raise_server_exceptions:
            error, self.error = self.error, None
            raise error

    async def abort(self) -> None:
        """The client closed: a disconnect for the app, and its task cancelled, whether its
        response is complete (background work still running) or not, as in Starlette's client."""
        await self.aclose(abort=True)


class LifespanRunner:
    """Drives an app's lifespan: startup, then shutdown on request."""

    def __init__(self, app: ASGIApp, state: dict[str, Any] | None = None) -> None:
        self.app = app
        self.state: dict[str, Any] = {} if state is None else state
        self._to_app, self._app_inbox = trio.open_memory_channel[Message](math.inf)
        self._from_app, self._outbox = trio.open_memory_channel[Message](math.inf)
        self._done = trio.Event()
        self.error: BaseException | None = None

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        scope = {"type": "lifespan", "asgi": {"version": "3.0", "spec_version": "2.0"}, "state": self.state}
        task_status.started()
        try:
            await self.app(scope, self._app_inbox.receive, self._from_app.send)
        except BaseException as exc:  # reported through the messages, or below
            self.error = exc
            if not isinstance(exc, Exception):
                raise
        finally:
            self._done.set()
            self._from_app.close()

    async def _expect(self, *kinds: str) -> Message:
        try:
            message = await self._outbox.receive()
        except trio.EndOfChannel:
            if self.error is not None:
                raise self.error from None
            raise RuntimeError("The app's lifespan ended without answering.") from None
        if message["type"] not in kinds:
            raise RuntimeError(f"Unexpected lifespan message {message['type']!r}, expected one of {kinds}")
        return message

    async def startup(self) -> None:
        await self._to_app.send({"type": "lifespan.startup"})
        message = await self._expect("lifespan.startup.complete", "lifespan.startup.failed")
        if message["type"] == "lifespan.startup.failed":
            await self._done.wait()
            if self.error is not None:
                raise self.error
            raise RuntimeError(message.get("message", "Lifespan startup failed."))

    async def shutdown(self) -> None:
        await self._to_app.send({"type": "lifespan.shutdown"})
        message = await self._expect("lifespan.shutdown.complete", "lifespan.shutdown.failed")
        await self._done.wait()
        if message["type"] == "lifespan.shutdown.failed":
            if self.error is not None:
                raise self.error
            raise RuntimeError(message.get("message", "Lifespan shutdown failed."))


class Portal:
    """A trio run on a helper thread, for calling async code from synchronous tests."""

    def __init__(self, run_options: Mapping[str, Any] | None = None) -> None:
        self._run_options = {} if run_options is None else dict(run_options)
        self._token: trio.lowlevel.TrioToken | None = None
        self._nursery: trio.Nursery | None = None
        self._stop: trio.Event | None = None
        self._thread: threading.Thread | None = None
        self._failure: BaseException | None = None

    def __enter__(self) -> Portal:
        ready: queue.Queue[BaseException | None] = queue.Queue()

        async def main() -> None:
            try:
                async with trio.open_nursery() as nursery:
                    self._token = trio.lowlevel.current_trio_token()
                    self._nursery = nursery
                    self._stop = trio.Event()
                    ready.put(None)
                    await self._stop.wait()
                    nursery.cancel_scope.cancel(reason="test client closed")
            except BaseException as exc:  # pragma: no cover - a bug in a task the portal ran
                self._failure = exc

        self._thread = threading.Thread(
            target=trio.run, args=(main,), kwargs=self._run_options, name="triolette-testclient", daemon=True
        )
        self._thread.start()
        ready.get()
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._stop is not None:
            trio.from_thread.run_sync(self._stop.set, trio_token=self._token)
        if self._thread is not None:
            self._thread.join()

    def call(self, fn: Callable[..., Awaitable[T]], *args: Any) -> T:
        """Run ``await fn(*args)`` in the portal's trio run and return its result."""
        return trio.from_thread.run(fn, *args, trio_token=self._token)

    def start(self, fn: Callable[..., Awaitable[Any]], *args: Any) -> None:
        """Start ``fn(*args)`` as a task of the portal's nursery (it must call task_status.started())."""

        async def starter() -> None:
            assert self._nursery is not None
            await self._nursery.start(fn, *args)

        self.call(starter)
