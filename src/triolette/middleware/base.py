"""BaseHTTPMiddleware: ``dispatch(request, call_next)`` on the request nursery.

``call_next`` starts the downstream app as a task in the request nursery and returns as
soon as that app starts its response; the body then streams through a zero-capacity
channel, chunk by chunk, as the middleware sends it on. A client disconnect or a deadline
cancels both sides (they share the request's cancel scope); a response the middleware
discards stops the downstream app at its next send.

Messages the middleware does not rewrite are passed on: early hints at once, the test
clients' ``http.response.debug`` just before the start, ``http.response.pathsend`` and
trailers in order with the body. The downstream app's last message returns only once the
middleware has sent its whole response, so the downstream's background tasks start after
it, and run to the end; what the downstream raises after that is raised here.
The downstream app sees the request body even when ``dispatch`` read it first.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import trio

from triolette._scope import get_request_scope, run_in_request_scope
from triolette.requests import Request
from triolette.responses import Response, run_background
from triolette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = ["BaseHTTPMiddleware"]

RequestResponseEndpoint = Callable[[Request], Awaitable[Response]]
DispatchFunction = Callable[[Request, RequestResponseEndpoint], Awaitable[Response]]

_DISCONNECT: Message = {"type": "http.disconnect"}


class _Discarded(Exception):
    """The middleware stopped reading the downstream response (it answered something else)."""


class _Downstream:
    """The downstream app of one ``call_next``, run as a task of the request nursery.

    The channel carries body chunks as bytes and any other message that comes after the
    start (``pathsend``, a final body followed by trailers, the trailers) as the message.
    """

    def __init__(self, app: ASGIApp, scope: Scope, receive: Receive, send: Send, request: Request) -> None:
        self.app = app
        self.scope = scope
        self.upstream_receive = receive
        self.upstream_send = send
        self.request = request
        self.start_message: Message | None = None
        self.debug_info: Any = None
        self.trailers = False
        self.error: Exception | None = None
        self.error_raised = False
        self.started = trio.Event()
        self.done = trio.Event()
        self.response_sent = trio.Event()  # the middleware has sent its whole response
        self._replayed = False
        self.chunks_in, self.chunks_out = trio.open_memory_channel[bytes | Message](0)

    async def receive(self) -> Message:
        """The request as the downstream app sees it: the body again if dispatch read it."""
        if self.response_sent.is_set():
            await trio.lowlevel.checkpoint()
            return _DISCONNECT
        if not self._replayed:
            self._replayed = True
            body = getattr(self.request, "_body", None)
            if body is None:
                rs = get_request_scope(self.scope)
                if rs is not None and rs.body_consumed:
                    body = rs.body_cache if rs.body_cache is not None else b""
            if body is not None:
                return {"type": "http.request", "body": body, "more_body": False}
        return await self.upstream_receive()

    async def send(self, message: Message) -> None:
        kind = message["type"]
        try:
            if kind == "http.response.body":
                more = message.get("more_body", False)
                if more or not self.trailers:
                    body = message.get("body", b"")
                    if body:
                        await self.chunks_in.send(bytes(body))
                    if more:
                        return
                    await self.chunks_in.aclose()
                    await self.response_sent.wait()
                else:  # the final body, trailers to follow: the response sends it as it is
                    await self.chunks_in.send(message)
            elif kind == "http.response.start":
                self.start_message = message
                self.trailers = bool(message.get("trailers", False))
                self.started.set()
            elif self.start_message is None:
                if kind == "http.response.debug":
                    self.debug_info = message.get("info")
                else:  # early hints, and anything else that comes before the start
                    await self.upstream_send(message)
            else:  # pathsend, trailers, anything else after the start: in order with the body
                await self.chunks_in.send(message)
                last = kind == "http.response.pathsend" or (
                    kind == "http.response.trailers" and not message.get("more_trailers", False)
                )
                if last:
                    await self.chunks_in.aclose()
                    await self.response_sent.wait()
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            raise _Discarded from None

    async def run(self) -> None:
        try:
            await self.app(self.scope, self.receive, self.send)
        except _Discarded:
            pass
        except Exception as exc:
            self.error = exc
        finally:
            self.chunks_in.close()
            self.started.set()
            self.done.set()

    def raise_error(self) -> None:
        """Raise what the downstream app raised, once."""
        error = self.error
        if error is not None and not self.error_raised:
            self.error_raised = True
            raise error

    async def body(self) -> AsyncIterator[bytes | Message]:
        async with self.chunks_out:
            async for item in self.chunks_out:
                yield item
        self.raise_error()


class _StreamingResponse(Response):
    """The downstream response as ``call_next`` returns it: headers now, body as it comes.

    ``background`` may be set by ``dispatch``; it runs after the whole response is sent.
    """

    def __init__(self, status_code: int, raw_headers: list[tuple[bytes, bytes]], downstream: _Downstream) -> None:
        self.status_code = status_code
        self.raw_headers = list(raw_headers)
        self.background = None
        self.info = downstream.debug_info
        self.body_iterator = downstream.body()
        self._downstream = downstream

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.info is not None:
            await send({"type": "http.response.debug", "info": self.info})
        start: Message = {"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers}
        if self._downstream.trailers:
            start["trailers"] = True
        await send(start)
        iterator = self.body_iterator
        ended = False
        try:
            async for item in iterator:
                if isinstance(item, dict):  # a message other than a body chunk: passed on as it is
                    await send(item)
                    if item["type"] in ("http.response.pathsend", "http.response.body"):
                        ended = True
                else:
                    await send({"type": "http.response.body", "body": item, "more_body": True})
        finally:
            await iterator.aclose()  # type: ignore[attr-defined]  # an async generator
        if not ended:
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        if self.background is not None:
            await run_background(scope, self.background)


class BaseHTTPMiddleware:
    """Subclass and override ``dispatch(request, call_next)``, or pass ``dispatch=``."""

    def __init__(self, app: ASGIApp, dispatch: DispatchFunction | None = None) -> None:
        self.app = app
        self.dispatch_func = self.dispatch if dispatch is None else dispatch

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        rs = get_request_scope(scope)
        if rs is None:
            await run_in_request_scope(self, scope, receive, send)
            return
        request = Request(scope, receive, send)
        started: list[_Downstream] = []

        async def call_next(request: Request) -> Response:
            downstream = _Downstream(self.app, scope, receive, send, request)
            started.append(downstream)
            rs.nursery.start_soon(downstream.run)
            await downstream.started.wait()
            message = downstream.start_message
            if message is None:
                downstream.raise_error()
                raise RuntimeError("No response returned.")
            return _StreamingResponse(message["status"], message.get("headers", []), downstream)

        try:
            response = await self.dispatch_func(request, call_next)
            await response(scope, receive, send)
        finally:
            for downstream in started:
                downstream.chunks_out.close()  # a response dispatch did not send on: stop its app
                downstream.response_sent.set()  # the one it sent on: its background work may start
        if isinstance(response, _StreamingResponse):
            # The downstream app's background work runs now; what it raises is this call's error.
            downstream = response._downstream
            await downstream.done.wait()
            downstream.raise_error()

    async def dispatch(self, request: Request, call_next: RequestResponseEndpoint) -> Response:
        raise NotImplementedError()  # pragma: no cover
