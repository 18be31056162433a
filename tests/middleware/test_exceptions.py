"""ExceptionMiddleware: HTTPException and WebSocketException answered; handlers by class or status."""

from __future__ import annotations

from typing import Any

import pytest

from triolette._utils import ConfigurationError
from triolette.applications import Triolette
from triolette.exceptions import HTTPException, WebSocketException
from triolette.middleware.exceptions import ExceptionMiddleware
from triolette.requests import Request
from triolette.responses import JSONResponse, PlainTextResponse, Response
from triolette.routing import Route, Router, WebSocketRoute
from triolette.testclient import TestClient
from triolette.types import Receive, Scope, Send
from triolette.websockets import WebSocket, WebSocketDisconnect


def raise_runtime_error(request: Request) -> Response:
    raise RuntimeError("Yikes")


def not_acceptable(request: Request) -> Response:
    raise HTTPException(status_code=406)


def no_content(request: Request) -> Response:
    raise HTTPException(status_code=204)


def not_modified(request: Request) -> Response:
    raise HTTPException(status_code=304)


def with_headers(request: Request) -> Response:
    raise HTTPException(status_code=401, detail="Who are you?", headers={"www-authenticate": "Bearer"})


class BadBodyException(HTTPException):
    pass


async def read_body_and_raise(request: Request) -> Response:
    await request.body()
    raise BadBodyException(422)


async def handle_bad_body(request: Request, exc: Exception) -> Response:
    return JSONResponse({"body": (await request.body()).decode()}, status_code=422)


class HandledExcAfterResponse:
    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await PlainTextResponse("OK", status_code=200)(scope, receive, send)
        raise HTTPException(status_code=406)


async def websocket_raise(websocket: WebSocket) -> None:
    await websocket.accept()
    raise WebSocketException(code=1013, reason="try again")


router = Router(
    [
        Route("/runtime_error", raise_runtime_error),
        Route("/not_acceptable", not_acceptable),
        Route("/no_content", no_content),
        Route("/not_modified", not_modified),
        Route("/with_headers", with_headers),
        Route("/handled_exc_after_response", HandledExcAfterResponse()),
        Route("/consume_body", read_body_and_raise, methods=["POST"]),
        WebSocketRoute("/ws", websocket_raise),
    ]
)
app = ExceptionMiddleware(router, handlers={BadBodyException: handle_bad_body})
client = TestClient(app)


def test_not_acceptable() -> None:
    response = client.get("/not_acceptable")
    assert (response.status_code, response.text) == (406, "Not Acceptable")


def test_no_content_and_not_modified_have_no_body() -> None:
    for path, status in (("/no_content", 204), ("/not_modified", 304)):
        response = client.get(path)
        assert response.status_code == status
        assert response.content == b""
        assert "content-length" not in response.headers


def test_headers_are_kept() -> None:
    response = client.get("/with_headers")
    assert (response.status_code, response.text) == (401, "Who are you?")
    assert response.headers["www-authenticate"] == "Bearer"


def test_other_errors_pass_through() -> None:
    with pytest.raises(RuntimeError, match="Yikes"):
        client.get("/runtime_error")


def test_handled_exception_after_the_response_started() -> None:
    with pytest.raises(RuntimeError, match="Caught handled exception, but response already started"):
        client.get("/handled_exc_after_response")


def test_handler_can_read_the_body_again() -> None:
    response = client.post("/consume_body", content=b"abc")
    assert (response.status_code, response.json()) == (422, {"body": "abc"})


def test_websocket_exception_closes_the_connection() -> None:
    with client.websocket_connect("/ws") as session, pytest.raises(WebSocketDisconnect) as info:
        session.receive_text()
    assert (info.value.code, info.value.reason) == (1013, "try again")


def test_handlers_by_status_code_win_over_by_class() -> None:
    def by_status(request: Request, exc: Exception) -> Response:
        return PlainTextResponse("by status", status_code=406)

    def by_class(request: Request, exc: Exception) -> Response:  # pragma: no cover - status wins
        return PlainTextResponse("by class")

    middleware = ExceptionMiddleware(router)
    middleware.add_exception_handler(406, by_status)
    middleware.add_exception_handler(HTTPException, by_class)
    assert TestClient(middleware).get("/not_acceptable").text == "by status"


def test_handler_for_a_base_class_catches_subclasses() -> None:
    async def lookup(request: Request, exc: Exception) -> Response:
        return PlainTextResponse(type(exc).__name__, status_code=400)

    def endpoint(request: Request) -> Response:
        raise KeyError("k")

    application = Triolette(routes=[Route("/", endpoint)], exception_handlers={LookupError: lookup})
    response = TestClient(application).get("/")
    assert (response.status_code, response.text) == (400, "KeyError")


@pytest.mark.parametrize("key", ["404", object(), ValueError("instance"), BaseException])
def test_handlers_must_be_keyed_by_class_or_status(key: Any) -> None:
    expected = "Exception handlers are keyed by an Exception subclass or a status code"
    with pytest.raises(ConfigurationError, match=expected):
        ExceptionMiddleware(router, handlers={key: handle_bad_body})


def test_lifespan_passes_through() -> None:
    with TestClient(ExceptionMiddleware(Router())) as test_client:
        assert test_client.get("/").status_code == 404


def test_http_exception_repr_and_str() -> None:
    exc = HTTPException(404)
    assert (exc.detail, str(exc)) == ("Not Found", "404: Not Found")
    assert repr(exc) == "HTTPException(status_code=404, detail='Not Found')"
    ws = WebSocketException(1008)
    assert (ws.reason, str(ws), repr(ws)) == ("", "1008: ", "WebSocketException(code=1008, reason='')")


def test_websocket_exception_after_accept_inside_an_app() -> None:
    app_client = TestClient(Triolette(routes=[WebSocketRoute("/ws", websocket_raise)]))
    with app_client.websocket_connect("/ws") as session, pytest.raises(WebSocketDisconnect) as info:
        session.receive_text()
    assert (info.value.code, info.value.reason) == (1013, "try again")


def test_debug_flag_is_kept() -> None:
    assert ExceptionMiddleware(router, debug=True).debug is True
