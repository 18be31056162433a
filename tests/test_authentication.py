from __future__ import annotations

import base64
import binascii
from typing import Any

import pytest

from triolette.applications import Triolette
from triolette.authentication import (
    AuthCredentials,
    AuthenticationBackend,
    AuthenticationError,
    BaseUser,
    SimpleUser,
    UnauthenticatedUser,
    has_required_scope,
    requires,
)
from triolette.endpoints import HTTPEndpoint
from triolette.middleware import Middleware
from triolette.middleware.authentication import AuthenticationMiddleware
from triolette.requests import HTTPConnection, Request
from triolette.responses import JSONResponse, PlainTextResponse, Response
from triolette.routing import Route, WebSocketRoute
from triolette.testclient import TestClient
from triolette.types import Message, Receive, Scope, Send
from triolette.websockets import WebSocket, WebSocketDisconnect


class BasicAuth(AuthenticationBackend):
    async def authenticate(self, conn: HTTPConnection) -> tuple[AuthCredentials, BaseUser] | None:
        if "authorization" not in conn.headers:
            return None
        scheme, _, credentials = conn.headers["authorization"].partition(" ")
        if scheme.lower() != "basic":
            return None
        try:
            username, _, _ = base64.b64decode(credentials).decode("ascii").partition(":")
        except (ValueError, UnicodeDecodeError, binascii.Error):
            raise AuthenticationError("Invalid basic auth credentials") from None
        return AuthCredentials(["authenticated"]), SimpleUser(username)


def who(request: Request) -> dict[str, Any]:
    return {"authenticated": request.user.is_authenticated, "user": request.user.display_name}


def homepage(request: Request) -> Response:
    return JSONResponse(who(request))


@requires("authenticated")
async def dashboard(request: Request) -> Response:
    return JSONResponse(who(request))


@requires(["authenticated", "admin"])
async def admin(request: Request) -> Response:  # pragma: no cover - never allowed in these tests
    return JSONResponse(who(request))


@requires("authenticated")
def dashboard_sync(request: Request) -> Response:
    return JSONResponse(who(request))


@requires("authenticated", redirect="homepage")
async def redirecting(request: Request) -> Response:
    return JSONResponse(who(request))


@requires("authenticated", redirect="homepage")
def redirecting_sync(request: Request) -> Response:
    return JSONResponse(who(request))


@requires("authenticated", status_code=404)
async def hidden(request: Request) -> Response:
    return JSONResponse(who(request))


class Dashboard(HTTPEndpoint):
    @requires("authenticated")
    async def get(self, request: Request) -> Response:
        return JSONResponse(who(request))

    @requires("authenticated")
    def post(self, request: Request) -> Response:
        return JSONResponse(who(request))


@requires("authenticated")
async def websocket_endpoint(websocket: WebSocket) -> None:
    await websocket.accept()
    await websocket.send_json({"user": websocket.user.display_name})
    await websocket.close()


app = Triolette(
    routes=[
        Route("/", homepage, name="homepage"),
        Route("/dashboard", dashboard),
        Route("/admin", admin),
        Route("/dashboard/sync", dashboard_sync),
        Route("/redirecting", redirecting),
        Route("/redirecting/sync", redirecting_sync),
        Route("/hidden", hidden),
        Route("/endpoint", Dashboard),
        WebSocketRoute("/ws", websocket_endpoint),
    ],
    middleware=[Middleware(AuthenticationMiddleware, backend=BasicAuth())],
)
client = TestClient(app, follow_redirects=False)
ALICE = ("alice", "password")


def test_unauthenticated_user() -> None:
    assert client.get("/").json() == {"authenticated": False, "user": ""}
    assert client.get("/", auth=ALICE).json() == {"authenticated": True, "user": "alice"}


@pytest.mark.parametrize("path", ["/dashboard", "/dashboard/sync", "/endpoint"])
def test_requires_scope(path: str) -> None:
    response = client.get(path)
    assert response.status_code == 403
    assert client.get(path, auth=ALICE).json() == {"authenticated": True, "user": "alice"}


def test_requires_every_scope() -> None:
    assert client.get("/admin", auth=ALICE).status_code == 403


def test_requires_on_a_sync_method() -> None:
    assert client.post("/endpoint").status_code == 403
    assert client.post("/endpoint", auth=ALICE).json()["user"] == "alice"


def test_custom_status_code() -> None:
    assert client.get("/hidden").status_code == 404
    assert client.get("/hidden", auth=ALICE).status_code == 200


@pytest.mark.parametrize("path", ["/redirecting", "/redirecting/sync"])
def test_redirect_keeps_the_original_url_in_next(path: str) -> None:
    response = client.get(path + "?page=2")
    assert response.status_code == 303
    assert (
        response.headers["location"]
        == "http://testserver/?next=http%3A%2F%2Ftestserver" + path.replace("/", "%2F") + "%3Fpage%3D2"
    )
    assert client.get(path, auth=ALICE).status_code == 200


def test_websocket_requires_scope() -> None:
    with client.websocket_connect("/ws", auth=ALICE) as websocket:
        assert websocket.receive_json() == {"user": "alice"}
    with pytest.raises(WebSocketDisconnect), client.websocket_connect("/ws") as websocket:
        websocket.receive_json()


def test_authentication_error_answers_400_or_closes_the_websocket() -> None:
    bad = {"Authorization": "Basic //4="}
    response = client.get("/", headers=bad)
    assert response.status_code == 400
    assert response.text == "Invalid basic auth credentials"
    with pytest.raises(WebSocketDisconnect) as info, client.websocket_connect("/ws", headers=bad):
        pass  # pragma: no cover
    assert info.value.code == 1000


def test_custom_on_error() -> None:
    def on_error(conn: HTTPConnection, exc: AuthenticationError) -> Response:
        return JSONResponse({"error": str(exc)}, status_code=401)

    custom = Triolette(
        routes=[Route("/", homepage)],
        middleware=[Middleware(AuthenticationMiddleware, backend=BasicAuth(), on_error=on_error)],
    )
    response = TestClient(custom).get("/", headers={"Authorization": "Basic //4="})
    assert response.status_code == 401
    assert response.json() == {"error": "Invalid basic auth credentials"}


async def test_lifespan_passes_through() -> None:
    seen: list[str] = []

    async def inner(scope: Scope, receive: Receive, send: Send) -> None:
        seen.append(scope["type"])

    async def never(*args: Any) -> Any:  # pragma: no cover
        raise AssertionError

    await AuthenticationMiddleware(inner, backend=BasicAuth())({"type": "lifespan"}, never, never)
    assert seen == ["lifespan"]


def test_requires_needs_a_request_or_websocket_parameter() -> None:
    with pytest.raises(TypeError, match=r'^No "request" or "websocket" argument on function ".*endpoint"'):

        @requires("authenticated")
        async def endpoint(conn: Request) -> Response:  # pragma: no cover
            return PlainTextResponse("")


async def test_requires_checks_the_argument_type() -> None:
    @requires("authenticated")
    async def endpoint(request: Request) -> Response:  # pragma: no cover
        return PlainTextResponse("")

    @requires("authenticated")
    def sync_endpoint(request: Request) -> Response:  # pragma: no cover
        return PlainTextResponse("")

    @requires("authenticated")
    async def ws_endpoint(websocket: WebSocket) -> None:  # pragma: no cover
        pass

    with pytest.raises(TypeError, match=r"called with request='nope'; @requires needs its 'request' argument"):
        await endpoint("nope")  # type: ignore[arg-type]  # the wrong argument is the point
    with pytest.raises(TypeError, match=r"called with request=None"):
        sync_endpoint()  # type: ignore[call-arg]  # the missing argument is the point
    with pytest.raises(TypeError, match=r"'websocket' argument to be a WebSocket"):
        await ws_endpoint(websocket=1)  # type: ignore[arg-type]  # the wrong argument is the point


async def test_requires_passes_keyword_arguments() -> None:
    @requires("x")
    async def endpoint(request: Request) -> str:
        return "ran"

    scope = {"type": "http", "method": "GET", "path": "/", "headers": [], "auth": AuthCredentials(["x"])}
    assert await endpoint(request=Request(scope)) == "ran"


def test_has_required_scope() -> None:
    conn = HTTPConnection({"type": "http", "headers": [], "auth": AuthCredentials(["a", "b"])})
    assert has_required_scope(conn, ["a"])
    assert has_required_scope(conn, ["a", "b"])
    assert has_required_scope(conn, [])
    assert not has_required_scope(conn, ["a", "c"])


def test_users_and_credentials() -> None:
    assert AuthCredentials().scopes == []
    assert AuthCredentials(("a",)).scopes == ["a"]
    user = SimpleUser("bob")
    assert (user.is_authenticated, user.display_name, user.identity) == (True, "bob", "bob")
    anonymous = UnauthenticatedUser()
    assert (anonymous.is_authenticated, anonymous.display_name, anonymous.identity) == (False, "", "")


async def test_default_on_error() -> None:
    response = AuthenticationMiddleware.default_on_error(
        HTTPConnection({"type": "http", "headers": []}), AuthenticationError("nope")
    )
    sent: list[Message] = []

    async def send(message: Message) -> None:
        sent.append(message)

    async def receive() -> Message:  # pragma: no cover
        raise AssertionError

    await response({"type": "http"}, receive, send)
    assert sent[0]["status"] == 400
    assert sent[1]["body"] == b"nope"
