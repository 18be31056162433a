"""BaseHTTPMiddleware: ``dispatch(request, call_next)`` on the request nursery.

``call_next`` starts the downstream app as a task in the request nursery and returns as
soon as that app starts its response; the body then streams through a zero-capacity
channel, chunk by chunk, as the middleware sends it on. A client disconnect or a deadline
cancels both sides (they share the request's cancel scope); a response the middleware
discards stops the downstream app at its next send. The downstream app's background tasks
run to the end: the downstream task is never cancelled for having finished its body.
The downstream app sees the request body even when ``dispatch`` read it first.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import Any

import trio

from triolette._scope import get_request_scope, run_in_request_scope
from triolette.requests import Request
from triolette.responses import Response
from triolette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = ["BaseHTTPMiddleware"]

RequestResponseEndpoint = Callable[[Request], Awaitable[Response]]
DispatchFunction = Callable[[Request, RequestResponseEndpoint], Awaitable[Response]]


class _Discarded(Exception):
    """The middleware stopped reading the downstream response (it answered something else)."""


class _Downstream:
    """The downstream app of one ``call_next``, run as a task of the request nursery."""

    def __init__(self, app: ASGIApp, scope: Scope, receive: Receive, request: Request) -> None:
        self.app = app
        self.scope = scope
        self.upstream_receive = receive
        self.request = request
        self.start_message: Message | None = None
        self.error: Exception | None = None
        self.started = trio.Event()
        self._replayed = False
        self.chunks_in, self.chunks_out = trio.open_memory_channel[bytes](0)

    async def receive(self) -> Message:
        """The request as the downstream app sees it: the body again if dispatch read it."""
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
        if kind == "http.response.start":
            self.start_message = message
            self.started.set()
        elif kind == "http.response.body":
            body = message.get("body", b"")
            try:
                if body:
                    await self.chunks_in.send(bytes(body))
                if not message.get("more_body", False):
                    await self.chunks_in.aclose()
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

    async def body(self) -> AsyncIterator[bytes]:
        async with self.chunks_out:
            async for chunk in self.chunks_out:
                yield chunk
        if self.error is not None:
            raise self.error


class _StreamingResponse(Response):
    """The downstream response as ``call_next`` returns it: headers now, body as it comes."""

    def __init__(self, status_code: int, raw_headers: list[tuple[bytes, bytes]], downstream: _Downstream) -> None:
        self.status_code = status_code
        self.raw_headers = list(raw_headers)
        self.background = None
        self.body_iterator = downstream.body()
        self._downstream = downstream

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers})
        iterator = self.body_iterator
        try:
            async for chunk in iterator:
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
        finally:
            await iterator.aclose()  # type: ignore[attr-defined]  # an async generator
        await send({"type": "http.response.body", "body": b"", "more_body": False})


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
            downstream = _Downstream(self.app, scope, receive, request)
            started.append(downstream)
            rs.nursery.start_soon(downstream.run)
            await downstream.started.wait()
            message = downstream.start_message
            if message is None:
                if downstream.error is not None:
                    raise downstream.error
                raise RuntimeError("No response returned.")
            return _StreamingResponse(message["status"], message.get("headers", []), downstream)

        try:
            response = await self.dispatch_func(request, call_next)
            await response(scope, receive, send)
        finally:
            for downstream in started:  # a response dispatch did not send on: stop its app
                downstream.chunks_out.close()

    async def dispatch(self, request: Request, call_next: RequestResponseEndpoint) -> Response:
        raise NotImplementedError()  # pragma: no cover


_ = Mapping, Any
