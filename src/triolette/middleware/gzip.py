"""Gzip compression of response bodies, for clients that accept it."""

from __future__ import annotations

import functools
import zlib
from collections.abc import Iterable
from typing import NoReturn

import trio

from triolette.middleware._headers import add_vary, delete_header, get_header, request_header, set_header
from triolette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = ["GZipMiddleware", "GZipResponder", "IdentityResponder", "unattached_send"]

DEFAULT_EXCLUDED_CONTENT_TYPES = (
    "application/grpc",
    "application/gzip",
    "application/x-gzip",
    "application/zip",
    "audio/*",
    "font/woff",
    "font/woff2",
    "image/avif",
    "image/gif",
    "image/jpeg",
    "image/png",
    "image/webp",
    "text/event-stream",
    "video/*",
)


class GZipMiddleware:
    """Compresses response bodies with gzip when the client sends ``Accept-Encoding: gzip``.

    Bodies smaller than ``minimum_size`` bytes are sent as they are, and so are responses
    that already carry a Content-Encoding, partial (206) responses and the content types in
    ``exclude_content_types`` (``"type/*"`` excludes a whole type; server-sent events are
    excluded by default so that each event reaches the client at once). Streaming bodies
    are compressed chunk by chunk and flushed after each chunk. Compressing a chunk of at
    least ``thread_minimum_size`` bytes runs in a worker thread so it does not block the
    event loop.
    """

    def __init__(
        self,
        app: ASGIApp,
        minimum_size: int = 500,
        compresslevel: int = 9,
        thread_minimum_size: int = 128 * 1024,
        *,
        exclude_content_types: tuple[str, ...] = DEFAULT_EXCLUDED_CONTENT_TYPES,
    ) -> None:
        if not 0 <= compresslevel <= 9 and compresslevel != -1:
            raise ValueError(f"GZipMiddleware compresslevel must be -1 or between 0 and 9, got {compresslevel!r}")
        self.app = app
        self.minimum_size = minimum_size
        self.compresslevel = compresslevel
        self.thread_minimum_size = thread_minimum_size
        self.exclude_content_types = _normalize_content_types(exclude_content_types)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        responder: IdentityResponder
        if _accepts_gzip(request_header(scope, b"accept-encoding")):
            responder = GZipResponder(
                self.app,
                self.minimum_size,
                self.compresslevel,
                thread_minimum_size=self.thread_minimum_size,
                exclude_content_types=self.exclude_content_types,
            )
        else:
            responder = IdentityResponder(self.app, self.minimum_size, exclude_content_types=self.exclude_content_types)
        await responder(scope, receive, send)


class IdentityResponder:
    """Runs the app for one request and passes its response on uncompressed.

    It still adds ``Vary: Accept-Encoding`` where a gzip-accepting client would have got a
    compressed body, so that caches keep the two apart. ``GZipResponder`` builds on it.
    """

    content_encoding = ""

    def __init__(
        self,
        app: ASGIApp,
        minimum_size: int,
        *,
        exclude_content_types: tuple[str, ...] = DEFAULT_EXCLUDED_CONTENT_TYPES,
    ) -> None:
        self.app = app
        self.minimum_size = minimum_size
        self.exclude_content_types = _normalize_content_types(exclude_content_types)
        self.send: Send = unattached_send
        self.initial_message: Message = {}
        self.started = False
        self.content_encoding_set = False
        self.content_type_is_excluded = False
        self.partial_response = False

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        self.send = send
        await self.app(scope, receive, self.send_with_compression)

    @property
    def _passthrough(self) -> bool:
        return self.content_encoding_set or self.partial_response or self.content_type_is_excluded

    async def send_with_compression(self, message: Message) -> None:
        """The ``send`` the app sees: holds the response start back until the first body chunk."""
        message_type = message["type"]
        if message_type == "http.response.start":
            self._start(message)
            if self._passthrough:
                await self.send(message)
        elif message_type not in ("http.response.body", "http.response.pathsend") or self._passthrough:
            # Early hints, trailers, and anything of a response we leave alone.
            await self.send(message)
        elif message_type == "http.response.pathsend":
            # The server sends the file itself; it cannot be compressed on the way.
            await self.send(self.initial_message)
            await self.send(message)
        elif not self.started:
            self.started = True
            await self._send_first_body(message)
        else:
            message["body"] = await self.apply_compression(
                message.get("body", b""), more_body=message.get("more_body", False)
            )
            await self.send(message)

    def _start(self, message: Message) -> None:
        self.initial_message = message
        headers = message.setdefault("headers", [])
        self.content_encoding_set = get_header(headers, b"content-encoding") is not None
        self.partial_response = message["status"] == 206
        content_type = get_header(headers, b"content-type") or b""
        media_type = content_type.decode("latin-1").partition(";")[0].strip().lower()
        candidates = {media_type, media_type.partition("/")[0] + "/*"}
        if media_type.startswith("application/grpc+"):
            candidates.add("application/grpc")
        self.content_type_is_excluded = not candidates.isdisjoint(self.exclude_content_types)

    async def _send_first_body(self, message: Message) -> None:
        body: bytes = message.get("body", b"")
        more_body: bool = message.get("more_body", False)
        if len(body) < self.minimum_size and not more_body:
            # Too small to be worth compressing.
            await self.send(self.initial_message)
            await self.send(message)
            return
        compressed = await self.apply_compression(body, more_body=more_body)
        headers = self.initial_message["headers"] = list(self.initial_message["headers"])
        add_vary(headers, b"Accept-Encoding")
        if self.content_encoding:
            set_header(headers, b"content-encoding", self.content_encoding.encode("latin-1"))
            if more_body or self.initial_message.get("trailers", False):
                delete_header(headers, b"content-length")
            else:
                set_header(headers, b"content-length", str(len(compressed)).encode("latin-1"))
            message["body"] = compressed
        await self.send(self.initial_message)
        await self.send(message)

    async def apply_compression(self, body: bytes, *, more_body: bool) -> bytes:
        """Encode one body chunk; ``more_body=False`` ends the stream. Identity returns it as is."""
        return body


class GZipResponder(IdentityResponder):
    """Runs the app for one request and gzips its response body, streaming chunk by chunk."""

    content_encoding = "gzip"

    def __init__(
        self,
        app: ASGIApp,
        minimum_size: int,
        compresslevel: int = 9,
        *,
        thread_minimum_size: int = 128 * 1024,
        exclude_content_types: tuple[str, ...] = DEFAULT_EXCLUDED_CONTENT_TYPES,
    ) -> None:
        super().__init__(app, minimum_size, exclude_content_types=exclude_content_types)
        self.compresslevel = compresslevel
        self.thread_minimum_size = thread_minimum_size
        self._compressor: zlib._Compress | None = None

    @property
    def compressor(self) -> zlib._Compress:
        """The gzip stream of this response, created when the first chunk is compressed."""
        if self._compressor is None:
            self._compressor = zlib.compressobj(self.compresslevel, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
        return self._compressor

    async def apply_compression(self, body: bytes, *, more_body: bool) -> bytes:
        """Gzip one chunk, in a worker thread when it is at least ``thread_minimum_size`` bytes."""
        if len(body) >= self.thread_minimum_size:
            # A thread cannot be interrupted, so a cancellation waits for it: the stream stays consistent.
            return await trio.to_thread.run_sync(self._compress, body, more_body)
        return self._compress(body, more_body)

    def _compress(self, body: bytes, more_body: bool) -> bytes:
        compressor = self.compressor
        # A sync flush after each streamed chunk lets the client decode it without waiting for the next.
        return compressor.compress(body) + compressor.flush(zlib.Z_SYNC_FLUSH if more_body else zlib.Z_FINISH)


async def unattached_send(message: Message) -> NoReturn:
    """The placeholder ``send`` of a responder that has not been called as an ASGI app yet."""
    raise RuntimeError(
        f"Cannot send {message.get('type')!r}: this responder is not attached to a request yet; "
        "call it as an ASGI app, responder(scope, receive, send), before it sends."
    )


def _accepts_gzip(accept_encoding: bytes | None) -> bool:
    """Whether an Accept-Encoding value lists gzip with a non-zero quality."""
    if not accept_encoding:
        return False
    accept_encoding = accept_encoding.lower()
    if b"gzip" not in accept_encoding:
        return False
    for item in accept_encoding.split(b","):
        coding, _, params = item.partition(b";")
        if coding.strip() != b"gzip":
            continue
        for param in params.split(b";"):
            key, _, value = param.partition(b"=")
            if key.strip() == b"q":
                try:
                    return float(value) > 0
                except ValueError:
                    return False
        return True
    return False


def _normalize_content_types(content_types: Iterable[str]) -> tuple[str, ...]:
    """The media types alone, lower case (cached: each request's responder asks again)."""
    return _normalized(content_types if isinstance(content_types, tuple) else tuple(content_types))


@functools.lru_cache(maxsize=64)
def _normalized(content_types: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(content_type.partition(";")[0].strip().lower() for content_type in content_types)
