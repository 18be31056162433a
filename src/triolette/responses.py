"""Responses: ASGI apps that send one HTTP response.

Inside a triolette app a response sends through the request's RequestScope: once the
client has gone nothing more is sent, a streaming body is closed in the task that iterated
it (DESIGN.md invariant 6), and background tasks run after the body, shielded from
client-disconnect cancellation and from the request deadline, but not from shutdown.
"""

from __future__ import annotations

import hashlib
import http.cookies
import json
import os
import stat
import sys
from collections.abc import AsyncIterable, Callable, Iterable, Mapping, Sequence
from datetime import datetime
from email.utils import format_datetime, formatdate
from mimetypes import guess_type
from typing import Any, Literal
from urllib.parse import quote

import trio

from triolette import _ranges
from triolette._scope import RequestScope, get_request_scope, run_in_request_scope
from triolette._utils import ConfigurationError, aclosing_if_closable
from triolette.background import BackgroundTask
from triolette.concurrency import iterate_in_threadpool
from triolette.datastructures import URL, Headers, MutableHeaders
from triolette.requests import ClientDisconnect
from triolette.types import Message, Receive, Scope, Send

__all__ = [
    "FileResponse",
    "HTMLResponse",
    "JSONResponse",
    "MalformedRangeHeader",
    "PlainTextResponse",
    "RangeNotSatisfiable",
    "RedirectResponse",
    "Response",
    "StreamingResponse",
]

Content = str | bytes | memoryview
SyncContentStream = Iterable[Content]
AsyncContentStream = AsyncIterable[Content]
ContentStream = AsyncContentStream | SyncContentStream

_BYTES = (bytes, memoryview)


async def run_background(scope: Scope, background: BackgroundTask) -> None:
    """Run a response's background task: shielded from disconnect and deadline, not shutdown."""
    rs = get_request_scope(scope)
    if rs is None:
        await background()
    else:
        await rs.run_background(background)


async def background_after_disconnect(scope: Scope, background: BackgroundTask | None) -> None:
    """Run ``background`` when a client disconnect cut its response short: background work
    is shielded from the client leaving (DESIGN.md section 4), not from shutdown."""
    rs = get_request_scope(scope)
    if background is not None and rs is not None and rs.disconnected:
        await rs.run_background(background)


class Response:
    """A response whose whole body is known up front."""

    media_type: str | None = None
    charset = "utf-8"

    def __init__(
        self,
        content: Any = None,
        status_code: int = 200,
        headers: Mapping[str, str] | None = None,
        media_type: str | None = None,
        background: BackgroundTask | None = None,
    ) -> None:
        self.status_code = status_code
        if media_type is not None:
            self.media_type = media_type
        self.background = background
        self.body = self.render(content)
        self.init_headers(headers)

    def render(self, content: Any) -> bytes | memoryview:
        if content is None:
            return b""
        if isinstance(content, bytes):
            return content
        if isinstance(content, memoryview):
            # Content-Length counts bytes: a typed view ("I": 4 bytes an item) is recast as bytes,
            # and a view that is not contiguous is copied.
            return content.cast("B") if content.c_contiguous else content.tobytes()
        encoded: bytes = content.encode(self.charset)
        return encoded

    def init_headers(self, headers: Mapping[str, str] | None = None) -> None:
        if headers is None:
            raw_headers: list[tuple[bytes, bytes]] = []
            populate_content_length = populate_content_type = True
        else:
            raw_headers = [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in headers.items()]
            keys = {key for key, _ in raw_headers}
            populate_content_length = b"content-length" not in keys
            populate_content_type = b"content-type" not in keys

        body = getattr(self, "body", None)
        status = self.status_code
        if body is not None and populate_content_length and not (status < 200 or status in (204, 304)):
            raw_headers.append((b"content-length", str(len(body)).encode("latin-1")))

        content_type = self.media_type
        if content_type is not None and populate_content_type:
            if content_type.startswith("text/") and "charset=" not in content_type.lower():
                content_type += "; charset=" + self.charset
            raw_headers.append((b"content-type", content_type.encode("latin-1")))
        self.raw_headers = raw_headers

    @property
    def headers(self) -> MutableHeaders:
        if not hasattr(self, "_headers"):
            self._headers = MutableHeaders(raw=self.raw_headers)
        return self._headers

    def set_cookie(
        self,
        key: str,
        value: str = "",
        max_age: int | None = None,
        expires: datetime | str | int | None = None,
        path: str | None = "/",
        domain: str | None = None,
        secure: bool = False,
        httponly: bool = False,
        samesite: Literal["lax", "strict", "none"] | None = "lax",
        partitioned: bool = False,
    ) -> None:
        """Add a ``Set-Cookie`` header."""
        cookie: http.cookies.BaseCookie[str] = http.cookies.SimpleCookie()
        cookie[key] = value
        morsel = cookie[key]
        if max_age is not None:
            morsel["max-age"] = str(max_age)
        if expires is not None:
            # An int is seconds from now: the Morsel renders it as a date when it is output.
            morsel["expires"] = format_datetime(expires, usegmt=True) if isinstance(expires, datetime) else expires
        if path is not None:
            morsel["path"] = path
        if domain is not None:
            morsel["domain"] = domain
        if secure:
            morsel["secure"] = True
        if httponly:
            morsel["httponly"] = True
        if samesite is not None:
            if samesite.lower() not in ("strict", "lax", "none"):
                raise ConfigurationError(f"samesite must be either 'strict', 'lax' or 'none', got {samesite!r}")
            morsel["samesite"] = samesite
        if partitioned:
            if sys.version_info < (3, 14):
                raise ValueError("Partitioned cookies are only supported in Python 3.14 and above.")
            morsel["partitioned"] = True  # type: ignore[unreachable,unused-ignore]  # pragma: no cover - 3.14+
        self.raw_headers.append((b"set-cookie", cookie.output(header="").strip().encode("latin-1")))

    def delete_cookie(
        self,
        key: str,
        path: str = "/",
        domain: str | None = None,
        secure: bool = False,
        httponly: bool = False,
        samesite: Literal["lax", "strict", "none"] | None = "lax",
        partitioned: bool = False,
    ) -> None:
        """Tell the client to drop a cookie (``Max-Age=0`` and an expiry in the past)."""
        self.set_cookie(
            key,
            max_age=0,
            expires=0,
            path=path,
            domain=domain,
            secure=secure,
            httponly=httponly,
            samesite=samesite,
            partitioned=partitioned,
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        prefix = ""
        if scope["type"] == "websocket":
            prefix = "websocket."
        await send({"type": prefix + "http.response.start", "status": self.status_code, "headers": self.raw_headers})
        await send({"type": prefix + "http.response.body", "body": self.body})
        if self.background is not None:
            await run_background(scope, self.background)


class HTMLResponse(Response):
    media_type = "text/html"


class PlainTextResponse(Response):
    media_type = "text/plain"


class JSONResponse(Response):
    """JSON, compact and UTF-8; NaN and infinities are refused (they are not JSON)."""

    media_type = "application/json"

    def __init__(
        self,
        content: Any,
        status_code: int = 200,
        headers: Mapping[str, str] | None = None,
        media_type: str | None = None,
        background: BackgroundTask | None = None,
    ) -> None:
        super().__init__(content, status_code, headers, media_type, background)

    def render(self, content: Any) -> bytes:
        return json.dumps(content, ensure_ascii=False, allow_nan=False, indent=None, separators=(",", ":")).encode(
            "utf-8"
        )


class RedirectResponse(Response):
    """A redirect (307 by default) to ``url``, percent-quoted where needed."""

    def __init__(
        self,
        url: str | URL,
        status_code: int = 307,
        headers: Mapping[str, str] | None = None,
        background: BackgroundTask | None = None,
    ) -> None:
        super().__init__(content=b"", status_code=status_code, headers=headers, background=background)
        self.headers["location"] = quote(str(url), safe=":/%#?=@[]!$&'()*+,;")


class StreamingResponse(Response):
    """A body produced chunk by chunk by an async (or sync, run in a thread) iterator.

    The iterator is closed with ``aclosing()`` in the task that iterated it, also when the
    client disconnects or the request is cancelled, so its ``finally`` blocks run before
    the ASGI call returns. Called without a triolette app around it, it opens a
    RequestScope of its own, so it still stops when the client disconnects.
    """

    body_iterator: AsyncContentStream

    def __init__(
        self,
        content: ContentStream,
        status_code: int = 200,
        headers: Mapping[str, str] | None = None,
        media_type: str | None = None,
        background: BackgroundTask | None = None,
    ) -> None:
        if isinstance(content, AsyncIterable):
            self.body_iterator = content
        else:
            self.body_iterator = iterate_in_threadpool(content)
        self.status_code = status_code
        self.media_type = self.media_type if media_type is None else media_type
        self.background = background
        self.init_headers(headers)

    async def listen_for_disconnect(self, receive: Receive) -> None:
        """Return when the client disconnects (triolette's RequestScope already does this)."""
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                break

    async def stream_response(self, send: Send) -> None:
        """Send the start, every chunk as it is produced, and the end of the body."""
        await send({"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers})
        await self._send_chunks(send, None)
        await send({"type": "http.response.body", "body": b"", "more_body": False})

    async def _send_chunks(self, send: Send, rs: RequestScope | None) -> None:
        charset = self.charset
        direct = rs is not None and send is rs.asgi_send
        async with aclosing_if_closable(self.body_iterator) as iterator:
            async for chunk in iterator:
                if not isinstance(chunk, _BYTES):
                    chunk = chunk.encode(charset)
                if direct:
                    if not await rs.send_chunk(chunk):  # type: ignore[union-attr]  # direct implies rs
                        return  # the client has gone
                elif rs is not None and rs.disconnected:
                    return
                else:
                    await send({"type": "http.response.body", "body": chunk, "more_body": True})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket":
            send = _websocket_denial_send(send)
            await self.stream_response(send)
        else:
            rs = get_request_scope(scope)
            try:
                if rs is None:
                    await run_in_request_scope(self._stream_only, scope, receive, send)
                else:
                    start = {"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers}
                    await send(start)
                    await self._send_chunks(send, rs)
                    await send({"type": "http.response.body", "body": b"", "more_body": False})
            except OSError:
                # ASGI 2.4: a server raises OSError from send() when the client has gone.
                if _spec_version(scope) < (2, 4):
                    raise
                raise ClientDisconnect() from None
            except trio.Cancelled:
                await background_after_disconnect(scope, self.background)
                raise
        if self.background is not None:
            await run_background(scope, self.background)

    async def _stream_only(self, scope: Scope, receive: Receive, send: Send) -> None:
        background, self.background = self.background, None
        try:
            await self(scope, receive, send)
        finally:
            self.background = background


def _spec_version(scope: Scope) -> tuple[int, ...]:
    """The ASGI spec version the server declares in the scope ("2.0" if it says none)."""
    version: str = scope.get("asgi", {}).get("spec_version", "2.0")
    try:
        return tuple(int(part) for part in version.split("."))
    except ValueError:
        return (2, 0)


def _websocket_denial_send(send: Send) -> Send:
    async def denial_send(message: Message) -> None:
        kind = message["type"]
        if kind in ("http.response.start", "http.response.body"):
            message = {**message, "type": "websocket." + kind}
        await send(message)

    return denial_send


class MalformedRangeHeader(Exception):
    """A ``Range`` header that does not parse (answered 400)."""

    def __init__(self, content: str = "Malformed range header.") -> None:
        self.content = content


class RangeNotSatisfiable(Exception):
    """No requested range overlaps the file (answered 416)."""

    def __init__(self, max_size: int) -> None:
        self.max_size = max_size


class FileResponse(Response):
    """A file from disk, read off the event loop, with Range and If-Range support."""

    chunk_size = 64 * 1024
    max_ranges = 100

    def __init__(
        self,
        path: str | os.PathLike[str],
        status_code: int = 200,
        headers: Mapping[str, str] | None = None,
        media_type: str | None = None,
        background: BackgroundTask | None = None,
        filename: str | None = None,
        stat_result: os.stat_result | None = None,
        content_disposition_type: str = "attachment",
    ) -> None:
        self.path = path
        self.status_code = status_code
        self.filename = filename
        if media_type is None:
            media_type = guess_type(filename or path)[0] or "application/octet-stream"
        self.media_type = media_type
        self.background = background
        self.init_headers(headers)
        self.headers.setdefault("accept-ranges", "bytes")
        if filename is not None:
            quoted = quote(filename)
            if quoted != filename:
                disposition = f"{content_disposition_type}; filename*=utf-8''{quoted}"
            else:
                disposition = f'{content_disposition_type}; filename="{filename}"'
            self.headers.setdefault("content-disposition", disposition)
        self.stat_result = stat_result
        if stat_result is not None:
            self.set_stat_headers(stat_result)

    def generate_multipart(
        self, ranges: Sequence[tuple[int, int]], boundary: str, max_size: int, content_type: str
    ) -> tuple[int, Callable[[int, int], bytes]]:
        """Starlette's framing helper: the length of a ``multipart/byteranges`` body for
        ``ranges``, and a function giving the header of the part for ``(start, end)``
        (without the CRLF that ends the previous part)."""
        framing = _ranges.multipart_byteranges(ranges, boundary, content_type, max_size)

        def part_header(start: int, end: int) -> bytes:
            return _ranges.multipart_byteranges([(start, end)], boundary, content_type, max_size).part_headers[0]

        return framing.content_length, part_header

    def set_stat_headers(self, stat_result: os.stat_result) -> None:
        """Content-Length, Last-Modified and ETag from the file's ``stat``."""
        etag_base = f"{stat_result.st_mtime}-{stat_result.st_size}"
        etag = f'"{hashlib.md5(etag_base.encode(), usedforsecurity=False).hexdigest()}"'
        self.headers.setdefault("content-length", str(stat_result.st_size))
        self.headers.setdefault("last-modified", formatdate(stat_result.st_mtime, usegmt=True))
        self.headers.setdefault("etag", etag)

    async def _stat(self) -> os.stat_result:
        if self.stat_result is not None:
            return self.stat_result
        try:
            stat_result = await trio.to_thread.run_sync(os.stat, self.path)
        except FileNotFoundError:
            raise RuntimeError(f"File at path {self.path} does not exist.") from None
        if not stat.S_ISREG(stat_result.st_mode):
            raise RuntimeError(f"File at path {self.path} is not a file.")
        self.set_stat_headers(stat_result)
        return stat_result

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and get_request_scope(scope) is None:
            # Called on its own: a RequestScope of its own, so that a disconnect stops the transfer
            # (and the background work still runs, as below).
            await run_in_request_scope(self, scope, receive, send)
            return
        try:
            await self._respond(scope, receive, send)
        except trio.Cancelled:
            await background_after_disconnect(scope, self.background)
            raise

    async def _respond(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        method = scope.get("method", "GET").upper()
        header_only = kind == "http" and method == "HEAD"
        if kind == "websocket":
            send = _websocket_denial_send(send)
        stat_result = await self._stat()
        size = stat_result.st_size

        headers = Headers(scope=scope)
        range_header = headers.get("range")
        if_range = headers.get("if-range")
        ranges: list[tuple[int, int]] = []
        if (
            range_header is not None
            and self.status_code == 200
            and method in ("GET", "HEAD")
            and (if_range is None or self._should_use_range(if_range))
        ):
            try:
                ranges = _ranges.parse_range_header(range_header, size, max_ranges=self.max_ranges)
            except _ranges.MalformedRange as exc:
                await PlainTextResponse(exc.message, status_code=400)(scope, receive, send)
                return
            except _ranges.UnsatisfiableRange:
                response = PlainTextResponse(status_code=416, headers={"Content-Range": f"bytes */{size}"})
                await response(scope, receive, send)
                return

        if not ranges:
            await self._send_whole(scope, send, header_only)
        elif len(ranges) == 1:
            await self._send_single_range(send, ranges[0], size, header_only)
        else:
            await self._send_ranges(send, ranges, size, header_only)
        if self.background is not None:
            await run_background(scope, self.background)

    def _should_use_range(self, if_range: str) -> bool:
        return _ranges.if_range_matches(if_range, self.headers.get("etag", ""), self.headers.get("last-modified", ""))

    async def _send_whole(self, scope: Scope, send: Send, header_only: bool) -> None:
        await send({"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers})
        if header_only:
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        elif "http.response.pathsend" in scope.get("extensions", {}):
            await send({"type": "http.response.pathsend", "path": str(self.path)})
        else:
            async with _open_file(self.path) as file:
                await self._send_slice(send, file, 0, None, last=True)

    async def _send_single_range(self, send: Send, span: tuple[int, int], size: int, header_only: bool) -> None:
        start, end = span
        headers = MutableHeaders(raw=list(self.raw_headers))
        headers["content-range"] = f"bytes {start}-{end - 1}/{size}"
        headers["content-length"] = str(end - start)
        await send({"type": "http.response.start", "status": 206, "headers": headers.raw})
        if header_only:
            await send({"type": "http.response.body", "body": b"", "more_body": False})
            return
        async with _open_file(self.path) as file:
            await self._send_slice(send, file, start, end, last=True)

    async def _send_ranges(self, send: Send, ranges: list[tuple[int, int]], size: int, header_only: bool) -> None:
        boundary = _ranges.new_boundary()
        framing = _ranges.multipart_byteranges(ranges, boundary, self.headers.get("content-type", ""), size)
        headers = MutableHeaders(raw=list(self.raw_headers))
        headers["content-type"] = f"multipart/byteranges; boundary={boundary}"
        headers["content-length"] = str(framing.content_length)
        await send({"type": "http.response.start", "status": 206, "headers": headers.raw})
        if header_only:
            await send({"type": "http.response.body", "body": b"", "more_body": False})
            return
        async with _open_file(self.path) as file:
            for part_header, (start, end) in zip(framing.part_headers, ranges, strict=True):
                await send({"type": "http.response.body", "body": part_header, "more_body": True})
                await self._send_slice(send, file, start, end, last=False)
            await send({"type": "http.response.body", "body": framing.closing, "more_body": False})

    async def _send_slice(self, send: Send, file: Any, start: int, end: int | None, *, last: bool) -> None:
        """Send bytes ``start`` to ``end`` (None: to the end of the file), a chunk at a time."""
        if start:
            await file.seek(start)
        chunk_size = self.chunk_size
        position = start
        while True:
            want = chunk_size if end is None else min(chunk_size, end - position)
            chunk = await file.read(want) if want > 0 else b""
            if end is not None and len(chunk) < want:
                # The file shrank after its stat: the Content-Length sent would be a lie.
                raise RuntimeError(f"File at path {self.path} is shorter than expected.")
            position += len(chunk)
            done = len(chunk) < want or want == 0 or (end is not None and position >= end)
            if done and not last:
                if chunk:
                    await send({"type": "http.response.body", "body": chunk, "more_body": True})
                return
            await send({"type": "http.response.body", "body": chunk, "more_body": not done})
            if done:
                return


class _open_file:
    """Open a file through trio's thread-backed file API; closing survives cancellation."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = path

    async def __aenter__(self) -> trio._file_io.AsyncIOWrapper[Any]:
        self.file = await trio.open_file(self.path, "rb")
        return self.file

    async def __aexit__(self, *exc_info: object) -> None:
        with trio.CancelScope(shield=True), trio.move_on_after(10):
            await self.file.aclose()
