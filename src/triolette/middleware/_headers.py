"""Raw ASGI header helpers for the middleware on the per-request path.

These work on the ``[(name, value), ...]`` byte pairs of an ASGI message without
building a ``Headers`` object: one pass over the list, no decoding. Names in the
request scope are lowercase (the ASGI spec requires it of servers); names an
application put in a response are compared case-insensitively.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

RawHeaders = list[tuple[bytes, bytes]]


def request_header(scope: Any, name: bytes) -> bytes | None:
    """The first value of the request header ``name`` (lowercase), or None."""
    for key, value in scope.get("headers", ()):
        if key == name:
            return value  # type: ignore[no-any-return]  # ASGI header values are bytes
    return None


def response_headers(message: Any) -> RawHeaders:
    """The headers of a ``http.response.start`` message as a list this module may change in place."""
    headers = message.get("headers")
    if isinstance(headers, list):
        return headers
    headers = list(headers or ())
    message["headers"] = headers
    return headers


def get_header(headers: Iterable[tuple[bytes, bytes]], name: bytes) -> bytes | None:
    """The first value of the response header ``name`` (lowercase), compared case-insensitively."""
    for key, value in headers:
        if key.lower() == name:
            return value
    return None


def set_header(headers: RawHeaders, name: bytes, value: bytes) -> None:
    """Replace every ``name`` header with one ``name: value``."""
    delete_header(headers, name)
    headers.append((name, value))


def delete_header(headers: RawHeaders, name: bytes) -> None:
    """Remove every ``name`` header."""
    headers[:] = [(key, value) for key, value in headers if key.lower() != name]


def add_vary(headers: RawHeaders, value: bytes) -> None:
    """Add ``value`` to the response's Vary header, folding existing Vary headers into one."""
    values = [item for key, item in headers if key.lower() == b"vary"]
    if values:
        delete_header(headers, b"vary")
    values.append(value)
    headers.append((b"vary", b", ".join(values)))
