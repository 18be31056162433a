"""HTTPException and WebSocketException: defaults, str and repr as Starlette's."""

from __future__ import annotations

import pytest

from triolette.exceptions import HTTPException, TrioletteDeprecationWarning, WebSocketException


def test_http_exception_defaults_to_the_status_phrase() -> None:
    exc = HTTPException(404)
    assert exc.detail == "Not Found"
    assert exc.headers is None
    assert str(exc) == "404: Not Found"
    assert repr(exc) == "HTTPException(status_code=404, detail='Not Found')"


def test_http_exception_keeps_detail_and_headers() -> None:
    exc = HTTPException(401, "Sign in first.", headers={"WWW-Authenticate": "Basic"})
    assert (exc.status_code, exc.detail, exc.headers) == (401, "Sign in first.", {"WWW-Authenticate": "Basic"})


def test_http_exception_refuses_an_unknown_status_without_detail() -> None:
    with pytest.raises(ValueError, match="is not a valid HTTPStatus"):
        HTTPException(999)


def test_websocket_exception() -> None:
    exc = WebSocketException(1008, "Policy violation")
    assert str(exc) == "1008: Policy violation"
    assert repr(exc) == "WebSocketException(code=1008, reason='Policy violation')"
    assert WebSocketException(1000).reason == ""


def test_deprecation_warning_is_a_deprecation_warning() -> None:
    assert issubclass(TrioletteDeprecationWarning, DeprecationWarning)
