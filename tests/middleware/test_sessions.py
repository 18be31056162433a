from __future__ import annotations

import json
from base64 import b64encode
from collections.abc import Callable
from typing import Any

import itsdangerous
import pytest

from triolette.applications import Triolette
from triolette.datastructures import Secret
from triolette.middleware import Middleware
from triolette.middleware.sessions import Session, SessionMiddleware
from triolette.requests import Request
from triolette.responses import JSONResponse, PlainTextResponse, Response
from triolette.routing import Mount, Route
from triolette.testclient import AsyncTestClient, TestClient
from triolette.types import Message, Receive, Scope, Send


async def view(request: Request) -> Response:
    return JSONResponse({"session": request.session})


async def update(request: Request) -> Response:
    request.session.update(await request.json())
    return JSONResponse({"session": request.session})


async def clear(request: Request) -> Response:
    request.session.clear()
    return JSONResponse({"session": request.session})


async def untouched(request: Request) -> Response:
    return PlainTextResponse("no session here")


def make_app(**options: Any) -> Triolette:
    options.setdefault("secret_key", "example")
    return Triolette(
        routes=[
            Route("/view", view),
            Route("/update", update, methods=["POST"]),
            Route("/clear", clear, methods=["POST"]),
            Route("/untouched", untouched),
        ],
        middleware=[Middleware(SessionMiddleware, **options)],
    )


def set_cookie_of(response: Any) -> str:
    values: list[str] = response.headers.get_list("set-cookie")
    assert len(values) == 1
    return values[0]


def test_session_round_trip_and_cookie_attributes() -> None:
    client = TestClient(make_app())
    assert client.get("/view").json() == {"session": {}}

    response = client.post("/update", json={"some": "data"})
    assert response.json() == {"session": {"some": "data"}}
    cookie = set_cookie_of(response)
    assert cookie.startswith("session=")
    assert "; path=/; Max-Age=1209600; httponly; samesite=lax" in cookie
    assert "secure" not in cookie
    assert response.headers["vary"] == "Cookie"

    assert client.get("/view").json() == {"session": {"some": "data"}}

    response = client.post("/clear")
    assert response.json() == {"session": {}}
    assert set_cookie_of(response) == (
        "session=null; path=/; expires=Thu, 01 Jan 1970 00:00:00 GMT; httponly; samesite=lax"
    )
    assert client.get("/view").json() == {"session": {}}


def test_reading_the_session_varies_by_cookie_without_setting_it() -> None:
    response = TestClient(make_app()).get("/view")
    assert response.headers["vary"] == "Cookie"
    assert "set-cookie" not in response.headers


async def test_an_accessed_session_varies_by_cookie_without_setting_it() -> None:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        scope["session"].mark_accessed()
        await PlainTextResponse("read")(scope, receive, send)

    sent: list[Message] = []

    async def send(message: Message) -> None:
        sent.append(message)

    async def receive() -> Message:  # pragma: no cover - not called
        raise AssertionError

    await SessionMiddleware(app, "example")({"type": "http", "headers": []}, receive, send)
    headers = dict(sent[0]["headers"])
    assert headers[b"vary"] == b"Cookie"
    assert b"set-cookie" not in headers


def test_untouched_session_leaves_the_response_alone() -> None:
    response = TestClient(make_app()).get("/untouched")
    assert "vary" not in response.headers
    assert "set-cookie" not in response.headers


def test_clearing_an_empty_session_sends_no_cookie() -> None:
    response = TestClient(make_app()).post("/clear")
    assert "set-cookie" not in response.headers


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        ({"https_only": True}, "httponly; samesite=lax; secure"),
        ({"same_site": "none", "https_only": True}, "httponly; samesite=none; secure"),
        ({"domain": "example.com"}, "httponly; samesite=lax; domain=example.com"),
        ({"partitioned": True, "same_site": "strict"}, "httponly; samesite=strict; partitioned"),
        ({"path": "/app", "max_age": 60}, "path=/app; Max-Age=60; httponly; samesite=lax"),
        ({"max_age": None}, "session=.+; path=/; httponly; samesite=lax$"),
        ({"session_cookie": "sid"}, "^sid="),
    ],
)
def test_cookie_options(options: dict[str, Any], expected: str) -> None:
    import re

    response = TestClient(make_app(**options), base_url="https://testserver").post("/update", json={"a": 1})
    assert re.search(expected, set_cookie_of(response)), set_cookie_of(response)


def test_secret_key_may_be_a_secret() -> None:
    client = TestClient(make_app(secret_key=Secret("s3cret")))
    client.post("/update", json={"a": 1})
    assert client.get("/view").json() == {"session": {"a": 1}}


def test_expired_session_is_empty() -> None:
    # TimestampSigner reads wall-clock time; sign a cookie in the past instead of sleeping.
    signer = itsdangerous.TimestampSigner("example")

    class PastSigner(itsdangerous.TimestampSigner):
        def get_timestamp(self) -> int:
            return super().get_timestamp() - 120

    old = PastSigner("example").sign(b64encode(json.dumps({"a": 1}).encode()))
    fresh = signer.sign(b64encode(json.dumps({"a": 2}).encode()))
    client = TestClient(make_app(max_age=60))
    assert client.get("/view", headers={"Cookie": f"session={old.decode()}"}).json() == {"session": {}}
    assert client.get("/view", headers={"Cookie": f"session={fresh.decode()}"}).json() == {"session": {"a": 2}}


@pytest.mark.parametrize(
    "cookie",
    [
        "not-signed",
        itsdangerous.TimestampSigner("another key").sign(b64encode(b'{"admin": true}')).decode(),
        itsdangerous.TimestampSigner("example").sign(b"!!!not base64").decode(),
        itsdangerous.TimestampSigner("example").sign(b64encode(b"not json")).decode(),
        itsdangerous.TimestampSigner("example").sign(b64encode(b"[1, 2]")).decode(),
    ],
    ids=["unsigned", "other-key", "not-base64", "not-json", "not-a-dict"],
)
def test_bad_cookies_give_an_empty_session(cookie: str) -> None:
    client = TestClient(make_app())
    assert client.get("/view", headers={"Cookie": f"session={cookie}"}).json() == {"session": {}}


def test_other_cookies_only() -> None:
    client = TestClient(make_app())
    assert client.get("/view", headers={"Cookie": "other=x"}).json() == {"session": {}}


def test_sessions_in_a_mount_keep_their_own_path() -> None:
    inner = make_app(path="/inner")
    app = Triolette(routes=[Mount("/inner", app=inner)])
    response = TestClient(app).post("/inner/update", json={"a": 1})
    assert "path=/inner;" in set_cookie_of(response)


async def test_websocket_scope_gets_a_session_and_accept_is_untouched() -> None:
    seen: dict[str, Any] = {}

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        seen["session"] = scope["session"]
        await send({"type": "websocket.accept", "headers": []})

    sent: list[Message] = []

    async def send(message: Message) -> None:
        sent.append(message)

    async def receive() -> Message:  # pragma: no cover - not called
        raise AssertionError

    await SessionMiddleware(app, "example")({"type": "websocket", "headers": []}, receive, send)
    assert seen["session"] == {}
    assert sent == [{"type": "websocket.accept", "headers": []}]


async def test_lifespan_scope_passes_through() -> None:
    seen: list[Scope] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        seen.append(scope)

    async def never(*args: Any) -> Any:  # pragma: no cover - not called
        raise AssertionError

    await SessionMiddleware(app, "example")({"type": "lifespan"}, never, never)
    assert seen == [{"type": "lifespan"}]


async def test_replaced_plain_dict_session_is_stored() -> None:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        scope["session"] = {"plain": True}
        await send({"type": "http.response.start", "status": 200, "headers": ()})

    sent: list[Message] = []

    async def send(message: Message) -> None:
        sent.append(message)

    async def receive() -> Message:  # pragma: no cover - not called
        raise AssertionError

    await SessionMiddleware(app, "example")({"type": "http", "headers": []}, receive, send)
    names = [name for name, _ in sent[0]["headers"]]
    assert names == [b"vary", b"set-cookie"]


async def test_a_session_object_that_only_reports_changes() -> None:
    class WriteOnly(dict[str, Any]):
        accessed = False
        modified = True

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        scope["session"] = WriteOnly(a=1)
        await send({"type": "http.response.start", "status": 200, "headers": []})

    sent: list[Message] = []

    async def send(message: Message) -> None:
        sent.append(message)

    async def receive() -> Message:  # pragma: no cover - not called
        raise AssertionError

    await SessionMiddleware(app, "example")({"type": "http", "headers": []}, receive, send)
    assert [name for name, _ in sent[0]["headers"]] == [b"set-cookie"]


def test_same_site_is_checked() -> None:
    with pytest.raises(ValueError, match=r"same_site must be 'lax', 'strict' or 'none', got 'Lax'"):
        SessionMiddleware(view, "k", same_site="Lax")  # type: ignore[arg-type]  # the wrong case is the point


def test_session_tracks_reads_and_changes() -> None:
    session = Session({"a": 1, "b": 2})
    assert (session.accessed, session.modified) == (False, False)
    session.mark_accessed()
    assert (session.accessed, session.modified) == (True, False)

    changes: list[Callable[[Session], object]] = [
        lambda s: s.__setitem__("c", 3),
        lambda s: s.__delitem__("a"),
        lambda s: s.pop("b"),
        lambda s: s.popitem(),
        lambda s: s.setdefault("new", 1),
        lambda s: s.update(x=1),
        lambda s: s.clear(),
        lambda s: s.__ior__({"y": 2}),
    ]
    for change in changes:
        session = Session({"a": 1, "b": 2})
        change(session)
        assert session.modified
        assert session.accessed

    session = Session({"a": 1})
    assert session.pop("missing", None) is None
    assert session.setdefault("a", 5) == 1
    assert not session.modified

    session = Session()
    session |= {"z": 1}
    assert isinstance(session, Session)
    assert session == {"z": 1}
    assert session.modified


def test_missing_itsdangerous_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib
    import sys

    monkeypatch.setitem(sys.modules, "itsdangerous", None)
    monkeypatch.delitem(sys.modules, "triolette.middleware.sessions")
    with pytest.raises(ModuleNotFoundError, match=r"pip install triolette\[sessions\]"):
        importlib.import_module("triolette.middleware.sessions")


async def test_session_cookie_is_found_in_any_cookie_header() -> None:
    app = make_app()
    cookie = set_cookie_of(await AsyncTestClient(app).post("/update", json={"user": "ann"})).split(";")[0]
    sent: list[Message] = []

    async def receive() -> Message:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Message) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "method": "GET",
        "scheme": "http",
        "server": ("testserver", 80),
        "path": "/view",
        "root_path": "",
        "query_string": b"",
        "headers": [(b"cookie", b"theme=dark"), (b"host", b"testserver"), (b"cookie", cookie.encode())],
    }
    await app(scope, receive, send)
    assert json.loads(sent[1]["body"]) == {"session": {"user": "ann"}}
