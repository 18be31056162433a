"""OpenTelemetry tracing: one server span per HTTP request.

Needs the ``opentelemetry-api`` package: ``pip install triolette[opentelemetry]``.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from typing import Any

try:
    from opentelemetry import metrics, propagate, trace
    from opentelemetry.trace import SpanKind, Status, StatusCode
except ModuleNotFoundError as exc:
    raise ModuleNotFoundError(
        "OpenTelemetryMiddleware needs the 'opentelemetry-api' package. "
        "Install it with 'pip install triolette[opentelemetry]'."
    ) from exc

from triolette import __version__
from triolette.datastructures import URL
from triolette.inspector import END_REASONS
from triolette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = ["OpenTelemetryMiddleware"]

_ACTIVE_SCOPE_KEY = "triolette.opentelemetry"


class OpenTelemetryMiddleware:
    """Records an OpenTelemetry server span for each HTTP request.

    Experimental: the attributes it records may change in a minor release. The span
    follows the HTTP semantic conventions (``http.request.method``, ``url.path``,
    ``http.response.status_code``, ``http.route`` once routing has matched, ...), takes its
    parent from the request's propagation headers, and ends when the response ends, also
    when the request is cancelled (client gone, deadline) or fails.

    Args:
        app: The ASGI application to wrap.
        excluded_urls: Regular expressions searched for in the full request URL; a match
            means no span. A comma-separated string or a sequence.
        tracer_provider: Defaults to the global tracer provider.
        meter_provider: Defaults to the global meter provider. When the app has an inspector
            (``triolette.inspector``), its counts of ended requests by end reason are observed
            as the counter ``triolette.requests.ended`` (attribute ``triolette.end_reason``).
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        excluded_urls: str | Sequence[str] = (),
        tracer_provider: trace.TracerProvider | None = None,
        meter_provider: metrics.MeterProvider | None = None,
    ) -> None:
        if isinstance(excluded_urls, str):
            excluded_urls = [part.strip() for part in excluded_urls.split(",") if part.strip()]
        self.app = app
        self._excluded_urls = tuple(re.compile(pattern) for pattern in excluded_urls)
        self._tracer_provider = tracer_provider or trace.get_tracer_provider()
        self._meter_provider = meter_provider
        self._tracer = self._tracer_provider.get_tracer("triolette", __version__)
        self._watched: Any = None  # the application seen on the first request: its inspector's counts
        meter = (meter_provider or metrics.get_meter_provider()).get_meter("triolette", __version__)
        meter.create_observable_counter(
            "triolette.requests.ended",
            callbacks=[self._observe_ended],
            unit="{request}",
            description="Requests ended since the inspector was installed, by how they ended.",
        )

    def _observe_ended(self, options: metrics.CallbackOptions) -> Iterator[metrics.Observation]:
        inspector = getattr(self._watched, "inspector", None)
        if inspector is None:
            return
        counts = inspector.counts  # read as it is: the reader may collect from another thread
        for reason in END_REASONS:
            yield metrics.Observation(counts[reason], {"triolette.end_reason": reason})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self._watched is None:
            self._watched = scope.get("app")
        # A second instance further in (e.g. on a Mount) must not record a second span.
        if scope["type"] != "http" or scope.get(_ACTIVE_SCOPE_KEY):
            await self.app(scope, receive, send)
            return
        scope[_ACTIVE_SCOPE_KEY] = True
        try:
            await self._traced(scope, receive, send)
        finally:
            scope.pop(_ACTIVE_SCOPE_KEY, None)

    async def _traced(self, scope: Scope, receive: Receive, send: Send) -> None:
        if isinstance(self._tracer_provider, trace.NoOpTracerProvider):
            await self.app(scope, receive, send)
            return
        url = URL(scope=scope)
        if self._excluded_urls and any(pattern.search(str(url)) for pattern in self._excluded_urls):
            await self.app(scope, receive, send)
            return

        headers: dict[str, list[str]] = {}
        for name, value in scope.get("headers", ()):
            headers.setdefault(name.decode("latin-1").lower(), []).append(value.decode("latin-1"))
        method = scope.get("method", "").upper()
        attributes = _request_attributes(scope, url, headers)

        # The with-block ends the span on the way out, whether the app returned, raised or was cancelled.
        with self._tracer.start_as_current_span(
            method,
            context=propagate.extract(headers),
            kind=SpanKind.SERVER,
            attributes=attributes,
            record_exception=False,
            set_status_on_exception=False,
        ) as span:

            async def send_with_telemetry(message: Message) -> None:
                if message["type"] == "http.response.start":
                    status_code: int = message["status"]
                    span.set_attribute("http.response.status_code", status_code)
                    if status_code >= 500:
                        span.set_attribute("error.type", str(status_code))
                        span.set_status(Status(StatusCode.ERROR))
                await send(message)

            try:
                await self.app(scope, receive, send_with_telemetry)
            except Exception as exc:
                # Cancellation (client gone, deadline) is not an error of the server: it only ends the span.
                span.record_exception(exc)
                span.set_attribute("error.type", type(exc).__qualname__)
                span.set_status(Status(StatusCode.ERROR, f"{type(exc).__qualname__}: {exc}"))
                raise
            finally:
                route = _route_template(scope)
                if route is not None:
                    span.update_name(f"{method} {route}")
                    span.set_attribute("http.route", route)


def _request_attributes(scope: Scope, url: URL, headers: dict[str, list[str]]) -> dict[str, str | int]:
    original = scope.get("method", "")
    method = original.upper()
    attributes: dict[str, str | int] = {
        "http.request.method": method,
        "url.path": scope.get("path", ""),
        "url.scheme": scope.get("scheme", "http"),
    }
    if original != method:
        attributes["http.request.method_original"] = original
    if url.query:
        attributes["url.query"] = url.query
    if url.hostname is not None:
        attributes["server.address"] = url.hostname
        server = scope.get("server")
        port = url.port if url.port is not None else server[1] if server else None
        if port is not None:
            attributes["server.port"] = port
    if scope.get("http_version"):
        attributes["network.protocol.version"] = scope["http_version"]
    if scope.get("client"):
        attributes["client.address"] = scope["client"][0]
    if headers.get("user-agent"):
        attributes["user_agent.original"] = headers["user-agent"][0]
    return attributes


def _route_template(scope: Scope) -> str | None:
    """The matched route's path template (``/users/{id}``), with the mount prefix; None before routing."""
    route = scope.get("route")
    if route is None:
        return None
    root_path: str = scope.get("root_path", "")
    # A Mount's own template ends in "/{path:path}"; what it matched is its prefix.
    if type(route).__name__ == "Mount":
        return root_path or "/"
    path_format = getattr(route, "path_format", None)
    if not isinstance(path_format, str):
        return None
    return root_path.rstrip("/") + path_format or "/"
