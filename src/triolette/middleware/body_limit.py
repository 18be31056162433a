"""A limit on the size of request bodies: 413 Content Too Large beyond it."""

from __future__ import annotations

import contextlib
from typing import Final

from triolette._conversation import BodyLimit, BodyTooLarge, content_length
from triolette._scope import get_request_scope
from triolette.responses import PlainTextResponse
from triolette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = ["RequestBodyLimitMiddleware", "RequestBodyLimitResponder"]

#: The scope key holding the limit in force, for code that wants to read it.
MAX_BODY_SIZE_SCOPE_KEY: Final = "triolette.max_body_size"
_RESPONDER_SCOPE_KEY: Final = "triolette._body_limit_responder"
_MISSING: Final = object()


class _ResponseReplaced(Exception):
    """The app's response was replaced by a 413; unwinds the app without a second response."""


# Starlette's private names for the two exceptions above, which FastAPI looks up (with
# getattr) to tell the body limit's own errors from the app's in an exception group.
_RequestBodyTooLarge = BodyTooLarge
_RequestBodyLimitResponseSent = _ResponseReplaced


class RequestBodyLimitMiddleware:
    """Answers 413 "Content Too Large" to requests whose body exceeds ``max_body_size`` bytes.

    A declared Content-Length over the limit is refused before any of the body is read; a
    body without one is counted as it is read, and refused at the chunk that crosses the
    limit. Nested limits (app, Mount, Route) do not stack: the innermost one applies.
    """

    def __init__(self, app: ASGIApp, max_body_size: int) -> None:
        if isinstance(max_body_size, bool) or not isinstance(max_body_size, int) or max_body_size < 0:
            raise ValueError(f"max_body_size must be a non-negative number of bytes, got {max_body_size!r}")
        self.app = app
        self.max_body_size = max_body_size

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        rs = get_request_scope(scope)
        if rs is not None:
            # Inside a triolette app the RequestScope counts the body as it is read from the
            # server and checks Content-Length at the first read: this limit goes in force there
            # (one stricter than what was read already answers 413 at once, before the app runs).
            rs.enter_body_limit(self.max_body_size)
            if receive is rs.asgi_receive:  # nothing between: the scope's count is what the app receives
                scope[MAX_BODY_SIZE_SCOPE_KEY] = self.max_body_size
                try:
                    await self.app(scope, receive, send)
                except BodyTooLarge:
                    # Read over the limit where no exception handler answers it (a middleware
                    # inside this one read the body): the 413 is this middleware's to send.
                    if rs.response_started:
                        raise
                    await answer_too_large(scope, receive, send)
                return
        # A receive of a middleware's (or of a server, with no RequestScope): count what the app receives.
        await RequestBodyLimitResponder(self.app, self.max_body_size)(scope, receive, send)


class RequestBodyLimitResponder:
    """Runs the app for one request, counting the body bytes it receives against ``max_body_size``.

    The counting is a ``BodyLimit`` (``_conversation.py``), the object the RequestScope, the
    app, ``Router``, ``Mount`` and ``Route`` use: Content-Length is parsed once, bytes are
    counted as the app receives them. If an outer responder is already counting this
    request's body, this one enters its limit there, so that the innermost limit is the one
    that applies, and one stricter than what was read already is a 413 at once.
    """

    def __init__(self, app: ASGIApp, max_body_size: int) -> None:
        self.app = app
        self.limit = BodyLimit(max_body_size, None)
        self._scope: Scope | None = None
        self._receive: Receive | None = None
        self._send: Send | None = None
        self.response_started = False

    @property
    def max_body_size(self) -> int:
        """The limit in force, in bytes."""
        limit = self.limit.limit
        if limit is None:  # pragma: no cover - only check_size()-ed whole numbers are entered
            raise RuntimeError("RequestBodyLimitResponder has no limit")
        return limit

    @max_body_size.setter
    def max_body_size(self, value: int) -> None:
        # As setting Starlette's attribute: the limit applies from the next read or response
        # start (a limit below what was read already answers 413 there, not here).
        with contextlib.suppress(BodyTooLarge):
            self.limit.enter(value)

    @property
    def content_length(self) -> int | None:
        """The request's Content-Length, once the responder has been called (None without one)."""
        return self.limit.declared

    @property
    def total_size(self) -> int:
        """The body bytes the app has received so far."""
        return self.limit.bytes_read

    @property
    def scope(self) -> Scope:
        """The request's scope, once the responder has been called."""
        if self._scope is None:
            raise RuntimeError(_NOT_CALLED.format("scope"))
        return self._scope

    @property
    def receive(self) -> Receive:
        """The server's ``receive``, once the responder has been called."""
        if self._receive is None:
            raise RuntimeError(_NOT_CALLED.format("receive"))
        return self._receive

    @property
    def send(self) -> Send:
        """The server's ``send``, once the responder has been called."""
        if self._send is None:
            raise RuntimeError(_NOT_CALLED.format("send"))
        return self._send

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        previous_limit = scope.get(MAX_BODY_SIZE_SCOPE_KEY, _MISSING)
        max_body_size = self.limit.limit
        scope[MAX_BODY_SIZE_SCOPE_KEY] = max_body_size

        outer = scope.get(_RESPONDER_SCOPE_KEY)
        if isinstance(outer, RequestBodyLimitResponder):
            # An outer limit counts this body already; the inner limit replaces it there
            # (BodyTooLarge at once if what was read is over it; the declared length is checked
            # at the next read and at the response start).
            outer.limit.enter(max_body_size)
            await self.app(scope, receive, send)
            return

        self._scope, self._receive, self._send = scope, receive, send
        self.limit = BodyLimit(max_body_size, content_length(scope.get("headers", ())))
        scope[_RESPONDER_SCOPE_KEY] = self
        try:
            await self.app(scope, self.receive_with_limit, self.send_with_limit)
        except BodyTooLarge:
            if self.response_started:
                raise
            await answer_too_large(scope, receive, send)
        except _ResponseReplaced:
            pass
        finally:
            scope.pop(_RESPONDER_SCOPE_KEY, None)
            if previous_limit is _MISSING:
                scope.pop(MAX_BODY_SIZE_SCOPE_KEY, None)
            else:
                scope[MAX_BODY_SIZE_SCOPE_KEY] = previous_limit

    async def receive_with_limit(self) -> Message:
        """The ``receive`` the app sees: raises a 413 ``HTTPException`` once the body is over the limit."""
        limit = self.limit
        if limit.declared_over:
            raise BodyTooLarge
        message = await self.receive()
        if message["type"] == "http.request":
            limit.count(len(message.get("body", b"")))
        return message

    async def send_with_limit(self, message: Message) -> None:
        """The ``send`` the app sees: a response to a request declared too large becomes the 413."""
        if message["type"] == "http.response.start":
            self.response_started = True
            if self.limit.declared_over:
                await answer_too_large(self.scope, self.receive, self.send)
                raise _ResponseReplaced
        await self.send(message)


_NOT_CALLED = "RequestBodyLimitResponder.{} is not set until the responder is called as an ASGI app"


async def answer_too_large(scope: Scope, receive: Receive, send: Send) -> None:
    """The 413 for a body over its limit (this middleware's, and ServerErrorMiddleware's)."""
    await PlainTextResponse("Content Too Large", status_code=413)(scope, receive, send)
