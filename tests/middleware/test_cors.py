from __future__ import annotations

from typing import Any

import pytest

from triolette.applications import Triolette
from triolette.datastructures import Headers, MutableHeaders
from triolette.middleware import Middleware
from triolette.middleware.cors import CORSMiddleware
from triolette.requests import Request
from triolette.responses import PlainTextResponse, Response
from triolette.routing import Route
from triolette.testclient import TestClient
from triolette.types import Message, Receive, Scope, Send


def homepage(request: Request) -> Response:
    return PlainTextResponse("Homepage", headers={"vary": "Accept-Encoding"})


def client_for(**options: Any) -> TestClient:
    app = Triolette(routes=[Route("/", homepage)], middleware=[Middleware(CORSMiddleware, **options)])
    return TestClient(app)


PREFLIGHT = {
    "Origin": "https://example.org",
    "Access-Control-Request-Method": "GET",
    "Access-Control-Request-Headers": "X-Example",
}


def test_allow_all_preflight() -> None:
    client = client_for(
        allow_origins=["*"], allow_methods=["*"], allow_headers=["*"], expose_headers=["X-Status"], max_age=42
    )
    response = client.options("/", headers=PREFLIGHT)
    assert response.status_code == 200
    assert response.text == "OK"
    assert response.headers["access-control-allow-origin"] == "*"
    assert response.headers["access-control-allow-headers"] == "X-Example"
    assert response.headers["access-control-max-age"] == "42"
    assert response.headers["access-control-allow-methods"] == "DELETE, GET, HEAD, OPTIONS, PATCH, POST, PUT, QUERY"
    assert "access-control-allow-credentials" not in response.headers
    assert response.headers["vary"] == (
        "Origin, Access-Control-Request-Method, Access-Control-Request-Headers, Access-Control-Request-Private-Network"
    )


def test_allow_all_simple_request() -> None:
    client = client_for(allow_origins=["*"], expose_headers=["X-Status", "X-Other"])
    response = client.get("/", headers={"Origin": "https://example.org"})
    assert response.status_code == 200
    assert response.text == "Homepage"
    assert response.headers["access-control-allow-origin"] == "*"
    assert response.headers["access-control-expose-headers"] == "X-Status, X-Other"
    assert response.headers["vary"] == "Accept-Encoding, Origin"


def test_no_origin_header_still_varies_on_origin() -> None:
    response = client_for(allow_origins=["*"]).get("/")
    assert "access-control-allow-origin" not in response.headers
    assert response.headers["vary"] == "Accept-Encoding, Origin"


def test_credentials_answer_with_the_explicit_origin_never_a_star() -> None:
    client = client_for(allow_origins=["*"], allow_headers=["*"], allow_credentials=True)

    response = client.options("/", headers=PREFLIGHT)
    assert response.status_code == 200
    assert response.headers["access-control-allow-origin"] == "https://example.org"
    assert response.headers["access-control-allow-credentials"] == "true"

    response = client.get("/", headers={"Origin": "https://example.org", "Cookie": "a=b"})
    assert response.headers["access-control-allow-origin"] == "https://example.org"
    assert response.headers["access-control-allow-credentials"] == "true"
    assert response.headers["vary"] == "Accept-Encoding, Origin"


def test_specific_origins() -> None:
    client = client_for(allow_origins=["https://example.org"], allow_headers=["X-Example", "Content-Type"])

    response = client.options("/", headers=PREFLIGHT)
    assert response.status_code == 200
    assert response.headers["access-control-allow-origin"] == "https://example.org"
    assert response.headers["access-control-allow-headers"] == (
        "Accept, Accept-Language, Content-Language, Content-Type, X-Example"
    )

    response = client.get("/", headers={"Origin": "https://example.org"})
    assert response.headers["access-control-allow-origin"] == "https://example.org"
    assert response.headers["vary"] == "Accept-Encoding, Origin"


@pytest.mark.parametrize(
    ("headers", "text"),
    [
        ({"Origin": "https://evil.org", "Access-Control-Request-Method": "GET"}, "Disallowed CORS origin"),
        ({"Origin": "https://example.org", "Access-Control-Request-Method": "POST"}, "Disallowed CORS method"),
        (
            {
                "Origin": "https://example.org",
                "Access-Control-Request-Method": "GET",
                "Access-Control-Request-Headers": "X-Nope",
            },
            "Disallowed CORS headers",
        ),
        (
            {
                "Origin": "https://evil.org",
                "Access-Control-Request-Method": "DELETE",
                "Access-Control-Request-Headers": "X-Nope",
            },
            "Disallowed CORS origin, method, headers",
        ),
        (
            {
                "Origin": "https://example.org",
                "Access-Control-Request-Method": "GET",
                "Access-Control-Request-Private-Network": "true",
            },
            "Disallowed CORS private-network",
        ),
    ],
)
def test_disallowed_preflight(headers: dict[str, str], text: str) -> None:
    response = client_for(allow_origins=["https://example.org"]).options("/", headers=headers)
    assert response.status_code == 400
    assert response.text == text
    assert "access-control-allow-origin" not in response.headers or "origin" not in text


def test_disallowed_origin_on_simple_request_gets_no_allow_origin() -> None:
    response = client_for(allow_origins=["https://example.org"]).get("/", headers={"Origin": "https://evil.org"})
    assert response.status_code == 200
    assert "access-control-allow-origin" not in response.headers
    assert response.headers["vary"] == "Accept-Encoding, Origin"


def test_safelisted_headers_are_allowed_without_configuration() -> None:
    headers = {**PREFLIGHT, "Access-Control-Request-Headers": "Accept, content-type"}
    response = client_for(allow_origins=["https://example.org"]).options("/", headers=headers)
    assert response.status_code == 200


def test_private_network_access() -> None:
    client = client_for(allow_origins=["https://example.org"], allow_private_network=True)
    headers = {**PREFLIGHT, "Access-Control-Request-Private-Network": "true"}
    del headers["Access-Control-Request-Headers"]
    response = client.options("/", headers=headers)
    assert response.status_code == 200
    assert response.headers["access-control-allow-private-network"] == "true"


@pytest.mark.parametrize(
    ("origin", "allowed"),
    [
        ("https://api.example.org", True),
        ("https://example.org", False),
        # fullmatch: a suffix after a matching prefix must not pass
        ("https://api.example.org.evil.com", False),
        ("https://api.example.org/", False),
        ("evil https://api.example.org", False),
    ],
)
def test_origin_regex_must_match_in_full(origin: str, allowed: bool) -> None:
    client = client_for(allow_origin_regex=r"https://[a-z0-9-]+\.example\.org")
    response = client.get("/", headers={"Origin": origin})
    assert ("access-control-allow-origin" in response.headers) is allowed
    preflight = client.options("/", headers={"Origin": origin, "Access-Control-Request-Method": "GET"})
    assert preflight.status_code == (200 if allowed else 400)
    if allowed:
        assert response.headers["access-control-allow-origin"] == origin
        assert preflight.headers["access-control-allow-origin"] == origin


def test_options_without_request_method_is_not_a_preflight() -> None:
    response = client_for(allow_origins=["*"]).options("/", headers={"Origin": "https://example.org"})
    assert response.status_code == 405
    assert response.headers["access-control-allow-origin"] == "*"


def test_app_set_allow_origin_is_replaced_only_when_the_middleware_sets_one() -> None:
    def custom(request: Request) -> Response:
        return PlainTextResponse("x", headers={"Access-Control-Allow-Origin": "https://app.example"})

    app = Triolette(
        routes=[Route("/", custom)],
        middleware=[Middleware(CORSMiddleware, allow_origins=["https://example.org"])],
    )
    client = TestClient(app)
    allowed = client.get("/", headers={"Origin": "https://example.org"})
    assert allowed.headers.get_list("access-control-allow-origin") == ["https://example.org"]
    refused = client.get("/", headers={"Origin": "https://evil.org"})
    assert refused.headers.get_list("access-control-allow-origin") == ["https://app.example"]


def test_is_allowed_origin() -> None:
    middleware = CORSMiddleware(homepage_app, allow_origins=["https://a.example"], allow_origin_regex="https://b.*")
    assert middleware.is_allowed_origin("https://a.example")
    assert middleware.is_allowed_origin("https://b.example")
    assert not middleware.is_allowed_origin("https://c.example")
    assert CORSMiddleware(homepage_app, allow_origins=["*"]).is_allowed_origin("anything")


async def homepage_app(scope: Scope, receive: Receive, send: Send) -> None:
    await PlainTextResponse("Homepage")(scope, receive, send)


def http_scope(method: str = "GET", headers: list[tuple[bytes, bytes]] | None = None) -> Scope:
    return {
        "type": "http",
        "method": method,
        "path": "/",
        "raw_path": b"/",
        "root_path": "",
        "scheme": "http",
        "query_string": b"",
        "headers": headers or [],
        "server": ("testserver", 80),
        "client": ("127.0.0.1", 1234),
        "http_version": "1.1",
    }


async def run(app: Any, scope: Scope) -> list[Message]:
    sent: list[Message] = []

    async def receive() -> Message:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Message) -> None:
        sent.append(message)

    await app(scope, receive, send)
    return sent


async def test_non_http_scopes_pass_through() -> None:
    seen: list[str] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        seen.append(scope["type"])

    await CORSMiddleware(app, allow_origins=["*"])({"type": "websocket", "headers": []}, _never, _never)
    assert seen == ["websocket"]


async def _never(*args: Any) -> Any:  # pragma: no cover - must not be called
    raise AssertionError("not expected")


async def test_headers_given_as_tuple_and_mixed_case_vary_are_merged() -> None:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": ((b"Vary", b"Cookie"),)})
        await send({"type": "http.response.body", "body": b"ok"})

    middleware = CORSMiddleware(app, allow_origins=["https://example.org"])
    sent = await run(middleware, http_scope(headers=[(b"origin", b"https://example.org")]))
    assert sent[0]["headers"] == [
        (b"access-control-allow-origin", b"https://example.org"),
        (b"vary", b"Cookie, Origin"),
    ]
    assert sent[1] == {"type": "http.response.body", "body": b"ok"}


async def test_first_origin_header_counts() -> None:
    middleware = CORSMiddleware(homepage_app, allow_origins=["https://a.example"])
    headers = [(b"origin", b"https://a.example"), (b"origin", b"https://b.example")]
    sent = await run(middleware, http_scope(headers=headers))
    assert Headers(raw=sent[0]["headers"])["access-control-allow-origin"] == "https://a.example"


async def test_public_simple_response_and_send() -> None:
    middleware = CORSMiddleware(homepage_app, allow_origins=["https://example.org"], allow_credentials=True)
    request_headers = Headers({"origin": "https://example.org"})
    sent: list[Message] = []

    async def send(message: Message) -> None:
        sent.append(message)

    await middleware.simple_response(http_scope(), _receive_empty, send, request_headers=request_headers)
    headers = Headers(raw=sent[0]["headers"])
    assert headers["access-control-allow-origin"] == "https://example.org"
    assert headers["access-control-allow-credentials"] == "true"

    sent.clear()
    await middleware.simple_response(http_scope(), _receive_empty, send, request_headers=Headers({}))
    assert "access-control-allow-origin" not in Headers(raw=sent[0]["headers"])

    sent.clear()
    await middleware.send({"type": "http.response.start", "status": 204, "headers": []}, send, request_headers)
    await middleware.send({"type": "http.response.body", "body": b""}, send, Headers({}))
    assert Headers(raw=sent[0]["headers"])["vary"] == "Origin"
    assert sent[1] == {"type": "http.response.body", "body": b""}


async def _receive_empty() -> Message:
    return {"type": "http.request", "body": b"", "more_body": False}


def test_allow_explicit_origin() -> None:
    headers = MutableHeaders({"vary": "Cookie"})
    CORSMiddleware.allow_explicit_origin(headers, "https://example.org")
    assert headers["access-control-allow-origin"] == "https://example.org"
    assert headers["vary"] == "Cookie, Origin"


def test_preflight_response_directly() -> None:
    middleware = CORSMiddleware(homepage_app, allow_origins=["*"], allow_methods=["GET", "POST"])
    response = middleware.preflight_response(
        Headers({"origin": "https://x.example", "access-control-request-method": "POST"})
    )
    assert response.status_code == 200
    assert response.headers["access-control-allow-origin"] == "*"
    assert response.headers["access-control-allow-methods"] == "GET, POST"
