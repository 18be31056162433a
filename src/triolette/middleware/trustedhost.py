"""Host header checking: answer only for the host names this app is served under."""

from __future__ import annotations

from collections.abc import Sequence

from triolette._host import parse_host
from triolette._utils import ConfigurationError
from triolette.datastructures import URL
from triolette.middleware._headers import request_header
from triolette.responses import PlainTextResponse, RedirectResponse, Response
from triolette.types import ASGIApp, Receive, Scope, Send

__all__ = ["TrustedHostMiddleware"]


class TrustedHostMiddleware:
    """Rejects requests whose Host header is not one of ``allowed_hosts`` (400 "Invalid host header").

    A pattern is a host name (``"example.com"``), a subdomain wildcard (``"*.example.com"``,
    which does not match ``example.com`` itself) or ``"*"`` for any. Only the host part of
    the header counts, whatever its port; a missing or malformed Host header is a 400. With
    ``www_redirect``, a request for ``example.com`` when only ``www.example.com`` is allowed
    is redirected there.
    """

    def __init__(
        self,
        app: ASGIApp,
        allowed_hosts: Sequence[str] | None = None,
        www_redirect: bool = True,
    ) -> None:
        if allowed_hosts is None:
            allowed_hosts = ["*"]
        if isinstance(allowed_hosts, str):
            raise TypeError(
                "TrustedHostMiddleware allowed_hosts must be a list of host patterns, "
                f"got the string {allowed_hosts!r}; write [{allowed_hosts!r}]"
            )
        for pattern in allowed_hosts:
            if "*" in pattern[1:] or (pattern.startswith("*") and pattern != "*" and not pattern.startswith("*.")):
                raise ConfigurationError(
                    f"Domain wildcard patterns must be like '*.example.com', got {pattern!r} in allowed_hosts"
                )
        self.app = app
        self.allowed_hosts = [pattern.lower() for pattern in allowed_hosts]
        self.allow_any = "*" in allowed_hosts
        self.www_redirect = www_redirect
        self._exact = frozenset(pattern for pattern in self.allowed_hosts if not pattern.startswith("*"))
        self._suffixes = tuple(pattern[1:] for pattern in self.allowed_hosts if pattern.startswith("*."))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.allow_any or scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return

        raw_host = request_header(scope, b"host")
        parsed = parse_host(raw_host.decode("latin-1") if raw_host is not None else None)
        if parsed is None:
            await PlainTextResponse("Invalid host header", status_code=400)(scope, receive, send)
            return
        host = parsed.host.lower()
        if host in self._exact or host.endswith(self._suffixes):
            await self.app(scope, receive, send)
            return

        response: Response
        if self.www_redirect and "www." + host in self._exact:
            url = URL(scope=scope)
            response = RedirectResponse(url=str(url.replace(netloc="www." + url.netloc)))
        else:
            response = PlainTextResponse("Invalid host header", status_code=400)
        await response(scope, receive, send)
