"""HTTPException and WebSocketException: defaults, str and repr as Starlette's."""

from __future__ import annotations

from triolette.applications import Triolette
from triolette.exceptions import HTTPException, TrioletteDeprecationWarning, WebSocketException
from triolette.requests import Request
from triolette.responses import Response
from triolette.routing import Route
from triolette.testclient import TestClient


def test_http_exception_defaults_to_the_status_phrase() -> None:
    exc = HTTPException(404)
    assert exc.detail == "Not Found"
    assert exc.headers is None
    assert str(exc) == "404: Not Found"
    assert repr(exc) == "HTTPException(status_code=404, detail='Not Found')"


def test_http_exception_keeps_detail_and_headers() -> None:
    exc = HTTPException(401, "Sign in first.", headers={"WWW-Authenticate": "Basic"})
    assert (exc.status_code, exc.detail, exc.headers) == (401, "Sign in first.", {"WWW-Authenticate": "Basic"})


def test_http_exception_with_an_unknown_status_has_an_empty_detail() -> None:
    exc = HTTPException(599)  # as Starlette: no phrase, no error
    assert (exc.status_code, exc.detail) == (599, "")


def test_an_unknown_status_is_answered_with_that_status() -> None:
    def endpoint(request: Request) -> Response:
        raise HTTPException(599)

    response = TestClient(Triolette(routes=[Route("/", endpoint)])).get("/")
    assert (response.status_code, response.text) == (599, "")


def test_websocket_exception() -> None:
    exc = WebSocketException(1008, "Policy violation")
    assert str(exc) == "1008: Policy violation"
    assert repr(exc) == "WebSocketException(code=1008, reason='Policy violation')"
    assert WebSocketException(1000).reason == ""


def test_deprecation_warning_is_a_deprecation_warning() -> None:
    assert issubclass(TrioletteDeprecationWarning, DeprecationWarning)
