"""Redirect plain HTTP and WS requests to HTTPS and WSS."""

from __future__ import annotations

from triolette._host import parse_host
from triolette.datastructures import URL
from triolette.middleware._headers import request_header
from triolette.responses import PlainTextResponse, RedirectResponse
from triolette.types import ASGIApp, Receive, Scope, Send

__all__ = ["HTTPSRedirectMiddleware"]

_SECURE_SCHEMES = {"http": "https", "ws": "wss"}


def _redirect_netloc(scope: Scope) -> str | None:
    """Host and port to redirect to: the Host header if it is usable, else ``scope["server"]``.

    The host is lowercased and the default ports (80, 443) are dropped; None when neither
    the header nor the server address gives a host.
    """
    raw_host = request_header(scope, b"host")
    parsed = parse_host(raw_host.decode("latin-1")) if raw_host is not None else None
    if parsed is not None and parsed.has_valid_port:
        host, port = parsed.host, parsed.port_number
    elif scope.get("server"):
        host, port = scope["server"]
        if ":" in host and not host.startswith("["):
            host = f"[{host}]"
    else:
        return None
    host = host.lower()
    return host if port in (None, 80, 443) else f"{host}:{port}"


class HTTPSRedirectMiddleware:
    """Answers every ``http://`` or ``ws://`` request with a 307 redirect to the same URL over TLS.

    The host comes from the Host header when it parses and its port is a TCP port, else from
    ``scope["server"]``; it is lowercased and the default ports (80, 443) are dropped. A request
    with neither a usable Host header nor a server address is a 400 "Invalid host header".
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        scheme = _SECURE_SCHEMES.get(scope.get("scheme", "")) if scope["type"] in ("http", "websocket") else None
        if scheme is None:
            await self.app(scope, receive, send)
            return
        netloc = _redirect_netloc(scope)
        if netloc is None:
            await PlainTextResponse("Invalid host header", status_code=400)(scope, receive, send)
            return
        url = URL(scope=scope).replace(scheme=scheme, netloc=netloc)
        await RedirectResponse(url, status_code=307)(scope, receive, send)
