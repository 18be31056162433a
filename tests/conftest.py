"""Shared helpers: run one request through an app inside the test's own trio run."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import trio

from triolette._testing import HTTPExchange
from triolette.types import ASGIApp


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes = b""
    chunks: list[bytes] = field(default_factory=list)

    @property
    def text(self) -> str:
        return self.body.decode()


def http_scope(path: str = "/", method: str = "GET", query: bytes = b"", headers: Any = ()) -> dict[str, Any]:
    return {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.4"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": query,
        "headers": [(b"host", b"testserver"), *headers],
        "client": ("127.0.0.1", 50000),
        "server": ("testserver", 80),
    }


def minimal_http_scope(**overrides: Any) -> dict[str, Any]:
    """The fewest keys an HTTP scope needs, with ``overrides`` applied."""
    scope: dict[str, Any] = {
        "type": "http",
        "method": "GET",
        "scheme": "http",
        "server": ("testserver", 80),
        "path": "/",
        "root_path": "",
        "query_string": b"",
        "headers": [(b"host", b"testserver")],
    }
    scope.update(overrides)
    return scope


async def _chunks(body: bytes) -> AsyncIterator[bytes]:
    if body:
        yield body


async def call(app: ASGIApp, path: str = "/", method: str = "GET", body: bytes = b"", **kw: Any) -> Answer:
    """One request through ``app`` in this trio run (virtual time applies)."""
    exchange = HTTPExchange(app, http_scope(path, method, **kw), _chunks(body), raise_server_exceptions=True)
    chunks: list[bytes] = []
    error: Exception | None = None
    async with trio.open_nursery() as nursery:
        await nursery.start(exchange.run)
        try:  # raised outside the nursery, so the test sees the exception itself
            await exchange.start()
            while (chunk := await exchange.next_chunk()) is not None:
                chunks.append(chunk)
            await exchange.aclose()
        except Exception as exc:
            error = exc
    if error is not None:
        raise error
    headers = {k.decode(): v.decode() for k, v in exchange.headers}
    return Answer(exchange.status, headers, b"".join(chunks), chunks)
