"""Routing: paths and their parameters, mounts and hosts, 404/405, slash redirects, url_path_for."""

from __future__ import annotations

import functools
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
import trio

from triolette._utils import ConfigurationError
from triolette.applications import Triolette
from triolette.convertors import Convertor, IntegerConvertor, StringConvertor
from triolette.datastructures import URLPath
from triolette.endpoints import HTTPEndpoint
from triolette.exceptions import TrioletteDeprecationWarning
from triolette.middleware import Middleware
from triolette.requests import Request
from triolette.responses import JSONResponse, PlainTextResponse, Response
from triolette.routing import (
    BaseRoute,
    Host,
    Match,
    Mount,
    NoMatchFound,
    Route,
    Router,
    WebSocketRoute,
    compile_path,
    get_name,
    replace_params,
    request_response,
    websocket_session,
)
from triolette.testclient import TestClient
from triolette.types import ASGIApp, Message, Receive, Scope, Send
from triolette.websockets import WebSocket, WebSocketDisconnect


def homepage(request: Request) -> Response:
    return PlainTextResponse("home")


def users(request: Request) -> Response:
    return PlainTextResponse("users")


def user(request: Request) -> Response:
    return JSONResponse({"id": request.path_params["id"], "type": type(request.path_params["id"]).__name__})


async def async_user_me(request: Request) -> Response:
    return PlainTextResponse("me")


async def ws_echo(websocket: WebSocket) -> None:
    await websocket.accept()
    await websocket.send_json({"path": websocket.url.path, "params": websocket.path_params})
    await websocket.close()


def echo_scope(request: Request) -> Response:
    return JSONResponse(
        {
            "path": request.url.path,
            "root_path": request.scope.get("root_path", ""),
            "params": {key: str(value) for key, value in request.path_params.items()},
        }
    )


class Endpoint(HTTPEndpoint):
    async def get(self, request: Request) -> Response:
        return PlainTextResponse("endpoint get")

    async def post(self, request: Request) -> Response:
        return PlainTextResponse("endpoint post")


app_router = Router(
    [
        Route("/", homepage),
        Route("/users", users, methods=["GET", "POST"]),
        Route("/users/me", async_user_me),
        Route("/users/{id:int}", user, name="user"),
        Route("/items/{id:uuid}", user, name="item"),
        Route("/files/{rest:path}", echo_scope, name="files"),
        Route("/price/{id:float}", user, name="price"),
        Route("/endpoint", Endpoint),
        Mount(
            "/sub",
            routes=[Route("/", homepage, name="sub-home"), Route("/{name}", echo_scope, name="named")],
            name="sub",
        ),
        WebSocketRoute("/ws/{room}", ws_echo, name="ws"),
    ]
)


@pytest.fixture
def client() -> TestClient:
    return TestClient(app_router)


# --------------------------------------------------------------------------- compile_path and friends


@pytest.mark.parametrize(
    ("path", "regex", "path_format", "params"),
    [
        ("/", "^/$", "/", {}),
        ("/users/{id:int}", "^/users/(?P<id>[0-9]+)$", "/users/{id}", {"id": IntegerConvertor}),
        (
            "/a/{x}/b.{ext}",
            "^/a/(?P<x>[^/]+)/b\\.(?P<ext>[^/]+)$",
            "/a/{x}/b.{ext}",
            {"x": StringConvertor, "ext": StringConvertor},
        ),
        ("{sub}.example.org", "^(?P<sub>[^/]+)\\.example\\.org$", "{sub}.example.org", {"sub": StringConvertor}),
        ("example.org:8000", "^example\\.org$", "example.org:8000", {}),
        ("[::1]", "^\\[::1\\]$", "[::1]", {}),
    ],
)
def test_compile_path(path: str, regex: str, path_format: str, params: dict[str, type]) -> None:
    compiled, fmt, convertors = compile_path(path)
    assert compiled.pattern == regex
    assert fmt == path_format
    assert {name: type(convertor) for name, convertor in convertors.items()} == params


def test_compile_path_errors() -> None:
    with pytest.raises(ConfigurationError, match="Unknown path convertor 'nope'"):
        compile_path("/{x:nope}")
    with pytest.raises(ValueError, match=r"Duplicated param name id at path /\{id\}/\{id\}"):
        compile_path("/{id}/{id}")
    with pytest.raises(ValueError, match=r"Duplicated param names a, b at path /\{a\}/\{b\}/\{a\}/\{b\}"):
        compile_path("/{a}/{b}/{a}/{b}")


def test_replace_params_fills_and_returns_the_rest() -> None:
    _, _, convertors = compile_path("/{a}/{b:int}")
    assert replace_params("/{a}/{b}", convertors, {"a": "x", "b": 2, "c": "3"}) == ("/x/2", {"c": "3"})  # type: ignore[dict-item]  # an int for an int convertor


class CallableObject:
    def __call__(self, request: Request) -> Response:  # pragma: no cover - only named
        return PlainTextResponse("")

    def method(self, request: Request) -> Response:  # pragma: no cover - only named
        return PlainTextResponse("")


def test_get_name() -> None:
    assert get_name(homepage) == "homepage"
    assert get_name(Endpoint) == "Endpoint"
    assert get_name(CallableObject()) == "CallableObject"
    assert get_name(CallableObject().method) == "method"
    assert get_name(functools.partial(homepage)) == "partial"


def test_no_match_found_message() -> None:
    assert str(NoMatchFound("user", {"id": 1, "x": 2})) == 'No route exists for name "user" and params "id, x".'


def test_base_route_is_abstract() -> None:
    route = BaseRoute()
    with pytest.raises(NotImplementedError):
        route.matches({})
    with pytest.raises(NotImplementedError):
        route.url_path_for("x")


# --------------------------------------------------------------------------- Route


def test_routes_and_methods(client: TestClient) -> None:
    assert client.get("/").text == "home"
    assert client.post("/users").text == "users"
    assert client.get("/users/me").text == "me"  # declared before the parameter route
    assert client.get("/endpoint").text == "endpoint get"
    assert client.post("/endpoint").text == "endpoint post"
    head = client.head("/")
    assert head.status_code == 200
    assert head.content == b""
    assert head.headers["content-length"] == "4"


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("/users/42", {"id": 42, "type": "int"}),
        ("/items/a8098c1a-f86e-11da-bd1a-00112444be1e", {"id": "a8098c1a-f86e-11da-bd1a-00112444be1e", "type": "UUID"}),
        ("/price/9.5", {"id": 9.5, "type": "float"}),
    ],
)
def test_convertors_type_the_params(client: TestClient, path: str, expected: dict[str, Any]) -> None:
    # UUID is not JSON: the endpoint shows it through JSONResponse only when stringified.
    if expected["type"] == "UUID":

        def show(request: Request) -> Response:
            value = request.path_params["id"]
            return JSONResponse({"id": str(value), "type": type(value).__name__})

        client = TestClient(Router([Route("/items/{id:uuid}", show)]))
    assert client.get(path).json() == expected


def test_path_convertor_takes_the_rest(client: TestClient) -> None:
    assert client.get("/files/a/b/c.txt").json()["params"] == {"rest": "a/b/c.txt"}


def test_not_found_and_method_not_allowed_on_a_bare_router(client: TestClient) -> None:
    response = client.get("/nowhere")
    assert response.status_code == 404
    assert response.text == "Not Found"
    response = client.delete("/users")
    assert response.status_code == 405
    assert response.text == "Method Not Allowed"
    assert response.headers["allow"] == "GET, HEAD, POST"
    assert client.get("/users/abc").status_code == 404  # does not convert: no match


def test_not_found_and_method_not_allowed_inside_an_app() -> None:
    client = TestClient(Triolette(routes=[Route("/", homepage)]))
    assert (client.get("/x").status_code, client.get("/x").text) == (404, "Not Found")
    response = client.post("/")
    assert (response.status_code, response.text, response.headers["allow"]) == (405, "Method Not Allowed", "GET, HEAD")


def test_full_match_wins_over_an_earlier_partial_match() -> None:
    def post_only(request: Request) -> Response:  # pragma: no cover - never reached
        return PlainTextResponse("post")

    def get_too(request: Request) -> Response:
        return PlainTextResponse("get")

    client = TestClient(Router([Route("/x", post_only, methods=["POST"]), Route("/x", get_too)]))
    assert client.get("/x").text == "get"


def test_route_rules() -> None:
    with pytest.raises(ConfigurationError, match="Routed paths must start with '/'"):
        Route("users", homepage)
    with pytest.raises(ConfigurationError, match="Routed paths must start with '/'"):
        WebSocketRoute("ws", ws_echo)
    with pytest.raises(ValueError, match="timeout must be a positive number of seconds or None, got -1"):
        Route("/", homepage, timeout=-1)


def test_route_equality_and_repr() -> None:
    route = Route("/", homepage, methods=["post"])
    assert route == Route("/", homepage, methods=["POST"])
    assert route != Route("/", homepage)
    assert route != "/"
    assert repr(route) == "Route(path='/', name='homepage', methods=['POST'])"
    assert repr(Route("/e", Endpoint)) == "Route(path='/e', name='Endpoint', methods=[])"
    assert hash(route) == hash(route)


def test_partial_and_method_endpoints_are_functions() -> None:
    def greet(request: Request, word: str) -> Response:
        return PlainTextResponse(word)

    class Handlers:
        def hello(self, request: Request) -> Response:
            return PlainTextResponse("method")

    router = Router([Route("/p", functools.partial(greet, word="partial")), Route("/m", Handlers().hello)])
    client = TestClient(router)
    assert client.get("/p").text == "partial"
    assert client.get("/m").text == "method"
    assert router.routes[0].methods == {"GET", "HEAD"}  # type: ignore[attr-defined]  # a Route


def test_asgi_app_endpoint_takes_every_method() -> None:
    async def raw(scope: Scope, receive: Receive, send: Send) -> None:
        await PlainTextResponse(scope["method"])(scope, receive, send)

    class RawApp:
        async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
            await raw(scope, receive, send)

    client = TestClient(Router([Route("/", RawApp())]))
    assert client.request("PURGE", "/").text == "PURGE"


def test_route_middleware_wraps_only_that_route() -> None:
    class Tag:
        def __init__(self, app: ASGIApp, value: str) -> None:
            self.app, self.value = app, value

        async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
            async def tagged(message: Message) -> None:
                if message["type"] == "http.response.start":
                    message["headers"] = [*message["headers"], (b"x-tag", self.value.encode())]
                elif message["type"] == "websocket.accept":
                    message["headers"] = [(b"x-tag", self.value.encode())]
                await send(message)

            await self.app(scope, receive, tagged)

    router = Router(
        [
            Route("/tagged", homepage, middleware=[Middleware(Tag, "route")]),
            Route("/plain", homepage),
            WebSocketRoute("/ws", ws_echo, middleware=[Middleware(Tag, "ws")]),
            Mount("/m", routes=[Route("/", homepage)], middleware=[Middleware(Tag, "mount")]),
        ]
    )
    client = TestClient(router)
    assert client.get("/tagged").headers["x-tag"] == "route"
    assert "x-tag" not in client.get("/plain").headers
    assert client.get("/m/").headers["x-tag"] == "mount"
    with client.websocket_connect("/ws") as session:
        assert session.receive_json() == {"path": "/ws", "params": {}}


def test_sync_endpoint_runs_in_a_worker_thread() -> None:
    import threading

    def where(request: Request) -> Response:
        return PlainTextResponse(threading.current_thread().name)

    assert TestClient(Router([Route("/", where)])).get("/").text not in ("MainThread", "triolette-testclient")


def test_request_response_and_websocket_session_as_apps() -> None:
    async def hello(request: Request) -> Response:
        return PlainTextResponse("hi " + request.method)

    assert TestClient(request_response(hello)).post("/").text == "hi POST"

    async def ws(websocket: WebSocket) -> None:
        await websocket.accept()
        await websocket.send_text("session")
        await websocket.close()

    with TestClient(websocket_session(ws)).websocket_connect("/") as session:
        assert session.receive_text() == "session"


# --------------------------------------------------------------------------- url_path_for


def test_url_path_for() -> None:
    assert app_router.url_path_for("homepage") == "/"
    assert app_router.url_path_for("user", id=7) == "/users/7"
    assert app_router.url_path_for("item", id=uuid.UUID(int=1)) == "/items/00000000-0000-0000-0000-000000000001"
    assert app_router.url_path_for("files", rest="a/b") == "/files/a/b"
    assert app_router.url_path_for("sub:sub-home") == "/sub/"
    assert app_router.url_path_for("sub:named", name="x") == "/sub/x"
    assert app_router.url_path_for("sub", path="/deep/x") == "/sub/deep/x"
    ws = app_router.url_path_for("ws", room="lobby")
    assert (ws, ws.protocol) == ("/ws/lobby", "websocket")
    assert ws.make_absolute_url("https://example.org") == "wss://example.org/ws/lobby"
    assert app_router.url_path_for("user", id=7).make_absolute_url("http://h/") == "http://h/users/7"


@pytest.mark.parametrize(
    ("name", "params"),
    [
        ("nope", {}),
        ("user", {}),
        ("user", {"id": 1, "extra": 2}),
        ("sub:nope", {}),
        ("sub", {}),
        ("ws", {}),
        ("homepage", {"x": 1}),
    ],
)
def test_url_path_for_no_match(name: str, params: dict[str, Any]) -> None:
    with pytest.raises(NoMatchFound, match=f'No route exists for name "{name}"'):
        app_router.url_path_for(name, **params)


def test_url_path_for_unnamed_mount_and_params_in_the_mount() -> None:
    router = Router(
        [
            Mount("/org/{org}", routes=[Route("/users/{id:int}", user, name="user")], name="org"),
            Mount("/plain", routes=[Route("/page", homepage, name="page")]),
        ]
    )
    assert router.url_path_for("org:user", org="acme", id=3) == "/org/acme/users/3"
    assert router.url_path_for("org", org="acme", path="x/y") == "/org/acme/x/y"
    assert router.url_path_for("page") == "/plain/page"
    with pytest.raises(NoMatchFound):
        router.url_path_for("org", org="acme", path="x", extra=1)
    client = TestClient(router)
    assert client.get("/org/acme/users/3").json() == {"id": 3, "type": "int"}


def test_mount_of_an_app_without_routes() -> None:
    async def raw(scope: Scope, receive: Receive, send: Send) -> None:
        await PlainTextResponse(scope["root_path"] + "|" + scope["path"])(scope, receive, send)

    mount = Mount("/raw", app=raw, name="raw")
    assert mount.routes == []
    assert Router([mount]).url_path_for("raw", path="/file.txt") == "/raw/file.txt"
    with pytest.raises(NoMatchFound):
        mount.url_path_for("raw:inner")
    assert TestClient(Router([mount])).get("/raw/a/b").text == "/raw|/raw/a/b"


# --------------------------------------------------------------------------- Mount


def test_mount_sets_root_path_and_route_path(client: TestClient) -> None:
    assert client.get("/sub/").text == "home"
    assert client.get("/sub/alice").json() == {"path": "/sub/alice", "root_path": "/sub", "params": {"name": "alice"}}
    assert client.get("/sub").status_code == 200  # redirected to /sub/
    assert client.get("/sub", follow_redirects=False).headers["location"] == "http://testserver/sub/"


def test_nested_mounts_and_root_path() -> None:
    inner = Mount("/b", routes=[Route("/c", echo_scope)])
    client = TestClient(Router([Mount("/a", routes=[inner])]), root_path="/api")
    assert client.get("/api/a/b/c").json() == {"path": "/api/a/b/c", "root_path": "/api/a/b", "params": {}}


def test_mount_at_the_root() -> None:
    client = TestClient(Router([Mount("", routes=[Route("/x", homepage)])]))
    assert client.get("/x").text == "home"


def test_mount_rules_equality_and_repr() -> None:
    with pytest.raises(ConfigurationError, match="Routed paths must start with '/'"):
        Mount("api", routes=[])
    with pytest.raises(ConfigurationError, match=r"Either 'app=\.\.\.', or 'routes=' must be specified"):
        Mount("/api")
    routes = [Route("/", homepage)]
    mount = Mount("/api/", routes=routes, name="api")
    assert mount.path == "/api"
    assert mount.routes == routes
    assert mount == Mount("/api", routes=list(routes))
    assert mount != Mount("/other", routes=routes)
    assert repr(mount).startswith("Mount(path='/api', name='api', app=")
    # An endpoint where an ASGI app belongs: only its repr is looked at.
    assert repr(Mount("/x", app=homepage)).startswith(  # type: ignore[arg-type]
        "Mount(path='/x', name='', app=<function homepage"
    )
    assert hash(mount) == hash(mount)


def test_websocket_route_in_a_mount() -> None:
    client = TestClient(Router([Mount("/live", routes=[WebSocketRoute("/ws/{room}", ws_echo)])]))
    with client.websocket_connect("/live/ws/red") as session:
        assert session.receive_json() == {"path": "/live/ws/red", "params": {"room": "red"}}


def test_websocket_route_equality_and_repr() -> None:
    route = WebSocketRoute("/ws", ws_echo)
    assert route == WebSocketRoute("/ws", ws_echo)
    assert route != WebSocketRoute("/other", ws_echo)
    assert repr(route) == "WebSocketRoute(path='/ws', name='ws_echo')"
    assert hash(route) == hash(route)
    assert route.matches({"type": "http", "path": "/ws"}) == (Match.NONE, {})
    assert route.matches({"type": "websocket", "path": "/other"}) == (Match.NONE, {})
    assert Mount("/ws", routes=[]).matches({"type": "lifespan"}) == (Match.NONE, {})


def test_websocket_route_with_an_endpoint_class() -> None:
    from triolette.endpoints import WebSocketEndpoint

    class Echo(WebSocketEndpoint):
        encoding = "text"

        async def on_receive(self, websocket: Any, data: Any) -> None:
            await websocket.send_text("echo " + data)

    route = WebSocketRoute("/echo", Echo)
    assert route.app is Echo
    with TestClient(Router([route])).websocket_connect("/echo") as session:
        session.send_text("hi")
        assert session.receive_text() == "echo hi"


def test_websocket_not_found_closes(client: TestClient) -> None:
    with pytest.raises(WebSocketDisconnect) as info, client.websocket_connect("/nowhere"):
        pass  # pragma: no cover - the connect fails
    assert info.value.code == 1000


def test_websocket_params(client: TestClient) -> None:
    with client.websocket_connect("/ws/lobby") as session:
        assert session.receive_json() == {"path": "/ws/lobby", "params": {"room": "lobby"}}


# --------------------------------------------------------------------------- Host


def host_router() -> Router:
    api = Router([Route("/users", users, name="users"), Route("/", echo_scope, name="api-root")])
    return Router(
        [
            Host("{sub:str}.example.org", app=api, name="subdomain"),
            Host("api.example.org:8000", app=Router([Route("/", homepage)]), name="api"),
            Host("[::1]", app=Router([Route("/users", users)])),
            Route("/", echo_scope),
        ]
    )


@pytest.mark.parametrize(
    ("base_url", "expected"),
    [
        ("http://foo.example.org", "users"),
        ("http://foo.example.org:8443", "users"),
        ("http://[::1]", "users"),
        ("http://[::1]:8000", "users"),
    ],
)
def test_host_routing(base_url: str, expected: str) -> None:
    assert TestClient(host_router(), base_url=base_url).get("/users").text == expected


def test_host_params_and_fallthrough() -> None:
    client = TestClient(host_router(), base_url="http://acme.example.org")
    assert client.get("/").json()["params"] == {"sub": "acme"}
    assert TestClient(host_router(), base_url="http://other.test").get("/").json()["params"] == {}
    # Hosts are tried in order: the wildcard host, declared first, takes api.example.org.
    assert TestClient(host_router(), base_url="http://api.example.org").get("/").json()["params"] == {"sub": "api"}


@pytest.mark.parametrize(
    "host",
    ["", ":", "::::", "[", "]", "[::1", "a b", "example.org:notaport", "\x7f", "..", "%%", "{sub}.example.org"],
)
def test_malformed_host_header_is_never_a_500(host: str) -> None:
    client = TestClient(host_router(), raise_server_exceptions=False)
    response = client.get("/users", headers={"host": host})
    assert response.status_code in (200, 404)
    app_client = TestClient(Triolette(routes=host_router().routes), raise_server_exceptions=False)
    assert app_client.get("/users", headers={"host": host}).status_code in (200, 404)


@pytest.mark.parametrize("host", ["api.example.org:evil", "api.example.org:", "[V1.foo]"])
def test_unparsable_host_header_matches_no_host_route(host: str) -> None:
    routes = Router([Route("/users", users)])
    router = Router([Host("{sub}.example.org", app=routes), Host("api.example.org", app=routes)])
    response = TestClient(router).get("/users", headers={"host": host})
    assert response.status_code == 404


def test_host_route_matching_is_case_insensitive() -> None:
    router = Router([Host("{subdomain}.Example.org", app=Router([Route("/", echo_scope)]))])
    response = TestClient(router, base_url="http://Sub.example.ORG").get("/")
    assert response.status_code == 200
    assert response.json()["params"] == {"subdomain": "sub"}


def test_host_url_path_for() -> None:
    router = host_router()
    url = router.url_path_for("subdomain:users", sub="acme")
    assert (url, url.host) == ("/users", "acme.example.org")
    assert url.make_absolute_url("https://ignored") == "https://acme.example.org/users"
    named = router.url_path_for("subdomain", sub="acme", path="/x")
    assert (named, named.host) == ("/x", "acme.example.org")
    with pytest.raises(NoMatchFound):
        router.url_path_for("subdomain", sub="acme", other="x", path="/x")
    with pytest.raises(NoMatchFound):
        router.url_path_for("subdomain:nope", sub="acme")
    unnamed = Host("static.example.org", app=Router([Route("/logo", homepage, name="logo")]))
    assert Router([unnamed]).url_path_for("logo").host == "static.example.org"


def test_host_rules_equality_and_repr() -> None:
    with pytest.raises(ConfigurationError, match="Host must not start with '/'"):
        Host("/example.org", app=homepage)  # type: ignore[arg-type]  # refused before the app is looked at
    inner = Router([Route("/", homepage)])
    host = Host("example.org", app=inner, name="site")
    assert host.routes == inner.routes
    assert host == Host("example.org", app=inner)
    assert host != Host("other.org", app=inner)
    assert repr(host).startswith("Host(host='example.org', name='site', app=")
    # An endpoint where an ASGI app belongs: only the repr and the routes (none) are looked at.
    assert repr(Host("x.org", app=homepage)).startswith("Host(host='x.org', name='', app=")  # type: ignore[arg-type]
    assert Host("x.org", app=homepage).routes == []  # type: ignore[arg-type]
    assert hash(host) == hash(host)
    assert host.matches({"type": "lifespan"}) == (Match.NONE, {})


# --------------------------------------------------------------------------- Router


def test_redirect_slashes_both_ways() -> None:
    router = Router([Route("/with/", homepage), Route("/without", homepage)])
    client = TestClient(router, follow_redirects=False)
    response = client.get("/with?q=1")
    assert (response.status_code, response.headers["location"]) == (307, "http://testserver/with/?q=1")
    response = client.get("/without/")
    assert (response.status_code, response.headers["location"]) == (307, "http://testserver/without")
    assert client.get("/neither/").status_code == 404
    assert client.post("/without/").status_code == 307  # a partial match redirects too
    router.redirect_slashes = False
    assert client.get("/without/").status_code == 404


def test_default_app() -> None:
    async def default(scope: Scope, receive: Receive, send: Send) -> None:
        await PlainTextResponse("default", status_code=418)(scope, receive, send)

    response = TestClient(Router([Route("/", homepage)], default=default)).get("/elsewhere")
    assert (response.status_code, response.text) == (418, "default")


async def test_router_refuses_unknown_scope_types() -> None:
    async def receive() -> Message:
        await trio.sleep_forever()
        raise AssertionError("unreachable")  # pragma: no cover

    with pytest.raises(ValueError, match="Router got an ASGI scope of type 'weird'"):
        await Router()({"type": "weird"}, receive, None)  # type: ignore[arg-type]  # send is never used


def test_router_equality_and_helpers() -> None:
    router = Router()
    router.add_route("/", homepage, methods=["POST"], name="root", include_in_schema=False)
    router.add_websocket_route("/ws", ws_echo, name="live")
    router.mount("/m", app=Router([Route("/", users)]), name="m")
    router.host("h.example.org", app=Router([Route("/", users)]), name="h")
    assert [type(route).__name__ for route in router.routes] == ["Route", "WebSocketRoute", "Mount", "Host"]
    assert router.routes[0].include_in_schema is False  # type: ignore[attr-defined]  # a Route
    assert router.url_path_for("root") == "/"
    assert router.url_path_for("live") == "/ws"
    assert router == Router(list(router.routes))
    assert router != Router()
    assert hash(router) == hash(router)
    client = TestClient(router)
    assert client.post("/").text == "home"
    assert client.get("/m/").text == "users"


def test_routes_added_after_the_first_request_are_found() -> None:
    router = Router([Route("/a", homepage)])
    client = TestClient(router)
    assert client.get("/b").status_code == 404
    router.routes.append(Route("/b", users))
    assert client.get("/b").text == "users"
    router.routes = [Route("/c", users)]
    assert client.get("/a").status_code == 404
    assert client.get("/c").text == "users"


def test_index_keeps_declaration_order_with_parameter_routes() -> None:
    def first(request: Request) -> Response:
        return PlainTextResponse("param")

    router = Router([Route("/{anything}", first), Route("/fixed", homepage), Route("/fixed/deeper", users)])
    client = TestClient(router)
    assert client.get("/fixed").text == "param"  # the parameter route was declared first
    assert client.get("/fixed/deeper").text == "users"
    assert client.get("/other").text == "param"


class CustomRoute(Route):
    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        if scope["type"] == "http" and scope["path"].endswith(".custom"):
            return Match.FULL, {"endpoint": self.endpoint, "path_params": {}}
        return Match.NONE, {}


def test_a_route_with_its_own_matches_is_tried_for_every_path() -> None:
    client = TestClient(Router([Route("/a", homepage), CustomRoute("/never", users)]))
    assert client.get("/a/b/c.custom").text == "users"
    assert client.get("/a").text == "home"


async def record(sent: list[Message], message: Message) -> None:
    sent.append(message)


@pytest.mark.parametrize("path", ["foo", "", "foo/bar", "?"])
async def test_raw_path_without_leading_slash_is_not_a_500(path: str) -> None:
    """A server can hand over any path; one without a leading '/' is not found (not a crash)."""
    for app in (Router([Route("/foo", homepage), Mount("/m", routes=[])]), Triolette(routes=[Route("/foo", homepage)])):
        sent: list[Message] = []

        async def receive() -> Message:
            await trio.sleep_forever()
            raise AssertionError("unreachable")  # pragma: no cover

        scope = {
            "type": "http",
            "method": "GET",
            "path": path,
            "raw_path": path.encode(),
            "root_path": "",
            "scheme": "http",
            "query_string": b"",
            "headers": [(b"host", b"testserver")],
            "server": ("testserver", 80),
        }
        with trio.fail_after(5):
            await app(scope, receive, functools.partial(record, sent))
        assert sent[0]["status"] in (400, 404)


def test_lifespan_on_a_router() -> None:
    events: list[str] = []

    @asynccontextmanager
    async def lifespan(app: Any) -> AsyncIterator[dict[str, str]]:
        events.append("start")
        yield {"from": "router"}
        events.append("stop")

    def state(request: Request) -> Response:
        return PlainTextResponse(request.state.__getattr__("from"))

    with TestClient(Router([Route("/", state)], lifespan=lifespan)) as client:
        assert events == ["start"]
        assert client.get("/").text == "router"
    assert events == ["start", "stop"]


def test_generator_function_lifespan_is_accepted_with_a_deprecation_warning() -> None:
    events: list[str] = []

    def sync_gen(app: Any) -> Iterator[None]:
        events.append("sync up")
        yield
        events.append("sync down")

    with pytest.warns(
        TrioletteDeprecationWarning,
        match=r"^generator function lifespans are deprecated, use an @contextlib\.asynccontextmanager function",
    ):
        router = Router(lifespan=sync_gen)  # type: ignore[arg-type]  # the deprecated form is the point
    with TestClient(router):
        assert events == ["sync up"]
    assert events == ["sync up", "sync down"]


def test_async_generator_function_lifespan_is_accepted_with_a_deprecation_warning() -> None:
    events: list[str] = []

    async def agen(app: Any) -> AsyncIterator[None]:
        events.append("up")
        yield
        events.append("down")

    with pytest.warns(
        TrioletteDeprecationWarning,
        match=r"^async generator function lifespans are deprecated, use an @contextlib\.asynccontextmanager function",
    ):
        router = Router(lifespan=agen)  # type: ignore[arg-type]  # the deprecated form is the point
    with TestClient(router):
        assert events == ["up"]
    assert events == ["up", "down"]
    with TestClient(Router()):  # no lifespan: startup and shutdown complete
        pass


def test_router_and_mount_max_body_size_inside_an_app() -> None:
    async def echo(request: Request) -> Response:
        return PlainTextResponse(str(len(await request.body())))

    inner = Mount("/small", routes=[Route("/", echo, methods=["POST"])], max_body_size=4)
    router = Router([Route("/", echo, methods=["POST"]), inner], max_body_size=8)
    client = TestClient(Triolette(routes=[Mount("", app=router)]))
    assert client.post("/", content=b"12345678").text == "8"
    assert client.post("/", content=b"123456789").status_code == 413
    assert client.post("/small/", content=b"1234").text == "4"
    assert client.post("/small/", content=b"12345").status_code == 413


def test_bare_router_max_body_size_answers_413() -> None:
    async def echo(request: Request) -> Response:  # pragma: no cover - never reached
        return PlainTextResponse(str(len(await request.body())))

    client = TestClient(Router([Route("/", echo, methods=["POST"])], max_body_size=8))
    response = client.post("/", content=b"123456789")
    assert (response.status_code, response.text) == (413, "Content Too Large")


def test_route_max_body_size() -> None:
    async def echo(request: Request) -> Response:
        return PlainTextResponse(str(len(await request.body())))

    client = TestClient(Triolette(routes=[Route("/", echo, methods=["POST"], max_body_size=3)]))
    assert client.post("/", content=b"123").text == "3"
    response = client.post("/", content=b"1234")
    assert (response.status_code, response.text) == (413, "Content Too Large")


async def test_route_timeout_answers_503(autojump_clock: trio.abc.Clock) -> None:
    seen: list[float] = []

    async def slow(request: Request) -> Response:
        seen.append(trio.current_effective_deadline() - trio.current_time())
        await trio.sleep(10)
        return PlainTextResponse("late")  # pragma: no cover - cancelled

    sent: list[Message] = []

    async def send(message: Message) -> None:
        sent.append(message)

    async def receive() -> Message:
        await trio.sleep_forever()
        raise AssertionError("unreachable")  # pragma: no cover

    app = Triolette(routes=[Route("/", slow, timeout=2, cancel_on_disconnect=False)])
    scope = {"type": "http", "method": "GET", "path": "/", "headers": [], "query_string": b""}
    with trio.fail_after(60):
        await app(scope, receive, send)
    assert seen == [2]
    assert trio.current_time() == 2
    assert sent[0]["status"] == 503
    assert sent[1]["body"] == b"Request timed out after 2 s"


async def test_a_route_on_its_own_is_an_asgi_app() -> None:
    sent: list[Message] = []

    async def send(message: Message) -> None:
        sent.append(message)

    async def receive() -> Message:
        await trio.sleep_forever()
        raise AssertionError("unreachable")  # pragma: no cover

    route = Route("/here", homepage)
    base = {"method": "GET", "query_string": b"", "headers": [], "root_path": ""}
    with trio.fail_after(5):
        await route({"type": "http", "path": "/here", **base}, receive, send)
        await route({"type": "http", "path": "/there", **base}, receive, send)
        await route({"type": "http", "path": "/here", **base, "method": "POST"}, receive, send)
        await route({"type": "websocket", "path": "/there", "headers": [], "query_string": b""}, receive, send)
        await Route("/", homepage)({"type": "lifespan"}, receive, send)  # neither: ignored
    bodies = [m.get("body") for m in sent if m["type"] == "http.response.body"]
    assert bodies == [b"home", b"Not Found", b"Method Not Allowed"]
    assert sent[-1] == {"type": "websocket.close", "code": 1000, "reason": ""}


async def test_websocket_on_a_bare_router_without_route_closes() -> None:
    sent: list[Message] = []

    async def send(message: Message) -> None:
        sent.append(message)

    async def receive() -> Message:
        await trio.sleep_forever()
        raise AssertionError("unreachable")  # pragma: no cover

    with trio.fail_after(5):
        await Router()({"type": "websocket", "path": "/", "headers": [], "query_string": b""}, receive, send)
    assert sent == [{"type": "websocket.close", "code": 1000, "reason": ""}]


def test_url_path_type() -> None:
    assert isinstance(app_router.url_path_for("homepage"), URLPath)


def test_url_path_for_substitutes_parameters_in_one_pass() -> None:
    router = Router([Route("/{category}/{id}", homepage, name="item")])
    assert router.url_path_for("item", category="{id}", id="42") == "/{id}/42"
    assert router.url_path_for("item", category="a", id="{category}") == "/a/{category}"
    host = Host("{sub}.example.org", app=Router([Route("/{page}", homepage, name="page")]), name="site")
    url = Router([host]).url_path_for("site:page", sub="{page}", page="p")
    assert (url, url.host) == ("/p", "{page}.example.org")


def test_replace_params_leaves_unknown_placeholders_and_returns_the_unused_params() -> None:
    from triolette.routing import replace_params

    convertors: dict[str, Convertor[Any]] = {"a": StringConvertor(), "b": IntegerConvertor()}
    assert replace_params("/{a}/{b}", convertors, {"a": "x", "c": "y"}) == ("/x/{b}", {"c": "y"})
    assert replace_params("/static", convertors, {"a": "x"}) == ("/static", {"a": "x"})


# --------------------------------------------------------------------------- issue 13, item 5

HUGE = "9" * 5000


def typed_app() -> Triolette:
    async def show(request: Request) -> Response:
        return JSONResponse({key: str(value) for key, value in request.path_params.items()})

    async def ws_show(websocket: WebSocket) -> None:
        await websocket.accept()
        await websocket.send_json(dict(websocket.path_params))
        await websocket.close()

    return Triolette(
        routes=[
            Route("/int/{n:int}", show),
            Route("/float/{n:float}", show),
            Route("/uuid/{n:uuid}", show),
            Route("/either/{n:int}", show, name="int"),
            Route("/either/{n}", show, name="str"),
            Mount("/mount/{n:int}", app=Router([Route("/", show)])),
            WebSocketRoute("/ws/{n:int}", ws_show),
        ]
    )


@pytest.mark.parametrize("kind", ["int", "float", "uuid"])
def test_path_parameter_of_5000_digits_is_404(kind: str) -> None:
    """Decided: a value its convertor cannot convert does not match the route (Starlette: 500)."""
    response = TestClient(typed_app()).get(f"/{kind}/{HUGE}")
    assert response.status_code == 404
    assert response.text == "Not Found"


def test_path_parameter_of_5000_digits_matches_the_next_route() -> None:
    response = TestClient(typed_app()).get(f"/either/{HUGE}")
    assert response.status_code == 200
    assert response.json() == {"n": HUGE}


def test_path_parameter_of_5000_digits_does_not_match_a_mount() -> None:
    client = TestClient(typed_app())
    assert client.get("/mount/7/").json() == {"n": "7"}
    assert client.get(f"/mount/{HUGE}/").status_code == 404


def test_path_parameter_of_5000_digits_does_not_match_a_websocket_route() -> None:
    client = TestClient(typed_app())
    with client.websocket_connect("/ws/7") as session:
        assert session.receive_json() == {"n": 7}
    with pytest.raises(WebSocketDisconnect), client.websocket_connect(f"/ws/{HUGE}"):
        pass  # pragma: no cover - the connection is refused


def test_host_parameter_its_convertor_refuses_does_not_match() -> None:
    async def show(request: Request) -> Response:
        return JSONResponse(request.path_params)

    app = Triolette(routes=[Host("{n:int}.example.org", app=Router([Route("/", show)]))])
    client = TestClient(app)
    assert client.get("/", headers={"host": "42.example.org"}).json() == {"n": 42}
    assert client.get("/", headers={"host": f"{HUGE}.example.org"}).status_code == 404


def test_generator_lifespan_warning_comes_from_triolette_routing_as_starlettes_from_its_routing() -> None:
    # A filter written for Starlette ("...:StarletteDeprecationWarning:starlette.routing") ports by renaming.
    import warnings

    def sync_gen(app: Any) -> Iterator[None]:
        yield

    async def async_gen(app: Any) -> AsyncIterator[None]:
        yield

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        warnings.filterwarnings("ignore", category=TrioletteDeprecationWarning, module=r"triolette\.routing\Z")
        Triolette(lifespan=sync_gen)  # type: ignore[arg-type]  # the deprecated form is the point
        Triolette(lifespan=async_gen)  # type: ignore[arg-type]  # the deprecated form is the point
        Router(lifespan=sync_gen)  # type: ignore[arg-type]  # the deprecated form is the point
        warnings.warn("a control: other warnings still come through", TrioletteDeprecationWarning, stacklevel=1)
    assert [str(warning.message) for warning in caught] == ["a control: other warnings still come through"]
