from __future__ import annotations

import pytest

from triolette.applications import Triolette
from triolette.middleware import Middleware
from triolette.middleware.httpsredirect import HTTPSRedirectMiddleware
from triolette.requests import Request
from triolette.responses import PlainTextResponse, Response
from triolette.routing import Route
from triolette.testclient import TestClient
from triolette.types import Message, Receive, Scope, Send


def homepage(request: Request) -> Response:
    return PlainTextResponse("OK")


app = Triolette(routes=[Route("/", homepage)], middleware=[Middleware(HTTPSRedirectMiddleware)])


def test_https_requests_pass() -> None:
    response = TestClient(app, base_url="https://testserver").get("/")
    assert response.status_code == 200
    assert response.text == "OK"


@pytest.mark.parametrize(
    ("base_url", "location"),
    [
        ("http://testserver", "https://testserver/?x=1"),
        ("http://testserver:80", "https://testserver/?x=1"),
        ("http://testserver:443", "https://testserver/?x=1"),
        ("http://testserver:123", "https://testserver:123/?x=1"),
        ("http://[::1]:8080", "https://[::1]:8080/?x=1"),
    ],
)
def test_http_is_redirected(base_url: str, location: str) -> None:
    response = TestClient(app, base_url=base_url, follow_redirects=False).get("/?x=1")
    assert response.status_code == 307
    assert response.headers["location"] == location


async def run(scope: Scope) -> list[Message]:
    sent: list[Message] = []

    async def receive() -> Message:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Message) -> None:
        sent.append(message)

    await HTTPSRedirectMiddleware(never_called)(scope, receive, send)
    return sent


async def never_called(scope: Scope, receive: Receive, send: Send) -> None:  # pragma: no cover
    raise AssertionError("the app must not run")


def scope_for(headers: list[tuple[bytes, bytes]], server: tuple[str, int | None] | None = None) -> Scope:
    return {
        "type": "http",
        "scheme": "http",
        "method": "GET",
        "path": "/a b",
        "raw_path": b"/a%20b",
        "root_path": "",
        "query_string": b"",
        "headers": headers,
        "server": server,
    }


async def test_malformed_host_is_a_400() -> None:
    sent = await run(scope_for([(b"host", b"evil.com/x")]))
    assert sent[0]["status"] == 400
    assert sent[1]["body"] == b"Invalid host header"


async def test_no_host_and_no_server_is_a_400() -> None:
    sent = await run(scope_for([]))
    assert sent[0]["status"] == 400


@pytest.mark.parametrize(
    ("server", "location"),
    [
        (("example.com", 80), b"https://example.com/a%20b"),
        (("10.0.0.1", 8080), b"https://10.0.0.1:8080/a%20b"),
        (("::1", 8443), b"https://[::1]:8443/a%20b"),
    ],
)
async def test_no_host_header_uses_the_server_address(server: tuple[str, int], location: bytes) -> None:
    sent = await run(scope_for([], server))
    assert sent[0]["status"] == 307
    assert dict(sent[0]["headers"])[b"location"] == location


async def test_websocket_is_redirected_to_wss() -> None:
    scope = scope_for([(b"host", b"example.com:8000")])
    scope.update(type="websocket", scheme="ws")
    sent = await run(scope)
    assert dict(sent[0]["headers"])[b"location"] == b"wss://example.com:8000/a%20b"


async def test_other_scopes_pass_through() -> None:
    seen: list[str] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        seen.append(scope["type"])

    await HTTPSRedirectMiddleware(app)({"type": "lifespan"}, never_called, never_called)  # type: ignore[arg-type]  # never called
    assert seen == ["lifespan"]


@pytest.mark.parametrize(
    ("host", "server", "location"),
    [
        (b"testserver:000080", ("testserver", 80), b"https://testserver/a%20b"),
        (b"TestServer:0443", None, b"https://testserver/a%20b"),
        (b"TestServer:8443", None, b"https://testserver:8443/a%20b"),
        (b"[:::]", ("::1", 80), b"https://[::1]/a%20b"),
        (b"[V1.foo]", ("example.com", 80), b"https://example.com/a%20b"),
        (b"testserver:65536", ("example.com", 8000), b"https://example.com:8000/a%20b"),
        (b"testserver:000000065535", None, b"https://testserver:65535/a%20b"),
        (b"testserver:" + b"1" * 6, ("Example.COM", 443), b"https://example.com/a%20b"),
    ],
)
async def test_https_redirect_uses_the_host_header_only_if_usable_else_the_server(
    host: bytes, server: tuple[str, int] | None, location: bytes
) -> None:
    sent = await run(scope_for([(b"host", host)], server))
    assert sent[0]["status"] == 307
    assert dict(sent[0]["headers"])[b"location"] == location


async def test_https_redirect_is_400_only_when_neither_host_nor_server_is_usable() -> None:
    sent = await run(scope_for([(b"host", b"testserver:99999")]))
    assert sent[0]["status"] == 400
    assert sent[1]["body"] == b"Invalid host header"
