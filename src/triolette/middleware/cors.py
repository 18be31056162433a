"""Cross-Origin Resource Sharing (CORS): tell browsers which other origins may call this app."""

from __future__ import annotations

import re
from collections.abc import Collection

from triolette.datastructures import Headers, MutableHeaders
from triolette.responses import PlainTextResponse, Response
from triolette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = ["CORSMiddleware"]

ALL_METHODS = ("DELETE", "GET", "HEAD", "OPTIONS", "PATCH", "POST", "PUT", "QUERY")
SAFELISTED_HEADERS = {"Accept", "Accept-Language", "Content-Language", "Content-Type"}

_PREFLIGHT_VARY = (
    "Origin, Access-Control-Request-Method, Access-Control-Request-Headers, Access-Control-Request-Private-Network"
)
_ALLOW_ORIGIN = b"access-control-allow-origin"
_VARY = b"vary"
_ORIGIN = b"Origin"


class CORSMiddleware:
    """Answers CORS preflight requests and adds CORS headers to the other responses.

    ``allow_origins`` lists exact origins (``"*"`` for any); ``allow_origin_regex`` must
    match an origin in full. With ``allow_credentials=True`` responses name the caller's
    origin rather than ``*``, as browsers require. Every response gets ``Vary: Origin``.
    """

    def __init__(
        self,
        app: ASGIApp,
        allow_origins: Collection[str] = (),
        allow_methods: Collection[str] = ("GET",),
        allow_headers: Collection[str] = (),
        allow_credentials: bool = False,
        allow_origin_regex: str | None = None,
        allow_private_network: bool = False,
        expose_headers: Collection[str] = (),
        max_age: int = 600,
    ) -> None:
        if "*" in allow_methods:
            allow_methods = ALL_METHODS
        allow_all_origins = "*" in allow_origins
        allow_all_headers = "*" in allow_headers
        preflight_explicit_allow_origin = not allow_all_origins or allow_credentials
        sorted_allow_headers = sorted(SAFELISTED_HEADERS | set(allow_headers))

        simple_headers: dict[str, str] = {}
        if allow_all_origins:
            simple_headers["Access-Control-Allow-Origin"] = "*"
        if allow_credentials:
            simple_headers["Access-Control-Allow-Credentials"] = "true"
        if expose_headers:
            simple_headers["Access-Control-Expose-Headers"] = ", ".join(expose_headers)

        preflight_headers: dict[str, str] = {"Vary": _PREFLIGHT_VARY}
        if not preflight_explicit_allow_origin:
            preflight_headers["Access-Control-Allow-Origin"] = "*"
        preflight_headers["Access-Control-Allow-Methods"] = ", ".join(allow_methods)
        preflight_headers["Access-Control-Max-Age"] = str(max_age)
        if not allow_all_headers:
            preflight_headers["Access-Control-Allow-Headers"] = ", ".join(sorted_allow_headers)
        if allow_credentials:
            preflight_headers["Access-Control-Allow-Credentials"] = "true"

        self.app = app
        self.allow_origins = allow_origins
        self.allow_methods = allow_methods
        self.allow_headers = [header.lower() for header in sorted_allow_headers]
        self.allow_all_origins = allow_all_origins
        self.allow_all_headers = allow_all_headers
        self.allow_credentials = allow_credentials
        self.preflight_explicit_allow_origin = preflight_explicit_allow_origin
        self.allow_origin_regex = re.compile(allow_origin_regex) if allow_origin_regex is not None else None
        self.allow_private_network = allow_private_network
        self.simple_headers = simple_headers
        self.preflight_headers = preflight_headers

        # Encoded once here, so that a simple request costs one pass over the response headers.
        self._origin_set = frozenset(allow_origins)
        self._simple_raw = [
            (name.lower().encode("latin-1"), value.encode("latin-1")) for name, value in simple_headers.items()
        ]
        # With credentials, even "allow any origin" must name the caller's origin.
        self._mirror_origin_always = allow_all_origins and allow_credentials
        self._simple_raw_without_origin = [pair for pair in self._simple_raw if pair[0] != _ALLOW_ORIGIN]
        self._simple_names = frozenset(name for name, _ in self._simple_raw)
        self._simple_names_and_origin = self._simple_names | {_ALLOW_ORIGIN}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        origin: bytes | None = None
        preflight_requested = False
        for name, value in scope["headers"]:
            if name == b"origin":
                if origin is None:
                    origin = value
            elif name == b"access-control-request-method":
                preflight_requested = True

        if origin is not None and preflight_requested and scope["method"] == "OPTIONS":
            response = self.preflight_response(request_headers=Headers(scope=scope))
            await response(scope, receive, send)
            return

        await self.app(scope, receive, self._wrap_send(send, origin))

    def is_allowed_origin(self, origin: str) -> bool:
        """Whether a request from ``origin`` may read the response."""
        if self.allow_all_origins:
            return True
        if self.allow_origin_regex is not None and self.allow_origin_regex.fullmatch(origin):
            return True
        return origin in self._origin_set

    def preflight_response(self, request_headers: Headers) -> Response:
        """The answer to a preflight request: 200, or 400 naming what is disallowed."""
        requested_origin = request_headers["origin"]
        requested_method = request_headers["access-control-request-method"]
        requested_headers = request_headers.get("access-control-request-headers")
        requested_private_network = request_headers.get("access-control-request-private-network")

        headers = dict(self.preflight_headers)
        failures: list[str] = []

        if not self.is_allowed_origin(requested_origin):
            failures.append("origin")
        elif self.preflight_explicit_allow_origin:
            headers["Access-Control-Allow-Origin"] = requested_origin

        if requested_method not in self.allow_methods:
            failures.append("method")

        if requested_headers is not None:
            if self.allow_all_headers:
                # Any header is allowed: the answer must list the requested ones back.
                headers["Access-Control-Allow-Headers"] = requested_headers
            elif any(header.strip().lower() not in self.allow_headers for header in requested_headers.split(",")):
                failures.append("headers")

        if requested_private_network is not None:
            if self.allow_private_network:
                headers["Access-Control-Allow-Private-Network"] = "true"
            else:
                failures.append("private-network")

        # Browsers enforce CORS themselves; a 400 that says why is kinder to whoever debugs it.
        if failures:
            return PlainTextResponse("Disallowed CORS " + ", ".join(failures), status_code=400, headers=headers)
        return PlainTextResponse("OK", status_code=200, headers=headers)

    async def simple_response(self, scope: Scope, receive: Receive, send: Send, request_headers: Headers) -> None:
        """Run the app, adding the CORS headers for ``request_headers``' origin to its response."""
        origin = request_headers.get("origin")
        await self.app(scope, receive, self._wrap_send(send, None if origin is None else origin.encode("latin-1")))

    async def send(self, message: Message, send: Send, request_headers: Headers) -> None:
        """Send ``message``, adding the CORS headers to it if it starts the response."""
        origin = request_headers.get("origin")
        await self._wrap_send(send, None if origin is None else origin.encode("latin-1"))(message)

    @staticmethod
    def allow_explicit_origin(headers: MutableHeaders, origin: str) -> None:
        """Set Access-Control-Allow-Origin to ``origin`` and add Origin to Vary."""
        headers["Access-Control-Allow-Origin"] = origin
        headers.add_vary_header("Origin")

    def _wrap_send(self, send: Send, origin: bytes | None) -> Send:
        added: list[tuple[bytes, bytes]] = []
        replaced: frozenset[bytes] = frozenset()
        if origin is not None:
            added, replaced = self._simple_raw, self._simple_names
            if self._mirror_origin_always or (
                not self.allow_all_origins and self.is_allowed_origin(origin.decode("latin-1"))
            ):
                added = [*self._simple_raw_without_origin, (_ALLOW_ORIGIN, origin)]
                replaced = self._simple_names_and_origin

        async def send_with_cors(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers: list[tuple[bytes, bytes]] = []
                vary: list[bytes] = []
                for name, value in message.get("headers", ()):
                    lowered = name.lower()
                    if lowered == _VARY:
                        vary.append(value)
                    elif lowered not in replaced:
                        headers.append((name, value))
                headers += added
                vary.append(_ORIGIN)
                headers.append((_VARY, b", ".join(vary)))
                message["headers"] = headers
            await send(message)

        return send_with_cors
