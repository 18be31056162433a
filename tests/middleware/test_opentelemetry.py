from __future__ import annotations

import importlib
import sys
from typing import Any

import pytest
import trio
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from triolette.applications import Triolette
from triolette.middleware import Middleware
from triolette.middleware.opentelemetry import OpenTelemetryMiddleware
from triolette.requests import Request
from triolette.responses import PlainTextResponse, Response
from triolette.routing import Mount, Route
from triolette.testclient import TestClient
from triolette.types import Message, Receive, Scope, Send


@pytest.fixture
def exporter() -> InMemorySpanExporter:
    return InMemorySpanExporter()


@pytest.fixture
def provider(exporter: InMemorySpanExporter) -> TracerProvider:
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return provider


def user(request: Request) -> Response:
    return PlainTextResponse(f"user {request.path_params}")


def fail(request: Request) -> Response:
    raise ValueError("boom")


def server_error(request: Request) -> Response:
    return PlainTextResponse("down", status_code=503)


async def static_like(scope: Scope, receive: Receive, send: Send) -> None:
    await PlainTextResponse("static")(scope, receive, send)


def make_app(provider: TracerProvider, **options: Any) -> Triolette:
    return Triolette(
        routes=[
            Route("/users/{id:int}", user),
            Route("/fail", fail),
            Route("/down", server_error),
            Mount("/api", routes=[Route("/items/{name}", user, name="item")]),
            Mount("/static", app=static_like),
        ],
        middleware=[Middleware(OpenTelemetryMiddleware, tracer_provider=provider, **options)],
    )


def only_span(exporter: InMemorySpanExporter) -> ReadableSpan:
    spans = exporter.get_finished_spans()
    assert len(spans) == 1
    return spans[0]


def test_span_for_a_request(provider: TracerProvider, exporter: InMemorySpanExporter) -> None:
    client = TestClient(make_app(provider))
    response = client.get("/users/42?verbose=1", headers={"user-agent": "tests/1.0"})
    assert response.status_code == 200
    span = only_span(exporter)
    assert span.name == "GET /users/{id}"
    assert span.kind is SpanKind.SERVER
    assert span.status.status_code is StatusCode.UNSET
    assert span.attributes is not None
    assert dict(span.attributes) == {
        "http.request.method": "GET",
        "url.path": "/users/42",
        "url.scheme": "http",
        "url.query": "verbose=1",
        "server.address": "testserver",
        "server.port": 80,
        "network.protocol.version": "1.1",
        "client.address": "testclient",
        "user_agent.original": "tests/1.0",
        "http.response.status_code": 200,
        "http.route": "/users/{id}",
    }
    assert span.instrumentation_scope is not None
    assert span.instrumentation_scope.name == "triolette"


def test_mounted_routes_keep_their_prefix(provider: TracerProvider, exporter: InMemorySpanExporter) -> None:
    client = TestClient(make_app(provider))
    client.get("/api/items/spoon")
    assert only_span(exporter).name == "GET /api/items/{name}"
    exporter.clear()
    client.get("/static/app.css")
    assert only_span(exporter).name == "GET /static"


def test_unmatched_route_keeps_the_method_name(provider: TracerProvider, exporter: InMemorySpanExporter) -> None:
    TestClient(make_app(provider)).get("/nowhere")
    span = only_span(exporter)
    assert span.name == "GET"
    assert span.attributes is not None
    assert "http.route" not in span.attributes
    assert span.attributes["http.response.status_code"] == 404


def test_server_errors_mark_the_span(provider: TracerProvider, exporter: InMemorySpanExporter) -> None:
    client = TestClient(make_app(provider))
    client.get("/down")
    span = only_span(exporter)
    assert span.status.status_code is StatusCode.ERROR
    assert span.attributes is not None
    assert span.attributes["error.type"] == "503"


def test_exceptions_are_recorded(provider: TracerProvider, exporter: InMemorySpanExporter) -> None:
    client = TestClient(make_app(provider), raise_server_exceptions=False)
    assert client.get("/fail").status_code == 500
    span = only_span(exporter)
    assert span.status.status_code is StatusCode.ERROR
    assert span.attributes is not None
    assert span.attributes["error.type"] in ("ValueError", "500")


@pytest.mark.parametrize("excluded", ["/users/.*,/health", ["/users/"], "  ,/users/"])
def test_excluded_urls(provider: TracerProvider, exporter: InMemorySpanExporter, excluded: Any) -> None:
    client = TestClient(make_app(provider, excluded_urls=excluded))
    client.get("/users/1")
    assert exporter.get_finished_spans() == ()
    client.get("/down")
    assert len(exporter.get_finished_spans()) == 1


def test_incoming_trace_context_is_the_parent(provider: TracerProvider, exporter: InMemorySpanExporter) -> None:
    traceparent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    TestClient(make_app(provider)).get("/users/1", headers={"traceparent": traceparent})
    span = only_span(exporter)
    assert span.parent is not None
    assert span.parent.span_id == 0xB7AD6B7169203331
    assert span.context is not None
    assert span.context.trace_id == 0x0AF7651916CD43DD8448EB211C80319C


def http_scope(method: str = "GET", **extra: Any) -> Scope:
    scope: Scope = {"type": "http", "method": method, "path": "/x", "headers": [], "query_string": b""}
    scope.update(extra)
    return scope


async def test_nested_middleware_records_one_span(provider: TracerProvider, exporter: InMemorySpanExporter) -> None:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await PlainTextResponse("ok")(scope, receive, send)

    nested = OpenTelemetryMiddleware(OpenTelemetryMiddleware(app, tracer_provider=provider), tracer_provider=provider)
    scope = http_scope(server=("example.com", 8080))
    await nested(scope, receive_nothing, Sink())
    span = only_span(exporter)
    assert span.attributes is not None
    assert span.attributes["server.address"] == "example.com"
    assert span.attributes["server.port"] == 8080
    assert "triolette.opentelemetry" not in scope


async def test_unusual_method_is_kept_as_the_original(provider: TracerProvider, exporter: InMemorySpanExporter) -> None:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await PlainTextResponse("ok")(scope, receive, send)

    scope = http_scope("get", headers=[(b"host", b"example.com")])
    await OpenTelemetryMiddleware(app, tracer_provider=provider)(scope, receive_nothing, Sink())
    span = only_span(exporter)
    assert span.attributes is not None
    assert span.attributes["http.request.method"] == "GET"
    assert span.attributes["http.request.method_original"] == "get"
    assert span.attributes["server.address"] == "example.com"
    assert "server.port" not in span.attributes


async def test_span_ends_when_the_request_is_cancelled(
    provider: TracerProvider, exporter: InMemorySpanExporter, autojump_clock: trio.abc.Clock
) -> None:
    started = trio.Event()

    async def slow(scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        started.set()
        await trio.sleep_forever()

    middleware = OpenTelemetryMiddleware(slow, tracer_provider=provider)
    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(middleware, http_scope(), receive_nothing, Sink())
            await started.wait()
            assert exporter.get_finished_spans() == ()
            nursery.cancel_scope.cancel(reason="client disconnected")
    span = only_span(exporter)
    # Cancellation is not a server error.
    assert span.status.status_code is StatusCode.UNSET
    assert span.attributes is not None
    assert "error.type" not in span.attributes
    assert span.end_time is not None


async def test_other_scopes_and_noop_provider_pass_through(exporter: InMemorySpanExporter) -> None:
    seen: list[str] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        seen.append(scope["type"])

    await OpenTelemetryMiddleware(app)({"type": "lifespan"}, receive_nothing, Sink())
    await OpenTelemetryMiddleware(app, tracer_provider=trace.NoOpTracerProvider())(
        http_scope(), receive_nothing, Sink()
    )
    assert seen == ["lifespan", "http"]


@pytest.mark.parametrize(
    ("root_path", "route", "name"),
    [
        ("", Route("/users/{id:int}", user), "GET /users/{id}"),
        ("/api/", Route("/items/{name}", user), "GET /api/items/{name}"),
        ("/static", Mount("/static", app=static_like), "GET /static"),
        ("", Mount("/", app=static_like), "GET /"),
    ],
)
async def test_span_is_named_after_the_matched_route(
    provider: TracerProvider, exporter: InMemorySpanExporter, root_path: str, route: Any, name: str
) -> None:
    async def routed(scope: Scope, receive: Receive, send: Send) -> None:
        # What the router does when it matches.
        scope["route"] = route
        scope["root_path"] = root_path
        await PlainTextResponse("ok")(scope, receive, send)

    await OpenTelemetryMiddleware(routed, tracer_provider=provider)(http_scope(), receive_nothing, Sink())
    span = only_span(exporter)
    assert span.name == name
    assert span.attributes is not None
    assert span.attributes["http.route"] == name.partition(" ")[2]


async def test_a_failing_app_is_recorded_as_an_error(provider: TracerProvider, exporter: InMemorySpanExporter) -> None:
    async def failing(scope: Scope, receive: Receive, send: Send) -> None:
        raise ValueError("boom")

    with pytest.raises(ValueError, match="boom"):
        await OpenTelemetryMiddleware(failing, tracer_provider=provider)(http_scope(), receive_nothing, Sink())
    span = only_span(exporter)
    assert span.status.status_code is StatusCode.ERROR
    assert span.status.description == "ValueError: boom"
    assert span.attributes is not None
    assert span.attributes["error.type"] == "ValueError"
    assert [event.name for event in span.events] == ["exception"]


def test_route_without_a_path_format_gives_no_route(provider: TracerProvider, exporter: InMemorySpanExporter) -> None:
    from triolette.middleware.opentelemetry import _route_template

    assert _route_template({"route": object()}) is None
    assert _route_template({"route": Route("/", user), "root_path": "/"}) == "/"


def test_missing_opentelemetry_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "opentelemetry", None)
    monkeypatch.delitem(sys.modules, "triolette.middleware.opentelemetry")
    with pytest.raises(ModuleNotFoundError, match=r"pip install triolette\[opentelemetry\]"):
        importlib.import_module("triolette.middleware.opentelemetry")


async def receive_nothing() -> Message:
    return {"type": "http.request", "body": b"", "more_body": False}


class Sink:
    def __init__(self) -> None:
        self.messages: list[Message] = []

    async def __call__(self, message: Message) -> None:
        self.messages.append(message)


def _ended_counts(reader: Any) -> dict[str, int]:
    counts: dict[str, int] = {}
    data = reader.get_metrics_data()
    for resource in data.resource_metrics if data is not None else ():
        for scope_metrics in resource.scope_metrics:
            for metric in scope_metrics.metrics:
                if metric.name == "triolette.requests.ended":
                    for point in metric.data.data_points:
                        counts[point.attributes["triolette.end_reason"]] = point.value
    return counts


def _meter(reader: Any) -> Any:
    from opentelemetry.sdk.metrics import MeterProvider

    return MeterProvider(metric_readers=[reader])


async def test_end_reason_counters_are_opentelemetry_metrics(
    provider: TracerProvider, autojump_clock: trio.abc.Clock
) -> None:
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader

    from triolette.inspector import Inspector
    from triolette.testclient import AsyncTestClient

    async def slow(request: Request) -> Response:
        await trio.sleep_forever()
        raise AssertionError("unreachable")  # pragma: no cover

    reader = InMemoryMetricReader()
    app = Triolette(
        debug=True,
        routes=[Route("/ok", user), Route("/slow", slow, timeout=2)],
        middleware=[Middleware(OpenTelemetryMiddleware, tracer_provider=provider, meter_provider=_meter(reader))],
    )
    Inspector(app)
    async with AsyncTestClient(app) as client:
        assert (await client.get("/ok")).status_code == 200
        assert (await client.get("/ok")).status_code == 200
        assert (await client.get("/slow")).status_code == 503
    counts = _ended_counts(reader)
    assert counts["completed"] == 2
    assert counts["deadline"] == 1
    assert counts["client disconnected"] == 0


def test_no_end_reason_metrics_without_an_inspector(provider: TracerProvider) -> None:
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader

    reader = InMemoryMetricReader()
    app = Triolette(
        routes=[Route("/ok", user)],
        middleware=[Middleware(OpenTelemetryMiddleware, tracer_provider=provider, meter_provider=_meter(reader))],
    )
    with TestClient(app) as client:
        assert client.get("/ok").status_code == 200
    assert _ended_counts(reader) == {}
