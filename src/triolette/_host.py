"""The Host header, parsed once and the same way everywhere (sans-IO).

``request.url``, ``TrustedHostMiddleware``, ``HTTPSRedirectMiddleware`` and ``Host`` routes
all read the header through ``parse_host``. The grammar is RFC 3986's authority without
userinfo: a reg-name, an ``[IPv6]`` literal, or an IPvFuture ``[v<hex>.<chars>]`` (lowercase
``v`` only, as ``urllib`` accepts), then optionally ``:`` and one or more digits. Anything else,
a ``/``, ``?``, ``#``, ``@`` or whitespace included, could move the path or the authority of a
URL built from it, so it does not parse.
"""

from __future__ import annotations

import re
from ipaddress import AddressValueError, IPv6Address
from typing import NamedTuple

__all__ = ["ParsedHost", "parse_host"]

_HOST = re.compile(
    r"(?P<host>[a-z0-9._~%!$&'()*+,;=-]+"
    r"|\[(?:(?P<ipv6>[a-f0-9]*:[a-f0-9.:]+)|(?-i:v)[a-f0-9]+\.[a-z0-9._~!$&'()*+,;=:-]+)\])"
    r"(?::(?P<port>[0-9]+))?",
    re.IGNORECASE | re.ASCII,
)


class ParsedHost(NamedTuple):
    """A Host header split into its host (IP literals keep their brackets) and its port digits."""

    host: str
    port: str | None

    @property
    def authority(self) -> str:
        """The header as it was written: ``host`` or ``host:port``."""
        return self.host if self.port is None else f"{self.host}:{self.port}"

    @property
    def port_number(self) -> int | None:
        """The port as a number; None when there is none or it is not a TCP port (over 65535).

        Leading zeros do not count, so ``000080`` is 80; the length is checked before ``int()``
        so that a header of thousands of digits costs nothing.
        """
        if self.port is None:
            return None
        digits = self.port.lstrip("0")
        if len(digits) > 5:
            return None
        number = int(digits or "0")
        return number if number <= 65535 else None

    @property
    def has_valid_port(self) -> bool:
        """No port, or one that is a TCP port: what a URL may be built from."""
        return self.port is None or self.port_number is not None


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
    return ParsedHost(match["host"], match["port"])
