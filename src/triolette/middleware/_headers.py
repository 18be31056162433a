"""Raw ASGI header helpers for the middleware on the per-request path.

These work on the ``[(name, value), ...]`` byte pairs of an ASGI message without
building a ``Headers`` object: one pass over the list, no decoding. Names in the
request scope are lowercase (the ASGI spec requires it of servers); names an
application put in a response are compared case-insensitively.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from ipaddress import AddressValueError, IPv6Address
from typing import Any, NamedTuple

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


class ParsedHost(NamedTuple):
    """A Host header split into its host (IP literals keep their brackets) and optional port."""

    host: str
    port: int | None


# RFC 3986 section 3.2.2: reg-name (unreserved, pct-encoded, sub-delims) or an IP literal
# in brackets (IPv6 or IPvFuture), then an optional decimal port.
_HOST = re.compile(
    r"(?P<host>[a-z0-9\-._~%!$&'()*+,;=]+"
    r"|\[(?:(?P<ipv6>[0-9a-f:.]+)|v[0-9a-f]+\.[a-z0-9\-._~!$&'()*+,;=:]+)\])"
    r"(?::(?P<port>[0-9]{1,5}))?",
    re.IGNORECASE | re.ASCII,
)


def parse_host(value: str | None) -> ParsedHost | None:
    """Split a Host header value into host and port; None when it is missing or malformed."""
    if not value:
        return None
    match = _HOST.fullmatch(value)
    if match is None:
        return None
    ipv6 = match["ipv6"]
    if ipv6 is not None:
        try:
            IPv6Address(ipv6)
        except AddressValueError:
            return None
    port = match["port"]
    if port is None:
        return ParsedHost(match["host"], None)
    number = int(port)
    if number > 65535:
        return None
    return ParsedHost(match["host"], number)
