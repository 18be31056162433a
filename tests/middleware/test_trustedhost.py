from __future__ import annotations

from typing import Any

import pytest

from triolette.applications import Triolette
from triolette.middleware import Middleware
from triolette.middleware.trustedhost import TrustedHostMiddleware
from triolette.requests import Request
from triolette.responses import PlainTextResponse, Response
from triolette.routing import Route
from triolette.testclient import TestClient
from triolette.types import Message, Receive, Scope, Send


def homepage(request: Request) -> Response:
    return PlainTextResponse("OK", status_code=200)


def make_client(base_url: str = "http://testserver", **options: Any) -> TestClient:
    app = Triolette(routes=[Route("/", homepage)], middleware=[Middleware(TrustedHostMiddleware, **options)])
    return TestClient(app, base_url=base_url, follow_redirects=False)


def test_allowed_and_refused_hosts() -> None:
    allowed = ["testserver", "*.testserver"]
    assert make_client(allowed_hosts=allowed).get("/").status_code == 200
    assert make_client("http://sub.testserver", allowed_hosts=allowed).get("/").status_code == 200
    assert make_client("http://TestServer:8000", allowed_hosts=allowed).get("/").status_code == 200
    response = make_client("http://invalidhost", allowed_hosts=allowed).get("/")
    assert response.status_code == 400
    assert response.text == "Invalid host header"


def test_wildcard_does_not_match_the_bare_domain_or_lookalikes() -> None:
    client_options = {"allowed_hosts": ["*.example.com"]}
    assert make_client("http://example.com", **client_options).get("/").status_code == 400
    assert make_client("http://evilexample.com", **client_options).get("/").status_code == 400
    assert make_client("http://a.b.example.com", **client_options).get("/").status_code == 200


def test_default_allows_any_host() -> None:
    assert make_client("http://anything.example").get("/").status_code == 200
    assert make_client(allowed_hosts=["*"]).get("/", headers={"host": "bad host!"}).status_code == 200


def test_www_redirect() -> None:
    response = make_client("https://example.com:8443", allowed_hosts=["www.example.com"]).get("/path?q=1")
    assert response.status_code == 307
    assert response.headers["location"] == "https://www.example.com:8443/path?q=1"


def test_www_redirect_can_be_turned_off() -> None:
    client = make_client("https://example.com", allowed_hosts=["www.example.com"], www_redirect=False)
    assert client.get("/").status_code == 400


@pytest.mark.parametrize(
    "host",
    [
        "",
        "exa mple.com",
        "example.com:",
        "example.com:port",
        "example.com/evil",
        "user@example.com",
        "[::1",
        "[not-an-ip]",
        "[::g]",
        "example.com\r\nx: y",
    ],
)
async def test_malformed_host_header_is_a_400_not_a_500(host: str) -> None:
    # Regression: a Host header that is not host[:port] used to raise, and so answer 500.
    sent: list[Message] = []

    async def send(message: Message) -> None:
        sent.append(message)

    async def receive() -> Message:
        return {"type": "http.request", "body": b"", "more_body": False}

    middleware = TrustedHostMiddleware(never_called, allowed_hosts=["example.com"])
    scope = {
        "type": "http",
        "method": "GET",
        "path": "/",
        "query_string": b"",
        "headers": [(b"host", host.encode("latin-1"))],
    }
    await middleware(scope, receive, send)
    assert sent[0]["status"] == 400
    assert sent[1]["body"] == b"Invalid host header"


async def never_called(scope: Scope, receive: Receive, send: Send) -> None:  # pragma: no cover
    raise AssertionError("the app must not run")


async def test_missing_host_header_is_a_400() -> None:
    sent: list[Message] = []

    async def send(message: Message) -> None:
        sent.append(message)

    async def receive() -> Message:
        return {"type": "http.request", "body": b"", "more_body": False}

    middleware = TrustedHostMiddleware(never_called, allowed_hosts=["example.com"])
    await middleware({"type": "http", "method": "GET", "path": "/", "headers": []}, receive, send)
    assert sent[0]["status"] == 400


def test_ipv6_hosts() -> None:
    client = make_client("http://[::1]:8000", allowed_hosts=["[::1]"])
    assert client.get("/").status_code == 200


async def test_lifespan_passes_through() -> None:
    seen: list[str] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        seen.append(scope["type"])

    await TrustedHostMiddleware(app, allowed_hosts=["example.com"])({"type": "lifespan"}, receive_none, send_none)
    assert seen == ["lifespan"]


async def receive_none() -> Message:  # pragma: no cover
    raise AssertionError


async def send_none(message: Message) -> None:  # pragma: no cover
    raise AssertionError


@pytest.mark.parametrize("pattern", ["example.*", "*example.com", "a.*.example.com", "**.example.com"])
def test_bad_wildcards_are_refused(pattern: str) -> None:
    with pytest.raises(AssertionError, match=r"Domain wildcard patterns must be like '\*\.example\.com'"):
        TrustedHostMiddleware(homepage, allowed_hosts=[pattern])  # type: ignore[arg-type]  # the app is never called


def test_a_string_for_allowed_hosts_is_refused() -> None:
    with pytest.raises(TypeError, match=r"must be a list of host patterns, got the string 'example.com'"):
        TrustedHostMiddleware(homepage, allowed_hosts="example.com")  # type: ignore[arg-type]  # a str is the point; the app is never called


async def run_trusted(host: str, allowed: list[str]) -> list[Message]:
    sent: list[Message] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await PlainTextResponse("OK")(scope, receive, send)

    async def receive() -> Message:  # pragma: no cover - the responses here never read
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Message) -> None:
        sent.append(message)

    scope = {"type": "http", "method": "GET", "path": "/", "headers": [(b"host", host.encode("latin-1"))]}
    await TrustedHostMiddleware(app, allowed_hosts=allowed)(scope, receive, send)
    return sent


@pytest.mark.parametrize("host", ["api_service:000080", "api_service:65536", "api_service:100000", "API_Service:1"])
async def test_trusted_host_checks_the_host_part_only_whatever_the_port(host: str) -> None:
    sent = await run_trusted(host, ["api_service"])
    assert sent[0]["status"] == 200


async def test_trusted_host_rejects_an_uppercase_ipvfuture_literal() -> None:
    sent = await run_trusted("[V1.foo]", ["*.foo", "[v1.foo]", "[V1.foo]"])
    assert sent[0]["status"] == 400
    assert sent[1]["body"] == b"Invalid host header"
