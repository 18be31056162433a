"""Redirect plain HTTP and WS requests to HTTPS and WSS."""

from __future__ import annotations

from triolette.datastructures import URL
from triolette.middleware._headers import parse_host, request_header
from triolette.responses import PlainTextResponse, RedirectResponse
from triolette.types import ASGIApp, Receive, Scope, Send

__all__ = ["HTTPSRedirectMiddleware"]

_SECURE_SCHEMES = {"http": "https", "ws": "wss"}


class HTTPSRedirectMiddleware:
    """Answers every ``http://`` or ``ws://`` request with a 307 redirect to the same URL over TLS.

    The default ports (80, 443) are dropped from the redirect; other ports are kept. A
    request with a malformed Host header, or none and no server address, is a 400.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        scheme = _SECURE_SCHEMES.get(scope.get("scheme", "")) if scope["type"] in ("http", "websocket") else None
        if scheme is None:
            await self.app(scope, receive, send)
            return

        raw_host = request_header(scope, b"host")
        if raw_host is not None:
            parsed = parse_host(raw_host.decode("latin-1"))
            if parsed is None:
                await PlainTextResponse("Invalid host header", status_code=400)(scope, receive, send)
                return
            host, port = parsed
        elif scope.get("server"):
            server_host, port = scope["server"]
            host = f"[{server_host}]" if ":" in server_host else server_host
        else:
            await PlainTextResponse("Invalid host header", status_code=400)(scope, receive, send)
            return
        netloc = host if port in (None, 80, 443) else f"{host}:{port}"
        url = URL(scope=scope).replace(scheme=scheme, netloc=netloc)
        await RedirectResponse(url, status_code=307)(scope, receive, send)
